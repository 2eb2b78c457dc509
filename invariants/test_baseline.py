"""Baseline stage: the greenfield production figures of the seed, compared with the snapshot."""

from __future__ import annotations

import pytest
from syrupy.assertion import SnapshotAssertion

from oneroof.core.metrics import PINNED, Reading
from oneroof.core.settings import GATE_SESSION_INI, Options

pytestmark = pytest.mark.baseline


def test_database_is_the_one_the_run_expects(reading: Reading, oneroof_options: Options) -> None:
    assert reading.metrics["db"] == oneroof_options.expect_db


@pytest.mark.parametrize("metric", PINNED)
def test_metric_matches_baseline(
    metric: str, reading: Reading, snapshot: SnapshotAssertion, pytestconfig: pytest.Config
) -> None:
    if metric == "ospa" and pytestconfig.getini(GATE_SESSION_INI):
        pytest.skip("gate session: the approvals are judged by test_gate_condition_holds[approvals]")
    assert {metric: reading.metrics[metric]} == snapshot
