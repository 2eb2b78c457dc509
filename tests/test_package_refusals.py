"""Packages refused before the database is touched, without a database: a manifest that is missing,
over the size limit, not UTF-8, or that lacks or mistypes a setting, a tier file that is not UTF-8,
a seal signature that cannot be read or is not a signature; and, from the complete run, the size
limit to the byte, the refusals' exact messages, names that leave the package, extra directories
and snapshots, a gate that asks for more, and a loaded package that cannot be changed. Each was a
mutant of core/package.py that the mutation check did not kill (bench/mutation.py,
docs/results/mutation.md).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tomllib
from pathlib import Path

import pglast
import pytest

from oneroof.core import package, signatures
from oneroof.harness.errors import IntegrityError, UsageError


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


@pytest.mark.parametrize(
    ("table", "key", "value", "wanted"),
    [
        ("gate", "min_approvals", "one", "gate.min_approvals (a whole number, at least 1)"),
        ("gate", "min_approvals", "2", "gate.min_approvals (a whole number, at least 1)"),  # int("2") would read it
        ("gate", "min_approvals", True, "gate.min_approvals (a whole number, at least 1)"),  # a bool is an int
        ("package", "proposal", 7, "package.proposal (a string)"),  # str(7) would read it
        ("package", "name", False, "package.name (a string)"),
        ("package", "version", ["1"], "package.version (a string)"),
    ],
)
def test_a_setting_that_is_not_of_its_type_is_refused_naming_the_type(
    copy: Path, table: str, key: str, value: object, wanted: str
) -> None:
    manifest = rewritten(copy, table, key, value)
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message == f"{manifest} lacks or mistypes {wanted}: see rollout/manifest.toml"


# What follows kills the survivors of the complete run of core/package.py (issue 18,
# docs/results/mutation.md "The fourth pass"); none needs a database.

MIB = 1024 * 1024  # the documented limit, not package.MAX_PACKAGE_BYTES: a changed limit must fail here
BACKSLASH_REFUSED = (
    "; PostgreSQL reads it differently when standard_conforming_strings is off, so package files "
    "may hold a backslash only in comments and $$-quoted strings"
)


@pytest.mark.parametrize(
    ("literal", "shown"),
    [
        ("E'\\x41'", "E'\\x41'"),  # the whole literal, its closing quote and nothing after it
        ("'" + "a" * 10 + "\\" + "b" * 40 + "'", "'" + "a" * 10 + "\\" + "b" * 28),  # its first 40 bytes
    ],
)
def test_a_backslash_refusal_shows_the_literal_that_holds_it(copy: Path, literal: str, shown: str) -> None:
    tier = copy / "tier4_axes.deploy.sql"
    lines = tier.read_text().count("\n")
    tier.write_text(tier.read_text() + f"\nSELECT {literal};\n")
    package.seal(copy)
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    where = f"tier4_axes.deploy.sql: line {lines + 2}"
    assert refused.value.message == f"{where} has a backslash in {shown!r}" + BACKSLASH_REFUSED


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("VACUUM;", "is Vacuum; package files may only INSERT"),
        ("SELECT set_config('a.b', 'c', false), pg_sleep(0);", "calls pg_sleep(), which reaches outside"),
    ],
)
def test_a_refused_statement_is_named_by_its_number_and_first_call(copy: Path, statement: str, refusal: str) -> None:
    tier = copy / "tier4_axes.deploy.sql"
    count = len(list(pglast.split(tier.read_text())))
    tier.write_text(tier.read_text() + "\n" + statement + "\n")
    package.seal(copy)
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message.startswith(f"tier4_axes.deploy.sql: statement {count + 1} {refusal}")


def _listed_bytes(copy: Path) -> int:
    """The bytes of every file a bundle's manifest lists, the manifest included."""
    return sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())


def _pad_to(copy: Path, total: int) -> None:
    """Pad a snapshot of the bundle and seal it, so that the listed files hold `total` bytes."""
    snapshot = copy / "snapshots" / "test_baseline.ambr"
    snapshot.write_bytes(snapshot.read_bytes() + b"#" * (total - _listed_bytes(copy)))
    package.seal(copy)  # the hashes in the manifest change, not its size
    assert _listed_bytes(copy) == total


def _over_the_limit(copy: Path, mib: str) -> str:
    return (
        f"the package in {copy} is {mib} MiB, over the limit of 1 MiB: a release package is reviewed "
        "by people; split it"
    )


@pytest.mark.parametrize(
    ("total", "mib"),
    [
        (MIB, None),
        (MIB + 1, "1.0"),
        (1101004, "1.0"),  # 1.0499997 MiB
        (1101005, "1.1"),  # 1.0500002 MiB
    ],
)
def test_the_size_limit_counts_the_snapshots_to_the_byte(copy: Path, total: int, mib: str | None) -> None:
    _pad_to(copy, total)
    if mib is None:
        assert package.load(copy).snapshots
        return
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message == _over_the_limit(copy, mib)


@pytest.mark.parametrize("missing", ["tier4_axes.revert.sql", "snapshots/test_greenfield.ambr"])
@pytest.mark.parametrize("over", [0, 1])
def test_a_missing_file_counts_no_byte_toward_the_limit(copy: Path, missing: str, over: int) -> None:
    _pad_to(copy, MIB + over + (copy / missing).stat().st_size)
    (copy / missing).unlink()
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    if over:
        assert refused.value.message == _over_the_limit(copy, "1.0")
    else:
        assert refused.value.message.startswith(f"{missing} is listed in the manifest but missing from ")


