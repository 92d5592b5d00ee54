"""quarantine.* config keys and the S3 object layout (no server needed; the uploads are tested against a real
moto server in tests/integration/test_quarantine_s3.py)."""

from __future__ import annotations

import uuid

import pytest

from starforge_backfill import settings
from starforge_backfill.config import Config
from starforge_backfill.errors import ConfigError, ExitCode
from starforge_backfill.quarantine_s3 import S3Settings, Tally, describe
from starforge_backfill.redact import register


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("quarantine.s3_url", "https://bucket/x", "must be an s3://bucket/prefix URL"),
        ("quarantine.s3_url", "s3://Upper/x", "must be an s3://bucket/prefix URL"),
        ("quarantine.s3_url", "s3://", "must be an s3://bucket/prefix URL"),
        ("quarantine.endpoint_url", "127.0.0.1:9000", "must be an http:// or https:// URL"),
        ("quarantine.upload_attempts", 0, "must be >= 1"),
        ("quarantine.upload_timeout", "0s", "must be > 0"),
    ],
)
def test_bad_quarantine_settings_are_usage_errors(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        Config().replace(**{key: value})
    assert exc.value.exit_code == ExitCode.USAGE and f"--option {key}" in str(exc.value)


def test_no_s3_url_no_uploader_settings() -> None:
    assert settings.quarantine_s3(Config()) is None
    cfg = Config().replace(**{"quarantine.s3_url": "s3://sf-q/a/b/", "quarantine.upload_timeout": "2s"})
    s3 = settings.quarantine_s3(cfg)
    assert s3 is not None and (s3.bucket, s3.prefix, s3.timeout_s, s3.attempts) == ("sf-q", "a/b", 2.0, 3)


def test_object_keys_and_urls() -> None:
    sid = uuid.UUID(int=7)
    assert S3Settings("s3://sf-q/pre/fix").key("job-1", sid) == f"pre/fix/job-1/{sid}.json"
    root = S3Settings("s3://sf-q")
    assert root.prefix == "" and root.key("job-1", sid) == f"job-1/{sid}.json"
    assert root.object_url(root.key("job-1", sid)) == f"s3://sf-q/job-1/{sid}.json"


def test_upload_errors_are_described_without_secrets() -> None:
    register("http://user:hunter2-pw@minio.internal:9000")
    text = describe(RuntimeError("could not reach http://user:hunter2-pw@minio.internal:9000/b"))
    assert "hunter2-pw" not in text and text.startswith("RuntimeError: ")
    tally = Tally(uploaded=["s3://b/k"], local_only={"s2": "e2", "s1": "e1"})
    assert tally.to_json() == {
        "uploaded": 1,
        "local_only": 2,
        "local_only_copies": [{"snapshot_id": "s1", "error": "e1"}, {"snapshot_id": "s2", "error": "e2"}],
    }
