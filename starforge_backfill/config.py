"""The toolkit's configuration: one YAML file validated into frozen dataclasses, loaded in one place.

YAML keys are the dataclass field names, except that every duration field (a name ending in ``_s``)
drops that suffix in YAML and accepts a duration: ``30``, ``1.5`` (seconds), ``"500ms"``, ``"30s"``,
``"5m"``, ``"1h"``, ``"2d"``, ``"1h30m"``. So YAML ``database.statement_timeout`` sets
``DatabaseConfig.statement_timeout_s``; likewise database ``lock_timeout``, ``connect_timeout``; retry
``max_delay``, ``wait_initial``, ``wait_max``; job ``claim_ttl``, ``heartbeat``; throttle ``failure_window``,
``long_transaction``, ``replica_lag_max``, ``replica_lag_resume``, ``sleep``, ``check_every``, ``target_batch``;
gates ``ramp_step``; canary ``observe``, ``recent``; events ``retain``.
``examples/starforge-backfill.yaml`` documents every key.
``etl.batch_max_bytes`` takes a size: bytes, or ``"512kB"``/``"64MB"`` (powers of 10), ``"64MiB"`` (of 2).
Precedence: overrides (dotted YAML keys, from command-line options) > environment
(``STARFORGE_DATABASE_URL`` -> ``database.dsn``) > config file > built-in defaults.
A relative ``artifacts_dir`` is relative to the working directory, not to the config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import yaml
from yaml.nodes import MappingNode, Node

from starforge_backfill import redact
from starforge_backfill.config_sections import (
    ApiConfig,
    ApiToken,
    CanaryConfig,
    DatabaseConfig,
    EtlConfig,
    EventsConfig,
    GatesConfig,
    JobConfig,
    LoggingConfig,
    MetricsConfig,
    QuarantineConfig,
    RetryConfig,
    SampleConfig,
    ThrottleConfig,
    _m,
)
from starforge_backfill.errors import ConfigError, ConfigErrors
from starforge_backfill.redact import redact_dsn

DEFAULT_CONFIG_NAME = "starforge-backfill.yaml"
ENV_DSN = "STARFORGE_DATABASE_URL"


@dataclass(frozen=True)
class Config:
    """Every setting of the toolkit; build it with `load_config`, change it with `replace`."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    etl: EtlConfig = field(default_factory=EtlConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    job: JobConfig = field(default_factory=JobConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    artifacts_dir: Path = field(default=Path("artifacts"), metadata=_m("path"))
    source_path: Path | None = None

    def fingerprint(self) -> str:
        """Sha256 of the settings that change what a job writes or how it is gated."""
        data = self.to_dict(redact=True)
        payload = {name: data[name] for name in ("etl", "gates", "throttle")}
        payload["job"] = {"chunk_size": self.job.chunk_size}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def register_secrets(self) -> None:
        """Register the passwords of every secret setting (DSN, metrics URLs): no output shows them."""
        for name in _sections():
            for f in dataclasses.fields(getattr(self, name)):
                if f.metadata.get("secret"):
                    redact.register(getattr(getattr(self, name), f.name))

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Every setting as a plain JSON-able dict (field names); passwords hidden when `redact`."""
        out: dict[str, Any] = {}
        for name in _sections():
            section = {}
            for f in dataclasses.fields(getattr(self, name)):
                value = getattr(getattr(self, name), f.name)
                if redact and f.metadata.get("secret") and isinstance(value, str):
                    value = redact_dsn(value)
                if f.metadata.get("kind") == "tokens":  # names and scopes; a hash only by its first 8 digits
                    value = [{"name": t.name, "scope": t.scope, "sha256": t.sha256[:8] + "..."} for t in value]
                section[f.name] = list(value) if isinstance(value, tuple) else value
            out[name] = section
        out["artifacts_dir"] = str(self.artifacts_dir)
        out["source_path"] = None if self.source_path is None else str(self.source_path)
        return out

    def replace(self, **dotted: Any) -> Config:
        """A new, validated Config with dotted YAML keys changed, e.g. ``**{"etl.batch_size": 50}``."""
        tree: dict[str, tuple[Any, str]] = {}
        _apply_overrides(tree, dotted, skip_none=False)
        return _build(tree, self)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the config: overrides > env > file (default ./starforge-backfill.yaml) > defaults."""
    env = os.environ if env is None else env
    tree: dict[str, tuple[Any, str]] = {}
    problems: list[str] = []  # every error of the file and the values, raised together by _build
    source: Path | None = None
    if path is None and Path(DEFAULT_CONFIG_NAME).exists():
        path = DEFAULT_CONFIG_NAME
    if path is not None:
        source = Path(path)
        if not source.exists():
            hint = f"pass --config PATH, or copy examples/{DEFAULT_CONFIG_NAME} to ./{DEFAULT_CONFIG_NAME}"
            raise ConfigError(f"{path}: config file not found", hint=hint)
        tree.update(_read_file(source, str(path), problems))
        source = source.resolve()
    dsn = env.get(ENV_DSN)
    if dsn:
        tree["database.dsn"] = (dsn, f"${ENV_DSN}")
    _apply_overrides(tree, overrides or {}, skip_none=True)
    cfg = _build(tree, Config(source_path=source), problems)
    cfg.register_secrets()
    return cfg


