"""The one Check type every step reports with, and preflight's reading of the schema check."""

from __future__ import annotations

import pytest

from starforge_backfill.runbook.common import ATTESTED, FAIL, PASS, Check
from starforge_backfill.runbook.preflight import gates_table_present


def test_a_bool_result_becomes_pass_or_fail_and_attested_passes() -> None:
    assert (Check("a", True, "ok").result, Check("b", False, "no").result) == (PASS, FAIL)
    assert Check("c", ATTESTED, "vouched").passed and not Check("d", FAIL, "x").passed
    with pytest.raises(ValueError, match="pass, fail or attested"):
        Check("e", "maybe", "?")


def test_every_check_has_one_json_shape() -> None:
    doc = Check("lag", False, "peak 40s", {"replicas": 1}, value=40.0, threshold=30.0, warning="w").to_json()
    assert doc == {
        "name": "lag",
        "result": "fail",
        "passed": False,
        "detail": "peak 40s",
        "data": {"replicas": 1},
        "value": 40.0,
        "threshold": 30.0,
        "warning": "w",
        "note": None,
    }


@pytest.mark.parametrize(
    ("data", "present"),
    [
        ({"missing_columns": {}}, True),
        ({"missing_columns": {"hero_snapshots": ["raw"]}}, True),
        ({"missing_columns": {"backfill_gates": []}}, False),
        ({}, False),  # the schema check could not read the catalog
    ],
)
def test_a_gate_is_recorded_only_when_the_gates_table_is_known_to_exist(data: dict, present: bool) -> None:
    assert gates_table_present(Check("schema", True, "", data)) is present
