"""Connections: DSN handling, password-free display, and turning libpq failures into OneroofError."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.rows import dict_row

from harness.errors import DatabaseUnreachable, UsageError

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SECRET_KEYS = ("password", "sslpassword")  # libpq keywords whose values are never shown
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
        # `from None`: not even --debug's traceback may show the chained message.
        raise UsageError("cannot parse the DSN: check its syntax (a libpq URI or key=value pairs); "
                         "it is not shown here because it may hold a password") from None


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials as `dsn`, connected to database `dbname`."""
    params = parse(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


def public(dsn: str) -> str:
    """A DSN fit to print: the password and sslpassword are dropped, everything else kept (libpq
    reads PGPASSWORD or .pgpass)."""
    params = {k: v for k, v in parse(dsn).items() if k not in SECRET_KEYS}
    return conninfo.make_conninfo("", **params)


def secrets_of(*dsns: str) -> set[str]:
    """The secret values in these DSNs and in PGPASSWORD / PGSSLPASSWORD: what must never be shown."""
    found = {os.environ.get(name, "") for name in ("PGPASSWORD", "PGSSLPASSWORD")}
    for dsn in dsns:
        try:
            params = conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            continue
        found.update(str(params.get(key) or "") for key in SECRET_KEYS)
    return {secret for secret in found if secret}


def redact(text: str, secrets: set[str]) -> str:
    """`text` with every secret replaced by ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


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
                         "it is not shown here because it may hold a password") from None
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
