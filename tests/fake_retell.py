"""The fake Retell AI of the tests: the sandbox server (pgflow.sandbox), a real HTTP server
on 127.0.0.1 speaking Retell's API, signing webhooks like Retell and able to replay,
reorder and duplicate them.

In a test:

    with FakeRetell() as fake:
        fake.script(500, Step(delay=1.0), Step(drop=True))   # then it succeeds
        ... point RETELL_BASE_URL at fake.url, RETELL_API_KEY at fake.api_key ...
        [req] = fake.wait_for_requests(1)

Chats are in Retell's shape (retell-sdk's ChatResponse: `message_with_tool_calls`, no
`messages` key); tests/test_fake_retell.py pins that against the official SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgflow.sandbox.faults import Step, parse_script
from pgflow.sandbox.http import error_body
from pgflow.sandbox.lead import Responder
from pgflow.sandbox.server import Sandbox

__all__ = ["FakeRetell", "Step", "error_body"]


class FakeRetell(Sandbox):
    """The sandbox with the tests' default key, short ids (chat_1, msg_1: each test has a
    database of its own), and webhooks retried quickly."""

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | str | None = None,
        webhook_url: str | None = None,
        webhook_retry_delay: float = 0.05,
        numbers: list[str] | None = None,
        responder: Responder | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key,
            host=host,
            port=port,
            log_path=log_path,
            webhook_url=webhook_url,
            webhook_retry_delay=webhook_retry_delay,
            numbers=numbers,
            responder=responder,
            unique_ids=False,
            **kwargs,
        )


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.fake_retell --port 0 --api-key K --log requests.jsonl --script 500`:
    prints `READY <url>` once it listens and serves until SIGTERM."""
    import argparse

    from pgflow.sandbox.server import serve_forever

    parser = argparse.ArgumentParser(prog="python -m tests.fake_retell", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--log", type=Path, help="append every request here as a JSON line")
    parser.add_argument("--script", default="", help="e.g. 500,429,drop,delay=2.5")
    parser.add_argument("--default", default="", help="one step for every later request")
    parser.add_argument("--webhook-url", default=None)
    args = parser.parse_args(argv)
    fake = FakeRetell(
        args.api_key,
        host=args.host,
        port=args.port,
        log_path=args.log,
        webhook_url=args.webhook_url,
    )
    fake.script(*parse_script(args.script))
    default = parse_script(args.default)
    if default:
        fake.set_default(default[0])
    serve_forever(fake)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
