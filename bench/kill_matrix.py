"""The kill matrix's figures, read from the JUnit XML of a run of tests/test_kill_matrix.py.

    pytest -m proof tests/test_kill_matrix.py -n 2 --junitxml=kill-matrix.xml
    python bench/kill_matrix.py kill-matrix.xml [--write-docs]

Prints a Markdown table: per stage, the violations tried and caught (each violation's test
passes when its stage fails exactly its expected invariant ids) and the invariant ids the caught
violations kill; then whether the controls hold (every stage passes on an untouched clone, and
every invariant id is killed by some violation). With --write-docs the table replaces the block of
docs/results/kill-matrix.md. The stages and expected ids of the violations come from
tests/support/kill_matrix.py, the data the run proved.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import results

ROOT = Path(__file__).resolve().parent.parent
VIOLATION_TEST = re.compile(r"^test_violation_fails_exactly_its_invariants\[(?P<name>.+)\]$")
CONTROLS_TEST = "test_controls_pass_and_every_invariant_id_is_killed"
STAGES = ("finalized", "greenfield", "baseline", "gate")


class Violation(Protocol):
    """What the figures read of a violation of tests/support/kill_matrix.py."""

    @property
    def name(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def fails(self) -> Set[str]: ...


@dataclass(frozen=True)
class Case:
    status: str  # passed / failed / skipped
    message: str  # the first line of the failure, "" otherwise


def cases(junit: Path) -> dict[str, Case]:
    """The test cases of a JUnit XML file by test name (parameters included)."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        bad = [c for c in case if c.tag in ("failure", "error")]
        status = "failed" if bad else "skipped" if case.find("skipped") is not None else "passed"
        message = ((bad[0].get("message") or bad[0].text or "").strip().splitlines() or [""])[0] if bad else ""
        found[case.get("name", "")] = Case(status, message)
    return found


def table(run: Mapping[str, Case], violations: Iterable[Violation]) -> list[str]:
    """The figures of a run as Markdown lines."""
    by_stage: dict[str, list[Violation]] = {}
    for violation in violations:
        by_stage.setdefault(violation.stage, []).append(violation)
    ran = {m["name"]: case for name, case in run.items() if (m := VIOLATION_TEST.match(name))}
    lines = ["| stage | violations tried | caught | invariant ids killed |", "|---|---|---|---|"]
    tried = caught = killed = 0
    missed: list[str] = []
    for stage in sorted(by_stage, key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s)):
        mine = [v for v in by_stage[stage] if v.name in ran]
        seen = [v for v in mine if ran[v.name].status == "passed"]
        ids = len(set().union(*(v.fails for v in seen)))
        missed += [f"{v.name} ({ran[v.name].status}): {ran[v.name].message}" for v in mine if v not in seen]
        lines.append(f"| {stage} | {len(mine)} | {len(seen)} | {ids} |")
        tried, caught, killed = tried + len(mine), caught + len(seen), killed + ids
    lines.append(f"| **all** | **{tried}** | **{caught}** | **{killed}** |")
    families = {v.family for group in by_stage.values() for v in group if v.name in ran}
    lines += ["", f"Violations in {len(families)} classes."]
    controls = run.get(CONTROLS_TEST)
    if controls is None:
        lines.append("The controls did not run: the invariant ids no violation kills are not known.")
    elif controls.status == "passed":
        lines.append("Controls: every stage passes on an untouched clone, and every invariant id is killed.")
    else:
        lines.append(f"Controls {controls.status}: {controls.message}")
    unknown = sorted(set(ran) - {v.name for group in by_stage.values() for v in group})
    listed = [f"- not caught: {m}" for m in missed] + [f"- not in tests/support/kill_matrix.py: {n}" for n in unknown]
    return lines + ([""] + listed if listed else [])  # a Markdown list needs the blank line before it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("junit", type=Path, help="the --junitxml file of `pytest -m proof tests/test_kill_matrix.py`")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results/kill-matrix.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # tests.support, which no install carries
    from tests.support.kill_matrix import VIOLATIONS

    suite = next(ET.parse(args.junit).getroot().iter("testsuite"))
    lines = table(cases(args.junit), VIOLATIONS)
    lines += ["", f"The run: {suite.get('timestamp', '?')}, {float(suite.get('time', 0)):.0f} s."]
    results.publish(lines, "kill-matrix.md", "kill_matrix.py", sys.argv[1:], write_docs=args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
