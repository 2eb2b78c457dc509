"""The project's own tests: pytester and the test-only support (servers, signers, Directus). A
session of the verification suite never loads this file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["pytester", "tests.support.testing", "tests.support.directus"]

BASETEMP = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """As root, the run's temporary directories go under a directory of its own, not
    /tmp/pytest-of-root: the embedded servers the tests start run as an unprivileged user that must
    traverse to their data, and every pytest session that starts resets /tmp/pytest-of-root to
    0700, which would pull a concurrent run's servers from under them (their checkpointer PANICs).
    """
    if os.geteuid() != 0 or hasattr(config, "workerinput") or config.option.basetemp is not None:
        return
    config.option.basetemp = tempfile.mkdtemp(prefix="oneroof-pytest-")
    config.stash[BASETEMP] = Path(config.option.basetemp)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that passed leaves nothing behind; a failed one keeps its directories to look at."""
    config = session.config
    if BASETEMP in config.stash and exitstatus == 0:
        config.add_cleanup(lambda: shutil.rmtree(config.stash[BASETEMP], ignore_errors=True))
