"""Where a test run keeps its temporary files and its server's data (tests/support/scratch.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from tests.support import scratch
from tests.support.testing import ROOT, PgServer


def test_a_run_keeps_its_files_and_its_server_s_data_in_memory_when_the_machine_has_room(
    tmp_path: Path, test_server: PgServer, admin: psycopg.Connection[dict[str, Any]]
) -> None:
    chosen = scratch.choose(os.environ.get(scratch.ENV))
    where = Path(tempfile.gettempdir())
    if chosen is None:
        assert not str(where).startswith(str(scratch.CANDIDATE) + "/")
        return
    # one directory of the run's own under the chosen one, for this process and every worker
    assert where.parent == chosen and where.name.startswith("oneroof-run-")
    assert tmp_path.is_relative_to(where)
    if os.environ.get(scratch.ENV) is None:
        assert scratch.on_tmpfs(tmp_path)
    if test_server.embedded:
        data = admin.execute("SHOW data_directory").fetchone()["data_directory"]  # type: ignore[index]
        assert Path(data).is_relative_to(where)


def test_the_scratch_directory_is_a_writable_tmpfs_with_room_or_what_the_setting_names(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    here = tmp_path / "shm"
    here.mkdir()
    mounts.write_text(f"tmpfs {here} tmpfs rw,nosuid,nodev 0 0\n/dev/vda / ext4 rw,relatime 0 0\n")
    assert scratch.choose(None, here, 0, mounts) == here
    assert scratch.choose(None, here, 1 << 60, mounts) is None  # too little room
    assert scratch.choose(None, tmp_path, 0, mounts) is None  # not a tmpfs
    assert scratch.choose(None, here / "absent", 0, mounts) is None
    mounts.write_text(f"/dev/vda {here} ext4 rw 0 0\n")
    assert scratch.choose(None, here, 0, mounts) is None
    # the setting wins: a directory, or empty for the system's default
    assert scratch.choose("/somewhere/else", here, 0, mounts) == Path("/somewhere/else")
    assert scratch.choose("", here, 0, mounts) is None
    # a mount point with a space, as /proc writes it
    spaced = tmp_path / "with space"
    spaced.mkdir()
    mounts.write_text(f"tmpfs {str(spaced).replace(' ', chr(92) + '040')} tmpfs rw 0 0\n")
    assert scratch.choose(None, spaced, 0, mounts) == spaced


def test_a_run_that_passed_removes_its_directory_and_one_that_failed_keeps_it_and_names_it(
    tmp_path: Path, test_server: PgServer
) -> None:
    under = tmp_path / "chosen"
    under.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({scratch.ENV: str(under), "ONEROOF_TEST_SERVER": test_server.admin})
    quick = "tests/test_scratch.py::test_the_scratch_directory_is_a_writable_tmpfs_with_room_or_what_the_setting_names"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:xdist", quick, *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    passed = run()
    assert passed.returncode == 0, passed.stdout[-2000:]
    assert f"temporary files: under {under}/oneroof-run-" in passed.stdout
    assert list(under.iterdir()) == []
    failed = run("-k", "no_test_has_this_name")  # exit 5: no test ran
    assert failed.returncode == 5
    (kept,) = under.iterdir()
    assert kept.name.startswith("oneroof-run-")
    memory = ", in memory until removed" if scratch.on_tmpfs(kept) else ""
    assert f"the run's temporary files are kept for a look{memory}: {kept}" in failed.stdout