def _read_file(path: Path, shown: str, problems: list[str] | None = None) -> dict[str, tuple[Any, str]]:
    """The file's settings as {dotted key: (value, "file:line: key")}; bad keys go to `problems` (when given)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read config file: {exc.strerror or exc}") from None
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is None:
            return {}
        if not isinstance(root, MappingNode):
            got = _describe(loader.construct_document(root), secret=True)
            raise ConfigError(f"{shown}:{_line(root)}: top level must be a mapping of sections, got {got}")
        return _walk(loader, root, shown, problems=problems)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc, shown, text)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _walk(
    loader: yaml.SafeLoader,
    node: MappingNode,
    shown: str,
    prefix: str = "",
    tree: dict[str, tuple[Any, str]] | None = None,
    problems: list[str] | None = None,
) -> dict[str, tuple[Any, str]]:
    """Collect {dotted key: (value, "file:line: key")} from a mapping, refusing unknown and duplicate keys."""
    tree = {} if tree is None else tree
    loader.flatten_mapping(node)  # resolve `<<` merge keys
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_document(key_node)
        where = f"{shown}:{_line(key_node)}: {prefix}{key}"
        try:  # every problem of the file is reported at once (ConfigErrors), not one per run
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be strings")
            if key in seen:
                raise ConfigError(f"{where}: duplicate key (first on line {seen[key]})")
            seen[key] = _line(key_node)
            if not prefix and key in _sections():
                if isinstance(value_node, MappingNode):
                    _walk(loader, value_node, shown, f"{key}.", tree, problems)
                elif value_node.tag != "tag:yaml.org,2002:null":  # an empty section means "all defaults"
                    got = _describe(loader.construct_document(value_node), secret=True)
                    raise ConfigError(f"{where}: must be a mapping, got {got}")
                continue
            _require_known(prefix + key, _known_keys(), where)
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        tree[prefix + key] = (loader.construct_document(value_node), where)
    return tree


def _line(node: Node) -> int:
    """The 1-based line a node starts on."""
    return node.start_mark.line + 1


def _yaml_problem(exc: yaml.YAMLError, shown: str, text: str) -> str:
    """One line for a YAML error; never the offending text itself (it may hold a password)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(getattr(exc, "position", None), int):  # yaml.reader.ReaderError
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__
    context = getattr(exc, "context", None)
    if context and not context.startswith("while "):  # e.g. "expected a single document in the stream"
        problem = f"{context}, {problem}"
    if isinstance(getattr(exc, "character", None), int):  # yaml.reader.ReaderError
        problem = f"unacceptable character #x{exc.character:04x}: {problem}"
    return f"{shown}:{line}: invalid YAML: {problem}"


def _sections() -> dict[str, type]:
    """Section name -> its dataclass, in declaration order."""
    fields = dataclasses.fields(Config)
    return {f.name: cast(type, f.default_factory) for f in fields if f.default_factory is not dataclasses.MISSING}


