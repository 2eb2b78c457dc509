"""The gated executor: rollout of tiers 2-6 and its idempotent rollback.

rollout: verify the package -> gate session (pytest) -> release lock -> one transaction
(re-check the gate, apply the tiers, write the ledger, check the finalized invariants, commit)
-> finalized audit (pytest). A crash at any instant leaves greenfield or finalized: every
change happens in the one transaction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from oneroof.core import content, gate, metrics, settings, signatures
from oneroof.core import evidence as rehearsals
from oneroof.core.package import Package, snapshots_dir
from oneroof.executor import __version__
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


def _note(progress: Progress | None, message: str) -> None:
    if progress:
        progress(message)


def _reading(dsn: str) -> metrics.Reading:
    with connect(dsn, application_name="oneroof-executor") as conn:
        conn.read_only = True
        return metrics.read(conn)


STAGE_TIMEOUT = 1800.0  # seconds; a stage session that runs longer counts as failed
STAGE_TIMED_OUT = 124  # the exit code `timeout` uses


def session_args() -> list[str]:
    """How the executor's sessions run the suite, from the checkout or an installed copy alike: the
    invariants and their conftest with the production plugin only (no other conftest, no
    configuration file but these flags, no sys.path change), every warning an error.
    """
    invariants = ROOT / "invariants"
    return [
        str(invariants),
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
) -> int:
    """Run invariant stages as a real pytest session in a subprocess; returns pytest's exit code.

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
    for setting, value in (
        (settings.EXPECT_DB, expect_db),
        (settings.PACKAGE, package_dir),
        (settings.EXPECT_SHA256, expect_sha256),
        (settings.ALLOWED_SIGNERS, allowed_signers),
        # the session judges by the very trust root the executor read (and checked), byte for byte
        (settings.ALLOWED_SIGNERS_SHA256, allowed_signers and signatures.TrustRoot.load(allowed_signers).sha256),
        (settings.REHEARSAL, rehearsal),
    ):
        if value:
            env[setting.env] = str(value)
    command = [
        sys.executable,
        "-m",
        "pytest",
        *session_args(),
        "-m",
        stages,
        *(["-q", "--no-header"] if quiet else []),
        *extra,
    ]
    try:
        proc = subprocess.run(
            command, cwd=ROOT, env=env, check=False, capture_output=quiet, text=True, timeout=STAGE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return STAGE_TIMED_OUT
    return proc.returncode


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
            "SELECT c.relname FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
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


def required_privileges(package: Package, action: str) -> list[Privilege]:
    """Every privilege a `rollout` or `rollback` of `package` needs, sorted by table: what its SQL
    writes (UPDATE per column it sets) and SELECT on every table it names, the ledger row it
    writes, what the gate and the metrics read, and for a rollout UPDATE on some column of each
    table whose rows the gate's re-check locks.
    """
    sql = package.relations("deploy" if action == "rollout" else "revert")
    found: set[Privilege] = {("SELECT", t, None) for t in (*READ_TABLES, *sql.reads)} | set(sql.writes)
    found.add(("INSERT", "os_release_ledger", None))
    if action == "rollout":
        found |= {("UPDATE", t, ANY_COLUMN) for t in ROW_LOCKED}
    return sorted(found, key=lambda p: (p[1], p[0], p[2] or ""))


def describe(privilege: Privilege) -> str:
    """'INSERT on os_release_ledger', 'UPDATE (status) on os_proposals', 'UPDATE on a column of ...'."""
    what, table, column = privilege
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


def _disabled_bindings_only(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT count(*) AS n FROM os_event_bindings WHERE enabled").fetchone()
    if row and row["n"]:
        raise InvariantFailed(
            f"{row['n']} event bindings are enabled; tier 6 must create them disabled; nothing was kept"
        )


def apply_tiers(conn: psycopg.Connection[Any], package: Package, verdict: gate.Verdict) -> None:
    """Inside the caller's transaction: deploy tiers 2-6 in order and write a ledger row per tier."""
    approvals = "{" + ",".join(str(i) for i in verdict.valid_approvals) + "}"
    for setting, value in (
        ("oneroof.proposal", package.proposal),
        ("oneroof.approval_ids", approvals),
        ("oneroof.package_sha256", package.sha256),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (setting, value))
    if not verdict.valid_approvals:  # the gate was checked; this is the last line of defence
        raise InvariantFailed("no valid approval: nothing is applied without one; nothing was kept")
    for tier in package.tiers:
        _run(conn, tier.deploy_file, tier.deploy_statements)
        _ledger(
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


def revert_tiers(conn: psycopg.Connection[Any], package: Package, proposal_id: int | None) -> None:
    """Inside the caller's transaction: revert tiers 6..2 and write a ledger row per tier."""
    conn.execute("SELECT set_config('oneroof.proposal', %s, true)", (package.proposal,))
    for tier in reversed(package.tiers):
        _run(conn, tier.revert_file, tier.revert_statements)
        _ledger(conn, "revert", tier.number, package, proposal_id, [])


def _run(conn: psycopg.Connection[Any], name: str, statements: tuple[str, ...]) -> None:
    """Execute a package file's statements one at a time, inside the caller's transaction.

    The package was parsed at load time and holds no transaction control; this checks again, at
    run time, that the transaction is still open after every statement.
    """
    for index, statement in enumerate(statements, 1):
        conn.execute(statement.encode())
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            raise InvariantFailed(f"{name}: statement {index} ended the release transaction; nothing after it was kept")


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
) -> None:
    conn.execute(
        "INSERT INTO os_release_ledger (action, tier, package_name, package_sha256, proposal_id, approval_ids, "
        "tool_version, allowed_signers_sha256, statement_nonces, rehearsal_sha256) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            action,
            tier,
            f"{package.name} {package.version}",
            package.sha256,
            proposal_id,
            approvals,
            f"oneroof {__version__}",
            allowed_signers_sha256,
            nonces or [],
            rehearsal_sha256,
        ),
    )


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
        )

    def already_finalized(self, exit_fingerprint: str) -> Outcome:
        return Outcome(
            "already-finalized",
            self.database,
            self.package.sha256,
            self.entry.fingerprint,
            exit_fingerprint,
            metrics=self.entry.metrics,
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


def _gate_session(run: _Rollout) -> None:
    """The gate and baseline invariants as a pytest session on the target; Blocked if it fails."""
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
    )
    run.seconds["gate_session"] = time.monotonic() - t
    if code != 0:
        raise run.blocked(
            {
                "session": f"the gate session failed (pytest exit {code}): "
                f"run `oneroof verify --stage gate` and `--stage baseline` to see which invariant"
            }
        )


