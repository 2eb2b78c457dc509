"""Verification and release on a production that others write meanwhile (plain psycopg writer
threads: system_issues and governed content inserted and updated throughout): every session
reads one snapshot, others' drift is information, and the release neither fails nor blocks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from oneroof.core import gate
from oneroof.core.content import POLICY_ID
from oneroof.core.evidence import StepName
from oneroof.executor import release
from oneroof.executor.rehearse import rehearse
from oneroof.harness import clones
from oneroof.harness.db import connect
from oneroof.harness.errors import Blocked, LockHeld
from tests.support.processes import suite_args
from tests.support.production import skip_below_a_rehearsal_server
from tests.support.release import PKG, TRUST, approve, reading, rollout_behind
from tests.support.testing import PgServer
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


# Someone else deletes a governance row during the session; a later test takes the session's figures.
WRITE_THEN_READ = """
import psycopg

import oneroof.fixtures.plugin as plugin

{sabotage}

def test_someone_else_writes(target_dsn):
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM os_owner_units WHERE code = 'MOIT'")

def test_the_reading_is_the_sessions(reading):
    assert reading.metrics["inventory"] == 35
"""


def test_others_writes_are_information_not_a_failure(pytester: pytest.Pytester, clone: clones.Clone) -> None:
    """A governance table written by someone else during the session: named as drift, and the
    session, which read its own snapshot, passes.
    """
    writer = pytester.makepyfile(test_writer=WRITE_THEN_READ.format(sabotage=""))
    result = run_invariants(pytester, clone, str(writer), "-k", "someone_else or the_reading")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["oneroof information: the target changed during the session, by others' writes (os_owner_units)*"]
    )


def test_a_process_whose_reads_miss_the_session_snapshot_fails_its_reading(
    pytester: pytest.Pytester, clone: clones.Clone
) -> None:
    """The figures a session compares are those of its snapshot: in a session whose reads do not
    import it (the import undone in this test's module), after someone else's write, the reading
    fails, naming the snapshot, instead of handing the figures over.
    """
    undone = "plugin.pin_snapshot = lambda conn, snapshot: None  # every read takes a snapshot of its own"
    sabotaged = pytester.makepyfile(test_sabotaged=WRITE_THEN_READ.format(sabotage=undone))
    result = run_invariants(pytester, clone, str(sabotaged), "-k", "someone_else or the_reading")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*did not read the session's snapshot*"])


def _rows(dsn: str) -> dict[str, int]:
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM system_issues) AS issues, (SELECT count(*) FROM kh_tags) AS content"
        ).fetchone()
    assert row is not None
    return dict(row)


def test_rollout_and_rollback_under_concurrent_writes(clone: clones.Clone, clone_conn: Any) -> None:
    """The gate session, the release transaction, the audit and the rollback all succeed while
    writers insert and update content; no write fails or is lost, and the release takes no lock
    on a content table.
    """
    approve(clone_conn)
    before = _rows(clone.dsn)
    with writers(clone.dsn) as traffic:
        applied = release.rollout(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
        traffic.wait_for(10)
        reverted = release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
        traffic.wait_for(10)
    assert applied.action == "applied" and applied.audit_exit == 0, applied
    assert reverted.action == "reverted", reverted
    after = _rows(clone.dsn)
    assert after == {
        "issues": before["issues"] + traffic.writes["issues"],
        "content": before["content"] + traffic.writes["content"],
    }
    assert reading(clone.dsn).metrics["own"] == 0


ATTACK = (
    "INSERT INTO directus_policies (id, name, icon, description, ip_access, enforce_tfa, admin_access, app_access) "
    "VALUES (%s, 'One-Roof Governance', 'policy', 'planted', NULL, false, true, true)"
)


def _untouched(dsn: str) -> None:
    with connect(dsn) as conn:
        assert gate.state(conn) == "greenfield"
        assert conn.execute("SELECT count(*) AS n FROM os_release_ledger").fetchone() == {"n": 0}


def test_an_uncommitted_conflicting_row_held_through_the_rollout_is_named(
    clone: clones.Clone, clone_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18.9: an attacker's transaction holds an uncommitted row under the tier-2 policy's id.
    The release transaction waits for it before its last evaluation (ONEROOF_LOCK_TIMEOUT seconds),
    then gives up: exit 5, naming the attacker's pid, nothing changed.
    """
    approve(clone_conn)
    monkeypatch.setenv(release.LOCK_TIMEOUT_ENV, "1.5")
    with psycopg.connect(clone.dsn, application_name="attacker") as attacker:
        attacker.execute(ATTACK, (POLICY_ID,))
        held = rf"waited 1.5 s for table directus_policies .*held by pid {attacker.info.backend_pid} \(attacker\) on "
        with pytest.raises(LockHeld, match=held):
            release.rollout(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST, gate_session=False, audit=False)
        attacker.rollback()
    _untouched(clone.dsn)


def test_a_conflicting_row_committed_while_the_rollout_waits_is_refused(clone: clones.Clone, clone_conn: Any) -> None:
    """Issue 18.9, the exact reproduction: the attacker commits while the release transaction waits
    for its row. The release must not commit with the attacker's Administrator policy in place:
    the last evaluation, after the wait, sees the policy as a leftover (Blocked, state=mixed).
    """
    approve(clone_conn)
    with psycopg.connect(clone.dsn, application_name="attacker") as attacker:
        attacker.execute(ATTACK, (POLICY_ID,))
        outcome = rollout_behind(clone.dsn, clone.name, attacker)
    assert len(outcome) == 1 and isinstance(outcome[0], Blocked), outcome
    assert "state=mixed" in str(outcome[0]) and "with admin_access" in str(outcome[0])
    with connect(clone.dsn) as conn:
        assert conn.execute("SELECT count(*) AS n FROM os_release_ledger").fetchone() == {"n": 0}
        assert conn.execute("SELECT count(*) AS n FROM os_collection_owners").fetchone() == {"n": 0}


@pytest.mark.parametrize("change", ["content-grew", "governance-moved"])
def test_rehearsal_of_a_production_whose_content_grew_is_go_and_whose_governance_moved_is_no_go(
    test_server: PgServer, unique: Any, tmp_path: Path, change: str
) -> None:
    """Issue 17.1: content is observed (any growth rehearses GO); a governance figure that moved is
    NO-GO, and the failed step names it.
    """
    skip_below_a_rehearsal_server(test_server.version)  # the rehearsal restores a snapshot with pg_restore 18
    name, golden = unique("prod_grew"), unique("snap_grew")
    clones.create(test_server.admin, source=test_server.golden, name=name, wait=60)
    try:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
        with connect(test_server.dsn(name), autocommit=True) as conn:
            if change == "content-grew":
                conn.execute(
                    "INSERT INTO system_issues SELECT id + 70000000, collection, item, severity, status, code, "
                    "message, source, occurrences, first_seen, last_seen, resolved_at, fingerprint FROM system_issues"
                )
                conn.execute("INSERT INTO kh_tags (name) SELECT 'grown ' || i FROM generate_series(1, 500) AS i")
                conn.execute("DELETE FROM kh_topics WHERE id <= 5")
            else:
                conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")
        evidence = rehearse(
            test_server.admin, run_dir=tmp_path, golden_name=golden, snapshot_from=test_server.dsn(name)
        )
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            for database in (golden, name):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    failed = [(s.name, s.detail) for s in evidence.steps if not s.ok]
    if change == "content-grew":
        assert evidence.ok, failed
        assert evidence.step(StepName.SNAPSHOT).figures["system_issues"] == 2 * 204_556  # type: ignore[union-attr]
        assert (evidence.production or {}).get("baseline_exit") == 0
    else:
        assert not evidence.ok
        assert failed[0][0] == "baseline" and "test_metric_matches_baseline[inventory]" in failed[0][1], failed


def test_probe_names_others_writes_between_its_fingerprints_and_exits_0(
    clone: clones.Clone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row committed by someone else between the probe's entry and exit readings: the
    fingerprints differ, the probe names what changed, and it proves it wrote nothing.
    """
    from oneroof.executor import probe

    first_read = probe._read

    def read_then_someone_writes(conn: Any) -> Any:
        reading = first_read(conn)
        monkeypatch.setattr(probe, "_read", first_read)  # only after the entry reading
        with psycopg.connect(clone.dsn, autocommit=True) as other:
            other.execute("DELETE FROM os_owner_units WHERE code = 'MOIT'")
            other.execute("DELETE FROM system_issues WHERE id = (SELECT min(id) FROM system_issues)")
        return reading

    monkeypatch.setattr(probe, "_read", read_then_someone_writes)
    result = probe.probe(clone.dsn)
    assert not result.equal
    assert result.changed == ["system_issues", "os_owner_units"], result.changed
    assert result.wrote_nothing and result.as_json()["wrote_nothing"] is True


def test_probe_under_live_writes_exits_0_and_names_only_the_writers_tables(
    oneroof_main: Any, clone: clones.Clone
) -> None:
    """`oneroof probe` while writers insert and update system_issues and kh_tags: exit 0 each
    time, and whatever it names as changed is what they write (kh_tags is no governance table,
    so only the system_issues figure can move).
    """
    import json

    with writers(clone.dsn) as traffic:
        for _ in range(3):
            before = traffic.total
            result = oneroof_main("probe", "--json", "--dsn", clone.dsn)
            assert result.returncode == 0, result.stdout + result.stderr
            data = json.loads(result.stdout)
            assert data["wrote_nothing"] is True
            assert set(data["fingerprint"]["changed"]) <= {"system_issues"}, data
            assert data["fingerprint"]["equal"] == (data["fingerprint"]["changed"] == [])
            traffic.wait_for(1)
            assert traffic.total > before
        text = oneroof_main("probe", "--dsn", clone.dsn)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "entry == exit" in text.stdout


def test_probe_whose_read_was_assigned_a_transaction_id_exits_1(oneroof_main: Any, clone: clones.Clone) -> None:
    """A target where reading assigns a transaction id (system_issues made a view that calls
    txid_current()): the probe cannot prove it wrote nothing, and says so with exit 1.
    """
    with psycopg.connect(clone.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE system_issues RENAME TO system_issues_kept")
        conn.execute("CREATE VIEW system_issues AS SELECT * FROM system_issues_kept WHERE txid_current() > 0")
    result = oneroof_main("probe", "--dsn", clone.dsn)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "were assigned transaction ids" in result.stderr and "cannot prove it wrote nothing" in result.stderr
