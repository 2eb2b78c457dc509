"""The ssh-keygen side of signed approvals, without a database: a signing that fails says why, a
rehearsal's one-off key, a signature that is not SSHSIG, a statement of the wrong shape, a
statement time that cannot be, the trust file's lines past a comment, a statement's one
spelling, an armor or bundle that is not one, and what `check` compares once the signature
verifies (the clock's skew, a validity that ends before it starts, the rehearsal evidence, the
package), a key held in ssh-agent, an ssh-keygen that never answers (a program on PATH) and the
UV flag of an sk- signature. Each was a mutant of core/signatures.py that the mutation check did
not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from oneroof.core import passkeys, signatures

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwUmH0WNi3i9mKJm4CzA2NYcSQOfmFlx/KhYTannSam"


SK = signatures.SK_TYPES[0].encode()


def field(data: bytes) -> bytes:
    """One SSH wire string: its length (4 bytes, big-endian), then its bytes."""
    return len(data).to_bytes(4, "big") + data


def test_a_signing_that_fails_names_the_key_and_ssh_keygen_s_last_line(tmp_path: Path) -> None:
    key = tmp_path / "not-a-key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    with pytest.raises(signatures.SigningFailed) as failed:
        signatures.sign(b"message", key)
    said = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", signatures.NAMESPACE, "-f", str(key)],
        input=b"message",
        capture_output=True,
        check=False,
    )
    last = said.stderr.decode().strip().splitlines()[-1]
    assert failed.value.message == f"ssh-keygen could not sign with {key}: {last}"


def test_a_signing_that_fails_names_the_last_line_of_several(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = tmp_path / "bin" / "ssh-keygen"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'Signing file -' >&2\necho 'agent refused operation' >&2\nexit 255\n")
    failing.chmod(0o755)
    key = tmp_path / "key"
    key.write_text("a key\n")
    monkeypatch.setenv("PATH", f"{failing.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(signatures.SigningFailed) as failed:
        signatures.sign(b"message", key)
    assert failed.value.message == f"ssh-keygen could not sign with {key}: agent refused operation"


def test_a_key_held_in_ssh_agent_signs_by_its_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket = tmp_path / "agent"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert time.monotonic() < deadline and agent.poll() is None, "ssh-agent did not start"
            time.sleep(0.01)
        key = signatures.one_off_key(tmp_path, "in the agent")
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        subprocess.run(["ssh-add", "-q", str(key)], check=True, capture_output=True)
        key.unlink()  # only the agent holds the private key now
        public = key.with_suffix(".pub")
        signature = signatures.sign(b"message", public)
        assert signatures.signer(b"message", signature) == signatures.key_fingerprint(public)
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def test_a_one_off_key_is_a_new_ed25519_key_without_passphrase(tmp_path: Path) -> None:
    key = signatures.one_off_key(tmp_path, "rehearsal 42")
    assert key == tmp_path / "one-off-key"
    public = key.with_suffix(".pub").read_text().split()
    assert public[0] == "ssh-ed25519" and public[2:] == ["rehearsal", "42"]
    signatures.sign(b"message", key)  # no passphrase asked


@pytest.mark.parametrize(
    "raw",
    [
        b"not an SSHSIG blob",
        b"SSHSIG" + (1).to_bytes(4, "big") + field(field(b"\xff\xfe")) + field(b"") * 4,
        b"SSHSIG"
        + (1).to_bytes(4, "big")
        + b"".join(map(field, [field(b"ssh-ed25519"), b"namespace", b"", b"sha512"]))
        + (11).to_bytes(4, "big")  # the signature's length, but 10 bytes follow
        + field(b"x")
        + field(b"y"),
        b"SSHSIG"
        + (1).to_bytes(4, "big")
        + b"".join(map(field, [field(SK) + field(b"key"), b"namespace", b"", b"sha512", field(SK) + field(b"sig")])),
    ],
    ids=[
        "no magic",
        "a key type that is not ASCII",
        "a field longer than what is left",
        "an sk- signature without flags",
    ],
)
def test_a_signature_that_is_not_sshsig_is_refused_with_the_reason(raw: bytes) -> None:
    with pytest.raises(signatures.BadStatement, match="^its signature is not an SSHSIG signature$"):
        signatures.signed_by(signatures.armor(raw))


@pytest.mark.parametrize(
    "message",
    [
        b'{"package_sha256":"0","proposal":"1","approver":"someone"}\n',
        b'{"package_sha256":"0","proposal":"1","approver":{"id":"2","email":"a@example.org"},"level":"3","target":[]}\n',
    ],
    ids=["an approver that is not an object", "a target that is not an object"],
)
def test_a_statement_of_the_wrong_shape_is_refused_with_the_reason(message: bytes) -> None:
    with pytest.raises(signatures.BadStatement, match="^its statement is not a oneroof approval statement$"):
        signatures.Statement.parse(message)


def test_a_time_of_the_right_shape_that_cannot_be_is_refused_with_the_reason() -> None:
    with pytest.raises(signatures.BadStatement, match="^its statement's expires_at is not a valid time$"):
        signatures.parse_time("2026-02-30T12:00:00Z", "expires_at")
    for text in ("2026-2-28T12:00:00Z", "2026-02-28 12:00:00Z", 1772280000):  # strptime would take the first
        with pytest.raises(signatures.BadStatement, match="^its statement's issued_at is not a UTC time like "):
            signatures.parse_time(text, "issued_at")


def test_the_trust_file_s_lines_are_read_past_comments_and_blank_lines() -> None:
    data = (
        "# reviewed 2026-11-26\n\nlone@example.org\nhalf@example.org ssh-ed25519\n"
        f"a@example.org {KEY}\n#b@example.org {KEY}\n"
        f"c@example.org verify-required {KEY}\nd@example.org {KEY} the laptop's key\n"
    )
    assert signatures.trust_lines(data.encode()) == [
        ("a@example.org", [], *KEY.split()),
        ("c@example.org", ["verify-required"], *KEY.split()),
        ("d@example.org", [], *KEY.split()),
    ]


# -- a statement's one spelling, and what is not an armor or a bundle ----------------------------

EVIDENCE, OTHER_EVIDENCE = "a" * 64, "b" * 64
IDENTITY = dict(
    package_sha256="c" * 64,
    proposal="GOV-7",
    approver_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    approver_email="approver@example.org",
    level="L4",
    database="b\u00fccher",  # PostgreSQL names may be any text: the statement spells it in ASCII
    database_oid="16384",
    system_identifier="7300000000000000001",
)
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def statement(evidence: str | None = EVIDENCE) -> signatures.Statement:
    return signatures.Statement(
        **IDENTITY,
        issued_at="2026-12-01T12:00:00Z",
        expires_at="2026-12-01T13:00:00Z",
        nonce="00112233445566778899aabbccddeeff",
        rehearsal_sha256=evidence,
    )


def test_a_statement_has_one_spelling_and_reads_back_as_itself() -> None:
    spelled = (
        '{"approver":{"email":"approver@example.org","id":"0f8fad5b-d9cb-469f-a165-70867728950e"},'
        '"expires_at":"2026-12-01T13:00:00Z","issued_at":"2026-12-01T12:00:00Z","level":"L4",'
        '"nonce":"00112233445566778899aabbccddeeff","package_sha256":"' + "c" * 64 + '","proposal":"GOV-7",'
        '"rehearsal_sha256":"' + EVIDENCE + '","target":{"database":"b\\u00fccher","database_oid":"16384",'
        '"system_identifier":"7300000000000000001"},"type":"oneroof-approval/v2"}\n'
    )
    assert statement().message() == spelled.encode()
    assert b"rehearsal_sha256" not in statement(None).message()
    for made in (statement(), statement(None)):
        assert signatures.Statement.parse(made.message()) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        statement().level = "L1"  # type: ignore[misc]  # what was signed stays as signed


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"type": "oneroof-approval/v3"}, " is not of type oneroof-approval/v2"),
        ({"nonce": 5}, " is not of type oneroof-approval/v2"),
        ({"nonce": None}, " is not of type oneroof-approval/v2"),
        ({"rehearsal_sha256": 5}, " is not of type oneroof-approval/v2"),
        ({"rehearsal_sha256": "A" * 64}, "'s rehearsal_sha256 is not a SHA-256"),
    ],
    ids=[
        "another type",
        "a field that is not a string",
        "a null field",
        "evidence not a string",
        "evidence not a SHA-256",
    ],
)
def test_a_statement_in_canonical_form_that_is_not_one_is_refused_with_the_reason(
    change: dict[str, object], words: str
) -> None:
    data = {**statement().as_dict(), **change}
    message = (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()
    with pytest.raises(signatures.BadStatement, match=f"^its statement{words}"):
        signatures.Statement.parse(message)


BODY = signatures.armor(b"some signature bytes").split("\n")[1]


@pytest.mark.parametrize(
    "text",
    [
        signatures.armor(b""),  # no line between the two armor lines
        f"{signatures.ARMOR_BEGIN}\n{BODY}\u00e9\n{signatures.ARMOR_END}\n",
        f"{signatures.ARMOR_BEGIN[:-1]}\n{BODY}\n{signatures.ARMOR_END}\n",
    ],
    ids=["empty", "not ASCII", "another first line"],
)
def test_what_is_not_an_armored_signature_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(signatures.BadStatement, match="^its signature is not an armored SSH signature$"):
        signatures.check_armor(text)


def test_an_armor_of_what_is_not_base64_is_refused_with_the_reason() -> None:
    with pytest.raises(signatures.BadStatement, match="^its signature is not valid base64$"):
        signatures.check_armor(f"{signatures.ARMOR_BEGIN}\n{BODY[:4]}*{BODY[4:]}\n{signatures.ARMOR_END}\n")


def test_a_bundle_whose_first_line_is_not_a_statement_is_refused() -> None:
    armored = signatures.armor(b"some signature bytes")
    assert signatures.parse_bundle(statement().message().decode() + armored) == (statement().message(), armored)
    for first in (" " + statement().message().decode(), "statement\n"):
        with pytest.raises(signatures.BadStatement, match="^its statement is not a oneroof approval statement$"):
            signatures.parse_bundle(first + armored)
    with pytest.raises(signatures.BadStatement, match="^its statement is not a oneroof approval statement$"):
        signatures.statement_of('statement\n{"an assertion"}')  # the passkey bundle's own refusal
    assert signatures.statement_of(statement().message().decode() + armored) == statement()
    assertion = passkeys.Assertion(b"credential", b"authenticator data", b"client data", b"signature")
    assert signatures.statement_of(passkeys.bundle(statement().message(), assertion)) == statement()


# -- what check compares once the signature verifies ----------------------------------------------


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, signatures.TrustRoot]:
    """A one-off key and a trust root listing it for the approver."""
    directory = tmp_path_factory.mktemp("signer")
    key = signatures.one_off_key(directory, "approver")
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    return key, signatures.TrustRoot(directory / "allowed_signers", f"{IDENTITY['approver_email']} {public}\n".encode())


def judge(
    signer: tuple[Path, signatures.TrustRoot],
    *,
    issued: dt.datetime = NOW,
    valid_for: dt.timedelta = dt.timedelta(hours=1),
    evidence: str | None = None,
    now: dt.datetime | None = NOW,
    **given: str | None,
) -> signatures.Statement:
    """Sign a statement of IDENTITY and `check` it against IDENTITY changed by `given`."""
    key, trust = signer
    made = signatures.Statement.new(**IDENTITY, valid_for=valid_for, now=issued, rehearsal_sha256=evidence)
    text = signatures.bundle(made, signatures.sign(made.message(), key))
    checked, _fingerprint = signatures.check(text, trust, **{**IDENTITY, "now": now, **given})
    assert checked == made
    return checked


def test_a_statement_may_be_valid_for_thirty_days(signer: tuple[Path, signatures.TrustRoot]) -> None:
    judge(signer, valid_for=dt.timedelta(days=30))
    with pytest.raises(signatures.BadStatement, match="^its statement's validity is not between 0 and 30 days$"):
        judge(signer, valid_for=dt.timedelta(days=30, seconds=1))


@pytest.mark.parametrize(("flags", "verified"), [(0x05, True), (0x01, False), (0x81, False), (0x08, False)])
def test_only_the_uv_flag_shows_user_verification(flags: int, verified: bool) -> None:
    """An sk- signature's flags (made up here: this reads them, ssh-keygen verified them before):
    user presence, extension data or an unknown bit are not user verification.
    """
    key = field(SK) + field(b"public key") + field(b"ssh:")
    sig = field(SK) + field(b"signature") + bytes([flags]) + (7).to_bytes(4, "big")
    raw = b"SSHSIG" + (1).to_bytes(4, "big") + b"".join(map(field, [key, b"namespace", b"", b"sha512", sig]))
    listed = base64.b64encode(key).decode()
    trust = signatures.TrustRoot(
        Path("allowed_signers"), f"a@example.org verify-required {SK.decode()} {listed}\n".encode()
    )
    problem = signatures.user_verification_problem(signatures.armor(raw), trust, "a@example.org", required=False)
    assert (problem is None) == verified
    assert (
        verified
        or problem is not None
        and problem.startswith("signed with FIDO key (sk-ssh-ed25519@openssh.com) without")
    )


def test_a_statement_issued_up_to_five_minutes_ahead_counts(signer: tuple[Path, signatures.TrustRoot]) -> None:
    judge(signer, issued=NOW + dt.timedelta(minutes=5))
    with pytest.raises(
        signatures.BadStatement, match=r"^its statement is issued in the future \(2026-12-01T12:05:01Z\)$"
    ):
        judge(signer, issued=NOW + dt.timedelta(minutes=5, seconds=1))


@pytest.mark.parametrize("minutes", [-1, 0], ids=["ends before it starts", "ends as it starts"])
@pytest.mark.parametrize("now", [None, NOW - dt.timedelta(minutes=3)], ids=["no clock", "before it ends"])
def test_a_validity_that_is_not_more_than_zero_is_refused(
    signer: tuple[Path, signatures.TrustRoot], now: dt.datetime | None, minutes: int
) -> None:
    with pytest.raises(signatures.BadStatement, match="^its statement's validity is not between 0 and 30 days$"):
        judge(signer, valid_for=dt.timedelta(minutes=minutes), now=now)


def test_a_statement_no_longer_counts_at_the_second_it_expires(signer: tuple[Path, signatures.TrustRoot]) -> None:
    judge(signer, now=NOW + dt.timedelta(minutes=59, seconds=59))
    with pytest.raises(signatures.BadStatement, match="^its statement expired at 2026-12-01T13:00:00Z$"):
        judge(signer, now=NOW + dt.timedelta(hours=1))


def test_a_key_the_trust_root_does_not_list_is_named(signer: tuple[Path, signatures.TrustRoot], tmp_path: Path) -> None:
    other = signatures.one_off_key(tmp_path, "someone else")
    with pytest.raises(signatures.BadStatement) as refused:
        judge((other, signer[1]), now=None)
    assert str(refused.value) == (
        f"signed by key {signatures.key_fingerprint(other)}, which the allowed signers ({signer[1].sha256[:12]}) "
        f"do not list for {IDENTITY['approver_email']}"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        signatures.TrustRoot(*vars(signer[1]).values()).data = b""  # type: ignore[misc]  # it stays as read


def test_a_statement_that_names_evidence_counts_with_that_evidence_only(
    signer: tuple[Path, signatures.TrustRoot],
) -> None:
    judge(signer, evidence=EVIDENCE, rehearsal_sha256=EVIDENCE)
    judge(signer, evidence=EVIDENCE, rehearsal_sha256=None)  # not compared (as on a clone)
    judge(signer, evidence=None, rehearsal_sha256=EVIDENCE)
    with pytest.raises(signatures.BadStatement) as refused:
        judge(signer, evidence=EVIDENCE, rehearsal_sha256=OTHER_EVIDENCE)
    assert str(refused.value) == (
        "its statement approves after reviewing rehearsal evidence aaaaaaaaaaaa, not the evidence given, "
        "bbbbbbbbbbbb: roll out with the evidence the approver reviewed"
    )


def test_a_statement_of_another_package_names_both(signer: tuple[Path, signatures.TrustRoot]) -> None:
    with pytest.raises(signatures.BadStatement) as refused:
        judge(signer, package_sha256="d" * 64)
    assert str(refused.value) == f"its statement approves package {'c' * 12}, not {'d' * 12}"


def test_an_ssh_keygen_that_does_not_answer_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hardware key waiting for a touch, played by an ssh-keygen that never answers."""
    hung = tmp_path / "bin" / "ssh-keygen"
    hung.parent.mkdir()
    hung.write_text("#!/bin/sh\nexec sleep 60\n")
    hung.chmod(0o755)
    key = tmp_path / "key"
    key.write_text("a key\n")
    monkeypatch.setenv("PATH", f"{hung.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(signatures, "TIMEOUT", 1.0)
    with pytest.raises(signatures.SigningFailed) as failed:
        signatures.sign(b"message", key)
    assert failed.value.message == "ssh-keygen -Y sign did not answer within 1 s (a hardware key waiting for a touch?)"


def test_a_quoted_option_keeps_its_commas_and_spaces() -> None:
    data = f'a@example.org namespaces="one, two",verify-required {KEY}\n'.encode()
    assert signatures.trust_lines(data) == [
        ("a@example.org", ['namespaces="one, two"', "verify-required"], *KEY.split()),
    ]
    assert signatures.ssh_keygen_lines(data) == f'a@example.org namespaces="one, two" {KEY}\n'.encode()
    # a principal that starts as a key type does ("sk-", "ssh-") still has its options read
    data = f"sk-team@example.org verify-required {KEY}\n".encode()
    assert signatures.ssh_keygen_lines(data) == f"sk-team@example.org {KEY}\n".encode()
    # comments, blank and one-word lines pass as they are (ssh-keygen skips them)
    data = f"# reviewed\n\nlone@example.org\n#x@example.org verify-required {KEY}\n".encode()
    assert signatures.ssh_keygen_lines(data) == data


@pytest.mark.parametrize("oid", ["16385", None], ids=["another", "unknown"])
def test_a_statement_for_another_database_identity_names_both(
    signer: tuple[Path, signatures.TrustRoot], oid: str | None
) -> None:
    with pytest.raises(signatures.BadStatement) as refused:
        judge(signer, database_oid=oid)
    assert str(refused.value) == (
        "its statement is signed for another database identity: 'b\u00fccher' with OID 16384, not this "
        f"'b\u00fccher' with OID {oid or '(unknown)'} (a renamed, copied or re-created database is another "
        "database): the approver signs for this one"
    )
