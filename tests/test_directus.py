"""The golden database against a real Directus 11.3.5: the system tables' columns match a fresh
bootstrap, and the golden layer applied to a bootstrapped database is served by Directus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oneroof.core import package
from oneroof.executor.monitor import monitor
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from tests.support.directus import (
    DirectusClient,
    DirectusDatabase,
    DirectusServer,
    Installation,
    columns,
    ratify_on_clone,
)
from tests.support.testing import PgServer, signers

pytestmark = pytest.mark.directus
SIGNERS = signers()


SYSTEM_TABLES_SQL = (
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
    "AND table_name LIKE 'directus\\_%' ORDER BY table_name"
)
# Keys, checks, foreign keys and indexes of the directus_* tables, by name and definition.
STRUCTURE_SQL = """
SELECT 'constraint' AS kind, c.conrelid::regclass::text AS tbl, c.conname AS name, pg_get_constraintdef(c.oid) AS def
FROM pg_constraint AS c WHERE c.conrelid::regclass::text LIKE 'directus\\_%%'
UNION ALL
SELECT 'index', i.tablename, i.indexname, i.indexdef FROM pg_indexes AS i
WHERE i.schemaname = 'public' AND i.tablename LIKE 'directus\\_%%'
ORDER BY 1, 2, 3"""


def structure(conn: Any) -> list[tuple[str, str, str, str]]:
    return [(r["kind"], r["tbl"], r["name"], r["def"]) for r in conn.execute(STRUCTURE_SQL).fetchall()]


def test_golden_system_tables_match_a_real_bootstrap(test_server: PgServer, directus_db: DirectusDatabase) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        tables = [r["table_name"] for r in conn.execute(SYSTEM_TABLES_SQL).fetchall()]
        ours, our_structure = columns(conn), structure(conn)
    with connect(directus_db.dsn) as conn:
        bootstrapped = [r["table_name"] for r in conn.execute(SYSTEM_TABLES_SQL).fetchall()]
        real, real_structure = columns(conn), structure(conn)
    # Every system table a bootstrap creates, not a subset: Directus starts on the golden database.
    assert tables == bootstrapped and len(tables) == 27, (tables, bootstrapped)
    assert len(ours) > 300, len(ours)
    differences = [
        f"{column}: golden {ours.get(column)}, Directus {real.get(column)}"
        for column in sorted(ours.keys() | real.keys())
        if ours.get(column) != real.get(column)
    ]
    assert not differences, "golden DDL differs from directus@11.3.5:\n" + "\n".join(differences)
    assert len(real_structure) > 100
    extra = sorted(set(our_structure) ^ set(real_structure))
    assert not extra, "keys and indexes differ from directus@11.3.5:\n" + "\n".join(map(str, extra))


def test_directus_serves_a_clone_of_the_golden_and_a_human_ratifies_there(
    directus_install: Installation, test_server: PgServer, tmp_path: Path
) -> None:
    """Directus 11.3.5 starts on a clone of the synthetic golden database as it is (no bootstrap),
    and the L4 human approver logs in through /auth/login and ratifies through REST: the gate opens.
    """
    made = clones.create(test_server.admin, source=test_server.golden, name=clones.default_name("t_dx"), wait=60)
    try:
        running, approved = ratify_on_clone(
            directus_install, made.dsn, tmp_path, SIGNERS.keys["l4"], SIGNERS.trust.path
        )
        try:
            assert approved.returncode == 0, approved.stdout + approved.stderr
            assert running.client().health() == {"status": "ok"}
        finally:
            running.stop()
        report = monitor(made.dsn, package.load().path, confirm_db=made.name, trust=SIGNERS.trust)
        assert (report.verdict, report.reasons) == ("OPEN", []), report.reasons
        with connect(made.dsn) as conn:
            rows = conn.execute("SELECT approver, level, rehearsal FROM os_proposal_approvals").fetchall()
        assert rows == [{"approver": catalog.account("l4").id, "level": "L4", "rehearsal": False}]
        assert "APPROVED" in approved.stdout
    finally:
        clones.drop(test_server.admin, made.name)


def test_directus_is_healthy(directus: DirectusServer) -> None:
    assert directus.client().health() == {"status": "ok"}


def test_directus_serves_the_governed_and_tier1_collections(directus_admin: DirectusClient) -> None:
    served: dict[str, Any] = {c["collection"]: c for c in directus_admin.get("/collections", limit=-1)}
    expected = [name for name, _, _ in catalog.GOVERNED] + list(catalog.TIER1_REGISTERED)
    assert len(expected) == 35 + 5
    assert [name for name in expected if name not in served] == []
    # Registered in directus_collections, not merely found as tables.
    assert [name for name in expected if served[name]["meta"] is None] == []
    assert [name for name in catalog.TIER1_REGISTERED if served[name]["meta"]["group"] != "one_roof"] == []
