"""The crash points of the release transactions and how to hold the executor at one: shared by the
crash matrix and the model.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pglast
import psycopg
import pytest
from psycopg import sql

from oneroof.core import package, signatures
from oneroof.executor import release
from oneroof.harness import clones
from oneroof.harness.db import connect
from tests.support.processes import clean_env
from tests.support.release import TRUST

PKG = package.load()


EXECUTOR_APPS = ("oneroof-executor", "oneroof-release-lock")


WAIT_FOR_POINT = 120.0  # seconds for the executor to reach the point (its gate session runs first)


@dataclass(frozen=True)
class Point:
    """A statement of a release transaction and how to make the executor wait at it."""

    command: str  # rollout / rollback
    label: str
    tier: int | None
    lock: sql.Composable  # what our session runs (in its open transaction) to block the statement
    query: str  # how the blocked statement's text starts in pg_stat_activity
    table: str | None = None  # the relation the executor waits for, when it is a table lock

    @property
    def id(self) -> str:
        return f"{self.command}:{self.label}"


def _written_table(statement: str) -> str | None:
    """The table the statement writes; None for a SELECT (a deploy's opening check writes nothing)."""
    node = pglast.parse_sql(statement)[0].stmt
    if type(node).__name__ == "SelectStmt":
        return None
    return str(node.relation.relname)  # the package holds only INSERT, UPDATE and DELETE (and SELECT)


def statement_points(pkg: package.Package, command: str) -> list[Point]:
    """One point per table the release transaction locks before its last evaluation (it waits at
    that LOCK TABLE while our session holds the table IN SHARE MODE, which lets reads pass: the
    gate, the figures, the pytest gate session), and the first ledger row, once every tier
    statement before it has run. A tier statement itself cannot be singled out any more: the
    executor holds its table from the start of the transaction. A lock point counts for the tier
    whose statement first writes that table.
    """
    tiers = pkg.tiers if command == "rollout" else tuple(reversed(pkg.tiers))
    kind = "deploy" if command == "rollout" else "revert"
    first_tier: dict[str, int] = {}
    for tier in tiers:
        for statement in getattr(tier, f"{kind}_statements"):
            table = _written_table(statement)
            if table is not None:
                first_tier.setdefault(table, tier.number)
    points = [
        Point(
            command,
            f"lock-{table}",
            first_tier.get(table),
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(table)),
            f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE',
            table,
        )
        for table in release.locked_tables(pkg)
    ]
    ledger = "os_release_ledger"
    points.append(
        Point(
            command,
            f"tier{tiers[0].number}-ledger",
            tiers[0].number,
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(ledger)),
            "INSERT INTO os_release_ledger",
            ledger,
        )
    )
    return points


def opening_points(pkg: package.Package) -> list[Point]:
    """The rollout transaction's row locks, after its table locks and before any write: on the
    proposal, the approvals, the approvers and their users (our session holds them FOR UPDATE).
    """
    code = sql.Literal(pkg.proposal)
    return [
        Point(
            "rollout",
            "lock-proposal",
            None,
            sql.SQL("SELECT 1 FROM os_proposals WHERE code = {} FOR UPDATE").format(code),
            "SELECT 1 FROM os_proposals WHERE code =",
        ),
        Point(
            "rollout",
            "lock-approvals",
            None,
            sql.SQL("SELECT 1 FROM os_proposal_approvals FOR UPDATE"),
            "SELECT 1 FROM os_proposal_approvals FOR SHARE",
        ),
        Point(
            "rollout",
            "lock-approvers",
            None,
            sql.SQL("SELECT 1 FROM os_approvers FOR UPDATE"),
            "SELECT 1 FROM os_approvers FOR SHARE",
        ),
        Point(
            "rollout",
            "lock-approver-users",
            None,
            sql.SQL("SELECT 1 FROM directus_users WHERE id IN (SELECT approver FROM os_proposal_approvals) FOR UPDATE"),
            "SELECT 1 FROM directus_users WHERE id IN",
        ),
    ]


ROLLOUT = statement_points(PKG, "rollout")[:-1] + opening_points(PKG) + statement_points(PKG, "rollout")[-1:]


ROLLBACK = statement_points(PKG, "rollback")


def executor_env() -> dict[str, str]:
    """The executor subprocess sees none of the caller's PG*/ONEROOF_* (but the tests' allowed-signers file)."""
    # The tests' allowed signers: the approvals are signed with test keys.
    # The executor waits for our lock far longer than any test takes to signal it (a loaded
    # machine may take seconds to see it wait): a crash test never meets its own lock timeout.
    return clean_env(**{signatures.ENV: str(TRUST.path), release.LOCK_TIMEOUT_ENV: "600"})


WAITING_SQL = """
SELECT a.pid, a.query, a.wait_event_type, a.wait_event,
       EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.pid = a.pid AND NOT l.granted
               AND l.relation IS NOT DISTINCT FROM to_regclass(%(table)s)) AS on_table
FROM pg_stat_activity AS a
WHERE a.datname = current_database() AND a.application_name = 'oneroof-executor' AND a.state = 'active'
  AND a.wait_event_type = 'Lock' AND %(blocker)s = ANY (pg_blocking_pids(a.pid))
"""


def wait_until_blocked(
    observer: psycopg.Connection[Any], proc: subprocess.Popen[str], point: Point, blocker_pid: int
) -> int:
    """The pid of the executor's backend once it waits at `point` behind our lock; fails if the
    executor ends first, or waits at any other statement.
    """
    deadline = time.monotonic() + WAIT_FOR_POINT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the executor ended (exit {proc.returncode}) before reaching {point.id}:\n{out}{err}")
        rows = observer.execute(WAITING_SQL, {"table": point.table, "blocker": blocker_pid}).fetchall()
        if rows:
            (row,) = rows
            text = " ".join(row["query"].split())
            assert text.startswith(point.query), f"waiting at another statement than {point.id}: {text[:200]}"
            if point.table:
                assert row["on_table"], f"{point.id}: the executor waits, but not for {point.table}"
            return int(row["pid"])
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the executor did not reach {point.id} within {WAIT_FOR_POINT:.0f} s")


def executor_sessions(observer: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return observer.execute(
        "SELECT pid, application_name, state FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = ANY (%s)",
        (list(EXECUTOR_APPS),),
    ).fetchall()


def advisory_locks(observer: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return observer.execute(
        "SELECT pid, classid, objid FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()


def wait_gone(observer: psycopg.Connection[Any]) -> None:
    """Wait until the killed executor's server sessions have ended (a backend blocked on a lock
    notices its client is gone only when it next talks to it).
    """
    deadline = time.monotonic() + 30
    while executor_sessions(observer):
        assert time.monotonic() < deadline, f"executor sessions outlived the executor: {executor_sessions(observer)}"
        time.sleep(0.05)


@contextmanager
def holding(clone: clones.Clone, lock: sql.Composable) -> Iterator[psycopg.Connection[Any]]:
    """A session of ours that holds `lock` in an open transaction until the block ends."""
    with connect(clone.dsn, application_name="oneroof-test-blocker") as blocker:
        blocker.execute("SET lock_timeout = 0")
        blocker.execute(lock)
        try:
            yield blocker
        finally:
            blocker.rollback()
