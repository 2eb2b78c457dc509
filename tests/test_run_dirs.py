"""Rehearsal run directories: every run gets its own, even four started at once, and "the latest
run" is still the newest; a rehearsal server too old for the capture is refused before one is made.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oneroof.executor import rehearse as rehearsal
from oneroof.executor.rehearse import Evidence, latest_run, new_run_dir
from oneroof.harness.db import connect
from oneroof.harness.errors import OneroofError
from tests.support.testing import ROOT, PgServer, signers

OLD_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"  # the PostgreSQL 15 service


@pytest.fixture
def frozen() -> dt.datetime:
    return dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_run_directories_made_at_the_same_instant_are_distinct(tmp_path: Path, frozen: dt.datetime) -> None:
    first, second = new_run_dir(tmp_path / "runs", frozen), new_run_dir(tmp_path / "runs", frozen)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.parent == second.parent == tmp_path / "runs"
    assert first.name.startswith("20250301T120000.000000Z-") and second.name.startswith("20250301T120000.000000Z-")


def test_a_run_directory_is_never_one_that_exists(
    tmp_path: Path, frozen: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same time and the same random suffix as an existing run: a fresh suffix is drawn, and
    the existing directory (and the evidence in it) is left alone.
    """
    drawn = iter(["aaaaaa", "aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(rehearsal, "_run_suffix", lambda: next(drawn))
    first = new_run_dir(tmp_path, frozen)
    (first / "evidence.json").write_text("{}")
    second = new_run_dir(tmp_path, frozen)
    assert first.name.endswith("-aaaaaa") and second.name.endswith("-bbbbbb")
    assert (first / "evidence.json").read_text() == "{}" and list(second.iterdir()) == []


def test_the_latest_run_is_the_newest_with_evidence(tmp_path: Path) -> None:
    """Names sort by time, to the microsecond, including the one-second names of earlier versions."""
    at = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    legacy = tmp_path / "20250301T115959Z"
    made = [legacy] + [new_run_dir(tmp_path, at + dt.timedelta(microseconds=n)) for n in (1, 20, 300)]
    legacy.mkdir()
    for run in made:
        (run / "evidence.json").write_text("{}")
    new_run_dir(tmp_path, at + dt.timedelta(seconds=1))  # newer, but no evidence yet (still running)
    assert latest_run(tmp_path) == made[-1]
    assert latest_run(tmp_path / "none") is None


@pytest.mark.slow  # four whole rehearsals at once: about 110 s on two busy cores
def test_four_rehearsals_started_at_once_keep_four_complete_run_directories(
    test_server: PgServer, tmp_path: Path
) -> None:
    """Four `oneroof rehearse` at once, one --runs-dir: four run directories, each with the
    evidence, reports and JUnit files of the process that printed it, and its own clone.
    """
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ONEROOF_"))}
    env["ONEROOF_HOME"] = str(tmp_path / "home")
    env["ONEROOF_ALLOWED_SIGNERS"] = str(signers().trust.path)
    argv = [sys.executable, "-m", "oneroof.executor", "rehearse", "--dsn", test_server.admin]
    argv += ["--golden", test_server.golden, "--runs-dir", str(runs)]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    printed = [Path(next(ln for ln in out.splitlines() if ln.startswith("evidence ")).split()[1]) for out, _ in outputs]
    assert len(set(printed)) == 4 and [p.parent.parent for p in printed] == [runs] * 4
    assert sorted(runs.iterdir()) == sorted(p.parent for p in printed)
    clones = []
    for file, (_out, err) in zip(printed, outputs, strict=True):
        evidence = Evidence.from_json(json.loads(file.read_text()))
        assert evidence.ok and evidence.clone and evidence.clone in err  # this process's own clone
        clones.append(evidence.clone)
        assert {"report.md", "report.html"} <= {p.name for p in file.parent.iterdir()}
        assert list(file.parent.glob("junit-*.xml"))
    assert len(set(clones)) == 4


def test_a_rehearsal_server_older_than_17_is_refused_before_anything_is_written(
    oneroof: Any, test_server: PgServer, tmp_path: Path
) -> None:
    """`rehearse --from PROD --dsn <PostgreSQL 15>`: exit 2, one line naming the version and the
    fix, no run directory, no snapshot database, no clone.
    """
    try:
        with connect(OLD_SERVER) as conn:
            version = conn.info.server_version
            before = conn.execute("SELECT array_agg(datname ORDER BY datname) AS d FROM pg_database").fetchone()["d"]
    except OneroofError:
        pytest.skip(f"needs the PostgreSQL service at {OLD_SERVER!r} as an old rehearsal server: not reachable")
    if version >= 170000:
        pytest.skip(f"the service at {OLD_SERVER!r} is PostgreSQL {version // 10000}, not older than 17")
    runs = tmp_path / "runs"
    result = oneroof("rehearse", "--from", test_server.admin, "--dsn", OLD_SERVER, "--runs-dir", str(runs))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"runs PostgreSQL {version // 10000}" in lines[0] and "PostgreSQL 17 or later" in lines[0]
    assert "leave out --dsn" in lines[0]  # what to do
    assert result.stdout == "" and not runs.exists()
    with connect(OLD_SERVER) as conn:
        after = conn.execute("SELECT array_agg(datname ORDER BY datname) AS d FROM pg_database").fetchone()["d"]
    # Other workers and runs share this server and make their own oneroof_t_* databases meanwhile;
    # the command would have made a capture (capture_*) and a clone of it, never one of those.
    made = sorted(set(after) - set(before))
    assert not [name for name in made if not name.startswith("oneroof_t_")], made
