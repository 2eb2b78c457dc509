"""Signed approval statements: canonical JSON signed with OpenSSH signatures (SSHSIG), checked
against an allowed-signers file that never comes from the target database.

The crypto is OpenSSH's own: `ssh-keygen -Y sign` makes signatures and `ssh-keygen -Y verify` is
the verifier of record, the same command an auditor runs offline. It handles every key type
OpenSSH does, hardware `sk-` keys and keys held in ssh-agent included. This module only builds
and parses the texts around it, strictly: one statement has exactly one accepted spelling, so
any changed byte of a statement or of its signature is refused.

A bundle, as stored in Directus and written by `oneroof approve --out`, is the statement (one
line of canonical JSON) followed by the armored signature of that line (newline included):

    head -n 1 approval.txt > statement.json
    tail -n +2 approval.txt > statement.json.sig
    ssh-keygen -Y verify -f allowed_signers -I EMAIL -n oneroof-approval@v1 -s statement.json.sig < statement.json
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneroof.core import passkeys, settings
from oneroof.harness.errors import OneroofError, UsageError

NAMESPACE = "oneroof-approval@v1"  # ssh-keygen -n: a signature made for anything else never verifies here
PACKAGE_NAMESPACE = "oneroof-package@v1"  # the sealer's signature of a manifest
STATEMENT_TYPE = "oneroof-approval/v2"
# v1 named the database by its name only: a copy made under that name after a rename matched it
OLD_STATEMENT_TYPES = ("oneroof-approval/v1",)
ENV = settings.ALLOWED_SIGNERS.env
PIN_ENV = settings.ALLOWED_SIGNERS_SHA256.env
MAX_VALIDITY = dt.timedelta(days=30)  # a statement may not be valid for longer
CLOCK_SKEW = dt.timedelta(minutes=5)  # how far in the future issued_at may be
ARMOR_BEGIN, ARMOR_END, ARMOR_WIDTH = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----", 70
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
OID = re.compile(r"^[1-9][0-9]{0,9}$")
FINGERPRINT = re.compile(r"\b(SHA256:[A-Za-z0-9+/]{43})\b")
TIMEOUT = 60.0
# FIDO keys (OpenSSH's sk- keys): their signatures carry the authenticator's flags
SK_TYPES = ("sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
SK_USER_VERIFIED = 0x04  # the UV flag: the authenticator verified its user (PIN or biometric)
VERIFY_REQUIRED = "verify-required"  # the trust file's option: this FIDO key counts only with UV
POLICY = "require_user_verification"
KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-)")  # an allowed-signers line's key type; its options never start so


class BadStatement(Exception):
    """A statement or signature that cannot be accepted; the message is the gate's reason."""


class SigningFailed(OneroofError):
    """ssh-keygen could not sign (a wrong key file, a locked agent, a missing hardware key)."""


