"""The `rehearsed` gate condition: a rollout on a database that is not a marked clone is bound to
the evidence of a GO rehearsal of the same package, on a snapshot of this same database, made on
what the database still is.

"What it still is" is read table by table. The rehearsal digests, on the golden database it
cloned, every table the package reads or writes (named by PostgreSQL's own parser from the
package's deploy and revert SQL) and the governed inventory; the gate digests the same tables on
the target and names each one that differs. The approvals, which a human adds after the
rehearsal, are not among them: os_proposal_approvals, and the Directus comments and activity
that carry their statements and history.

A digest is independent of the server and the session: rows as jsonb with the columns that a
golden snapshot redacts left out (a copy keeps only markers of them), sorted with COLLATE "C",
under pinned TimeZone, DateStyle, IntervalStyle, bytea_output and extra_float_digits.

The evidence file is not signed: the condition keeps an operator from rolling out what was not
rehearsed, or on a production that moved since; the authority to roll out is the human's signed
approval, verified against the allowed signers.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from oneroof.core import settings
from oneroof.core.package import Package
from oneroof.harness.capture import SECRETS
from oneroof.harness.errors import UsageError

ENV = settings.REHEARSAL.env
INVENTORY = "os_collection_inventory"
# What a human adds after the rehearsal: the approval rows, their statements (Directus comments)
# and Directus's record of their creation. Never compared.
APPROVALS = frozenset({"os_proposal_approvals", "directus_comments", "directus_activity", "directus_revisions"})


class StepName(enum.StrEnum):
    """The rehearsal's steps as its evidence names them, in the order they run: the one spelling
    shared by the rehearsal that records them, the report that reads them and the gate below.
    """

    PACKAGE = "package"
    SNAPSHOT = "snapshot"  # only when the rehearsal snapshots production first (--from)
    GOLDEN = "golden"
    CLONE = "clone"
    BASELINE = "baseline"
    MONITOR_BLOCKED = "monitor_blocked"
    ROLLOUT_BLOCKED = "rollout_blocked"
    APPROVE = "approve"
    MONITOR_OPEN = "monitor_open"
    CONTENT_BEFORE = "content_before"
    ROLLOUT = "rollout"
    CONTENT_AFTER_ROLLOUT = "content_after_rollout"
    FINALIZED = "finalized"
    ROLLBACK = "rollback"
    CONTENT_AFTER_ROLLBACK = "content_after_rollback"
    GREENFIELD = "greenfield"
    ROLLBACK_AGAIN = "rollback_again"
    DROP_CLONE = "drop_clone"
    GOLDEN_INTACT = "golden_intact"


# The steps whose success a rollout leans on: a truncated evidence file does not count as GO.
REQUIRED_STEPS = (
    StepName.PACKAGE,
    StepName.GOLDEN,
    StepName.CLONE,
    StepName.BASELINE,
    StepName.ROLLOUT_BLOCKED,
    StepName.APPROVE,
    StepName.ROLLOUT,
    StepName.FINALIZED,
    StepName.ROLLBACK,
    StepName.GREENFIELD,
    StepName.ROLLBACK_AGAIN,
    StepName.GOLDEN_INTACT,
)
# Session settings that change how a row prints, pinned for the digest's statement only.
PINNED = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "1"),
)


def bound_tables(package: Package) -> tuple[str, ...]:
    """Every table the package's deploy and revert SQL name (reads or writes), and the governed
    inventory, but the approvals; sorted. The package parsed its SQL once, when it was loaded.
    """
    return tuple(sorted((package.tables | {INVENTORY}) - APPROVALS))


def digests(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> dict[str, str]:
    """Per table, inside the caller's transaction: "rows:md5" of its rows (as jsonb, without the
    columns a snapshot redacts), or "absent". The session settings are restored afterwards.
    """
    present = {
        r["name"]
        for r in conn.execute(
            "SELECT n.name FROM unnest(%s::text[]) AS n (name) "
            "WHERE to_regclass(pg_catalog.quote_ident('public') || '.' || pg_catalog.quote_ident(n.name)) IS NOT NULL",
            (list(tables),),
        ).fetchall()
    }
    saved = {name: conn.execute("SELECT pg_catalog.current_setting(%s) AS v", (name,)).fetchone() for name, _ in PINNED}
    for name, pinned in PINNED:
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, pinned))
    try:
        found: dict[str, str] = {}
        for table in tables:
            if table not in present:
                found[table] = "absent"
                continue
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*) AS n, "
                    "md5(coalesce(string_agg(r.j::text, E'\\n' ORDER BY r.j::text COLLATE \"C\"), '')) AS h "
                    "FROM (SELECT to_jsonb(t) - %s::text[] AS j FROM public.{} AS t) AS r"
                ).format(sql.Identifier(table)),
                (list(SECRETS.get(table, ())),),
            ).fetchone()
            assert row is not None
            found[table] = f"{row['n']}:{row['h']}"
        return found
    finally:
        for name, _ in PINNED:
            before = saved[name]
            conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, before["v"] if before else None))


# The shape of evidence.json as far as the gate and the report read it: per key, the JSON types it
# may have (a key may be absent unless REQUIRED). Any other value is bad input, one line, exit 2.
SCHEMA: dict[str, tuple[type, ...]] = {
    "steps": (list,),
    "package": (dict,),
    "golden": (str,),
    "started_at": (str,),
    "interrupted": (bool,),
    "golden_provenance": (dict, type(None)),
    "bound": (dict, type(None)),
}
REQUIRED = ("steps", "package")
STEP_SCHEMA: dict[str, tuple[type, ...]] = {"name": (str,), "ok": (bool,), "detail": (str, type(None))}
PACKAGE_SCHEMA: dict[str, tuple[type, ...]] = {"sha256": (str,)}
PROVENANCE_SCHEMA: dict[str, tuple[type, ...]] = {
    "kind": (str, type(None)),
    "database": (str, type(None)),
    "system_identifier": (str, type(None)),
    "taken_at": (str, type(None)),
}
_JSON_NAMES = {list: "a list", dict: "an object", str: "a string", bool: "true or false", type(None): "null"}


def _wrong(where: str, value: Any, kinds: tuple[type, ...]) -> str | None:
    if isinstance(value, kinds):
        return None
    return f"{where} is {json.dumps(value)[:30]}, not {' or '.join(_JSON_NAMES[k] for k in kinds)}"


def _fields(where: str, data: dict[str, Any], schema: dict[str, tuple[type, ...]]) -> str | None:
    for key, kinds in schema.items():
        found = _wrong(f"{where}{key}", data[key], kinds) if key in data else None
        if found:
            return found
    return None


def shape_problem(data: Any) -> str | None:
    """What in `data` does not have the shape of a rehearsal's evidence (SCHEMA), or None."""
    if not isinstance(data, dict):
        return "it is not a JSON object"
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        return f"it has no {missing[0]!r}"
    found = _fields("", data, SCHEMA)
    for index, step in enumerate(data["steps"] if found is None else ()):
        found = found or (_wrong(f"steps[{index}]", step, (dict,)) or _fields(f"steps[{index}].", step, STEP_SCHEMA))
    found = found or _fields("package.", data["package"], PACKAGE_SCHEMA)
    found = found or _fields("golden_provenance.", data.get("golden_provenance") or {}, PROVENANCE_SCHEMA)
    tables = (data.get("bound") or {}).get("tables") if found is None else None
    if found is None and tables is not None:
        found = _wrong("bound.tables", tables, (dict,)) or next(
            (f"bound.tables.{k} is not a string" for k, v in tables.items() if type(v) is not str), None
        )
    return found


