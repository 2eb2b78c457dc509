"""Passkey approvals: a WebAuthn assertion, made by a user-verified authenticator over one
approval statement, checked offline against passkey lines of the trust file.

The trust file (the allowed-signers file: `--allowed-signers`, `$ONEROOF_ALLOWED_SIGNERS`) holds
SSH keys in ssh-keygen's format and, beside them, one line per passkey credential. The
ratification page in Directus prints that line when an approver registers a passkey; a human
reviews it and adds it (docs/runbooks/approver.md):

    EMAIL passkey directus-id=UUID level=L2 rp-id=HOST origin=URL aaguid=UUID credential=B64URL cose=B64URL

`credential` is the credential id and `cose` the COSE public key (CBOR), both base64url without
padding; `rp-id` and `origin` are the relying party the credential was made for (the Directus
host and its URL). Like an allowed-signers line it starts with the approver's email; its second
word, `passkey`, is neither an option nor a key type of ssh-keygen's, which never sees these lines
(`ssh_lines`).

A passkey approval, as stored in Directus (the approval row's comment), is the statement line
followed by one line of canonical JSON, the assertion the browser returned:

    {"authenticator_data":B64URL,"client_data_json":B64URL,"credential_id":B64URL,"signature":B64URL,"type":"oneroof-passkey-assertion/v1"}

It counts only when every check of `verify` holds: the credential is listed for this approver
(Directus id and email) at this level; the signature over authenticatorData || SHA-256(
clientDataJSON) verifies with the listed COSE key (ES256, EdDSA or RS256); clientDataJSON is of
type webauthn.get, its challenge is the SHA-256 of the statement's signed bytes and its origin is
the listed one; the authenticator data's rpIdHash is SHA-256 of the listed RP ID; and both the
user-present (UP) and the user-verified (UV) flags are set: a PIN or biometric, a person.

The signature counter is not compared. The gate keeps no state between runs, and synced
passkeys report 0; an assertion is tied to one statement by its challenge, and a statement (its
nonce) counts once, so an assertion replayed on another row or for another release never counts.

The WebAuthn structures and COSE keys are read by `fido2` (Yubico's python-fido2, 2.x): a
maintained library whose parsers of authenticator data, client data and COSE keys are the ones
its own relying-party server uses, over `cryptography` for the signature itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fido2.cose import CoseKey
    from fido2.webauthn import AuthenticatorData, CollectedClientData

# fido2 and cryptography are imported where a passkey's signature is checked, not with this module:
# every command reads the trust file, few meet a passkey approval, and the two took 35 ms of each
# process's start.
PREFIX = "passkey"  # the second word of a passkey line in the trust file, after the email
ASSERTION_TYPE = "oneroof-passkey-assertion/v1"
# COSE algorithm identifiers (IANA's COSE Algorithms registry; fido2.cose's ES256.ALGORITHM and so on)
ES256, EDDSA, RS256 = -7, -8, -257
ALGORITHMS = {ES256: "ES256", EDDSA: "EdDSA", RS256: "RS256"}
# The COSE parameters each algorithm's `verify` in fido2 reads, and their types (RFC 9053: crv, x,
# y; RFC 8230: n, e): a key without one would fail there with a KeyError or TypeError, at the
# first approval rather than when the trust file is read.
PARAMETERS: dict[int, tuple[tuple[int, type], ...]] = {
    ES256: ((-1, int), (-2, bytes), (-3, bytes)),
    EDDSA: ((-1, int), (-2, bytes)),
    RS256: ((-1, bytes), (-2, bytes)),
}
FIELDS = ("directus-id", "level", "rp-id", "origin", "aaguid", "credential", "cose")
ASSERTION_FIELDS = ("authenticator_data", "client_data_json", "credential_id", "signature", "type")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
LEVEL = re.compile(r"^L[0-9]$")
RP_ID = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")
GET = "webauthn.get"


class Refused(Exception):
    """A passkey line or assertion that cannot be accepted; the message is the gate's reason."""


