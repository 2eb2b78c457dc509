"""The user-verification policy (issue 19.4): with `require_user_verification` in the manifest,
or the executor's setting of that name, an approval counts only by a user-verified authenticator:
a passkey assertion with UV, or an SSH signature by a FIDO key the trust file lists with
verify-required and whose signature carries the UV flag. A plain key file is refused with a
reason naming the policy; a rehearsal's one-off signer on a marked clone stays as it is.

FIDO signatures come from tests/support/fido.py (a software sk-ssh-ed25519 key) and are checked by
the real `ssh-keygen -Y verify`, as the gate checks every SSH signature.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oneroof.core import gate, package, passkeys, settings, signatures
from oneroof.executor import approvals
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from oneroof.harness.errors import IntegrityError
from tests.support.authenticator import SoftAuthenticator
from tests.support.fido import ECDSA_TYPE, UP, UV, SoftFidoKey
from tests.support.testing import PgServer, signers

PKG = package.load()
POLICY = dataclasses.replace(PKG, require_user_verification=True)
SIGNERS = signers()
L4 = catalog.account("l4")
PASSKEY = SoftAuthenticator()
FIDO = {
    "marked": SoftFidoKey(),
    "unmarked": SoftFidoKey(),
    "with-namespace": SoftFidoKey(),
    "ecdsa": SoftFidoKey(ECDSA_TYPE),
}
PLAIN = "signed with a plain key file (ssh-ed25519), but user verification is required (require_user_verification)"


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> signatures.TrustRoot:
    """The test signers' allowed signers plus, for L4, a passkey and three FIDO keys."""
    lines = [
        PASSKEY.credential(L4.email, str(L4.id), str(L4.level)).line(),
        FIDO["marked"].line(L4.email),
        FIDO["unmarked"].line(L4.email, ""),
        FIDO["with-namespace"].line(L4.email, f'namespaces="{signatures.NAMESPACE}",verify-required'),
        FIDO["ecdsa"].line(L4.email),
    ]
    path = tmp_path_factory.mktemp("trust") / "trust"
    path.write_bytes(SIGNERS.trust.data + "".join(f"{line}\n" for line in lines).encode())
    os.chmod(path, 0o600)
    return signatures.TrustRoot.load(path)


@pytest.fixture(scope="module")
def target(test_server: PgServer, unique: Any) -> Iterator[psycopg.Connection[Any]]:
    """A marked clone of the golden database; every case runs in a transaction that is rolled back."""
    made = clones.create(test_server.admin, source=test_server.golden, name=unique("uv"), wait=60)
    try:
        with connect(made.dsn) as conn:
            yield conn
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(made.name))
            )


def message(conn: psycopg.Connection[Any]) -> bytes:
    """A fresh statement for L4 on `conn`'s target (the test signers' SSH signature dropped)."""
    return signatures.parse_bundle(SIGNERS.statement(conn, "l4"))[0]


def fido_signed(conn: psycopg.Connection[Any], key: str, flags: int = UP | UV) -> str:
    text = message(conn)
    return text.decode() + FIDO[key].sign(text, flags)


def reason(
    conn: psycopg.Connection[Any],
    trust: signatures.TrustRoot,
    text: str | None,
    pkg: package.Package = POLICY,
    rehearsal: bool = False,
    **options: Any,
) -> str:
    """Insert one L4 approval carrying `text` (None: the test signers' plain SSH signature), judge
    the gate with `pkg`, roll back; the approvals' reason ("" when they open the gate).
    """
    try:
        row = SIGNERS.approve(conn, "l4", signed=text is None, rehearsal=rehearsal)
        if text is not None:
            SIGNERS.attach(conn, row, text)
        verdict = gate.evaluate(conn, pkg, confirm_db=conn.info.dbname, trust=trust, **options)
        return verdict.reasons.get("approvals", "")
    finally:
        conn.rollback()


def test_a_plain_key_file_is_refused_under_the_policy_and_counts_without_it(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot
) -> None:
    assert reason(target, trust, None, PKG) == ""
    got = reason(target, trust, None)
    assert got.startswith("valid approvals 0 < 1") and PLAIN in got, got
    assert "sign with a passkey or a FIDO key listed with verify-required" in got


