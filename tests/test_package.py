"""The release package: its hash, and every changed, missing or extra byte refused before the
database is touched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from oneroof.core import package
from oneroof.harness import clones
from oneroof.harness.errors import HashMismatch, IntegrityError, UsageError

# The checkout's layout: the release package in rollout/, its expected figures in the top-level snapshots/.
FILES = sorted(
    [p.relative_to(package.DEFAULT_DIR).as_posix() for p in package.DEFAULT_DIR.rglob("*") if p.is_file()]
    + [f"snapshots/{p.name}" for p in package.snapshots_dir(package.DEFAULT_DIR).iterdir()]
)
PINNED = package.load().sha256


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the repository's package to damage."""
    return package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path


def test_hash_is_the_sha256_of_the_manifest_bytes() -> None:
    assert PINNED == package.sha256((package.DEFAULT_DIR / "manifest.toml").read_bytes())


def test_package_lists_tiers_two_to_six_with_deploy_and_revert() -> None:
    pkg = package.load(expect_sha256=PINNED)
    assert [(t.number, t.name) for t in pkg.tiers] == [
        (2, "access"),
        (3, "ownership"),
        (4, "axes"),
        (5, "label_rules"),
        (6, "lifecycle"),
    ]
    assert (pkg.min_approvals, pkg.levels) == (1, ("L2", "L4"))
    assert set(FILES) == (
        {"manifest.toml"} | {t.deploy_file for t in pkg.tiers} | {t.revert_file for t in pkg.tiers} | set(pkg.snapshots)
    )
    assert pkg.snapshots == (
        "snapshots/test_baseline.ambr",
        "snapshots/test_finalized.ambr",
        "snapshots/test_greenfield.ambr",
    )


def test_changed_snapshot_is_refused_naming_both_hashes(copy: Path) -> None:
    """The expected figures are in the package hash: a rewritten snapshot is a different package."""
    target = copy / "snapshots" / "test_baseline.ambr"
    expected = package.sha256(target.read_bytes())
    target.write_text(target.read_text().replace("'ospa': 0", "'ospa': 1"))
    with pytest.raises(HashMismatch) as caught:
        package.load(copy)
    assert caught.value.path == "snapshots/test_baseline.ambr" and caught.value.expected == expected


@pytest.mark.parametrize("damage", ["missing", "extra"])
def test_missing_or_extra_snapshot_is_refused(copy: Path, damage: str) -> None:
    if damage == "missing":
        (copy / "snapshots" / "test_greenfield.ambr").unlink()
        match = "snapshots/test_greenfield.ambr is listed in the manifest but missing"
    else:
        (copy / "snapshots" / "test_gate.ambr").write_text("# serializer version: 1\n")
        match = "snapshots/test_gate.ambr is in .* but not in the manifest"
    with pytest.raises(IntegrityError, match=match):
        package.load(copy)


def test_seal_binds_the_snapshots_present(copy: Path) -> None:
    """After a reviewed --snapshot-update, `seal` records the snapshot files: a new package hash."""
    (copy / "snapshots" / "test_gate.ambr").write_text("# serializer version: 1\n")
    sealed = package.seal(copy)
    pkg = package.load(copy, sealed)
    assert sealed != PINNED and "snapshots/test_gate.ambr" in pkg.snapshots


def test_changed_file_is_refused_naming_both_hashes(copy: Path) -> None:
    target = copy / "tier3_ownership.deploy.sql"
    expected = package.sha256(target.read_bytes())
    target.write_text(target.read_text().replace("'DOT'", "'MOIT'", 1))
    with pytest.raises(HashMismatch) as caught:
        package.load(copy)
    assert caught.value.path == "tier3_ownership.deploy.sql"
    assert caught.value.expected == expected and caught.value.actual == package.sha256(target.read_bytes())
    assert expected in caught.value.message and caught.value.actual in caught.value.message


def test_missing_file_is_refused(copy: Path) -> None:
    (copy / "tier6_lifecycle.revert.sql").unlink()
    with pytest.raises(IntegrityError, match="tier6_lifecycle.revert.sql is listed in the manifest but missing"):
        package.load(copy)


def test_extra_file_is_refused(copy: Path) -> None:
    (copy / "tier7_events.deploy.sql").write_text("UPDATE os_event_bindings SET enabled = true;\n")
    with pytest.raises(IntegrityError, match="tier7_events.deploy.sql is in .* but not in the manifest"):
        package.load(copy)


