"""The SQL of the ten metrics and of the fingerprint: the one place that defines them.

Every reading happens in one REPEATABLE READ READ ONLY transaction, so the figures and the
table digests describe a single snapshot and the read cannot write. Rows are ordered with
COLLATE "C", so a digest does not depend on the database's locale (a production database and
its copy on the rehearsal server may differ there).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from oneroof.core import dispatch
from oneroof.harness.db import consistent_read
from oneroof.harness.errors import NotDirectus, NotGoverned

METRICS = ("db", "ospa", "own", "gap", "conflict", "gov_emit", "inventory", "axis", "idle", "system_issues")

METRIC_SQL = {
    "db": "current_database()",
    "ospa": "(SELECT count(*) FROM os_proposal_approvals)",
    "own": "(SELECT count(*) FROM os_collection_owners WHERE active)",
    "gap": "(SELECT count(*) FROM os_governance_gap)",
    "conflict": """(SELECT count(*) FROM (
            SELECT collection FROM os_collection_owners WHERE active
            GROUP BY collection HAVING count(*) > 1
            UNION
            SELECT collection FROM os_label_rules
            GROUP BY collection, label HAVING count(DISTINCT effect) > 1) AS c)""",
    # The events emitted, and every way to emit more besides tier 6's disabled bindings (core/dispatch.py).
    "gov_emit": f"((SELECT count(*) FROM os_gov_events) + {dispatch.COUNT_SQL})",
    "inventory": "(SELECT count(*) FROM os_collection_inventory)",
    "axis": "(SELECT count(DISTINCT collection) FROM os_collection_axes)",
    "idle": "(SELECT count(*) FROM os_idle_flags)",
    "system_issues": "(SELECT count(*) FROM system_issues)",
}
# The metrics whose cost follows the 35 governed collections, not the size of the data.
GOVERNANCE = ("own", "gap", "conflict", "gov_emit", "inventory", "axis", "idle")
# What the release depends on: pinned by the package's snapshots and compared with them.
PINNED = ("ospa", *GOVERNANCE)
# Content: what production held when it was read. A live production grows, so these are recorded
# with each reading and shown beside the pinned figures, never compared with a sealed number.
OBSERVED = ("system_issues",)


def select(names: tuple[str, ...] = METRICS) -> sql.Composed:
    """One SELECT reading the named metrics."""
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(sql.SQL(METRIC_SQL[name] + " AS {}").format(sql.Identifier(name)) for name in names)
    )


METRICS_SQL = select()

# The governance tables of tier 1 that hold decisions (not the ledger, the gap view or the issues).
# The governance tables that tiers 3-6 fill (tier 2 registers them in Directus, with the ledger).
RELEASE_TABLES = (
    "os_collection_owners",
    "os_collection_axes",
    "os_label_rules",
    "os_lifecycle_policies",
    "os_event_bindings",
    "os_gov_events",
    "os_idle_flags",
)
GOVERNANCE_TABLES = (
    "os_owner_units",
    "os_collection_inventory",
    "os_approvers",
    "os_proposals",
    "os_proposal_approvals",
    *RELEASE_TABLES,
)
# Every governance table but the ledger (history that rollback keeps), and the Directus metadata
# the release writes.
FINGERPRINT_TABLES = GOVERNANCE_TABLES + (
    "directus_collections",
    "directus_fields",
    "directus_relations",
    "directus_policies",
    "directus_access",
    "directus_permissions",
)
TIER1_TABLES = GOVERNANCE_TABLES + ("os_release_ledger", "os_governance_gap", "system_issues")
DIRECTUS_TABLES = (
    "directus_collections",
    "directus_fields",
    "directus_users",
    "directus_policies",
    "directus_permissions",
)

DIGEST_SQL = sql.SQL("SELECT {tables}").format(
    tables=sql.SQL(", ").join(
        sql.SQL(
            "(SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '')) FROM {} AS t) AS {}"
        ).format(sql.Identifier(table), sql.Identifier(table))
        for table in FINGERPRINT_TABLES
    )
)


@dataclass(frozen=True)
class Reading:
    """The ten metrics and the fingerprint of one snapshot of a database."""

    metrics: dict[str, Any]
    digests: dict[str, str]

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the metrics (but the database name) and the table digests."""
        body = {"metrics": {k: v for k, v in self.metrics.items() if k != "db"}, "tables": self.digests}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_target(conn: psycopg.Connection[Any]) -> None:
    """Raise NotDirectus / NotGoverned unless the database carries Directus and tier 1."""
    names = list(DIRECTUS_TABLES) + list(TIER1_TABLES)
    row = conn.execute(
        "SELECT array_agg(name ORDER BY ord) FILTER (WHERE to_regclass(name) IS NULL) AS missing "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS n (name, ord)",
        (names,),
    ).fetchone()
    missing = list((row or {}).get("missing") or [])
    database = conn.info.dbname
    if any(name.startswith("directus_") for name in missing):
        raise NotDirectus(
            f"database {database!r} is not a Directus database (no {missing[0]}); "
            "point --dsn at the Directus production database or a clone of it"
        )
    if missing:
        raise NotGoverned(
            f"database {database!r} is Directus but lacks the One-Roof tier-1 table {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}; "
            "tier 1 must be live before oneroof can verify or release tiers 2-6"
        )


