"""Passkey approvals (issue 19): a WebAuthn assertion by a user-verified authenticator over the
statement counts exactly like an SSH signature, checked against passkey lines in the trust file;
every check has its own reason, and SSH approvals still count beside passkey lines.

The authenticator is tests/support/authenticator.py's, in software; tests/test_ratify_browser.py
does the same through Chromium's virtual authenticator and the Directus page.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oneroof.core import gate, package, passkeys, signatures
from oneroof.executor import approvals
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from tests.support.authenticator import UP, UV, SoftAuthenticator
from tests.support.testing import PgServer, signers

PKG = package.load()
SIGNERS = signers()
L4, L2 = catalog.account("l4"), catalog.account("l2")
KEYS = {"l4": SoftAuthenticator(), "l2": SoftAuthenticator(), "eddsa": SoftAuthenticator("EdDSA")}
UNLISTED = SoftAuthenticator()


def trust_file(directory: Path, *lines: str) -> signatures.TrustRoot:
    """The test signers' allowed-signers file with passkey lines added, as a reviewer adds them."""
    path = directory / "trust"
    path.write_bytes(SIGNERS.trust.data + "".join(f"{line}\n" for line in lines).encode())
    os.chmod(path, 0o600)
    return signatures.TrustRoot.load(path)


def listed(account: str = "l4", key: str | None = None) -> str:
    who = catalog.account(account)
    return KEYS[key or account].credential(who.email, str(who.id), str(who.level)).line()


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> signatures.TrustRoot:
    return trust_file(tmp_path_factory.mktemp("trust"), listed("l4"), listed("l2"), listed("l4", "eddsa"))


@pytest.fixture(scope="module")
def target(test_server: PgServer, unique: Any) -> Iterator[psycopg.Connection[Any]]:
    """A marked clone of the golden database; every case runs in a transaction that is rolled back."""
    made = clones.create(test_server.admin, source=test_server.golden, name=unique("passkey"), wait=60)
    try:
        with connect(made.dsn) as conn:
            yield conn
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(made.name))
            )


def statement(conn: psycopg.Connection[Any], account: str = "l4", **overrides: str) -> signatures.Statement:
    """A fresh statement for `account` on `conn`'s target, as the test signers make one (their SSH
    signature is dropped: a passkey asserts over it instead); `overrides` replace statement fields.
    """
    message, _ = signatures.parse_bundle(SIGNERS.statement(conn, account, **overrides))
    return signatures.Statement.parse(message)


def ratified(conn: psycopg.Connection[Any], account: str = "l4", key: str | None = None, **wrong: Any) -> str:
    """A passkey bundle over a fresh statement for `account`, made by `key`'s authenticator."""
    message = statement(conn, account).message()
    authenticator = UNLISTED if key == "unlisted" else KEYS[key or account]
    return passkeys.bundle(message, authenticator.assert_(message, **wrong))


def approvals_reason(conn: psycopg.Connection[Any], trust: signatures.TrustRoot, text: str, account: str = "l4") -> str:
    """Insert one approval row of `account` carrying `text`, judge the gate, roll back."""
    try:
        row = SIGNERS.approve(conn, account, signed=False)
        SIGNERS.attach(conn, row, text, account)
        verdict = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname, trust=trust)
        return verdict.reasons.get("approvals", "")
    finally:
        conn.rollback()


def test_a_user_verified_passkey_assertion_counts(target: psycopg.Connection[Any], trust: signatures.TrustRoot) -> None:
    assert approvals_reason(target, trust, ratified(target)) == ""
    assert approvals_reason(target, trust, ratified(target, "l2"), "l2") == ""


def test_an_eddsa_passkey_counts(target: psycopg.Connection[Any], trust: signatures.TrustRoot) -> None:
    assert approvals_reason(target, trust, ratified(target, key="eddsa")) == ""


def _other_statement(conn: psycopg.Connection[Any]) -> str:
    """An assertion made over one statement, stored with another (another nonce)."""
    signed_over = statement(conn).message()
    return passkeys.bundle(statement(conn).message(), KEYS["l4"].assert_(signed_over))


