"""Finalized stage: tiers 2-6 applied, and exactly what the package intends. Each tier's content
(every row with its values) matches its snapshot document; each governed collection's facets
match that document, one test per collection and facet; the owners' approvals are still valid;
the figures match the finalized snapshot; the ledger records the deployment.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from oneroof.core import gate, package, privileges
from oneroof.core.content import FACETS, GOVERNANCE_FACETS, TIER2_COLLECTIONS, TIERS, expected_documents, facet
from oneroof.core.metrics import PINNED, Reading
from oneroof.core.privileges import pinned, shown, unchanged
from oneroof.core.settings import Options
from oneroof.harness.catalog import GOVERNED
from oneroof.harness.db import consistent_read

pytestmark = pytest.mark.finalized
COLLECTIONS = [name for name, _, _ in GOVERNED]


@pytest.fixture(scope="module")
def intended(release_package: package.Package) -> dict[str, dict[str, Any]]:
    return expected_documents(package.snapshots_dir(release_package.path), "finalized")


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
    """The whole tier, every row it writes with its values, as the package's snapshot document."""
    assert content[tier] == snapshot


@pytest.mark.parametrize("facet_name", list(FACETS))
def test_collection_content(
    collection: str, facet_name: str, content: dict[str, dict[str, Any]], intended: dict[str, dict[str, Any]]
) -> None:
    tier = FACETS[facet_name][0]
    want, got = facet(intended, facet_name, collection), facet(content, facet_name, collection)
    assert want is not None, f"{collection}: the package intends no {facet_name} for it ({tier} snapshot)"
    assert got == want, f"{collection}: {tier} {facet_name}: expected {want!r}, found {got!r}"


@pytest.mark.parametrize("facet_name", list(GOVERNANCE_FACETS))
@pytest.mark.parametrize("governance_collection", TIER2_COLLECTIONS)
def test_governance_collection_content(
    governance_collection: str, facet_name: str, content: dict[str, dict[str, Any]], intended: dict[str, dict[str, Any]]
) -> None:
    want, got = facet(intended, facet_name, governance_collection), facet(content, facet_name, governance_collection)
    assert got == want, f"{governance_collection}: tier2_access {facet_name}: expected {want!r}, found {got!r}"


def test_owners_are_ratified_by_valid_approvals(
    collection: str, target_conn: psycopg.Connection[dict[str, Any]], verdict: gate.Verdict
) -> None:
    """Each owner names approvals of its proposal that the gate still counts (not revoked, by an
    active human L2/L4 ...) but for having been spent by the deployment: an approval withdrawn
    after finalization fails every collection.
    """
    with consistent_read(target_conn):
        rows = target_conn.execute(
            "SELECT owner_unit, approval_ids FROM os_collection_owners WHERE collection = %s", (collection,)
        ).fetchall()
    for row in rows:
        standing = set(verdict.valid_approvals) | set(verdict.spent_approvals)
        invalid = sorted(set(row["approval_ids"]) - standing)
        assert row["approval_ids"] and not invalid, (
            f"{collection}: tier3_ownership owner {row['owner_unit']} rests on approvals {row['approval_ids']}, "
            f"of which {invalid or 'none'} are not valid now (valid: {sorted(standing)})"
        )


@pytest.mark.parametrize("metric", [m for m in PINNED if m != "ospa"])
def test_metric_is_finalized(metric: str, reading: Reading, snapshot: SnapshotAssertion) -> None:
    assert {metric: reading.metrics[metric]} == snapshot


def test_ledger_records_each_tier(
    target_conn: psycopg.Connection[dict[str, Any]], release_package: package.Package
) -> None:
    with consistent_read(target_conn):
        rows = target_conn.execute(
            "SELECT DISTINCT ON (tier) tier, action, package_sha256, approval_ids FROM os_release_ledger "
            "ORDER BY tier, id DESC"
        ).fetchall()
    assert [r["tier"] for r in rows] == [t.number for t in release_package.tiers]
    for row in rows:
        assert row["action"] == "deploy" and row["package_sha256"] == release_package.sha256, row
        assert row["approval_ids"], f"tier {row['tier']} was deployed without naming its approvals"


def test_ledger_chain_holds(ledger_broken: list[str]) -> None:
    """Each ledger row's hash covers its columns and the row before it, and the ledger still holds
    the head the operator's release log recorded (--release-log): no row was edited or deleted.
    """
    assert not ledger_broken, f"os_release_ledger: {'; '.join(ledger_broken)}"


def test_ledger_deployments_verify(ledger_refused: list[str]) -> None:
    """`oneroof approvals verify` of every deployment: each names approvals whose signed statements
    verify against --allowed-signers for its package, proposal and target, carries exactly their
    nonces, and spends no statement another deployment carried.
    """
    assert not ledger_refused, f"os_release_ledger: {'; '.join(ledger_refused)}"


def test_effective_privileges(
    effective: dict[str, list[str]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """Who can do what in Directus (core/privileges.py): the baseline's set plus exactly the release's
    grants (the One-Roof policy, to the Governance Council); any other gain or loss is named.
    """
    want = pinned(package.snapshots_dir(release_package.path), "finalized", "test_effective_privileges")
    problem = unchanged(
        effective, want, "effective Directus privileges differ from the baseline's set plus the release's grants"
    )
    assert effective == snapshot, problem  # one assertion: --snapshot-update records it


def test_governance_writes(
    effective: dict[str, list[str]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """Who can write governance records (owners, approvals, proposals, the ledger: os_*): as at the baseline."""
    found = privileges.governance_writes(effective)
    want = pinned(package.snapshots_dir(release_package.path), "finalized", "test_governance_writes")
    problem = unchanged(
        found, want, "who can write governance records differs from the baseline's set plus the release's grants"
    )
    assert found == snapshot, problem  # one assertion: --snapshot-update records it


def test_no_dispatch_by_other_means(dispatchers: list[str]) -> None:
    """Nothing emits governance events but tier 6's bindings, which the release creates disabled."""
    assert not dispatchers, f"governance events can be dispatched by other means: {shown(dispatchers)}"