def _yaml_name(f: dataclasses.Field) -> str:
    """A field's YAML key: durations drop the `_s` suffix."""
    return f.name[:-2] if f.metadata.get("kind") == "duration" and f.name.endswith("_s") else f.name


def _known_keys() -> dict[str, tuple[str | None, dataclasses.Field]]:
    """Every valid dotted YAML key -> (section or None for top level, field)."""
    known: dict[str, tuple[str | None, dataclasses.Field]] = {}
    for section, cls in _sections().items():
        for f in dataclasses.fields(cls):
            known[f"{section}.{_yaml_name(f)}"] = (section, f)
    for f in dataclasses.fields(Config):
        if f.metadata.get("kind"):
            known[f.name] = (None, f)
    return known


def _require_known(dotted: str, known: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming the closest valid key when `dotted` is not a setting."""
    if dotted in known:
        return
    section, _, name = dotted.rpartition(".")
    candidates = [*known, *_sections()] if not section else list(known)
    same = [k for k in candidates if k.rpartition(".")[0] == section]
    match = (
        difflib.get_close_matches(dotted, same, n=1, cutoff=0.6)
        or [k for k in known if k.rpartition(".")[2] == name][:1]
        or difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6)
    )
    hint = f" (did you mean {match[0]}?)" if match else ""
    raise ConfigError(f"{where}: unknown key{hint}")


def _apply_overrides(tree: dict[str, tuple[Any, str]], overrides: Mapping[str, Any], *, skip_none: bool) -> None:
    """Put dotted overrides (a whole section may be given as a mapping) on top of `tree`."""
    known = _known_keys()
    for key, value in overrides.items():
        if key in _sections() and isinstance(value, Mapping):
            _apply_overrides(tree, {f"{key}.{k}": v for k, v in value.items()}, skip_none=skip_none)
            continue
        if value is None and skip_none:
            continue
        _require_known(str(key), known, f"--option {key}")
        tree[key] = (value, f"--option {key}")


_ORDERED = (  # (lower key, upper key, strictly lower?)
    ("retry.wait_initial", "retry.wait_max", False),
    ("job.heartbeat", "job.claim_ttl", True),
    ("throttle.min_batch_size", "throttle.max_batch_size", False),
    ("throttle.replica_lag_resume", "throttle.replica_lag_max", False),  # unset (None): half the max
)


def _build(tree: Mapping[str, tuple[Any, str]], base: Config, problems: list[str] | None = None) -> Config:
    """Validate every value in `tree` and return `base` with them applied. Every problem (those already in
    `problems`, and each bad value or order) is raised at once: one ConfigError listing them all."""
    known = _known_keys()
    values: dict[str, Any] = {}
    problems = [] if problems is None else problems
    bad: set[str] = set()

    def current(key: str) -> Any:
        section, f = known[key]
        owner = base if section is None else getattr(base, section)
        return values.get(key, getattr(owner, f.name))

    for key, (raw, where) in tree.items():
        try:
            values[key] = _coerce(raw, known[key][1].metadata)
        except _Bad as exc:
            problems.append(f"{where}: {exc}")
            bad.add(key)
    for low, high, strict in _ORDERED:
        if low in bad or high in bad:
            continue
        lo, hi = current(low), current(high)
        if lo is None or hi is None or lo < hi or (lo == hi and not strict):
            continue
        unit = "s" if known[low][1].metadata["kind"] == "duration" else ""
        if high in tree:
            problems.append(f"{tree[high][1]}: must be {'>' if strict else '>='} {low} ({_fmt(lo)}{unit})")
        else:
            problems.append(f"{tree[low][1]}: must be {'<' if strict else '<='} {high} ({_fmt(hi)}{unit})")
    if problems:
        raise ConfigErrors(sorted(problems, key=_file_line))
    parts: dict[str, Any] = {}
    for section, cls in _sections().items():
        keys = {f.name: f"{section}.{_yaml_name(f)}" for f in dataclasses.fields(cls)}
        kwargs = {name: values[key] for name, key in keys.items() if key in values}
        parts[section] = dataclasses.replace(getattr(base, section), **kwargs)
    top = {k: v for k, v in values.items() if known[k][0] is None}
    return dataclasses.replace(base, **parts, **top)


def _file_line(problem: str) -> tuple[int, str]:
    """Sort key of a problem: its file line (`path:LINE: ...`) first, the others (options, env) after."""
    head = problem.split(": ", 1)[0]
    line = head.rpartition(":")[2]
    return (int(line), "") if line.isdigit() else (1 << 30, problem)


class _Bad(Exception):
    """A value that breaks its key's rules; the message says how."""


_EXPECT = MappingProxyType(
    {
        "bool": "a boolean (true/false)",
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "enum": "a string",
        "url": "an http(s) URL",
        "s3url": "an s3://bucket/prefix URL",
        "path": "a path",
        "query": "a SQL query",
        "ints": "a list of integers",
        "strs": "a list of strings",
        "listen": "HOST:PORT",
        "tokens": "a list of {name, scope, sha256} mappings",
    }
)


def _coerce(value: Any, meta: Mapping[str, Any]) -> Any:
    """Check `value` against a field's metadata and return it converted (float, tuple, Path, ...)."""
    kind, secret = meta["kind"], meta.get("secret", False)
    if value is None and meta.get("optional"):
        return None
    wrong = _Bad(f"must be {_EXPECT.get(kind, kind)}, got {_describe(value, secret)}")
    out: Any
    if kind in ("duration", "size"):
        try:
            out = parse_duration(value) if kind == "duration" else parse_size(value)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
    elif kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        out = value
    elif kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int if kind == "int" else (int, float)):
            raise wrong
        out = value if kind == "int" else float(value)
        if not math.isfinite(out):
            raise _Bad(f"must be a finite number, got {out}")
    elif kind in ("str", "enum", "url", "path", "s3url", "query"):
        if kind == "path" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise wrong
        if not value.strip():
            raise _Bad("must not be empty")
        if kind == "enum" and value not in meta["choices"]:
            raise _Bad(f"must be one of {', '.join(meta['choices'])}; got {value!r}")
        if kind == "url" and not re.match(r"https?://[^/\s]", value):
            raise _Bad("must be an http:// or https:// URL")
        if kind == "s3url" and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?", value):
            raise _Bad("must be an s3://bucket/prefix URL (a lower-case bucket name)")
        if "suffix" in meta and not value.endswith(meta["suffix"]):
            raise _Bad(f"must end in {meta['suffix']} (the node-exporter textfile collector reads only *.prom)")
        if kind == "query":
            from starforge_backfill.sqlview import read_only_problem

            if problem := read_only_problem(value):
                raise _Bad(problem)
        out = Path(value).expanduser() if kind == "path" else value
    elif kind == "listen":
        out = _coerce_listen(value, wrong)
    elif kind == "tokens":
        out = _coerce_tokens(value, wrong)
    else:  # "ints" / "strs"
        out = _coerce_list(value, kind, meta, wrong)
    if kind in ("int", "float", "duration", "size"):
        _check_range(out, meta, "s" if kind == "duration" else "")
    return out


