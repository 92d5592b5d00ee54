"""Unit tests of the config loader: example file, defaults, precedence, errors, parsing, redaction."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from starforge_backfill import settings
from starforge_backfill.config import (
    DEFAULT_CONFIG_NAME,
    ENV_DSN,
    Config,
    load_config,
    parse_duration,
    parse_size,
    redact_dsn,
)
from starforge_backfill.errors import ConfigError, ExitCode

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "starforge-backfill.yaml"
SECRET = "s3cr3t-pw"
DSN = f"postgresql://backfill:{SECRET}@db.example.internal:5432/starforge"


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    """Write a config file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None = None, **kwargs) -> str:
    """The message of the ConfigError that loading raises."""
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    assert info.value.exit_code == ExitCode.USAGE
    return str(info.value)


def yaml_keys() -> set[str]:
    """Every dotted YAML key a dataclass field maps to (durations drop `_s`)."""
    keys = {"artifacts_dir"}
    for section in dataclasses.fields(Config):
        if section.name in ("artifacts_dir", "source_path"):
            continue
        for f in dataclasses.fields(section.default_factory):
            is_duration = f.name.endswith("_s") and f.type in ("float", float, "float | None")
            keys.add(f"{section.name}.{f.name[:-2] if is_duration else f.name}")
    return keys


# --- the example file -----------------------------------------------------------------------------


def test_example_loads_to_exactly_the_defaults() -> None:
    cfg = load_config(EXAMPLE, env={})
    assert cfg.source_path == EXAMPLE.resolve()
    assert dataclasses.replace(cfg, source_path=None) == Config()


def test_example_has_every_field_so_it_cannot_drift() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    present = {"artifacts_dir"} | {f"{s}.{k}" for s, v in data.items() if isinstance(v, dict) for k in v}
    assert present == yaml_keys()


def test_example_documents_every_key_with_a_comment() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(\s*)(\w+):", line)
        if match and (match.group(1) or match.group(2) == "artifacts_dir"):
            assert lines[i - 1].lstrip().startswith("#"), f"line {i + 1}: {match.group(2)} has no comment"


def test_example_keeps_no_password_on_disk() -> None:
    assert yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["database"]["dsn"] is None


# --- defaults and precedence -------------------------------------------------------------------------


def test_no_file_gives_pure_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.source_path is None
    assert cfg.etl.batch_max_bytes == 64 * 1024**2
    assert cfg.gates.ramp == (1, 2, 4)
    assert cfg.canary.recent_s == 7 * 86400
    assert cfg.artifacts_dir == Path("artifacts")


def test_default_file_in_working_directory_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "etl:\n  batch_size: 99\n", DEFAULT_CONFIG_NAME)
    cfg = load_config(env={})
    assert cfg.etl.batch_size == 99
    assert cfg.source_path == (tmp_path / DEFAULT_CONFIG_NAME).resolve()


def test_environment_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_DSN, DSN)
    assert load_config().database.dsn == DSN


@pytest.mark.parametrize(
    ("in_file", "in_env", "in_override", "expected"),
    [
        (False, False, False, None),
        (True, False, False, "postgresql://file/db"),
        (True, True, False, "postgresql://env/db"),
        (True, True, True, "postgresql://option/db"),
        (False, False, True, "postgresql://option/db"),
    ],
)
def test_precedence_override_env_file_default(
    tmp_path: Path, in_file: bool, in_env: bool, in_override: bool, expected: str | None
) -> None:
    path = write(tmp_path, "database:\n  dsn: postgresql://file/db\n" if in_file else "")
    env = {ENV_DSN: "postgresql://env/db"} if in_env else {}
    overrides = {"database.dsn": "postgresql://option/db"} if in_override else {}
    assert load_config(path, env=env, overrides=overrides).database.dsn == expected


