"""`pgflow demo` as a newcomer runs it: a subprocess, then the database it leaves behind;
from a checkout and from the package laid out as a wheel installs it (no checkout around)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgflow import campaigns
from pgflow.db import demo as demo_db
from pgflow.demo import CAMPAIGN, TWILIO_CAMPAIGN, local
from tests.factories import apply_campaign, at, ingest, mark_sent
from tests.processes import ROOT, wait_until

Conn = psycopg.Connection[Any]
CHECKOUT = Path(ROOT)


def demo_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGFLOW_", "RETELL_"))}
    return {**env, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def demo_contacts(db: Conn) -> list[int]:
    return [
        r[0]
        for r in db.execute(
            "select contact_id from pgflow.lead_events where source = 'demo' order by id"
        )
    ]


def installed_env(site: Path, data: Path) -> dict[str, str]:
    """The environment that imports the package from `site`, the user's data folder `data`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGFLOW_", "RETELL_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        PYTHONPATH=str(site),
        XDG_DATA_HOME=str(data),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        COLUMNS="200",
    )
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a wheel installs it (pgflow/, the CLI as pgflow/cli, sql/ as
    pgflow/sql) in a folder of its own, with no checkout around it."""
    base = tmp_path_factory.mktemp("installed")
    site = base / "site-packages"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(CHECKOUT / "pgflow", site / "pgflow", ignore=skip)
    shutil.copytree(CHECKOUT / "cli", site / "pgflow" / "cli", ignore=skip)
    shutil.copytree(CHECKOUT / "sql", site / "pgflow" / "sql", ignore=skip)
    where = subprocess.run(
        [sys.executable, "-c", "import pgflow.demo, pgflow.cli; print(pgflow.demo.__file__)"],
        cwd=base,
        env=installed_env(site, base / "data"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where == str(site / "pgflow" / "demo" / "__init__.py")  # not the checkout's
    return site


@pytest.fixture
def installed(site: Path, tmp_path: Path) -> dict[str, str]:
    """The environment to run the installed package from tmp_path (no checkout there),
    the user's data folder tmp_path/data."""
    return installed_env(site, tmp_path / "data")


