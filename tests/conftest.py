"""The project's own tests: pytester and the test-only support (servers, signers, Directus). A
session of the verification suite never loads this file.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import scratch

pytest_plugins = ["pytester", "tests.support.testing", "tests.support.directus"]

BASETEMP = pytest.StashKey[Path]()
SCRATCH = scratch.RUN_DIR


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """The run's temporary files, its servers' data among them, go into a directory of its own in
    memory when the machine has room (tests/support/scratch.py): TMPDIR names it for this process,
    the xdist workers, and every process the tests start.

    As root, the run's temporary directories go under a directory of its own, not
    /tmp/pytest-of-root: the embedded servers the tests start run as an unprivileged user that must
    traverse to their data, and every pytest session that starts resets /tmp/pytest-of-root to
    0700, which would pull a concurrent run's servers from under them (their checkpointer PANICs).
    """
    if hasattr(config, "workerinput"):
        return  # a worker inherits the controller's TMPDIR
    under = scratch.choose(os.environ.get(scratch.ENV))
    if under is not None:
        run = Path(tempfile.mkdtemp(prefix="oneroof-run-", dir=under))
        config.stash[SCRATCH] = run
        os.environ["TMPDIR"] = str(run)
        tempfile.tempdir = None  # read TMPDIR again
    if os.geteuid() != 0 or config.option.basetemp is not None:
        return
    config.option.basetemp = tempfile.mkdtemp(prefix="oneroof-pytest-")
    config.stash[BASETEMP] = Path(config.option.basetemp)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that passed leaves nothing behind; a failed one keeps its directories to look at."""
    config = session.config
    for key in (BASETEMP, SCRATCH):
        if key in config.stash and exitstatus == 0:
            # after pytest_unconfigure, which stops the run's server
            config.add_cleanup(functools.partial(shutil.rmtree, config.stash[key], ignore_errors=True))


def pytest_report_header(config: pytest.Config) -> str:
    where = config.stash.get(SCRATCH, None)
    if where is None:
        return f"temporary files: under {tempfile.gettempdir()} ({scratch.ENV}=DIR to choose)"
    memory = " (in memory)" if scratch.on_tmpfs(where) else ""
    choose = f"{scratch.ENV}=DIR to choose, {scratch.ENV}= for the system's default"
    return f"temporary files: under {where}{memory} ({choose})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    where = terminalreporter.config.stash.get(SCRATCH, None)
    if where is not None and exitstatus != 0:
        memory = ", in memory until removed" if scratch.on_tmpfs(where) else ""
        terminalreporter.write_line(f"the run's temporary files are kept for a look{memory}: {where}")
