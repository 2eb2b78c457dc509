"""A FIDO SSH key (OpenSSH's sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com)
in software, for the user-verification policy's tests: no hardware key is needed to make the
signatures a hardware key makes.

What a security key signs (OpenSSH's ssh-ed25519-sk.c) is Ed25519 over
SHA-256(application) || flags (1 byte) || counter (uint32) || SHA-256(SSHSIG signed data); the
SSHSIG signature field is string(key type) string(signature) byte(flags) uint32(counter), and the
public key blob is string(key type) string(32-byte key) string(application). The ECDSA kind
signs the same bytes with ECDSA P-256/SHA-256, its signature string(mpint r) string(mpint s) and
its key string(type) string("nistp256") string(point) string(application) (ssh-ecdsa-sk.c).
The real `ssh-keygen -Y verify` checks what this makes.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from oneroof.core import signatures

KEY_TYPE = "sk-ssh-ed25519@openssh.com"
ECDSA_TYPE = "sk-ecdsa-sha2-nistp256@openssh.com"
APPLICATION = b"ssh:"
UP, UV = 0x01, 0x04  # the authenticator's flags: user present, user verified


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")  # a leading zero byte keeps it positive
    return _string(raw)


class SoftFidoKey:
    """A FIDO key (ed25519 or ECDSA P-256) whose signatures carry the flags a test asks for."""

    def __init__(self, kind: str = KEY_TYPE) -> None:
        self.kind = kind
        self.ed25519 = Ed25519PrivateKey.generate() if kind == KEY_TYPE else None
        self.ecdsa = ec.generate_private_key(ec.SECP256R1()) if kind == ECDSA_TYPE else None
        if self.ed25519 is not None:
            raw = self.ed25519.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.public = _string(kind.encode()) + _string(raw) + _string(APPLICATION)
        else:
            assert self.ecdsa is not None
            point = self.ecdsa.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            self.public = _string(kind.encode()) + _string(b"nistp256") + _string(point) + _string(APPLICATION)
        self.counter = 0

    def _raw(self, data: bytes) -> bytes:
        if self.ed25519 is not None:
            return self.ed25519.sign(data)
        assert self.ecdsa is not None
        r, s = decode_dss_signature(self.ecdsa.sign(data, ec.ECDSA(hashes.SHA256())))
        return _mpint(r) + _mpint(s)

    def line(self, email: str, options: str = "verify-required") -> str:
        """Its allowed-signers line for `email`, with `options` (none when empty)."""
        return " ".join([email, *([options] if options else []), self.kind, base64.b64encode(self.public).decode()])

    def sign(self, message: bytes, flags: int = UP | UV, namespace: str = signatures.NAMESPACE) -> str:
        """The armored SSHSIG signature of `message`, as `ssh-keygen -Y sign` makes it with this key."""
        self.counter += 1
        digest = hashlib.sha512(message).digest()
        header = _string(namespace.encode()) + _string(b"") + _string(b"sha512")
        signed = b"SSHSIG" + header + _string(digest)
        tail = bytes([flags]) + struct.pack(">I", self.counter)
        raw = self._raw(hashlib.sha256(APPLICATION).digest() + tail + hashlib.sha256(signed).digest())
        blob = b"SSHSIG" + struct.pack(">I", 1) + _string(self.public) + header
        return signatures.armor(blob + _string(_string(self.kind.encode()) + _string(raw) + tail))