@pytest.mark.slow
def test_the_demo_tells_the_whole_story(
    db_url: str, db: Conn, installed: dict[str, str], tmp_path: Path
) -> None:
    """Installed: everything it reads comes from the package, nothing from a checkout."""
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pgflow.cli.main", "demo"],
        cwd=tmp_path,
        env={**installed, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "campaigns applied from pgflow/demo/solar-q4-demo.yaml" in run.stdout
    assert str(CHECKOUT) not in run.stdout
    for line in (
        "OUTCOME success (webhook)",
        "OUTCOME discarded",
        "OUTCOME no_response",
        "OUTCOME escalated",
        "OUTCOME qualified",
        "step 1 deferred",
        "Retell refused",
        "step 1 delivered (Twilio's receipt)",
        "a person answers from the CLI",
        "Twilio carries it as written",
        "person delivered (Twilio's receipt)",
        "OUTCOME success (human)",
        "Where to look next",
    ):
        assert line in run.stdout, line
    contacts = demo_contacts(db)
    assert len(contacts) == 6
    outcomes = db.execute(
        "select ct.first_name, cv.conversion_status, cv.outcome_source"
        " from pgflow.conversations cv join pgflow.contacts ct on ct.id = cv.contact_id"
        " where cv.contact_id = any(%s) order by ct.id, cv.id",
        [contacts],
    ).fetchall()
    assert outcomes == [
        ("Sam", "success", "webhook"),
        ("Pat", "discarded", "rule"),
        ("Lee", "no_response", "rule"),
        ("Kim", "escalated", "rule"),
        ("Ari", "qualified", "rule"),
        ("Jo", "escalated", "rule"),  # Jo asked for a person on Twilio...
        ("Jo", "success", "human"),  # ...who answered, and settled Jo's next conversation
    ]
    # no duplicate sends: each message reached the transport successfully once at most
    assert db.execute(
        "select count(*) from (select message_id from pgflow.message_attempts"
        " where outcome = 'sent' group by message_id having count(*) > 1) d"
    ).fetchone() == (0,)
    # one confirmation for Pat's STOP, and nothing to Pat after it
    pat = contacts[1]
    assert (
        db.execute(
            "select kind, body from pgflow.messages where contact_id = %s"
            " and direction = 'outbound' and delivery_status = 'sent' order by id",
            [pat],
        ).fetchall()[-1][0]
        == "system"
    )
    # no campaign step was sent in a lead's night (Kim's waited and was never sent)
    steps = db.execute(
        "select ct.timezone, m.sent_at, c.window_start, c.window_end, c.window_days"
        " from pgflow.messages m join pgflow.contacts ct on ct.id = m.contact_id"
        " join pgflow.enrollments e on e.id = m.enrollment_id"
        " join pgflow.campaigns c on c.id = e.campaign_id"
        " where m.contact_id = any(%s) and m.kind = 'campaign' and m.sent_at is not null",
        [contacts],
    ).fetchall()
    assert len(steps) == 7  # step 1 x5, Lee's steps 2 and 3
    for zone, sent_at, start, end, days in steps:
        local = sent_at.astimezone(zoneinfo.ZoneInfo(zone))
        assert local.isoweekday() in days
        assert start <= local.time() < end, (zone, local)
    kim = contacts[3]
    assert db.execute(
        "select count(*) from pgflow.messages where contact_id = %s and kind = 'campaign'"
        " and sent_at is not null",
        [kim],
    ).fetchone() == (0,)
    # Retell's injected 500 was retried, and that message was sent once
    retried = db.execute(
        "select a.message_id from pgflow.message_attempts a"
        " where a.status_code = 500 and a.outcome = 'retry'"
    ).fetchall()
    assert len(retried) == 1
    assert db.execute(
        "select delivery_status, attempts from pgflow.messages where id = %s", [retried[0][0]]
    ).fetchone() == ("sent", 2)
    # Jo, on Twilio: every text of ours delivered (receipts), the person's text as written,
    # and no agent text after it; the person's actions in the audit trail
    jo = contacts[5]
    assert db.execute(
        "select kind, delivery_status, transport from pgflow.messages"
        " where contact_id = %s and direction = 'outbound' order by id",
        [jo],
    ).fetchall() == [
        ("campaign", "delivered", "twilio"),
        ("system", "delivered", "twilio"),  # "a member of our team will text you shortly"
        ("human", "delivered", "twilio"),
    ]
    assert db.execute(
        "select actor, action from pgflow.audit_log where contact_id = %s order by id", [jo]
    ).fetchall() == [("cli:dana", "takeover"), ("cli:dana", "reply"), ("cli:dana", "set_outcome")]
    assert took < 120  # the demo's own figure is reported by the closing note, not asserted


@pytest.mark.slow
def test_keep_running_then_ctrl_c_stops_everything(db_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgflow.cli.main", "demo", "--keep-running"],
        cwd=ROOT,
        env=demo_env(db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Running"):
                break
        output = "".join(lines)
        assert "Running" in output, output[-3000:]
        assert "curl" in output
        _sign_in_to_the_console(output)
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 2, children  # pgflow serve and pgflow worker
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        rest = proc.stdout.read()
        assert "everything the demo started is stopped" in rest
        for pid in map(int, children):
            wait_until(lambda: not _alive(pid), timeout=10, what=f"child {pid} gone")  # noqa: B023
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by its parent counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("why", ["not root", "binaries elsewhere"])
def test_without_a_database_the_demo_says_what_it_needs_in_one_line(
    why: str, installed: dict[str, str], tmp_path: Path
) -> None:
    """No DATABASE_URL and no PostgreSQL to start: not root, so nothing to install with (an
    `id` that says so, a version that does not exist), or binaries of one's own that are not
    there. The demo stops before writing anything and says why in one line."""
    env = dict(installed)
    if why == "not root":
        shims = tmp_path / "bin"
        shims.mkdir()
        (shims / "id").write_text("#!/bin/sh\necho 1000\n")
        (shims / "id").chmod(0o755)
        env.update(PGFLOW_PG_VERSION="99", PATH=f"{shims}:{os.environ['PATH']}")
        remedy = "postgresql-99-cron"
    else:
        env.update(PGFLOW_PG_BINDIR=str(tmp_path / "none"))
        remedy = f"PGFLOW_PG_BINDIR to a folder of its binaries ({tmp_path / 'none'} has no"
    run = subprocess.run(
        [sys.executable, "-m", "pgflow.cli.main", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    version = "99" if why == "not root" else "15"
    assert lines[0].startswith(
        f"demo failed: PostgreSQL {version} with pg_cron is needed: set DATABASE_URL to a "
        "server that preloads pg_cron, or "
    ), lines[0]
    assert remedy in lines[0], lines[0]
    assert "starting the local database" in run.stdout
    assert not (tmp_path / "data").exists()  # nothing was written


def test_the_demo_campaign_is_the_example_campaign_sending_every_day() -> None:
    """The demo applies its packaged campaign file, not examples/: it must stay what it is
    derived from, examples/solar.yaml with solar-q4 and solar-q4-twilio copied as the demo's
    campaigns (every day of the week), everything else (agents, numbers, steps, timeouts,
    transports) the example's."""
    example = campaigns.load(CHECKOUT / "examples" / "solar.yaml").doc
    packaged = campaigns.load(local.CAMPAIGN_FILE).doc
    copies = [
        {
            **source,
            "slug": f"{source['slug']}-demo",
            "name": f"{source['name']} (demo)",
            "window_days": [1, 2, 3, 4, 5, 6, 7],
        }
        for source in example["campaigns"]
    ]
    assert [c["slug"] for c in copies] == [CAMPAIGN, TWILIO_CAMPAIGN]
    assert packaged == {**example, "campaigns": copies}


def test_the_demo_reads_only_package_data() -> None:
    package = CHECKOUT / "pgflow"
    assert package in local.CAMPAIGN_FILE.parents
    assert package in local.DB_SCRIPT.parents
    # one copy of the local cluster's script: scripts/db.sh is a link to the packaged one
    assert (CHECKOUT / "scripts" / "db.sh").resolve() == local.DB_SCRIPT


def test_where_the_local_cluster_lives(tmp_path: Path) -> None:
    # from a checkout: the checkout's .pgflow/, as the tests, make and CI use it
    assert local.checkout() == CHECKOUT
    assert local.state_dir({"XDG_DATA_HOME": str(tmp_path)}) == CHECKOUT / ".pgflow"
    # installed: the user's data folder
    installed = tmp_path / "site-packages" / "pgflow" / "demo"
    assert local.checkout(installed) is None
    data = tmp_path / "data"
    assert local.state_dir({"XDG_DATA_HOME": str(data)}, installed) == data / "pgflow-sms"
    default = Path.home() / ".local" / "share" / "pgflow-sms"
    assert local.state_dir({}, installed) == default
    assert local.state_dir({"XDG_DATA_HOME": "relative"}, installed) == default


def test_the_demo_modules_import_downwards() -> None:
    """No import cycles: each module of pgflow/demo/ imports only those below it, never the
    package itself (its __init__ re-exports them)."""
    order = ["local", "cast", "stage", "timeline", "clock", "story"]  # lowest first
    modules = sorted((CHECKOUT / "pgflow" / "demo").glob("*.py"))
    assert sorted(m.stem for m in modules if m.stem != "__init__") == sorted(order)
    for path in modules:
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert not node.level, f"{path.name}: a relative import"
                module = node.module or ""
                names = [f"{module}.{a.name}" if module == "pgflow" else module for a in node.names]
            for name in names:
                if name == "pgflow.demo" or name.startswith("pgflow.demo."):
                    assert name != "pgflow.demo", f"{path.name} imports the package itself"
                    below = name.split(".")[2]
                    assert order.index(below) < order.index(path.stem), (path.name, name)


def test_the_demo_state_counts_each_lead_s_messages(db: Conn) -> None:
    """What the story waits on: per lead, its next send, its conversation and its outbound
    messages counted by where they are (the story's conditions read only this)."""
    apply_campaign(db)
    morning = at("2026-11-23 15:00")  # a Monday, 10:00 in New York: step 1 goes at once
    sam = ingest(db, "(212) 555-0147", morning)["contact_id"]
    lee = ingest(db, "(212) 555-0148", morning)["contact_id"]
    state = {r["contact_id"]: r for r in demo_db.demo_state([lee, sam]).run(db)}
    assert list(state) == sorted([sam, lee])
    for contact in (sam, lee):
        row = state[contact]
        assert (row["sent"], row["pending"], row["agent_sent"]) == (0, 1, 0)
        assert row["next_message_at"] == at("2026-11-24 15:00")  # step 2, a day on
        assert (row["status"], row["conversion_status"]) == ("open", None)
    assert mark_sent(db, morning) == 2
    (row,) = demo_db.demo_state([sam]).run(db)
    assert (row["sent"], row["pending"], row["agent_sent"]) == (1, 0, 0)
    # the cast's numbers: only those no contact has yet
    assert demo_db.unused_phones(["+12125550147", "+12125550199"]).run(db) == ["+12125550199"]


def _sign_in_to_the_console(output: str) -> None:
    """The demo's printed console address and sign-in work in the running demo."""
    found = re.search(r"console: (\S+)/console/ +sign in as (\S+) with password (\S+)", output)
    assert found, output[-3000:]
    base, email, password = found.groups()
    with httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/console/sign-in")
        assert form.status_code == 200
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert nonce
        signed = client.post(
            "/console/sign-in",
            data={"csrf_token": nonce.group(1), "email": email, "password": password},
        )
        assert signed.status_code == 303, signed.text[:500]
        inbox = client.get("/console/")
        assert inbox.status_code == 200
        assert "<h1>Inbox</h1>" in inbox.text
