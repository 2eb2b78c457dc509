"""Connections: DSN handling, password-free display, and turning libpq failures into OneroofError."""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo, sql
from psycopg.rows import dict_row

from oneroof.harness.errors import DatabaseUnreachable, UnsafeSchema, UsageError

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SECRET_KEYS = ("password", "sslpassword")  # libpq keywords whose values are never shown
CONNECT_TIMEOUT = 5
LOCK_TIMEOUT_MS = 30_000
# Every connection reads the catalog first, then public, and temporary tables last: no schema
# named after the role ("$user"), no path set on the role, the database or in PGOPTIONS, and no
# temporary table (pg_temp is searched first unless listed) can shadow what oneroof reads.
SEARCH_PATH = "pg_catalog,public,pg_temp"
# The settings that change how PostgreSQL reads SQL text: with standard_conforming_strings off a
# backslash escapes a quote in '...', so a file the package check read as one SELECT can hold
# statements; transform_null_equals rewrites `= NULL`. Pinned like search_path: set at startup
# (over the DSN's options, PGOPTIONS and ALTER ROLE / DATABASE ... SET) and checked once connected.
PARSE_SETTINGS = (
    ("standard_conforming_strings", "on"),
    ("backslash_quote", "safe_encoding"),
    ("transform_null_equals", "off"),
    ("client_encoding", "UTF8"),
)
# Where the builders create objects (pg_catalog, listed first, would be the creation schema);
# pg_catalog is still searched first, implicitly.
BUILD_SEARCH_PATH = "public,pg_temp"
# Functions and operators outside pg_catalog that share a built-in's name and belong to a role
# that is not a superuser: an overload can win PostgreSQL's resolution (an exact match on
# varchar beats pg_catalog's count("any")), so such code would run inside oneroof's queries.
# Every operator in it compares identical types, so pg_catalog's own exact match is the one used.
SHADOW_SQL = """
SELECT kind, name FROM (
  SELECT 'function' AS kind, p.oid::pg_catalog.regprocedure::pg_catalog.text AS name
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_roles AS r ON r.oid = p.proowner
  JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
  WHERE n.nspname <> 'pg_catalog'::pg_catalog.name AND NOT r.rolsuper
    AND n.nspname = ANY (pg_catalog.current_schemas(false))
    AND EXISTS (SELECT FROM pg_catalog.pg_proc AS c JOIN pg_catalog.pg_namespace AS cn ON cn.oid = c.pronamespace
                WHERE cn.nspname = 'pg_catalog'::pg_catalog.name AND c.proname = p.proname)
  UNION ALL
  SELECT 'operator', o.oid::pg_catalog.regoperator::pg_catalog.text
  FROM pg_catalog.pg_operator AS o
  JOIN pg_catalog.pg_roles AS r ON r.oid = o.oprowner
  JOIN pg_catalog.pg_namespace AS n ON n.oid = o.oprnamespace
  WHERE n.nspname <> 'pg_catalog'::pg_catalog.name AND NOT r.rolsuper
    AND n.nspname = ANY (pg_catalog.current_schemas(false))
    AND EXISTS (SELECT FROM pg_catalog.pg_operator AS c JOIN pg_catalog.pg_namespace AS cn ON cn.oid = c.oprnamespace
                WHERE cn.nspname = 'pg_catalog'::pg_catalog.name AND c.oprname = o.oprname)
) AS s ORDER BY 1, 2
"""


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
    except psycopg.ProgrammingError:
        # libpq's message quotes the DSN, password included: it is not shown.
        # `from None`: not even --debug's traceback may show the chained message.
        raise UsageError(
            "cannot parse the DSN: check its syntax (a libpq URI or key=value pairs); "
            "it is not shown here because it may hold a password"
        ) from None


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials as `dsn`, connected to database `dbname`."""
    params = parse(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


def public(dsn: str) -> str:
    """A DSN fit to print: the password and sslpassword are dropped, everything else kept (libpq
    reads PGPASSWORD or .pgpass).
    """
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
    """The first line of an error's message (a driver error can run to several), else its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(
    dsn: str, *, autocommit: bool = False, application_name: str = "oneroof", search_path: str = SEARCH_PATH
) -> psycopg.Connection[dict[str, Any]]:
    """Open a connection with dict rows and a pinned search_path (checked once connected);
    an unreachable server or a refused login is a DatabaseUnreachable, a function or operator
    that could shadow a built-in is an UnsafeSchema.
    """
    params = parse(dsn)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", application_name)
    # Never wait forever behind another session's lock (a DDL on production, say): fail instead.
    if "lock_timeout" not in str(params.get("options") or ""):  # the caller's own setting wins
        params["options"] = f"{params.get('options') or ''} -c lock_timeout={LOCK_TIMEOUT_MS}".strip()
    # Last, so it wins over any search_path in the DSN's options (PGOPTIONS is not read at all
    # once options are given); a startup setting also wins over ALTER ROLE / DATABASE ... SET.
    pinned = " ".join(f"-c {name}={value}" for name, value in PARSE_SETTINGS if name != "client_encoding")
    params["options"] = f"{params['options']} {pinned} -c search_path={search_path}"
    params["client_encoding"] = "UTF8"
    try:
        conn = psycopg.connect(conninfo.make_conninfo("", **params), autocommit=autocommit, row_factory=dict_row)
    except psycopg.ProgrammingError:
        raise UsageError(
            "the DSN has an invalid value (e.g. a non-numeric port or connect_timeout); "
            "it is not shown here because it may hold a password"
        ) from None
    except psycopg.OperationalError as exc:
        where = public(dsn) or "the server named by the PG* environment variables"
        raise DatabaseUnreachable(
            f"cannot connect to {where}: {first_line(exc)} "
            "(check the host, port, user, password and database name, or pass --dsn)"
        ) from exc
    try:
        pin(conn, search_path)
    except BaseException:
        conn.close()
        raise
    return conn


