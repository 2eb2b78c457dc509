"""The pytest plugin of bench/mutation.py's trust checks: the project's own tests, run as
themselves (`pytest --noconftest -p mutation_plugin`), against a server and a golden database
prepared once for the whole run instead of once per session (tests/conftest.py would build a
golden database for every mutant).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.support.testing import (  # noqa: F401 (the fixtures the selected tests use)
    SERVER,
    admin,
    clone,
    clone_conn,
    oneroof,
    oneroof_home,
    test_server,
    unique,
)

PREPARED = Path(tempfile.gettempdir()) / "oneroof-mutation" / "server.json"


@pytest.fixture(scope="session")
def worker_id() -> str:
    """As pytest-xdist names a run without workers."""
    return "master"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SERVER] = json.loads(PREPARED.read_text())
