"""The marks oneroof puts on databases, read from the catalog where only ALTER DATABASE writes them.

A clone carries `oneroof.clone = <its own name>` as a database-level setting. The mark is read
from pg_db_role_setting, never with current_setting(): a client can set any custom setting for
its own session (SET, PGOPTIONS, options= in the DSN), so a session value proves nothing.
"""

from __future__ import annotations

from typing import Any

import psycopg

from oneroof.harness.errors import DatabaseExists

CLONE_SETTING = "oneroof.clone"
CLONE_OF_SETTING = "oneroof.clone_of"
CLONE_CREATED_SETTING = "oneroof.clone_created"
GOLDEN_SETTING = "oneroof.golden"
# A demo production (`oneroof demo production`) carries no setting, so that every session on it
# reads as on production; only its comment says oneroof made it, so --replace may drop it.
DEMO_COMMENT = "oneroof demo production: a practice database, not a production"

SETTINGS_SQL = """
SELECT s.setconfig FROM pg_db_role_setting AS s JOIN pg_database AS d ON d.oid = s.setdatabase
WHERE d.datname = %s AND s.setrole = 0
"""


def database_settings(conn: psycopg.Connection[Any], name: str) -> dict[str, str]:
    """The settings stored for database `name` by ALTER DATABASE ... SET (for every role)."""
    row = conn.execute(SETTINGS_SQL, (name,)).fetchone()
    pairs = (row or {}).get("setconfig") or []
    return dict(item.split("=", 1) for item in pairs)


def is_marked_clone(conn: psycopg.Connection[Any], name: str) -> bool:
    """True when database `name` carries the clone mark with its own name."""
    return database_settings(conn, name).get(CLONE_SETTING) == name


def connected_is_clone(conn: psycopg.Connection[Any]) -> bool:
    """True when the database `conn` is connected to is a marked clone, judged from the catalog."""
    return is_marked_clone(conn, conn.info.dbname)


def is_golden(conn: psycopg.Connection[Any], name: str) -> bool:
    """True when database `name` carries the golden mark."""
    return database_settings(conn, name).get(GOLDEN_SETTING) == "on"


def is_demo(conn: psycopg.Connection[Any], name: str) -> bool:
    """True when database `name` is a demo production that `oneroof demo production` made."""
    row = conn.execute(
        "SELECT pg_catalog.shobj_description(oid, 'pg_database') AS note FROM pg_catalog.pg_database "
        "WHERE datname = %s",
        (name,),
    ).fetchone()
    return row is not None and row["note"] == DEMO_COMMENT


def _lock_name(admin: psycopg.Connection[Any], name: str) -> None:
    """The server's one-at-a-time lock of database name `name` for a build, for the admin session."""
    got = admin.execute(
        "SELECT pg_try_advisory_lock(hashtext('oneroof.golden'), hashtext(%s)) AS got", (name,)
    ).fetchone()
    if not (got and got["got"]):
        raise DatabaseExists(f"another build or snapshot of {name!r} is running on this server: wait for it")


def claim_demo_name(admin: psycopg.Connection[Any], name: str, *, replace: bool) -> None:
    """Before a demo production `name` is built: take the name's lock, and refuse an existing
    database unless `replace`, and then any database but a demo production oneroof made.
    """
    _lock_name(admin, name)
    if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
        return
    if not replace:
        raise DatabaseExists(
            f"database {name!r} already exists: pass --replace to rebuild a demo production, or --name to make another"
        )
    if not is_demo(admin, name):
        raise DatabaseExists(
            f"database {name!r} exists and is not a demo production made by oneroof: demo production "
            "--replace only replaces a demo production; choose another --name"
        )


def claim_golden_name(admin: psycopg.Connection[Any], name: str, *, replace: bool, action: str, renew: str) -> None:
    """Before a golden database `name` is made (`action`: "golden build", "golden snapshot"): take
    the server's one-at-a-time lock of that name for the admin session, and refuse an existing
    database unless `replace`, and then one without the golden mark. `renew` says what --replace
    would do ("rebuild it", "refresh it from production").
    """
    _lock_name(admin, name)
    if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
        return
    if not replace:
        raise DatabaseExists(f"database {name!r} already exists: pass --replace to {renew}, or --name to make another")
    if not is_golden(admin, name):
        raise DatabaseExists(
            f"database {name!r} exists and is not a golden database made by oneroof: {action} "
            "--replace only replaces a golden database"
        )
