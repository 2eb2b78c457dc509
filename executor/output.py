"""What scripts and terminals read from the command line: the `--json` documents of the commands
a script calls (each key always present, so a script need not guess), and the colours of verdict
lines on a terminal.

Colour only on a terminal: never with `--no-color`, with `NO_COLOR` set (https://no-color.org),
with TERM=dumb, in a pipe or a file, or in JSON.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from oneroof.harness.errors import Blocked

# -- --json --------------------------------------------------------------------------------------

RESULTS = {
    "applied": "APPLIED",
    "already-finalized": "ALREADY-FINALIZED",
    "reverted": "REVERTED",
    "already-greenfield": "ALREADY-GREENFIELD",
}


def outcome(done: Any) -> dict[str, Any]:
    """`rollout --json` and `rollback --json` when they ran: what changed, and its proof."""
    return {
        "result": RESULTS.get(done.action, done.action.upper()),
        "database": done.database,
        "package_sha256": done.package_sha256,
        "approvals": list(done.approvals),
        "entry": done.entry,
        "exit": done.exit,
        "seconds": done.seconds,
        "metrics": done.metrics,
        "audit_exit": done.audit_exit,
        "reasons": [],
        "blocked_by": {},
    }


def blocked(exc: Blocked, package_sha256: str) -> dict[str, Any]:
    """`rollout --json` when the gate is closed: the same keys, nothing changed (entry == exit)."""
    return {
        "result": "BLOCKED",
        "database": exc.database,
        "package_sha256": package_sha256,
        "approvals": [],
        "entry": exc.entry,
        "exit": exc.exit,
        "seconds": {},
        "metrics": {},
        "audit_exit": None,
        "reasons": exc.reasons,
        "blocked_by": exc.blocked_by,
    }


def rehearsal(evidence: Any, run_dir: Path, verdict: dict[str, str], meaning: str) -> dict[str, Any]:
    """`rehearse --json`: the verdict, what it means, and where the evidence and reports are."""
    return {
        "ok": evidence.ok,
        "interrupted": evidence.interrupted,
        "verdict": verdict,
        "meaning": meaning,
        "golden": evidence.golden,
        "golden_origin": evidence.golden_origin,
        "package_sha256": str(evidence.package.get("sha256", "")),
        "run_dir": str(run_dir),
        "evidence": str(run_dir / "evidence.json"),
        "reports": {"md": str(run_dir / "report.md"), "html": str(run_dir / "report.html")},
        "kept_clone_dsn": evidence.kept_clone_dsn or None,
        "failed_steps": [s.name for s in evidence.steps if not s.ok],
    }


def goldens(found: list[tuple[str, Any]]) -> dict[str, Any]:
    """`golden list --json`: each golden database with where it came from."""
    return {
        "goldens": [
            {"name": name, "kind": prov.kind, "description": prov.describe(), "provenance": asdict(prov)}
            for name, prov in found
        ]
    }


def clones(found: list[Any]) -> dict[str, Any]:
    """`clone list --json`: the keys of `clone create --json`, per clone."""
    return {"clones": [{"name": c.name, "source": c.source, "dsn": c.dsn} for c in found]}


def audit(result: Any) -> dict[str, Any]:
    """`approvals verify --json`: every approval and deployment with what the re-check found."""
    return {
        "ok": result.ok,
        "database": result.database,
        "system_identifier": result.system_identifier,
        "allowed_signers_sha256": result.allowed_signers_sha256,
        "approvals": [asdict(f) for f in result.approvals],
        "deployments": [asdict(f) for f in result.deployments],
    }


# -- colour --------------------------------------------------------------------------------------

GREEN, RED, YELLOW, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"
# The verdict a line leads with (after its label): NO-GO before GO, so NO-GO is never read as GO.
VERDICT = re.compile(
    r"^(?:RELEASE READINESS: |PRODUCTION EXECUTION: )?(?P<word>NO-GO|BLOCKED|GO|OPEN|APPLIED|REVERTED|DONE)\b"
)
COLOURS = {"NO-GO": RED, "BLOCKED": YELLOW, "GO": GREEN, "OPEN": GREEN, "APPLIED": GREEN, "REVERTED": GREEN}


def colour_wanted(no_color: bool, stream: IO[str]) -> bool:
    """True when `stream` is a terminal and neither --no-color, NO_COLOR nor TERM=dumb says no."""
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, wanted: bool) -> str:
    """Each verdict line of `text` in its colour when `wanted` (GO green, NO-GO red, BLOCKED
    yellow); every other line, and every line when not wanted, as it is.
    """
    if not wanted:
        return text
    lines = []
    for line in text.split("\n"):
        found = VERDICT.match(line)
        colour = COLOURS.get(found["word"]) if found else None
        lines.append(f"{colour}{line}{RESET}" if colour else line)
    return "\n".join(lines)
