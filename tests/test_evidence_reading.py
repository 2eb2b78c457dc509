"""Reading rehearsal evidence and what it binds: a file that cannot be read or is not JSON, the
first missing key or step named, the evidence named only by $ONEROOF_REHEARSAL, an absent table
among those digested, another package's rehearsal named. Each was a mutant of core/evidence.py
that the mutation check did not kill (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oneroof.core import evidence, package
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
