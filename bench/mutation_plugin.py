"""The pytest plugin of bench/mutation.py's trust checks: the project's own tests, run as
themselves (`pytest --noconftest -p mutation_plugin`), against a server and a golden database
prepared once for the whole run instead of once per session (tests/conftest.py would build a
golden database for every mutant). A check that runs Directus tests bootstraps Directus on that
server as tests/conftest.py would (about 10 s), from the cached install.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from oneroof.core import package
from oneroof.harness import golden
from tests.support import directus as directus_support
from tests.support import testing

# The fixtures the selected tests use, from the module that defines them for tests/conftest.py.
SERVER = testing.SERVER
admin, clone, clone_conn = testing.admin, testing.clone, testing.clone_conn
oneroof, oneroof_home, unique = testing.oneroof, testing.oneroof_home, testing.unique
test_server = testing.test_server
directus_install, directus_db = directus_support.directus_install, directus_support.directus_db
directus, directus_admin = directus_support.directus, directus_support.directus_admin

# bench/mutation.py's STATE: MUTATION_STATE names another, for a second run beside the first
PREPARED = Path(os.environ.get("MUTATION_STATE") or Path(tempfile.gettempdir()) / "oneroof-mutation") / "server.json"


@pytest.fixture(scope="session")
def worker_id() -> str:
    """As pytest-xdist names a run without workers."""
    return "master"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SERVER] = json.loads(PREPARED.read_text())


@pytest.fixture(scope="module")
def governed_directus_db(directus_db: directus_support.DirectusDatabase) -> directus_support.DirectusDatabase:
    """As tests/support/directus.py's, for the repository's package (no session options here)."""
    golden.apply(directus_db.dsn, package_sha256=package.load().sha256)
    return directus_db
