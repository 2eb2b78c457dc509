"""What `oneroof approve` shows and refuses before anything is recorded: without a database, the
confirmation prompt's lines, the ownership seed it lists, the rehearsal evidence it accepts, and
a signature the gate would not count (under the package's user-verification policy); on a clone,
each proposal and approver `prepare` refuses. Each was a mutant of executor/approvals.py that the
mutation check did not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oneroof.core import evidence, package, settings, signatures
from oneroof.executor import approvals
from oneroof.harness import catalog, clones
from oneroof.harness.errors import UsageError
from tests.support.testing import signers

PKG = package.load()
SIGNERS = signers()
L2 = catalog.account("l2")


def statement(email: str = L2.email, approver_id: str = str(L2.id)) -> signatures.Statement:
    """A statement of L2's for the repository's package, valid for an hour."""
    return signatures.Statement.new(
        package_sha256=PKG.sha256,
        proposal=PKG.proposal,
        approver_id=approver_id,
        approver_email=email,
        level="L2",
        database="oneroof_target",
        database_oid="16384",
        system_identifier="7000000000000000001",
        valid_for=dt.timedelta(hours=1),
    )


def test_the_prompt_names_the_proposal_number_and_the_tiers_only_when_known() -> None:
    s = statement()
    full = approvals.Plan(s, 7, ("2 access", "3 ownership"), {}).summary()
    assert full[1] == f"proposal     {s.proposal} (#7)"
    assert full[2] == "tiers        2 access, 3 ownership"
    handed_over = approvals.Plan(s, 0, (), {}).summary()
    assert handed_over[1] == f"proposal     {s.proposal}"
    assert not any(line.startswith("tiers") for line in handed_over)


def test_the_ownership_seed_is_the_ownership_tier_s() -> None:
    seed = approvals.ownership_map(PKG)
    (ownership,) = [t for t in PKG.tiers if t.name == "ownership"]
    assert sum(len(names) for names in seed.values()) == 35
    assert all(f"'{name}'" in ownership.deploy for names in seed.values() for name in names)


def rehearsal(go: bool, why_not: str, package_sha256: str) -> evidence.Rehearsal:
    return evidence.Rehearsal("e.json", "0" * 64, go, why_not, package_sha256, "synthetic", "d", None, "", "")


@pytest.mark.parametrize(
    ("reviewed", "why"),
    [
        (rehearsal(False, "step deploy failed", PKG.sha256), "step deploy failed"),
        (rehearsal(True, "", "ab" * 32), "of package abababababab"),
    ],
    ids=["not GO", "of another package"],
)
def test_evidence_that_is_not_a_go_of_this_package_is_refused_saying_why(
    reviewed: evidence.Rehearsal, why: str
) -> None:
    with pytest.raises(UsageError) as refused:
        approvals.reviewed(reviewed, PKG, "oneroof_target", on_clone=False)
    assert refused.value.message.startswith(f"the rehearsal e.json is not a GO rehearsal of this package ({why}): ")


def test_a_signature_the_gate_would_not_count_is_refused_with_the_gate_s_reason() -> None:
    s = statement()
    text = signatures.bundle(s, signatures.sign(s.message(), SIGNERS.outsider))
    with pytest.raises(signatures.SigningFailed) as refused:
        approvals.counted(s, text, PKG, SIGNERS.trust)
    assert refused.value.message.startswith("the gate would not count this approval, so nothing was recorded: ")
    good = signatures.bundle(s, signatures.sign(s.message(), SIGNERS.keys["l2"]))
    assert approvals.counted(s, good, PKG, SIGNERS.trust) == signatures.key_fingerprint(SIGNERS.keys["l2"])


def test_the_sealer_cannot_approve_with_another_of_their_keys(tmp_path: Path) -> None:
    """Four eyes by email: the package's sealer signs with a second key the trust file lists for them."""
    other = signatures.one_off_key(tmp_path, L2.email)
    public = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    trust_file = tmp_path / "allowed_signers"
    trust_file.write_bytes(SIGNERS.trust.data + f"{L2.email} {public}\n".encode())
    trust = signatures.TrustRoot.load(trust_file)
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    package.seal(copy, SIGNERS.keys["l2"])
    sealed = package.load(copy)
    s = dataclasses.replace(statement(), package_sha256=sealed.sha256)
    text = signatures.bundle(s, signatures.sign(s.message(), other))
    with pytest.raises(signatures.SigningFailed) as refused:
        approvals.counted(s, text, sealed, trust)
    assert refused.value.message.startswith(f"its approver {L2.email} sealed the package (four eyes): ")