def _changed_signature(conn: psycopg.Connection[Any]) -> str:
    message = statement(conn).message()
    good = KEYS["l4"].assert_(message)
    bad = passkeys.Assertion(
        good.credential_id, good.authenticator_data, good.client_data_json, good.signature[:-1] + b"\x00"
    )
    return passkeys.bundle(message, bad)


REFUSED = {
    "no user verification": (lambda c: ratified(c, flags=UP), "no user verification (UV flag not set)"),
    "no user presence": (lambda c: ratified(c, flags=UV), "no user presence (UP flag not set)"),
    "over another statement": (_other_statement, "made over another statement"),
    "another challenge": (lambda c: ratified(c, challenge=b"x" * 32), "made over another statement"),
    "another RP ID": (lambda c: ratified(c, rp_id="evil.example"), "for another RP ID, not 'localhost'"),
    "another origin": (lambda c: ratified(c, origin="http://localhost:9999"), "made on origin 'http://localhost:9999'"),
    "a registration, not an assertion": (lambda c: ratified(c, kind="webauthn.create"), "of type 'webauthn.create'"),
    "an unlisted credential": (lambda c: ratified(c, key="unlisted"), "is not listed in the trust file"),
    "another approver's credential": (lambda c: ratified(c, key="l2"), f"is listed for {L2.email}"),
    "a changed signature": (_changed_signature, "its passkey signature does not verify"),
}


@pytest.mark.parametrize(("make", "expected"), REFUSED.values(), ids=REFUSED.keys())
def test_a_passkey_assertion_that_fails_a_check_is_refused_with_its_reason(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot, make: Any, expected: str
) -> None:
    got = approvals_reason(target, trust, make(target))
    assert got.startswith("valid approvals 0 < 1") and expected in got, got


def test_a_passkey_listed_at_another_level_is_refused(target: psycopg.Connection[Any], tmp_path: Path) -> None:
    who = L4
    line = KEYS["l4"].credential(who.email, str(who.id), "L2").line()
    got = approvals_reason(target, trust_file(tmp_path, line), ratified(target))
    assert "is listed at level L2, not L4" in got, got


@pytest.mark.parametrize(
    ("account", "expected"),
    [("l3", "level L3 is not one of L2/L4"), ("admin", "approver is not registered in os_approvers")],
    ids=["an L3 user", "a Directus admin"],
)
def test_a_listed_passkey_of_someone_who_may_not_ratify_counts_for_nothing(
    target: psycopg.Connection[Any], tmp_path: Path, account: str, expected: str
) -> None:
    """An L3 user and a Directus admin, each with a user-verified passkey listed in the trust file
    at their own level, ratify over a well-formed statement: the gate counts neither.
    """
    who = catalog.account(account)
    key = SoftAuthenticator()
    trust = trust_file(tmp_path, key.credential(who.email, str(who.id), str(who.level or "L4")).line())
    message = statement(target, account, level=str(who.level or "L4")).message()
    got = approvals_reason(target, trust, passkeys.bundle(message, key.assert_(message)), account)
    assert got.startswith("valid approvals 0 < 1") and expected in got, got


def test_the_same_assertion_counts_once(target: psycopg.Connection[Any], trust: signatures.TrustRoot) -> None:
    text = ratified(target)
    try:
        first = SIGNERS.approve(target, signed=False)
        second = SIGNERS.approve(target, signed=False)
        SIGNERS.attach(target, first, text)
        SIGNERS.attach(target, second, text)
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=trust)
    finally:
        target.rollback()
    assert verdict.valid_approvals == (first,)
    assert f"#{second} its statement is the one of #{first}" in verdict.notes[0]