def utc(moment: dt.datetime) -> str:
    """RFC 3339 in UTC to the second, the one spelling statements use."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any, what: str) -> dt.datetime:
    """`text` as a UTC time (2026-01-31T12:00:00Z exactly); BadStatement naming `what` otherwise."""
    if not isinstance(text, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", text):
        raise BadStatement(f"its statement's {what} is not a UTC time like 2026-01-31T12:00:00Z")
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise BadStatement(f"its statement's {what} is not a valid time") from exc


@dataclass(frozen=True)
class Statement:
    """What an approver signs: this package, this proposal, this level, this target, until then."""

    package_sha256: str
    proposal: str
    approver_id: str
    approver_email: str
    level: str
    database: str
    database_oid: str  # pg_database.oid: a copy made under the database's name is another database
    system_identifier: str
    issued_at: str
    expires_at: str
    nonce: str
    rehearsal_sha256: str | None = None  # the rehearsal evidence the approver reviewed (off a clone)

    @classmethod
    def new(
        cls,
        *,
        package_sha256: str,
        proposal: str,
        approver_id: str,
        approver_email: str,
        level: str,
        database: str,
        database_oid: str,
        system_identifier: str,
        valid_for: dt.timedelta,
        now: dt.datetime | None = None,
        rehearsal_sha256: str | None = None,
    ) -> Statement:
        """A new statement with a fresh nonce, issued at `now` (default: this moment) and valid for `valid_for`."""
        issued = now or dt.datetime.now(dt.UTC)
        return cls(
            package_sha256,
            proposal,
            approver_id,
            approver_email,
            level,
            database,
            database_oid,
            system_identifier,
            utc(issued),
            utc(issued + valid_for),
            secrets.token_hex(16),
            rehearsal_sha256,
        )

    def as_dict(self) -> dict[str, Any]:
        """The statement as the JSON document that is signed (its canonical spelling); the
        rehearsal evidence only when it names one.
        """
        evidence = {} if self.rehearsal_sha256 is None else {"rehearsal_sha256": self.rehearsal_sha256}
        return {
            **evidence,
            "type": STATEMENT_TYPE,
            "package_sha256": self.package_sha256,
            "proposal": self.proposal,
            "approver": {"id": self.approver_id, "email": self.approver_email},
            "level": self.level,
            "target": {
                "database": self.database,
                "database_oid": self.database_oid,
                "system_identifier": self.system_identifier,
            },
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "nonce": self.nonce,
        }

    def message(self) -> bytes:
        """The signed bytes: canonical JSON (sorted keys, no spaces, ASCII) and a newline."""
        return (json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()

    @property
    def issued(self) -> dt.datetime:
        """When the approver signed, as a UTC time."""
        return parse_time(self.issued_at, "issued_at")

    @property
    def expires(self) -> dt.datetime:
        """When the statement stops counting, as a UTC time."""
        return parse_time(self.expires_at, "expires_at")

    @classmethod
    def parse(cls, message: bytes) -> Statement:
        """The statement in `message`; BadStatement unless it is exactly the canonical spelling."""
        try:
            data = json.loads(message.decode("ascii"))
            if isinstance(data, dict) and data.get("type") in OLD_STATEMENT_TYPES:
                raise BadStatement(
                    f"its statement is of the old format {data['type']}, which names the database but not its "
                    "identity (its OID): the approver signs a new one with `oneroof approve`"
                )
            statement = cls(
                data["package_sha256"],
                data["proposal"],
                data["approver"]["id"],
                data["approver"]["email"],
                data["level"],
                data["target"]["database"],
                data["target"]["database_oid"],
                data["target"]["system_identifier"],
                data["issued_at"],
                data["expires_at"],
                data["nonce"],
                data.get("rehearsal_sha256"),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadStatement("its statement is not a oneroof approval statement") from exc
        fields = {k: v for k, v in vars(statement).items() if not (k == "rehearsal_sha256" and v is None)}
        if data.get("type") != STATEMENT_TYPE or not all(isinstance(v, str) for v in fields.values()):
            raise BadStatement(f"its statement is not of type {STATEMENT_TYPE}")
        if statement.message() != message:
            raise BadStatement("its statement is not in canonical form (keys, order or spacing changed)")
        statement.issued, statement.expires  # noqa: B018 - both must parse
        if not OID.match(statement.database_oid):
            raise BadStatement("its statement's target database_oid is not a database OID")
        if statement.rehearsal_sha256 is not None and not SHA256_HEX.match(statement.rehearsal_sha256):
            raise BadStatement("its statement's rehearsal_sha256 is not a SHA-256")
        return statement


def armor(raw: bytes) -> str:
    """ssh-keygen's armor of a binary signature: 70 base64 characters a line."""
    text = binascii.b2a_base64(raw, newline=False).decode()
    lines = [text[i : i + ARMOR_WIDTH] for i in range(0, len(text), ARMOR_WIDTH)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def check_armor(signature: str) -> str:
    """`signature` if it is exactly ssh-keygen's armor of some bytes, else BadStatement (so no
    changed padding bit or line break slips through base64's leniency).
    """
    lines = signature.rstrip("\n").split("\n")
    if not signature.isascii() or len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise BadStatement("its signature is not an armored SSH signature")
    try:
        raw = binascii.a2b_base64("".join(lines[1:-1]).encode(), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise BadStatement("its signature is not valid base64") from exc
    if armor(raw) != signature:
        raise BadStatement("its signature is not in ssh-keygen's armored form")
    return signature


def bundle(statement: Statement, signature: str) -> str:
    """The text stored beside an approval: the statement line, then its armored signature."""
    return statement.message().decode() + check_armor(signature)


def parse_bundle(text: str) -> tuple[bytes, str]:
    """(signed message, armored signature) of a bundle; BadStatement when it is not one."""
    first, sep, rest = text.partition("\n")
    if not sep or not first.startswith("{") or not first.isascii():
        raise BadStatement("its statement is not a oneroof approval statement")
    return (first + "\n").encode(), check_armor(rest)


def statement_of(text: str) -> Statement:
    """The statement of a stored approval text, SSH-signed or with a passkey assertion, read
    without verifying anything; BadStatement when it is neither kind of bundle.
    """
    try:
        message = passkeys.parse_bundle(text)[0] if passkeys.is_bundle(text) else parse_bundle(text)[0]
    except passkeys.Refused as exc:
        raise BadStatement(str(exc)) from exc
    return Statement.parse(message)


# -- the trust root -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustRoot:
    """An allowed-signers file (ssh-keygen's format: `EMAIL [options] KEYTYPE KEY`), read once."""

    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        """SHA-256 of the allowed-signers file's bytes, as recorded beside what it judged."""
        return hashlib.sha256(self.data).hexdigest()

    @classmethod
    def load(cls, path: str | Path, what: str = "--allowed-signers", expect_sha256: str | None = None) -> TrustRoot:
        """The allowed-signers file at `path`; UsageError naming `what` if it cannot be read, is not
        ASCII, could be replaced by someone else (see `replaceable_by_others`) or differs from
        `expect_sha256`.
        """
        file = Path(path).expanduser()
        try:
            # O_NONBLOCK: a FIFO put in its place is refused below instead of hanging the open
            with os.fdopen(os.open(file, os.O_RDONLY | os.O_NONBLOCK), "rb") as opened:
                unsafe = replaceable_by_others(file, os.fstat(opened.fileno()))
                data = b"" if unsafe else opened.read()
            data.decode("ascii")
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise UsageError(
                f"{what} {file}: cannot read it ({type(exc).__name__}); pass the allowed-signers "
                "file from the reviewed repository"
            ) from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{what} {file} is not an allowed-signers file (not ASCII text)") from exc
        if unsafe:
            raise UsageError(
                f"{what} {file}: {unsafe}, so someone else could put their own keys in its place; make it "
                "and every directory above it owned by you or root and writable by its owner only (chmod go-w)"
            )
        wrong = principal_problem(data)
        if wrong:
            raise UsageError(f"{what} {file} {wrong}")
        trust = cls(file.resolve(), data)
        if expect_sha256 is not None and trust.sha256 != expect_sha256:
            raise UsageError(
                f"{what} {file}: sha256 {trust.sha256} is not the pinned {expect_sha256} "
                f"(--allowed-signers-sha256 or {PIN_ENV}): this is not the reviewed trust root; stop and find out who "
                "changed it"
            )
        return trust


def replaceable_by_others(file: Path, opened: os.stat_result) -> str | None:
    """Why someone but the user and root could replace the trust file, or None: OpenSSH's
    StrictModes rule. The file (as opened) and every directory above it, up to /, both along the
    path as given and along the path its links resolve to, must be owned by the user or root and
    writable by nobody else. A directory writable by others passes only with the sticky bit (as
    /tmp): there, others may add names but not rename or remove the user's.
    """
    owners = {0, os.geteuid()}
    if not stat.S_ISREG(opened.st_mode):
        return "it is not a regular file"
    if opened.st_uid not in owners or opened.st_mode & 0o022:
        return f"it is {_owner_and_mode(opened)}"
    given = Path(os.path.abspath(file))
    for directory in dict.fromkeys([*given.parents, *file.resolve().parents]):
        found = directory.stat()
        if found.st_uid not in owners or (found.st_mode & 0o022 and not found.st_mode & stat.S_ISVTX):
            return f"the directory {directory} is {_owner_and_mode(found)}"
    return None


def _owner_and_mode(found: os.stat_result) -> str:
    writable = (
        "world-writable"
        if found.st_mode & 0o002
        else "group-writable"
        if found.st_mode & 0o020
        else "not writable by others"
    )
    return f"owned by uid {found.st_uid} and {writable} (mode {stat.S_IMODE(found.st_mode):04o})"


def principal_problem(data: bytes) -> str | None:
    """Why the principals of an allowed-signers file are not each one plain email, or None.

    ssh-keygen reads the principals field as a comma list of patterns, so `*`, `*@gov.example`
    or `a@x,b@y` would let one key approve as anyone, or as several approvers at any level.
    Each line must name exactly one approver; the first line that does not is named.
    """
    for number, line in enumerate(data.decode("ascii").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        principal = text.split(None, 1)[0]
        if not EMAIL.match(principal):
            return (
                f"line {number}: principal {principal!r} is not one plain email (patterns such as * or ?, "
                "comma lists and quotes let one key approve as others): list each approver's email on a "
                "line of its own"
            )
    return None


def check_pin(value: str) -> str:
    """`value` if it is a SHA-256 (64 lower-case hex digits), else UsageError."""
    if SHA256_HEX.match(value):
        return value
    raise UsageError(
        f"--allowed-signers-sha256 {value!r} is not a SHA-256 (64 hex digits): pin the reviewed "
        "allowed-signers file's hash, as `sha256sum FILE` prints it"
    )


def trust_root(flag: str | None, pin: str | None = None) -> TrustRoot | None:
    """The trust root named by --allowed-signers, else by $ONEROOF_ALLOWED_SIGNERS, else none;
    pinned to --allowed-signers-sha256, else $ONEROOF_ALLOWED_SIGNERS_SHA256, when either is set.
    """
    pin = pin or os.environ.get(PIN_ENV) or None
    expected = check_pin(pin) if pin is not None else None
    if flag:
        return TrustRoot.load(flag, expect_sha256=expected)
    if os.environ.get(ENV):
        return TrustRoot.load(os.environ[ENV], ENV, expected)
    if expected is not None:
        raise UsageError(
            "--allowed-signers-sha256 pins an allowed-signers file, but none is given: pass --allowed-signers FILE"
        )
    return None


# -- ssh-keygen ---------------------------------------------------------------------------------


def _ssh_keygen(args: list[str], stdin: bytes, *, agent: bool = False) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("ssh-keygen")
    if binary is None:
        raise UsageError("ssh-keygen is not on PATH: install the OpenSSH client (it signs and verifies approvals)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
    if agent and os.environ.get("SSH_AUTH_SOCK"):
        env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    try:
        return subprocess.run([binary, *args], input=stdin, capture_output=True, env=env, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SigningFailed(
            f"ssh-keygen {args[0]} {args[1]} did not answer within {TIMEOUT:.0f} s "
            "(a hardware key waiting for a touch?)"
        ) from exc


def _fingerprint(output: bytes) -> str:
    found = FINGERPRINT.search(output.decode(errors="replace"))
    if not found:
        raise BadStatement("ssh-keygen did not name the signing key")
    return found.group(1)


def sign(message: bytes, key: str | Path, namespace: str = NAMESPACE) -> str:
    """Sign `message` with ssh-keygen: `key` is a private key file, or the public key of a key
    held in ssh-agent (hardware sk- keys ask for a touch). Returns the armored signature.
    """
    path = Path(key).expanduser()
    if not path.is_file():
        raise UsageError(f"--key {path}: no such key file (a private key, or the .pub of a key in ssh-agent)")
    proc = _ssh_keygen(["-Y", "sign", "-n", namespace, "-f", str(path)], message, agent=True)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SigningFailed(f"ssh-keygen could not sign with {path}: {detail[-1] if detail else 'no reason given'}")
    return check_armor(proc.stdout.decode())


def one_off_key(directory: Path, comment: str) -> Path:
    """A new ed25519 key without passphrase in `directory` (for a rehearsal); its private key path."""
    key = directory / "one-off-key"
    proc = _ssh_keygen(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], b"")
    if proc.returncode != 0:
        raise SigningFailed(f"ssh-keygen could not make a one-off key: {proc.stderr.decode(errors='replace').strip()}")
    return key


def key_fingerprint(key: str | Path) -> str:
    """The SHA256 fingerprint of a key file (private or public), as `ssh-keygen -l` prints it."""
    proc = _ssh_keygen(["-l", "-f", str(Path(key).expanduser())], b"")
    if proc.returncode != 0:
        raise UsageError(f"{key} is not an SSH key file ssh-keygen can read")
    return _fingerprint(proc.stdout)


def signer(message: bytes, signature: str, namespace: str = NAMESPACE) -> str:
    """The fingerprint of the key that made `signature` over `message`, whoever it belongs to
    (`ssh-keygen -Y check-novalidate`); BadStatement when the signature is not valid for it.
    """
    with tempfile.TemporaryDirectory(prefix="oneroof-sig-") as tmp:
        sig = Path(tmp) / "statement.sig"
        sig.write_text(check_armor(signature))
        proc = _ssh_keygen(["-Y", "check-novalidate", "-n", namespace, "-s", str(sig)], message)
    if proc.returncode != 0:
        raise BadStatement("its signature is not valid for its statement (a changed byte, or another namespace)")
    return _fingerprint(proc.stdout)


def verify(message: bytes, signature: str, trust: TrustRoot, principal: str, namespace: str = NAMESPACE) -> str:
    """Verify with `ssh-keygen -Y verify` that a key the allowed signers list for `principal`
    signed `message`; the key's fingerprint, else BadStatement saying which check failed.
    """
    if not EMAIL.match(principal):
        raise BadStatement(f"approver email {principal!r} is not a plain address to look up in the allowed signers")
    with tempfile.TemporaryDirectory(prefix="oneroof-sig-") as tmp:
        allowed, sig = Path(tmp) / "allowed_signers", Path(tmp) / "statement.sig"
        allowed.write_bytes(ssh_keygen_lines(trust.data))
        sig.write_text(check_armor(signature))
        proc = _ssh_keygen(
            ["-Y", "verify", "-f", str(allowed), "-I", principal, "-n", namespace, "-s", str(sig)], message
        )
    if proc.returncode == 0:
        return _fingerprint(proc.stdout)
    fingerprint = signer(message, signature, namespace)  # raises when the signature itself is bad
    raise BadStatement(
        f"signed by key {fingerprint}, which the allowed signers ({trust.sha256[:12]}) do not list for {principal}"
    )


def principals(signature: str, trust: TrustRoot) -> list[str]:
    """The principals the allowed signers list for the key that made `signature` (any namespace):
    `ssh-keygen -Y find-principals`.
    """
    with tempfile.TemporaryDirectory(prefix="oneroof-sig-") as tmp:
        allowed, sig = Path(tmp) / "allowed_signers", Path(tmp) / "manifest.sig"
        allowed.write_bytes(ssh_keygen_lines(trust.data))
        sig.write_text(check_armor(signature))
        proc = _ssh_keygen(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed)], b"")
    if proc.returncode != 0:
        return []
    return [p.strip() for p in proc.stdout.decode(errors="replace").splitlines() if p.strip()]


# -- user verification (FIDO keys) ---------------------------------------------------------------


def _fields(data: bytes, count: int) -> list[bytes]:
    """The first `count` SSH strings (uint32 length, bytes) of `data`, then the rest; ValueError if short."""
    found = []
    for _ in range(count):
        size = int.from_bytes(data[:4], "big")
        if len(data) < 4 + size:
            raise ValueError("truncated")
        found.append(data[4 : 4 + size])
        data = data[4 + size :]
    return [*found, data]


def signed_by(signature: str) -> tuple[str, bytes, int | None]:
    """(key type, public key blob, authenticator flags) of an armored SSHSIG signature; the flags
    only for a FIDO (sk-) key, whose signature carries them after the signature bytes.
    """
    raw = binascii.a2b_base64("".join(check_armor(signature).rstrip("\n").split("\n")[1:-1]))
    try:
        if raw[:6] != b"SSHSIG":
            raise ValueError("no SSHSIG magic")
        key, _namespace, _reserved, _hash, sig, _ = _fields(raw[10:], 5)
        key_type = _fields(key, 1)[0].decode("ascii")
        sig_type, _bytes, tail = _fields(sig, 2)
        if key_type not in SK_TYPES:
            return key_type, key, None
        if sig_type.decode("ascii") != key_type or len(tail) != 5:
            raise ValueError("not an sk- signature")
        return key_type, key, tail[0]
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadStatement("its signature is not an SSHSIG signature") from exc


def _options(text: str) -> tuple[list[str], str]:
    """The comma-separated options at the start of `text` (quotes kept) and what follows them."""
    options: list[str] = []
    current, quoted = "", False
    for at, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return [*options, current], text[at:].strip()
        elif char == "," and not quoted:
            options, current = [*options, current], ""
            continue
        current += char
    return [*options, current], ""


def trust_lines(data: bytes) -> list[tuple[str, list[str], str, str]]:
    """The SSH lines of a trust file: (principal, options, key type, base64 key) each."""
    found = []
    for line in passkeys.ssh_lines(data).decode("ascii").splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].startswith("#"):
            continue
        options, rest = ([], words[1]) if KEY_TYPE.match(words[1]) else _options(words[1])
        key = rest.split()
        if len(key) >= 2:
            found.append((words[0], options, key[0], key[1]))
    return found


def ssh_keygen_lines(data: bytes) -> bytes:
    """The trust file as ssh-keygen reads allowed signers: without its passkey lines, and without
    the verify-required option, which OpenSSH knows in authorized_keys but not in allowed signers
    (oneroof checks it itself: `user_verification_problem`).
    """
    kept = []
    for line in passkeys.ssh_lines(data).decode("ascii").splitlines(keepends=True):
        words = line.strip().split(None, 1)
        if len(words) == 2 and not words[0].startswith("#") and not KEY_TYPE.match(words[1]):
            options, rest = _options(words[1])
            left = [o for o in options if o.lower() != VERIFY_REQUIRED]
            line = " ".join([words[0], *([",".join(left)] if left else []), rest]) + "\n"
        kept.append(line)
    return "".join(kept).encode("ascii")


def user_verification_problem(signature: str, trust: TrustRoot, principal: str, required: bool) -> str | None:
    """Why an SSH signature that verified does not show a user-verified authenticator, when the
    trust file's line says verify-required or the policy (`required`) asks for one; else None.
    """
    key_type, key, flags = signed_by(signature)
    listed = binascii.b2a_base64(key, newline=False).decode()
    marked = any(
        VERIFY_REQUIRED in [o.lower() for o in options]
        for who, options, _type, blob in trust_lines(trust.data)
        if who == principal and blob == listed
    )
    if flags is not None and marked and not flags & SK_USER_VERIFIED:
        return (
            f"signed with FIDO key ({key_type}) without user verification (its signature's UV flag is not set), "
            f"but the trust file lists it with {VERIFY_REQUIRED}: sign again with a key that asks for its PIN "
            "(made with ssh-keygen -O verify-required)"
        )
    if not required:
        return None
    if flags is None:
        return (
            f"signed with a plain key file ({key_type}), but user verification is required ({POLICY}): "
            f"sign with a passkey or a FIDO key listed with {VERIFY_REQUIRED}"
        )
    if not marked:
        return (
            f"signed with FIDO key ({key_type}) that the trust file does not list with {VERIFY_REQUIRED}, but user "
            f"verification is required ({POLICY}): a reviewer adds {VERIFY_REQUIRED} to its line once the key asks "
            "for a PIN (ssh-keygen -O verify-required)"
        )
    return None


def _passkey_check(text: str, trust: TrustRoot, approver_id: str, email: str, level: str) -> tuple[Statement, str]:
    """The statement of a passkey bundle and "passkey:ID", once its assertion verifies against the
    trust file's passkey lines (passkeys.verify); BadStatement with passkeys' reason otherwise.
    """
    try:
        message, assertion = passkeys.parse_bundle(text)
        statement = Statement.parse(message)
        return statement, passkeys.verify(
            message, assertion, trust.data, approver_id=approver_id, email=email, level=level
        )
    except passkeys.Refused as exc:
        raise BadStatement(str(exc)) from exc


def check(
    statement_text: str,
    trust: TrustRoot,
    *,
    approver_id: str,
    approver_email: str,
    level: str,
    package_sha256: str,
    proposal: str,
    database: str,
    database_oid: str | None,
    system_identifier: str | None,
    now: dt.datetime | None,
    rehearsal_sha256: str | None = None,
    require_user_verification: bool = False,
) -> tuple[Statement, str]:
    """Every check of one stored statement, in order, each with its own reason (BadStatement):
    its form, its signature by a key the allowed signers list for the approver's email (or its
    passkey assertion by a credential the trust file lists for the approver and level), then
    what it names (approver, package, proposal, level, target: the database by name and OID, the
    cluster by system_identifier) and when it is valid (at `now`;
    None leaves the clock out, for an auditor's listing of past approvals). `rehearsal_sha256` is
    the evidence the rollout is bound to (None: not compared, as on a clone); a statement that
    names evidence counts only with that evidence. `require_user_verification` (the policy) counts
    an SSH signature only by a FIDO key the trust file lists with verify-required, made with UV
    (a passkey assertion is always user-verified).
    Returns the statement and the signing key's fingerprint.
    """
    if passkeys.is_bundle(statement_text):  # a passkey assertion rather than an SSH signature (core/passkeys.py)
        statement, fingerprint = _passkey_check(statement_text, trust, approver_id, approver_email, level)
    else:
        message, signature = parse_bundle(statement_text)
        statement = Statement.parse(message)
        fingerprint = verify(message, signature, trust, approver_email)
        unverified = user_verification_problem(signature, trust, approver_email, require_user_verification)
        if unverified:
            raise BadStatement(unverified)
    if statement.approver_id != approver_id or statement.approver_email != approver_email:
        raise BadStatement(
            f"its statement is signed for approver {statement.approver_email}, not this row's {approver_email}"
        )
    if statement.package_sha256 != package_sha256:
        raise BadStatement(f"its statement approves package {statement.package_sha256[:12]}, not {package_sha256[:12]}")
    if statement.proposal != proposal:
        raise BadStatement(f"its statement approves proposal {statement.proposal}, not {proposal}")
    if statement.level != level:
        raise BadStatement(f"its statement is signed at level {statement.level}, not {level}")
    if statement.database != database:
        raise BadStatement(f"its statement is signed for database {statement.database!r}, not {database!r}")
    if statement.database_oid != database_oid:
        raise BadStatement(
            f"its statement is signed for another database identity: {statement.database!r} with OID "
            f"{statement.database_oid}, not this {database!r} with OID {database_oid or '(unknown)'} (a renamed, "
            "copied or re-created database is another database): the approver signs for this one"
        )
    if system_identifier is None:
        raise BadStatement(
            "the cluster's system_identifier cannot be read (pg_control_system() is not granted "
            "to this role): grant it EXECUTE on pg_control_system() or the pg_monitor role"
        )
    if statement.system_identifier != system_identifier:
        raise BadStatement(
            f"its statement is signed for cluster {statement.system_identifier}, not this cluster {system_identifier}"
        )
    if rehearsal_sha256 is not None and statement.rehearsal_sha256 not in (None, rehearsal_sha256):
        raise BadStatement(
            f"its statement approves after reviewing rehearsal evidence {statement.rehearsal_sha256[:12]}, "
            f"not the evidence given, {rehearsal_sha256[:12]}: roll out with the evidence the approver reviewed"
        )
    if statement.expires - statement.issued > MAX_VALIDITY or statement.expires <= statement.issued:
        raise BadStatement(f"its statement's validity is not between 0 and {MAX_VALIDITY.days} days")
    if now is None:
        return statement, fingerprint
    if statement.issued > now + CLOCK_SKEW:
        raise BadStatement(f"its statement is issued in the future ({statement.issued_at})")
    if statement.expires <= now:
        raise BadStatement(f"its statement expired at {statement.expires_at}")
    return statement, fingerprint
