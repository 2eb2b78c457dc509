"""A software WebAuthn authenticator for the tests: an EC P-256 (ES256) or Ed25519 (EdDSA)
credential that makes assertions as a browser and authenticator would, with every field that the
gate checks settable to something wrong.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fido2 import cbor
from fido2.cose import ES256, EdDSA
from fido2.webauthn import AuthenticatorData

from oneroof.core import passkeys

RP_ID = "localhost"
ORIGIN = "http://localhost:8055"
UP, UV = AuthenticatorData.FLAG.UP, AuthenticatorData.FLAG.UV


@dataclass
class SoftAuthenticator:
    """One credential: its private key, id and AAGUID, registered for one relying party."""

    algorithm: str = "ES256"
    rp_id: str = RP_ID
    origin: str = ORIGIN
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    aaguid: str = field(default_factory=lambda: str(uuid.uuid4()))
    counter: int = 0

    def __post_init__(self) -> None:
        if self.algorithm == "EdDSA":
            self._ed = ed25519.Ed25519PrivateKey.generate()
            self.cose = cbor.encode(dict(EdDSA.from_cryptography_key(self._ed.public_key())))
        else:
            self._ec = ec.generate_private_key(ec.SECP256R1())
            self.cose = cbor.encode(dict(ES256.from_cryptography_key(self._ec.public_key())))

    def credential(self, email: str, directus_id: str, level: str) -> passkeys.Credential:
        """The trust file's view of this credential, for an approver at a level."""
        return passkeys.Credential(
            email, directus_id, level, self.rp_id, self.origin, self.aaguid, self.credential_id, self.cose
        )

    def assert_(
        self,
        message: bytes,
        *,
        flags: int = UP | UV,
        rp_id: str | None = None,
        origin: str | None = None,
        kind: str = "webauthn.get",
        challenge: bytes | None = None,
    ) -> passkeys.Assertion:
        """An assertion over a statement's signed bytes (its challenge is their SHA-256), as
        navigator.credentials.get returns it; the keywords make one field wrong.
        """
        self.counter += 1
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        auth = rp_hash + bytes([flags]) + self.counter.to_bytes(4, "big")
        client = json.dumps(
            {
                "type": kind,
                "challenge": passkeys.b64url(challenge or passkeys.challenge(message)),
                "origin": origin or self.origin,
                "crossOrigin": False,
            },
            separators=(",", ":"),
        ).encode()
        return self.sign(auth, client)

    def sign(self, auth: bytes, client: bytes) -> passkeys.Assertion:
        """An assertion of these authenticator data and client data bytes, whatever they hold,
        with a signature that verifies.
        """
        signed = auth + hashlib.sha256(client).digest()
        if self.algorithm == "EdDSA":
            signature = self._ed.sign(signed)
        else:
            signature = self._ec.sign(signed, ec.ECDSA(hashes.SHA256()))
        return passkeys.Assertion(self.credential_id, auth, client, signature)