def test_a_copy_of_a_revoked_passkey_approval_does_not_count(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot
) -> None:
    """A revocation spends the statement of a passkey approval as it does an SSH-signed one: its
    comment copied to a new row does not undo it.
    """
    text = ratified(target)
    try:
        revoked = SIGNERS.approve(target, signed=False)
        SIGNERS.attach(target, revoked, text)
        target.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (revoked,))
        copy = SIGNERS.approve(target, signed=False)
        SIGNERS.attach(target, copy, text)
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=trust)
    finally:
        target.rollback()
    assert verdict.valid_approvals == ()
    assert f"#{copy} its statement is the one of a revoked approval" in verdict.reasons["approvals"], verdict.reasons


def test_ssh_signed_approvals_still_count_beside_passkey_lines(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot
) -> None:
    try:
        SIGNERS.approve(target, "l4")
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=trust)
    finally:
        target.rollback()
    assert "approvals" not in verdict.reasons, verdict.reasons


def test_a_malformed_passkey_line_is_named_and_ssh_approvals_are_not_affected(
    target: psycopg.Connection[Any], tmp_path: Path
) -> None:
    bad = listed("l4").replace("level=L4", "level=high")
    trust = trust_file(tmp_path, bad)
    got = approvals_reason(target, trust, ratified(target))
    line = len(SIGNERS.trust.data.splitlines()) + 1
    assert f"line {line} is not a valid passkey line: level='high' is not valid" in got, got
    try:
        SIGNERS.approve(target, "l4")
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=trust)
    finally:
        target.rollback()
    assert "approvals" not in verdict.reasons, verdict.reasons


def test_the_auditor_re_checks_passkey_approvals_offline(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot, tmp_path: Path
) -> None:
    """`approvals verify` judges a stored passkey approval with the trust file alone; without its
    passkey line the same approval does not verify.
    """
    try:
        good = SIGNERS.approve(target, signed=False)
        SIGNERS.attach(target, good, ratified(target))
        target.commit()
        audit = approvals.audit(target.info.dsn, trust)
        without = approvals.audit(target.info.dsn, trust_file(tmp_path, listed("l2")))
    finally:
        target.execute("DELETE FROM directus_comments WHERE item = %s", (str(good),))
        target.execute("DELETE FROM os_proposal_approvals WHERE id = %s", (good,))
        target.commit()
    found = {f.what: f for f in audit.approvals}[f"approval #{good}"]
    assert found.ok and f"with passkey:{passkeys.b64url(KEYS['l4'].credential_id)}" in found.detail, found
    missing = {f.what: f for f in without.approvals}[f"approval #{good}"]
    assert not missing.ok and "is not listed in the trust file" in missing.detail, missing


def test_a_passkey_approval_saved_by_the_page_is_handed_over_as_the_gate_judges_it(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot
) -> None:
    """`approve --submit` takes what the page saves (the statement and its assertion line) and
    refuses, with the gate's reason, one the gate would not count.
    """
    plan = approvals.handed_over(ratified(target), trust)
    assert (plan.statement.approver_email, plan.statement.level) == (L4.email, "L4")
    with pytest.raises(signatures.SigningFailed, match="no user verification"):
        approvals.handed_over(ratified(target, flags=UP), trust)


def test_a_passkey_line_round_trips_and_ssh_keygen_never_sees_it() -> None:
    line = listed("l4")
    assert passkeys.Credential.parse(line).line() == line
    data = SIGNERS.trust.data + f"{line}\n".encode()
    assert passkeys.ssh_lines(data) == SIGNERS.trust.data
    assert set(passkeys.credentials(data)) == {KEYS["l4"].credential_id}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.replace('"type"', '"kind"'), "is not of type"),
        (lambda t: t.replace(":", ": ", 1), "not in canonical form"),
        (lambda t: t.replace('"signature":"', '"signature":"+'), "signature is not base64url"),
    ],
)
def test_a_stored_assertion_has_one_spelling(change: Any, words: str) -> None:
    message = b'{"a":1}\n'
    text = KEYS["l4"].assert_(message).text()
    with pytest.raises(passkeys.Refused, match=words):
        passkeys.Assertion.parse(change(text))
