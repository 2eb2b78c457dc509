"""The gated executor: rollout of tiers 2-6 and its idempotent rollback.

rollout: verify the package -> gate session (pytest) -> release lock -> one transaction
(lock the tables the package writes, re-check the gate, apply the tiers, write the ledger, check
the finalized invariants and content, commit) -> finalized audit (pytest). A crash at any instant
leaves greenfield or finalized: every change happens in the one transaction.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from oneroof.core import content, gate, ledger, metrics, settings, signatures
from oneroof.core import evidence as rehearsals
from oneroof.core.package import Package, snapshots_dir
from oneroof.executor import __version__, sessions
from oneroof.harness.db import connect
from oneroof.harness.errors import (
    Blocked,
    DatabaseUnreachable,
    IntegrityError,
    Interrupted,
    InvariantFailed,
    LockHeld,
    MissingPrivilege,
    UsageError,
)

ROOT = settings.ROOT
Progress = Callable[[str], None]


@dataclass
class Outcome:
    """What a rollout or rollback did, with its proof."""

    action: str  # applied / already-finalized / reverted / already-greenfield
    database: str
    package_sha256: str
    entry: str
    exit: str = ""
    approvals: tuple[int, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    audit_exit: int | None = None
    ledger_head: str | None = None  # the chain hash of the last ledger row it wrote
    nonces: tuple[str, ...] = ()  # the statements the deployment it made or reverted carried
    system_identifier: str | None = None


def _note(progress: Progress | None, message: str) -> None:
    if progress:
        progress(message)


def _reading(dsn: str) -> metrics.Reading:
    with connect(dsn, application_name="oneroof-executor") as conn:
        conn.read_only = True
        return metrics.read(conn)


STAGE_TIMEOUT = 1800.0  # seconds; a stage session that runs longer counts as failed
STAGE_TIMED_OUT = sessions.TIMED_OUT  # the exit code `timeout` uses


def session_args() -> list[str]:
    """How the executor's sessions run the suite, from the checkout or an installed copy alike: the
    invariants and their conftest with the production plugin and syrupy only (no other conftest,
    no plugin loaded from an entry point, no configuration file but these flags, no sys.path
    change), every warning an error.
    """
    invariants = ROOT / "invariants"
    return [
        str(invariants),
        "-p",
        "syrupy",  # first: the plugin imports it, and pytest rewrites only what it imports itself
        "-p",
        "oneroof.fixtures.plugin",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:benchmark",
        "--rootdir",
        str(ROOT),
        "--confcutdir",
        str(invariants),
        "-c",
        os.devnull,
        "--import-mode=importlib",
        "--strict-markers",
        "-W",
        "error",
        "-o",
        "xfail_strict=true",
        "-o",
        "truncation_limit_lines=0",
        "-o",
        "truncation_limit_chars=0",
    ]


def run_stage(
    dsn: str,
    stages: str,
    *,
    expect_db: str | None = None,
    package_dir: Path | None = None,
    expect_sha256: str | None = None,
    extra: tuple[str, ...] = (),
    quiet: bool = True,
    allowed_signers: Path | None = None,
    rehearsal: str | None = None,
    release_log: Path | None = None,
) -> int:
    """Run invariant stages as a real pytest session, a process of its own forked from the stage
    worker (executor/sessions.py); returns pytest's exit code (STAGE_TIMED_OUT after STAGE_TIMEOUT).

    The target and options travel in ONEROOF_* variables, so no password shows in a process list.
    """
    # Nothing from the caller's environment may change how the session runs (PYTEST_ADDOPTS
    # could add --snapshot-update to a gate session): only the ONEROOF_* settings below.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))}
    env[settings.DSN.env] = dsn
    # The session compares against the package's hashed snapshots: it refuses every option that
    # would write them or relax the comparison (fixtures/plugin.py checks again inside pytest).
    refused = [arg for arg in extra if arg.startswith("--snapshot")]
    if refused:
        raise UsageError(
            f"{refused[0]} is refused in a session the executor runs: the expected figures are "
            "the package's, reviewed and hashed"
        )
    env[settings.RELEASE_SESSION_ENV] = "1"
    # Only the plugins named on the command line: no test-only plugin (hypothesis's costs a second
    # to import) in a session of the suite; xdist when the session spreads over workers.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    verified = settings.REQUIRE_USER_VERIFICATION
    for setting, value in (
        (settings.EXPECT_DB, expect_db),
        (settings.PACKAGE, package_dir and absolute(package_dir)),
        (settings.EXPECT_SHA256, expect_sha256),
        (settings.ALLOWED_SIGNERS, allowed_signers and absolute(allowed_signers)),
        # the session judges by the very trust root the executor read (and checked), byte for byte
        (settings.ALLOWED_SIGNERS_SHA256, allowed_signers and signatures.TrustRoot.load(allowed_signers).sha256),
        (settings.REHEARSAL, rehearsal and absolute(rehearsal)),
        (settings.RELEASE_LOG, release_log and absolute(release_log)),
        # the executor's user-verification policy holds in its sessions too (the manifest cannot lower it)
        (settings.REQUIRE_USER_VERIFICATION, "1" if settings.truthy(os.environ.get(verified.env)) else None),
    ):
        if value:
            env[setting.env] = str(value)
    argv = [
        *session_args(),
        *(["-p", "xdist.plugin"] if "-n" in extra or any(a.startswith("--numprocesses") for a in extra) else []),
        "-m",
        stages,
        *(["-q", "--no-header"] if quiet else []),
        *absolute_paths(extra),
    ]
    return sessions.run(argv, env, ROOT, quiet=quiet, timeout=STAGE_TIMEOUT).code


# pytest's options whose value is a file or directory the caller names (verify passes the
# operator's own, the rehearsal its JUnit files).
PATH_OPTIONS = ("--junitxml", "--junit-xml", "--log-file", "--basetemp")


def absolute(path: str | Path) -> str:
    """`path` as the caller meant it: a session runs in the suite's directory (ROOT), never in the
    caller's working directory, where anyone who can write could plant a conftest.py or a module.
    A relative path read there would be another file: a release log that does not exist, so a
    statement the operator's log records as spent would pass the session's gate.
    """
    return os.path.abspath(os.path.expanduser(path))


def absolute_paths(extra: tuple[str, ...]) -> list[str]:
    """The arguments for pytest, the values of PATH_OPTIONS made absolute (see `absolute`)."""
    args = list(extra)
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in PATH_OPTIONS and equals:
            args[i] = f"{name}={absolute(value)}"
        elif arg in PATH_OPTIONS and i + 1 < len(args):
            args[i + 1] = absolute(args[i + 1])
    return args


# Once a human has ratified, ospa is no longer the baseline's 0: the gate tests judge the
# approvals instead, so the gate session skips that one baseline figure. Skipped, not deselected:
# its snapshot stays in use, and an unused snapshot fails the session.
GATE_SESSION = ("-o", "oneroof_gate_session=true")


@contextmanager
def release_lock(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """The release lock: a session-level advisory lock held on a connection of its own."""
    with connect(dsn, autocommit=True, application_name="oneroof-release-lock") as conn:
        for _attempt in range(3):  # a holder that let go between the two queries: try again
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS got", gate.LOCK_KEY).fetchone()
            if row and row["got"]:
                break
            holder = gate.lock_holder(conn)
            if holder is not None:
                raise LockHeld(
                    f"another executor holds the release lock on {conn.info.dbname!r} (pid {holder}): "
                    "wait for it to finish, then retry"
                )
        else:
            raise LockHeld(
                f"another executor holds the release lock on {conn.info.dbname!r}: wait for it to finish, then retry"
            )
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", gate.LOCK_KEY)


@contextmanager
def all_or_nothing(conn: psycopg.Connection[Any], what: str) -> Iterator[None]:
    """Commit what the block did, or roll all of it back: a database error becomes InvariantFailed."""
    try:
        yield
    except psycopg.Error as exc:
        if conn.broken:  # the server cut the connection or went away: it rolls the transaction back itself
            raise DatabaseUnreachable(
                f"lost the connection to the server while {what} ran ({str(exc).strip().splitlines()[0]}): "
                "the server rolls back an unfinished transaction, so nothing was kept; check with "
                "`oneroof monitor`, then retry"
            ) from exc
        conn.rollback()
        raise InvariantFailed(f"{what} failed and everything was rolled back: {str(exc).splitlines()[0]}") from exc
    except BaseException:
        if not conn.broken:
            conn.rollback()
        raise
    conn.commit()


def check_figures(conn: psycopg.Connection[Any], expected: dict[str, int], what: str) -> None:
    """Inside the release transaction: raise InvariantFailed unless the governance metrics are
    `expected` and the transaction holds no lock on content or system_issues.

    Counting system_issues here would make the transaction's cost follow the data; a
    transaction that changed no row of it holds no lock on it, which pg_locks shows at once.
    Any table but the governance (os_*) and Directus (directus_*) tables counts as data, so
    the check needs no list of the content tables.
    The audit after commit reads system_issues itself.
    """
    got = metrics.read_some(conn, metrics.GOVERNANCE)
    wrong = {k: got[k] for k, v in expected.items() if got[k] != v}
    if wrong:
        raise InvariantFailed(
            f"{what} invariants failed inside the transaction "
            f"({', '.join(f'{k}={v}' for k, v in wrong.items())}); nothing was kept"
        )
    touched = [
        r["relname"]
        for r in conn.execute(
            "SELECT DISTINCT c.relname FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
            "WHERE l.pid = pg_backend_pid() AND c.relkind IN ('r', 'p') "
            "AND c.relnamespace <> 'pg_catalog'::regnamespace "
            "AND c.relname NOT LIKE 'os\\_%%' AND c.relname NOT LIKE 'directus\\_%%' ORDER BY 1"
        ).fetchall()
    ]
    if touched:
        raise InvariantFailed(f"the {what} transaction touched data tables ({', '.join(touched)}); nothing was kept")


# What the gate, the metrics and the fingerprint read, besides what the package names.
READ_TABLES = tuple(
    sorted(
        {
            *metrics.FINGERPRINT_TABLES,
            *metrics.TIER1_TABLES,
            *metrics.DIRECTUS_TABLES,
            "directus_users",
            "directus_roles",
            "os_release_ledger",
        }
    )
)
# The rollout locks these rows FOR SHARE (a revocation or suspension waits for the release),
# and the proposal FOR UPDATE; PostgreSQL asks for UPDATE on at least one column of each for that.
ROW_LOCKED = ("os_proposal_approvals", "os_approvers", "directus_users", "os_proposals")
ANY_COLUMN = "*"
Privilege = tuple[str, str, str | None]  # (privilege, table, column: None for the table, ANY_COLUMN for any)


# LOCK TABLE in SHARE ROW EXCLUSIVE MODE needs one of these on the table (has_table_privilege
# reads a comma list as "any of").
LOCK_PRIVILEGE = "DELETE, UPDATE, TRUNCATE"


def locked_tables(package: Package) -> tuple[str, ...]:
    """The tables the release transaction locks IN SHARE ROW EXCLUSIVE MODE before its last gate
    evaluation: every table the package's deploy or revert SQL inserts into or deletes from, read
    from PostgreSQL's parse tree. Only column updates (os_proposals' status) are left to row
    locks: the proposal's row is locked FOR UPDATE instead.
    """
    both = package.relations("deploy") | package.relations("revert")
    return tuple(sorted({table for what, table, _ in both.writes if what in ("INSERT", "DELETE")}))


def required_privileges(package: Package, action: str) -> list[Privilege]:
    """Every privilege a `rollout` or `rollback` of `package` needs, sorted by table: what its SQL
    writes (UPDATE per column it sets) and SELECT on every table it names, the ledger row it
    writes, what the gate and the metrics read, the table locks of the release transaction, and
    for a rollout UPDATE on some column of each table whose rows the gate's re-check locks.
    """
    sql = package.relations("deploy" if action == "rollout" else "revert")
    found: set[Privilege] = {("SELECT", t, None) for t in (*READ_TABLES, *sql.reads)} | set(sql.writes)
    found.add(("INSERT", "os_release_ledger", None))
    found |= {(LOCK_PRIVILEGE, t, None) for t in locked_tables(package)}
    if action == "rollout":
        found |= {("UPDATE", t, ANY_COLUMN) for t in ROW_LOCKED}
    return sorted(found, key=lambda p: (p[1], p[0] == LOCK_PRIVILEGE, p[0], p[2] or ""))


def describe(privilege: Privilege) -> str:
    """'INSERT on os_release_ledger', 'UPDATE (status) on os_proposals', 'UPDATE on a column of ...'."""
    what, table, column = privilege
    if what == LOCK_PRIVILEGE:
        return f"DELETE (or UPDATE, TRUNCATE) on {table} (for its LOCK TABLE)"
    if column == ANY_COLUMN:
        return f"{what} on a column of {table}"
    return f"{what} ({column}) on {table}" if column else f"{what} on {table}"


PRIVILEGES_SQL = """
SELECT n.ord FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS n (priv, tab, col, ord)
WHERE NOT CASE WHEN n.col = '*' THEN has_any_column_privilege(quote_ident(n.tab), n.priv)
               WHEN n.col IS NOT NULL THEN has_column_privilege(quote_ident(n.tab), n.col, n.priv)
               ELSE has_table_privilege(quote_ident(n.tab), n.priv) END
