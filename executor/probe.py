"""Read-only readings with their proof: the metrics between an entry and an exit fingerprint.

Production is live, so the two fingerprints may differ by others' writes: that difference is
reported as production's own change, naming the metrics and tables. What proves that the probe
wrote nothing is its own transactions: each is READ ONLY and was assigned no transaction id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from oneroof.core import metrics
from oneroof.harness.db import connect, consistent_read


@dataclass(frozen=True)
class Probe:
    """The metrics of a database, the fingerprints taken before and after reading them, and the
    transaction ids the probe's own reads were assigned (none, unless something wrote in them).
    """

    database: str
    metrics: dict[str, Any]
    entry: str
    exit: str
    changed: list[str]
    assigned: list[int]

    @property
    def equal(self) -> bool:
        """True when the entry and exit fingerprints are the same: nobody changed it meanwhile."""
        return self.entry == self.exit

    @property
    def wrote_nothing(self) -> bool:
        """True when no read of the probe was assigned a transaction id."""
        return not self.assigned

    def as_json(self) -> dict[str, Any]:
        """The `--json` document of the probe (the command-line contract's shape)."""
        return {
            "database": self.database,
            "metrics": self.metrics,
            "fingerprint": {"entry": self.entry, "exit": self.exit, "equal": self.equal, "changed": self.changed},
            "wrote_nothing": self.wrote_nothing,
        }


def _read(conn: psycopg.Connection[Any]) -> tuple[metrics.Reading, int | None]:
    """One reading in a REPEATABLE READ READ ONLY transaction, and the id it was assigned, if any."""
    with consistent_read(conn):
        metrics.check_target(conn)
        reading = metrics.read_in_snapshot(conn)
        row = conn.execute("SELECT pg_catalog.txid_current_if_assigned() AS xid").fetchone()
    return reading, None if row is None else row["xid"]


def probe(dsn: str) -> Probe:
    """Take the entry reading, then the exit reading, each in a read-only transaction of its own."""
    with connect(dsn, application_name="oneroof-probe") as conn:
        conn.read_only = True
        entry, first = _read(conn)
        exit_, second = _read(conn)
    assigned = [int(xid) for xid in (first, second) if xid is not None]
    return Probe(
        entry.metrics["db"],
        entry.metrics,
        entry.fingerprint,
        exit_.fingerprint,
        metrics.changed(entry, exit_),
        assigned,
    )