def _lock_rows(run: _Rollout, conn: psycopg.Connection[Any]) -> gate.Verdict:
    """Lock the proposal, the approvals, the approvers and their users, then judge again: a
    revocation or a suspension waits for this transaction, and one that happened since the last
    check closes the gate here (Blocked, rolled back).
    """
    conn.execute("SET lock_timeout = '10s'")
    conn.execute("SELECT 1 FROM os_proposals WHERE code = %s FOR UPDATE", (run.package.proposal,))
    conn.execute("SELECT 1 FROM os_proposal_approvals FOR SHARE")
    conn.execute("SELECT 1 FROM os_approvers FOR SHARE")
    conn.execute("SELECT 1 FROM directus_users WHERE id IN (SELECT approver FROM os_proposal_approvals) FOR SHARE")
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
    with release_lock(run.dsn), connect(run.dsn, application_name="oneroof-executor") as conn:
        t = time.monotonic()
        # First without row locks (they would assign a transaction id): a gate closed since
        # the session, or a race lost to another executor, ends here having written nothing.
        conn.read_only = True
        verdict = run.evaluate(conn)
        conn.rollback()
        conn.read_only = False
        if _won(verdict):  # another executor won
            return run.already_finalized(_reading(run.dsn).fingerprint)
        if not verdict.open or verdict.state != "greenfield":
            raise run.blocked(verdict.reasons or {"state": f"state={verdict.state} under the lock"})
        verdict = _lock_rows(run, conn)
        tiers = run.package.tiers
        _note(
            run.progress,
            f"applying tiers {tiers[0].number}-{tiers[-1].number} "
            f"with approvals {', '.join(f'#{i}' for i in verdict.valid_approvals)}",
        )
        with all_or_nothing(conn, "a tier"):
            apply_tiers(conn, run.package, verdict)
            check_figures(conn, finalized, "finalized")
            _disabled_bindings_only(conn)
        run.seconds["transaction"] = time.monotonic() - t
    return Outcome(
        "applied",
        run.database,
        run.package.sha256,
        run.entry.fingerprint,
        approvals=verdict.valid_approvals,
        seconds=run.seconds,
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
) -> Outcome:
    """Apply tiers 2-6 if and only if the gate is open. Raises Blocked (nothing changed, with the
    entry and exit fingerprints attached), LockHeld or InvariantFailed (rolled back).

    `trust` is the allowed-signers file the approvals' statements are verified against, and
    `rehearsal` the evidence a target that is not a marked clone is bound to; the ledger records
    the SHA-256 of both with the deployment.
    """
    started = time.monotonic()
    run = _Rollout(dsn, package, confirm_db, trust, rehearsal, progress, _reading(dsn))
    if _check(run):
        return run.already_finalized(run.entry.fingerprint)
    if gate_session:
        _gate_session(run)
    outcome = _apply(run)
    if outcome.action == "applied":
        _audit(run, outcome, audit)
        run.seconds["total"] = time.monotonic() - started
    return outcome


