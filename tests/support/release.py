"""The release package, trust root, finalized figures and approval helper that the release tests
share.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from oneroof.core import content, metrics, package
from oneroof.executor import release
from oneroof.harness.db import connect
from tests.support.testing import signers

PKG = package.load()


TRUST = signers().trust


# The synthetic golden's system_issues at scale 1, the seed's: observed, so in no snapshot.
SEED_ISSUES = 204_556
# The figures after a rollout with one approval, and after its rollback (the approval stays): the
# package's own finalized and greenfield snapshots, with ospa 1, and the golden's system_issues.
FINAL = {"ospa": 1, **content.figures(package.snapshots_dir(PKG.path), "finalized"), "system_issues": SEED_ISSUES}
GREENFIELD = {"ospa": 1, **content.figures(package.snapshots_dir(PKG.path), "greenfield"), "system_issues": SEED_ISSUES}


def approve(conn: psycopg.Connection[Any], key: str = "l4", sha: str = PKG.sha256, rehearsal: bool = False) -> int:
    """Record a signed approval as a human would with `oneroof approve`; returns its id."""
    return signers().approve(conn, key, sha=sha, rehearsal=rehearsal)


def reading(dsn: str) -> metrics.Reading:
    with connect(dsn) as conn:
        return metrics.read(conn)


def start_rollout(dsn: str, name: str) -> tuple[threading.Thread, list[BaseException | release.Outcome]]:
    """A rollout of PKG to database `name` in a thread of its own, started (no gate session, no
    audit): the thread, and the list that gets its outcome or the exception it raised.
    """
    outcome: list[BaseException | release.Outcome] = []

    def roll_out() -> None:
        try:
            outcome.append(release.rollout(dsn, PKG, confirm_db=name, trust=TRUST, gate_session=False, audit=False))
        except BaseException as exc:  # noqa: BLE001 - the test judges it
            outcome.append(exc)

    thread = threading.Thread(target=roll_out)
    thread.start()
    return thread, outcome


def waiting_for_a_lock(dsn: str, pid: int | None = None, timeout: float = 60.0) -> int:
    """Until an executor's session (`pid`, else any) waits for a heavyweight lock (poll): its pid."""
    deadline = time.monotonic() + timeout
    with connect(dsn, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row: Any = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                "(pid = %s OR %s::int IS NULL AND application_name = 'oneroof-executor')",
                (pid, pid),
            ).fetchone()
            if row:
                return int(row["pid"])
            time.sleep(0.02)
    raise AssertionError("no executor waited for a lock")


def rollout_behind(dsn: str, name: str, blocker: Any) -> list[BaseException | release.Outcome]:
    """A rollout (start_rollout) that waits on a lock `blocker` holds in its open transaction: once
    it waits, `blocker` commits; the rollout's outcome (or exception) when it has ended.
    """
    thread, outcome = start_rollout(dsn, name)
    try:
        waiting_for_a_lock(dsn)
        blocker.commit()
    finally:
        thread.join(timeout=120)
    return outcome