def read_in_snapshot(conn: psycopg.Connection[Any]) -> Reading:
    """Read metrics and digests inside the caller's transaction."""
    metrics = conn.execute(METRICS_SQL).fetchone()
    digests = conn.execute(DIGEST_SQL).fetchone()
    assert metrics is not None and digests is not None
    return Reading(metrics={k: metrics[k] for k in METRICS}, digests=dict(digests))


def read_some(conn: psycopg.Connection[Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Read the named metrics inside the caller's transaction."""
    row = conn.execute(select(names)).fetchone()
    assert row is not None
    return {name: row[name] for name in names}


def fingerprint_in_snapshot(conn: psycopg.Connection[Any]) -> tuple[str, dict[str, Any]]:
    """Check the target, then its fingerprint and metrics inside the caller's transaction (a golden
    snapshot reads production once, in the transaction whose snapshot it exports).
    """
    check_target(conn)
    reading = read_in_snapshot(conn)
    return reading.fingerprint, reading.metrics


def changed(before: Reading, after: Reading) -> list[str]:
    """The metrics, then the tables, whose figures differ between two readings."""
    return [k for k in before.metrics if before.metrics[k] != after.metrics.get(k)] + [
        k for k in sorted(before.digests.keys() | after.digests.keys()) if before.digests.get(k) != after.digests.get(k)
    ]


def read(conn: psycopg.Connection[Any]) -> Reading:
    """Check the target, then read metrics and digests in one REPEATABLE READ READ ONLY transaction."""
    with consistent_read(conn):
        check_target(conn)
        return read_in_snapshot(conn)


# -- content digests: what the release must never change ------------------------------------

# Each column's 64-bit hash, by its type (a domain's base type): PostgreSQL's own hash where it
# hashes the value's exact bytes (text types under COLLATE "C", so a nondeterministic collation
# cannot make two spellings equal), else the hash of the value's text form: numeric and jsonb
# hash 1.0 and 1.00 alike, float 0 and -0, and json, arrays and the rest have no such hash at all.
# Per type: the function, its argument type and whether it takes a collation. A server without
# the function (PostgreSQL 15 has no timestamptz_hash_extended) hashes the text form instead.
NATIVE_HASH = {
    "bigint": ("hashint8extended", "bigint", False),
    "integer": ("hashint4extended", "integer", False),
    "smallint": ("hashint2extended", "smallint", False),
    "text": ("hashtextextended", "text", True),
    "character varying": ("hashtextextended", "text", True),
    "character": ("hashbpcharextended", "character", True),
    "timestamp with time zone": ("timestamptz_hash_extended", "timestamp with time zone", False),
    "timestamp without time zone": ("timestamp_hash_extended", "timestamp without time zone", False),
    "uuid": ("uuid_hash_extended", "uuid", False),
}
TEXT_HASH = ("hashtextextended", "text", True)
# Every column of the tables named, in order, with its type (a domain's base type) and whether it
# can hold NULL (a NOT NULL constraint of PostgreSQL 18 may be NOT VALID: then it can).
DIGEST_COLUMNS_SQL = """
SELECT n.name AS table, a.attname AS column,
       format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, NULL) AS type,
       a.attnotnull AND NOT EXISTS (
           SELECT FROM pg_constraint AS k WHERE k.conrelid = a.attrelid AND k.contype = 'n'
           AND NOT k.convalidated AND a.attnum = ANY (k.conkey)) AS not_null
FROM unnest(%s::text[]) AS n (name)
JOIN pg_attribute AS a ON a.attrelid = to_regclass(quote_ident(n.name)) AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type AS t ON t.oid = a.atttypid
ORDER BY n.name, a.attnum"""


def _column_hash(column: str, type_name: str, seed: sql.Composable, native: frozenset[str]) -> sql.Composed:
    function, _, collated = NATIVE_HASH.get(type_name, TEXT_HASH)
    if type_name in NATIVE_HASH and function in native:
        value: sql.Composable = sql.Identifier(column)
    else:
        function, _, collated = TEXT_HASH
        value = sql.SQL("{}::text").format(sql.Identifier(column))
    return sql.SQL("{}({}{}, {})").format(
        sql.Identifier("pg_catalog", function), value, sql.SQL(' COLLATE "C"' if collated else ""), seed
    )


def native_hashes(conn: psycopg.Connection[Any]) -> frozenset[str]:
    """The functions of NATIVE_HASH that this server has."""
    signatures = {f"pg_catalog.{f}({arg}, bigint)": f for f, arg, _ in NATIVE_HASH.values()}
    rows = conn.execute(
        "SELECT s FROM unnest(%s::text[]) AS s WHERE to_regprocedure(s) IS NOT NULL", (list(signatures),)
    ).fetchall()
    return frozenset(signatures[r["s"]] for r in rows)


def row_hash(columns: list[tuple[str, str, bool]], native: frozenset[str]) -> sql.Composable:
    """One row's 64-bit hash over every column, in order, as an SQL expression: each column's hash
    is seeded with the hash so far, so a value moved to another column changes it. A column that
    may be NULL is hashed on its own (seeded with its position, a NULL is minus its position) and
    then mixed into the chain: a strict hash of NULL would otherwise void every column before it.
    """
    chain: sql.Composable = sql.SQL("0")
    for position, (column, type_name, not_null) in enumerate(columns, start=1):
        if not_null:
            chain = _column_hash(column, type_name, chain, native)
        else:
            own = _column_hash(column, type_name, sql.Literal(position), native)
            chain = sql.SQL("pg_catalog.hashint8extended({}, coalesce({}, {}))").format(
                chain, own, sql.Literal(-position)
            )
    return chain


def table_digests(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, str]:
    """Per table, inside the caller's transaction, in one statement: "rows:sum" of its row count and
    the sum of its rows' hashes (row_hash), exact as numeric. A sum needs no sort and does not
    depend on the rows' order, and it counts a row as often as it occurs; a modified, deleted or
    added row changes it.
    """
    if not tables:
        return {}
    native = native_hashes(conn)
    columns: dict[str, list[tuple[str, str, bool]]] = {table: [] for table in tables}
    for r in conn.execute(DIGEST_COLUMNS_SQL, (tables,)).fetchall():
        columns[r["table"]].append((r["column"], r["type"], r["not_null"]))
    statement = sql.SQL(" UNION ALL ").join(
        sql.SQL("(SELECT {} AS t, count(*) AS n, coalesce(sum({}), 0) AS h FROM {})").format(
            sql.Literal(table), row_hash(columns[table], native), sql.Identifier(table)
        )
        for table in tables
    )
    return {r["t"]: f"{r['n']}:{r['h']}" for r in conn.execute(statement).fetchall()}


def content_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """system_issues and every governed collection of the inventory, sorted."""
    rows = conn.execute("SELECT collection FROM os_collection_inventory").fetchall()
    return sorted({"system_issues", *(r["collection"] for r in rows)})


def content_digests(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Per content table, inside the caller's transaction: its row count and an order-free digest of
    its rows (table_digests). A modified, deleted or added row changes it.
    """
    return table_digests(conn, content_tables(conn))


def content_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Per governed collection of the inventory, its row count, inside the caller's transaction:
    observed figures, recorded beside the pinned ones and never compared with them.
    """
    counts = {}
    for table in content_tables(conn):
        if table == "system_issues" or conn.execute("SELECT to_regclass(%s) AS t", (table,)).fetchone() == {"t": None}:
            continue
        row = conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))).fetchone()
        assert row is not None
        counts[table] = int(row["n"])
    return counts


def describe_figures(figures: dict[str, Any], rows: dict[str, int] | None = None) -> str:
    """The pinned figures, then the observed ones, as one line."""
    pinned = " ".join(f"{k}={figures[k]}" for k in PINNED if k in figures)
    observed = ", ".join(f"{k}={figures[k]}" for k in OBSERVED if k in figures)
    if rows is not None:
        observed += f", {sum(rows.values())} content rows in {len(rows)} governed collections"
    return f"pinned (compared with the package): {pinned}; observed (recorded, never compared): {observed}"


def read_content(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The content digests in one REPEATABLE READ READ ONLY transaction."""
    with consistent_read(conn):
        return content_digests(conn)
