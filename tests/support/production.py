"""A production stand-in on the PostgreSQL 15 service (or the test server): a governed Directus
database that the capture tests and the rehearsed tests read.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from psycopg import sql

from oneroof.core import package
from oneroof.harness import catalog, golden
from oneroof.harness.db import connect, public, with_dbname
from oneroof.harness.errors import OneroofError

PRODUCTION_ENV = "ONEROOF_TEST_PRODUCTION"


DEFAULT_PRODUCTION = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _furnish(dsn: str) -> tuple[str, ...]:
    """Make the database look like a production Directus: extra content, secrets everywhere."""
    secret = [f"s3cr3t{secrets.token_hex(8)}" for _ in range(12)]
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE public.prod_extra (id integer PRIMARY KEY, note text, data jsonb, at timestamptz)")
        # Tabs, newlines, backslashes, quotes, non-ASCII and NULLs: the copy must be byte-exact.
        conn.execute(
            "INSERT INTO prod_extra SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE "
            "E'line\\tone\\nline two \\\\ ''q'' ' || i || ' Hà Nội' END, "
            "jsonb_build_object('i', i, 'tab', E'a\\tb'), TIMESTAMPTZ '2025-01-01' + i * interval '1 hour' "
            "FROM generate_series(1, 5000) AS i"
        )
        conn.execute(
            "UPDATE directus_users SET password = '$argon2id$v=19$m=65536,t=3,p=4$' || %s || md5(email) "
            "WHERE email <> %s",
            (secret[0], catalog.account("editor-suspended").email),
        )
        conn.execute("UPDATE directus_users SET tfa_secret = %s WHERE id = %s", (secret[1], catalog.account("l2").id))
        for i, key in enumerate(("svc-etl", "svc-ci", "agent")):
            conn.execute("UPDATE directus_users SET token = %s WHERE id = %s", (secret[2 + i], catalog.account(key).id))
        conn.execute(
            "UPDATE directus_users SET auth_data = %s::json WHERE id = %s",
            (f'{{"refresh_token": "{secret[5]}"}}', catalog.account("l2").id),
        )
        conn.execute(
            "UPDATE directus_settings SET mapbox_key = %s, basemaps = %s::json",
            (secret[6], f'[{{"name": "tiles", "url": "https://tiles.example/?key={secret[7]}"}}]'),
        )
        conn.execute(
            "INSERT INTO directus_shares (id, name, collection, item, password) "
            "VALUES (gen_random_uuid(), 'board pack', 'kh_reports', '1', %s)",
            (secret[8],),
        )
        conn.execute(
            "INSERT INTO directus_webhooks (name, url, actions, collections, headers) "
            "VALUES ('notify', 'https://hooks.example/x', 'create', 'kh_reports', %s::json)",
            (f'[{{"header": "Authorization", "value": "Bearer {secret[9]}"}}]',),
        )
        # Directus may live in another schema (DB_SEARCH_PATH): its secrets stay behind too.
        conn.execute("CREATE SCHEMA legacy")
        conn.execute(
            "CREATE TABLE legacy.directus_users AS SELECT id, email, password, token FROM public.directus_users"
        )
        conn.execute(
            'INSERT INTO directus_sessions (token, "user", expires, next_token) '
            "VALUES (%s, %s, now() + interval '1 day', %s)",
            (secret[10], catalog.account("l4").id, secret[11]),
        )
        conn.commit()
    return tuple(secret)


@dataclass(frozen=True)
class Production:
    admin: str
    name: str
    dsn: str
    secrets: tuple[str, ...]


def skip_below_a_rehearsal_server(version: int) -> None:
    """Skip the calling test unless the test server (PostgreSQL `version`) is 17 or later: a snapshot of
    production is restored with pg_restore 18 into it, as into a rehearsal server.
    """
    if version < 17:
        pytest.skip(
            f"a snapshot restores into a rehearsal server of PostgreSQL 17 or later; the test server is "
            f"{version} (the embedded run covers these tests, with PostgreSQL 15 as production)"
        )


def drop_database(admin_dsn: str, name: str) -> None:
    with connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def production_database(worker_id: str) -> Iterator[Production]:
    """A Directus production database on the PostgreSQL 15 service (no oneroof marks, extra content
    and secrets everywhere), dropped at the end; skips when the service is unreachable.
    """
    admin = os.environ.get(PRODUCTION_ENV) or DEFAULT_PRODUCTION
    try:
        with connect(admin, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except OneroofError as exc:
        pytest.skip(
            f"the PostgreSQL service that plays production ({public(admin)}) is unreachable: {exc.message}; "
            f"start it, or set {PRODUCTION_ENV} to the admin DSN of another server"
        )
    name = f"oneroof_prod_{worker_id}_{secrets.token_hex(3)}"
    try:
        golden.build(admin, name=name, package_sha256=package.load().sha256)
        with connect(admin, autocommit=True) as conn:  # production carries no oneroof marks
            conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
        made = _furnish(with_dbname(admin, name))
        yield Production(admin, name, with_dbname(admin, name), made)
    finally:
        drop_database(admin, name)