@dataclass(frozen=True)
class Rehearsal:
    """A rehearsal's evidence as the gate reads it."""

    path: str
    sha256: str
    go: bool
    why_not: str  # when not GO: the first step that failed, or what is missing
    package_sha256: str
    origin: str  # "production snapshot", "synthetic", ...
    database: str
    system_identifier: str | None
    taken_at: str
    started_at: str
    tables: dict[str, str] = field(default_factory=dict)


def from_evidence(data: dict[str, Any], path: str = "", sha256: str = "") -> Rehearsal:
    """Read what the gate needs from evidence (the JSON of `oneroof rehearse`). GO is recomputed
    from the steps, never taken from the file's own `ok`.
    """
    steps = {str(s.get("name")): s for s in data.get("steps") or [] if isinstance(s, dict)}
    failed = next((name for name, s in steps.items() if not s.get("ok")), None)
    missing = [name for name in REQUIRED_STEPS if name not in steps]
    why = (
        "it was interrupted"
        if data.get("interrupted")
        else f"step {failed} failed"
        if failed
        else f"it has no step {missing[0]}"
        if missing
        else ""
    )
    provenance = data.get("golden_provenance") or {}
    bound = data.get("bound") or {}
    return Rehearsal(
        path,
        sha256,
        not why,
        why,
        str((data.get("package") or {}).get("sha256") or ""),
        str(provenance.get("kind") or "unknown"),
        str(provenance.get("database") or ""),
        provenance.get("system_identifier"),
        str(provenance.get("taken_at") or ""),
        str(data.get("started_at") or ""),
        {str(k): str(v) for k, v in (bound.get("tables") or {}).items()},
    )


