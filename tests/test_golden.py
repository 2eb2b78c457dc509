"""The golden database: its shape, its figures at scales 1 and 2, determinism, and its protections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from oneroof.core import metrics, package
from oneroof.harness import catalog, golden
from oneroof.harness.db import connect
from oneroof.harness.errors import DatabaseExists
from tests.support.testing import PgServer

SEED = {"ospa": 0, "own": 0, "gap": 210, "conflict": 0, "gov_emit": 0, "inventory": 35, "axis": 0, "idle": 0}


def read(dsn: str) -> metrics.Reading:
    with connect(dsn) as conn:
        return metrics.read(conn)


def drop(test_server: PgServer, name: str) -> None:
    with connect(test_server.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def scratch_name(test_server: PgServer, unique: Any) -> Iterator[str]:
    """A database name for a second golden build, dropped after the test."""
    name = unique("golden")
    drop(test_server, name)
    yield name
    drop(test_server, name)


def test_golden_has_the_seed_figures(test_server: PgServer) -> None:
    reading = read(test_server.dsn(test_server.golden))
    assert reading.metrics == {"db": test_server.golden, **SEED, "system_issues": 204_556}


@pytest.mark.slow
def test_scale_two_doubles_the_large_tables_only(test_server: PgServer, scratch_name: str) -> None:
    golden.build(test_server.admin, name=scratch_name, scale=2, package_sha256=package.load().sha256)
    reading = read(test_server.dsn(scratch_name))
    assert reading.metrics == {"db": scratch_name, **SEED, "system_issues": 2 * 204_556}
    with connect(test_server.dsn(scratch_name)) as conn:
        rows = conn.execute("SELECT count(*) AS n FROM kh_documents").fetchone()
    assert rows is not None and rows["n"] == 2 * 40


def test_two_builds_have_the_same_fingerprint(test_server: PgServer, scratch_name: str) -> None:
    golden.build(test_server.admin, name=scratch_name, package_sha256=package.load().sha256)
    assert read(test_server.dsn(scratch_name)).fingerprint == read(test_server.dsn(test_server.golden)).fingerprint


def test_fingerprint_sees_a_changed_governance_row(test_server: PgServer, clone_conn: Any) -> None:
    before = metrics.read(clone_conn).fingerprint
    clone_conn.execute("UPDATE os_owner_units SET name = name || '.' WHERE code = 'DOT'")
    assert metrics.read(clone_conn).fingerprint != before


def test_existing_database_is_not_overwritten(test_server: PgServer) -> None:
    before = read(test_server.dsn(test_server.golden)).fingerprint
    with pytest.raises(DatabaseExists, match="--replace"):
        golden.build(test_server.admin, name=test_server.golden, package_sha256="0" * 64)
    assert read(test_server.dsn(test_server.golden)).fingerprint == before


def test_replace_refuses_a_database_oneroof_did_not_build(test_server: PgServer, admin: Any, scratch_name: str) -> None:
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch_name)))
    with pytest.raises(DatabaseExists, match="not a golden database"):
        golden.build(test_server.admin, name=scratch_name, package_sha256="0" * 64, replace=True)
    with connect(test_server.dsn(scratch_name)) as conn:  # untouched: still empty
        assert conn.execute("SELECT to_regclass('directus_users') AS t").fetchone() == {"t": None}


def test_golden_is_read_only_by_default(test_server: PgServer) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM system_issues WHERE id = 1")


def test_proposal_is_pending_and_names_the_package(test_server: PgServer) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        row = conn.execute("SELECT code, status, package_sha256 FROM os_proposals").fetchall()
    assert row == [{"code": catalog.PROPOSAL_CODE, "status": "pending", "package_sha256": package.load().sha256}]


def test_accounts_cover_every_kind_of_approver(test_server: PgServer) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        rows = conn.execute(
            "SELECT a.kind, a.level, u.status, u.token IS NOT NULL AS has_token FROM os_approvers a "
            "JOIN directus_users u ON u.id = a.user_id ORDER BY a.kind, a.level, u.status"
        ).fetchall()
    humans = {r["level"] for r in rows if r["kind"] == "human" and r["status"] == "active"}
    assert humans == {"L1", "L2", "L3", "L4", "L5"}
    assert any(r["kind"] == "human" and r["status"] == "suspended" for r in rows)
    assert all(r["has_token"] for r in rows if r["kind"] in ("service", "agent"))
    assert {r["kind"] for r in rows} == {"human", "service", "agent"}


def test_directus_tables_use_directus_11_columns(test_server: PgServer) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        columns = {
            (r["table_name"], r["column_name"])
            for r in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name LIKE 'directus\\_%'"
            ).fetchall()
        }
        migrations = conn.execute("SELECT count(*) AS n FROM directus_migrations").fetchone()
    assert ("directus_permissions", "policy") in columns
    assert ("directus_permissions", "role") not in columns  # Directus 10 shape
    assert {("directus_access", c) for c in ("role", "user", "policy")} <= columns
    assert migrations is not None and migrations["n"] > 80
    # Every system table of a Directus 11.3.5 bootstrap: Directus starts on the golden database.
    assert {t for t, _ in columns} == {
        f"directus_{t}"
        for t in (
            "access",
            "activity",
            "collections",
            "comments",
            "dashboards",
            "extensions",
            "fields",
            "files",
            "flows",
            "folders",
            "migrations",
            "notifications",
            "operations",
            "panels",
            "permissions",
            "policies",
            "presets",
            "relations",
            "revisions",
            "roles",
            "sessions",
            "settings",
            "shares",
            "translations",
            "users",
            "versions",
            "webhooks",
        )
    }


def test_governed_collections_are_registered_with_rows(test_server: PgServer) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        registered = {r["collection"] for r in conn.execute("SELECT collection FROM directus_collections")}
        for name, _, _ in catalog.GOVERNED:
            count = conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(name))).fetchone()
            assert count is not None and count["n"] > 0, name
    governed = {name for name, _, _ in catalog.GOVERNED}
    assert len(governed) == 35
    assert governed | set(catalog.UNGOVERNED) | set(catalog.TIER1_REGISTERED) <= registered


def test_build_records_its_provenance(test_server: PgServer) -> None:
    prov = golden.provenance(test_server.admin, test_server.golden)
    assert (prov.kind, prov.scale, prov.describe()) == ("synthetic", 1, "synthetic golden (scale 1)")
    assert prov.taken_at.startswith("20")


def test_a_capture_is_named_after_production_never_as_the_synthetic_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    """capture_<production database>, found in the DSN as libpq finds it (dbname, else PGDATABASE,
    else the user), made a valid name; never the synthetic golden's, whatever production is called.
    """
    from oneroof.executor.rehearse import default_golden
    from oneroof.harness.capture import default_name

    monkeypatch.delenv("PGDATABASE", raising=False)
    assert default_name("host=prod user=readonly dbname=directus") == "capture_directus"
    assert default_name("postgresql://readonly@prod:5432/Hub-Prod.2") == "capture_hub_prod_2"
    assert default_name("host=prod user=readonly") == "capture_readonly"
    monkeypatch.setenv("PGDATABASE", "cms")
    assert default_name("host=prod user=readonly") == "capture_cms"
    assert len(default_name("dbname=" + "x" * 63)) == 63
    assert default_name(f"dbname={catalog.GOLDEN_NAME}") != catalog.GOLDEN_NAME
    assert default_golden(None) == catalog.GOLDEN_NAME
    assert default_golden("host=prod dbname=directus") == "capture_directus"