def test_manifest_comment_change_is_refused(copy: Path) -> None:
    manifest = copy / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("# The One-Roof", "# One-Roof", 1))
    with pytest.raises(IntegrityError, match="not in canonical form"):
        package.load(copy)


def test_pinned_hash_mismatch_is_refused() -> None:
    with pytest.raises(HashMismatch, match="package: sha256"):
        package.load(expect_sha256="0" * 64)


@pytest.mark.parametrize(
    "statement",
    [
        "BEGIN;",
        "COMMIT;",
        "rollback;",
        "SAVEPOINT s1;",
        "START TRANSACTION;",
        "END;",
        "END WORK;",
        "SELECT $$ ; $$; COMMIT;",  # a dollar-quoted string hides nothing from the parser
        "SELECT E'\\''; COMMIT; SELECT '';",  # nor does an escaped quote
        "DO 'BEGIN NULL; END';",
        "CALL release_everything();",
        "CREATE INDEX CONCURRENTLY i ON system_issues (code);",
        "DROP TABLE system_issues;",
        "TRUNCATE os_release_ledger;",
    ],
)
def test_anything_but_data_statements_is_refused_at_verify_time(copy: Path, statement: str) -> None:
    target = copy / "tier4_axes.deploy.sql"
    target.write_text(target.read_text() + "\n" + statement + "\n")
    package.seal(copy)  # the hashes match again: only the parser can refuse it
    with pytest.raises(IntegrityError, match="may only INSERT, UPDATE, DELETE or SELECT"):
        package.load(copy)


def test_sql_that_does_not_parse_is_refused(copy: Path) -> None:
    target = copy / "tier5_label_rules.deploy.sql"
    target.write_text(target.read_text() + "\nSELECT $$unterminated;\n")
    package.seal(copy)
    with pytest.raises(IntegrityError, match="does not parse as PostgreSQL"):
        package.load(copy)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("min_approvals = 1", "min_approvals = 0"),
        ('levels = ["L2", "L4"]', 'levels = ["L2", "L3", "L4"]'),
        ('levels = ["L2", "L4"]', "levels = []"),
    ],
)
def test_a_package_cannot_lower_the_gate(copy: Path, old: str, new: str) -> None:
    manifest = copy / "manifest.toml"
    manifest.write_text(manifest.read_text().replace(old, new))
    with pytest.raises(IntegrityError, match="a package cannot lower that"):
        package.load(copy)


@pytest.mark.parametrize("pin", ["", "0" * 63, "Z" * 64])
def test_a_pin_that_is_not_a_sha256_is_bad_input(pin: str) -> None:
    with pytest.raises(UsageError, match="is not a SHA-256"):
        package.load(expect_sha256=pin)


def test_statement_words_in_comments_and_strings_are_allowed(copy: Path) -> None:
    target = copy / "tier4_axes.deploy.sql"
    target.write_text(target.read_text() + "\n-- never COMMIT here\nSELECT 'BEGIN' AS word;\n")
    package.seal(copy)
    loaded = package.load(copy).tiers[2]
    assert loaded.deploy.endswith("SELECT 'BEGIN' AS word;\n")
    assert loaded.deploy_statements[-1] == "SELECT 'BEGIN' AS word"


def test_seal_restores_a_loadable_package_with_a_new_hash(copy: Path) -> None:
    target = copy / "tier5_label_rules.deploy.sql"
    target.write_text(target.read_text() + "\n")
    new_hash = package.seal(copy)
    assert new_hash != PINNED and package.load(copy, new_hash).sha256 == new_hash


def test_cli_exit_code_4_names_the_file(oneroof: Any, copy: Path) -> None:
    (copy / "tier2_access.revert.sql").write_text("DELETE FROM directus_policies;\n")
    result = oneroof("package", "verify", "--package", str(copy))
    assert result.returncode == 4
    assert "tier2_access.revert.sql" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert oneroof("package", "hash").stdout.strip() == PINNED
    assert oneroof("package", "verify", "--expect-sha256", PINNED).returncode == 0


