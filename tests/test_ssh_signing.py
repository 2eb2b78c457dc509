"""The ssh-keygen side of signed approvals, without a database: a signing that fails says why, a
rehearsal's one-off key, a signature that is not SSHSIG, a statement of the wrong shape, a statement
time that cannot be, and the trust file's lines past a comment. Each was a mutant of
core/signatures.py that the mutation check did not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from oneroof.core import signatures

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwUmH0WNi3i9mKJm4CzA2NYcSQOfmFlx/KhYTannSam"


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


def test_a_one_off_key_is_a_new_ed25519_key_without_passphrase(tmp_path: Path) -> None:
    key = signatures.one_off_key(tmp_path, "rehearsal 42")
    assert key == tmp_path / "one-off-key"
    public = key.with_suffix(".pub").read_text().split()
    assert public[0] == "ssh-ed25519" and public[2:] == ["rehearsal", "42"]
    signatures.sign(b"message", key)  # no passphrase asked


@pytest.mark.parametrize(
    "raw",
    [b"not an SSHSIG blob", b"SSHSIG" + (1).to_bytes(4, "big") + field(field(b"\xff\xfe")) + field(b"") * 4],
    ids=["no magic", "a key type that is not ASCII"],
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


def test_the_trust_file_s_lines_are_read_past_comments_and_blank_lines() -> None:
    data = f"# reviewed 2026-11-26\n\na@example.org {KEY}\n#b@example.org {KEY}\nc@example.org verify-required {KEY}\n"
    assert signatures.trust_lines(data.encode()) == [
        ("a@example.org", [], *KEY.split()),
        ("c@example.org", ["verify-required"], *KEY.split()),
    ]
