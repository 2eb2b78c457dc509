"""A model of the whole system (issue 12, item 3): a hypothesis state machine against a clone.

Its rules approve (validly, and in every way the policy excludes), revoke, hand an approver a
static token or suspend them, take the clone mark away and give it back, roll out, roll back,
kill an executor in the middle of its transaction, tamper with a copy of the package, and change
a governed table (content, or a governance facet behind the executor's back).

After every step:
- the state (greenfield, finalized, mixed) is the model's, and a greenfield or finalized database
  has exactly that state's figures;
- the gate's verdict, and the set of approvals it counts, equal the model's, computed here from
  the policy of docs/design.md#s5 without calling the gate's own judgement;
- the ledger holds exactly the rows of the model's history, and no lock or executor session is
  left behind.
When an example ends, the invariant stage of its last state runs as a real pytest session.

The budget comes from the hypothesis profile (tests/support/testing.py): `ci` runs 6 examples of 25
steps; `HYPOTHESIS_PROFILE=nightly pytest -m proof tests/test_model.py` runs 150 of 60.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from psycopg import sql

from oneroof.core import evidence as rehearsal
from oneroof.core import gate, package
from oneroof.executor import release
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from oneroof.harness.errors import Blocked, IntegrityError
from oneroof.harness.marks import CLONE_SETTING
from tests.support.crash import ROLLBACK, ROLLOUT, advisory_locks, executor_env, holding, wait_gone, wait_until_blocked
from tests.support.release import TRUST
from tests.support.testing import ROOT, PgServer, bound_evidence, database_settings, signers

pytestmark = pytest.mark.proof
PKG = package.load()
ALLOWED_LEVELS = {"L2", "L4"}  # docs/design.md#s5-2, written down here again on purpose
OTHER_SHA = "0" * 64
STEPS: dict[str, int] = {}  # rule name -> times run, over the whole test (docs/results/proofs.md's figure)
OUTCOMES: dict[str, int] = {}  # what the rollouts, rollbacks and crashes did


@dataclass(frozen=True)
class Approval:
    """The model's record of one approval row."""

    id: int
    account: str
    level: str
    sha: str
    rehearsal: bool
    tick: int  # when it was made, on the model's clock
    revoked: bool = False
    signed: bool = True


# How each rule can approve: (account key, claimed level or None for the account's own, package,
# rehearsal, signed with the approver's own key).
APPROVALS = {
    "valid-l2": ("l2", None, PKG.sha256, False, True),
    "valid-l4": ("l4", None, PKG.sha256, False, True),
    "rehearsal-l4": ("l4", None, PKG.sha256, True, True),
    "unsigned-l4": ("l4", None, PKG.sha256, False, False),
    "unsigned-l2": ("l2", None, PKG.sha256, False, False),
    "service": ("svc-etl", None, PKG.sha256, False, True),
    "service-l2": ("svc-ci", None, PKG.sha256, False, True),
    "agent": ("agent", None, PKG.sha256, False, True),
    "level-l1": ("l1", None, PKG.sha256, False, True),
    "level-l3": ("l3", None, PKG.sha256, False, True),
    "level-l5": ("l5", None, PKG.sha256, False, True),
    "suspended": ("l4-suspended", None, PKG.sha256, False, True),
    "claims-l4": ("l3", "L4", PKG.sha256, False, True),
    "wrong-package": ("l4", None, OTHER_SHA, False, True),
}
VALID = ("valid-l2", "valid-l4", "rehearsal-l4")  # valid while the policy's other conditions hold


