"""The expected figures are bound to the package: the snapshots are in its hash, the sessions the
executor runs refuse every option that writes them or relaxes the comparison, and fail on a
snapshot that is unused or changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from oneroof.core import package
from oneroof.executor import release
from oneroof.fixtures.plugin import RELEASE_SESSION, SNAPSHOT_OPTIONS
from oneroof.harness import catalog, clones
from oneroof.harness.errors import HashMismatch, UsageError
from tests.support.processes import INVARIANTS, suite_args
from tests.support.testing import signers

PKG = package.load()
EXTRA_ENTRY = "# name: test_metric_matches_baseline[retired]\n  dict({\n    'retired': 0,\n  })\n# ---\n"
OPTION_VALUES = {
    "--snapshot-default-extension": "syrupy.extensions.json.JSONSnapshotExtension",
    "--snapshot-ignore-file-extensions": "ambr",
    "--snapshot-dirname": "elsewhere",
}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path


def bind(conn: psycopg.Connection[Any], sha: str) -> None:
    """Make the clone's proposal name `sha` and record a signed L4 approval of it (as a re-sealed,
    re-ratified package would have).
    """
    conn.execute("UPDATE os_proposals SET package_sha256 = %s WHERE code = %s", (sha, catalog.PROPOSAL_CODE))
    signers().approve(conn, "l4", sha=sha)


@pytest.mark.parametrize("flag", [flag for _, flag, _ in SNAPSHOT_OPTIONS])
def test_executor_sessions_refuse_every_snapshot_writing_option(
    pytester: pytest.Pytester, clone: clones.Clone, flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside pytest: however the option arrives (here on the command line; an ini file or
    PYTEST_ADDOPTS reach the same place), a session the executor runs stops with a usage error.
    """
    monkeypatch.setenv(RELEASE_SESSION, "1")
    args = [flag] + ([OPTION_VALUES[flag]] if flag in OPTION_VALUES else [])
    before = {p.name: p.read_bytes() for p in (package.snapshots_dir(package.DEFAULT_DIR)).iterdir()}
    result = pytester.runpytest_subprocess(*suite_args(clone.dsn, "-m", "baseline", *args, expect_db=clone.name))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*oneroof: {flag} is refused in a session the executor runs*"])
    assert {p.name: p.read_bytes() for p in (package.snapshots_dir(package.DEFAULT_DIR)).iterdir()} == before


def test_run_stage_refuses_snapshot_options_before_starting_pytest(clone: clones.Clone) -> None:
    with pytest.raises(UsageError, match="--snapshot-update is refused"):
        release.run_stage(clone.dsn, "baseline", expect_db=clone.name, extra=("--snapshot-update",))


def test_a_gate_session_with_an_unused_snapshot_fails(copy: Path, clone: clones.Clone, clone_conn: Any) -> None:
    """A package re-sealed with a snapshot no test uses (a retired figure): the hash holds, the
    proposal and the approval name it, and the gate session still fails.
    """

    def gate_session() -> int:
        """Seal the copy as it is, ratify it on the clone, and run the gate session on that package."""
        sealed = package.seal(copy)
        bind(clone_conn, sealed)
        return release.run_stage(
            clone.dsn,
            "gate or baseline",
            expect_db=clone.name,
            package_dir=copy,
            expect_sha256=sealed,
            extra=release.GATE_SESSION,
            allowed_signers=signers().trust.path,
        )

    assert gate_session() == 0  # the control
    with (copy / "snapshots" / "test_baseline.ambr").open("a") as snapshot_file:
        snapshot_file.write(EXTRA_ENTRY)
    assert gate_session() == 1


def test_a_session_with_a_changed_snapshot_is_refused(copy: Path, clone: clones.Clone) -> None:
    """A snapshot edited without re-sealing: the package no longer verifies, so the session stops
    before a single figure is compared (pytest's usage error).
    """
    target = copy / "snapshots" / "test_greenfield.ambr"
    target.write_text(target.read_text().replace("'gap': 210", "'gap': 209"))
    assert (
        release.run_stage(clone.dsn, "greenfield", expect_db=clone.name, package_dir=copy)
        == pytest.ExitCode.USAGE_ERROR
    )


def test_a_snapshot_written_during_an_executor_session_fails_it(
    pytester: pytest.Pytester, copy: Path, clone: clones.Clone, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = pytester.makepyfile(
        test_writer=f"""
        def test_rewrites_a_snapshot():
            with open({str(copy / "snapshots" / "test_baseline.ambr")!r}, "a") as f:
                f.write("# tampered\\n")
    """
    )
    monkeypatch.setenv(RELEASE_SESSION, "1")
    result = pytester.runpytest_subprocess(
        *suite_args(
            clone.dsn, "--package", str(copy), paths=(INVARIANTS / "test_baseline.py", writer), expect_db=clone.name
        )
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*oneroof: the package's snapshots changed during the session (test_baseline.ambr)*"])


def test_an_auditors_snapshot_update_cannot_feed_a_rollout(
    pytester: pytest.Pytester, copy: Path, clone: clones.Clone, clone_conn: Any
) -> None:
    """The issue's attack: --snapshot-update on a drifted clone rewrote the baseline, and a rollout
    then passed its gate session. Now the rewritten figures are another package: refused.
    """
    clone_conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")
    result = pytester.runpytest_subprocess(
        *suite_args(clone.dsn, "--package", str(copy), "-m", "baseline", "--snapshot-update", expect_db=clone.name)
    )
    assert result.ret == 0 and "'inventory': 34" in (copy / "snapshots" / "test_baseline.ambr").read_text()
    with pytest.raises(HashMismatch, match="snapshots/test_baseline.ambr"):
        package.load(copy, PKG.sha256)
