"""The release's settings and lists, without a database: ONEROOF_LOCK_TIMEOUT's bounds, the path
options a session makes absolute, the privileges a rollout or a rollback needs, in the order the
refusal names them, and what the release log records. Each case was a mutant of executor/release.py
that the mutation check did not kill or did not reach (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import cast

import pytest

from oneroof.core import ledger, package
from oneroof.core.package import Package, Relations
from oneroof.executor import release
from oneroof.harness.errors import UsageError


@pytest.mark.parametrize(
    ("given", "seconds"), [("", 10.0), ("  ", 10.0), ("0.5", 0.5), (" 2.5 ", 2.5), ("3600", 3600.0)]
)
def test_a_lock_timeout_above_0_and_up_to_an_hour_is_taken(
    monkeypatch: pytest.MonkeyPatch, given: str, seconds: float
) -> None:
    monkeypatch.setenv(release.LOCK_TIMEOUT_ENV, given)
    assert release.lock_timeout() == seconds


def test_no_lock_timeout_set_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(release.LOCK_TIMEOUT_ENV, raising=False)
    assert release.lock_timeout() == release.RELEASE_LOCK_TIMEOUT == 10.0


@pytest.mark.parametrize("given", ["abc", "0", "-0.5", "-1", "3600.5", "nan", "inf", "-inf"])
def test_a_lock_timeout_that_is_no_number_of_seconds_is_refused(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv(release.LOCK_TIMEOUT_ENV, given)
    with pytest.raises(UsageError, match="is not a number of seconds above 0 and up to 3600"):
        release.lock_timeout()


def here(path: str) -> str:
    return os.path.join(os.getcwd(), path)


@pytest.mark.parametrize(
    ("extra", "argv"),
    [
        (("--junitxml", "gate.xml"), ["--junitxml", here("gate.xml")]),
        (("--junitxml", "gate.xml", "-q"), ["--junitxml", here("gate.xml"), "-q"]),
        (("-q", "--basetemp", "tmp", "-x"), ["-q", "--basetemp", here("tmp"), "-x"]),
        (("--log-file=run.log", "-k", "x"), [f"--log-file={here('run.log')}", "-k", "x"]),
        (("-q", "--junit-xml"), ["-q", "--junit-xml"]),  # no value: pytest says so itself
        (("--junitxml",), ["--junitxml"]),
        (("-k", "gate.xml", "/abs.xml"), ["-k", "gate.xml", "/abs.xml"]),
    ],
    ids=["last", "then-another", "between", "equals", "no-value", "alone", "not-a-path-option"],
)
def test_a_session_reads_the_path_options_where_the_caller_meant(extra: tuple[str, ...], argv: list[str]) -> None:
    assert release.absolute_paths(extra) == argv


class _Sql:
    """A package whose deploy and revert read and write what the test says (as package.load reads)."""

    def __init__(self, deploy: Relations, revert: Relations) -> None:
        self.deploy, self.revert = deploy, revert

    def relations(self, kind: str) -> Relations:
        return self.deploy if kind == "deploy" else self.revert


def test_a_rollout_needs_what_the_deploy_writes_and_a_rollback_what_the_revert_writes() -> None:
    pkg = package.load()
    rollout = release.required_privileges(pkg, "rollout")
    rollback = release.required_privileges(pkg, "rollback")
    assert ("INSERT", "directus_access", None) in rollout and ("DELETE", "directus_access", None) not in rollout
    assert ("DELETE", "directus_access", None) in rollback and ("INSERT", "directus_access", None) not in rollback
    # the rollout's re-check locks the approvals' rows; the rollback locks no row
    locked = {("UPDATE", table, release.ANY_COLUMN) for table in release.ROW_LOCKED}
    assert locked <= set(rollout) and not locked & set(rollback)


def test_the_privileges_of_a_table_are_named_in_order() -> None:
    """By table; on one table by privilege, then column (the table's own first), its LOCK last."""
    columns = ("a", "b", "c", "d", "e", "f", "g", "h")
    deploy = Relations(
        frozenset({"os_proposals"}),
        frozenset({("DELETE", "os_proposals", None), *(("UPDATE", "os_proposals", c) for c in reversed(columns))}),
    )
    need = release.required_privileges(cast(Package, _Sql(deploy, Relations())), "rollout")
    assert [p for p in need if p[1] == "os_proposals"] == [
        ("DELETE", "os_proposals", None),
        ("SELECT", "os_proposals", None),
        ("UPDATE", "os_proposals", release.ANY_COLUMN),
        *(("UPDATE", "os_proposals", c) for c in columns),
        (release.LOCK_PRIVILEGE, "os_proposals", None),
    ]
    tables = [p[1] for p in need]
    assert tables == sorted(tables)


def test_a_snapshot_option_is_refused_before_any_session() -> None:
    with pytest.raises(UsageError, match=r"^--snapshot-update is refused in a session the executor runs"):
        release.run_stage("dbname=nowhere", "gate", extra=("-q", "--snapshot-update", "--snapshot-details"))


def test_the_release_log_records_what_a_commit_wrote(tmp_path: Path) -> None:
    """After a commit, the operator's release log keeps the ledger's new head and the statements
    spent; a run that wrote no ledger row records nothing.
    """
    log = ledger.ReleaseLog(tmp_path / "release-log.jsonl")
    release.record(log, release.Outcome("already-finalized", "directus", "f" * 64, "entry"))
    release.record(None, release.Outcome("applied", "directus", "f" * 64, "entry", ledger_head="0" * 64))
    assert log.records() == []
    applied = release.Outcome(
        "applied", "directus", "f" * 64, "entry", ledger_head="a" * 64, nonces=("n1",), system_identifier="7"
    )
    release.record(log, applied)
    release.record(log, dataclasses.replace(applied, action="reverted", ledger_head="b" * 64, nonces=()))
    assert [(r["action"], r["head"], r["nonces"], r["database"], r["system_identifier"]) for r in log.records()] == [
        ("deploy", "a" * 64, ["n1"], "directus", "7"),
        ("revert", "b" * 64, [], "directus", "7"),
    ]
