"""Health report shared by `pgflow status`, `/readyz` and `/metrics`."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from pgflow import db, migrations


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclasses.dataclass
class Report:
    checks: list[Check] = dataclasses.field(default_factory=list)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "figures": self.figures,
        }


def report(database_url: str) -> Report:
    rep = Report()
    try:
        conn = db.connect(database_url, application="status")
    except psycopg.OperationalError as exc:
        rep.checks.append(Check("database", False, f"unreachable: {exc}".strip()))
        return rep
    with conn:
        version = conn.execute("select current_setting('server_version')").fetchone()
        rep.checks.append(Check("database", True, f"PostgreSQL {version[0] if version else '?'}"))
        st = migrations.status(database_url)
        rep.checks.append(
            Check(
                "schema",
                st.current,
                f"{len(st.applied)} migrations applied"
                + (f", {len(st.pending)} pending: {', '.join(st.pending)}" if st.pending else ""),
            )
        )
        if not st.current:
            return rep
        health = db.call(conn, "health")
        for item in health["checks"]:
            rep.checks.append(Check(item["name"], bool(item["ok"]), str(item["detail"])))
        rep.figures.update(health["figures"])
    return rep
