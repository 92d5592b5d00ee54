"""deploy/systemd: the worker's units pass `systemd-analyze verify` with no warning (its ExecStart pointed at this
venv's console script, since verify checks that the binary exists), keep their promises (SIGTERM with a stop
timeout for a batch, restart on failure, hardening, no password) and their command line parses. Fails (never
skips) without systemd-analyze; `.ci/run` installs Debian's `systemd` package when it is missing."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/starforge-backfill/venv/bin/starforge-backfill"
UNIT_NAMES = ("starforge-backfill-worker.service", "starforge-backfill-worker@.service")


def console_script() -> Path:
    script = Path(sys.executable).with_name("starforge-backfill")
    assert script.exists(), "the project is not installed in this venv (make install)"
    return script


def verify(tmp_path: Path, name: str, text: str, instance: str = "9464") -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: apt-get install -y --no-install-recommends systemd (.ci/run does)")
    unit = tmp_path / name
    unit.write_text(text.replace(INSTALLED, str(console_script())))
    target = tmp_path / name.replace("@.", f"@{instance}.")
    return subprocess.run(
        [exe, "verify", "--man=no", str(target)], capture_output=True, text=True, timeout=120, check=False
    )


def service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser["Service"]


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_systemd_analyze_verifies_the_unit_without_a_warning(name: str, tmp_path: Path) -> None:
    res = verify(tmp_path, name, (UNITS / name).read_text())
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr


@pytest.mark.parametrize(
    ("line", "broken"),
    [("KillMode=mixed", "KillMode=mixed\nKillSignall=SIGTERM"), ("TimeoutStopSec=6min", "TimeoutStopSec=6 blorps")],
)
def test_the_verify_check_sees_a_broken_unit(line: str, broken: str, tmp_path: Path) -> None:
    text = (UNITS / UNIT_NAMES[0]).read_text()
    assert line in text
    res = verify(tmp_path, UNIT_NAMES[0], text.replace(line, broken))
    assert res.stderr.strip(), "systemd-analyze said nothing about a broken line"


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_the_unit_keeps_its_promises(name: str) -> None:
    s = service(name)
    assert s["KillSignal"] == "SIGTERM" and s["Restart"] == "on-failure"
    minutes = int(s["TimeoutStopSec"].removesuffix("min"))
    assert minutes >= 5, "a batch (statement_timeout 60 s, retries up to retry.max_delay 60 s) must fit"
    assert s["User"] == "starforge-backfill" and s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert s["EnvironmentFile"].startswith("/etc/starforge-backfill/")
    assert "postgresql://" not in (UNITS / name).read_text(), "a DSN belongs in the EnvironmentFile"
    assert "STARFORGE_DATABASE_URL=" in (UNITS / "worker.env.example").read_text()
    assert s["RestartPreventExitStatus"] == "2"  # a configuration error: restarting cannot fix it


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_the_unit_command_line_parses(name: str, tmp_path: Path) -> None:
    """ExecStart's options exist as written: the same argv with --help exits 0 (nothing connects)."""
    argv = shlex.split(service(name)["ExecStart"].replace("%i", "9464"))
    assert argv[0] == INSTALLED and "worker" in argv
    config = tmp_path / "starforge-backfill.yaml"
    shutil.copy(ROOT / "examples" / "starforge-backfill.yaml", config)
    argv = [str(console_script()), *(str(config) if a.endswith(".yaml") else a for a in argv[1:])]
    res = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "SIGTERM" in res.stdout
