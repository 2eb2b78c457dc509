"""The clone harness: create, mark, list, drop, collect; the golden database is never touched."""

from __future__ import annotations

import time
from typing import Any

import pytest
from psycopg import sql

from oneroof.core import metrics
from oneroof.harness import clones
from oneroof.harness.db import connect
from oneroof.harness.errors import CloneError
from tests.support.testing import PgServer


def fingerprint(dsn: str) -> str:
    with connect(dsn) as conn:
        return metrics.read(conn).fingerprint


def test_clone_is_marked_listed_and_dropped(test_server: PgServer, unique: Any) -> None:
    golden_before = fingerprint(test_server.dsn(test_server.golden))
    made = clones.create(test_server.admin, source=test_server.golden, name=unique("harness"), wait=60)
    try:
        assert "password" not in made.dsn and f"dbname={made.name}" in made.dsn
        with connect(test_server.admin, autocommit=True) as admin:
            assert clones.is_marked_clone(admin, made.name)
            assert not clones.is_marked_clone(admin, test_server.golden)
        with connect(made.dsn) as conn:
            assert clones.connected_is_clone(conn)
            assert metrics.read(conn).fingerprint == golden_before  # an exact copy
        assert made.name in {c.name for c in clones.list_clones(test_server.admin)}
    finally:
        clones.drop(test_server.admin, made.name)
    assert made.name not in {c.name for c in clones.list_clones(test_server.admin)}
    assert fingerprint(test_server.dsn(test_server.golden)) == golden_before


def test_clone_is_writable_and_golden_stays_unchanged(test_server: PgServer, clone_conn: Any) -> None:
    golden_before = fingerprint(test_server.dsn(test_server.golden))
    clone_conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")
    assert metrics.read(clone_conn).metrics["inventory"] == 34
    assert fingerprint(test_server.dsn(test_server.golden)) == golden_before


@pytest.mark.parametrize("victim", ["golden", "postgres", "missing"])
def test_drop_refuses_anything_but_a_marked_clone(test_server: PgServer, victim: str) -> None:
    name = {"golden": test_server.golden, "postgres": "postgres", "missing": "no_such_database"}[victim]
    with pytest.raises(CloneError, match="not a clone|no database"):
        clones.drop(test_server.admin, name)
    if victim != "missing":
        with connect(test_server.admin, autocommit=True) as admin:
            assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()


def test_a_renamed_clone_loses_its_mark(test_server: PgServer, admin: Any, unique: Any) -> None:
    made = clones.create(test_server.admin, source=test_server.golden, name=unique("renamed_a"), wait=60)
    renamed = unique("renamed_b")
    admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(made.name), sql.Identifier(renamed)))
    try:
        assert not clones.is_marked_clone(admin, renamed)
        with pytest.raises(CloneError, match="not a clone"):
            clones.drop(test_server.admin, renamed)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(renamed)))


def test_busy_golden_gives_a_clear_error_not_a_hang(test_server: PgServer) -> None:
    with connect(test_server.dsn(test_server.golden), application_name="someone-else"):
        started = time.monotonic()
        with pytest.raises(CloneError, match="someone-else"):
            clones.create(test_server.admin, source=test_server.golden)
        assert time.monotonic() - started < 3


def test_gc_drops_idle_clones_and_keeps_busy_ones(test_server: PgServer, unique: Any) -> None:
    source = unique("gc_source")
    base = clones.create(test_server.admin, source=test_server.golden, name=source, wait=60)
    idle = clones.create(test_server.admin, source=source, name=unique("gc_idle"))
    busy = clones.create(test_server.admin, source=source, name=unique("gc_busy"))
    try:
        assert clones.gc(test_server.admin, source=source) == ([], [])  # too young: maybe a running rehearsal
        with connect(busy.dsn):
            dropped, kept = clones.gc(test_server.admin, source=source, older_than=0)
        assert (dropped, kept) == ([idle.name], [busy.name])
    finally:
        for name in (busy.name, idle.name, base.name):
            with connect(test_server.admin, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_both_strategies_make_identical_clones(test_server: PgServer, unique: Any) -> None:
    if test_server.version < 15:
        pytest.skip("CREATE DATABASE ... STRATEGY needs PostgreSQL 15 or later")
    golden_print = fingerprint(test_server.dsn(test_server.golden))
    for strategy in clones.STRATEGIES:
        made = clones.create(
            test_server.admin, source=test_server.golden, name=unique(f"{strategy.lower()}"), strategy=strategy, wait=60
        )
        try:
            assert fingerprint(made.dsn) == golden_print
        finally:
            clones.drop(test_server.admin, made.name)
