"""`oneroof demo production`: a production to practise on, as a production would be (no golden or
read-only mark, no setting of oneroof's), that never replaces a database it did not make; and
`oneroof demo directus-env`, which tells Directus how to reach it without printing a password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from oneroof.harness.db import connect, parse
from oneroof.harness.marks import database_settings, is_demo
from tests.support.testing import PgServer, one_line_error


def drop(test_server: PgServer, name: str) -> None:
    with connect(test_server.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def demo_name(test_server: PgServer, unique: Any) -> Iterator[str]:
    """A name for a demo production of this test, dropped after it."""
    name = unique("demo")
    drop(test_server, name)
    yield name
    drop(test_server, name)


def test_a_demo_production_is_unmarked_writable_and_reads_as_production(
    test_server: PgServer, demo_name: str, oneroof: Any
) -> None:
    made = oneroof("demo", "production", "--dsn", test_server.admin, "--name", demo_name)
    assert made.returncode == 0, made.stderr
    dsn = made.stdout.strip().splitlines()[-1]
    assert parse(dsn)["dbname"] == demo_name and "password" not in parse(dsn)
    with connect(test_server.admin, autocommit=True) as admin:
        assert database_settings(admin, demo_name) == {}  # neither golden, nor read-only, nor a clone
        assert is_demo(admin, demo_name)
    with connect(test_server.dsn(demo_name)) as conn:  # a session may write, as on production
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == {"default_transaction_read_only": "off"}
        conn.execute("CREATE TEMPORARY TABLE practice (id int)")
        counted = conn.execute("SELECT count(*) AS n FROM os_collection_inventory").fetchone()
    assert counted == {"n": 35}
    listed = oneroof("golden", "list", "--dsn", test_server.admin)
    assert demo_name not in listed.stdout
    # The gate reads it as production: not a marked clone, so its rollout needs rehearsal evidence.
    shown = oneroof("monitor", "--dsn", test_server.dsn(demo_name), "--json")
    assert shown.returncode == 3, shown.stderr
    assert {"rehearsed", "approvals"} <= set(json.loads(shown.stdout)["blocked_by"])


def test_an_existing_name_is_refused_and_replace_replaces_only_a_demo(
    test_server: PgServer, demo_name: str, unique: Any, oneroof: Any
) -> None:
    assert oneroof("demo", "production", "--dsn", test_server.admin, "--name", demo_name).returncode == 0
    again = oneroof("demo", "production", "--dsn", test_server.admin, "--name", demo_name)
    one_line_error(again, f"database {demo_name!r} already exists: pass --replace")
    with connect(test_server.dsn(demo_name), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.practised (id int)")
    replaced = oneroof("demo", "production", "--dsn", test_server.admin, "--name", demo_name, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with connect(test_server.dsn(demo_name)) as conn:
        assert conn.execute("SELECT to_regclass('public.practised') AS t").fetchone() == {"t": None}

    other = unique("not_a_demo")
    drop(test_server, other)
    try:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
        with connect(test_server.dsn(other), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.precious (id int)")
        for name in (other, test_server.golden):
            refused = oneroof("demo", "production", "--dsn", test_server.admin, "--name", name, "--replace")
            one_line_error(refused, "is not a demo production made by oneroof")
        with connect(test_server.dsn(other)) as conn:
            assert conn.execute("SELECT to_regclass('public.precious')::text AS t").fetchone() == {"t": "precious"}
    finally:
        drop(test_server, other)


def test_bad_input_is_one_line_exit_2(test_server: PgServer, oneroof: Any) -> None:
    for args in (("--name", "Bad-Name"), ("--scale", "0")):
        refused = oneroof("demo", "production", "--dsn", test_server.admin, *args)
        one_line_error(refused)
    missing = oneroof("demo", "directus-env", "--dsn", test_server.admin, "--name", "no_such_demo")
    one_line_error(missing, "oneroof demo production --name no_such_demo")


def test_directus_env_names_the_server_and_never_a_password(
    test_server: PgServer, demo_name: str, oneroof: Any
) -> None:
    assert oneroof("demo", "production", "--dsn", test_server.admin, "--name", demo_name).returncode == 0
    with_password = test_server.admin + " password=hunter2-never-printed"
    shown = oneroof("demo", "directus-env", "--dsn", with_password, "--name", demo_name)
    assert shown.returncode == 0, shown.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in shown.stdout.splitlines())
    assert exported["DB_CLIENT"] == "pg" and exported["DB_DATABASE"] == demo_name
    with connect(test_server.dsn(demo_name)) as conn:
        assert exported["DB_PORT"] == str(conn.info.port) and exported["DB_USER"] == conn.info.user
    assert "hunter2" not in shown.stdout + shown.stderr
    assert "DB_PASSWORD" not in shown.stdout and "DB_PASSWORD yourself" in shown.stderr