def load(path: str | Path, source: str = "--rehearsal") -> Rehearsal:
    """Load an evidence file; bad input (no such file, not a rehearsal's evidence) is a UsageError."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{source} {path}: {exc.strerror or exc} (give the evidence.json a rehearsal wrote in its run directory)"
        ) from None
    try:
        data = json.loads(raw)
        wrong = shape_problem(data)
    except (ValueError, RecursionError):
        wrong = "it is not JSON"
    if wrong is not None:
        raise UsageError(
            f"{source} {path}: not the evidence of a rehearsal ({wrong}): give the evidence.json that "
            "`oneroof rehearse` writes in its run directory"
        )
    return from_evidence(data, str(file.resolve()), hashlib.sha256(raw).hexdigest())


def from_flag(flag: str | None) -> Rehearsal | None:
    """The evidence named by --rehearsal, else by $ONEROOF_REHEARSAL, else none."""
    if flag:
        return load(flag)
    if os.environ.get(ENV):
        return load(os.environ[ENV], ENV)
    return None


def problem(
    conn: psycopg.Connection[Any], rehearsal: Rehearsal | None, package: Package, system_identifier: str | None
) -> str | None:
    """Why the target's rollout is not bound to `rehearsal`, or None when it is (inside the
    caller's transaction).
    """
    database = conn.info.dbname
    again = "rehearse on a fresh snapshot (`oneroof rehearse --from PROD_DSN`) and pass its evidence with --rehearsal"
    if rehearsal is None:
        return (
            f"no rehearsal evidence: {database!r} is not a marked clone, so its rollout needs the evidence of a "
            f"GO rehearsal on a snapshot of it: {again}"
        )
    if not rehearsal.go:
        return f"the rehearsal {rehearsal.path} is not GO ({rehearsal.why_not}): {again}"
    if rehearsal.package_sha256 != package.sha256:
        return (
            f"the rehearsal was of package {rehearsal.package_sha256[:12] or '(none)'}, not this package "
            f"{package.sha256[:12]}: {again}"
        )
    if rehearsal.origin != "production snapshot":
        return f"the rehearsal ran on a {rehearsal.origin} golden database, not on a snapshot of {database!r}: {again}"
    if rehearsal.database != database:
        return f"the rehearsal ran on a snapshot of {rehearsal.database!r}, not of {database!r}: {again}"
    if system_identifier is None:
        return (
            "cannot tell which cluster this is (the role may not call pg_control_system(): grant it "
            "pg_monitor), so the rehearsal cannot be bound to it"
        )
    if rehearsal.system_identifier != system_identifier:
        return (
            f"the rehearsal ran on a snapshot of {database!r} on cluster {rehearsal.system_identifier}, not on "
            f"this cluster {system_identifier}: {again}"
        )
    tables = bound_tables(package)
    now = digests(conn, tables)
    changed = [t for t in tables if rehearsal.tables.get(t) != now[t]]
    if changed:
        return (
            f"production changed since the rehearsal: {', '.join(changed)} (snapshot of {rehearsal.taken_at}); "
            "snapshot and rehearse again"
        )
    return None
