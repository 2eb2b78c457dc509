"""The passkey lines of the trust file, a stored passkey bundle and `verify`'s reasons, without a
database: every line that is not valid is refused naming its line and what is wrong with it, a
passkey listed twice is refused, a bundle that is not a statement and an assertion says so, data
that verify but cannot be read are refused, a listed COSE key that cannot be read or cannot verify
is refused whatever fido2 raises (bytes cut short, a parameter missing or mistyped), a passkey
counts only for the approver (id and email) it is listed for, each refusal names the passkey (and
an unlisted one the trust file), UV is checked as its own flag, and what was read cannot be
changed. Most were mutants of core/passkeys.py that the mutation check did not kill
(bench/mutation.py, docs/results/mutation.md); a key cut short or lacking a parameter was a
traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fido2 import cbor
from fido2.cose import ES384, RS256, EdDSA
from fido2.webauthn import AuthenticatorData

from oneroof.core import passkeys
from tests.support.authenticator import UP, SoftAuthenticator

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
        (
            (f" aaguid={CREDENTIAL.aaguid}", ""),
            "a passkey line is `EMAIL passkey` and 7 fields: directus-id, level, rp-id, origin, aaguid,"
            " credential, cose",
        ),
        (
            (f"aaguid={CREDENTIAL.aaguid}", "level=L4"),
            "'level' is not one of directus-id, level, rp-id, origin, aaguid, credential, cose"
            " (each once, with a value)",
        ),
        (
            ("level=L4", "level="),
            "'level' is not one of directus-id, level, rp-id, origin, aaguid, credential, cose"
            " (each once, with a value)",
        ),
        (
            (CREDENTIAL.directus_id, CREDENTIAL.directus_id.upper()),
            f"directus-id={CREDENTIAL.directus_id.upper()!r} is not a lowercase UUID",
        ),
        (
            (CREDENTIAL.aaguid, "not-a-uuid"),
            "aaguid='not-a-uuid' is not a lowercase UUID",
        ),
    ],
    ids=[
        "unknown field",
        "not an email",
        "credential not base64url",
        "a field missing",
        "a field twice",
        "a field without a value",
        "directus-id not a lowercase UUID",
        "aaguid not a UUID",
    ],
)
def test_a_line_that_is_not_valid_is_refused_naming_it(change: tuple[str, str], reason: str) -> None:
    assert refusal(LINE.replace(*change)) == f"the trust file's line 2 is not a valid passkey line: {reason}"


def test_a_passkey_listed_twice_is_refused_naming_the_second_line() -> None:
    assert refusal(LINE, LINE) == f"the trust file lists passkey {SHORT} twice (line 3)"


@pytest.mark.parametrize(
    "cose",
    [b"\xa1\x01\x02", b"\xa1\x80\x01", b"\xc0", b"\xa1", b"\xa1\x03\x19\x01"],
    ids=[
        "a map without an algorithm (ValueError)",
        "a list as a map key (TypeError)",
        "a CBOR tag, which fido2 does not read (KeyError)",
        "a map cut short (IndexError)",
        "an integer cut short (struct.error)",
    ],
)
def test_a_cose_key_that_is_not_valid_is_refused_naming_the_passkey(cose: bytes) -> None:
    broken = dataclasses.replace(CREDENTIAL, cose=cose)
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


def test_a_cose_key_of_another_algorithm_is_refused_naming_it() -> None:
    """An ES384 key (COSE algorithm -35), which fido2 reads but the gate does not accept."""
    es384 = cbor.encode(dict(ES384.from_cryptography_key(ec.generate_private_key(ec.SECP384R1()).public_key())))
    with pytest.raises(passkeys.Refused) as refused:
        dataclasses.replace(CREDENTIAL, cose=es384).key()
    assert str(refused.value) == f"passkey {SHORT} uses COSE algorithm -35, not one of ES256, EdDSA, RS256"


def verified(
    assertion: passkeys.Assertion, *, approver_id: str = CREDENTIAL.directus_id, email: str = CREDENTIAL.email
) -> str:
    """What `verify` says of an assertion over the statement `{}` against a trust file listing
    CREDENTIAL: what signed it, or its reason.
    """
    try:
        return passkeys.verify(
            b"{}\n", assertion, f"{LINE}\n".encode(), approver_id=approver_id, email=email, level=CREDENTIAL.level
        )
    except passkeys.Refused as exc:
        return str(exc)


def test_a_passkey_of_one_approver_counts_only_for_that_approver() -> None:
    """Listed for an id and an email: the same email under another Directus id, or the same id
    under another email, is not this approver; the email's case does not matter.
    """
    assertion = AUTHENTICATOR.assert_(b"{}\n")
    assert verified(assertion) == f"passkey:{passkeys.b64url(CREDENTIAL.credential_id)}"
    assert verified(assertion, email=CREDENTIAL.email.upper()) == verified(assertion)
    other_id = "0f6c5a52-93f5-4a53-8d0e-3f2b9c1d7e64"
    listed_for = f"its passkey {SHORT} is listed for {CREDENTIAL.email} ({CREDENTIAL.directus_id}), not for"
    assert verified(assertion, approver_id=other_id) == f"{listed_for} this approver {CREDENTIAL.email}"
    assert verified(assertion, email="other@example.org") == f"{listed_for} this approver other@example.org"


def test_an_unlisted_passkey_is_refused_naming_it_and_the_trust_file() -> None:
    unlisted = SoftAuthenticator()
    digest = hashlib.sha256(f"{LINE}\n".encode()).hexdigest()[:12]
    assert verified(unlisted.assert_(b"{}\n")) == (
        f"its passkey {passkeys.b64url(unlisted.credential_id)[:16]} is not listed in the trust file ({digest})"
    )


def test_a_signature_that_does_not_verify_is_refused_naming_the_passkey() -> None:
    good = AUTHENTICATOR.assert_(b"{}\n")
    changed = dataclasses.replace(good, authenticator_data=good.authenticator_data[:-1] + b"\xff")
    assert verified(changed) == (
        f"its passkey signature does not verify with the key listed for {SHORT} (a changed byte, or another credential)"
    )


def cose_keys() -> dict[str, dict[int, object]]:
    """A COSE key of each accepted algorithm, as a plain map."""
    return {
        "ES256": dict(CREDENTIAL.key()),
        "EdDSA": dict(EdDSA.from_cryptography_key(ed25519.Ed25519PrivateKey.generate().public_key())),
        "RS256": dict(RS256.from_cryptography_key(rsa.generate_private_key(65537, 2048).public_key())),
    }


@pytest.mark.parametrize(
    ("algorithm", "parameter", "value"),
    [
        ("ES256", -1, None),
        ("ES256", -2, None),
        ("ES256", -3, None),
        ("ES256", -1, "P-256"),
        ("ES256", -2, 5),
        ("ES256", -3, 5),
        ("EdDSA", -1, None),
        ("EdDSA", -2, None),
        ("EdDSA", -2, "x"),
        ("RS256", -1, None),
        ("RS256", -2, None),
        ("RS256", -1, 5),
        ("RS256", -2, 65537),
    ],
)
def test_a_cose_key_that_lacks_or_mistypes_a_parameter_is_not_valid(
    algorithm: str, parameter: int, value: object
) -> None:
    """What its algorithm's `verify` reads (fido2 would raise KeyError or TypeError there): refused
    when the trust file is read, not when an approval is checked.
    """
    key = cose_keys()[algorithm]
    if value is None:
        del key[parameter]
    else:
        key[parameter] = value
    broken = dataclasses.replace(CREDENTIAL, cose=cbor.encode(key))
    with pytest.raises(passkeys.Refused, match=f"^the trust file's COSE key for passkey {SHORT} is not valid$"):
        broken.key()


def test_a_cose_key_of_each_accepted_algorithm_is_read() -> None:
    for algorithm, key in cose_keys().items():
        assert dataclasses.replace(CREDENTIAL, cose=cbor.encode(key)).key() == key, algorithm


@pytest.mark.parametrize(
    ("parameter", "value"),
    [(-2, bytes(32)), (-1, 2)],
    ids=["x not a point of P-256", "another curve than P-256"],
)
def test_a_listed_key_that_cannot_verify_is_refused(parameter: int, value: object) -> None:
    """The COSE key parses but is not an ES256 key `cryptography` can build: fido2 raises ValueError
    from `verify`, and the assertion is refused, not a traceback.
    """
    key = dict(CREDENTIAL.key()) | {parameter: value}
    line = LINE.replace(f"cose={passkeys.b64url(CREDENTIAL.cose)}", f"cose={passkeys.b64url(cbor.encode(key))}")
    with pytest.raises(passkeys.Refused) as refused:
        passkeys.verify(
            b"{}\n",
            AUTHENTICATOR.assert_(b"{}\n"),
            f"{line}\n".encode(),
            approver_id=CREDENTIAL.directus_id,
            email=CREDENTIAL.email,
            level=CREDENTIAL.level,
        )
    assert str(refused.value) == (
        f"its passkey signature does not verify with the key listed for {SHORT} (a changed byte, or another credential)"
    )


def test_user_verification_is_its_own_flag_whatever_else_is_set() -> None:
    """A synced passkey sets backup eligible and backed up (BE, BS); without UV it is not a person."""
    flag = AuthenticatorData.FLAG
    assert verified(AUTHENTICATOR.assert_(b"{}\n", flags=UP | flag.BE | flag.BS)).startswith(
        "its passkey assertion has no user verification (UV flag not set)"
    )
    assert verified(AUTHENTICATOR.assert_(b"{}\n", flags=UP | flag.UV | flag.BE | flag.BS)).startswith("passkey:")


def test_what_the_trust_file_lists_and_the_browser_returned_cannot_be_changed_once_read() -> None:
    assertion = AUTHENTICATOR.assert_(b"{}\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        CREDENTIAL.level = "L9"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        assertion.signature = b""  # type: ignore[misc]


@pytest.mark.parametrize("length", range(1, 9))
def test_a_value_with_a_trailing_newline_is_not_base64url_whatever_its_length(length: int) -> None:
    """`$` lets one trailing newline past the alphabet's pattern (a stored assertion's JSON can
    hold one); the length check and the decoder refuse it, with the same reason at every length.
    """
    with pytest.raises(passkeys.Refused, match="^its assertion's signature is not base64url$"):
        passkeys.unb64url("A" * length + "\n", "its assertion's signature")


def test_the_cose_algorithms_are_fido2_s_and_reading_a_trust_file_needs_neither_fido2_nor_cryptography() -> None:
    from fido2.cose import ES256

    assert passkeys.ALGORITHMS == {ES256.ALGORITHM: "ES256", EdDSA.ALGORITHM: "EdDSA", RS256.ALGORITHM: "RS256"}
    # the command line, and a trust file's SSH and passkey lines read, in a process of its own
    trust = f"a@example.org ssh-ed25519 AAAA\n{LINE}\n".encode()
    code = (
        "import sys; from oneroof.executor import cli; from oneroof.core import passkeys; "
        f"assert len(passkeys.credentials({trust!r})) == 1 and passkeys.ssh_lines({trust!r}).count(b'\\n') == 1; "
        "print(sorted(m for m in ('fido2', 'cryptography') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
