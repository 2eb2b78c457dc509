"""A FIDO SSH key (OpenSSH's sk-ssh-ed25519@openssh.com) in software, for the user-verification
policy's tests: no hardware key is needed to make the signatures a hardware key makes.

What a security key signs (OpenSSH's ssh-ed25519-sk.c) is Ed25519 over
SHA-256(application) || flags (1 byte) || counter (uint32) || SHA-256(SSHSIG signed data); the
SSHSIG signature field is string(key type) string(signature) byte(flags) uint32(counter), and the
public key blob is string(key type) string(32-byte key) string(application). The real
`ssh-keygen -Y verify` checks what this makes.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oneroof.core import signatures

KEY_TYPE = "sk-ssh-ed25519@openssh.com"
APPLICATION = b"ssh:"
UP, UV = 0x01, 0x04  # the authenticator's flags: user present, user verified


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class SoftFidoKey:
    """An sk-ssh-ed25519 key whose signatures carry the flags a test asks for."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = _string(KEY_TYPE.encode()) + _string(raw) + _string(APPLICATION)
        self.counter = 0

    def line(self, email: str, options: str = "verify-required") -> str:
        """Its allowed-signers line for `email`, with `options` (none when empty)."""
        return " ".join([email, *([options] if options else []), KEY_TYPE, base64.b64encode(self.public).decode()])

    def sign(self, message: bytes, flags: int = UP | UV, namespace: str = signatures.NAMESPACE) -> str:
        """The armored SSHSIG signature of `message`, as `ssh-keygen -Y sign` makes it with this key."""
        self.counter += 1
        digest = hashlib.sha512(message).digest()
        header = _string(namespace.encode()) + _string(b"") + _string(b"sha512")
        signed = b"SSHSIG" + header + _string(digest)
        tail = bytes([flags]) + struct.pack(">I", self.counter)
        raw = self.key.sign(hashlib.sha256(APPLICATION).digest() + tail + hashlib.sha256(signed).digest())
        blob = b"SSHSIG" + struct.pack(">I", 1) + _string(self.public) + header
        return signatures.armor(blob + _string(_string(KEY_TYPE.encode()) + _string(raw) + tail))