def test_overrides_use_yaml_names_and_ignore_none(tmp_path: Path) -> None:
    path = write(tmp_path, "etl:\n  batch_size: 100\nartifacts_dir: from-file\n")
    overrides = {
        "etl.batch_size": None,
        "artifacts_dir": tmp_path / "out",
        "canary.observe": "5m",
        "database.dsn": None,
    }
    cfg = load_config(path, env={ENV_DSN: DSN}, overrides=overrides)
    assert cfg.etl.batch_size == 100
    assert cfg.artifacts_dir == tmp_path / "out"
    assert cfg.canary.observe_s == 300.0
    assert cfg.database.dsn == DSN


def test_file_values_are_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
database:
  statement_timeout: 1m30s
  lock_timeout: 500ms
  max_connections_share: 1
etl:
  batch_max_bytes: 512kB
  catalog_policy: fail
gates:
  required_approvals: [sre]
  ramp: [1, 1, 8]
canary:
  recent: 2d
throttle:
  check_every: 250ms
""",
    )
    cfg = load_config(path, env={})
    assert cfg.database.statement_timeout_s == 90.0
    assert cfg.database.lock_timeout_s == 0.5
    assert cfg.database.max_connections_share == 1.0
    assert isinstance(cfg.database.max_connections_share, float)
    assert cfg.etl.batch_max_bytes == 512_000
    assert cfg.etl.catalog_policy == "fail"
    assert cfg.gates.required_approvals == ("sre",)
    assert cfg.gates.ramp == (1, 1, 8)
    assert cfg.canary.recent_s == 2 * 86400.0
    assert settings.throttle(cfg).check_every_s == 0.25


def test_empty_file_and_empty_section_mean_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here\n")
    assert load_config(path, env={}) == Config(source_path=path.resolve())
    assert load_config(write(tmp_path, "etl:\n"), env={}).etl == Config().etl


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().etl.batch_size = 1  # type: ignore[misc]


# --- errors: one line, file:line: key: what is wrong -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("etl:\n  batch_sise: 5\n", "2: etl.batch_sise: unknown key (did you mean etl.batch_size?)"),
        ("databse:\n  dsn: x\n", "1: databse: unknown key (did you mean database?)"),
        ("etl:\n  owner: me\n", "2: etl.owner: unknown key (did you mean job.owner?)"),
        (
            "database:\n  statement_timeout_s: 5\n",
            "2: database.statement_timeout_s: unknown key (did you mean database.statement_timeout?)",
        ),
        ("etl:\n  batch_size: true\n", "2: etl.batch_size: must be an integer, got a boolean (true)"),
        ("etl:\n  batch_size: 5.0\n", "2: etl.batch_size: must be an integer, got a number (5.0)"),
        (
            "database:\n  max_connections_share: half\n",
            "2: database.max_connections_share: must be a number, got a string ('half')",
        ),
        ("etl:\n  fast_path: 1\n", "2: etl.fast_path: must be a boolean (true/false), got an integer (1)"),
        ("etl:\n  catalog_policy: skip\n", "2: etl.catalog_policy: must be one of placeholder, fail; got 'skip'"),
        ("logging:\n  level: verbose\n", "2: logging.level: must be one of debug, info, warning, error; got 'verbose'"),
        (
            "database:\n  statement_timeout: 5 minutes\n",
            "2: database.statement_timeout: invalid duration '5 minutes' (use e.g. 30s, 500ms, 5m, 1h, 2d)",
        ),
        (
            "canary:\n  recent: 2024-01-01\n",
            "2: canary.recent: must be a duration (e.g. 30s, 500ms, 5m, 1h), got a date",
        ),
        (
            "etl:\n  batch_max_bytes: 64M\n",
            "2: etl.batch_max_bytes: invalid size '64M' (use e.g. 1048576, 512kB, 64MB, 64MiB, 1GiB)",
        ),
        ("etl:\n  batch_size: 0\n", "2: etl.batch_size: must be >= 1 and <= 10000, got 0"),
        ("database:\n  max_connections_share: 0\n", "2: database.max_connections_share: must be > 0 and <= 1, got 0"),
        ("job:\n  claim_ttl: 0s\n", "2: job.claim_ttl: must be > 0s, got 0s"),
        ("metrics:\n  port: 70000\n", "2: metrics.port: must be >= 1 and <= 65535, got 70000"),
        (
            "metrics:\n  prometheus_url: localhost:9090\n",
            "2: metrics.prometheus_url: must be an http:// or https:// URL",
        ),
        ("gates:\n  ramp: []\n", "2: gates.ramp: must not be empty"),
        ("gates:\n  ramp: [1, 4, 2]\n", "2: gates.ramp: must be non-decreasing, got [1, 4, 2]"),
        ("gates:\n  ramp: [0, 1]\n", "2: gates.ramp: every item must be >= 1, got [0, 1]"),
        ("gates:\n  ramp: [1, true]\n", "2: gates.ramp: item 2 must be an integer, got a boolean (true)"),
        ("gates:\n  ramp: 4\n", "2: gates.ramp: must be a list of integers, got an integer (4)"),
        (
            "gates:\n  required_approvals: [sre, sre]\n",
            "2: gates.required_approvals: must not repeat items, got ['sre', 'sre']",
        ),
        ("job:\n  owner: ''\n", "2: job.owner: must not be empty"),
        ("job:\n  owner:\n", "2: job.owner: must be a string, got null"),
        ("job:\n  heartbeat: 2m\n", "2: job.heartbeat: must be < job.claim_ttl (120s)"),
        ("throttle:\n  max_batch_size: 5\n", "2: throttle.max_batch_size: must be >= throttle.min_batch_size (10)"),
        ("etl:\n  batch_size: 5\n  batch_size: 6\n", "3: etl.batch_size: duplicate key (first on line 2)"),
        ("etl: 5\n", "1: etl: must be a mapping, got an integer"),
        ("etl:\n  1: 5\n", "2: etl.1: keys must be strings"),
        ("artifacts_dir: [a]\n", "1: artifacts_dir: must be a path, got a list"),
        ("- etl\n- job\n", "1: top level must be a mapping of sections, got a list"),
        ("etl:\n  batch_size: [1, 2\n", "3: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("etl:\n  batch_size: 5\n   fast_path: true\n", "3: invalid YAML: mapping values are not allowed here"),
        ("etl:\n\tbatch_size: 5\n", "2: invalid YAML: found character '\\t' that cannot start any token"),
        (
            "etl: {}\n---\njob: {}\n",
            "2: invalid YAML: expected a single document in the stream, but found another document",
        ),
        (
            "etl: !!python/object/apply:os.system ['true']\n",
            "1: invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
        (
            "etl:\n  batch_size: 5\x00\n",
            "2: invalid YAML: unacceptable character #x0000: special characters are not allowed",
        ),
    ],
)
def test_file_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}:{message}"


def test_missing_explicit_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert load_error(path) == f"{path}: config file not found"


def test_override_and_env_errors_name_their_source() -> None:
    assert load_error(overrides={"etl.batch_size": 0}) == ("--option etl.batch_size: must be >= 1 and <= 10000, got 0")
    assert load_error(overrides={"etl.batchsize": 1}) == (
        "--option etl.batchsize: unknown key (did you mean etl.batch_size?)"
    )
    assert load_error(overrides={"etl.batch_size": "50"}) == (
        "--option etl.batch_size: must be an integer, got a string ('50')"
    )
    assert load_error(env={ENV_DSN: "   "}) == f"${ENV_DSN}: must not be empty"


@pytest.mark.parametrize(
    "text",
    [
        f"database:\n  dsn: {DSN}\n  x: [\n",
        f'database:\n  dsn: "{DSN}\n',
        f"database:\n  dsn: {{url: '{DSN}', password: {SECRET}}}\n",
        f"database:\n  dsn: {DSN}\n  bogus: 1\n",
        f"database:\n  dsn: {DSN}\n\tx: 1\n",
        f"database: [{DSN}]\n",
        f"[{DSN}]\n",
    ],
)
def test_errors_never_show_the_password(tmp_path: Path, text: str) -> None:
    assert SECRET not in load_error(write(tmp_path, text))


# --- durations and sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        (0, 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        (" 1h30m ", 5400.0),
        ("1m 30s", 90.0),
        (".5s", 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", [True, None, [1], "", "abc", "5 minutes", "-5s", -1, "5M", "1e3", "nan", float("inf"), "s", "5s5"]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        (1024.0, 1024),
        ("1024", 1024),
        ("512kB", 512_000),
        ("512KB", 512_000),
        ("64MB", 64_000_000),
        ("64MiB", 64 * 2**20),
        ("1GiB", 2**30),
        ("1.5KiB", 1536),
        ("10 B", 10),
        ("2TB", 2 * 10**12),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [True, None, [1], "", "64M", "lots", "-1", -1, 1.5, "1.5.5MB", "MB"])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


# --- fingerprint, to_dict, replace -------------------------------------------------------------------


def test_fingerprint_ignores_settings_that_do_not_change_the_writes(tmp_path: Path) -> None:
    base = load_config(write(tmp_path, "etl:\n  batch_size: 100\n"), env={})
    irrelevant = (
        "etl:\n  batch_size: 100\nartifacts_dir: elsewhere\nlogging:\n  format: json\n"
        "retry:\n  max_attempts: 9\nmetrics:\n  port: 9100\ndatabase:\n  statement_timeout: 5s\n"
    )
    other = load_config(write(tmp_path, irrelevant, "b.yaml"), env={ENV_DSN: DSN})
    assert re.fullmatch(r"[0-9a-f]{64}", base.fingerprint())
    assert other.fingerprint() == base.fingerprint()
    assert base.replace(**{"database.dsn": "postgresql://x/y"}).fingerprint() == base.fingerprint()
    assert (
        base.replace(**{"gates.ramp_step": "1m"}).fingerprint() == base.replace(**{"gates.ramp_step": 60}).fingerprint()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"etl.catalog_policy": "fail"},
        {"etl.batch_size": 50},
        {"job.chunk_size": 10},
        {"gates.ramp": [1, 8]},
        {"throttle.failure_rate_max": 0.05},
        {"etl.fast_path": False},
    ],
)
def test_fingerprint_changes_with_what_a_job_writes_or_its_gates(change: dict) -> None:
    assert Config().replace(**change).fingerprint() != Config().fingerprint()


def test_to_dict_is_json_and_redacts_every_password() -> None:
    cfg = Config().replace(**{"database.dsn": DSN, "metrics.pushgateway_url": f"https://ci:{SECRET}@push.example"})
    data = cfg.to_dict()
    text = json.dumps(data)
    assert SECRET not in text
    assert data["database"]["dsn"] == "postgresql://backfill:***@db.example.internal:5432/starforge"
    assert data["database"]["statement_timeout_s"] == 60.0
    assert data["gates"]["ramp"] == [1, 2, 4]
    assert data["artifacts_dir"] == "artifacts"
    assert SECRET in json.dumps(cfg.to_dict(redact=False))
    assert set(data) == {f.name for f in dataclasses.fields(Config)}


def test_replace_returns_a_new_validated_config() -> None:
    cfg = Config()
    new = cfg.replace(**{"etl.batch_size": 50, "throttle.sleep": "250ms", "artifacts_dir": "out"})
    assert (new.etl.batch_size, new.throttle.sleep_s, new.artifacts_dir) == (50, 0.25, Path("out"))
    assert cfg.etl.batch_size == 250
    assert new.replace(**{"database.dsn": DSN}).replace(**{"database.dsn": None}).database.dsn is None
    with pytest.raises(ConfigError, match=r"^--option retry.wait_initial: must be <= retry.wait_max \(5s\)$"):
        cfg.replace(**{"retry.wait_initial": 10})
    with pytest.raises(ConfigError, match=r"did you mean etl\.batch_size"):
        cfg.replace(**{"etl.batchsize": 1})


# --- redact_dsn --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (DSN, "postgresql://backfill:***@db.example.internal:5432/starforge"),
        ("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://backfill@db:5432/starforge", "postgresql://backfill@db:5432/starforge"),
        ("postgresql://db/starforge", "postgresql://db/starforge"),
        ("postgresql://h1:5432,h2:5433/db", "postgresql://h1:5432,h2:5433/db"),
        ("postgresql://[::1]:5432/db", "postgresql://[::1]:5432/db"),
        (
            "postgresql://h/db?user=u&password=pw&sslmode=require",
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        ("host=db user=backfill password=pw dbname=starforge", "host=db user=backfill password=*** dbname=starforge"),
        ("host=db password = 'p w\\'x' dbname=s", "host=db password = *** dbname=s"),
        ("host=db user=backfill dbname=starforge", "host=db user=backfill dbname=starforge"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://u:{SECRET}@h/db",
        f"postgresql://u:{SECRET}/x@h/db",
        f"postgresql://u:{SECRET}?x@h/db",
        f"postgresql://u:{SECRET}",
        f"u:{SECRET}@host/db",
        f"u:{SECRET}@host/db?sslmode=require",
        f"host=h password='{SECRET}",
        f"host=h PASSWORD={SECRET}",
        f"::::{SECRET}@@@",
        f"postgresql://:{SECRET}@",
    ],
)
def test_redact_dsn_never_returns_the_password_of_garbage(dsn: str) -> None:
    assert SECRET not in redact_dsn(dsn)


@pytest.mark.parametrize("garbage", ["", "not a dsn", "@@@", "://", "=", None, 42, b"bytes"])
def test_redact_dsn_never_raises(garbage: object) -> None:
    assert isinstance(redact_dsn(garbage), str)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"retrying postgresql://u:{SECRET}@db/x now", "retrying postgresql://u:***@db/x now"),
        (f"retrying postgresql://u:p@{SECRET}@db/x now", "retrying postgresql://u:***@db/x now"),  # '@' in it
        (f"host=db password='{SECRET}' user=u", "host=db password=*** user=u"),
        (f"postgresql://db/x?password={SECRET}&a=b", "postgresql://db/x?password=***"),  # the rest goes too
        ("postgresql://u@db/x, no password", "postgresql://u@db/x, no password"),
    ],
)
def test_scrub_text_hides_passwords_in_free_text(text: str, shown: str) -> None:
    from starforge_backfill import redact

    assert redact.scrub_text(text) == shown


def test_every_config_error_is_reported_at_once(tmp_path: Path) -> None:
    from starforge_backfill.config import load_config as load

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "job:\n  chunk_sise: 5\n  concurrency: many\nthrottle:\n  sleep: forever\n"
        "  min_batch_size: 500\n  max_batch_size: 100\netl:\n  catalog_policy: maybe\n"
    )
    with pytest.raises(ConfigError) as info:
        load(bad, env={})
    problems = info.value.problems  # type: ignore[attr-defined]
    assert [p.split(": ")[0].rpartition(":")[2] for p in problems] == ["2", "3", "5", "7", "9"]  # by line
    assert [p.split(": ")[1] for p in problems] == [
        "job.chunk_sise",
        "job.concurrency",
        "throttle.sleep",
        "throttle.max_batch_size",
        "etl.catalog_policy",
    ]
    assert str(info.value).startswith("5 config errors: ")
    # one problem: the message as before
    one = tmp_path / "one.yaml"
    one.write_text("job:\n  chunk_sise: 5\n")
    with pytest.raises(ConfigError, match=r"^\S+one.yaml:2: job.chunk_sise: unknown key \(did you mean job.chunk_s"):
        load(one, env={})


def test_the_cli_prints_one_error_line_per_config_problem(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from starforge_backfill.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("job:\n  chunk_sise: 5\netl:\n  catalog_policy: maybe\n")
    res = CliRunner().invoke(main, ["-c", str(bad), "status"], env={"STARFORGE_DATABASE_URL": ""})
    assert res.exit_code == ExitCode.USAGE
    assert res.stderr.splitlines() == [
        f"error: {bad}:2: job.chunk_sise: unknown key (did you mean job.chunk_size?)",
        f"error: {bad}:4: etl.catalog_policy: must be one of placeholder, fail; got 'maybe'",
    ]
