"""The gate's judgement of one approval (executor/gate.py approval_problem), case by case: every
reason an approval does not count, and the cases that do count. Plain values, no database: the
database side is tests/test_gate.py; this table is what the mutation run leans on."""

from __future__ import annotations

import dataclasses

import pytest

from executor import gate, package

PKG = package.load()
VALID = gate.Approval(id=1, proposal_code=PKG.proposal, proposal_status="pending", package_sha256=PKG.sha256,
                      level="L4", revoked=False, rehearsal=False, user_status="active", approver_kind="human",
                      approver_level="L4")
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
    ("unregistered-approver", {"approver_kind": None}, False, PKG, "approver is a unregistered account"),
    ("level-l3", {"level": "L3", "approver_level": "L3"}, False, PKG, "approver level L3 is not one of L2/L4"),
    ("level-l5", {"level": "L5", "approver_level": "L5"}, False, PKG, "approver level L5 is not one of L2/L4"),
    ("level-not-in-package", {"level": "L2", "approver_level": "L2"}, False, L4_ONLY,
     "approver level L2 is not one of L4"),
    ("claims-another-level", {"level": "L2"}, False, PKG, "claims level L2 but the approver is L4"),
    ("static-token", {"has_token": True}, False, PKG, "approver has a static token, so automation could act as them"),
    ("spent", {"spent": True}, False, PKG, "authorised a deployment that was rolled back since; ratify again"),
    ("rehearsal-off-clone", {"rehearsal": True}, False, PKG, "a rehearsal approval on a database that is not a marked clone"),
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
