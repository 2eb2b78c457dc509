"""Packages refused before the database is touched, without a database: a manifest that is missing,
over the size limit, not UTF-8, or that lacks or mistypes a setting, a tier file that is not UTF-8,
a seal signature that cannot be read or is not a signature. Each was a mutant of core/package.py that the mutation
check did not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from oneroof.core import package, signatures
from oneroof.harness.errors import IntegrityError


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the repository's package to damage."""
    return package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path


def test_a_manifest_over_the_limit_is_refused_before_it_is_read(copy: Path) -> None:
    manifest = copy / package.MANIFEST
    manifest.write_bytes(manifest.read_bytes() + b"#" * package.MAX_PACKAGE_BYTES)
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message == f"{manifest} is over the package limit of 1 MiB"


def test_a_manifest_that_lacks_a_setting_names_it(copy: Path) -> None:
    manifest = copy / package.MANIFEST
    manifest.write_text(manifest.read_text().replace("min_approvals = 1\n", ""))
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message == f"{manifest} lacks or mistypes 'min_approvals': see rollout/manifest.toml"


def test_a_tier_file_that_is_not_utf8_is_refused_naming_it(copy: Path) -> None:
    tier = copy / "tier5_label_rules.deploy.sql"
    tier.write_bytes(tier.read_bytes() + b"-- \xff\n")
    package.seal(copy)  # its hash is the manifest's: only the encoding is wrong
    with pytest.raises(IntegrityError, match=r"^tier5_label_rules\.deploy\.sql is not UTF-8 text$"):
        package.load(copy)


def test_a_backslash_is_refused_naming_its_line(copy: Path) -> None:
    tier = copy / "tier4_axes.deploy.sql"
    lines = tier.read_text().count("\n")
    tier.write_text(tier.read_text() + "\nSELECT E'\\x41';\n")
    package.seal(copy)
    with pytest.raises(IntegrityError, match=rf"^tier4_axes\.deploy\.sql: line {lines + 2} has a backslash in "):
        package.load(copy)


@pytest.fixture
def sealed(copy: Path) -> Path:
    """The copy, sealed with a key of its own: the manifest names it, manifest.toml.sig is there."""
    package.seal(copy, signatures.one_off_key(copy.parent, "sealer"))
    package.load(copy)
    return copy


@pytest.mark.parametrize("damage", ["not ASCII", "a directory"])
def test_a_seal_signature_that_cannot_be_read_is_refused(sealed: Path, damage: str) -> None:
    seal = sealed / package.SEAL_SIGNATURE
    if damage == "not ASCII":
        seal.write_bytes(seal.read_bytes().replace(b"\n", b"\xe9\n", 1))
    else:
        seal.unlink()
        seal.mkdir()
    with pytest.raises(IntegrityError) as refused:
        package.load(sealed)
    assert refused.value.message == f"manifest.toml.sig in {sealed} is not an SSH signature"


def test_a_seal_signature_that_is_not_one_says_so(sealed: Path) -> None:
    (sealed / package.SEAL_SIGNATURE).write_text("not a signature\n", encoding="ascii")
    with pytest.raises(IntegrityError, match=r"^manifest\.toml\.sig: its signature is not an armored SSH signature$"):
        package.load(sealed)


def test_a_package_directory_without_its_manifest_says_so(tmp_path: Path) -> None:
    """FileNotFoundError reading the manifest: a refusal naming it, not a traceback."""
    with pytest.raises(IntegrityError) as refused:
        package.load(tmp_path)
    assert refused.value.message == f"{tmp_path / package.MANIFEST} is missing: a package directory needs its manifest"


def test_a_manifest_that_is_not_utf8_is_refused_as_not_toml(copy: Path) -> None:
    """UnicodeDecodeError, before TOML is parsed: the same refusal as a TOML syntax error."""
    manifest = copy / package.MANIFEST
    manifest.write_bytes(manifest.read_bytes() + b"# \xff\n")
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message.startswith(f"{manifest} is not valid TOML: 'utf-8' codec can't decode byte 0xff")


def rewritten(copy: Path, table: str, key: str, value: object) -> Path:
    """The copy's manifest, in canonical form, with `table.key` set to `value`."""
    manifest = copy / package.MANIFEST
    settings = tomllib.loads(manifest.read_text())
    settings[table][key] = value
    manifest.write_bytes(package.canonical(settings))
    return manifest


def test_a_setting_of_the_wrong_type_names_it(copy: Path) -> None:
    """TypeError: require_signatures is a boolean, not the string "yes"."""
    manifest = rewritten(copy, "gate", "require_signatures", "yes")
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message == (
        f"{manifest} lacks or mistypes gate.require_signatures (true or false): see rollout/manifest.toml"
    )


def test_a_number_that_is_not_one_is_refused(copy: Path) -> None:
    """ValueError: min_approvals = "one" is a string that int() cannot read."""
    manifest = rewritten(copy, "gate", "min_approvals", "one")
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message == (
        f"{manifest} lacks or mistypes invalid literal for int() with base 10: 'one': see rollout/manifest.toml"
    )