def test_the_executor_raises_the_policy_whatever_the_manifest_says(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not PKG.require_user_verification  # the shipped manifest leaves it to the operator's package
    assert PLAIN in reason(target, trust, None, PKG, require_user_verification=True)
    monkeypatch.setenv(settings.REQUIRE_USER_VERIFICATION.env, "true")
    assert PLAIN in reason(target, trust, None, PKG)
    monkeypatch.setenv(settings.REQUIRE_USER_VERIFICATION.env, "0")
    assert reason(target, trust, None, PKG) == ""


def test_a_user_verified_passkey_counts_under_the_policy(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot
) -> None:
    text = message(target)
    assert reason(target, trust, passkeys.bundle(text, PASSKEY.assert_(text))) == ""


FIDO_CASES = {
    "UV, listed with verify-required": ("marked", UP | UV, POLICY, ""),
    "UV, verify-required beside another option": ("with-namespace", UP | UV, POLICY, ""),
    "ECDSA, UV, listed with verify-required": ("ecdsa", UP | UV, POLICY, ""),
    "ECDSA, no UV, listed with verify-required": ("ecdsa", UP, POLICY, "without user verification (its signature's UV"),
    "no UV, listed with verify-required": ("marked", UP, POLICY, "without user verification (its signature's UV"),
    "no UV, verify-required, no policy": ("marked", UP, PKG, "but the trust file lists it with verify-required"),
    "UV, listed without verify-required": ("unmarked", UP | UV, POLICY, "does not list with verify-required"),
    "no verify-required, no policy": ("unmarked", UP, PKG, ""),
}


@pytest.mark.parametrize(("key", "flags", "pkg", "expected"), FIDO_CASES.values(), ids=FIDO_CASES.keys())
def test_a_fido_key_counts_under_the_policy_only_listed_with_verify_required_and_signed_with_uv(
    target: psycopg.Connection[Any],
    trust: signatures.TrustRoot,
    key: str,
    flags: int,
    pkg: package.Package,
    expected: str,
) -> None:
    got = reason(target, trust, fido_signed(target, key, flags), pkg)
    if expected:
        assert got.startswith("valid approvals 0 < 1") and expected in got, got
    else:
        assert got == "", got


def test_the_auditor_re_checks_approvals_under_the_executors_policy(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`approvals verify` with $ONEROOF_REQUIRE_USER_VERIFICATION refuses a plain-key approval it
    verifies without the setting.
    """
    try:
        plain = SIGNERS.approve(target, "l4")
        target.commit()
        before = approvals.audit(target.info.dsn, trust)
        monkeypatch.setenv(settings.REQUIRE_USER_VERIFICATION.env, "1")
        after = approvals.audit(target.info.dsn, trust)
    finally:
        target.execute("DELETE FROM directus_comments WHERE item = %s", (str(plain),))
        target.execute("DELETE FROM os_proposal_approvals WHERE id = %s", (plain,))
        target.commit()
    assert {f.what: f for f in before.approvals}[f"approval #{plain}"].ok
    found = {f.what: f for f in after.approvals}[f"approval #{plain}"]
    assert not found.ok and PLAIN in found.detail, found


def test_monitor_and_the_gate_session_take_the_executors_flag(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot, oneroof: Any
) -> None:
    """`--require-user-verification` on the command line raises the policy in the executor and in
    the pytest session it runs (the gate stage of `verify`), whatever the manifest says.
    """
    env = {settings.ALLOWED_SIGNERS.env: str(trust.path)}
    try:
        plain = SIGNERS.approve(target, "l4")
        target.commit()
        dsn = target.info.dsn
        runs = {
            flag: (
                oneroof("monitor", "--dsn", dsn, *flag, env=env),
                oneroof("verify", "--stage", "gate", "--dsn", dsn, "--expect-db", target.info.dbname, *flag, env=env),
            )
            for flag in ((), ("--require-user-verification",))
        }
    finally:
        target.execute("DELETE FROM directus_comments WHERE item = %s", (str(plain),))
        target.execute("DELETE FROM os_proposal_approvals WHERE id = %s", (plain,))
        target.commit()
    (monitor, session), (raised, raised_session) = runs.values()
    assert monitor.returncode == 0 and session.returncode == 0, (monitor, session.stdout[-2000:])
    assert raised.returncode == 3 and PLAIN in raised.stdout + raised.stderr, raised
    assert raised_session.returncode != 0 and PLAIN in raised_session.stdout + raised_session.stderr, raised_session


def test_approve_refuses_what_the_policy_would_refuse_before_recording(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`oneroof approve` checks as the gate will (approvals.counted): a plain-key statement is
    refused under the package's policy, and under the executor's setting when the package is not
    at hand (`--submit`); a FIDO key with UV, listed with verify-required, is not.
    """
    text = SIGNERS.statement(target, "l4")
    statement = signatures.Statement.parse(signatures.parse_bundle(text)[0])
    assert approvals.counted(statement, text, PKG, trust)
    with pytest.raises(signatures.SigningFailed, match=r"require_user_verification"):
        approvals.counted(statement, text, POLICY, trust)
    assert approvals.counted(statement, text, None, trust)
    monkeypatch.setenv(settings.REQUIRE_USER_VERIFICATION.env, "1")
    with pytest.raises(signatures.SigningFailed, match=r"signed with a plain key file"):
        approvals.counted(statement, text, None, trust)
    fido = fido_signed(target, "marked")
    assert approvals.counted(signatures.Statement.parse(signatures.parse_bundle(fido)[0]), fido, POLICY, trust)


def test_a_rehearsal_approval_on_a_marked_clone_stays_as_it_is(
    target: psycopg.Connection[Any], trust: signatures.TrustRoot
) -> None:
    assert reason(target, trust, None, rehearsal=True) == ""


def test_ssh_keygen_reads_the_trust_file_without_verify_required(trust: signatures.TrustRoot) -> None:
    seen = signatures.ssh_keygen_lines(trust.data).decode()
    assert "verify-required" not in seen and f'namespaces="{signatures.NAMESPACE}" sk-ssh-ed25519' in seen
    assert seen.count(FIDO["marked"].line(L4.email, "").split()[-1]) == 1


def test_the_manifest_field_is_a_boolean(tmp_path: Path) -> None:
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    manifest = copy / "manifest.toml"
    original = manifest.read_text()

    def loaded(value: str) -> package.Package:
        field = f"require_signatures = true\nrequire_user_verification = {value}\n"
        manifest.write_text(original.replace("require_signatures = true\n", field))
        package.seal(copy)
        return package.load(copy)

    assert loaded("true").require_user_verification and not loaded("false").require_user_verification
    with pytest.raises(IntegrityError, match="gate.require_user_verification"):
        loaded('"yes"')