class ReleaseModel(RuleBasedStateMachine):
    """The release on one clone, against a model of what it must do."""

    server: PgServer

    def __init__(self) -> None:
        super().__init__()
        self.clone = clones.create(
            self.server.admin,
            source=self.server.golden,
            name=clones.default_name(f"m_{secrets.token_hex(2)}"),
            wait=120,
        )
        self.conn = connect(self.clone.dsn, autocommit=True, application_name="oneroof-test-model")
        self.state = "greenfield"
        self.approvals: list[Approval] = []
        self.ledger: list[tuple[str, int]] = []
        self.tick = 0
        self.last_revert = -1
        self.owners: set[int] = set()  # the approvals the owners of the last rollout rest on
        self.deployed: set[int] = set()  # the approvals any rollout carried: spent, whatever followed
        self.tokens: set[str] = set()
        self.suspended: set[str] = set()
        self.marked = True
        self.drifted = False
        self.system_issues = self._count_issues()
        self.evidence = Path(tempfile.mkdtemp(prefix="oneroof-model-evidence-"))

    def _rehearsal(self) -> Path:
        """Evidence that binds a rollout of the clone as it is now. Unmarked, the clone stands for
        production, whose rollout needs a rehearsal: the model hands one over for what production is
        (the binding itself, and every way it fails, is tests/test_rehearsed.py's).
        """
        return bound_evidence(self.clone.dsn, self.evidence)

    def _count_issues(self) -> int:
        row = self.conn.execute("SELECT count(*) AS n FROM system_issues").fetchone()
        assert row is not None
        return int(row["n"])

    def _step(self, name: str) -> None:
        STEPS[name] = STEPS.get(name, 0) + 1
        self.tick += 1

    # -- the policy, modelled -------------------------------------------------------------
    def _counts(self, a: Approval, spent: bool = True) -> bool:
        account = catalog.account(a.account)
        return (
            not (spent and a.id in self.deployed)
            and a.sha == PKG.sha256
            and not a.revoked
            and a.signed
            and account.status == "active"
            and a.account not in self.suspended
            and account.kind == "human"
            and account.level in ALLOWED_LEVELS
            and a.level == account.level
            and account.token is None
            and a.account not in self.tokens
            and a.tick > self.last_revert
            and (not a.rehearsal or self.marked)
        )

    def _valid(self) -> list[int]:
        return [a.id for a in self.approvals if self._counts(a)]

    def _open(self) -> bool:
        """The verdict: OPEN on a finalized database too while an approval no rollout carried counts."""
        return self.state != "mixed" and len(self._valid()) >= 1

    # -- rules ------------------------------------------------------------------------------
    @rule(how=st.sampled_from(VALID))
    def approve(self, how: str) -> None:
        self._record_approval(how)

    @rule(how=st.sampled_from(sorted(set(APPROVALS) - set(VALID))))
    def approve_excluded(self, how: str) -> None:
        """An approval of a kind the policy excludes."""
        self._record_approval(how)

    def _record_approval(self, how: str) -> None:
        self._step(f"approve:{how}")
        key, claimed, sha, rehearsal, signed = APPROVALS[how]
        account = catalog.account(key)
        level = claimed or account.level
        # As Directus records it (the row), with the statement the approver signed (a comment on it).
        row = self.conn.execute(
            "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256, rehearsal) "
            "SELECT id, %s, %s, %s, %s FROM os_proposals WHERE code = %s RETURNING id",
            (account.id, level, sha, rehearsal, catalog.PROPOSAL_CODE),
        ).fetchone()
        assert row is not None
        if signed:
            statement = signers().statement(self.conn, key, package_sha256=sha, level=str(level))
            signers().attach(self.conn, int(row["id"]), statement, key)
        self.approvals.append(Approval(int(row["id"]), key, str(level), sha, rehearsal, self.tick, signed=signed))

    @precondition(lambda self: any(not a.revoked for a in self.approvals))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        self._step("revoke")
        target = data.draw(st.sampled_from([a for a in self.approvals if not a.revoked]))
        self.conn.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (target.id,))
        self.approvals[self.approvals.index(target)] = replace(target, revoked=True)

    @rule(key=st.sampled_from(["l2", "l4"]))
    def toggle_token(self, key: str) -> None:
        self._step("toggle-token")
        token = None if key in self.tokens else f"script-token-{key}"
        self.conn.execute("UPDATE directus_users SET token = %s WHERE id = %s", (token, catalog.account(key).id))
        self.tokens ^= {key}

    @rule(key=st.sampled_from(["l2", "l4"]))
    def toggle_suspension(self, key: str) -> None:
        self._step("toggle-suspension")
        status = "active" if key in self.suspended else "suspended"
        self.conn.execute("UPDATE directus_users SET status = %s WHERE id = %s", (status, catalog.account(key).id))
        self.suspended ^= {key}

    @rule()
    def toggle_clone_mark(self) -> None:
        """Without its mark the clone stands for production: rehearsal approvals stop counting."""
        self._step("toggle-clone-mark")
        with connect(self.server.admin, autocommit=True) as admin:
            name = sql.Identifier(self.clone.name)
            setting = sql.Identifier(*CLONE_SETTING.split("."))
            if self.marked:
                admin.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(name, setting))
            else:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(name, setting, sql.Literal(self.clone.name))
                )
        self.marked = not self.marked

    def _rollout(self) -> release.Outcome:
        """A rollout in this process bound to the clone's rehearsal, without the gate session and the
        audit (the invariants below check the figures after every step).
        """
        return release.rollout(
            self.clone.dsn,
            PKG,
            confirm_db=self.clone.name,
            gate_session=False,
            audit=False,
            trust=TRUST,
            rehearsal=rehearsal.load(self._rehearsal()),
        )

    @rule()
    def rollout(self) -> None:
        self._step("rollout")
        valid = self._valid()
        if self.state == "finalized":
            outcome = self._rollout()
            assert outcome.action == "already-finalized"
            OUTCOMES["already-finalized"] = OUTCOMES.get("already-finalized", 0) + 1
        elif self.state == "greenfield" and self._open():
            outcome = self._rollout()
            assert outcome.action == "applied" and sorted(outcome.approvals) == valid
            rows = self.conn.execute("SELECT approval_ids FROM os_release_ledger ORDER BY id DESC LIMIT 5").fetchall()
            assert all(sorted(r["approval_ids"]) == valid for r in rows), rows
            self.ledger += [("deploy", t.number) for t in PKG.tiers]
            self.owners = set(valid)
            self.deployed |= set(valid)
            self.state = "finalized"
            OUTCOMES["applied"] = OUTCOMES.get("applied", 0) + 1
        else:
            with pytest.raises(Blocked):
                self._rollout()
            OUTCOMES["blocked"] = OUTCOMES.get("blocked", 0) + 1

    @rule()
    def rollback(self) -> None:
        self._step("rollback")
        outcome = release.rollback(self.clone.dsn, PKG, confirm_db=self.clone.name, trust=TRUST)
        if self.state == "greenfield":
            assert outcome.action == "already-greenfield"
        else:
            assert outcome.action == "reverted"
            self.ledger += [("revert", t.number) for t in reversed(PKG.tiers)]
            self.last_revert = self.tick
            self.state = "greenfield"
            OUTCOMES["reverted"] = OUTCOMES.get("reverted", 0) + 1

    @precondition(lambda self: self.state != "greenfield" or self._open())
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """SIGKILL an executor waiting at one of its transaction's statements: nothing changes."""
        self._step("crash")
        command = "rollout" if self.state == "greenfield" else "rollback"
        point = data.draw(st.sampled_from([p for p in (ROLLOUT if command == "rollout" else ROLLBACK) if p.table]))
        if command == "rollout":  # the release function itself: the CLI would first spend seconds in its gate session
            args = [
                sys.executable,
                "-c",
                "import os, sys; from pathlib import Path; "
                "from oneroof.core import evidence as rehearsal, package, signatures; "
                "from oneroof.executor import release; "
                "release.rollout(sys.argv[1], "
                "package.load(), confirm_db=sys.argv[2], gate_session=False, audit=False, "
                "trust=signatures.TrustRoot.load(Path(os.environ[signatures.ENV])), "
                "rehearsal=rehearsal.from_flag(None))",
            ]
        else:
            args = [sys.executable, "-m", "oneroof.executor", "rollback", "--dsn"]
        with connect(self.clone.dsn, autocommit=True, application_name="oneroof-test-observer") as observer:
            with holding(self.clone, point.lock) as blocker:
                proc = subprocess.Popen(
                    [*args, self.clone.dsn, *(["--confirm-db"] if command == "rollback" else []), self.clone.name],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    env={**executor_env(), rehearsal.ENV: str(self._rehearsal())},
                    stderr=subprocess.PIPE,
                    text=True,
                )
                wait_until_blocked(observer, proc, point, blocker.info.backend_pid)
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            wait_gone(observer)
        OUTCOMES[f"{command} killed"] = OUTCOMES.get(f"{command} killed", 0) + 1

    @rule(
        how=st.sampled_from(["flip-a-byte", "extra-file", "missing-file", "manifest-space"]),
        which=st.integers(0, 2 * len(PKG.tiers) - 1),
    )
    def tamper(self, how: str, which: int) -> None:
        """A tampered copy of the package is refused (exit 4) before the database is touched."""
        self._step(f"tamper:{how}")
        before = self._fingerprint()
        with tempfile.TemporaryDirectory(prefix="oneroof-tamper-") as tmp:
            copy = package.bundle(PKG.path, Path(tmp) / "pkg").path
            tier = PKG.tiers[which // 2]
            file = copy / (tier.deploy_file if which % 2 == 0 else tier.revert_file)
            if how == "flip-a-byte":
                data = bytearray(file.read_bytes())
                data[len(data) // 2] ^= 0x20
                file.write_bytes(bytes(data))
            elif how == "extra-file":
                (copy / "tier7_extra.deploy.sql").write_text("SELECT 1;\n")
            elif how == "missing-file":
                file.unlink()
            else:
                manifest = copy / package.MANIFEST
                manifest.write_bytes(manifest.read_bytes() + b" ")
            with pytest.raises(IntegrityError):
                package.load(copy)
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "oneroof.executor",
                    "rollout",
                    "--dsn",
                    self.clone.dsn,
                    "--confirm-db",
                    self.clone.name,
                    "--package",
                    str(copy),
                ],
                cwd=ROOT,
                env=executor_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert self._fingerprint() == before

    @rule(collection=st.sampled_from([name for name, _, _ in catalog.GOVERNED]))
    def change_content(self, collection: str) -> None:
        """Editors keep working: a governed collection's content changes nothing the release judges."""
        self._step("change-content")
        self.conn.execute(sql.SQL("UPDATE {} SET name = name || '.' WHERE id = 1").format(sql.Identifier(collection)))

    # Once per example: while the database is mixed, every rollout is blocked.
    @precondition(lambda self: self.state != "mixed" and not self.drifted)
    @rule()
    def drift_governance(self) -> None:
        """Someone edits a governance facet behind the executor's back: the database is mixed.

        On a finalized database the facet goes whole: the `axis` facet of a collection is there
        while it has any axis, so deleting one of its two (domain, sensitivity) leaves no gap.
        """
        self._step("drift-governance")
        if self.state == "finalized":
            self.conn.execute("DELETE FROM os_collection_axes WHERE collection = 'kh_tags'")
        else:
            self.conn.execute(
                "INSERT INTO os_collection_axes (collection, axis, value) VALUES ('kh_tags', 'domain', 'documents')"
            )
        self.state = "mixed"
        self.drifted = True

    # -- after every step -----------------------------------------------------------------
    def _fingerprint(self) -> str:
        from oneroof.core import metrics

        with connect(self.clone.dsn) as conn:
            return metrics.read(conn).fingerprint

    @invariant()
    def state_and_figures(self) -> None:
        with connect(self.clone.dsn) as conn:
            assert gate.state(conn) == self.state
            if self.state != "mixed":
                with conn.transaction():
                    release.check_figures(conn, release.expected_figures(PKG, self.state), self.state)
        assert self._count_issues() == self.system_issues

    @invariant()
    def verdict_is_the_models(self) -> None:
        with connect(self.clone.dsn) as conn:
            conn.read_only = True
            verdict = gate.evaluate(
                conn, PKG, confirm_db=self.clone.name, trust=TRUST, rehearsal=rehearsal.load(self._rehearsal())
            )
            unbound = gate.evaluate(conn, PKG, confirm_db=self.clone.name, trust=TRUST).reasons.get("rehearsed")
            conn.rollback()
        assert (unbound is not None) == (not self.marked), unbound  # production needs its rehearsal, a clone not
        valid = self._valid()
        assert (verdict.open, sorted(verdict.valid_approvals)) == (self._open(), valid), verdict.reasons
        assert ("approvals" in verdict.reasons) == (not valid)
        assert ("state" in verdict.reasons) == (self.state == "mixed")
        if not self.approvals:
            assert verdict.reasons["approvals"] == "valid approvals 0 < 1"

    @invariant()
    def ledger_tells_the_history(self) -> None:
        rows = self.conn.execute("SELECT action, tier, package_sha256 FROM os_release_ledger ORDER BY id").fetchall()
        assert [(r["action"], r["tier"]) for r in rows] == self.ledger
        assert {r["package_sha256"] for r in rows} <= {PKG.sha256}
        row = self.conn.execute("SELECT count(*) AS n FROM os_proposal_approvals").fetchone()
        assert row is not None and row["n"] == len(self.approvals)

    @invariant()
    def nothing_left_behind(self) -> None:
        wait_gone(self.conn)  # a closed connection's server process takes a moment to exit
        assert advisory_locks(self.conn) == []

    def teardown(self) -> None:
        try:
            if self.state != "mixed":
                code = release.run_stage(
                    self.clone.dsn, self.state, expect_db=self.clone.name, allowed_signers=signers().trust.path
                )
                # A finalized database whose owners rest on an approval that no longer counts (revoked,
                # its approver suspended or given a token since) fails its stage: the stage says so.
                backed = self.state != "finalized" or all(
                    self._counts(a, spent=False) for a in self.approvals if a.id in self.owners
                )
                assert code == (0 if backed else 1), (
                    f"the {self.state} invariant stage exited {code}; the model expects "
                    f"{'a pass' if backed else 'a failure: an approval the owners rest on no longer counts'}"
                )
        finally:
            self.conn.close()
            shutil.rmtree(self.evidence, ignore_errors=True)
            with connect(self.server.admin, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.clone.name))
                )