def pin(conn: psycopg.Connection[Any], search_path: str = SEARCH_PATH) -> None:
    """Check that `conn` runs with `search_path` (setting it when a pooler dropped the startup
    option), and that no function or operator a non-superuser made can shadow a built-in.

    Only schema-qualified names run before the path is known to be right. Leaves no transaction open.
    """
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    try:
        _pin_parse_settings(conn)
        row = conn.execute("SELECT pg_catalog.current_setting('search_path') AS path").fetchone()
        if row is None or row["path"] != search_path:
            conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (search_path,))
            row = conn.execute("SELECT pg_catalog.current_setting('search_path') AS path").fetchone()
            if row is None or row["path"] != search_path:
                raise UnsafeSchema(
                    f"the connection's search_path is {row and row['path']!r}, not {search_path!r}, "
                    "and cannot be set: connect without a pooler that rewrites settings"
                )
        shadows = [f"{r['kind']} {r['name']}" for r in conn.execute(SHADOW_SQL).fetchall()]
    finally:
        if idle and not conn.autocommit:
            conn.commit()  # keeps a search_path set above; the transaction only read
    if shadows:
        raise UnsafeSchema(
            f"{shadows[0]}{f' and {len(shadows) - 1} more' if len(shadows) > 1 else ''} shares a built-in's name "
            "and belongs to a role that is not a superuser: it could run in place of the built-in inside "
            "oneroof's queries; drop it or move it out of the search path (public), then retry"
        )


@dataclass
class Pinned:
    """A connection bound to an exported snapshot: each of its consistent reads imports it, and
    records the transaction id a read was assigned (a read-only transaction never should be).
    """

    snapshot: str
    assigned: list[int] = field(default_factory=list)


_PINNED: weakref.WeakKeyDictionary[psycopg.Connection[Any], Pinned] = weakref.WeakKeyDictionary()
SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+-[0-9]+$")


def pin_snapshot(conn: psycopg.Connection[Any], snapshot: str) -> Pinned:
    """Make every consistent read on `conn` import `snapshot` (an id from pg_export_snapshot(),
    whose exporting transaction must stay open meanwhile); returns what the reads record.
    """
    if not SNAPSHOT_ID.match(snapshot):
        raise UsageError(f"{snapshot!r} is not a snapshot id from pg_export_snapshot() (like 00000003-0000001B-1)")
    _PINNED[conn] = pinned = Pinned(snapshot)
    return pinned


def pinned(conn: psycopg.Connection[Any]) -> Pinned | None:
    """The snapshot `conn`'s consistent reads import, if any, with the ids they were assigned."""
    return _PINNED.get(conn)


def _pin_parse_settings(conn: psycopg.Connection[Any]) -> None:
    """Set each of PARSE_SETTINGS that differs (a pooler may drop startup options); UnsafeSchema
    when one cannot be set. Runs before any SQL text of a package or a query with a literal.
    """
    for name, value in PARSE_SETTINGS:
        for attempt in range(2):
            row = conn.execute("SELECT pg_catalog.current_setting(%s) AS value", (name,)).fetchone()
            if row is not None and row["value"] == value:
                break
            if attempt:
                raise UnsafeSchema(
                    f"the connection's {name} is {row and row['value']!r}, not {value!r}, and cannot be set: "
                    "oneroof reads and runs SQL only as PostgreSQL parses it with its defaults; connect "
                    "without a pooler that rewrites settings"
                )
            conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))


@contextmanager
def consistent_read(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A REPEATABLE READ READ ONLY transaction: every read inside sees one snapshot and cannot write.

    On a connection pinned to an exported snapshot (pin_snapshot), that snapshot is the one
    imported, so every read of a verification session, on any process, sees one state of the
    target; a transaction id assigned meanwhile is recorded. The connection's own settings are
    restored afterwards; its open transaction, if any, is rolled back first.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    saved = (conn.autocommit, conn.isolation_level, conn.read_only)
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    pin = _PINNED.get(conn)
    try:
        if pin is not None:
            # the first statement of the transaction, before any query takes a snapshot of its own
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(pin.snapshot)))
        yield conn
    finally:
        if pin is not None and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            row = conn.execute("SELECT pg_catalog.txid_current_if_assigned() AS xid").fetchone()
            if row and row["xid"] is not None:
                pin.assigned.append(int(row["xid"]))
        conn.rollback()
        conn.autocommit, conn.isolation_level, conn.read_only = saved


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """True when the server of `conn` has a database named `name`."""
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
