"""Connections: DSN handling, password-free display, and turning libpq failures into OneroofError."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.rows import dict_row

from harness.errors import DatabaseUnreachable, UsageError

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
CONNECT_TIMEOUT = 5
LOCK_TIMEOUT_MS = 30_000


def check_identifier(name: str, what: str = "name") -> str:
    """Return `name` if it is a plain lower-case PostgreSQL identifier, else raise UsageError."""
    if not IDENTIFIER.match(name):
        raise UsageError(
            f"{what} {name!r} is not a valid identifier: use 1-63 lower-case letters, digits "
            "and underscores, starting with a letter or underscore"
        )
    return name


def parse(dsn: str) -> dict[str, Any]:
    """The DSN as a dict of libpq keywords; UsageError when it cannot be parsed."""
    try:
        return conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        # libpq's message quotes the DSN, password included: it is not shown.
        raise UsageError("cannot parse the DSN: check its syntax (a libpq URI or key=value pairs); "
                         "it is not shown here because it may hold a password") from exc


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials as `dsn`, connected to database `dbname`."""
    params = parse(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


def public(dsn: str) -> str:
    """A DSN fit to print: the password is dropped, everything else kept (libpq reads .pgpass)."""
    params = {k: v for k, v in parse(dsn).items() if k != "password"}
    return conninfo.make_conninfo("", **params)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "oneroof") -> psycopg.Connection[dict[str, Any]]:
    """Open a connection with dict rows; an unreachable server or a refused login is a DatabaseUnreachable."""
    params = parse(dsn)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", application_name)
    # Never wait forever behind another session's lock (a DDL on production, say): fail instead.
    if "lock_timeout" not in str(params.get("options") or ""):  # the caller's own setting wins
        params["options"] = f"{params.get('options') or ''} -c lock_timeout={LOCK_TIMEOUT_MS}".strip()
    try:
        return psycopg.connect(conninfo.make_conninfo("", **params), autocommit=autocommit, row_factory=dict_row)
    except psycopg.ProgrammingError as exc:
        raise UsageError("the DSN has an invalid value (e.g. a non-numeric port or connect_timeout); "
                         "it is not shown here because it may hold a password") from exc
    except psycopg.OperationalError as exc:
        where = public(dsn) or "the server named by the PG* environment variables"
        raise DatabaseUnreachable(
            f"cannot connect to {where}: {first_line(exc)} "
            "(check the host, port, user, password and database name, or pass --dsn)"
        ) from exc


@contextmanager
def snapshot(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A REPEATABLE READ READ ONLY transaction: every read inside sees one snapshot and cannot write.

    The connection's own settings are restored afterwards; its open transaction, if any, is
    rolled back first.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    saved = (conn.autocommit, conn.isolation_level, conn.read_only)
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        yield conn
    finally:
        conn.rollback()
        conn.autocommit, conn.isolation_level, conn.read_only = saved


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
