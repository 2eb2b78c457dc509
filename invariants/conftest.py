"""Fixtures shared by the invariant stages: the release package, the gate verdict and the
per-collection governance facts of the target, each read once per session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from oneroof.core import content as invariants_content
from oneroof.core import dispatch, gate, ledger, package, privileges, settings, signatures
from oneroof.core import evidence as rehearsal
from oneroof.core.settings import Options
from oneroof.fixtures.plugin import TARGET, OneroofSnapshots, session_snapshot
from oneroof.harness.catalog import GOVERNED
from oneroof.harness.db import connect, consistent_read, pin_snapshot
from oneroof.harness.errors import OneroofError


def governed_collections(config: pytest.Config) -> list[str]:
    """The target's governed collections (its inventory, sorted), read once per process; the
    package's own 35 when there is no target. Every xdist worker reads the same sorted list.
    """
    if GOVERNED_KEY not in config.stash:
        names = sorted(name for name, _, _ in GOVERNED)
        if TARGET in config.stash:
            try:
                with connect(config.stash[TARGET], application_name="oneroof-verify") as conn:
                    snapshot = session_snapshot(config)
                    if snapshot is not None:  # every xdist worker collects from the session's one snapshot
                        pin_snapshot(conn, snapshot)
                    with consistent_read(conn):
                        rows = conn.execute("SELECT collection FROM os_collection_inventory ORDER BY 1").fetchall()
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
def verdict(
    target_conn: psycopg.Connection[dict[str, Any]], release_package: package.Package, oneroof_options: Options
) -> gate.Verdict:
    """The gate's verdict on the target, for the database the run expects, with the approvals'
    statements verified against --allowed-signers, a target that is not a marked clone bound to
    --rehearsal, and the ledger checked against --release-log.
    """
    pin = oneroof_options.allowed_signers_sha256 or None
    trust = (
        signatures.TrustRoot.load(oneroof_options.allowed_signers, expect_sha256=pin)
        if oneroof_options.allowed_signers
        else None
    )
    bound = rehearsal.load(oneroof_options.rehearsal) if oneroof_options.rehearsal else None  # checked at start-up
    with consistent_read(target_conn):
        return gate.evaluate(
            target_conn,
            release_package,
            confirm_db=oneroof_options.expect_db,
            trust=trust,
            rehearsal=bound,
            release_log=ledger.ReleaseLog.from_setting(oneroof_options.release_log),
            require_user_verification=settings.truthy(oneroof_options.require_user_verification),
        )


@pytest.fixture(scope="session")
def content(target_conn: psycopg.Connection[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What tiers 2-6 wrote on the target, one document per tier, read in one snapshot."""
    with consistent_read(target_conn):
        return invariants_content.read(target_conn)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Syrupy's snapshot, stored with the release package's expected figures (a conftest fixture, so
    it overrides syrupy's own whichever order the plugins load in).
    """
    return snapshot.use_extension(OneroofSnapshots)


@pytest.fixture(scope="session")
def effective(target_conn: psycopg.Connection[dict[str, Any]]) -> dict[str, list[str]]:
    """Who can do what in Directus on the target: every actor's effective permission set."""
    with consistent_read(target_conn):
        return privileges.read(target_conn)


@pytest.fixture(scope="session")
def ledger_broken(target_conn: psycopg.Connection[dict[str, Any]], oneroof_options: Options) -> list[str]:
    """Where the ledger's hash chain breaks, or where it lost the head the operator's release log
    (--release-log) recorded: core/ledger.py, as `oneroof approvals verify` reads it.
    """
    with consistent_read(target_conn):
        return ledger.integrity_problems(
            target_conn,
            ledger.ReleaseLog.from_setting(oneroof_options.release_log),
            gate.system_identifier(target_conn),
        )


@pytest.fixture(scope="session")
def ledger_refused(target_conn: psycopg.Connection[dict[str, Any]], oneroof_options: Options) -> list[str]:
    """Every deployment of the ledger that does not verify against --allowed-signers, one line each."""
    trust = signatures.TrustRoot.load(oneroof_options.allowed_signers) if oneroof_options.allowed_signers else None
    with consistent_read(target_conn):
        return ledger.refused_deployments(target_conn, trust)


@pytest.fixture(scope="session")
def dispatchers(target_conn: psycopg.Connection[dict[str, Any]]) -> list[str]:
    """What could emit governance events on the target besides tier 6's disabled bindings."""
    with consistent_read(target_conn):
        return dispatch.found(target_conn)
