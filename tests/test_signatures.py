"""Signed approvals (issue 8): a perfect-looking row written by a superuser counts only with a
statement its approver signed for this package, proposal, level and target, unexpired, by a key
the allowed signers list for the approver's email, not the sealer's; every changed byte is
refused; ssh-keygen and oneroof agree in both directions; the auditor's re-check.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oneroof.core import gate, package, signatures
from oneroof.executor import release
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from tests.support.testing import PgServer, signers

PKG = package.load()
SIGNERS = signers()
L4 = catalog.account("l4")


@pytest.fixture(scope="module")
def target(test_server: PgServer, unique: Any) -> Iterator[psycopg.Connection[Any]]:
    """A marked clone of the golden database; every case runs in a transaction that is rolled back."""
    made = clones.create(test_server.admin, source=test_server.golden, name=unique("signed"), wait=60)
    try:
        with connect(made.dsn) as conn:
            yield conn
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(made.name))
            )


def reason(
    conn: psycopg.Connection[Any],
    *,
    pkg: package.Package = PKG,
    trust: signatures.TrustRoot | None = None,
    **approve: Any,
) -> str:
    """Insert one human L4 approval (right hash and proposal) as a superuser, judge the gate,
    roll back; the approvals reason ('' when the gate counts it).
    """
    try:
        SIGNERS.approve(conn, "l4", sha=pkg.sha256, **approve)
        verdict = gate.evaluate(conn, pkg, confirm_db=conn.info.dbname, trust=trust or SIGNERS.trust)
        return verdict.reasons.get("approvals", "")
    finally:
        conn.rollback()


def test_a_row_signed_by_its_approver_counts(target: psycopg.Connection[Any]) -> None:
    assert reason(target) == ""


PAST = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
CASES = {
    "no statement": ({"signed": False}, "no signed statement"),
    "key not in the allowed signers": ({"key": SIGNERS.outsider}, "which the allowed signers"),
    "another approver's key": ({"key": SIGNERS.keys["l2"]}, f"do not list for {L4.email}"),
    "signed for another database": ({"database": "directus"}, "signed for database 'directus'"),
    "signed for another cluster": ({"system_identifier": "1"}, "signed for cluster 1, not this cluster"),
    "expired": ({"now": PAST, "valid_for": dt.timedelta(hours=1)}, "its statement expired at"),
    "issued in the future": ({"now": dt.datetime.now(dt.UTC) + dt.timedelta(days=1)}, "issued in the future"),
    "valid for too long": ({"valid_for": dt.timedelta(days=31)}, "validity is not between 0 and 30 days"),
    "for another package": ({"package_sha256": "e" * 64}, "approves package eeeeeeeeeeee"),
    "for another proposal": ({"proposal": "OR-OTHER"}, "approves proposal OR-OTHER"),
    "at another level": ({"level": "L2"}, "signed at level L2, not L4"),
    "for another approver": ({"approver_email": catalog.account("l2").email}, "signed for approver binh.tran"),
}


@pytest.mark.parametrize(("changes", "expected"), CASES.values(), ids=CASES.keys())
def test_a_perfect_looking_row_without_a_good_statement_is_blocked(
    target: psycopg.Connection[Any], changes: dict[str, Any], expected: str
) -> None:
    got = reason(target, **changes)
    assert got.startswith("valid approvals 0 < 1") and expected in got, got


def test_no_allowed_signers_blocks(target: psycopg.Connection[Any]) -> None:
    try:
        SIGNERS.approve(target)
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=None)
    finally:
        target.rollback()
    assert "no allowed signers to verify its statement against" in verdict.reasons["approvals"]


def test_a_statement_counts_once(target: psycopg.Connection[Any]) -> None:
    try:
        first = SIGNERS.approve(target)
        second = SIGNERS.approve(target, signed=False)
        text = target.execute("SELECT comment FROM directus_comments WHERE item = %s", (str(first),)).fetchone()
        assert text is not None
        SIGNERS.attach(target, second, text["comment"])
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=SIGNERS.trust)
    finally:
        target.rollback()
    assert verdict.valid_approvals == (first,)
    assert f"#{second} its statement is the one of #{first}" in verdict.notes[0]


def test_the_key_that_sealed_the_package_cannot_approve_it(target: psycopg.Connection[Any], tmp_path: Path) -> None:
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    package.seal(copy, SIGNERS.keys["l4"])
    sealed = package.load(copy)
    assert sealed.sealer_key == signatures.key_fingerprint(SIGNERS.keys["l4"])
    assert reason(target, pkg=sealed).endswith("the key that sealed the package (four eyes))")
    # another approver may approve what l4 sealed
    try:
        SIGNERS.approve(target, "l2", sha=sealed.sha256)
        verdict = gate.evaluate(target, sealed, confirm_db=target.info.dbname, trust=SIGNERS.trust)
    finally:
        target.rollback()
    assert "approvals" not in verdict.reasons


def test_a_sealed_package_needs_its_signature(tmp_path: Path) -> None:
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    package.seal(copy, SIGNERS.keys["l2"])
    (copy / package.SEAL_SIGNATURE).unlink()
    with pytest.raises(package.IntegrityError, match="manifest.toml.sig is missing"):
        package.load(copy)
    package.seal(copy, SIGNERS.keys["l2"])
    other = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", signatures.PACKAGE_NAMESPACE, "-f", str(SIGNERS.outsider)],
        input=(copy / "manifest.toml").read_bytes(),
        capture_output=True,
        check=True,
    )
    (copy / package.SEAL_SIGNATURE).write_bytes(other.stdout)
    with pytest.raises(package.IntegrityError, match="but the manifest names the sealer"):
        package.load(copy)


def test_directus_evidence_takes_an_approval_away(target: psycopg.Connection[Any]) -> None:
    svc = catalog.account("svc-etl")
    try:
        approval = SIGNERS.approve(target)
        target.execute(
            'INSERT INTO directus_activity (action, "user", collection, item) '
            "VALUES ('create', %s, 'os_proposal_approvals', %s)",
            (svc.id, str(approval)),
        )
        created = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=SIGNERS.trust)
        target.execute('UPDATE directus_activity SET "user" = %s WHERE item = %s', (L4.id, str(approval)))
        assert gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=SIGNERS.trust).open
        target.execute(
            'INSERT INTO directus_activity (action, "user", collection, item) '
            "VALUES ('update', %s, 'os_proposal_approvals', %s)",
            (catalog.account("admin").id, str(approval)),
        )
        updated = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=SIGNERS.trust)
    finally:
        target.rollback()
    assert f"Directus shows it was created by user {svc.id}, not by its approver" in created.reasons["approvals"]
    assert "Directus shows it was changed after its creation" in updated.reasons["approvals"]


def test_a_role_that_cannot_read_the_cluster_identity_is_blocked_with_the_reason(
    target: psycopg.Connection[Any], test_server: PgServer, unique: Any
) -> None:
    role = unique("no_control")  # roles are cluster-wide: a fixed name would collide with another run
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(role)))
        admin.execute(psycopg.sql.SQL("CREATE ROLE {}").format(psycopg.sql.Identifier(role)))
    try:
        SIGNERS.approve(target)
        # PostgreSQL grants pg_control_system() to PUBLIC; a hardened server may revoke it
        target.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
        target.execute(
            psycopg.sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(psycopg.sql.Identifier(role))
        )
        target.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        assert gate.system_identifier(target) is None
        verdict = gate.evaluate(target, PKG, confirm_db=target.info.dbname, trust=SIGNERS.trust)
    finally:
        target.rollback()
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(role)))
    assert "cannot be read (pg_control_system() is not granted" in verdict.reasons["approvals"]


# -- every byte counts ----------------------------------------------------------------------------

EXPECT = dict(
    approver_id=str(L4.id),
    approver_email=L4.email,
    level="L4",
    package_sha256=PKG.sha256,
    proposal=catalog.PROPOSAL_CODE,
    database="directus",
    database_oid="16384",
    system_identifier="7300000000000000001",
)


def _bundle() -> str:
    statement = signatures.Statement.new(**{k: v for k, v in EXPECT.items()}, valid_for=dt.timedelta(days=3))
    return signatures.bundle(statement, signatures.sign(statement.message(), SIGNERS.keys["l4"]))


BUNDLE = _bundle()


def accepted(text: str) -> bool:
    try:
        signatures.check(text, SIGNERS.trust, now=dt.datetime.now(dt.UTC), **EXPECT)
    except signatures.BadStatement:
        return False
    return True


def test_the_unchanged_bundle_verifies() -> None:
    assert accepted(BUNDLE)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0, max_value=len(BUNDLE) - 1), char=st.characters(blacklist_categories=("Cs",)))
@example(position=BUNDLE.index("\n-----END") - 1, char="A")  # the last base64 character
@example(position=len(BUNDLE) - 1, char=" ")  # the final newline
@example(position=BUNDLE.index('"L4"') + 2, char="2")  # the level
def test_any_single_changed_character_is_refused(position: int, char: str) -> None:
    if BUNDLE[position] == char:
        char = "x" if char != "x" else "y"
    changed = BUNDLE[:position] + char + BUNDLE[position + 1 :]
    assert not accepted(changed)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0, max_value=len(BUNDLE.encode()) - 1), byte=st.integers(0, 127))
def test_any_single_changed_byte_is_refused(position: int, byte: int) -> None:
    data = bytearray(BUNDLE.encode())
    if data[position] == byte:
        byte = (byte + 1) % 128
    data[position] = byte
    assert not accepted(data.decode("ascii"))


# -- ssh-keygen and oneroof agree ---------------------------------------------------------------------


def test_a_statement_signed_with_ssh_keygen_verifies(tmp_path: Path) -> None:
    statement = signatures.Statement.new(**EXPECT, valid_for=dt.timedelta(hours=1))
    (tmp_path / "statement.json").write_bytes(statement.message())
    subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "sign",
            "-n",
            "oneroof-approval@v1",
            "-f",
            str(SIGNERS.keys["l4"]),
            str(tmp_path / "statement.json"),
        ],
        check=True,
        capture_output=True,
    )
    text = statement.message().decode() + (tmp_path / "statement.json.sig").read_text()
    assert accepted(text)


def test_a_statement_from_oneroof_approve_verifies_with_ssh_keygen(
    oneroof: Any, clone: clones.Clone, tmp_path: Path
) -> None:
    out = tmp_path / "approval.txt"
    result = oneroof(
        "approve", "--dsn", clone.dsn, "--email", L4.email, "--key", str(SIGNERS.keys["l4"]), "--out", str(out), "--yes"
    )
    assert result.returncode == 0, result.stderr
    assert f"database {clone.name!r} (OID " in result.stdout and ") on cluster system_identifier" in result.stdout
    assert "35 collections:" in result.stdout and "GOV-COUNCIL  13: kh_documents" in result.stdout
    assert PKG.sha256 in result.stdout and "tiers        2 access, 3 ownership" in result.stdout
    # The README's commands for an auditor, run as written.
    script = (
        "head -n 1 approval.txt > statement.json && tail -n +2 approval.txt > statement.json.sig && "
        f"ssh-keygen -Y verify -f {SIGNERS.trust.path} -I {L4.email} -n oneroof-approval@v1 "
        "-s statement.json.sig < statement.json"
    )
    verified = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and f'Good "oneroof-approval@v1" signature for {L4.email}' in verified.stdout
    tampered = out.read_text().replace('"level":"L4"', '"level":"L2"')
    out.write_text(tampered)
    refused = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert refused.returncode != 0


def test_approve_without_a_terminal_needs_yes(oneroof: Any, clone: clones.Clone, tmp_path: Path) -> None:
    out = tmp_path / "approval.txt"
    result = oneroof(
        "approve", "--dsn", clone.dsn, "--email", L4.email, "--key", str(SIGNERS.keys["l4"]), "--out", str(out)
    )
    assert result.returncode == 2 and "no terminal to confirm on" in result.stderr
    assert not out.exists() and "Traceback" not in result.stderr


def test_approve_refuses_a_key_not_in_the_allowed_signers(oneroof: Any, clone: clones.Clone, tmp_path: Path) -> None:
    result = oneroof(
        "approve",
        "--dsn",
        clone.dsn,
        "--email",
        L4.email,
        "--key",
        str(SIGNERS.outsider),
        "--out",
        str(tmp_path / "a.txt"),
        "--yes",
        "--allowed-signers",
        str(SIGNERS.trust.path),
    )
    assert result.returncode == 2 and "do not list for" in result.stderr
    assert not (tmp_path / "a.txt").exists()


def test_approve_refuses_an_approver_who_is_not_an_active_human_at_an_allowed_level(
    oneroof: Any, clone: clones.Clone, tmp_path: Path
) -> None:
    for key in ("l3", "svc-etl"):
        result = oneroof(
            "approve",
            "--dsn",
            clone.dsn,
            "--email",
            catalog.account(key).email,
            "--key",
            str(SIGNERS.keys[key]),
            "--out",
            str(tmp_path / f"{key}.txt"),
            "--yes",
        )
        assert result.returncode == 2, result.stderr
    assert not list(tmp_path.iterdir())


# -- the ledger and the auditor ------------------------------------------------------------------------


def test_the_ledger_records_the_trust_root_and_the_audit_verifies(
    oneroof: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    approval = SIGNERS.approve(clone_conn)
    SIGNERS.approve(clone_conn, "l2", signed=False)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=SIGNERS.trust)
    recorded = clone_conn.execute("SELECT DISTINCT allowed_signers_sha256 AS sha FROM os_release_ledger").fetchall()
    assert recorded == [{"sha": SIGNERS.trust.sha256}]
    monitor = oneroof("monitor", "--dsn", clone.dsn)
    assert f"allowed signers sha256 {SIGNERS.trust.sha256}" in monitor.stdout
    audit = oneroof("approvals", "verify", "--dsn", clone.dsn)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"approval #{approval}: VERIFIED: signed by {L4.email}" in audit.stdout
    assert "REFUSED: no signed statement" in audit.stdout
    assert "1 deployments (1 verified)" in audit.stdout
    # the statement behind the deployment is changed afterwards: the auditor sees it
    clone_conn.execute(
        'UPDATE directus_comments SET comment = replace(comment, \'"level":"L4"\', \'"level":"L2"\') WHERE item = %s',
        (str(approval),),
    )
    changed = oneroof("approvals", "verify", "--dsn", clone.dsn)
    assert changed.returncode == 1 and "1 deployments (0 verified)" in changed.stdout


def test_the_audit_names_a_different_trust_root(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, tmp_path: Path
) -> None:
    SIGNERS.approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=SIGNERS.trust)
    other = tmp_path / "allowed_signers"
    other.write_bytes(SIGNERS.trust.data + b"# reviewed later\n")
    audit = oneroof("approvals", "verify", "--dsn", clone.dsn, "--allowed-signers", str(other))
    assert audit.returncode == 1 and f"the ledger records allowed signers {SIGNERS.trust.sha256}" in audit.stdout


def test_a_re_wrapped_signature_is_refused() -> None:
    statement_line, signature = BUNDLE.split("\n", 1)
    body = "".join(signature.splitlines()[1:-1])
    rewrapped = (
        "\n".join([signatures.ARMOR_BEGIN, *(body[i : i + 64] for i in range(0, len(body), 64)), signatures.ARMOR_END])
        + "\n"
    )
    assert rewrapped != signature
    assert not accepted(statement_line + "\n" + rewrapped)


def test_the_sealer_cannot_approve_with_another_of_their_keys(target: psycopg.Connection[Any], tmp_path: Path) -> None:
    second = tmp_path / "l2-second"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(second)], check=True, capture_output=True)
    allowed = tmp_path / "allowed_signers"
    l2 = catalog.account("l2")
    allowed.write_bytes(SIGNERS.trust.data + f"{l2.email} {second.with_suffix('.pub').read_text()}".encode())
    trust = signatures.TrustRoot.load(allowed)
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    package.seal(copy, SIGNERS.keys["l2"])
    sealed = package.load(copy)
    try:
        SIGNERS.attach(
            target,
            SIGNERS.approve(target, "l2", sha=sealed.sha256, signed=False),
            SIGNERS.statement(target, "l2", key=second, package_sha256=sealed.sha256),
            "l2",
        )
        verdict = gate.evaluate(target, sealed, confirm_db=target.info.dbname, trust=trust)
    finally:
        target.rollback()
    assert f"its approver {l2.email} sealed the package (four eyes)" in verdict.reasons["approvals"]


def test_a_statement_is_spent_by_a_rolled_back_deployment_whichever_row_carries_it(
    oneroof: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    first = SIGNERS.approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=SIGNERS.trust)
    release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=SIGNERS.trust)
    text = clone_conn.execute("SELECT comment FROM directus_comments WHERE item = %s", (str(first),)).fetchone()
    # a writer of the database deletes the spent row and re-creates it, carrying the same statement
    clone_conn.execute("DELETE FROM directus_comments WHERE item = %s", (str(first),))
    clone_conn.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (first,))
    copy = SIGNERS.approve(clone_conn, signed=False)
    SIGNERS.attach(clone_conn, copy, text["comment"])
    result = oneroof("monitor", "--dsn", clone.dsn)
    assert result.returncode == 3
    assert f"#{copy} its statement authorised a deployment already" in result.stdout


def test_require_signatures_is_the_package_s_to_raise(target: psycopg.Connection[Any], tmp_path: Path) -> None:
    assert PKG.require_signatures
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    manifest = copy / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("require_signatures = true\n", ""))
    package.seal(copy)
    unsigned = package.load(copy)
    assert not unsigned.require_signatures and unsigned.sha256 != PKG.sha256  # approvals name the hash
    assert reason(target, pkg=unsigned, signed=False) == ""  # docs/design.md#s5-2, without signatures
    assert "no signed statement" in reason(target, signed=False)
    manifest.write_text(
        manifest.read_text().replace("min_approvals = 1\n", 'min_approvals = 1\nrequire_signatures = "yes"\n')
    )
    package.seal(copy)
    with pytest.raises(package.IntegrityError, match="require_signatures"):
        package.load(copy)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("approve", "--email", L4.email, "--out", "x.txt"), "--key is missing"),
        (("approve", "--email", L4.email, "--key", "/nonexistent/key", "--out", "x.txt"), "no such key file"),
        (("approve", "--email", L4.email, "--key", str(SIGNERS.keys["l4"])), "--directus URL is missing"),
        (
            ("approve", "--email", L4.email, "--key", str(SIGNERS.keys["l4"]), "--directus", "ftp://hub"),
            "not an http(s) URL",
        ),
        (
            ("approve", "--email", L4.email, "--submit", "a.txt", "--key", "k", "--directus", "http://x"),
            "neither --key",
        ),
        (("approvals", "verify", "--allowed-signers", "/nonexistent/allowed"), "cannot read it"),
        (("monitor", "--allowed-signers", "/nonexistent/allowed"), "cannot read it"),
    ],
)
def test_bad_input_to_the_signing_commands_is_one_line(oneroof: Any, args: tuple[str, ...], words: str) -> None:
    result = oneroof(*args)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
