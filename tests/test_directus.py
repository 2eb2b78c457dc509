"""The golden database against a real Directus 11.3.5: the system tables' columns match a fresh
bootstrap, and the golden layer applied to a bootstrapped database is served by Directus."""

from __future__ import annotations

from typing import Any

import pytest

from harness.db import connect
from harness import catalog
from fixtures.directus import DirectusClient, DirectusDatabase, DirectusServer, columns
from fixtures.testing import PgServer

pytestmark = pytest.mark.directus


def test_golden_system_tables_match_a_real_bootstrap(test_server: PgServer, directus_db: DirectusDatabase) -> None:
    with connect(test_server.dsn(test_server.golden)) as conn:
        tables = [r["table_name"] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name LIKE 'directus\\_%' ORDER BY table_name").fetchall()]
        ours = columns(conn, tables)
    with connect(directus_db.dsn) as conn:
        real = columns(conn, tables)
    assert len(tables) == 13 and len(ours) > 100, (tables, len(ours))
    differences = [f"{column}: golden {ours.get(column)}, Directus {real.get(column)}"
                   for column in sorted(ours.keys() | real.keys()) if ours.get(column) != real.get(column)]
    assert not differences, "golden DDL differs from directus@11.3.5:\n" + "\n".join(differences)


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
