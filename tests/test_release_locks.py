"""The release transaction's locks (release.lock_for_release) on one clone, most with nothing rolled
out: the wait it sets, the proposal's row it locks for a rollout and not for a rollback, the writer
it names when a table stays locked past that wait, a revocation committed while it waits, and a
connection lost while it waits or while it writes (release.all_or_nothing). Each was
a mutant of executor/release.py that the mutation check did not kill or did not reach
(bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from oneroof.core import package
from oneroof.executor import release
from oneroof.harness import clones
from oneroof.harness.db import connect
from oneroof.harness.errors import Blocked, DatabaseUnreachable, InvariantFailed, LockHeld
from tests.support.release import approve, rollout_behind, waiting_for_a_lock

PKG = package.load()


def proposal_row_free(dsn: str) -> bool:
    """Whether another session could lock the proposal's row for update now."""
    with connect(dsn) as other:
        try:
            other.execute("SELECT 1 FROM os_proposals WHERE code = %s FOR UPDATE NOWAIT", (PKG.proposal,))
        except psycopg.errors.LockNotAvailable:
            return False
        return True


@pytest.mark.parametrize(("timeout", "shown"), [("", "10s"), ("2.5", "2500ms")], ids=["default", "set"])
def test_the_release_transaction_waits_the_lock_timeout_and_locks_the_proposal(
    clone: clones.Clone, monkeypatch: pytest.MonkeyPatch, timeout: str, shown: str
) -> None:
    monkeypatch.setenv(release.LOCK_TIMEOUT_ENV, timeout)
    assert proposal_row_free(clone.dsn)
    with release.release_lock(clone.dsn) as lock_conn, connect(clone.dsn) as conn:
        # the release lock is a session's: its connection keeps no transaction open (no snapshot held
        # through the release, no idle_in_transaction_session_timeout to lose it by)
        assert lock_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        release.lock_for_release(conn, PKG, lock_conn)
        assert conn.execute("SHOW lock_timeout").fetchone() == {"lock_timeout": shown}
        assert not proposal_row_free(clone.dsn)  # a rollout's re-check reads a proposal nobody changes
        conn.rollback()
        release.lock_for_release(conn, PKG, lock_conn, proposal=False)
        assert proposal_row_free(clone.dsn)  # a rollback locks the tables only
        conn.rollback()


def test_a_writer_holding_a_table_past_the_lock_timeout_is_named(
    clone: clones.Clone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(release.LOCK_TIMEOUT_ENV, "0.2")
    first = release.locked_tables(PKG)[0]
    with connect(clone.dsn, application_name="t-writer") as writer:
        holder = writer.info.backend_pid
        writer.execute(psycopg.sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(psycopg.sql.Identifier(first)))
        with release.release_lock(clone.dsn) as lock_conn, connect(clone.dsn) as conn:
            with pytest.raises(LockHeld) as caught:
                release.lock_for_release(conn, PKG, lock_conn)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # rolled back
        writer.rollback()
    assert str(caught.value) == (
        f"the release transaction waited 0.2 s for table {first} on {clone.name!r}, held by pid "
        f"{holder} (t-writer) on {first}: nothing was changed; retry once it commits or "
        "rolls back (look the pid up in pg_stat_activity)"
    )


def test_a_revocation_committed_while_the_release_transaction_waits_blocks_it(
    clone: clones.Clone, clone_conn: Any
) -> None:
    """The gate, still greenfield, closes between the evaluation under the release lock and the one
    under the table and row locks: Blocked by that closed gate's own reason, nothing applied.
    """
    approval = approve(clone_conn)
    first = release.locked_tables(PKG)[0]
    with connect(clone.dsn) as revoker:
        revoker.execute(psycopg.sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(psycopg.sql.Identifier(first)))
        revoker.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (approval,))
        outcome = rollout_behind(clone.dsn, clone.name, revoker)
    assert len(outcome) == 1 and isinstance(outcome[0], Blocked), outcome
    assert outcome[0].reasons[0].startswith("valid approvals 0 < 1") and "revoked" in outcome[0].reasons[0]
    assert clone_conn.execute("SELECT count(*) AS n FROM os_release_ledger").fetchone() == {"n": 0}


def test_a_connection_lost_while_waiting_for_a_lock_is_unreachable_not_held(
    clone: clones.Clone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(release.LOCK_TIMEOUT_ENV, "60")
    first = release.locked_tables(PKG)[0]
    with connect(clone.dsn, application_name="t-writer") as writer, connect(clone.dsn, autocommit=True) as admin:
        writer.execute(psycopg.sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(psycopg.sql.Identifier(first)))
        with release.release_lock(clone.dsn) as lock_conn, connect(clone.dsn) as conn:
            waiting = conn.info.backend_pid

            def cut_once_waiting() -> None:
                admin.execute("SELECT pg_terminate_backend(%s)", (waiting_for_a_lock(clone.dsn, waiting),))

            cutter = threading.Thread(target=cut_once_waiting)
            cutter.start()
            try:
                with pytest.raises(DatabaseUnreachable) as caught:
                    release.lock_for_release(conn, PKG, lock_conn)
            finally:
                cutter.join()
        writer.rollback()
    message = str(caught.value)
    assert message.startswith(
        "lost the connection to the server while a lock of the release transaction was taken (terminating connection"
    ), message
    assert message.endswith("): nothing had been written; check with `oneroof monitor`, then retry"), message


def test_a_connection_lost_inside_the_release_transaction_is_unreachable(clone: clones.Clone) -> None:
    with connect(clone.dsn) as conn, connect(clone.dsn, autocommit=True) as admin:
        with pytest.raises(DatabaseUnreachable) as caught:
            with release.all_or_nothing(conn, "a tier"):
                conn.execute("SELECT 1")
                admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                conn.execute("SELECT 1")
        assert conn.broken
    message = str(caught.value)
    assert message.startswith("lost the connection to the server while a tier ran (terminating connection"), message
    assert message.endswith(
        "): the server rolls back an unfinished transaction, so nothing was kept; check with `oneroof monitor`, "
        "then retry"
    ), message


def test_a_failure_inside_the_release_transaction_rolls_it_back_at_once(clone: clones.Clone) -> None:
    """A database error is InvariantFailed quoting the server's first line; any other exception
    passes as it is; either way the transaction is rolled back before all_or_nothing lets go.
    """
    with connect(clone.dsn) as conn:
        with pytest.raises(InvariantFailed) as caught:
            with release.all_or_nothing(conn, "a tier"):
                conn.execute("CREATE TEMPORARY TABLE t (id int PRIMARY KEY)")
                conn.execute("INSERT INTO t VALUES (1), (1)")  # its DETAIL is a second line
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert str(caught.value) == (
            'a tier failed and everything was rolled back: duplicate key value violates unique constraint "t_pkey"'
        )
        with pytest.raises(InvariantFailed, match="^the content differs$"):
            with release.all_or_nothing(conn, "a tier"):
                conn.execute("SELECT 1")
                raise InvariantFailed("the content differs")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
