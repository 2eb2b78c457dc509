"""The release package, trust root, finalized figures and approval helper that the release tests
share.
"""

from __future__ import annotations

from typing import Any

import psycopg

from oneroof.core import content, metrics, package
from oneroof.harness.db import connect
from tests.support.testing import signers

PKG = package.load()


TRUST = signers().trust


# The synthetic golden's system_issues at scale 1, the seed's: observed, so in no snapshot.
SEED_ISSUES = 204_556
# The figures after a rollout with one approval, and after its rollback (the approval stays): the
# package's own finalized and greenfield snapshots, with ospa 1, and the golden's system_issues.
FINAL = {"ospa": 1, **content.figures(package.snapshots_dir(PKG.path), "finalized"), "system_issues": SEED_ISSUES}
GREENFIELD = {"ospa": 1, **content.figures(package.snapshots_dir(PKG.path), "greenfield"), "system_issues": SEED_ISSUES}


def approve(conn: psycopg.Connection[Any], key: str = "l4", sha: str = PKG.sha256, rehearsal: bool = False) -> int:
    """Record a signed approval as a human would with `oneroof approve`; returns its id."""
    return signers().approve(conn, key, sha=sha, rehearsal=rehearsal)


def reading(dsn: str) -> metrics.Reading:
    with connect(dsn) as conn:
        return metrics.read(conn)
