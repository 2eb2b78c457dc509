"""Races (proof): eight executors at once, and rollouts racing rollbacks, as real processes
against a clone. Exactly one deployment at a time, never a mixed database, no duplicate ledger
row, no lock left behind.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from itertools import groupby
from typing import Any

import psycopg
import pytest

from oneroof.core import gate
from oneroof.executor import release
from oneroof.harness import clones
from oneroof.harness.db import connect
from oneroof.harness.errors import LockHeld
from tests.support.release import FINAL, GREENFIELD, PKG, TRUST, approve, reading
from tests.support.testing import ROOT, signers

pytestmark = pytest.mark.proof
EXECUTORS = 8
ROUNDS = 3
TIMEOUT = 300  # seconds per process; every process here normally ends within a minute


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ONEROOF_ALLOWED_SIGNERS": str(signers().trust.path)}  # the tests' trust root
    return subprocess.Popen(
        [sys.executable, "-m", "oneroof.executor", *args],
        cwd=ROOT,
        text=True,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append((proc.returncode, out, err))
    return results


def assert_clean(conn: psycopg.Connection[Any], dsn: str) -> str:
    """No release lock left, exactly greenfield or finalized, and a ledger of whole, alternating
    deployments and reverts (tiers 2..6, then 6..2), without a duplicate row. Returns the state.
    """
    for _ in range(100):  # a finished executor's session may take a moment to end on the server
        held = conn.execute(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = %s::bigint::oid "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (gate.LOCK_KEY[1],),
        ).fetchone()
        if held == {"n": 0}:
            break
        time.sleep(0.05)
    assert held == {"n": 0}, "the release lock is still held"
    figures = {k: v for k, v in reading(dsn).metrics.items() if k not in ("db", "ospa")}
    state = "finalized" if figures == {k: v for k, v in FINAL.items() if k != "ospa"} else "greenfield"
    assert figures == {k: v for k, v in (FINAL if state == "finalized" else GREENFIELD).items() if k != "ospa"}
    rows = conn.execute("SELECT action, tier FROM os_release_ledger ORDER BY id").fetchall()
    runs = [(action, [r["tier"] for r in group]) for action, group in groupby(rows, key=lambda r: r["action"])]
    for index, (action, tiers) in enumerate(runs):
        assert action == ("deploy" if index % 2 == 0 else "revert"), runs
        assert tiers == ([2, 3, 4, 5, 6] if action == "deploy" else [6, 5, 4, 3, 2]), runs
    assert state == ("finalized" if len(runs) % 2 else "greenfield"), runs
    return state


def test_eight_executors_at_once_apply_exactly_once(clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    results = finish([start("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name) for _ in range(EXECUTORS)])
    applied = [r for r in results if r[0] == 0 and r[1].startswith("APPLIED")]
    finalized = [r for r in results if r[0] == 0 and r[1].startswith("ALREADY-FINALIZED")]
    held = [r for r in results if r[0] == 5 and "another executor holds the release lock" in r[2] and " (pid " in r[2]]
    assert len(applied) == 1, results
    assert len(applied) + len(finalized) + len(held) == EXECUTORS, [
        r for r in results if r not in applied + finalized + held
    ]
    # each shows the target as it is now, not the greenfield its entry read
    assert all(" own=35 gap=0 " in out for _, out, _ in finalized), finalized
    assert assert_clean(clone_conn, clone.dsn) == "finalized"
    print(
        f"\n{EXECUTORS} concurrent executors: {len(applied)} applied, {len(held)} exit 5 (lock held), "
        f"{len(finalized)} ALREADY-FINALIZED"
    )


def test_rollouts_racing_rollbacks_end_in_one_state(clone: clones.Clone, clone_conn: Any) -> None:
    chance = random.Random(20261126)  # the delays repeat from run to run
    outcomes: dict[str, int] = {}
    for _round in range(ROUNDS):
        approve(clone_conn)  # a fresh approval each round: a revert spends the one before
        procs = []
        for action in chance.sample(["rollout", "rollout", "rollback", "rollback"], 4):
            time.sleep(chance.uniform(0, 0.8))
            procs.append((action, start(action, "--dsn", clone.dsn, "--confirm-db", clone.name)))
        for (action, _), (code, out, err) in zip(procs, finish([p for _, p in procs]), strict=True):
            word = out.split(":", 1)[0] if code in (0, 3) else f"exit {code}"
            assert code in (0, 3, 5), (action, code, out, err)
            # a rollout may find its approval spent by a rollback that won, or see the database
            # change under its gate session: BLOCKED, having changed nothing
            assert "mixed" not in out + err, (action, out, err)
            outcomes[f"{action} {word}"] = outcomes.get(f"{action} {word}", 0) + 1
        assert_clean(clone_conn, clone.dsn)
    with connect(clone.dsn) as conn:
        assert gate.state(conn) in ("greenfield", "finalized")
    print(f"\n{ROUNDS} rounds of 2 rollouts racing 2 rollbacks: {dict(sorted(outcomes.items()))}")


def test_a_gate_session_failed_under_another_executor_s_lock_names_the_lock(
    clone: clones.Clone, clone_conn: Any
) -> None:
    """Another executor takes the release lock once this one has checked that nobody holds it:
    its gate session fails (the gate is closed while the lock is held), and it says so as LockHeld
    (exit 5: retry later), not as a closed gate. Nothing is changed.
    """
    approve(clone_conn)
    before = reading(clone.dsn).fingerprint
    with connect(clone.dsn, autocommit=True, application_name="oneroof-executor") as other:

        def lock_when_the_gate_session_starts(message: str) -> None:
            if message.startswith("gate session"):
                other.execute("SELECT pg_advisory_lock(%s, %s)", gate.LOCK_KEY)

        with pytest.raises(LockHeld) as caught:
            release.rollout(
                clone.dsn, PKG, confirm_db=clone.name, progress=lock_when_the_gate_session_starts, trust=TRUST
            )
        assert caught.value.message == (
            f"another executor holds the release lock on {clone.name!r} (pid {other.info.backend_pid}): "
            "wait for it to finish, then retry"
        )
    assert reading(clone.dsn).fingerprint == before