def _coerce_list(value: Any, kind: str, meta: Mapping[str, Any], wrong: _Bad) -> tuple[Any, ...]:
    """Check a list of ints or strings and return it as a tuple."""
    if not isinstance(value, (list, tuple)):
        raise wrong
    want, noun = (int, "an integer") if kind == "ints" else (str, "a string")
    for i, item in enumerate(value, 1):
        if isinstance(item, bool) or not isinstance(item, want):
            raise _Bad(f"item {i} must be {noun}, got {_describe(item)}")
        if isinstance(item, str) and not item.strip():
            raise _Bad(f"item {i} must not be empty")
    out = tuple(value)
    if kind == "ints" and not out:
        raise _Bad("must not be empty")
    if "item_lo" in meta and any(x < meta["item_lo"] for x in out):
        raise _Bad(f"every item must be >= {meta['item_lo']}, got {list(out)}")
    if meta.get("ascending") and any(b < a for a, b in itertools.pairwise(out)):
        raise _Bad(f"must be non-decreasing, got {list(out)}")
    if kind == "strs" and len(set(out)) != len(out):
        raise _Bad(f"must not repeat items, got {list(out)}")
    return out


def _coerce_listen(value: Any, wrong: _Bad) -> str:
    """`HOST:PORT` (an IPv6 host in brackets) with a port in 1..65535."""
    if not isinstance(value, str):
        raise wrong
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value.strip())
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise _Bad(f"must be HOST:PORT with a port in 1..65535 (e.g. 127.0.0.1:8470), got {_describe(value)}")
    return value.strip()


