"""deploy/: the systemd units are valid (systemd-analyze verify where it exists; parsed and
checked otherwise) and run the commands this package installs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy").glob("*.service"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60}
    for suffix, size in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * size
    return float(value)


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_parse_and_say_what_they_run(path: Path) -> None:
    parsed = unit(path)
    assert set(parsed.sections()) == {"Unit", "Service", "Install"}
    service = parsed["Service"]
    command = service["ExecStart"].split()
    assert command[0].endswith("/bin/pgflow")
    assert command[1] in ("worker", "serve")
    assert service["Restart"] == "always"
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/pgflow-sms/pgflow.env"
    # longer than the drain: the worker's sends in flight (15 s each) or the web requests
    assert seconds(service["TimeoutStopSec"]) > 15
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_the_environment_sample_names_every_setting() -> None:
    sample = (ROOT / "deploy" / "pgflow.env.sample").read_text()
    for name in (
        "DATABASE_URL",
        "RETELL_API_KEY",
        "PGFLOW_LEAD_TOKEN",
        "PGFLOW_EVENTS_TOKEN",
        "PGFLOW_ALERT_WEBHOOK_URL",
        "PGFLOW_LLM_MODEL",
        "PGFLOW_LOG_FORMAT",
    ):
        assert name in sample


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace("/opt/pgflow-sms/.venv/bin/pgflow", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
