"""The health report behind `pgflow status`, `/readyz` and `/metrics`.

One builder (`build`) turns three readings (server version, applied migrations,
`pgflow.health()`) into a `Report`; `report()` reads them on a sync connection and
`areport()` on an async one."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from pgflow import db, migrations
from pgflow.errors import first_line

# The figures in the order an operator reads them: what came in, what waits, what went out,
# what needs a person. Unknown figures (a newer database) follow, sorted.
FIGURE_ORDER = (
    "contacts",
    "leads_rejected_24h",
    "enrollments_active",
    "enrollments_due",
    "conversations_open",
    "jobs_queued",
    "jobs_ready",
    "workers_alive",
    "messages_sent_24h",
    "dead_letters",
    "alerts_open",
)


def ordered(figures: dict[str, Any]) -> dict[str, Any]:
    known = [(k, figures[k]) for k in FIGURE_ORDER if k in figures]
    rest = sorted((k, v) for k, v in figures.items() if k not in FIGURE_ORDER)
    return dict(known + rest)


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclasses.dataclass
class Report:
    checks: list[Check] = dataclasses.field(default_factory=list)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    # each sending number's use today against its limits (pgflow.number_report)
    numbers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # the steps and texts waiting, by the rule that holds them back (pgflow.deferrals)
    deferrals: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def schema_current(self) -> bool:
        return any(c.name == "schema" and c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "figures": self.figures,
            "numbers": self.numbers,
            "deferrals": self.deferrals,
        }


def unreachable(exc: Exception) -> Report:
    return Report(checks=[Check("database", False, f"unreachable: {first_line(exc, None)}")])


def build(
    version: str,
    schema: migrations.MigrationStatus,
    health: dict[str, Any] | None,
    numbers: list[dict[str, Any]] | None = None,
    deferrals: list[dict[str, Any]] | None = None,
) -> Report:
    report = Report(numbers=[number_row(n) for n in numbers or []], deferrals=deferrals or [])
    report.checks.append(Check("database", True, f"PostgreSQL {version}"))
    report.checks.append(Check("schema", schema.current, schema.describe()))
    if health is not None:
        for item in health["checks"]:
            report.checks.append(Check(item["name"], bool(item["ok"]), str(item["detail"])))
        report.figures.update(ordered(health["figures"]))
    return report


def report(database_url: str) -> Report:
    """The whole report for `pgflow status` (a database that cannot be reached is a check)."""
    try:
        conn = db.connect(database_url, application="status")
    except psycopg.OperationalError as exc:
        return unreachable(exc)
    with conn:
        version = db.server_version().run(conn)
        schema = migrations.compare(db.applied_migrations().run(conn))
        health = db.health().run(conn) if schema.current else None
        numbers = db.number_report().run(conn) if schema.current else None  # status only
        deferrals = db.deferrals().run(conn) if schema.current else None
    return build(version, schema, health, numbers, deferrals)


async def areport(conn: psycopg.AsyncConnection[Any], *, figures: bool = True) -> Report:
    """The same report on an async connection, without the numbers; without `figures`,
    only database and schema."""
    version = await db.server_version().arun(conn)
    schema = migrations.compare(await db.applied_migrations().arun(conn))
    health = await db.health().arun(conn) if figures and schema.current else None
    return build(version, schema, health)


def number_row(row: dict[str, Any]) -> dict[str, Any]:
    rate = row.get("per_second")
    return {**row, "per_second": None if rate is None else float(rate)}
