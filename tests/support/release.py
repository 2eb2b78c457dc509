"""The release package, trust root, finalized figures and approval helper that the release tests
share.
"""

from __future__ import annotations

from typing import Any

import psycopg

from oneroof.core import metrics, package
from oneroof.harness.db import connect
from tests.support.testing import signers

PKG = package.load()


TRUST = signers().trust


FINAL = {
    "ospa": 1,
    "own": 35,
    "gap": 0,
    "conflict": 0,
    "gov_emit": 0,
    "inventory": 35,
    "axis": 35,
    "idle": 0,
    "system_issues": 204_556,
}


def approve(conn: psycopg.Connection[Any], key: str = "l4", sha: str = PKG.sha256, rehearsal: bool = False) -> int:
    """Record a signed approval as a human would with `oneroof approve`; returns its id."""
    return signers().approve(conn, key, sha=sha, rehearsal=rehearsal)


def reading(dsn: str) -> metrics.Reading:
    with connect(dsn) as conn:
        return metrics.read(conn)
