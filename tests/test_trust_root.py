"""Which allowed-signers file the gate reads, and the files it refuses: --allowed-signers or
$ONEROOF_ALLOWED_SIGNERS, pinned by --allowed-signers-sha256 or $ONEROOF_ALLOWED_SIGNERS_SHA256,
and a file it cannot use named in one line, before any database is read. No database: these run
in the mutation check of core/signatures.py (bench/mutation.py), where the command-line tests of
tests/test_operator_side.py and tests/test_signatures.py are too slow to run per mutant.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from oneroof.core import signatures
from oneroof.harness.errors import UsageError

LINE = "approver@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwUmH0WNi3i9mKJm4CzA2NYcSQOfmFlx/KhYTannSam\n"


@pytest.fixture
def trust_file(tmp_path: Path) -> Path:
    """An allowed-signers file of one approver, in a directory only its owner may change."""
    folder = tmp_path / "trust"
    folder.mkdir(mode=0o700)
    file = folder / "allowed_signers"
    file.write_text(LINE)
    file.chmod(0o600)
    return file


def test_the_environment_names_and_pins_the_file(trust_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = signatures.TrustRoot.load(trust_file).sha256
    monkeypatch.delenv(signatures.ENV, raising=False)
    monkeypatch.setenv(signatures.PIN_ENV, sha)
    with pytest.raises(UsageError, match="pins an allowed-signers file, but none is given"):
        signatures.trust_root(None)
    monkeypatch.setenv(signatures.ENV, str(trust_file))
    assert signatures.trust_root(None) == signatures.TrustRoot.load(trust_file)
    monkeypatch.setenv(signatures.PIN_ENV, "0" * 64)
    with pytest.raises(UsageError, match=f"sha256 {sha} is not the pinned {'0' * 64}"):
        signatures.trust_root(None)
    with pytest.raises(UsageError, match=f"is not the pinned {'0' * 64}"):
        signatures.trust_root(str(trust_file))  # the flag's file, the environment's pin
    assert signatures.trust_root(str(trust_file), pin=sha) == signatures.TrustRoot.load(trust_file)


def test_no_file_and_no_pin_is_no_trust_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(signatures.ENV, raising=False)
    monkeypatch.delenv(signatures.PIN_ENV, raising=False)
    assert signatures.trust_root(None) is None


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("missing", "cannot read it (FileNotFoundError); pass the allowed-signers file from the reviewed"),
        ("a directory", "cannot read it (IsADirectoryError)"),
        ("not ASCII", "is not an allowed-signers file (not ASCII text)"),
    ],
)
def test_a_file_it_cannot_use_is_one_line_naming_it(trust_file: Path, damage: str, words: str) -> None:
    if damage == "missing":
        trust_file.unlink()
    elif damage == "a directory":
        trust_file.unlink()
        trust_file.mkdir(mode=0o700)
    else:
        trust_file.write_bytes(LINE.replace("approver", "appr\u00f6ver").encode())
    with pytest.raises(UsageError) as refused:
        signatures.TrustRoot.load(trust_file, what="$ONEROOF_ALLOWED_SIGNERS")
    assert refused.value.message.startswith(f"$ONEROOF_ALLOWED_SIGNERS {trust_file}")
    assert words in refused.value.message and "\n" not in refused.value.message


def unreadable(trust_file: Path) -> Path:
    """A file this process may not open for reading: the trust file made mode 0000, or, for root
    (whom file modes do not stop), a write-only sysctl, which the kernel refuses to read to root too.
    """
    trust_file.chmod(0)
    file = trust_file if os.geteuid() != 0 else Path("/proc/sys/vm/drop_caches")
    try:
        os.close(os.open(file, os.O_RDONLY | os.O_NONBLOCK))
    except PermissionError:
        return file
    pytest.skip(f"{file} can be read here: no file this process may not read")


def test_a_file_it_may_not_read_is_one_line_naming_it(trust_file: Path) -> None:
    file = unreadable(trust_file)
    with pytest.raises(UsageError) as refused:
        signatures.TrustRoot.load(file, what="$ONEROOF_ALLOWED_SIGNERS")
    assert refused.value.message == (
        f"$ONEROOF_ALLOWED_SIGNERS {file}: cannot read it (PermissionError); pass the allowed-signers file "
        "from the reviewed repository"
    )


@pytest.mark.parametrize("pin", ["0" * 64, "ab" * 32])
def test_a_sha256_pin_is_taken_as_it_is(pin: str) -> None:
    assert signatures.check_pin(pin) == pin


def test_a_file_owned_by_another_user_is_named_as_such(trust_file: Path) -> None:
    """The owner rule on the file as opened (its stat, here made up): root or the user only."""

    def opened(uid: int, mode: int = 0o644) -> os.stat_result:
        return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, 0, len(LINE), 0, 0, 0))

    assert signatures.replaceable_by_others(trust_file, opened(0)) is None
    assert signatures.replaceable_by_others(trust_file, opened(os.geteuid())) is None
    assert signatures.replaceable_by_others(trust_file, opened(os.geteuid(), 0o755)) is None  # executable: no matter
    assert signatures.replaceable_by_others(trust_file, opened(os.geteuid(), 0o664)) == (
        f"it is owned by uid {os.geteuid()} and group-writable (mode 0664)"
    )
    other = 1 if os.geteuid() != 1 else 2
    said = signatures.replaceable_by_others(trust_file, opened(other))
    assert said == f"it is owned by uid {other} and not writable by others (mode 0644)"
    said = signatures.replaceable_by_others(trust_file, opened(other, 0o755))
    assert said == f"it is owned by uid {other} and not writable by others (mode 0755)"


def test_root_s_file_counts_whoever_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of root's in root's / is safe for any user (run as root, root and the user are one)."""
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    root_s = os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, len(LINE), 0, 0, 0))
    assert signatures.replaceable_by_others(Path("/allowed_signers"), root_s) is None
