"""redact: the one place passwords are hidden; scrubbing works whether or not logging was set up."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from starforge_backfill import logs, redact
from starforge_backfill.config import load_config


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("postgresql://u:s3cr%40t@h/db", ["s3cr%40t", "s3cr@t"]),
        ("postgresql://u@h/db?password=qp&sslmode=require", ["qp"]),
        ("host=h user=u password='a b\\'c' dbname=d", ["a b'c"]),
        ("host=h password=plain dbname=d", ["plain"]),
        ("host=h sslpassword=keypw", ["keypw"]),
        ("postgresql://u@h/db", []),
        ("", []),
        (None, []),
    ],
)
def test_passwords_in(value: str | None, found: list[str]) -> None:
    assert redact.passwords_in(value) == found


def test_a_registered_secret_is_scrubbed_anywhere_in_text() -> None:
    redact.add_secret("tok-7d1b2a")
    assert (
        redact.scrub_text('{"url": "https://push/x", "note": "tok-7d1b2a"}')
        == '{"url": "https://push/x", "note": "***"}'
    )
    assert redact.scrub_text("x tok-7d1b2a y", extra=["y"]) == "x *** ***"


def test_loading_a_config_registers_its_secrets_without_logging(tmp_path: pytest.TempPathFactory) -> None:
    """A fresh interpreter: no logging handler at all, yet the config's passwords are known to scrub_text."""
    code = (
        "import json, logging\n"
        "from starforge_backfill import logs, redact\n"
        "from starforge_backfill.config import load_config\n"
        "assert logs.current_handler() is None\n"
        "load_config(None, env={}, overrides={'database.dsn': 'postgresql://u:pw-91x7@h/db',"
        " 'metrics.pushgateway_url': 'https://ops:push-55q@gw/'})\n"
        "doc = json.dumps({'seen': 'pw-91x7 and push-55q'})\n"
        "print(redact.scrub_text(doc))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == {"seen": "*** and ***"}


def test_log_lines_use_the_same_registered_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    load_config(None, env={}, overrides={"database.dsn": "host=h password=lg-3k2 dbname=d"})
    log = logging.getLogger("starforge_backfill.test_redact")
    try:
        logs.setup_logging("human", "info")
        log.info("the value lg-3k2 is secret")
    finally:
        logging.getLogger(logs.PACKAGE_LOGGER).removeHandler(logs.current_handler())  # type: ignore[arg-type]
    assert capsys.readouterr().err.strip() == "the value *** is secret"