def test_cli_bundle_ships_a_package_that_verifies(oneroof: Any, clone: clones.Clone, tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    made = oneroof("package", "bundle", str(shipped))
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [str(shipped), PINNED]
    assert sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*") if p.is_file()) == FILES
    assert oneroof("package", "hash", "--package", str(shipped)).stdout.strip() == PINNED
    # A clone of the tests' golden database: the same figures, and no session left on the template.
    verified = oneroof(
        "verify", "--stage", "baseline", "--package", str(shipped), "--dsn", clone.dsn, "--expect-db", clone.name, "-q"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_cli_bundle_refuses_an_existing_directory_and_a_damaged_package(oneroof: Any, copy: Path) -> None:
    again = oneroof("package", "bundle", "--package", str(copy), str(copy))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert oneroof("package", "bundle").returncode == 2  # no DIR
    (copy / "tier2_access.revert.sql").write_text("DELETE FROM directus_policies;\n")
    damaged = oneroof("package", "bundle", "--package", str(copy), str(copy.parent / "shipped"))
    assert damaged.returncode == 4 and "tier2_access.revert.sql" in damaged.stderr
    assert not (copy.parent / "shipped").exists()


@given(data=st.data())
@example(data=None)  # pinned: the first byte of the manifest's header comment
def test_flipping_any_byte_of_any_file_is_refused(data: Any) -> None:
    if data is None:
        name, offset, mask = "manifest.toml", 0, 0x01
    else:
        name = data.draw(st.sampled_from(FILES), label="file")
        size = (
            (package.DEFAULT_DIR.parent / name if name.startswith("snapshots/") else package.DEFAULT_DIR / name)
            .stat()
            .st_size
        )
        offset = data.draw(st.integers(0, size - 1), label="offset")
        mask = data.draw(st.integers(1, 255), label="mask")
    with tempfile.TemporaryDirectory() as tmp:
        copy = package.bundle(package.DEFAULT_DIR, Path(tmp) / "rollout").path
        raw = bytearray((copy / name).read_bytes())
        raw[offset] ^= mask
        (copy / name).write_bytes(bytes(raw))
        with pytest.raises(IntegrityError):
            package.load(copy, expect_sha256=PINNED)


def test_the_one_walk_names_what_each_tier_reads_and_writes() -> None:
    """What the privilege check and the rehearsal binding lean on, as the parser finds it in the real package."""
    pkg = package.load()
    written = {
        2: {"directus_access", "directus_collections", "directus_fields", "directus_permissions", "directus_policies"},
        3: {"os_collection_owners", "os_proposals"},
        4: {"os_collection_axes"},
        5: {"os_label_rules"},
        6: {"os_event_bindings", "os_lifecycle_policies"},
    }
    assert {t.number: set(t.deploy_relations.written) for t in pkg.tiers} == written
    assert {t.number: set(t.revert_relations.written) for t in pkg.tiers} == written
    assert ("UPDATE", "os_proposals", "status") in pkg.relations("deploy").writes
    assert {w[0] for w in pkg.relations("revert").writes} == {"DELETE", "UPDATE"}
    everything = set().union(*written.values())
    assert set(pkg.relations("deploy").reads) == everything | {"directus_roles", "os_collection_inventory"}
    assert set(pkg.relations("revert").reads) == everything | {"os_collection_inventory"}
    assert pkg.tables == everything | {"directus_roles", "os_collection_inventory"}


def test_the_walk_leaves_out_with_queries_and_the_catalog_and_sees_upserts() -> None:
    sql = (
        "WITH w AS (SELECT 1 FROM a) INSERT INTO b (k, v) SELECT 1, 2 FROM w, pg_catalog.pg_class "
        "ON CONFLICT (k) DO UPDATE SET v = 3;\nWITH x AS (SELECT 1) DELETE FROM w WHERE EXISTS (SELECT 1 FROM x);\n"
    )
    found = package.Tier(9, "t", "t.deploy.sql", "t.revert.sql", sql, "SELECT 1;").deploy_relations
    assert found.reads == {"a", "b", "w"}  # w is a WITH query in the first statement, a table in the second
    assert found.writes == {("INSERT", "b", None), ("UPDATE", "b", "v"), ("DELETE", "w", None)}


def test_a_with_query_named_as_the_table_hides_no_write(admin: Any) -> None:
    """PostgreSQL writes the table, not the WITH query of the same name: the walk names the write."""
    sql = "WITH labels AS (SELECT 5 AS a) INSERT INTO labels SELECT a FROM labels"
    admin.execute("CREATE TEMP TABLE labels (a int)")
    try:
        admin.execute(sql)
        assert admin.execute("SELECT a FROM labels").fetchall() == [{"a": 5}]
    finally:
        admin.execute("DROP TABLE labels")
    found = package.Tier(9, "t", "t.deploy.sql", "t.revert.sql", f"{sql};\n", "SELECT 1;").deploy_relations
    assert found.reads == {"labels"}
    assert found.writes == {("INSERT", "labels", None)}
