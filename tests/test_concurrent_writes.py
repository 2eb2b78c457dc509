"""Verification and release on a production that others write meanwhile (plain psycopg writer
threads: system_issues and governed content inserted and updated throughout): every session
reads one snapshot, others' drift is information, and the release neither fails nor blocks them.
"""

from __future__ import annotations

from typing import Any

import pytest

from oneroof.executor import release
from oneroof.harness import clones
from tests.support.processes import suite_args
from tests.support.release import PKG, TRUST, approve
from tests.support.writers import writers

STAGES = {"greenfield": "baseline or greenfield", "finalized": "finalized"}


def run_invariants(pytester: pytest.Pytester, clone: clones.Clone, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*suite_args(clone.dsn, *args, expect_db=clone.name))


@pytest.mark.parametrize("state", list(STAGES))
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_verification_reads_one_snapshot_under_concurrent_writes(
    pytester: pytest.Pytester, clone: clones.Clone, clone_conn: Any, state: str, xdist: list[str]
) -> None:
    """Every stage passes while writers insert and update content; every test, on every worker,
    read the fingerprint the session took at its start; the drift is reported as information.
    """
    if state == "finalized":
        approve(clone_conn)
        release.rollout(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST, gate_session=False, audit=False)
    trust = ("--allowed-signers", str(TRUST.path))
    with writers(clone.dsn) as traffic:
        before = traffic.total
        result = run_invariants(pytester, clone, "-m", STAGES[state], *trust, *xdist)
        during = traffic.total - before
    assert during > 0
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "oneroof information: the target changed during the session, by others' writes (system_issues*",
            "oneroof entry == exit: *",
        ]
    )
    assert "did not read the session's snapshot" not in result.stdout.str()


def test_others_writes_are_information_not_a_failure(pytester: pytest.Pytester, clone: clones.Clone) -> None:
    """A governance table written by someone else during the session: named as drift, and the
    session, which read its own snapshot, passes.
    """
    writer = pytester.makepyfile(
        test_writer="""
        import psycopg

        def test_someone_else_writes(target_dsn):
            with psycopg.connect(target_dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM os_owner_units WHERE code = 'MOIT'")

        def test_baseline_still_reads_the_session_snapshot(reading):
            assert reading.metrics["inventory"] == 35
    """
    )
    result = run_invariants(pytester, clone, str(writer), "-k", "someone_else or still_reads")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["oneroof information: the target changed during the session, by others' writes (os_owner_units)*"]
    )
