"""Where a test run keeps its temporary files: in memory (tmpfs) when the machine has room for it.

The run's servers keep their data there too, and the tests make and drop hundreds of clones of a
61 MB golden database. On a disk each copy is written back and each drop discarded, work the
kernel does on the run's two cores: a clone made and dropped cost 200 to 500 ms of the machine's
CPU on the development machine's disk (ext4 on a virtual disk), against 75 ms on /dev/shm. None
of the tests is about the disk; each still runs a real PostgreSQL, whose files simply live in
memory.

`ONEROOF_TEST_TMPDIR=DIR` chooses the directory (`ONEROOF_TEST_TMPDIR=` keeps the system's
default, such as /tmp on the disk); otherwise /dev/shm is used when it is a tmpfs this user can
write with at least MIN_FREE bytes free.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "ONEROOF_TEST_TMPDIR"
RUN_DIR = pytest.StashKey[Path]()  # the run's own directory under the chosen one (tests/conftest.py)
CANDIDATE = Path("/dev/shm")
MOUNTS = Path("/proc/self/mounts")
MIN_FREE = 4 << 30  # a run's servers, clones and Directus databases take about 1.5 GB at most


def tmpfs_mounts(mounts: Path = MOUNTS) -> set[str]:
    """The mount points of tmpfs file systems (none where /proc is not there)."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return set()
    # fields: device, mount point (spaces as \040), type, options, ...
    rows = [line.split() for line in lines]
    return {fields[1].replace("\\040", " ") for fields in rows if len(fields) > 2 and fields[2] == "tmpfs"}


def on_tmpfs(path: Path) -> bool:
    """Whether `path` lies on a tmpfs: its nearest mount point is one."""
    mounts = tmpfs_mounts()
    here = path.resolve()
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return str(here) in mounts


def choose(
    setting: str | None, candidate: Path = CANDIDATE, min_free: int = MIN_FREE, mounts: Path = MOUNTS
) -> Path | None:
    """The directory a run's temporary files go under, or None for the system's default.

    `setting` is the value of ONEROOF_TEST_TMPDIR (None: not set).
    """
    if setting is not None:
        return Path(setting) if setting else None
    if str(candidate) not in tmpfs_mounts(mounts) or not os.access(candidate, os.W_OK | os.X_OK):
        return None
    fs = os.statvfs(candidate)
    return candidate if fs.f_bavail * fs.f_frsize >= min_free else None


def stop_servers_under(root: Path, timeout: float = 30.0) -> list[int]:
    """Stop every PostgreSQL server whose data directory lies under `root` (immediate shutdown:
    SIGQUIT to its postmaster, found by its postmaster.pid and confirmed by its working directory,
    which is its data directory); their pids, once gone or after `timeout` seconds.
    """
    import signal
    import time

    stopped = []
    for pid_file in root.rglob("postmaster.pid"):
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            if Path(os.readlink(f"/proc/{pid}/cwd")) != pid_file.parent.resolve():
                continue  # a stale file, its pid since taken by another process
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError):
            continue
        stopped.append(pid)
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.1)
    return stopped
