"""The sandbox SMS transport's server side: Retell's API on 127.0.0.1 (`server`), its chats
and phones (`chats`), and its signed webhooks (`webhooks`). The worker reaches it through
`pgflow.transport.sandbox`; `pgflow sandbox serve` runs it; the tests' fake Retell is it."""

from __future__ import annotations

from pgflow.sandbox.server import RecordedRequest, Sandbox, Step, error_body, parse_script

__all__ = ["RecordedRequest", "Sandbox", "Step", "error_body", "parse_script"]
