"""Reading rehearsal evidence and what it binds: a file that cannot be read or is not JSON, the
first missing key or step named, the evidence named only by $ONEROOF_REHEARSAL, an absent table
among those digested, another package's rehearsal named. Each was a mutant of core/evidence.py
that the mutation check did not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from oneroof.core import evidence, package
from oneroof.harness.db import connect
from oneroof.harness.errors import UsageError

PKG = package.load()


def test_a_file_that_cannot_be_read_is_bad_input_naming_why(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--rehearsal \S+missing\.json: No such file or directory \(give the "):
        evidence.load(tmp_path / "missing.json")


@pytest.mark.parametrize("raw", [b"not JSON", b"[" * 100_000], ids=["not JSON", "nested too deep"])
def test_a_file_that_is_not_json_is_bad_input(tmp_path: Path, raw: bytes) -> None:
    file = tmp_path / "evidence.json"
    file.write_bytes(raw)
    with pytest.raises(UsageError, match=r": not the evidence of a rehearsal \(it is not JSON\): "):
        evidence.load(file)


def test_the_first_missing_key_and_step_are_named() -> None:
    assert evidence.shape_problem({}) == "it has no 'steps'"
    read = evidence.from_evidence({"steps": [], "package": {"sha256": PKG.sha256}})
    assert not read.go and read.why_not == f"it has no step {evidence.REQUIRED_STEPS[0]}"


def test_the_environment_names_evidence_only_when_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(evidence.ENV, raising=False)
    assert evidence.from_flag(None) is None
    monkeypatch.setenv(evidence.ENV, str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match=rf"^{evidence.ENV} "):
        evidence.from_flag(None)


def test_every_absent_table_is_digested_as_absent(admin: Any) -> None:
    with admin.transaction():
        found = evidence.digests(admin, ("oneroof_absent_a", "oneroof_absent_b"))
    assert found == {"oneroof_absent_a": "absent", "oneroof_absent_b": "absent"}


def test_another_package_s_rehearsal_names_both_hashes(admin: Any) -> None:
    other = evidence.Rehearsal("e.json", "0" * 64, True, "", "ab" * 32, "production snapshot", "d", None, "", "")
    found = evidence.problem(admin, other, PKG, None)
    assert found is not None
    assert found.startswith(f"the rehearsal was of package abababababab, not this package {PKG.sha256[:12]}: ")


def test_the_first_wrong_value_is_named_quoted_to_30_characters() -> None:
    long = "x" * 40
    assert evidence.shape_problem({"steps": long, "package": {}}) == f'steps is "{"x" * 29}, not a list'
    assert evidence.shape_problem({"steps": [], "package": {"sha256": 1}}) == "package.sha256 is 1, not a string"


def test_when_the_snapshot_was_taken_and_the_rehearsal_started_are_read() -> None:
    data = {
        "steps": [],
        "package": {"sha256": PKG.sha256},
        "golden_provenance": {"taken_at": "2026-12-01T00:00:00Z"},
        "started_at": "2026-12-02T00:00:00Z",
    }
    read = evidence.from_evidence(data)
    assert (read.taken_at, read.started_at) == ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z")


def test_the_caller_s_session_settings_are_restored(admin: Any) -> None:
    with admin.transaction():
        admin.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
        evidence.digests(admin, ("oneroof_absent_a",))
        assert admin.execute("SELECT current_setting('TimeZone') AS v").fetchone() == {"v": "Asia/Tokyo"}


def test_a_digest_does_not_depend_on_the_session_s_settings(clone: Any) -> None:
    """os_proposals has timestamps: they print by TimeZone and DateStyle unless the digest pins them."""
    with connect(clone.dsn) as conn:
        found = {}
        for zone, style in (("UTC", "ISO, YMD"), ("Asia/Tokyo", "SQL, DMY")):
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL TimeZone = {}").format(sql.Literal(zone)))
                conn.execute(sql.SQL("SET LOCAL DateStyle = {}").format(sql.Literal(style)))
                found[zone] = evidence.digests(conn, ("os_proposals",))
    assert found["UTC"] == found["Asia/Tokyo"] and found["UTC"]["os_proposals"] != "absent"