def test_the_release_follows_its_model(test_server: PgServer, figure: Any) -> None:
    ReleaseModel.server = test_server
    STEPS.clear()
    OUTCOMES.clear()
    run_state_machine_as_test(ReleaseModel, settings=database_settings())
    figure("steps", sum(STEPS.values()))
    figure("rules", ", ".join(f"{k} {v}" for k, v in sorted(STEPS.items())))
    figure("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))
    print(
        f"state machine: {sum(STEPS.values())} steps: {dict(sorted(STEPS.items()))}; {dict(sorted(OUTCOMES.items()))}"
    )
    # A rule that silently stopped running fails here (every kind runs within the `ci` budget).
    ran = {name.split(":")[0] for name in STEPS}
    if sum(STEPS.values()) >= 100:
        assert ran >= {"approve", "rollout", "rollback"}, ran


def test_a_governance_drift_after_a_rollout_leaves_the_database_mixed(test_server: PgServer) -> None:
    """The example hypothesis found (an approval, a rollout, then a governance facet removed behind
    the executor's back), replayed step by step in every run, every invariant checked after each
    step: the state machine has no explicit examples, and the `ci` profile may not draw it again.
    """
    ReleaseModel.server = test_server
    model = ReleaseModel()
    try:
        for step in (lambda: model.approve(how="valid-l2"), model.rollout, model.drift_governance):
            step()
            model.ledger_tells_the_history()
            model.nothing_left_behind()
            model.state_and_figures()
            model.verdict_is_the_models()
        assert model.state == "mixed"
    finally:
        model.teardown()
