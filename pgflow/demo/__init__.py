"""`pgflow demo`: the whole story on local defaults, through the real parts.

A local database (pgflow/localdb.sh, as the tests use; or DATABASE_URL), the migrations and
the demo's campaign; the sandbox transport in this process (Retell's API on 127.0.0.1, real
signed webhooks); `pgflow serve` and `pgflow worker` as child processes on free ports; the
offline agent unless PGFLOW_LLM_MODEL names a model. Six leads arrive by webhook:

  Sam  replies; the drip stops; the agent talks until a booking arrives on /webhooks/events
  Pat  texts STOP: one confirmation, then silence
  Lee  never answers: steps 2 and 3 go out and then no_response (the clock is moved forward,
       not waited for)
  Kim  it is night where Kim is: step 1 waits for the window; Kim asks for a person anyway
  Ari  interested, books nothing: qualified by classification after the conversation goes quiet
  Jo   on the Twilio campaign (the sandbox speaks Twilio too): delivery receipts; Jo asks for
       a person, who answers from the CLI (`pgflow conversations reply`); Jo's answer reaches
       the person and the agent stays quiet

Retell's first answer is a 500, so one send is retried before the story's eyes. What the
story needs from the database it reads through pgflow.db; what it shows is printed through
a `Display` (the CLI's, with rich).

The package, by what each part does (each imports only the ones below it):

  story.py     the driver: set-up, the six leads' beats, the end (summary, checks, pointers)
  clock.py     days pass in seconds: pgflow.tick() at injected times
  timeline.py  what the story sees and shows: the leads' state, the waits, one line per event
  cast.py      the six leads: their roles, time zones (day or night there), unused numbers
  stage.py     the servers: the sandbox in this process, `pgflow serve` and `pgflow worker`
  local.py     the files (package data, so an installed wheel has them) and the database

Everything the demo reads at run time lives inside the package: its campaigns file
(pgflow/demo/solar-q4-demo.yaml) and the local cluster's script (pgflow/localdb.sh)."""

from __future__ import annotations

from pgflow.demo.cast import Lead
from pgflow.demo.local import DemoError
from pgflow.demo.story import CAMPAIGN, TWILIO_CAMPAIGN, Options, Story
from pgflow.demo.timeline import Display

__all__ = ["CAMPAIGN", "TWILIO_CAMPAIGN", "DemoError", "Display", "Lead", "Options", "Story"]
