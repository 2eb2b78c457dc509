"""Greenfield stage: tiers 2-6 absent, as before the release and after a rollback. Approvals
and the ledger are history and may be present."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from harness.catalog import GOVERNED
from invariants.metrics import METRICS, Reading

pytestmark = pytest.mark.greenfield
COLLECTIONS = [name for name, _, _ in GOVERNED]
ABSENT: dict[str, Callable[[dict[str, Any]], bool]] = {
    "owner": lambda f: not f["owners"],
    "axis": lambda f: f["axes"] == 0,
    "label_rule": lambda f: f["label_rules"] == 0,
    "lifecycle": lambda f: f["lifecycle"] == 0,
    "event_binding": lambda f: f["bindings"] == 0,
    "access_policy": lambda f: f["access"] == 0,
}


def test_inventory_is_the_governed_set(facts: dict[str, dict[str, Any]]) -> None:
    """The package's ownership seed names these 35 collections; the inventory must hold exactly them."""
    assert sorted(facts) == sorted(COLLECTIONS)


@pytest.mark.parametrize("facet", list(ABSENT))
def test_collection_has_no_release_facet(collection: str, facet: str, facts: dict[str, dict[str, Any]]) -> None:
    assert collection in facts, f"{collection} is not in the inventory"
    assert ABSENT[facet](facts[collection]), f"{collection}: {facet} is present: {facts[collection]}"
    assert facts[collection]["registered"], f"{collection} is not registered in directus_collections"


@pytest.mark.parametrize("metric", [m for m in METRICS if m not in ("db", "ospa")])
def test_metric_is_greenfield(metric: str, reading: Reading, snapshot: SnapshotAssertion) -> None:
    assert {metric: reading.metrics[metric]} == snapshot


def test_governance_collections_are_not_registered(tier2_registered: set[str]) -> None:
    assert tier2_registered == set()
