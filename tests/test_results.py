"""The writer of the results pages (bench/results.py) and the summaries that feed it: a run
replaces its block and nothing else, names the date and the commit, refuses a page whose markers
are wrong; every page of docs/results/ keeps well-formed markers. No database is needed.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PAGES = ROOT / "docs" / "results"


def bench(name: str) -> ModuleType:
    """A module of bench/, imported as `python bench/x.py` imports its siblings."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


results = bench("results")
kill_matrix = bench("kill_matrix")
proofs = bench("proofs")
suite = bench("suite")

PAGE = """# A page

Prose above, kept byte for byte.\t
- **Measured:** 2020-01-01 on commit `000000000000`.
- **Reproduce:** `python bench/x.py`

<!-- results:begin -->

old figures
<!-- results:end -->

Commentary between, `<!-- results:begin -->` quoted in prose.

<!-- results:begin other -->
other figures
<!-- results:end other -->
trailing text without a newline"""

DAY = datetime.date(2031, 2, 3)


def where(dirty: bool = False) -> object:
    return results.Checkout("0123456789ab", dirty)


HOST = results.Machine("Some CPU", 2, 7.75, "Linux 6.1.0", "18.1", 3.25)
ON = "Some CPU, 2 cores, 7.8 GB memory, Linux 6.1.0, PostgreSQL 18.1; load average 3.2 at the start"


def page(tmp_path: Path, text: str = PAGE) -> Path:
    path = tmp_path / "page.md"
    path.write_bytes(text.encode())
    return path


def test_the_writer_replaces_only_its_block(tmp_path: Path) -> None:
    path = page(tmp_path)
    results.write(path, "| a | b |\n|---|---|\n", "python bench/x.py --write-docs", day=DAY, where=where(), host=HOST)
    text = path.read_text()
    head, _, rest = PAGE.partition("<!-- results:begin -->\n")
    _, _, tail = rest.partition("<!-- results:end -->")
    head = head.replace("2020-01-01 on commit `000000000000`.", "2031-02-03 on commit `0123456789ab`.")
    block = (
        f"\nMeasured on 2031-02-03 on commit `0123456789ab` with `python bench/x.py --write-docs`, on {ON}:\n\n"
        "| a | b |\n|---|---|\n\n"
    )
    assert text == head + "<!-- results:begin -->\n" + block + "<!-- results:end -->" + tail
    assert list(tmp_path.iterdir()) == [path], "the temporary file is left behind"


def test_the_header_names_today_and_the_checkout(tmp_path: Path) -> None:
    path = page(tmp_path)
    results.write(path, "figures", "python bench/x.py", host=HOST)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    when = f"{datetime.date.today().isoformat()} on commit `{head.stdout.strip()[:12]}`"
    when += " (with uncommitted changes)" if status.stdout.strip() else ""
    text = path.read_text()
    assert f"\nMeasured on {when} with `python bench/x.py`, on {ON}:\n\nfigures\n" in text
    assert f"\n- **Measured:** {when}.\n" in text


def test_the_header_names_this_machine_and_no_host_or_path(tmp_path: Path) -> None:
    path = page(tmp_path)
    results.write(path, "figures", "cmd", day=DAY, where=where())
    header = next(line for line in path.read_text().splitlines() if line.startswith("Measured on 2031-02-03"))
    cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    memory = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) / 1024**2
    for fragment in (" ".join(cpu.split(":", 1)[1].split()), f"{os.cpu_count()} cores", f"{memory:.1f} GB memory"):
        assert fragment in header
    assert f"{platform.system()} {platform.release()}" in header
    assert "no PostgreSQL version read" in header  # bench/run.py passes the server's version
    assert socket.gethostname() not in header
    assert "/" not in header.replace("GNU/Linux", "")


@pytest.mark.parametrize("dirty", [False, True])
def test_the_header_says_when_the_checkout_had_changes(tmp_path: Path, dirty: bool) -> None:
    path = page(tmp_path)
    results.write(path, "figures", "cmd", day=DAY, where=where(dirty))
    assert path.read_text().count("(with uncommitted changes)") == (2 if dirty else 0)


def test_named_blocks_are_independent(tmp_path: Path) -> None:
    path = page(tmp_path)
    results.write(path, "new other", "cmd other", name="other", day=DAY, where=where())
    results.write(path, "new default", "cmd default", day=DAY, where=where())
    found = results.blocks(path.read_text())
    text = path.read_text()
    assert text[found["other"].start : found["other"].stop].strip().endswith("new other")
    assert text[found[""].start : found[""].stop].strip().endswith("new default")
    assert "other figures" not in text and "old figures" not in text
    with pytest.raises(results.MalformedPage, match="no block named 'missing'"):
        results.write(path, "x", "cmd", name="missing", day=DAY, where=where())


