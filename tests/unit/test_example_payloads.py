"""examples/payloads: every file is valid against the contract, or fails it exactly as its README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from starforge_backfill.errors import EtlError
from starforge_backfill.etl import contract

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "payloads"
EXPECTED = {
    "malformed-top-level-array.json": "PARSE_ERROR",
    "malformed-top-level-string.json": "PARSE_ERROR",
    "malformed-missing-profile-data.json": "PARSE_ERROR",
    "malformed-profile-data-not-object.json": "PARSE_ERROR",
    "malformed-troops-not-array.json": "VALIDATION_ERROR",
    "malformed-troop-id-missing.json": "VALIDATION_ERROR",
    "malformed-amount-not-integer.json": "VALIDATION_ERROR",
    "malformed-negative-level.json": "VALIDATION_ERROR",
    "malformed-fractional-amount.json": "VALIDATION_ERROR",
    "malformed-pet-xp-out-of-range.json": "VALIDATION_ERROR",
    "malformed-orbs-used-not-array.json": "VALIDATION_ERROR",
    "malformed-no-namecode.json": "VALIDATION_ERROR",
}


def test_every_malformed_file_is_listed() -> None:
    assert sorted(p.name for p in FOLDER.glob("malformed-*.json")) == sorted(EXPECTED)
    readme = (FOLDER / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in [*EXPECTED, "small.json", "medium.json"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_payloads_fail_as_documented(name: str) -> None:
    with pytest.raises(EtlError) as exc:
        contract.normalize((FOLDER / name).read_bytes(), None)
    assert exc.value.error_type == EXPECTED[name]


def test_no_namecode_is_valid_with_the_column() -> None:
    assert contract.normalize((FOLDER / "malformed-no-namecode.json").read_bytes(), "COL_0001").namecode == "COL_0001"


def test_small_and_medium_are_valid() -> None:
    small = contract.normalize((FOLDER / "small.json").read_bytes(), None)
    assert (len(small.troops), len(small.pets), len(small.artifacts)) == (7, 2, 2)
    assert next(t for t in small.troops if t.troop_id == 6001).amount == 13  # the last duplicate wins
    assert [p.pet_id for p in small.pets] == [101, 102]  # 101 from its key
    assert all("AuthToken" not in str(t.extra) for t in small.troops)
    assert 2_000 < (FOLDER / "small.json").stat().st_size < 8_000
    medium = contract.normalize((FOLDER / "medium.json").read_bytes(), None)
    assert (len(medium.troops), len(medium.pets), len(medium.artifacts)) == (600, 40, 20)
    assert 60_000 < (FOLDER / "medium.json").stat().st_size < 150_000


def test_make_large_is_deterministic_and_rebuilds_medium(tmp_path: Path) -> None:
    script = str(FOLDER / "make_large.py")
    args = ["--troops", "600", "--pets", "40", "--artifacts", "20", "--bulk-kb", "20"]
    subprocess.run([sys.executable, script, *args, str(tmp_path / "m.json")], check=True, capture_output=True)
    assert (tmp_path / "m.json").read_bytes() == (FOLDER / "medium.json").read_bytes()
    subprocess.run([sys.executable, script, str(tmp_path / "large.json")], check=True, capture_output=True)
    large = (tmp_path / "large.json").read_bytes()
    assert 2_000_000 < len(large) < 3_200_000
    assert len(contract.normalize(large, None).troops) == 13_500
