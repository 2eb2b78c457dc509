"""The gate monitor: one read-only shot (no daemon) giving OPEN or BLOCKED with every reason, or
such shots until the gate opens (`until_open`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneroof.core import evidence as rehearsals
from oneroof.core import gate, ledger, metrics, package, signatures
from oneroof.harness.db import connect, consistent_read
from oneroof.harness.errors import IntegrityError


@dataclass(frozen=True)
class Report:
    """The monitor's verdict with the figures and the entry and exit fingerprints."""

    database: str
    verdict: str
    reasons: list[str]
    notes: list[str]
    state: str
    valid_approvals: list[int]
    metrics: dict[str, Any]
    entry: str
    exit: str
    allowed_signers: dict[str, str] | None = None  # path and SHA-256 of the trust root
    system_identifier: str | None = None
    blocked_by: dict[str, str] | None = None  # the reasons by gate condition
    rehearsal: dict[str, str] | None = None  # path and SHA-256 of the rehearsal evidence given

    def as_json(self) -> dict[str, Any]:
        """The `--json` document of the monitor (the command-line contract's shape)."""
        return {
            "database": self.database,
            "metrics": self.metrics,
            "fingerprint": {"entry": self.entry, "exit": self.exit, "equal": self.entry == self.exit},
            "verdict": self.verdict,
            "reasons": self.reasons,
            "notes": self.notes,
            "state": self.state,
            "valid_approvals": self.valid_approvals,
            "allowed_signers": self.allowed_signers,
            "target": {"database": self.database, "system_identifier": self.system_identifier},
            "blocked_by": self.blocked_by or {},
            "rehearsal": self.rehearsal,
        }


def monitor(
    dsn: str,
    package_dir: Path,
    *,
    expect_sha256: str | None = None,
    confirm_db: str | None = None,
    trust: signatures.TrustRoot | None = None,
    rehearsal: rehearsals.Rehearsal | None = None,
    release_log: ledger.ReleaseLog | None = None,
) -> Report:
    """Read the gate on `dsn` in read-only transactions between two fingerprints, verifying the
    approvals' statements against the allowed signers `trust`, and a target that is not a marked
    clone against the evidence of `rehearsal`, and the ledger against the operator's `release_log`.
    """
    reasons: list[str] = []
    blocked_by: dict[str, str] = {}
    try:
        pkg: package.Package | None = package.load(package_dir, expect_sha256)
    except IntegrityError as exc:
        pkg, reasons = None, [f"package: {exc.message}"]
        blocked_by["package"] = reasons[0]
    with connect(dsn, application_name="oneroof-monitor") as conn:
        conn.read_only = True
        entry = metrics.read(conn)
        notes: list[str] = []
        state, valid = "unknown", []
        with consistent_read(conn):
            cluster = gate.system_identifier(conn)
        if pkg is not None:
            with consistent_read(conn):
                verdict = gate.evaluate(
                    conn, pkg, confirm_db=confirm_db, trust=trust, rehearsal=rehearsal, release_log=release_log
                )
            reasons += list(verdict.reasons.values())
            blocked_by.update(verdict.reasons)
            notes, state, valid = verdict.notes, verdict.state, list(verdict.valid_approvals)
        exit_ = metrics.read(conn)
    trusted = {"path": str(trust.path), "sha256": trust.sha256} if trust is not None else None
    given = {"path": rehearsal.path, "sha256": rehearsal.sha256} if rehearsal is not None and rehearsal.path else None
    return Report(
        entry.metrics["db"],
        "BLOCKED" if reasons else "OPEN",
        reasons,
        notes,
        state,
        valid,
        entry.metrics,
        entry.fingerprint,
        exit_.fingerprint,
        trusted,
        cluster,
        blocked_by,
        given,
    )


FIRST_INTERVAL = 2.0  # seconds before the second read; each wait is half as long again, up to
LONGEST_INTERVAL = 30.0


def until_open(
    read: Callable[[], Report],
    *,
    timeout: float | None,
    progress: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Read the gate with `read` (one read-only shot each time, no daemon, nothing written) until
    it is OPEN or `timeout` seconds have passed (None: until OPEN or Ctrl-C); return the last
    report. `progress` hears each read: the verdict with its reasons when they changed, else that
    it holds. The waits grow from FIRST_INTERVAL by half each time, up to LONGEST_INTERVAL.
    """
    started, wait, seen = clock(), FIRST_INTERVAL, None
    while True:
        report = read()
        elapsed = clock() - started
        now = (report.verdict, tuple(report.reasons))
        left = None if timeout is None else timeout - elapsed
        pause = wait if left is None else max(0.0, min(wait, left))
        said = report.verdict + (": " + "; ".join(report.reasons) if report.reasons else "")
        said = said if now != seen else f"still {report.verdict}"
        if report.verdict == "OPEN" or (left is not None and left <= 0):
            progress(f"{elapsed:.0f} s: {said}")
            return report
        progress(f"{elapsed:.0f} s: {said}; next read in {pause:.0f} s")
        seen = now
        sleep(pause)
        wait = min(LONGEST_INTERVAL, wait * 1.5)