def test_a_manifest_of_exactly_the_limit_is_read(copy: Path) -> None:
    manifest = copy / package.MANIFEST
    manifest.write_bytes(manifest.read_bytes() + b"#" * (MIB - manifest.stat().st_size))
    with pytest.raises(IntegrityError, match=r"^manifest\.toml is not in canonical form "):
        package.load(copy)


@pytest.mark.parametrize("where", ["nowhere", "site-packages/rollout"])
def test_a_missing_package_directory_is_bad_input_with_a_hint_when_installed(tmp_path: Path, where: str) -> None:
    missing = tmp_path / where
    hint = " (oneroof runs from its checkout: install it with `pip install -e .`)" if "site" in where else ""
    with pytest.raises(UsageError) as refused:
        package.load(missing)
    assert refused.value.message == f"package directory {missing} does not exist: pass --package DIR{hint}"


def test_a_package_may_ask_for_more_approvals_from_fewer_levels(copy: Path) -> None:
    manifest = copy / package.MANIFEST
    text = manifest.read_text().replace("min_approvals = 1\n", "min_approvals = 2\n")
    manifest.write_text(text.replace('levels = ["L2", "L4"]\n', 'levels = ["L4"]\n'))
    loaded = package.load(copy)
    assert (loaded.min_approvals, loaded.levels) == (2, ("L4",))


def test_a_gate_without_its_optional_settings_requires_neither_signatures_nor_verification(copy: Path) -> None:
    manifest = copy / package.MANIFEST
    manifest.write_text(manifest.read_text().replace("require_signatures = true\n", "", 1))
    loaded = package.load(copy)
    assert (loaded.require_signatures, loaded.require_user_verification) == (False, False)


def test_a_sealer_key_that_is_no_fingerprint_is_refused(copy: Path) -> None:
    manifest = copy / package.MANIFEST
    manifest.write_text(manifest.read_text().replace('\nversion = "', '\nsealer_key = "my key"\nversion = "', 1))
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    mistyped = "package.sealer_key (an SSH key fingerprint, SHA256:...)"
    assert refused.value.message == f"{manifest} lacks or mistypes {mistyped}: see rollout/manifest.toml"


@pytest.mark.parametrize("name", ["x/../tier4_axes.revert.sql", "ABSOLUTE"])
def test_a_file_name_with_dots_or_absolute_is_refused_even_inside(copy: Path, name: str) -> None:
    name = str(copy / "tier4_axes.revert.sql") if name == "ABSOLUTE" else name
    manifest = copy / package.MANIFEST
    manifest.write_text(manifest.read_text().replace('"tier4_axes.revert.sql"', json.dumps(name), 1))
    with pytest.raises(IntegrityError) as refused:
        package.load(copy)
    assert refused.value.message.startswith(f"{name!r} in the manifest is outside the package directory ")


def test_an_extra_directory_is_refused(copy: Path) -> None:
    (copy / "notes").mkdir()
    with pytest.raises(IntegrityError, match=r"^notes is in .* but not in the manifest"):
        package.load(copy)


def test_of_two_extra_files_the_first_is_named(copy: Path) -> None:
    (copy / "z.sql").write_text("SELECT 1;\n")
    (copy / "a.sql").write_text("SELECT 1;\n")
    with pytest.raises(IntegrityError, match=r"^a\.sql is in .* but not in the manifest"):
        package.load(copy)


def test_in_the_checkout_layout_an_extra_snapshot_beside_the_package_is_refused(copy: Path) -> None:
    beside = copy.parent / "snapshots"
    (copy / "snapshots").rename(beside)
    assert package.load(copy).snapshots  # the checkout's layout: the snapshots beside the package
    (beside / "test_gate.ambr").write_text("# serializer version: 1\n")
    with pytest.raises(IntegrityError, match=r"^snapshots/test_gate\.ambr is in .* but not in the manifest"):
        package.load(copy)


def test_a_package_without_snapshots_anywhere_loads(copy: Path) -> None:
    shutil.rmtree(copy / "snapshots")
    package.seal(copy)
    assert not (copy.parent / "snapshots").exists() and package.load(copy).snapshots == ()


def test_a_loaded_package_cannot_be_changed(copy: Path) -> None:
    """What was verified is what is applied: no part of a loaded package can be swapped afterwards."""
    loaded = package.load(copy)
    tier = loaded.tiers[0]
    for part, attribute in ((loaded, "sha256"), (tier, "deploy"), (tier.deploy_relations, "writes")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, attribute, getattr(part, attribute))


def test_loading_a_package_again_parses_no_file_again(copy: Path) -> None:
    package.load(copy)
    before = package._analysed.cache_info()
    package.load(copy)
    after = package._analysed.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 10  # 5 tiers, deploy and revert


def test_an_update_writes_each_column_it_sets() -> None:
    found = package.parsed_relations(tuple(pglast.parse_sql("UPDATE t SET a = 1, b = 2 WHERE c = 3;")))
    assert found.writes == {("UPDATE", "t", "a"), ("UPDATE", "t", "b")}
