"""The gated executor end to end on clones: blocked, applied, idempotent, revoked under the
lock, two executors at once, a broken tier, and the monitor's verdicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import gate, metrics, package, signatures
from oneroof.executor import release
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from oneroof.harness.errors import Blocked, IntegrityError, InvariantFailed, LockHeld
from tests.support.processes import clean_env, interrupt, start_executor
from tests.support.release import FINAL, GREENFIELD, PKG, TRUST, approve, reading
from tests.support.testing import ROOT, signers


def test_blocked_rollout_changes_nothing_and_exits_3(oneroof: Any, clone: clones.Clone) -> None:
    before = reading(clone.dsn).fingerprint
    result = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name)
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[0] == (
        "BLOCKED: valid approvals 0 < 1; next: a human L2/L4 approver runs `oneroof approve` (see the approver runbook)"
    )
    entry = result.stdout.split("entry ")[1].split()[0]
    exit_ = result.stdout.split("exit  ")[1].split()[0]
    assert entry == exit_ == before == reading(clone.dsn).fingerprint


def test_approved_rollout_reaches_exactly_the_finalized_figures(clone: clones.Clone, clone_conn: Any) -> None:
    approval = approve(clone_conn)
    before = reading(clone.dsn)
    notes: list[str] = []
    started = time.monotonic()
    outcome = release.rollout(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST, progress=notes.append)
    assert 0 < outcome.seconds["transaction"] <= outcome.seconds["total"] <= time.monotonic() - started
    assert (outcome.action, outcome.approvals, outcome.audit_exit) == ("applied", (approval,), 0)
    assert outcome.database == clone.name
    assert notes == [
        "gate session: pytest invariants -m 'gate or baseline'",
        "taking the release lock",
        f"applying tiers 2-6 with approvals #{approval}",
        "finalized audit: pytest invariants -m finalized",
    ]
    assert all(
        0 < outcome.seconds[phase] <= outcome.seconds["total"] for phase in ("gate_session", "transaction", "audit")
    )
    after = reading(clone.dsn)
    assert {k: v for k, v in after.metrics.items() if k != "db"} == FINAL
    ledger = clone_conn.execute(
        "SELECT tier, action, package_sha256, approval_ids FROM os_release_ledger ORDER BY id"
    ).fetchall()
    assert ledger == [
        {"tier": t, "action": "deploy", "package_sha256": PKG.sha256, "approval_ids": [approval]}
        for t in (2, 3, 4, 5, 6)
    ]
    assert outcome.entry == before.fingerprint and outcome.exit == after.fingerprint != before.fingerprint

    notes.clear()
    again = release.rollout(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST, progress=notes.append)
    assert again.action == "already-finalized" and reading(clone.dsn).fingerprint == after.fingerprint
    assert notes == []  # said before any gate session

    notes.clear()
    started = time.monotonic()
    # allowed signers that do not list the approver's key: the deployment does not verify
    outsider = " ".join(signers().outsider.with_suffix(".pub").read_text().split()[:2])
    stranger = signatures.TrustRoot(TRUST.path, f"outsider@gov.example.com {outsider}\n".encode())
    with pytest.raises(IntegrityError) as refused:
        release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=stranger)
    assert str(refused.value).startswith(
        f"the ledger's deployment of package {PKG.sha256[:12]} does not verify against the allowed signers "
        f"{stranger.sha256[:12]}: approval #{approval}: signed by key "
    ), refused.value
    # the allowed signers may have grown since the rollout: the deployment still verifies
    grown = signatures.TrustRoot(TRUST.path, TRUST.data + f"outsider@gov.example.com {outsider}\n".encode())
    back = release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=grown, progress=notes.append)
    assert back.action == "reverted"
    assert notes == ["taking the release lock", "reverting tiers 6-2 (state finalized)"]
    assert 0 < back.seconds["transaction"] <= back.seconds["total"] <= time.monotonic() - started
    greenfield = reading(clone.dsn)
    assert greenfield.fingerprint == before.fingerprint  # approvals kept, everything else as before
    assert {k: greenfield.metrics[k] for k in GREENFIELD} == GREENFIELD

    twice = release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
    assert twice.action == "already-greenfield" and reading(clone.dsn).fingerprint == before.fingerprint
    actions = clone_conn.execute(
        "SELECT action, count(*) AS n FROM os_release_ledger GROUP BY action ORDER BY action"
    ).fetchall()
    assert actions == [{"action": "deploy", "n": 5}, {"action": "revert", "n": 5}]
    named = clone_conn.execute(
        "SELECT DISTINCT l.action, l.proposal_id = p.id AS named FROM os_release_ledger AS l "
        "JOIN os_proposals AS p ON p.code = %s ORDER BY 1",
        (PKG.proposal,),
    ).fetchall()
    assert named == [{"action": "deploy", "named": True}, {"action": "revert", "named": True}]  # the proposal


def test_cli_rollout_and_stages(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    applied = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, "--expect-sha256", PKG.sha256)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stdout.startswith("APPLIED: ")
    assert oneroof("verify", "--stage", "finalized", "--dsn", clone.dsn, "--expect-db", clone.name).returncode == 0
    assert oneroof("verify", "--stage", "greenfield", "--dsn", clone.dsn, "--expect-db", clone.name).returncode == 1
    assert oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", clone.name).returncode == 0
    assert oneroof("verify", "--stage", "greenfield", "--dsn", clone.dsn, "--expect-db", clone.name).returncode == 0
    assert oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", clone.name).stdout.startswith("ALREADY-GREENFIELD")


def test_pinned_hash_mismatch_exits_4_before_touching_the_database(
    oneroof: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    approve(clone_conn)
    result = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, "--expect-sha256", "0" * 64)
    assert result.returncode == 4 and reading(clone.dsn).metrics["own"] == 0


def test_wrong_confirm_db_blocks(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    result = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", "directus")
    assert result.returncode == 3 and "the operator named 'directus'" in result.stdout
    assert oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", "directus").returncode == 2


def test_revocation_after_the_gate_session_blocks_under_the_lock(clone: clones.Clone, clone_conn: Any) -> None:
    approval = approve(clone_conn)
    before = reading(clone.dsn).fingerprint

    def revoke_when_locking(message: str) -> None:
        if message.startswith("taking the release lock"):
            clone_conn.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (approval,))

    with pytest.raises(Blocked) as caught:
        release.rollout(clone.dsn, PKG, confirm_db=clone.name, progress=revoke_when_locking, trust=TRUST)
    assert caught.value.reasons[0].startswith("valid approvals 0 < 1") and "revoked" in caught.value.reasons[0]
    assert reading(clone.dsn).metrics["own"] == 0
    assert caught.value.exit != before  # the revocation itself is the only change


def test_second_executor_exits_5_while_the_first_applies(clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    second: dict[str, Any] = {}

    def start_second_executor(message: str) -> None:
        if message.startswith("applying tiers"):
            second["proc"] = subprocess.run(
                [sys.executable, "-m", "oneroof.executor", "rollout", "--dsn", clone.dsn, "--confirm-db", clone.name],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
                check=False,
            )

    first = release.rollout(clone.dsn, PKG, confirm_db=clone.name, progress=start_second_executor, trust=TRUST)
    assert first.action == "applied"
    assert second["proc"].returncode == 5, second["proc"].stdout + second["proc"].stderr
    assert "another executor holds the release lock" in second["proc"].stderr


def test_lock_held_raises_at_once(clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    with connect(clone.dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", gate.LOCK_KEY)
        # named with its pid at once, not after the release lock's retries (which cannot name it)
        with pytest.raises(LockHeld, match=rf"\(pid {other.info.backend_pid}\): wait for it to finish"):
            release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)


@pytest.fixture
def broken(tmp_path: Path) -> Any:
    """Make a test copy of the package with one tier changed, sealed so that it verifies."""

    def make(tier_file: str, old: str, new: str) -> package.Package:
        copy = package.bundle(package.DEFAULT_DIR, tmp_path / "broken").path
        target = copy / tier_file
        assert old in target.read_text()
        target.write_text(target.read_text().replace(old, new))
        package.seal(copy)
        return package.load(copy)

    return make


@pytest.mark.parametrize(
    ("tier_file", "old", "new", "message"),
    [
        ("tier5_label_rules.deploy.sql", "'require'", "'demand'", "a tier failed"),
        ("tier6_lifecycle.deploy.sql", "'os_gov_events', false", "'os_gov_events', true", "event bindings are enabled"),
        ("tier3_ownership.deploy.sql", "    ('moit_price_index', 'MOIT'),\n", "", "own=34, gap=1"),
        (
            "tier4_axes.deploy.sql",
            "sensitivity FROM os_collection_inventory;\n",
            "sensitivity FROM os_collection_inventory;\nDELETE FROM system_issues WHERE id = 1;\n",
            "touched data tables [(]system_issues[)]",
        ),
    ],
    ids=["sql-error", "enabled-binding", "missing-owner", "writes-system-issues"],
)
def test_broken_tier_rolls_everything_back(
    clone: clones.Clone, clone_conn: Any, broken: Any, tier_file: str, old: str, new: str, message: str
) -> None:
    pkg = broken(tier_file, old, new)
    clone_conn.execute("UPDATE os_proposals SET package_sha256 = %s", (pkg.sha256,))
    approve(clone_conn, sha=pkg.sha256)
    before = reading(clone.dsn).fingerprint
    with pytest.raises(InvariantFailed, match=message):
        release.rollout(clone.dsn, pkg, confirm_db=clone.name, trust=TRUST)
    assert reading(clone.dsn).fingerprint == before
    assert clone_conn.execute("SELECT count(*) AS n FROM os_release_ledger").fetchone() == {"n": 0}


def test_rehearsal_approval_opens_only_a_marked_clone(oneroof_main: Any, clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn, rehearsal=True)
    assert oneroof_main("monitor", "--dsn", clone.dsn).returncode == 0
    clone_conn.execute("SELECT 1")
    with connect(clones.with_dbname(clone.dsn, "postgres"), autocommit=True) as admin:
        admin.execute(clones.sql.SQL("ALTER DATABASE {} RESET ALL").format(clones.sql.Identifier(clone.name)))
    result = oneroof_main("monitor", "--dsn", clone.dsn)
    assert result.returncode == 3 and "not a marked clone" in result.stdout


def test_monitor_verdicts(oneroof_main: Any, clone: clones.Clone, clone_conn: Any) -> None:
    blocked = oneroof_main("monitor", "--json", "--dsn", clone.dsn)
    assert blocked.returncode == 3
    data = json.loads(blocked.stdout)
    assert (data["verdict"], data["reasons"]) == ("BLOCKED", ["valid approvals 0 < 1"])
    assert data["fingerprint"]["equal"] and data["metrics"]["ospa"] == 0
    approve(clone_conn, "svc-etl")
    still = json.loads(oneroof_main("monitor", "--json", "--dsn", clone.dsn).stdout)
    assert still["verdict"] == "BLOCKED" and "service account" in still["reasons"][0]
    approve(clone_conn, "l2")
    opened = oneroof_main("monitor", "--dsn", clone.dsn)
    assert opened.returncode == 0 and opened.stdout.startswith("OPEN\n")


def test_rollout_takes_no_lock_on_content_or_system_issues(clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    with connect(clone.dsn) as conn:
        verdict = gate.evaluate(conn, PKG, confirm_db=clone.name, trust=TRUST)
        release.apply_tiers(conn, PKG, verdict)
        locked = {
            r["relname"]
            for r in conn.execute(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND c.relkind = 'r'"
            ).fetchall()
        }
        conn.rollback()
    content = {name for name, _, _ in catalog.GOVERNED} | set(catalog.UNGOVERNED) | {"system_issues"}
    assert locked and not locked & content, sorted(locked & content)


def test_concurrent_readers_see_greenfield_or_finalized_never_a_mix(clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        with connect(clone.dsn) as conn:
            while not stop.is_set():
                seen.add(int(metrics.read(conn).metrics["gap"]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
        release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
    finally:
        stop.set()
        watcher.join()
    assert seen <= {0, 210} and seen


def test_a_session_setting_cannot_fake_the_clone_mark(
    oneroof: Any, test_server: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    with connect(test_server.admin, autocommit=True) as admin:  # now an unmarked copy: production
        admin.execute(clones.sql.SQL("ALTER DATABASE {} RESET ALL").format(clones.sql.Identifier(clone.name)))
    approve(clone_conn, rehearsal=True)
    spoofed = f"{clone.dsn} options='-c oneroof.clone={clone.name}'"
    with connect(spoofed) as conn:
        assert conn.execute("SELECT current_setting('oneroof.clone') AS v").fetchone() == {"v": clone.name}
        assert not clones.connected_is_clone(conn)
    from oneroof.executor.rehearse import approve_rehearsal
    from oneroof.harness.errors import CloneError

    with pytest.raises(CloneError, match="not a marked clone"):
        approve_rehearsal(spoofed)
    result = oneroof(
        "rollout", "--dsn", spoofed, "--confirm-db", clone.name, env={"PGOPTIONS": f"-c oneroof.clone={clone.name}"}
    )
    assert result.returncode == 3 and "not a marked clone" in result.stdout
    assert reading(clone.dsn).metrics["own"] == 0


def test_an_approval_is_spent_by_a_deployment_that_was_rolled_back(
    oneroof_main: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    first = approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
    release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
    blocked = oneroof_main("monitor", "--dsn", clone.dsn)
    assert blocked.returncode == 3
    assert f"#{first} authorised a deployment already" in blocked.stdout
    with pytest.raises(Blocked):
        release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
    second = approve(clone_conn, "l2")
    again = release.rollout(clone.dsn, PKG, confirm_db=clone.name, audit=False, trust=TRUST)
    assert again.approvals == (second,)
    # a newest ledger row that joins the first deployment (its time copied) is not the deployment reverted
    columns = (
        "action, tier, package_name, package_sha256, proposal_id, approval_ids, executed_at, database, executed_by, "
        "tool_version, allowed_signers_sha256, statement_nonces"
    )
    forged = clone_conn.execute(
        f"INSERT INTO os_release_ledger ({columns}) SELECT {columns} FROM os_release_ledger "  # noqa: S608 - constant
        "WHERE action = 'deploy' ORDER BY id LIMIT 1 RETURNING id"
    ).fetchone()
    with pytest.raises(IntegrityError, match="its newest row is not part of a deployment"):
        release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
    clone_conn.execute("DELETE FROM os_release_ledger WHERE id = %s", (forged["id"],))
    # the rollback reverts the newest of the two deployments, with the statement it carried
    back = release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)
    assert back.action == "reverted" and back.nonces == again.nonces and len(again.nonces) == 1


def test_a_human_approver_with_a_static_token_does_not_count(
    oneroof_main: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    clone_conn.execute(
        "UPDATE directus_users SET token = 'handed-to-a-script' WHERE id = %s", (catalog.account("l4").id,)
    )
    approve(clone_conn)
    result = oneroof_main("monitor", "--dsn", clone.dsn)
    assert result.returncode == 3 and "approver has a static token" in result.stdout


def test_pytest_addopts_cannot_reach_the_gate_session(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    # production's governance moved from the baseline
    clone_conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")
    approve(clone_conn)
    snapshot = ROOT / "snapshots" / "test_baseline.ambr"
    before = snapshot.read_bytes()
    result = oneroof(
        "rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, env={"PYTEST_ADDOPTS": "--snapshot-update"}
    )
    assert result.returncode == 3 and "the gate session failed" in result.stdout
    assert snapshot.read_bytes() == before and reading(clone.dsn).metrics["own"] == 0


def _as_golden(test_server_admin: str, name: str, *, mark: bool) -> None:
    """Give database `name` the database settings a golden build leaves (or only read-only)."""
    from psycopg import sql

    with connect(test_server_admin, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
        if mark:
            admin.execute(sql.SQL("ALTER DATABASE {} SET oneroof.golden = on").format(sql.Identifier(name)))
        admin.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(sql.Identifier(name)))


@pytest.mark.parametrize("mark", [True, False], ids=["golden", "read-only"])
def test_a_golden_or_read_only_database_is_refused_up_front(
    oneroof: Any, oneroof_main: Any, test_server: Any, clone: clones.Clone, clone_conn: Any, mark: bool
) -> None:
    approve(clone_conn)  # approved, so nothing but the target's nature closes the gate
    _as_golden(test_server.admin, clone.name, mark=mark)
    before = reading(clone.dsn).fingerprint
    result = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name)
    assert result.returncode == 3, result.stdout + result.stderr
    blocked = [line for line in result.stdout.splitlines() if line.startswith("BLOCKED: ")]
    expected = "a golden database is never a rollout target" if mark else "default_transaction_read_only"
    assert len(blocked) == 1 and expected in blocked[0] and "oneroof clone create" in blocked[0], result.stdout
    assert "FOR UPDATE" not in result.stdout + result.stderr
    assert reading(clone.dsn).fingerprint == before
    monitor = oneroof_main("monitor", "--dsn", clone.dsn, "--json")
    assert monitor.returncode == 3 and any(expected in r for r in json.loads(monitor.stdout)["reasons"])


def test_after_a_rollback_ospa_counts_rows_and_the_gate_counts_valid_approvals(
    oneroof_main: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    """Ospa keeps the source document's meaning (rows of os_proposal_approvals); the gate's own
    count is "valid approvals", in the text and the JSON alike.
    """
    approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
    release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST)  # the approval is spent now
    text = oneroof_main("monitor", "--dsn", clone.dsn)
    assert text.returncode == 3
    lines = text.stdout.splitlines()
    assert lines[0].startswith("BLOCKED: valid approvals 0 < 1 (ospa=1: 1 approval row, 1 not valid: #"), lines[0]
    assert "ospa           1" in lines
    assert not any("ospa=0" in line for line in lines), text.stdout
    data = json.loads(oneroof_main("monitor", "--json", "--dsn", clone.dsn).stdout)
    assert data["metrics"]["ospa"] == 1 and data["valid_approvals"] == []
    assert data["reasons"][0].startswith("valid approvals 0 < 1 (ospa=1:")


def test_ctrl_c_after_the_commit_says_the_tiers_are_live(clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    env = clean_env(ONEROOF_ALLOWED_SIGNERS=str(TRUST.path))  # the tests' trust root, as the oneroof fixture gives it
    proc = start_executor("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, env=env, group=True)
    _, err = interrupt(proc, after="finalized audit")  # the commit is done
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert (
        "interrupted after the commit: tiers 2-6 are live" in last
        and f"oneroof rollback --confirm-db {clone.name}" in last
    )
    assert reading(clone.dsn).metrics["own"] == 35


@pytest.mark.parametrize("command", ["rollout", "rollback"])
@pytest.mark.parametrize("value", ["abc", "0", "nan", "3601"])
def test_a_lock_timeout_that_is_no_number_of_seconds_is_bad_input(
    oneroof: Any, clone: clones.Clone, command: str, value: str
) -> None:
    before = reading(clone.dsn).fingerprint
    result = oneroof(command, "--dsn", clone.dsn, "--confirm-db", clone.name, env={release.LOCK_TIMEOUT_ENV: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"ONEROOF_LOCK_TIMEOUT={value!r} is not a number of seconds above 0 and up to 3600" in result.stderr
    assert "Traceback" not in result.stderr
    assert reading(clone.dsn).fingerprint == before


# docs/gate.md, condition 6: the two edits in part it names
PARTIAL_EDITS = {
    "axis-deleted": "DELETE FROM os_collection_axes WHERE collection = 'kh_tags' AND axis = 'domain'",
    "axis-value-changed": (
        "UPDATE os_collection_axes SET value = value || '-edited' WHERE collection = 'kh_tags' AND axis = 'sensitivity'"
    ),
}


@pytest.mark.parametrize("edit", list(PARTIAL_EDITS))
def test_a_facet_edited_in_part_stays_finalized_and_the_finalized_stage_sees_it(
    edit: str, clone: Any, clone_conn: Any
) -> None:
    """docs/gate.md, condition 6: the state is read by facet, so one of a collection's two axes
    deleted, or its value changed, leaves a finalized target finalized (a rollout finds nothing
    to do); the finalized stage is what sees the edit.
    """
    signers().approve(clone_conn, "l4")
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
    assert clone_conn.execute(PARTIAL_EDITS[edit]).rowcount == 1
    with connect(clone.dsn) as conn:
        assert gate.state(conn) == "finalized"
    again = release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST)
    assert again.action == "already-finalized"
    code = release.run_stage(clone.dsn, "finalized", expect_db=clone.name, allowed_signers=TRUST.path)
    assert code == 1, f"the finalized stage exited {code} after the edit {edit}"
