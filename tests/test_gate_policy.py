"""The gate's judgement of one approval (core/gate.py approval_problem), case by case: every
reason an approval does not count, and the cases that do count; then the signed statement of an
approval (gate.statement_problem). Plain values and ssh-keygen, no database: the database side is
tests/test_gate.py and tests/test_signatures.py; these tables are what the mutation run leans on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import gate, metrics, package, signatures
from oneroof.harness import catalog
from tests.support.testing import _keygen, signers

PKG = package.load()
VALID = gate.Approval(
    id=1,
    proposal_code=PKG.proposal,
    proposal_status="pending",
    package_sha256=PKG.sha256,
    level="L4",
    revoked=False,
    rehearsal=False,
    user_status="active",
    approver_kind="human",
    approver_level="L4",
)
L4_ONLY = dataclasses.replace(PKG, levels=("L4",))

# (case, changes to the valid approval, on a marked clone, the package, the reason it does not count or None)
CASES = [
    ("valid-l4", {}, False, PKG, None),
    ("valid-l2", {"level": "L2", "approver_level": "L2"}, False, PKG, None),
    ("valid-after-ratification", {"proposal_status": "ratified"}, False, PKG, None),
    ("rehearsal-on-clone", {"rehearsal": True}, True, PKG, None),
    ("other-proposal", {"proposal_code": "OR-OTHER"}, False, PKG, "for proposal OR-OTHER, not OR-T3-OWNERSHIP-SEED"),
    ("proposal-withdrawn", {"proposal_status": "withdrawn"}, False, PKG, "its proposal is withdrawn"),
    ("other-package", {"package_sha256": "f" * 64}, False, PKG, f"names package ffffffffffff, not {PKG.sha256[:12]}"),
    ("revoked", {"revoked": True}, False, PKG, "revoked"),
    ("suspended-user", {"user_status": "suspended"}, False, PKG, "approver is suspended"),
    ("no-directus-user", {"user_status": None}, False, PKG, "approver is not a Directus user"),
    ("service-account", {"approver_kind": "service"}, False, PKG, "approver is a service account"),
    ("agent-account", {"approver_kind": "agent"}, False, PKG, "approver is an agent account"),
    ("unregistered-approver", {"approver_kind": None}, False, PKG, "approver is not registered in os_approvers"),
    ("level-l3", {"level": "L3", "approver_level": "L3"}, False, PKG, "approver level L3 is not one of L2/L4"),
    ("level-l5", {"level": "L5", "approver_level": "L5"}, False, PKG, "approver level L5 is not one of L2/L4"),
    (
        "level-not-in-package",
        {"level": "L2", "approver_level": "L2"},
        False,
        L4_ONLY,
        "approver level L2 is not one of L4",
    ),
    ("claims-another-level", {"level": "L2"}, False, PKG, "claims level L2 but the approver is L4"),
    ("static-token", {"has_token": True}, False, PKG, "approver has a static token, so automation could act as them"),
    (
        "spent",
        {"spent": True},
        False,
        PKG,
        "authorised a deployment already (an approval opens the gate once); ratify again",
    ),
    (
        "rehearsal-off-clone",
        {"rehearsal": True},
        False,
        PKG,
        "a rehearsal approval on a database that is not a marked clone",
    ),
    ("created-by-its-approver", {"created_by": "u-1", "approver_id": "u-1"}, False, PKG, None),
    (
        "created-by-someone-else",
        {"created_by": "u-2", "approver_id": "u-1"},
        False,
        PKG,
        "Directus shows it was created by user u-2, not by its approver",
    ),
    (
        "changed-after-creation",
        {"updates": 2},
        False,
        PKG,
        "Directus shows it was changed after its creation (2 change(s))",
    ),
]


@pytest.mark.parametrize(("changes", "on_clone", "pkg", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_approval_problem(changes: dict[str, object], on_clone: bool, pkg: package.Package, reason: str | None) -> None:
    approval = dataclasses.replace(VALID, **changes)  # type: ignore[arg-type]
    assert gate.approval_problem(approval, pkg, on_clone) == reason


def test_a_package_cannot_widen_the_levels() -> None:
    """A package naming a level outside L2/L4 does not make that level count."""
    wide = dataclasses.replace(PKG, levels=("L2", "L3", "L4"))
    approval = dataclasses.replace(VALID, level="L3", approver_level="L3")
    assert gate.approval_problem(approval, wide, False) == "approver level L3 is not one of L2/L3/L4"


def test_verdict_is_open_only_without_reasons() -> None:
    assert gate.Verdict({}, (1,), "greenfield", 1).open
    assert not gate.Verdict({"lock": "held"}, (1,), "greenfield", 1).open


# -- the signed statement of one approval (gate.statement_problem): plain values and ssh-keygen, no database

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
CLUSTER = "7301234567890123456"
DATABASE_OID = "16384"
L4 = catalog.account("l4")
SIGNED = dataclasses.replace(VALID, approver_id=str(L4.id), approver_email=L4.email)


def statement(key: str | Path = "l4", **overrides: str) -> tuple[str, str]:
    """(bundle, nonce) of a statement by the L4 approver for database `directus` on CLUSTER, issued
    five minutes before NOW for an hour, signed with the key of account `key` (or the key file `key`).
    """
    fields = dict(
        package_sha256=PKG.sha256,
        proposal=PKG.proposal,
        approver_id=str(L4.id),
        approver_email=L4.email,
        level="L4",
        database="directus",
        database_oid=DATABASE_OID,
        system_identifier=CLUSTER,
    )
    made = signatures.Statement.new(
        **{**fields, **overrides}, valid_for=dt.timedelta(hours=1), now=NOW - dt.timedelta(minutes=5)
    )
    signed_with = key if isinstance(key, Path) else signers().keys.get(key, signers().outsider)
    return signatures.bundle(made, signatures.sign(made.message(), signed_with)), made.nonce


def signing(**changes: Any) -> gate.Signing:
    return dataclasses.replace(
        gate.Signing(signers().trust, "directus", CLUSTER, NOW, database_oid=DATABASE_OID), **changes
    )


def problem(
    texts: list[str], sign: gate.Signing | None = None, pkg: package.Package = PKG, nonces: dict[str, int] | None = None
) -> str | None:
    approval = dataclasses.replace(SIGNED, statements=tuple(texts))
    return gate.statement_problem(approval, pkg, sign or signing(), {} if nonces is None else nonces)


def test_a_statement_that_verifies_counts_once() -> None:
    text, nonce = statement()
    nonces: dict[str, int] = {}
    assert problem([text], nonces=nonces) is None
    assert nonces == {nonce: SIGNED.id}
    assert problem([text], nonces={nonce: 9}) == "its statement is the one of #9 (a statement counts once)"


def test_each_statement_that_does_not_count_says_why() -> None:
    text, nonce = statement()
    fingerprint = signatures.key_fingerprint(signers().keys["l4"])
    cases = [
        ([], signing(), PKG, "no signed statement (the approver signs with `oneroof approve`)"),
        (
            [text],
            signing(trust=None),
            PKG,
            f"no allowed signers to verify its statement against: pass --allowed-signers FILE or set {signatures.ENV}",
        ),
        (
            [text],
            signing(),
            dataclasses.replace(PKG, sealer_key=fingerprint),
            f"signed by {fingerprint}, the key that sealed the package (four eyes)",
        ),
        (
            [text],
            signing(sealers=frozenset({L4.email.lower()})),
            PKG,
            f"its approver {L4.email} sealed the package (four eyes)",
        ),
        (
            [text],
            signing(spent_nonces=frozenset({nonce})),
            PKG,
            "its statement authorised a deployment already (a statement opens the gate once); sign a new one",
        ),
        (
            [text],
            signing(now=NOW + dt.timedelta(hours=2)),
            PKG,
            f"its statement expired at {signatures.utc(NOW + dt.timedelta(minutes=55))}",
        ),
        (
            [statement(database="other")[0]],
            signing(),
            PKG,
            "its statement is signed for database 'other', not 'directus'",
        ),
    ]
    for texts, sign, pkg, reason in cases:
        assert problem(texts, sign, pkg) == reason


def test_one_good_statement_among_bad_ones_counts(tmp_path: Path) -> None:
    """Every statement on the row is tried: a bad one first does not hide a good one after it."""
    good, _ = statement()
    spent, spent_nonce = statement()
    replayed, replayed_nonce = statement()
    assert problem([statement(key="outsider")[0], good]) is None
    assert problem([spent, good], signing(spent_nonces=frozenset({spent_nonce}))) is None
    assert problem([replayed, good], nonces={replayed_nonce: 9}) is None
    # An approver with two keys, one of which sealed the package: a statement signed with the other counts.
    second = _keygen(tmp_path / "second", L4.email)
    both = tmp_path / "allowed_signers"
    both.write_text(
        signers().trust.path.read_text()
        + f"{L4.email} {' '.join(second.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    sealed = dataclasses.replace(PKG, sealer_key=signatures.key_fingerprint(signers().keys["l4"]))
    other, _ = statement(key=second)
    trust = signing(trust=signatures.TrustRoot.load(both))
    assert problem([good], trust, sealed) is not None
    assert problem([good, other], trust, sealed) is None


def test_the_problems_of_several_statements_are_listed_once_each() -> None:
    other = statement(database="other")[0]
    assert problem([other, other]) == "its statement is signed for database 'other', not 'directus'"
    both = problem([other, statement(database="third")[0]])
    assert both == (
        "its statement is signed for database 'other', not 'directus'; "
        "its statement is signed for database 'third', not 'directus'"
    )


def test_statements_are_judged_at_this_machines_clock() -> None:
    assert gate.clock(NOW) == NOW
    assert abs(gate.clock(None) - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_what_the_gate_judged_cannot_be_altered_afterwards() -> None:
    """A verdict, an approval and a reading are frozen: nothing between the gate's judgement and the
    release can change what it judged.
    """
    verdict = gate.Verdict({}, (1,), "greenfield", 1)
    reading = metrics.Reading({"ospa": 0}, {})
    for value, field in ((verdict, "reasons"), (VALID, "revoked"), (reading, "metrics"), (signing(), "now")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, None)
