"""Greenfield stage: nothing of tiers 2-6 is left anywhere, active or not, as before the release
and after a rollback; the proposal is pending again. Approvals and the ledger are history and
may be present.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from oneroof.core import gate, package, privileges
from oneroof.core.content import FACETS, GOVERNANCE_FACETS, TIER2_COLLECTIONS, TIERS, facet
from oneroof.core.metrics import PINNED, Reading
from oneroof.core.privileges import pinned, shown, unchanged
from oneroof.core.settings import Options
from oneroof.harness.catalog import GOVERNED
from oneroof.harness.db import consistent_read

pytestmark = pytest.mark.greenfield
COLLECTIONS = [name for name, _, _ in GOVERNED]


def test_database_is_the_one_the_run_expects(reading: Reading, oneroof_options: Options) -> None:
    assert reading.metrics["db"] == oneroof_options.expect_db, (
        f"connected to {reading.metrics['db']!r}, but the run expects {oneroof_options.expect_db!r} (--expect-db)"
    )


def test_inventory_is_the_governed_set(target_conn: psycopg.Connection[dict[str, Any]]) -> None:
    """The package's ownership seed names these 35 collections; the inventory must hold exactly them."""
    with consistent_read(target_conn):
        rows = target_conn.execute("SELECT collection FROM os_collection_inventory ORDER BY 1").fetchall()
    assert sorted(r["collection"] for r in rows) == sorted(COLLECTIONS)


@pytest.mark.parametrize("tier", TIERS)
def test_tier_content(tier: str, content: dict[str, dict[str, Any]], snapshot: SnapshotAssertion) -> None:
    """The whole tier at greenfield: no row of it anywhere; the proposal pending, the owner units there."""
    assert content[tier] == snapshot


@pytest.mark.parametrize("facet_name", list(FACETS))
def test_collection_has_no_release_facet(collection: str, facet_name: str, content: dict[str, dict[str, Any]]) -> None:
    found = facet(content, facet_name, collection)
    assert found is None, f"{collection}: {FACETS[facet_name][0]} {facet_name} is left: {found!r}"


@pytest.mark.parametrize("facet_name", list(GOVERNANCE_FACETS))
@pytest.mark.parametrize("governance_collection", TIER2_COLLECTIONS)
def test_governance_collection_is_unregistered(
    governance_collection: str, facet_name: str, content: dict[str, dict[str, Any]]
) -> None:
    found = facet(content, facet_name, governance_collection)
    assert found is None, f"{governance_collection}: tier2_access {facet_name} is left: {found!r}"


@pytest.mark.parametrize("metric", [m for m in PINNED if m != "ospa"])
def test_metric_is_greenfield(metric: str, reading: Reading, snapshot: SnapshotAssertion) -> None:
    assert {metric: reading.metrics[metric]} == snapshot


def test_ledger_chain_holds(ledger_broken: list[str]) -> None:
    """Each ledger row's hash covers its columns and the row before it, and the ledger still holds
    the head the operator's release log recorded (--release-log): no row was edited or deleted.
    """
    assert not ledger_broken, f"os_release_ledger: {'; '.join(ledger_broken)}"


def test_ledger_deployments_verify(ledger_refused: list[str]) -> None:
    """`oneroof approvals verify` of every deployment (history that a rollback keeps): each names
    approvals whose signed statements verify against --allowed-signers, carries exactly their
    nonces, and spends no statement another deployment carried.
    """
    assert not ledger_refused, f"os_release_ledger: {'; '.join(ledger_refused)}"


def test_effective_privileges(
    effective: dict[str, list[str]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """Who can do what in Directus (core/privileges.py): the baseline's set again, nothing of the
    release left; any other gain or loss is named.
    """
    want = pinned(package.snapshots_dir(release_package.path), "greenfield", "test_effective_privileges")
    problem = unchanged(effective, want, "effective Directus privileges differ from the baseline's set")
    assert effective == snapshot, problem  # one assertion: --snapshot-update records it


def test_governance_writes(
    effective: dict[str, list[str]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """Who can write governance records (owners, approvals, proposals, the ledger: os_*): as at the baseline."""
    found = privileges.governance_writes(effective)
    want = pinned(package.snapshots_dir(release_package.path), "greenfield", "test_governance_writes")
    problem = unchanged(found, want, "who can write governance records differs from the baseline's set")
    assert found == snapshot, problem  # one assertion: --snapshot-update records it


def test_no_dispatch_by_other_means(dispatchers: list[str]) -> None:
    """Nothing emits governance events but tier 6's bindings, which the release creates disabled."""
    assert not dispatchers, f"governance events can be dispatched by other means: {shown(dispatchers)}"


def test_nothing_of_the_release_is_left(target_conn: psycopg.Connection[dict[str, Any]]) -> None:
    """No object of any kind tiers 2-6 write or register, by whatever name (gate.leftovers): what
    the gate's state condition requires before a rollout.
    """
    with consistent_read(target_conn):
        found = gate.leftovers(target_conn)
    assert not found, f"tier 2-6 objects are left: {shown(found)}"
