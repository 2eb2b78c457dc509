"""Read-only readings with their proof: the metrics between an entry and an exit fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oneroof.core import metrics
from oneroof.harness.db import connect


@dataclass(frozen=True)
class Probe:
    """The metrics of a database and the fingerprints taken before and after reading them."""

    database: str
    metrics: dict[str, Any]
    entry: str
    exit: str

    @property
    def equal(self) -> bool:
        """True when the entry and exit fingerprints are the same: nothing changed during the probe."""
        return self.entry == self.exit

    def as_json(self) -> dict[str, Any]:
        """The `--json` document of the probe (the command-line contract's shape)."""
        return {
            "database": self.database,
            "metrics": self.metrics,
            "fingerprint": {"entry": self.entry, "exit": self.exit, "equal": self.equal},
        }


def probe(dsn: str) -> Probe:
    """Take the entry fingerprint, read the metrics, take the exit fingerprint: all read-only."""
    with connect(dsn) as conn:
        conn.read_only = True
        entry = metrics.read(conn)
        exit_ = metrics.read(conn)
    return Probe(entry.metrics["db"], entry.metrics, entry.fingerprint, exit_.fingerprint)
