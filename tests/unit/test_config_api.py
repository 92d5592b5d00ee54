"""The `api` section: listen HOST:PORT, tokens as {name, scope, sha256} validated whole (one line each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from starforge_backfill.config import ApiToken, load_config
from starforge_backfill.errors import ConfigError

HEX = "ab" * 32


def load(tmp_path: Path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return load_config(path, env={})


def test_defaults_listen_on_loopback_with_no_token(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    assert cfg.api.listen == "127.0.0.1:8470" and cfg.api.host_port() == ("127.0.0.1", 8470)
    assert cfg.api.tokens == ()


def test_tokens_load_lower_cased_and_only_hash_prefixes_are_shown(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        f"api:\n  listen: '[::1]:9000'\n  tokens:\n    - {{name: alice, scope: admin, sha256: {HEX.upper()}}}\n"
        f"    - {{name: dash, scope: read, sha256: {'cd' * 32}}}\n",
    )
    assert cfg.api.tokens == (ApiToken("alice", "admin", HEX), ApiToken("dash", "read", "cd" * 32))
    assert cfg.api.host_port() == ("::1", 9000)
    shown = cfg.to_dict()["api"]["tokens"]
    assert shown == [
        {"name": "alice", "scope": "admin", "sha256": "abababab..."},
        {"name": "dash", "scope": "read", "sha256": "cdcdcdcd..."},
    ]


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        ("api:\n  listen: 8470\n", "api.listen: must be HOST:PORT"),
        ("api:\n  listen: 'localhost:0'\n", "port in 1..65535"),
        ("api:\n  listen: 'localhost'\n", "must be HOST:PORT"),
        ("api:\n  tokens: {name: a}\n", "must be a list of {name, scope, sha256}"),
        ("api:\n  tokens: [secret]\n", "item 1 must be a mapping"),
        (f"api:\n  tokens: [{{name: a, scope: root, sha256: {HEX}}}]\n", "scope must be one of read, admin"),
        ("api:\n  tokens: [{name: a, scope: read, sha256: abc}]\n", "sha256 must be 64 hex digits"),
        (f"api:\n  tokens: [{{name: a, scope: read, sha256: {'zz' * 32}}}]\n", "sha256 must be 64 hex digits"),
        (f"api:\n  tokens: [{{name: a, scope: read, sha256: {HEX}, token: x}}]\n", "unknown key(s) token"),
        ("api:\n  tokens: [{name: a, scope: read}]\n", "missing sha256"),
        (f"api:\n  tokens: [{{name: ' ', scope: read, sha256: {HEX}}}]\n", "name must be a non-empty string"),
        (
            f"api:\n  tokens: [{{name: a, scope: read, sha256: {HEX}}}, {{name: a, scope: admin, sha256: {HEX}}}]\n",
            "item 2: name 'a' repeats",
        ),
    ],
)
def test_bad_api_settings_are_one_line_config_errors(tmp_path: Path, yaml_text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, yaml_text)
    message = str(info.value)
    assert says in message and "\n" not in message
    assert "x}" not in message  # a token-looking value is never echoed