ORDER BY n.ord
"""
# Serial columns (not identity ones) take nextval() of their sequence on INSERT: USAGE on it.
SEQUENCES_SQL = """
SELECT s.seq FROM (
    SELECT DISTINCT pg_get_serial_sequence(quote_ident(c.relname), a.attname) AS seq
    FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s::text[])
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = '') AS s
WHERE s.seq IS NOT NULL AND NOT has_sequence_privilege(s.seq, 'USAGE') ORDER BY 1
"""


def check_privileges(conn: psycopg.Connection[Any], package: Package, action: str) -> None:
    """Raise MissingPrivilege, naming the first missing privilege, unless the connected role holds
    all that `action` needs (has_table_privilege and friends: nothing is tried, nothing written).
    """
    need = required_privileges(package, action)
    rows = conn.execute(PRIVILEGES_SQL, ([p[0] for p in need], [p[1] for p in need], [p[2] for p in need])).fetchall()
    missing = [describe(need[int(r["ord"]) - 1]) for r in rows]
    inserted = sorted({table for what, table, _ in need if what == "INSERT"})
    missing += [f"USAGE on sequence {r['seq']}" for r in conn.execute(SEQUENCES_SQL, (inserted,)).fetchall()]
    if missing:
        role = conn.execute("SELECT current_user AS role").fetchone()
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MissingPrivilege(
            f"role {role['role'] if role else '?'!r} lacks {missing[0]}{more} that the {action} "
            'needs: grant the release role\'s privileges (README, "The release role"); '
            "nothing was changed"
        )


RELEASE_LOCK_TIMEOUT = 10.0  # seconds the release transaction waits for a table or row lock, by default
LOCK_TIMEOUT_ENV = "ONEROOF_LOCK_TIMEOUT"  # another wait, in seconds (0 < s <= 3600)


def lock_timeout() -> float:
    """How long the release transaction waits for a lock: $ONEROOF_LOCK_TIMEOUT seconds, else
    RELEASE_LOCK_TIMEOUT. A value that is not a number of seconds above 0 and up to an hour is
    a UsageError (the commands check it before they connect).
    """
    given = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not given:
        return RELEASE_LOCK_TIMEOUT
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 3600:  # also refuses nan and inf
        raise UsageError(f"{LOCK_TIMEOUT_ENV}={given!r} is not a number of seconds above 0 and up to 3600")
    return seconds


# The table locks that conflict with SHARE ROW EXCLUSIVE: any writer's, and DDL's.
WRITER_LOCKS = (
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
HOLDERS_SQL = """
SELECT DISTINCT l.pid, c.relname, coalesce(a.application_name, '') AS app
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_class AS c ON c.oid = l.relation
LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
WHERE l.granted AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = current_database())
  AND c.relname = ANY (%s::text[]) AND l.mode = ANY (%s::text[]) AND l.pid <> ALL (%s::int[])
