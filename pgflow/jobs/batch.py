"""Calls made at the same moment, gathered into one: the send jobs that pgqueuer starts
together claim their messages in one SQL call (pgflow.claim_messages), and the results that
come back close together are recorded in one (pgflow.record_sends). Every job still waits
for its own answer; a batch that fails for a reason other than a lost database is retried
one call per item, so one bad message cannot fail its neighbours."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg

from pgflow import db
from pgflow.errors import PgflowError

T = TypeVar("T")
R = TypeVar("R")

# A flush answers each item with its result, or with the exception that item raised.
Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """`await coalescer(item)` -> its result. The first item waits `window` seconds (0: until
    the tasks ready in this turn of the event loop have added theirs), then every item
    gathered goes to one `flush`, at most `max_batch` at a time."""

    def __init__(self, flush: Flush[T, R], *, window: float = 0.0, max_batch: int = 50):
        self._flush = flush
        self.window = window
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.flushes = 0
        self.items = 0

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch:
            self._start()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self.window, self._start)
                if self.window > 0
                else loop.call_soon(self._start)
            )
        return await future

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = (
                self._pending[: self.max_batch],
                self._pending[self.max_batch :],
            )
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.flushes += 1
        self.items += len(batch)
        try:
            answers = await self._flush([item for item, _ in batch])
        except BaseException as exc:  # every waiting job hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its job was cancelled meanwhile
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)


@dataclasses.dataclass(frozen=True)
class Attempt:
    """The outcome of one send attempt, for pgflow.record_send(s)."""

    message_id: int
    attempt: int
    result: dict[str, Any]


async def each(items: list[T], one: Callable[[T], Awaitable[R]]) -> list[R | BaseException]:
    """One call per item, each answer or exception in its place (a batch's fallback)."""
    answers: list[R | BaseException] = []
    for item in items:
        try:
            answers.append(await one(item))
        except Exception as exc:  # handed to that item's job
            answers.append(exc)
    return answers


def batched(
    many: Callable[[list[T]], Awaitable[Sequence[R]]], one: Callable[[T], Awaitable[R]]
) -> Flush[T, R]:
    """A flush that makes one call for the batch (`many`), falls back to `one` per item when
    the batch fails for a reason of its own, and lets a lost database reach every job."""

    async def flush(items: list[T]) -> Sequence[R | BaseException]:
        if len(items) == 1:
            return await each(items, one)
        try:
            return await many(items)
        except db.UNAVAILABLE:
            raise
        except (psycopg.Error, PgflowError):
            return await each(items, one)

    return flush