def b64url(data: bytes) -> str:
    """base64url without padding, the spelling WebAuthn uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str, what: str) -> bytes:
    """The bytes of base64url `text` (no padding, no other character); Refused naming `what`."""
    if not isinstance(text, str) or not B64URL.match(text) or len(text) % 4 == 1:
        raise Refused(f"{what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Refused(f"{what} is not base64url") from exc
    if b64url(raw) != text:
        raise Refused(f"{what} is not in canonical base64url")
    return raw


def challenge(message: bytes) -> bytes:
    """The WebAuthn challenge for a statement: SHA-256 of its signed bytes (canonical JSON and newline)."""
    return hashlib.sha256(message).digest()


# -- the trust file's passkey lines ---------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """One passkey the trust file lists: whose it is, at which level, for which relying party."""

    email: str
    directus_id: str
    level: str
    rp_id: str
    origin: str
    aaguid: str
    credential_id: bytes
    cose: bytes

    def line(self) -> str:
        """Its line in the trust file (what the registration view prints)."""
        values = (self.directus_id, self.level, self.rp_id, self.origin, self.aaguid)
        named = " ".join(f"{k}={v}" for k, v in zip(FIELDS[:5], values, strict=True))
        return f"{self.email} {PREFIX} {named} credential={b64url(self.credential_id)} cose={b64url(self.cose)}"

    def key(self) -> CoseKey:
        """Its COSE public key; Refused when the algorithm is not one the gate accepts."""
        from fido2 import cbor
        from fido2.cose import CoseKey

        try:  # fido2.cbor raises IndexError or struct.error on bytes cut short, KeyError on a tag
            parsed = cbor.decode(self.cose)
            if not isinstance(parsed, dict):
                raise ValueError("not a map")
            key = CoseKey.parse(parsed)
        except (ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
            raise Refused(
                f"the trust file's COSE key for passkey {b64url(self.credential_id)[:16]} is not valid"
            ) from exc
        if key.ALGORITHM not in ALGORITHMS:
            raise Refused(
                f"passkey {b64url(self.credential_id)[:16]} uses COSE algorithm {parsed.get(3)}, "
                f"not one of {', '.join(ALGORITHMS.values())}"
            )
        if not all(isinstance(key.get(label), kind) for label, kind in PARAMETERS[key.ALGORITHM]):
            raise Refused(f"the trust file's COSE key for passkey {b64url(self.credential_id)[:16]} is not valid")
        return key

    @classmethod
    def parse(cls, line: str) -> Credential:
        """The credential of one passkey line; ValueError saying what is wrong with it."""
        words = line.split()
        if len(words) != 2 + len(FIELDS) or words[1] != PREFIX:
            raise ValueError(f"a passkey line is `EMAIL {PREFIX}` and {len(FIELDS)} fields: {', '.join(FIELDS)}")
        values: dict[str, str] = {}
        for word in words[2:]:
            name, sep, value = word.partition("=")
            if not sep or name not in FIELDS or name in values or not value:
                raise ValueError(f"{word.split('=')[0]!r} is not one of {', '.join(FIELDS)} (each once, with a value)")
            values[name] = value
        if not EMAIL.match(words[0]):
            raise ValueError(f"{words[0]!r} is not an email address")
        for name in ("directus-id", "aaguid"):
            if not UUID.match(values[name]):
                raise ValueError(f"{name}={values[name]!r} is not a lowercase UUID")
        for name, pattern in (("level", LEVEL), ("rp-id", RP_ID), ("origin", ORIGIN)):
            if not pattern.match(values[name]):
                raise ValueError(f"{name}={values[name]!r} is not valid")
        try:
            credential_id, cose = unb64url(values["credential"], "credential"), unb64url(values["cose"], "cose")
        except Refused as exc:
            raise ValueError(str(exc)) from exc
        directus_id, level, rp_id, origin, aaguid = (values[n] for n in FIELDS[:5])
        return cls(words[0], directus_id, level, rp_id, origin, aaguid, credential_id, cose)


def is_passkey_line(line: str) -> bool:
    """True for a passkey line of the trust file (in ssh-keygen's lines, options or a key type follow the principal)."""
    return line.split(maxsplit=2)[1:2] == [PREFIX] and not line.lstrip().startswith("#")


def ssh_lines(trust: bytes) -> bytes:
    """The trust file without its passkey lines: what ssh-keygen reads as allowed signers."""
    return b"".join(line for line in trust.splitlines(keepends=True) if not is_passkey_line(line.decode("ascii")))


def credentials(trust: bytes) -> dict[bytes, Credential]:
    """The passkeys the trust file lists, by credential id; Refused naming a line that is not valid
    (so a mistyped line is found, not silently skipped).
    """
    found: dict[bytes, Credential] = {}
    for number, line in enumerate(trust.decode("ascii").splitlines(), 1):
        if not is_passkey_line(line):
            continue
        try:
            credential = Credential.parse(line)
        except ValueError as exc:
            raise Refused(f"the trust file's line {number} is not a valid passkey line: {exc}") from exc
        if credential.credential_id in found:
            raise Refused(f"the trust file lists passkey {b64url(credential.credential_id)[:16]} twice (line {number})")
        found[credential.credential_id] = credential
    return found


# -- assertions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assertion:
    """What navigator.credentials.get returned for one statement, as stored beside it."""

    credential_id: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes

    def text(self) -> str:
        """Its line: canonical JSON (sorted keys, no spaces) and a newline."""
        data = {
            "authenticator_data": b64url(self.authenticator_data),
            "client_data_json": b64url(self.client_data_json),
            "credential_id": b64url(self.credential_id),
            "signature": b64url(self.signature),
            "type": ASSERTION_TYPE,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def parse(cls, text: str) -> Assertion:
        """The assertion of a stored line; Refused unless it is exactly the canonical spelling."""
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise Refused("its passkey assertion is not JSON") from exc
        if not isinstance(data, dict) or sorted(data) != list(ASSERTION_FIELDS) or data["type"] != ASSERTION_TYPE:
            raise Refused(
                f"its passkey assertion is not of type {ASSERTION_TYPE} with fields {', '.join(ASSERTION_FIELDS)}"
            )
        assertion = cls(
            unb64url(data["credential_id"], "its assertion's credential_id"),
            unb64url(data["authenticator_data"], "its assertion's authenticator_data"),
            unb64url(data["client_data_json"], "its assertion's client_data_json"),
            unb64url(data["signature"], "its assertion's signature"),
        )
        if assertion.text() != text:
            raise Refused("its passkey assertion is not in canonical form (keys, order or spacing changed)")
        return assertion


def is_bundle(text: str) -> bool:
    """True when a stored approval text is a statement with a passkey assertion (not an SSH signature)."""
    _, _, rest = text.partition("\n")
    return rest.startswith("{")


def bundle(message: bytes, assertion: Assertion) -> str:
    """The text stored beside an approval: the statement line, then its assertion line."""
    return message.decode("ascii") + assertion.text()


def parse_bundle(text: str) -> tuple[bytes, Assertion]:
    """(signed message, assertion) of a passkey bundle; Refused when it is not one."""
    first, sep, rest = text.partition("\n")
    if not sep or not first.startswith("{") or not first.isascii() or not rest.isascii():
        raise Refused("its statement is not a oneroof approval statement")
    return (first + "\n").encode(), Assertion.parse(rest)


def _credential(assertion: Assertion, trust: bytes, approver_id: str, email: str, level: str) -> Credential:
    """The trust file's credential of the assertion, when it is listed for this approver and level."""
    short = b64url(assertion.credential_id)[:16]
    credential = credentials(trust).get(assertion.credential_id)
    if credential is None:
        raise Refused(f"its passkey {short} is not listed in the trust file ({hashlib.sha256(trust).hexdigest()[:12]})")
    if credential.directus_id != approver_id or credential.email.lower() != email.lower():
        raise Refused(
            f"its passkey {short} is listed for {credential.email} ({credential.directus_id}), "
            f"not for this approver {email}"
        )
    if credential.level != level:
        raise Refused(f"its passkey {short} is listed at level {credential.level}, not {level}")
    return credential


def _signed(assertion: Assertion, credential: Credential) -> tuple[AuthenticatorData, CollectedClientData]:
    """The assertion's authenticator data and client data, once its signature verifies with the listed key."""
    from cryptography.exceptions import InvalidSignature
    from fido2.webauthn import AuthenticatorData, CollectedClientData

    key = credential.key()
    try:
        key.verify(
            assertion.authenticator_data + hashlib.sha256(assertion.client_data_json).digest(), assertion.signature
        )
    except (InvalidSignature, ValueError) as exc:
        raise Refused(
            f"its passkey signature does not verify with the key listed for {b64url(credential.credential_id)[:16]} "
            "(a changed byte, or another credential)"
        ) from exc
    try:
        auth = AuthenticatorData(assertion.authenticator_data)
        client = CollectedClientData(assertion.client_data_json)
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused("its passkey assertion's authenticator data or client data cannot be read") from exc
    return auth, client


def verify(message: bytes, assertion: Assertion, trust: bytes, *, approver_id: str, email: str, level: str) -> str:
    """Every check of a passkey assertion over `message` (a statement's signed bytes), each with
    its own reason (Refused); what signed it, as "passkey:CREDENTIAL_ID".
    """
    from fido2.webauthn import AuthenticatorData

    credential = _credential(assertion, trust, approver_id, email, level)
    auth, client = _signed(assertion, credential)
    if client.type != GET:
        raise Refused(f"its passkey assertion's client data is of type {client.type!r}, not {GET!r}")
    if client.challenge != challenge(message):
        raise Refused("its passkey assertion was made over another statement (the challenge is not its SHA-256)")
    if client.origin != credential.origin or client.cross_origin:
        raise Refused(f"its passkey assertion was made on origin {client.origin!r}, not {credential.origin!r}")
    if auth.rp_id_hash != hashlib.sha256(credential.rp_id.encode()).digest():
        raise Refused(f"its passkey assertion was made for another RP ID, not {credential.rp_id!r}")
    if not auth.flags & AuthenticatorData.FLAG.UP:
        raise Refused("its passkey assertion has no user presence (UP flag not set)")
    if not auth.flags & AuthenticatorData.FLAG.UV:
        raise Refused(
            "its passkey assertion has no user verification (UV flag not set): the authenticator did not "
            "check a PIN or biometric; ratify again with one that does"
        )
    return f"{PREFIX}:{b64url(credential.credential_id)}"
