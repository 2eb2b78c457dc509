"""Baseline stage: the greenfield production figures of the seed, compared with the snapshot."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from oneroof.core import package, privileges
from oneroof.core.metrics import PINNED, Reading
from oneroof.core.privileges import pinned, shown, unchanged
from oneroof.core.settings import GATE_SESSION_INI, Options
from oneroof.harness.db import consistent_read

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


def test_effective_privileges(
    effective: dict[str, list[str]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """Who can do what in Directus before the release: every role, user, the public and whoever
    may register, through every policy, role parent and access row (core/privileges.py).
    """
    want = pinned(package.snapshots_dir(release_package.path), "baseline", "test_effective_privileges")
    problem = unchanged(effective, want, "effective Directus privileges differ from the baseline's")
    assert effective == snapshot, problem  # one assertion: --snapshot-update records it


def test_governance_writes(
    effective: dict[str, list[str]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """Who can write governance records (owners, approvals, proposals, the ledger: os_*) before the release."""
    found = privileges.governance_writes(effective)
    want = pinned(package.snapshots_dir(release_package.path), "baseline", "test_governance_writes")
    problem = unchanged(found, want, "who can write governance records differs from the baseline's")
    assert found == snapshot, problem  # one assertion: --snapshot-update records it


def test_inventory_content(
    target_conn: psycopg.Connection[dict[str, Any]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """The inventory the tiers classify, by content: each collection's name, domain and sensitivity."""
    with consistent_read(target_conn):
        rows = target_conn.execute("SELECT collection, domain, sensitivity FROM os_collection_inventory").fetchall()
    found = {r["collection"]: {"domain": r["domain"], "sensitivity": r["sensitivity"]} for r in sorted(rows, key=str)}
    found = dict(sorted(found.items()))
    want = pinned(package.snapshots_dir(release_package.path), "baseline", "test_inventory_content")
    changed: list[str] = []
    if want is not None:
        changed = [
            f"os_collection_inventory: {name} is {found.get(name)}, the baseline pins {want.get(name)}"
            for name in sorted(set(want) | set(found))
            if found.get(name) != want.get(name)
        ]
    assert found == snapshot, shown(changed)  # one assertion: --snapshot-update records it


def test_release_grantee_roles(
    target_conn: psycopg.Connection[dict[str, Any]], snapshot: SnapshotAssertion, release_package: package.Package
) -> None:
    """The roles tier 2 grants its policy to, by id and by name: a renamed or swapped role is named."""
    want = pinned(package.snapshots_dir(release_package.path), "baseline", "test_release_grantee_roles") or {}
    with consistent_read(target_conn):
        rows = target_conn.execute(
            "SELECT id::text AS id, name FROM directus_roles WHERE name = ANY (%s) OR id::text = ANY (%s) ORDER BY id",
            (list(privileges.GRANTEES), list(want.values())),
        ).fetchall()
    found = {r["name"]: r["id"] for r in rows}
    changed: list[str] = []
    if want:
        changed = [
            f"directus_roles: the role the release grants to as {name!r} is {found.get(name)}, the baseline pins {wid}"
            for name, wid in sorted(want.items())
            if found.get(name) != wid
        ] + [f"directus_roles: role {rid} is named {name!r}" for name, rid in sorted(found.items()) if name not in want]
    assert found == snapshot, shown(changed)  # one assertion: --snapshot-update records it


def test_no_dispatch_by_other_means(dispatchers: list[str]) -> None:
    """Nothing emits governance events but tier 6's bindings, which the release creates disabled."""
    assert not dispatchers, f"governance events can be dispatched by other means: {shown(dispatchers)}"