BROKEN = {
    "no markers": "# A page\n\n- **Measured:** x\n\nfigures\n",
    "two begin markers": "<!-- results:begin -->\n<!-- results:begin -->\nx\n<!-- results:end -->\n",
    "a begin never closed": "<!-- results:begin -->\nx\n",
    "an end without a begin": "x\n<!-- results:end -->\n<!-- results:begin -->\n<!-- results:end -->\n",
    "an end of another name": "<!-- results:begin a -->\nx\n<!-- results:end b -->\n",
    "a misspelt marker": "<!-- results:begin -->\nx\n<!--results:end -->\n<!-- results:end -->\n",
    "two blocks of one name": "<!-- results:begin -->\n<!-- results:end -->\n<!-- results:begin -->\n"
    "<!-- results:end -->\n",
    "two Measured lines": "- **Measured:** a\n- **Measured:** b\n<!-- results:begin -->\n<!-- results:end -->\n",
}


@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_a_page_with_broken_markers_is_refused_and_left_unchanged(tmp_path: Path, text: str) -> None:
    path = page(tmp_path, text)
    with pytest.raises(results.MalformedPage, match=str(path)):
        results.write(path, "figures", "cmd", day=DAY, where=where())
    assert path.read_bytes() == text.encode()
    assert list(tmp_path.iterdir()) == [path]


def test_a_page_without_markers_is_refused_by_name() -> None:
    with pytest.raises(results.MalformedPage, match="no `<!-- results:begin -->` ... `<!-- results:end -->` block"):
        results.blocks("# A page\n\nfigures\n")