ORDER BY 2, 1
"""


def lock_for_release(
    conn: psycopg.Connection[Any], package: Package, lock_conn: psycopg.Connection[Any], proposal: bool = True
) -> None:
    """Inside the caller's transaction, before its last gate evaluation: lock every table the
    package inserts into or deletes from IN SHARE ROW EXCLUSIVE MODE (nobody else writes them until
    the commit; everyone still reads them), then the proposal's row FOR UPDATE and the approvals,
    the approvers and their users' rows FOR SHARE (a revocation or a suspension waits). So nothing
    can change what the evaluation read before the commit. A lock another transaction holds longer
    than lock_timeout() is LockHeld, naming it; nothing is changed. `lock_conn` (the release
    lock's own connection) looks the holder up once this transaction has given up.
    """
    wait = lock_timeout()
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{round(wait * 1000)}ms")))
    tables = locked_tables(package)
    waiting_for = ""
    try:
        for table in tables:
            waiting_for = f"table {table}"
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(table)))
        if proposal:
            waiting_for = "the rows of the proposal, its approvals, approvers and their users"
            conn.execute("SELECT 1 FROM os_proposals WHERE code = %s FOR UPDATE", (package.proposal,))
            conn.execute("SELECT 1 FROM os_proposal_approvals FOR SHARE")
            conn.execute("SELECT 1 FROM os_approvers FOR SHARE")
            conn.execute(
                "SELECT 1 FROM directus_users WHERE id IN (SELECT approver FROM os_proposal_approvals) FOR SHARE"
            )
    except psycopg.OperationalError as exc:
        if conn.broken:
            raise DatabaseUnreachable(
                f"lost the connection to the server while a lock of the release transaction was taken "
                f"({str(exc).strip().splitlines()[0]}): nothing had been written; check with `oneroof monitor`, "
                "then retry"
            ) from exc
        if not isinstance(exc, psycopg.errors.LockNotAvailable):
            raise
        conn.rollback()
        ours = [conn.info.backend_pid, lock_conn.info.backend_pid]
        rows = lock_conn.execute(HOLDERS_SQL, ([*tables, *ROW_LOCKED], list(WRITER_LOCKS), ours)).fetchall()
        holders = "; ".join(f"pid {r['pid']} ({r['app'] or 'no application name'}) on {r['relname']}" for r in rows)
        raise LockHeld(
            f"the release transaction waited {wait:g} s for {waiting_for} on {lock_conn.info.dbname!r}, "
            f"held by {holders or 'a transaction that has ended since'}: nothing was changed; retry once it "
            "commits or rolls back (look the pid up in pg_stat_activity)"
        ) from exc


def check_content(conn: psycopg.Connection[Any], package: Package, stage: str) -> None:
    """Inside the release transaction, after the tiers ran: raise InvariantFailed unless what tiers
    2-6 wrote reads as the package's intended documents of `stage` (its snapshot), part by part.
    A row another session slipped in before the locks (an Administrator policy under the tier-2
    policy's id, say) is caught here, before anything is kept.
    """
    intended = content.expected_documents(snapshots_dir(package.path), stage)
    found = content.read(conn)
    wrong = [
        f"{tier} {part}"
        for tier in content.TIERS
        for part in content.PARTS[tier]
        if found[tier].get(part) != intended.get(tier, {}).get(part)
    ]
    if wrong:
        raise InvariantFailed(
            f"inside the transaction, the {stage} content differs from the package's snapshot "
            f"({', '.join(wrong)}); nothing was kept"
        )


def _disabled_bindings_only(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT count(*) AS n FROM os_event_bindings WHERE enabled").fetchone()
    if row and row["n"]:
        raise InvariantFailed(
            f"{row['n']} event bindings are enabled; tier 6 must create them disabled; nothing was kept"
        )


def apply_tiers(conn: psycopg.Connection[Any], package: Package, verdict: gate.Verdict) -> str:
    """Inside the caller's transaction: deploy tiers 2-6 in order and write a ledger row per tier;
    the ledger's new chain head.
    """
    approvals = "{" + ",".join(str(i) for i in verdict.valid_approvals) + "}"
    for setting, value in (
        ("oneroof.proposal", package.proposal),
        ("oneroof.approval_ids", approvals),
        ("oneroof.package_sha256", package.sha256),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (setting, value))
    if not verdict.valid_approvals:  # the gate was checked; this is the last line of defence
        raise InvariantFailed("no valid approval: nothing is applied without one; nothing was kept")
    head = ""
    for tier in package.tiers:
        _run(conn, tier.deploy_file, tier.deploy_statements)
        head = _ledger(
            conn,
            "deploy",
            tier.number,
            package,
            verdict.proposal_id,
            list(verdict.valid_approvals),
            verdict.allowed_signers_sha256,
            list(verdict.statement_nonces),
            verdict.rehearsal_sha256,
        )
    return head


def revert_tiers(conn: psycopg.Connection[Any], package: Package, proposal_id: int | None) -> str:
    """Inside the caller's transaction: revert tiers 6..2 and write a ledger row per tier; the
    ledger's new chain head.
    """
    conn.execute("SELECT set_config('oneroof.proposal', %s, true)", (package.proposal,))
    head = ""
    for tier in reversed(package.tiers):
        _run(conn, tier.revert_file, tier.revert_statements)
        head = _ledger(conn, "revert", tier.number, package, proposal_id, [])
    return head


def _run(conn: psycopg.Connection[Any], name: str, statements: tuple[str, ...]) -> None:
    """Execute a package file's statements one at a time, inside the caller's transaction.

    The package was parsed at load time and holds no transaction control; this checks again, at
    run time, that the transaction is still open after every statement.
    """
    for index, statement in enumerate(statements, 1):
        conn.execute(statement.encode())
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            raise InvariantFailed(f"{name}: statement {index} ended the release transaction; nothing after it was kept")


LEDGER_INSERT = (
    "INSERT INTO os_release_ledger (" + ", ".join(ledger.CHAIN_FIELDS) + ", chain_sha256) "
    "VALUES (" + ", ".join(["%s"] * (len(ledger.CHAIN_FIELDS) + 1)) + ")"
)


def _ledger(
    conn: psycopg.Connection[Any],
    action: str,
    tier: int,
    package: Package,
    proposal_id: int | None,
    approvals: list[int],
    allowed_signers_sha256: str | None = None,
    nonces: list[str] | None = None,
    rehearsal_sha256: str | None = None,
) -> str:
    """Write one ledger row, chained to the row before it (its hash covers that row's hash and every
    column written here, so the executor gives the time, database and role itself); its chain hash.
    """
    now = conn.execute(
        "SELECT pg_catalog.now() AS at, pg_catalog.current_database() AS db, current_user AS who"
    ).fetchone()
    assert now is not None
    row = {
        "action": action,
        "tier": tier,
        "package_name": f"{package.name} {package.version}",
        "package_sha256": package.sha256,
        "proposal_id": proposal_id,
        "approval_ids": approvals,
        "database": now["db"],
        "executed_by": now["who"],
        "tool_version": f"oneroof {__version__}",
        "executed_at": now["at"],
        "allowed_signers_sha256": allowed_signers_sha256,
        "statement_nonces": nonces or [],
        "rehearsal_sha256": rehearsal_sha256,
    }
    chain = ledger.link(ledger.head(conn), row)
    conn.execute(LEDGER_INSERT.encode(), [*(row[name] for name in ledger.CHAIN_FIELDS), chain])
    return chain


def expected_figures(package: Package, stage: str) -> dict[str, int]:
    """The governance metrics the release transaction checks for `stage` (`finalized`,
    `greenfield`): the figures of the package's own (hash-verified) snapshots.
    """
    figures = content.figures(snapshots_dir(package.path), stage)
    return {name: figures[name] for name in metrics.GOVERNANCE}


@dataclass
class _Rollout:
    """One rollout's state, shared by its phases."""

    dsn: str
    package: Package
    confirm_db: str
    trust: signatures.TrustRoot | None
    rehearsal: rehearsals.Rehearsal | None
    progress: Progress | None
    entry: metrics.Reading
    seconds: dict[str, float] = field(default_factory=dict)
    release_log: ledger.ReleaseLog | None = None

    @property
    def database(self) -> str:
        return str(self.entry.metrics["db"])

    def blocked(self, reasons: dict[str, str]) -> Blocked:
        """Blocked with the entry fingerprint and the exit one read now: nothing changed."""
        return Blocked(
            list(reasons.values()),
            database=self.database,
            entry=self.entry.fingerprint,
            exit=_reading(self.dsn).fingerprint,
            blocked_by=reasons,
        )

    def evaluate(self, conn: psycopg.Connection[Any]) -> gate.Verdict:
        """The gate's verdict inside the caller's transaction (the release lock is taken apart)."""
        return gate.evaluate(
            conn,
            self.package,
            confirm_db=self.confirm_db,
            check_lock=False,
            trust=self.trust,
            rehearsal=self.rehearsal,
            release_log=self.release_log,
        )

    def already_finalized(self) -> Outcome:
        """Nothing to do, with the figures read now (not the entry's: another executor may have
        finalized the target since).
        """
        now = _reading(self.dsn)
        return Outcome(
            "already-finalized",
            self.database,
            self.package.sha256,
            self.entry.fingerprint,
            now.fingerprint,
            metrics=now.metrics,
        )


def _won(verdict: gate.Verdict) -> bool:
    """The target is finalized already (not a wrong target that happens to be)."""
    return verdict.state == "finalized" and "target" not in verdict.reasons


def _check(run: _Rollout) -> bool:
    """Before anything runs: True when the target is finalized already; raises LockHeld while
    another executor holds the release lock, MissingPrivilege, or Blocked when the gate is closed.
    """
    with connect(run.dsn, application_name="oneroof-executor") as conn:
        conn.read_only = True
        verdict = run.evaluate(conn)
        holder = gate.lock_holder(conn)
        conn.rollback()
    if holder is not None:  # a second executor stops at once, before its gate session
        raise LockHeld(
            f"another executor holds the release lock on {run.database!r} (pid {holder}): "
            "wait for it to finish, then retry"
        )
    if _won(verdict):
        return True
    with connect(run.dsn, application_name="oneroof-executor") as conn:
        conn.read_only = True
        check_privileges(conn, run.package, "rollout")
        conn.rollback()
    if not verdict.open:
        raise run.blocked(verdict.reasons)
    return False


def _gate_session(run: _Rollout) -> Outcome | None:
    """The gate and baseline invariants as a pytest session on the target. When it fails, the
    target is judged again as it is now (_settle): another executor may have taken the lock or
    finalized the target during the session, which is not a closed gate.
    """
    _note(run.progress, "gate session: pytest invariants -m 'gate or baseline'")
    t = time.monotonic()
    code = run_stage(
        run.dsn,
        "gate or baseline",
        expect_db=run.confirm_db,
        package_dir=run.package.path,
        expect_sha256=run.package.sha256,
        extra=GATE_SESSION,
        allowed_signers=run.trust.path if run.trust is not None else None,
        rehearsal=run.rehearsal.path if run.rehearsal is not None else None,
        release_log=run.release_log.path if run.release_log is not None else None,
    )
    run.seconds["gate_session"] = time.monotonic() - t
    return None if code == 0 else _settle(run, code)


def _settle(run: _Rollout, code: int) -> Outcome:
    """After a failed gate session: LockHeld while another executor holds the release lock,
    ALREADY-FINALIZED when another one has finalized the target, else Blocked.
    """
    with connect(run.dsn, application_name="oneroof-executor") as conn:
        conn.read_only = True
        verdict = run.evaluate(conn)
        holder = gate.lock_holder(conn)
        conn.rollback()
    if holder is not None:
        raise LockHeld(
            f"another executor holds the release lock on {run.database!r} (pid {holder}): "
            "wait for it to finish, then retry"
        )
    if _won(verdict):
        return run.already_finalized()
    raise run.blocked(
        {
            "session": f"the gate session failed (pytest exit {code}): "
            f"run `oneroof verify --stage gate` and `--stage baseline` to see which invariant"
        }
    )


def _lock_rows(run: _Rollout, conn: psycopg.Connection[Any], lock_conn: psycopg.Connection[Any]) -> gate.Verdict:
    """Lock the tables the package writes, the proposal, the approvals, the approvers and their
    users (lock_for_release), then judge again: nothing can change what this evaluation reads
    before the commit, and a change made since the last check closes the gate here (Blocked,
    rolled back).
    """
    lock_for_release(conn, run.package, lock_conn)
    verdict = run.evaluate(conn)
    if not verdict.open or verdict.state != "greenfield":
        conn.rollback()
        raise run.blocked(verdict.reasons or {"state": f"state={verdict.state} under the lock"})
    return verdict


def _apply(run: _Rollout) -> Outcome:
    """Under the release lock, in one transaction: judge the gate again, apply the tiers, write
    the ledger and check the finalized figures, then commit (all or nothing).
    """
    finalized = expected_figures(run.package, "finalized")
    _note(run.progress, "taking the release lock")
    with release_lock(run.dsn) as lock_conn, connect(run.dsn, application_name="oneroof-executor") as conn:
        t = time.monotonic()
        # First without row locks (they would assign a transaction id): a gate closed since
        # the session, or a race lost to another executor, ends here having written nothing.
        conn.read_only = True
        verdict = run.evaluate(conn)
        conn.rollback()
        conn.read_only = False
        if _won(verdict):  # another executor won
            return run.already_finalized()
        if not verdict.open or verdict.state != "greenfield":
            raise run.blocked(verdict.reasons or {"state": f"state={verdict.state} under the lock"})
        verdict = _lock_rows(run, conn, lock_conn)
        tiers = run.package.tiers
        _note(
            run.progress,
            f"applying tiers {tiers[0].number}-{tiers[-1].number} "
            f"with approvals {', '.join(f'#{i}' for i in verdict.valid_approvals)}",
        )
        cluster = gate.system_identifier(conn)
        with all_or_nothing(conn, "a tier"):
            head = apply_tiers(conn, run.package, verdict)
            check_figures(conn, finalized, "finalized")
            _disabled_bindings_only(conn)
            check_content(conn, run.package, "finalized")
        run.seconds["transaction"] = time.monotonic() - t
    return Outcome(
        "applied",
        run.database,
        run.package.sha256,
        run.entry.fingerprint,
        approvals=verdict.valid_approvals,
        seconds=run.seconds,
        ledger_head=head,
        nonces=verdict.statement_nonces,
        system_identifier=cluster,
    )


def record(log: ledger.ReleaseLog | None, outcome: Outcome) -> None:
    """After a commit: the operator's release log keeps what the ledger says, outside the database
    (the statements spent, the chain head), so a ledger row deleted or edited later is seen.
    """
    if log is None or outcome.ledger_head is None:
        return
    log.append(
        {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "action": {"applied": "deploy", "reverted": "revert"}.get(outcome.action, outcome.action),
            "database": outcome.database,
            "system_identifier": outcome.system_identifier,
            "package_sha256": outcome.package_sha256,
            "nonces": list(outcome.nonces),
            "head": outcome.ledger_head,
            "tool": f"oneroof {__version__}",
        }
    )


def _audit(run: _Rollout, outcome: Outcome, audit: bool) -> None:
    """After the commit: the finalized invariants as a pytest session (when `audit`), and the
    exit reading.
    """
    try:
        if audit:
            _note(run.progress, "finalized audit: pytest invariants -m finalized")
            t = time.monotonic()
            outcome.audit_exit = run_stage(
                run.dsn,
                "finalized",
                expect_db=run.confirm_db,
                package_dir=run.package.path,
                expect_sha256=run.package.sha256,
                allowed_signers=run.trust.path if run.trust is not None else None,
                release_log=run.release_log.path if run.release_log is not None else None,
            )
            run.seconds["audit"] = time.monotonic() - t
        final = _reading(run.dsn)
    except KeyboardInterrupt:  # after the commit "interrupted" alone would hide that the tiers are live
        raise Interrupted(
            f"interrupted after the commit: tiers 2-6 are live on {run.database!r}; check them with "
            f"`oneroof verify --stage finalized --expect-db {run.database}`, or undo with "
            f"`oneroof rollback --confirm-db {run.database}`"
        ) from None
    outcome.exit, outcome.metrics = final.fingerprint, final.metrics


def runs_as_superuser(dsn: str) -> bool:
    """Whether `dsn` logs in as a superuser, which the release role should never be."""
    with connect(dsn, application_name="oneroof-executor") as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row["rolsuper"])


def rollout(
    dsn: str,
    package: Package,
    *,
    confirm_db: str,
    gate_session: bool = True,
    audit: bool = True,
    progress: Progress | None = None,
    trust: signatures.TrustRoot | None = None,
    rehearsal: rehearsals.Rehearsal | None = None,
    release_log: ledger.ReleaseLog | None = None,
) -> Outcome:
    """Apply tiers 2-6 if and only if the gate is open. Raises Blocked (nothing changed, with the
    entry and exit fingerprints attached), LockHeld or InvariantFailed (rolled back).

    `trust` is the allowed-signers file the approvals' statements are verified against, and
    `rehearsal` the evidence a target that is not a marked clone is bound to; the ledger records
    the SHA-256 of both with the deployment. The gate also refuses what `release_log` records as
    spent, or a ledger that lost the head it recorded; after the commit the rollout records there.
    """
    started = time.monotonic()
    if gate_session or audit:
        sessions.prepare()  # the stage worker's imports overlap the entry reading and the checks
    run = _Rollout(dsn, package, confirm_db, trust, rehearsal, progress, _reading(dsn), release_log=release_log)
    if _check(run):
        return run.already_finalized()
    settled = _gate_session(run) if gate_session else None
    if settled is not None:
        return settled
    outcome = _apply(run)
    if outcome.action == "applied":
        record(release_log, outcome)
        _audit(run, outcome, audit)
        run.seconds["total"] = time.monotonic() - started
    return outcome


DEPLOYED_SQL = """
SELECT (SELECT l.package_sha256 FROM os_release_ledger AS l
        WHERE l.id = (SELECT pg_catalog.max(id) FROM os_release_ledger) AND l.action = 'deploy') AS deployed,
       (SELECT p.package_sha256 FROM os_proposals AS p WHERE p.code = %s) AS proposed
"""


def current_deployment(
    conn: psycopg.Connection[Any], package: Package, trust: signatures.TrustRoot
) -> tuple[list[str], tuple[str, ...]]:
    """Why the ledger's current deployment (its newest rows, one transaction) does not verify
    against `trust`, and the statements it carried. Its rows must name approvals whose statements,
    signed by keys the allowed signers list, approve its package for this target at its time, and
    carry exactly their nonces, spent by no deployment before it: a row the release role wrote
    itself names no such statement. The trust root may have changed since (an approver added).
    """
    target = ledger.Target.read(conn, gate.system_identifier(conn), gate.database_oid(conn))
    spent: dict[str, str] = {}
    problems: list[str] = []
    groups = ledger.deployments(target.ledger)
    for group in groups:
        problems = ledger.deployment_problems(
            group, target, trust, spent, strict_trust=False, proposal=package.proposal
        )
    current = groups[-1] if groups else []
    if not current or current[-1]["id"] != target.ledger[-1]["id"]:
        return ["its newest row is not part of a deployment"], ()
    return problems, tuple(current[0]["statement_nonces"])


def deployed_package(
    conn: psycopg.Connection[Any], package: Package, trust: signatures.TrustRoot | None = None
) -> tuple[str, ...]:
    """Raise IntegrityError unless `package` is the one to revert: the package of the current
    deployment by the ledger (its newest row is a deploy), whose human-signed statements must
    verify against `trust` (UsageError without one), else, with no deployment on record since the
    last revert, the package the proposal names. Returns the statements the deployment carried.
    """
    row = conn.execute(DEPLOYED_SQL, (package.proposal,)).fetchone()
    assert row is not None
    expected, source = (
        (row["deployed"], "the ledger records for the current deployment")
        if row["deployed"]
        else (row["proposed"], f"proposal {package.proposal} names (no deployment on record)")
    )
    if expected != package.sha256:
        conn.rollback()
        raise IntegrityError(
            f"package {package.sha256} is not the package {source}, {expected}: roll back with "
            "that package (pin it with --expect-sha256); nothing was changed"
        )
    if not row["deployed"]:
        return ()
    if trust is None:
        conn.rollback()
        raise UsageError(
            "rollback re-verifies the signed statements of the deployment it reverts: pass "
            f"--allowed-signers FILE or set {signatures.ENV}; nothing was changed"
        )
    problems, nonces = current_deployment(conn, package, trust)
    if problems:
        conn.rollback()
        raise IntegrityError(
            f"the ledger's deployment of package {package.sha256[:12]} does not verify against the allowed "
            f"signers {trust.sha256[:12]}: {problems[0]}; a rollback runs only a package that human-signed "
            "statements approved and a deployment applied: compare the ledger with the release log "
            "(`oneroof approvals verify`); nothing was changed"
        )
    return nonces


def _revert(
    dsn: str,
    package: Package,
    entry: metrics.Reading,
    progress: Progress | None,
    seconds: dict[str, float],
    trust: signatures.TrustRoot | None,
) -> Outcome:
    """Under the release lock, in one transaction: revert the deployed package's tiers, write the
    ledger and check the greenfield figures, then commit (all or nothing). The outcome says
    "already-greenfield" when the target was greenfield already (nothing done).
    """
    greenfield = expected_figures(package, "greenfield")
    _note(progress, "taking the release lock")
    with release_lock(dsn) as lock_conn, connect(dsn, application_name="oneroof-executor") as conn:
        t = time.monotonic()
        lock_for_release(conn, package, lock_conn, proposal=False)
        nonces = deployed_package(conn, package, trust)
        current = gate.state(conn)
        if current == "greenfield":
            conn.rollback()
            return Outcome(
                "already-greenfield",
                str(entry.metrics["db"]),
                package.sha256,
                entry.fingerprint,
                _reading(dsn).fingerprint,
                metrics=entry.metrics,
            )
        cluster = gate.system_identifier(conn)
        proposal = conn.execute("SELECT id FROM os_proposals WHERE code = %s", (package.proposal,)).fetchone()
        _note(progress, f"reverting tiers {package.tiers[-1].number}-{package.tiers[0].number} (state {current})")
        with all_or_nothing(conn, "a revert"):
            head = revert_tiers(conn, package, proposal["id"] if proposal else None)
            check_figures(conn, greenfield, "greenfield")
            if gate.state(conn) != "greenfield":
                raise InvariantFailed("after the revert the database is not greenfield; nothing was kept")
        seconds["transaction"] = time.monotonic() - t
    return Outcome(
        "reverted",
        str(entry.metrics["db"]),
        package.sha256,
        entry.fingerprint,
        ledger_head=head,
        nonces=nonces,
        system_identifier=cluster,
    )


def rollback(
    dsn: str,
    package: Package,
    *,
    confirm_db: str,
    progress: Progress | None = None,
    trust: signatures.TrustRoot | None = None,
    release_log: ledger.ReleaseLog | None = None,
) -> Outcome:
    """Revert tiers 6..2 in one transaction under the release lock; on greenfield do nothing.

    The deployment reverted must verify against `trust` (its statements human-signed for this
    package); after the commit the rollback records the ledger's new head in `release_log`.
    """
    seconds: dict[str, float] = {}
    started = time.monotonic()
    entry = _reading(dsn)
    if entry.metrics["db"] != confirm_db:
        raise UsageError(
            f"connected to {entry.metrics['db']!r}, but --confirm-db names {confirm_db!r}: "
            "name the database you mean to roll back"
        )
    with connect(dsn, application_name="oneroof-executor") as conn:
        conn.read_only = True
        check_privileges(conn, package, "rollback")
        conn.rollback()
    outcome = _revert(dsn, package, entry, progress, seconds, trust)
    if outcome.action != "reverted":
        return outcome
    record(release_log, outcome)
    final = _reading(dsn)
    seconds["total"] = time.monotonic() - started
    outcome.exit, outcome.seconds, outcome.metrics = final.fingerprint, seconds, final.metrics
    return outcome