API_SCOPES = ("read", "admin")
_TOKEN_KEYS = ("name", "scope", "sha256")


def _coerce_tokens(value: Any, wrong: _Bad) -> tuple[ApiToken, ...]:
    """A list of {name, scope, sha256}: names unique, scope read or admin, sha256 64 hex digits."""
    if not isinstance(value, (list, tuple)):
        raise wrong
    out: list[ApiToken] = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, Mapping):
            raise _Bad(f"item {i} must be a mapping {{name, scope, sha256}}, got {_describe(item, secret=True)}")
        unknown = sorted(str(k) for k in item if k not in _TOKEN_KEYS)
        missing = [k for k in _TOKEN_KEYS if k not in item]
        if unknown or missing:
            what = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise _Bad(f"item {i}: {what} (each token is {{name, scope, sha256}})")
        name, scope, digest = item["name"], item["scope"], item["sha256"]
        if not isinstance(name, str) or not name.strip():
            raise _Bad(f"item {i}: name must be a non-empty string")
        if scope not in API_SCOPES:
            raise _Bad(f"item {i} ({name}): scope must be one of {', '.join(API_SCOPES)}; got {_describe(scope)}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise _Bad(f"item {i} ({name}): sha256 must be 64 hex digits (`serve hash-token` prints it)")
        if any(t.name == name.strip() for t in out):
            raise _Bad(f"item {i}: name {name.strip()!r} repeats an earlier token's")
        out.append(ApiToken(name.strip(), scope, digest.lower()))
    return tuple(out)


def _check_range(value: float, meta: Mapping[str, Any], unit: str) -> None:
    """Raise _Bad when `value` is outside the field's [lo, hi] (or (lo, hi]) bounds."""
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    too_low = lo is not None and (value < lo or (lo_open and value == lo))
    if too_low or (hi is not None and value > hi):
        bounds = [f"{'>' if lo_open else '>='} {lo}{unit}"] if lo is not None else []
        bounds += [f"<= {hi}{unit}"] if hi is not None else []
        raise _Bad(f"must be {' and '.join(bounds)}, got {_fmt(value)}{unit}")


def _fmt(value: float) -> str:
    """A number for a message: 5, 0.05, 1e+06."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(value: Any, secret: bool = False) -> str:
    """A value's YAML type for an error message, with the value itself when short and not secret."""
    if value is None:
        return "null"
    names = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        ((list, tuple), "a list"),
        (dict, "a mapping"),
    )
    name = next((n for t, n in names if isinstance(value, t)), f"a {type(value).__name__}")
    if secret or not isinstance(value, (bool, int, float, str)):
        return name
    text = repr(value) if isinstance(value, str) else str(value).lower()  # YAML spells booleans true/false
    return f"{name} ({text if len(text) <= 40 else text[:40] + '...'})"


_DURATION_UNITS = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0})
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)"
_SIZE_UNITS = MappingProxyType(
    {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "tb": 10**12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }
)


def parse_duration(value: Any) -> float:
    """Seconds from 30, 1.5, "30s", "500ms", "5m", "1h", "2d" or "1h30m"; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a duration (e.g. 30s, 500ms, 5m, 1h), got {_describe(value)}")
    seconds: float
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION_PART}\s*)+", text):
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(_DURATION_PART, text))
        else:
            raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 500ms, 5m, 1h, 2d)")
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r} (must be finite and >= 0)")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from 1024, "512kB", "64MB" (10^6), "64MiB" (2^20), "1GiB"; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a size (e.g. 64MiB, 512kB, or bytes), got {_describe(value)}")
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)", value.strip())
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"invalid size {value!r} (use e.g. 1048576, 512kB, 64MB, 64MiB, 1GiB)")
        return int(Decimal(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"invalid size {value!r} (must be a whole number of bytes)")
    if value < 0:
        raise ValueError(f"invalid size {value!r} (must be >= 0)")
    return int(value)