def test_a_handed_over_statement_is_read_and_its_proposal_looked_up_later() -> None:
    with pytest.raises(UsageError, match="^the handed-over statement cannot be recorded: "):
        approvals.handed_over("not a statement\n", SIGNERS.trust)
    s = statement()
    plan = approvals.handed_over(signatures.bundle(s, signatures.sign(s.message(), SIGNERS.keys["l2"])), SIGNERS.trust)
    assert (plan.statement, plan.proposal_id) == (s, 0)  # 0: `record` looks the proposal up in Directus


def test_the_prompt_lists_each_owner_s_first_four_collections() -> None:
    seed = {"DOT": ["a", "b", "c", "d", "e"], "KG-SYS": ["j"], "MOIT": ["f", "g", "h", "i"]}
    assert approvals.Plan(statement(), 7, (), seed).summary()[-4:] == [
        "ownership    10 collections:",
        "  DOT           5: a, b, c, d, ...",
        "  KG-SYS        1: j",
        "  MOIT          4: f, g, h, i",
    ]
    assert not any(line.startswith("ownership") for line in approvals.Plan(statement(), 7, (), {}).summary())


def test_the_package_s_user_verification_policy_counts_whatever_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that requires user verification refuses a plain key's signature even where the
    executor's setting does not; without the package at hand (--submit), the setting decides.
    """
    monkeypatch.delenv(settings.REQUIRE_USER_VERIFICATION.env, raising=False)
    s = statement()
    text = signatures.bundle(s, signatures.sign(s.message(), SIGNERS.keys["l2"]))
    assert approvals.counted(s, text, PKG, SIGNERS.trust) == signatures.key_fingerprint(SIGNERS.keys["l2"])
    with pytest.raises(signatures.SigningFailed) as refused:
        approvals.counted(s, text, dataclasses.replace(PKG, require_user_verification=True), SIGNERS.trust)
    assert "but user verification is required (require_user_verification)" in refused.value.message
    assert approvals.counted(s, text, None, SIGNERS.trust)
    monkeypatch.setenv(settings.REQUIRE_USER_VERIFICATION.env, "true")
    with pytest.raises(signatures.SigningFailed, match="user verification is required"):
        approvals.counted(s, text, None, SIGNERS.trust)


def prepare(clone: clones.Clone, email: str) -> approvals.Plan:
    return approvals.prepare(clone.dsn, PKG, email=email, valid_for=dt.timedelta(hours=1))


@pytest.mark.parametrize(
    ("status", "sha"),
    [("pending", "ab" * 32), ("withdrawn", PKG.sha256), ("superseded", "ab" * 32)],
    ids=["of another package", "withdrawn", "both"],
)
def test_prepare_refuses_a_proposal_of_another_package_or_state(
    clone: clones.Clone, clone_conn: psycopg.Connection[Any], status: str, sha: str
) -> None:
    clone_conn.execute("UPDATE os_proposals SET status = %s, package_sha256 = %s", (status, sha))
    with pytest.raises(UsageError) as refused:
        prepare(clone, catalog.account("l4").email)
    assert refused.value.message == (
        f"proposal {PKG.proposal} is {status} and names package {sha[:12]}, not this package {PKG.sha256[:12]}: "
        "do not approve"
    )


@pytest.mark.parametrize(
    "email",
    [
        "nobody@gov.example.com",  # no such user
        catalog.account("svc-etl").email,  # an active service account at level L4
        catalog.account("l4-suspended").email,  # a suspended human at level L4
        catalog.account("editor").email,  # an active human who is no approver
    ],
    ids=["no user", "service account", "suspended", "not an approver"],
)
def test_prepare_refuses_anyone_but_an_active_human_approver(clone: clones.Clone, email: str) -> None:
    with pytest.raises(UsageError) as refused:
        prepare(clone, email)
    assert refused.value.message == f"{email} is not an active human approver in {clone.name!r} (os_approvers)"
    assert prepare(clone, catalog.account("l4").email).statement.approver_email == catalog.account("l4").email
