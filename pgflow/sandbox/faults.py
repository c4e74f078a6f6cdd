"""Scripted faults, for tests and the demo: how the sandbox answers the next create-sms-chat
requests. `Sandbox.script(500, Step(delay=2), Step(drop=True))` queues answers, used in
order (also `POST /sandbox/script {"steps": "500,drop"}` and `--script 500,429,drop`);
`set_default` answers every request once the script is used up.

A fault before Retell takes the request (an error status, a delay, a drop) leaves no chat;
one after it (lost_answer, answer_delay) leaves a chat whose answer is lost or late."""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

from pgflow.sandbox.http import Handler, error_body


@dataclasses.dataclass(frozen=True)
class Step:
    """How the sandbox answers one create-sms-chat request.

    status: an error status (>= 300) answers with Retell's error body (429 adds
        `Retry-After: 1`); a 2xx or None serves the request normally with that status.
    delay: seconds to wait before answering (to trigger client timeouts).
    drop: close the connection without any response (after `delay`).
    lost_answer: take the request (the chat starts, the lead gets the text), then close the
        connection without answering: Retell's answer lost on the way back.
    answer_delay: take the request, then wait this many seconds before answering (a worker
        killed meanwhile never learns that Retell took it).
    body: a replacement response body (dict/list -> JSON, str/bytes sent as is).
    headers: extra response headers (they win over the defaults).
    """

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    lost_answer: bool = False
    answer_delay: float = 0.0
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def as_step(step: int | Step) -> Step:
    return step if isinstance(step, Step) else Step(status=step)


def parse_script(text: str) -> list[Step]:
    """`500,429,drop,delay=2.5` -> steps."""
    steps: list[Step] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        if item == "drop":
            steps.append(Step(drop=True))
        elif item.startswith("delay="):
            steps.append(Step(delay=float(item.removeprefix("delay="))))
        else:
            steps.append(Step(status=int(item)))
    return steps


class Script:
    """The queued steps and the default, shared by the handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: collections.deque[Step] = collections.deque()
        self._default: Step | None = None

    def add(self, *steps: int | Step) -> None:
        with self._lock:
            self._steps.extend(as_step(s) for s in steps)

    def set_default(self, step: int | Step | None) -> None:
        with self._lock:
            self._default = None if step is None else as_step(step)

    def clear(self) -> None:
        with self._lock:
            self._steps.clear()
            self._default = None

    def next(self) -> Step:
        """The answer for the request at hand: the next step, else the default, else a
        normal one."""
        with self._lock:
            step = self._steps.popleft() if self._steps else self._default
        return step or Step()


def answered_before(step: Step, handler: Handler, stopping: threading.Event) -> bool:
    """Play the step's faults that come before the request is taken: True when they
    answered it (an error) or dropped it, so it must not be taken."""
    if (step.delay > 0 and stopping.wait(step.delay)) or step.drop:
        handler.drop()  # also when stopping: a delay never holds the thread
        return True
    if step.status is not None and step.status >= 300:
        headers = {"Retry-After": "1"} if step.status == 429 else {}
        headers.update(step.headers)
        body = error_body(step.status) if step.body is None else step.body
        handler.respond(step.status, body, headers)
        return True
    return False


def answer_after(step: Step, handler: Handler, stopping: threading.Event, answer: Any) -> None:
    """Send the answer of a request taken, as the step says: late, lost, or replaced."""
    if (step.answer_delay > 0 and stopping.wait(step.answer_delay)) or step.lost_answer:
        handler.drop()
        return
    status = step.status if step.status is not None else 200
    handler.respond(status, answer if step.body is None else step.body, step.headers)
