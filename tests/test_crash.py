"""A crash at every statement boundary of the release transactions (issue 12, item 1).

No hook in the product: another session holds a lock that one statement of the rollout or
rollback transaction needs, so the real executor process (`python -m executor`) blocks exactly
there. The test confirms where it waits (pg_stat_activity: waiting on a Lock, the statement's
own text, blocked by our session), then kills it: SIGKILL, SIGINT, or the server cutting its
connection (pg_terminate_backend). Random delays once the transaction is under way add points
between the statements, at the commit and after it.

After each point: the executor's sessions are gone, no advisory lock is held, the database is
exactly greenfield or exactly finalized by the invariant stage of that state (a real pytest
session), and a re-run converges. Each test records `kill_point`, `signal` and `state` as
junitxml properties: `pytest -m proof tests/test_crash.py --junitxml=crash.xml` lists them.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from oneroof.core import gate
from oneroof.executor import release
from oneroof.harness import clones
from oneroof.harness.db import connect
from tests.support.crash import (
    PKG,
    ROLLBACK,
    ROLLOUT,
    Point,
    advisory_locks,
    executor_env,
    holding,
    wait_gone,
    wait_until_blocked,
)
from tests.support.release import TRUST, approve
from tests.support.testing import PROFILE, ROOT, signers

pytestmark = pytest.mark.proof


def _first_of_each_tier(points: list[Point]) -> list[Point]:
    seen: set[int] = set()
    chosen = []
    for point in points:
        if point.tier is not None and point.tier not in seen:
            seen.add(point.tier)
            chosen.append(point)
    return chosen


# Every point with SIGKILL. SIGINT and the server cutting the connection: in CI at the first
# statement of two tiers of each command; with the `nightly` profile at every point.
if PROFILE == "nightly":
    OTHER_WAYS = [(p, how) for how in ("SIGINT", "terminate") for p in ROLLOUT + ROLLBACK]
    RANDOM_DELAYS = 10  # per command
else:
    rollout_tiers, rollback_tiers = _first_of_each_tier(ROLLOUT), _first_of_each_tier(ROLLBACK)
    OTHER_WAYS = [(p, "SIGINT") for p in (rollout_tiers[1], rollback_tiers[0])] + [
        (p, "terminate") for p in (rollout_tiers[-1], rollback_tiers[-1])
    ]
    RANDOM_DELAYS = 3
MATRIX = [(p, "SIGKILL") for p in ROLLOUT + ROLLBACK] + OTHER_WAYS


def start_executor(command: str, clone: clones.Clone, home: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "oneroof.executor", command, "--dsn", clone.dsn, "--confirm-db", clone.name],
        cwd=ROOT,
        env={**executor_env(), "ONEROOF_HOME": home},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stage_state(clone: clones.Clone) -> str:
    """The state by the gate's reading, confirmed by that state's invariant stage (pytest)."""
    with connect(clone.dsn) as conn:
        state = gate.state(conn)
    assert state in ("greenfield", "finalized"), f"the database is {state} after the crash"
    code = release.run_stage(clone.dsn, state, expect_db=clone.name, allowed_signers=signers().trust.path)
    assert code == 0, f"the {state} invariant stage failed (pytest exit {code}) after the crash"
    return state


def converge(clone: clones.Clone, clone_conn: Any, command: str) -> str:
    """Re-run the command that was killed; it must reach its end state. Returns the action taken."""
    if command == "rollout":
        outcome = release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
        assert outcome.action in ("applied", "already-finalized")
        want = "finalized"
    else:
        outcome = release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
        assert outcome.action in ("reverted", "already-greenfield")
        want = "greenfield"
    with connect(clone.dsn) as conn:
        assert gate.state(conn) == want
        figures = release.expected_figures(PKG, want)
        with conn.transaction():
            release.check_figures(conn, figures, want)
    return outcome.action


def prepare(clone: clones.Clone, clone_conn: Any, command: str) -> None:
    """A fresh approval; for a rollback point, the tiers applied first."""
    approve(clone_conn)
    if command == "rollback":
        release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)


def check_after(clone: clones.Clone, observer: psycopg.Connection[Any], record: Callable[[str, object], None]) -> str:
    wait_gone(observer)
    assert advisory_locks(observer) == [], "an advisory lock outlived the executor"
    state = stage_state(clone)
    record("state", state)
    return state


def ledger(clone_conn: Any) -> list[tuple[str, int]]:
    return [
        (r["action"], r["tier"])
        for r in clone_conn.execute("SELECT action, tier FROM os_release_ledger ORDER BY id").fetchall()
    ]


@pytest.mark.parametrize(("point", "how"), MATRIX, ids=[f"{p.id}:{how}" for p, how in MATRIX])
def test_crash_at_a_statement(
    point: Point,
    how: str,
    clone: clones.Clone,
    clone_conn: Any,
    oneroof_home: Any,
    figure: Callable[[str, object], None],
) -> None:
    prepare(clone, clone_conn, point.command)
    history = ledger(clone_conn)
    figure("kill_point", point.id)
    figure("signal", how)
    with connect(clone.dsn, autocommit=True, application_name="oneroof-test-observer") as observer:
        with holding(clone, point.lock) as blocker:
            proc = start_executor(point.command, clone, str(oneroof_home))
            try:
                backend = wait_until_blocked(observer, proc, point, blocker.info.backend_pid)
                if how == "SIGKILL":
                    proc.send_signal(signal.SIGKILL)
                elif how == "SIGINT":
                    proc.send_signal(signal.SIGINT)
                else:
                    observer.execute("SELECT pg_terminate_backend(%s)", (backend,))
                if how != "SIGKILL":  # the executor ends while our lock is still held
                    out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None and how != "SIGKILL":
                    proc.kill()
        if how == "SIGKILL":
            out, err = proc.communicate(timeout=60)
        # What the executor said when it could still speak: one line, no traceback.
        code, said = {
            "SIGKILL": (-signal.SIGKILL, ""),
            "SIGINT": (130, "oneroof: interrupted"),
            "terminate": (2, "oneroof: error: lost the connection to the server while a"),
        }[how]
        assert proc.returncode == code, out + err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(said), err
        state = check_after(clone, observer, figure)
    assert state == ("greenfield" if point.command == "rollout" else "finalized")
    assert ledger(clone_conn) == history, "a killed transaction left ledger rows"
    converge(clone, clone_conn, point.command)


@pytest.mark.parametrize("command", ["rollout", "rollback"])
@pytest.mark.parametrize("seed", range(RANDOM_DELAYS))
def test_crash_at_a_random_delay(
    command: str,
    seed: int,
    clone: clones.Clone,
    clone_conn: Any,
    oneroof_home: Any,
    figure: Callable[[str, object], None],
) -> None:
    """Hold the transaction's first write, release it, and SIGKILL after a random delay, spread
    evenly on a log scale from 1 ms to 2 s: inside the tiers, at the commit, or after it.
    """
    first = ROLLOUT if command == "rollout" else ROLLBACK
    point = next(p for p in first if p.table)
    delay = 10 ** random.Random(f"{command}-{seed}").uniform(-3.0, 0.3)
    prepare(clone, clone_conn, command)
    figure("kill_point", f"{command}:+{delay * 1000:.1f}ms after {point.label}")
    figure("signal", "SIGKILL")
    with connect(clone.dsn, autocommit=True, application_name="oneroof-test-observer") as observer:
        with holding(clone, point.lock) as blocker:
            proc = start_executor(command, clone, str(oneroof_home))
            wait_until_blocked(observer, proc, point, blocker.info.backend_pid)
        time.sleep(delay)  # the lock is released as the block ends: the executor runs on
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        state = check_after(clone, observer, figure)
    done = "finalized" if command == "rollout" else "greenfield"
    if state == done:  # it committed before the kill: a re-run finds nothing to do
        assert converge(clone, clone_conn, command) in ("already-finalized", "already-greenfield")
    else:
        converge(clone, clone_conn, command)


def test_the_matrix_covers_every_tier_and_at_least_30_points() -> None:
    tiers = {t.number for t in PKG.tiers}
    for command, points in (("rollout", ROLLOUT), ("rollback", ROLLBACK)):
        assert {p.tier for p in points if p.tier is not None} == tiers, command
    assert len(MATRIX) + 2 * RANDOM_DELAYS >= 30
