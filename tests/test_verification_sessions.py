"""End-to-end pytest sessions of the verification suite (pytester), with and without xdist:
the baseline passes on the golden figures, fails naming the pinned metric that moved, observes
content (system_issues) without comparing it, and a test whose transaction got an id fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from oneroof.core import metrics
from oneroof.harness import clones
from tests.support.processes import suite_args

CHANGES = {
    "ospa": "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256) "
    "SELECT p.id, a.user_id, a.level, p.package_sha256 FROM os_proposals p, os_approvers a "
    "WHERE a.kind = 'human' AND a.level = 'L4' LIMIT 1",
    "inventory": "DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'",
}


# The baseline stage: the database check, one test per pinned metric, and the five tests of effect
# (effective privileges, governance writes, inventory content, grantee roles, no other dispatch).
BASELINE_TESTS = 1 + len(metrics.PINNED) + 5


def run_invariants(pytester: pytest.Pytester, clone: clones.Clone, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*suite_args(clone.dsn, *args, expect_db=clone.name))


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_baseline_passes_on_the_golden_figures(
    pytester: pytest.Pytester, clone: clones.Clone, xdist: list[str]
) -> None:
    result = run_invariants(pytester, clone, "-m", "baseline", *xdist)
    result.assert_outcomes(passed=BASELINE_TESTS)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*oneroof entry == exit: *"])


@pytest.mark.parametrize("metric", sorted(CHANGES))
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_baseline_fails_naming_the_metric(
    pytester: pytest.Pytester, clone: clones.Clone, clone_conn: Any, metric: str, xdist: list[str]
) -> None:
    clone_conn.execute(CHANGES[metric])
    result = run_invariants(pytester, clone, "-m", "baseline", "-rf", *xdist)
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"FAILED *test_metric_matches_baseline[[]{metric}[]]*"])


def test_database_name_is_checked(pytester: pytest.Pytester, clone: clones.Clone) -> None:
    result = run_invariants(pytester, clone, "-m", "baseline", "--expect-db", "directus", "-rf")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAILED *test_database_is_the_one_the_run_expects*"])


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_content_is_observed_not_compared(
    pytester: pytest.Pytester, clone: clones.Clone, clone_conn: Any, xdist: list[str]
) -> None:
    """system_issues is content: a production that gained or lost issues passes the baseline, and
    the figure is shown as observed.
    """
    clone_conn.execute("DELETE FROM system_issues WHERE id = 1")
    result = run_invariants(pytester, clone, "-m", "baseline", *xdist)
    result.assert_outcomes(passed=BASELINE_TESTS)
    result.stdout.fnmatch_lines(["*observed (recorded, never compared): system_issues=204555*"])


def test_guard_fails_a_test_whose_transaction_got_an_id(pytester: pytest.Pytester, clone: clones.Clone) -> None:
    sneaky = pytester.makepyfile(
        test_xid="""
        def test_takes_an_xid(target_conn):
            target_conn.execute("SELECT txid_current()")
    """
    )
    # The guard is per test: the sneaky test alone shows it, without the other stages' invariants.
    result = run_invariants(pytester, clone, str(sneaky), "-m", "not baseline", "-k", "takes_an_xid")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*was assigned transaction id*verification must not write*"])


def test_unreachable_target_stops_the_session_once(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        *suite_args("host=127.0.0.1 port=9 user=postgres dbname=x connect_timeout=2")
    )
    assert result.ret == 2
    shown = result.stdout.str() + result.stderr.str()
    assert shown.count("oneroof: cannot connect to") == 1, shown  # once, without pytest's internals
    assert "_pytest" not in shown and "!!!" not in shown
    assert "collected" not in result.stdout.str()  # stopped before collecting a single test


def test_per_collection_invariants_follow_the_targets_inventory(
    pytester: pytest.Pytester, clone: clones.Clone, clone_conn: Any
) -> None:
    clone_conn.execute("INSERT INTO directus_collections (collection) VALUES ('dot_bridges')")
    clone_conn.execute("INSERT INTO os_collection_inventory VALUES ('dot_bridges', 'transport', 'public', now())")
    result = run_invariants(pytester, clone, "-m", "greenfield", "-rf", "-v")
    result.stdout.fnmatch_lines(
        [
            "*test_collection_has_no_release_facet[[]dot_bridges-tier3_owner[]] PASSED*",
            "FAILED *test_inventory_is_the_governed_set*",
        ]
    )
    assert result.ret == 1
