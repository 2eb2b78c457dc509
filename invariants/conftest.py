"""Fixtures shared by the invariant stages: the release package, the gate verdict and the
per-collection governance facts of the target, each read once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from executor import gate, package, signatures
from harness.db import connect, snapshot
from harness.errors import OneroofError
from harness.catalog import GOVERNED
from fixtures.plugin import TARGET, Options

FACTS_SQL = """
SELECT i.collection,
       coalesce((SELECT array_agg(o.owner_unit ORDER BY o.owner_unit) FROM os_collection_owners o
                 WHERE o.collection = i.collection AND o.active), '{}') AS owners,
       (SELECT count(*) FROM os_collection_axes a WHERE a.collection = i.collection) AS axes,
       (SELECT count(*) FROM os_label_rules l WHERE l.collection = i.collection) AS label_rules,
       (SELECT count(*) FROM os_lifecycle_policies c WHERE c.collection = i.collection) AS lifecycle,
       (SELECT count(*) FROM os_event_bindings e WHERE e.collection = i.collection) AS bindings,
       (SELECT count(*) FROM os_event_bindings e WHERE e.collection = i.collection AND e.enabled) AS enabled,
       (SELECT count(*) FROM directus_permissions p JOIN directus_policies pol ON pol.id = p.policy
        WHERE pol.name = 'One-Roof Governance' AND p.collection = i.collection AND p.action = 'read') AS access,
       EXISTS (SELECT 1 FROM directus_collections d WHERE d.collection = i.collection) AS registered
FROM os_collection_inventory i
"""


def governed_collections(config: pytest.Config) -> list[str]:
    """The target's governed collections (its inventory, sorted), read once per process; the
    package's own 35 when there is no target. Every xdist worker reads the same sorted list."""
    if GOVERNED_KEY not in config.stash:
        names = sorted(name for name, _, _ in GOVERNED)
        if TARGET in config.stash:
            try:
                with connect(config.stash[TARGET], application_name="oneroof-verify") as conn:
                    conn.read_only = True
                    rows = conn.execute("SELECT collection FROM os_collection_inventory ORDER BY 1").fetchall()
                    conn.rollback()
                names = [r["collection"] for r in rows] or names
            except (OneroofError, psycopg.Error):
                pass  # the session's start-up check reports the target's problem, once and clearly
        config.stash[GOVERNED_KEY] = names
    return config.stash[GOVERNED_KEY]


GOVERNED_KEY = pytest.StashKey[list[str]]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize per-collection invariants over the target's own inventory."""
    if "collection" in metafunc.fixturenames:
        metafunc.parametrize("collection", governed_collections(metafunc.config))


@pytest.fixture(scope="session")
def release_package(oneroof_options: Options) -> package.Package:
    """The release package, verified (and checked against --expect-sha256 when given)."""
    return package.load(Path(oneroof_options.package), oneroof_options.expect_sha256 or None)


@pytest.fixture(scope="session")
def verdict(target_conn: psycopg.Connection[dict[str, Any]], release_package: package.Package,
            oneroof_options: Options) -> gate.Verdict:
    """The gate's verdict on the target, for the database the run expects, with the approvals'
    statements verified against --allowed-signers."""
    trust = signatures.TrustRoot.load(oneroof_options.allowed_signers) if oneroof_options.allowed_signers else None
    with snapshot(target_conn):
        return gate.evaluate(target_conn, release_package, confirm_db=oneroof_options.expect_db, trust=trust)


@pytest.fixture(scope="session")
def facts(target_conn: psycopg.Connection[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per governed collection: its owners and the count of each facet, from one snapshot."""
    with snapshot(target_conn):
        return {row["collection"]: row for row in target_conn.execute(FACTS_SQL).fetchall()}


@pytest.fixture(scope="session")
def tier2_registered(target_conn: psycopg.Connection[dict[str, Any]]) -> set[str]:
    """The governance collections tier 2 registers that are registered in Directus now."""
    with snapshot(target_conn):
        rows = target_conn.execute(
            "SELECT collection FROM directus_collections WHERE collection = ANY(%s)",
            (list(TIER2_COLLECTIONS),)).fetchall()
    return {r["collection"] for r in rows}


TIER2_COLLECTIONS = ("os_collection_owners", "os_collection_axes", "os_label_rules", "os_lifecycle_policies",
                     "os_event_bindings", "os_gov_events", "os_idle_flags", "os_release_ledger")
