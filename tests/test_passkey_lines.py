"""The passkey lines of the trust file and a stored passkey bundle, without a database: every
line that is not valid is refused naming its line and what is wrong with it, a passkey listed
twice is refused, a bundle that is not a statement and an assertion says so, and data that
verify but cannot be read are refused. Each was a mutant of core/passkeys.py that the mutation
check did not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import dataclasses

import pytest

from oneroof.core import passkeys
from tests.support.authenticator import SoftAuthenticator

AUTHENTICATOR = SoftAuthenticator()
CREDENTIAL = AUTHENTICATOR.credential("approver@example.org", "2b1cbd0e-3a43-4d7e-9c39-4d3bd5b0c8a1", "L4")
LINE = CREDENTIAL.line()
SHORT = passkeys.b64url(CREDENTIAL.credential_id)[:16]


def refusal(*lines: str) -> str:
    """Why `credentials` refuses a trust file of an SSH line and `lines`."""
    trust = "a@example.org ssh-ed25519 AAAA\n" + "".join(f"{line}\n" for line in lines)
    with pytest.raises(passkeys.Refused) as refused:
        passkeys.credentials(trust.encode())
    return str(refused.value)


def test_a_valid_line_is_read_back() -> None:
    assert passkeys.credentials(f"{LINE}\n".encode()) == {CREDENTIAL.credential_id: CREDENTIAL}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            ("level=L4", "stage=L4"),
            "'stage' is not one of directus-id, level, rp-id, origin, aaguid, credential, cose"
            " (each once, with a value)",
        ),
        (("approver@example.org", "approver"), "'approver' is not an email address"),
        (("credential=", "credential=*"), "credential is not base64url"),
    ],
    ids=["unknown field", "not an email", "credential not base64url"],
)
def test_a_line_that_is_not_valid_is_refused_naming_it(change: tuple[str, str], reason: str) -> None:
    assert refusal(LINE.replace(*change)) == f"the trust file's line 2 is not a valid passkey line: {reason}"


def test_a_passkey_listed_twice_is_refused_naming_the_second_line() -> None:
    assert refusal(LINE, LINE) == f"the trust file lists passkey {SHORT} twice (line 3)"


def test_a_cose_key_that_is_not_valid_is_refused_naming_the_passkey() -> None:
    broken = dataclasses.replace(CREDENTIAL, cose=b"\xa1\x01\x02")  # a CBOR map without a key
    with pytest.raises(passkeys.Refused, match=f"^the trust file's COSE key for passkey {SHORT} is not valid$"):
        broken.key()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"statement": 1}', "its statement is not a oneroof approval statement"),
        ('not a statement\n{"type": 1}\n', "its statement is not a oneroof approval statement"),
        ('{"statement": 1}\n{"type": "\u00e9"}\n', "its statement is not a oneroof approval statement"),
        ('{"statement": 1}\nnot JSON\n', "its passkey assertion is not JSON"),
    ],
    ids=["one line", "no statement first", "not ASCII", "assertion not JSON"],
)
def test_a_bundle_that_is_not_a_statement_and_an_assertion_is_refused(text: str, reason: str) -> None:
    with pytest.raises(passkeys.Refused, match=f"^{reason}$"):
        passkeys.parse_bundle(text)


@pytest.mark.parametrize(
    ("auth", "client"),
    [
        (b"too short", b'{"type":"webauthn.get","challenge":"AA","origin":"x"}'),  # ValueError
        (bytes(37), b'{"challenge":"AA"}'),  # KeyError: no type
        (bytes(37), b"[1]"),  # TypeError: not an object
    ],
    ids=["authenticator data too short", "client data without its type", "client data not an object"],
)
def test_data_that_verify_but_cannot_be_read_are_refused(auth: bytes, client: bytes) -> None:
    """A listed passkey signed them, so the signature verifies; reading them fails, with one reason."""
    with pytest.raises(
        passkeys.Refused, match="^its passkey assertion's authenticator data or client data cannot be read$"
    ):
        passkeys.verify(
            b"{}\n",
            AUTHENTICATOR.sign(auth, client),
            f"{LINE}\n".encode(),
            approver_id=CREDENTIAL.directus_id,
            email=CREDENTIAL.email,
            level=CREDENTIAL.level,
        )
