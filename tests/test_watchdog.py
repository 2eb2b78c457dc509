"""The test run's watchdog (tests/support/watchdog.py): a run whose controller is killed with
SIGKILL leaves no embedded server running and no database of its own on a shared server; a run
that ends as usual cleans up itself, and its watchdog leaves without touching anything.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from oneroof.harness import server
from oneroof.harness.db import connect
from tests.support.testing import ROOT, PgServer, leftovers, run_prefix

# A stand-in controller: starts the watchdog as the test run's controller does, says so, then
# waits to be killed, or (with "done") releases it as the controller's normal end does.
CONTROLLER = """
import json, sys, time
from tests.support.testing import release_watchdog, watch
dog = watch(json.loads(sys.argv[1]))
print(dog.pid, flush=True)
if sys.argv[2] == "done":
    release_watchdog(dog)
    print(dog.returncode, flush=True)
else:
    time.sleep(600)
"""


@contextlib.contextmanager
def controller(info: dict[str, str], end: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The stand-in controller, running, and its watchdog's pid."""
    with subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, json.dumps(info), end], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            yield proc, int(proc.stdout.readline())
        finally:
            proc.kill()


def gone(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}").stat()
    except FileNotFoundError:
        return True
    return (Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]) == "Z"


def wait_until(check: object, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A temporary embedded server of its own, as the run's controller starts one."""
    home = tmp_path / "home"
    running = server.start(home, fast=True, auth="trust")
    try:
        yield {"run": secrets.token_hex(3), "admin": running.dsn(), "home": str(home)}, home
    finally:
        if home.exists():
            server.stop(home)


def test_a_killed_controller_leaves_no_embedded_server_running(embedded: tuple[dict[str, str], Path]) -> None:
    info, home = embedded
    with controller(info, "sleep") as (proc, dog):
        assert server.status(home) is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: server.status(home) is None and not home.exists()), "the server outlived its run"
    assert wait_until(lambda: gone(dog)), "the watchdog stayed behind"


def test_a_controller_that_ends_as_usual_releases_its_watchdog(embedded: tuple[dict[str, str], Path]) -> None:
    info, home = embedded
    with controller(info, "done") as (proc, dog):
        assert proc.stdout is not None
        assert int(proc.stdout.readline()) == 0  # the watchdog left, at once and cleanly
        assert proc.wait(timeout=60) == 0
    assert gone(dog)
    assert server.status(home) is not None and home.exists()  # untouched: the controller's to stop


def test_a_killed_controller_leaves_no_database_of_its_run_on_a_shared_server(test_server: PgServer) -> None:
    run = secrets.token_hex(3)
    name = f"{run_prefix(run)}_left"
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with controller({"run": run, "admin": test_server.admin}, "sleep") as (proc, dog):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert wait_until(lambda: leftovers(test_server.admin, run) == ([], [])), "the run's database stayed"
        assert wait_until(lambda: gone(dog))
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_killed_controller_leaves_no_server_its_tests_started_and_no_directory_of_its_run(
    test_server: PgServer, tmp_path: Path
) -> None:
    run_dir = tmp_path / "oneroof-run"
    home = run_dir / "oneroof-pytest-x" / "test_cli0" / "home"  # as a test's own embedded server lies
    running = server.start(home, fast=True, auth="trust")
    other = tmp_path / "elsewhere"  # a server outside the run's directory is not the watchdog's
    outside = server.start(other, fast=True, auth="trust")
    # planted in the run's directory: links to the outside server's data and to its pid file
    (run_dir / "link").symlink_to(other)
    (run_dir / "planted").mkdir()
    (run_dir / "planted" / "postmaster.pid").symlink_to(other / "pgdata" / "postmaster.pid")
    try:
        info = {"run": secrets.token_hex(3), "admin": test_server.admin, "scratch": str(run_dir)}
        with controller(info, "sleep") as (proc, dog):
            assert server.status(home) == running
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert wait_until(lambda: server.status(home) is None and not run_dir.exists()), "the run's server stayed"
        assert wait_until(lambda: gone(dog))
        assert server.status(other) == outside, "a server reached through a link was stopped"
    finally:
        for where in (home, other):
            if where.exists():
                server.stop(where)
