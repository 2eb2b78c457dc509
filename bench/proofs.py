"""The proofs' figures, read from the JUnit XML of runs of the crash matrix, the model and the
hostile names (each test files its figures as properties: tests/support/testing.py, `figure`).

    pytest -m proof tests/test_crash.py tests/test_model.py tests/test_hostile.py -n 2 --junitxml=proofs.xml
    python bench/proofs.py proofs.xml [more.xml ...] [--write-docs]

Prints Markdown: the kill points by command, how the executor was stopped and the state each
left; the state machine's steps; the hostile inputs tried and those that got through. With
--write-docs it replaces the block of docs/results/proofs.md. The races are not summarised here:
their figures are printed (`-s`), not recorded, and the page keeps them by hand.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import results

HOW = {"SIGKILL": "SIGKILL at a statement", "SIGINT": "SIGINT", "terminate": "`pg_terminate_backend`"}


def figures(junits: Iterable[Path]) -> list[dict[str, str]]:
    """One dict per test case that recorded properties: its properties, its name and its outcome."""
    found = []
    for junit in junits:
        for case in ET.parse(junit).getroot().iter("testcase"):
            props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
            if props:
                bad = any(c.tag in ("failure", "error") for c in case)
                props["test"], props["outcome"] = case.get("name", ""), "failed" if bad else "passed"
                found.append(props)
    return found


def crash_table(found: list[dict[str, str]]) -> list[str]:
    """Kill points by (command, how), with the states they left."""
    groups: dict[tuple[str, str], Counter[str]] = {}
    for f in (f for f in found if "kill_point" in f):
        command, _, where = f["kill_point"].partition(":")
        signal = f.get("signal", "")
        how = "SIGKILL at a random delay" if where.startswith("+") else HOW.get(signal, signal)
        state = f.get("state") or f"no state ({f['outcome']})"
        groups.setdefault((command, how), Counter())[state] += 1
    if not groups:
        return []
    order = list(HOW.values()) + ["SIGKILL at a random delay"]
    lines = ["| command | how | points | state found |", "|---|---|---|---|"]
    for (command, how), states in sorted(
        groups.items(), key=lambda g: (g[0][0] != "rollout", g[0][0], order.index(g[0][1]) if g[0][1] in order else 9)
    ):
        found_states = ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
        lines.append(f"| {command} | {how} | {sum(states.values())} | {found_states} |")
    total = sum(sum(s.values()) for s in groups.values())
    mixed = sum(s["mixed"] for s in groups.values())
    failed = sum(1 for f in found if "kill_point" in f and f["outcome"] == "failed")
    return ["## A crash at every statement", "", *lines, "", f"{total} kill points, {mixed} mixed, {failed} failed."]


def summary(found: list[dict[str, str]]) -> list[str]:
    """The whole summary: the crash matrix, the state machine, the hostile names."""
    lines = crash_table(found)
    model = [f for f in found if "steps" in f]
    if model:
        steps = sum(int(f["steps"]) for f in model)
        failed = sum(f["outcome"] == "failed" for f in model)
        lines += ["", "## The whole system against a model", ""]
        lines += [f"{steps} steps, {failed} failed tests; rules: {model[-1].get('rules', '')}."]
        lines += [f"Outcomes: {model[-1]['outcomes']}."] if model[-1].get("outcomes") else []
    hostile = [f for f in found if "hostile_inputs" in f]
    if hostile:
        tried = sum(int(f["hostile_inputs"]) for f in hostile)
        through = sum(int(f.get("got_through", 0)) for f in hostile)
        lines += ["", "## Hostile names", "", f"{tried} hostile inputs tried, {through} got through."]
    return lines or ["No test of these runs recorded figures."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("junit", type=Path, nargs="+", help="--junitxml files of the proofs")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/results/proofs.md")
    args = parser.parse_args()
    lines = summary(figures(args.junit))
    results.publish(lines, "proofs.md", "proofs.py", sys.argv[1:], write_docs=args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