DEPLOYED_SQL = """
SELECT (SELECT l.package_sha256 FROM os_release_ledger AS l
        WHERE l.id = (SELECT max(id) FROM os_release_ledger) AND l.action = 'deploy') AS deployed,
       (SELECT p.package_sha256 FROM os_proposals AS p WHERE p.code = %s) AS proposed
"""


def deployed_package(conn: psycopg.Connection[Any], package: Package) -> None:
    """Raise IntegrityError unless `package` is the one to revert: the package of the current
    deployment by the ledger (its newest row is a deploy), else, with no deployment on record
    since the last revert, the package the proposal names.
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


def _revert(
    dsn: str, package: Package, entry: metrics.Reading, progress: Progress | None, seconds: dict[str, float]
) -> Outcome | None:
    """Under the release lock, in one transaction: revert the deployed package's tiers, write the
    ledger and check the greenfield figures, then commit (all or nothing). Returns the outcome when
    the target is greenfield already (nothing done), else None.
    """
    greenfield = expected_figures(package, "greenfield")
    _note(progress, "taking the release lock")
    with release_lock(dsn), connect(dsn, application_name="oneroof-executor") as conn:
        t = time.monotonic()
        conn.execute("SET lock_timeout = '10s'")
        deployed_package(conn, package)
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
        proposal = conn.execute("SELECT id FROM os_proposals WHERE code = %s", (package.proposal,)).fetchone()
        _note(progress, f"reverting tiers {package.tiers[-1].number}-{package.tiers[0].number} (state {current})")
        with all_or_nothing(conn, "a revert"):
            revert_tiers(conn, package, proposal["id"] if proposal else None)
            check_figures(conn, greenfield, "greenfield")
            if gate.state(conn) != "greenfield":
                raise InvariantFailed("after the revert the database is not greenfield; nothing was kept")
        seconds["transaction"] = time.monotonic() - t
    return None


def rollback(dsn: str, package: Package, *, confirm_db: str, progress: Progress | None = None) -> Outcome:
    """Revert tiers 6..2 in one transaction under the release lock; on greenfield do nothing."""
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
    already = _revert(dsn, package, entry, progress, seconds)
    if already is not None:
        return already
    final = _reading(dsn)
    seconds["total"] = time.monotonic() - started
    return Outcome(
        "reverted",
        confirm_db,
        package.sha256,
        entry.fingerprint,
        final.fingerprint,
        seconds=seconds,
        metrics=final.metrics,
    )