def test_a_failed_write_leaves_the_page_and_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = page(tmp_path)

    def refuse(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        results.write(path, "figures", "cmd", day=DAY, where=where())
    assert path.read_bytes() == PAGE.encode()
    assert list(tmp_path.iterdir()) == [path]


def test_the_command_on_the_page_shows_no_dsn() -> None:
    argv = ["--dsn", "host=h password=secret", "--prod=host=p password=other", "--repeat", "7", "--write-docs"]
    shown = results.command_line("run.py", argv)
    assert shown == "python bench/run.py --dsn ADMIN_DSN --prod=ADMIN_DSN --repeat 7 --write-docs"


MEASURED_LINE = re.compile(
    r"^- \*\*Measured:\*\* \d{4}-\d\d-\d\d on commit `[0-9a-f]{12}`( \(with uncommitted changes\))?\.$"
)


@pytest.mark.parametrize("path", sorted(PAGES.glob("*.md")), ids=lambda p: p.name)
def test_every_results_page_has_well_formed_markers(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.name == "index.md":
        assert not results.MARKER.search(text), "the index holds no figures"
        return
    found = results.blocks(text, path.name)  # raises on a broken marker
    first = min(block.start for block in found.values())
    lines = [line for line in text[:first].splitlines() if line.startswith("- **Measured:**")]
    assert len(lines) == 1 and MEASURED_LINE.match(lines[0]), f"{path.name}: the writer's Measured line: {lines}"
    assert "--write-docs" in text, f"{path.name}: the Reproduce section names no --write-docs command"


KILL_MATRIX_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4" timestamp="2031-02-03T04:05:06" time="244.5">
<testcase classname="tests.test_kill_matrix" name="test_violation_fails_exactly_its_invariants[a]" time="1"/>
<testcase classname="tests.test_kill_matrix" name="test_violation_fails_exactly_its_invariants[b]" time="1">
<failure message="AssertionError: b: unexpected failures ['x']&#10;more">trace</failure></testcase>
<testcase classname="tests.test_kill_matrix" name="test_violation_fails_exactly_its_invariants[c]" time="1"/>
<testcase classname="tests.test_kill_matrix" name="test_controls_pass_and_every_invariant_id_is_killed" time="9"/>
</testsuite></testsuites>
"""


class Violation:
    def __init__(self, name: str, stage: str, family: str, fails: set[str]) -> None:
        self.name, self.stage, self.family, self.fails = name, stage, family, frozenset(fails)


def test_the_kill_matrix_table_from_a_junit_file(tmp_path: Path) -> None:
    junit = tmp_path / "km.xml"
    junit.write_text(KILL_MATRIX_XML)
    violations = [
        Violation("a", "finalized", "f1", {"t[1]", "t[2]"}),
        Violation("b", "finalized", "f1", {"t[3]"}),
        Violation("c", "gate", "f2", {"g[1]", "t[1]"}),
        Violation("d", "gate", "f2", {"g[2]"}),  # not in the run
    ]
    lines = kill_matrix.table(kill_matrix.cases(junit), violations)
    assert lines == [
        "| stage | violations tried | caught | invariant ids killed |",
        "|---|---|---|---|",
        "| finalized | 2 | 1 | 2 |",
        "| gate | 1 | 1 | 2 |",
        "| **all** | **3** | **2** | **4** |",
        "",
        "Violations in 2 classes.",
        "Controls: every stage passes on an untouched clone, and every invariant id is killed.",
        "",
        "- not caught: b (failed): AssertionError: b: unexpected failures ['x']",
    ]
    junit.write_text(KILL_MATRIX_XML.replace('" time="9"/>', '" time="9"><failure message="alive: [z]"/></testcase>'))
    assert kill_matrix.table(kill_matrix.cases(junit), violations)[7] == "Controls failed: alive: [z]"


PROOFS_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="6">
<testcase name="test_crash_at_a_statement[rollout:tier2:SIGKILL]"><properties>
<property name="kill_point" value="rollout:tier2:1"/><property name="signal" value="SIGKILL"/>
<property name="state" value="greenfield"/></properties></testcase>
<testcase name="test_crash_at_a_statement[rollout:tier3:terminate]"><properties>
<property name="kill_point" value="rollout:tier3:1"/><property name="signal" value="terminate"/>
<property name="state" value="greenfield"/></properties></testcase>
<testcase name="test_crash_at_a_random_delay[0-rollout]"><properties>
<property name="kill_point" value="rollout:+12.5ms after tier2"/><property name="signal" value="SIGKILL"/>
<property name="state" value="finalized"/></properties></testcase>
<testcase name="test_crash_at_a_statement[rollback:tier2:SIGINT]"><properties>
<property name="kill_point" value="rollback:tier2:1"/><property name="signal" value="SIGINT"/>
</properties><failure message="boom"/></testcase>
<testcase name="test_the_state_machine"><properties>
<property name="steps" value="150"/><property name="rules" value="approve 19"/></properties></testcase>
<testcase name="test_hostile_names"><properties>
<property name="hostile_inputs" value="72"/><property name="got_through" value="0"/></properties></testcase>
<testcase name="test_without_figures"/>
</testsuite></testsuites>
"""


def test_the_proofs_summary_from_a_junit_file(tmp_path: Path) -> None:
    junit = tmp_path / "proofs.xml"
    junit.write_text(PROOFS_XML)
    assert proofs.summary(proofs.figures([junit])) == [
        "## A crash at every statement",
        "",
        "| command | how | points | state found |",
        "|---|---|---|---|",
        "| rollout | SIGKILL at a statement | 1 | greenfield 1 |",
        "| rollout | `pg_terminate_backend` | 1 | greenfield 1 |",
        "| rollout | SIGKILL at a random delay | 1 | finalized 1 |",
        "| rollback | SIGINT | 1 | no state (failed) 1 |",
        "",
        "4 kill points, 0 mixed, 1 failed.",
        "",
        "## The whole system against a model",
        "",
        "150 steps, 0 failed tests; rules: approve 19.",
        "",
        "## Hostile names",
        "",
        "72 hostile inputs tried, 0 got through.",
    ]


SUITE_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4" time="{wall}">
<testcase classname="tests.test_a" name="test_slow" time="{slow}"/>
<testcase classname="tests.test_a" name="test_quick" time="1.5"/>
<testcase classname="tests.test_b" name="test_red[x]" time="2"><failure message="boom"/></testcase>
<testcase classname="tests.test_b" name="test_skipped" time="0.5"><skipped message="no node"/></testcase>
</testsuite></testsuites>
"""


def test_the_suite_summary_from_two_junit_files(tmp_path: Path) -> None:
    before, after = tmp_path / "before.xml", tmp_path / "after.xml"
    before.write_text(SUITE_XML.format(wall="100", slow="96"))
    after.write_text(SUITE_XML.format(wall="25", slow="46"))
    lines = suite.summary([suite.read(before), suite.read(after)])
    assert lines[:5] == [
        "| run | tests | passed | failed | skipped | wall | sum of durations | sum / wall |",
        "|---|---|---|---|---|---|---|---|",
        "| before.xml | 4 | 2 | 1 | 1 | 1 min 40.0 s | 1 min 40.0 s | 1.00 |",
        "| after.xml | 4 | 2 | 1 | 1 | 0 min 25.0 s | 0 min 50.0 s | 2.00 |",
        "",
    ]
    assert lines[5] == (
        "after.xml / before.xml: wall 0.25, sum of durations 0.50; on the 4 tests both ran, 100 s and 50 s, 0.50."
    )
    modules = lines[lines.index("| module | before.xml | after.xml |") + 2 :][:2]
    assert modules == ["| `tests/test_a.py` | 98 | 48 |", "| `tests/test_b.py` | 2 | 2 |"]
    slowest_after = lines[lines.index("### Slowest 30: after.xml") + 4 :]
    assert slowest_after[:2] == ["| 46.0 | `tests/test_a.py::test_slow` |", "| 2.0 | `tests/test_b.py::test_red[x]` |"]
    partial = tmp_path / "partial.xml"  # an interrupted run: only the tests it ran are compared
    partial.write_text(
        SUITE_XML.format(wall="10", slow="8").replace('name="test_quick" time="1.5"', 'name="other" time="9"')
    )
    assert suite.summary([suite.read(before), suite.read(partial)])[5].endswith(
        "on the 3 tests both ran, 98 s and 10 s, 0.11."
    )
