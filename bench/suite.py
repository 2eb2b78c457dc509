"""The project's own test suite, timed: totals and the slowest tests, read from the JUnit XML of
whole runs (before and after a change, measured the same way).

    pytest -n 2 -m "not directus" --junitxml=before.xml    # on the commit before
    pytest -n 2 -m "not directus" --junitxml=after.xml     # on the commit after
    python bench/suite.py before.xml after.xml [--write-docs]

Prints Markdown: per run, the tests, their outcomes, the wall time of the session and the sum of
the tests' own durations (set-up, call and tear-down, as --junitxml records them), then the
ratios of the last run to the first, the slowest tests of each run (pytest's `--durations=30`,
from the same XML) and the modules by their summed durations. On a shared machine the wall time
follows the load; the sum of durations follows it less, and the ratio of two runs measured under
a like load least. With --write-docs it replaces the block of docs/results/test-suite.md.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import results

TOP = 30
MODULES = 12


@dataclass(frozen=True)
class Run:
    name: str  # the XML file's name
    wall: float  # the session's seconds, as the XML's test suite records them
    durations: dict[str, float]  # test id -> seconds (set-up + call + tear-down)
    outcomes: Counter[str]

    @property
    def total(self) -> float:
        return sum(self.durations.values())


def read(junit: Path) -> Run:
    """One run's figures from its --junitxml file."""
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise SystemExit(f"{junit}: no <testsuite> in it: pass a file that pytest --junitxml wrote")
    durations: dict[str, float] = {}
    outcomes: Counter[str] = Counter()
    for case in suite.iter("testcase"):
        test = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name', '')}"
        durations[test] = durations.get(test, 0.0) + float(case.get("time") or 0)
        kinds = {c.tag for c in case}
        outcomes["failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"] += 1
    return Run(junit.name, float(suite.get("time") or 0), durations, outcomes)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def totals(runs: Sequence[Run]) -> list[str]:
    lines = [
        "| run | tests | passed | failed | skipped | wall | sum of durations | sum / wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        o = run.outcomes
        ratio = f"{run.total / run.wall:.2f}" if run.wall else "-"
        lines.append(
            f"| {run.name} | {sum(o.values())} | {o['passed']} | {o['failed']} | {o['skipped']} | "
            f"{minutes(run.wall)} | {minutes(run.total)} | {ratio} |"
        )
    if len(runs) > 1 and runs[0].wall and runs[0].total:
        first, last = runs[0], runs[-1]
        both = set(first.durations) & set(last.durations)
        before = sum(first.durations[t] for t in both)
        after = sum(last.durations[t] for t in both)
        lines += [
            "",
            f"{last.name} / {first.name}: wall {last.wall / first.wall:.2f}, "
            f"sum of durations {last.total / first.total:.2f}; on the {len(both)} tests both ran, "
            f"{before:.0f} s and {after:.0f} s, {after / before if before else 0:.2f}.",
        ]
    return lines


def slowest(run: Run, top: int = TOP) -> list[str]:
    lines = ["", f"### Slowest {top}: {run.name}", "", "| seconds | test |", "|---|---|"]
    for test, seconds in sorted(run.durations.items(), key=lambda t: -t[1])[:top]:
        lines.append(f"| {seconds:.1f} | `{test}` |")
    return lines


def by_module(runs: Sequence[Run], top: int = MODULES) -> list[str]:
    sums = [Counter[str]() for _ in runs]
    for run, counted in zip(runs, sums, strict=True):
        for test, seconds in run.durations.items():
            counted[test.split("::")[0]] += seconds
    order = sorted(set().union(*sums), key=lambda m: -max(c[m] for c in sums))[:top]
    lines = ["", "### Modules by summed durations (seconds)", ""]
    lines += ["| module | " + " | ".join(r.name for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for module in order:
        lines.append(f"| `{module}` | " + " | ".join(f"{c[module]:.0f}" for c in sums) + " |")
    return lines


def summary(runs: Sequence[Run]) -> list[str]:
    """The whole summary, as Markdown lines."""
    lines = totals(runs) + by_module(runs)
    for run in runs:
        lines += slowest(run)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("junit", type=Path, nargs="+", help="--junitxml files of whole runs, the first the baseline")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/results/test-suite.md")
    args = parser.parse_args()
    lines = summary([read(path) for path in args.junit])
    results.publish(lines, "test-suite.md", "suite.py", sys.argv[1:], write_docs=args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
