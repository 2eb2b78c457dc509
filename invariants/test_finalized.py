"""Finalized stage: tiers 2-6 applied. Every governed collection has each facet, the figures
match the finalized snapshot, the ownership map matches its snapshot, the ledger records it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from executor import package
from harness.db import snapshot
from harness.catalog import GOVERNED, OWNER_UNITS
from invariants.conftest import TIER2_COLLECTIONS
from invariants.metrics import METRICS, Reading

pytestmark = pytest.mark.finalized
COLLECTIONS = [name for name, _, _ in GOVERNED]
CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "one_owner": lambda f: len(f["owners"]) == 1 and f["owners"][0] in OWNER_UNITS,
    "axis": lambda f: f["axes"] > 0,
    "label_rule": lambda f: f["label_rules"] > 0,
    "lifecycle": lambda f: f["lifecycle"] == 1,
    "event_binding_disabled": lambda f: f["bindings"] > 0 and f["enabled"] == 0,
    "access_policy": lambda f: f["access"] == 1,
    "registered": lambda f: f["registered"],
}


def test_inventory_is_the_governed_set(facts: dict[str, dict[str, Any]]) -> None:
    """The package's ownership seed names these 35 collections; the inventory must hold exactly them."""
    assert sorted(facts) == sorted(COLLECTIONS)


@pytest.mark.parametrize("facet", list(CHECKS))
def test_collection_is_governed(collection: str, facet: str, facts: dict[str, dict[str, Any]]) -> None:
    assert collection in facts, f"{collection} is not in the inventory"
    assert CHECKS[facet](facts[collection]), f"{collection}: {facet} does not hold: {facts[collection]}"


@pytest.mark.parametrize("metric", [m for m in METRICS if m not in ("db", "ospa")])
def test_metric_is_finalized(metric: str, reading: Reading, snapshot: SnapshotAssertion) -> None:
    assert {metric: reading.metrics[metric]} == snapshot


def test_ownership_map(facts: dict[str, dict[str, Any]], snapshot: SnapshotAssertion) -> None:
    assert {c: "/".join(f["owners"]) for c, f in sorted(facts.items())} == snapshot


def test_governance_collections_are_registered(tier2_registered: set[str]) -> None:
    assert tier2_registered == set(TIER2_COLLECTIONS)


def test_ledger_records_each_tier(target_conn: psycopg.Connection[dict[str, Any]],
                                  release_package: package.Package) -> None:
    with snapshot(target_conn):
        rows = target_conn.execute(
            "SELECT DISTINCT ON (tier) tier, action, package_sha256, approval_ids FROM os_release_ledger "
            "ORDER BY tier, id DESC").fetchall()
    assert [r["tier"] for r in rows] == [t.number for t in release_package.tiers]
    for row in rows:
        assert row["action"] == "deploy" and row["package_sha256"] == release_package.sha256, row
        assert row["approval_ids"], f"tier {row['tier']} was deployed without naming its approvals"


def test_owners_name_the_approvals_that_ratified_them(target_conn: psycopg.Connection[dict[str, Any]]) -> None:
    with snapshot(target_conn):
        rows = target_conn.execute(
            "SELECT o.collection FROM os_collection_owners o WHERE o.active AND (cardinality(o.approval_ids) = 0 "
            "OR EXISTS (SELECT 1 FROM unnest(o.approval_ids) AS a (id) WHERE NOT EXISTS ("
            "SELECT 1 FROM os_proposal_approvals p WHERE p.id = a.id AND p.proposal_id = o.proposal_id)))"
        ).fetchall()
    assert rows == []
