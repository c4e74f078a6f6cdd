"""The sandbox SMS transport's server side: Retell's and Twilio's APIs on 127.0.0.1.
`server` assembles it (`Sandbox`) from `http` (the server, requests recorded), `api`
(Retell's endpoints), `faults` (scripted failures), `lead` (the chats as they happen),
`chats` (its memory, the phones too), `webhooks` (signed chat events) and `twilio`
(Twilio's endpoints and the lead's texts to a Twilio line), with `twilio_book` (its memory)
and `twilio_hooks` (signed status callbacks and inbound texts). The worker reaches it
through `pgflow.transport.sandbox` and `pgflow.transport.twilio`; `pgflow sandbox serve`
runs it; the tests' fake Retell is it."""

from __future__ import annotations

from pgflow.sandbox.faults import Step, parse_script
from pgflow.sandbox.http import RecordedRequest, error_body
from pgflow.sandbox.server import Sandbox

__all__ = ["RecordedRequest", "Sandbox", "Step", "error_body", "parse_script"]
