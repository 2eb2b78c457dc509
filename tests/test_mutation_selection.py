"""The mutant's check of bench/mutation.py's trust run: which lines a mutant changes, which tests
run for it, and the contexts plugin that maps each line to the tests that execute it (a real
`coverage run` of a small pytest session, in this process's tests and a subprocess one starts).
No database.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def bench(name: str) -> ModuleType:
    """A module of bench/, imported as `python bench/x.py` imports its siblings."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_the_lines_a_mutant_changes_are_named_in_the_original() -> None:
    changed = bench("mutation").changed_lines
    before = "a = 1\nb = 2\nc = 3\nd = 4\n"
    assert changed(before, before) == set()
    assert changed(before, "a = 1\nb = -2\nc = 3\nd = 4\n") == {2}
    assert changed(before, "a = 1\nb = 2\nd = 4\n") == {3}
    assert changed(before, "a = 1\nb = 2\nc = 3\nx = 0\nd = 4\n") == {3}
    assert changed(before, "a = 1\nb = 0\nc = 0\nd = 4\n") == {2, 3}


SOURCE = "def f():\n    y = 2\n    z = 3\n    w = 4\n    v = (5,\n         6)\nx = 1\n"


@pytest.fixture
def mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    """bench/mutation.py over a checkout of one module, core/ledger.py (SOURCE), and its map: line 2
    ran in test A, line 3 in tests A and B (B first in the check), line 4 in A and at a plugin's
    import, line 5 at the import of test module u.py, line 7 (module level) in A; line 6, a
    continuation line, is not in the map.
    """
    mutation = bench("mutation")
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "ledger.py").write_text(SOURCE)
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    monkeypatch.setattr(mutation, "STATE", tmp_path)
    mutation.trust_map("core/ledger.py").write_text(
        json.dumps(
            {
                "source": SOURCE,
                "tests": ["t.py::C", "t.py::B", "u.py::D", "t.py::A", "u.py::E"],
                "lines": {
                    "2": ["t.py::A"],
                    "3": ["t.py::A", "t.py::B"],
                    "4": ["", "t.py::A"],
                    "5": ["collect:u.py"],
                    "7": ["t.py::A"],
                },
            }
        )
    )
    return mutation, tmp_path / "core" / "ledger.py"


def mutant(module: Path, line: int) -> None:
    """SOURCE with its 1-based `line`'s first digit turned into 0, as a NumberReplacer would."""
    lines = SOURCE.splitlines(keepends=True)
    lines[line - 1] = "".join("0" if c.isdigit() else c for c in lines[line - 1])
    module.write_text("".join(lines))


def test_a_mutant_runs_the_tests_of_its_lines_in_the_checks_order(mapped: tuple[ModuleType, Path]) -> None:
    mutation, module = mapped
    base = mutation.trust_check("core/ledger.py")[: -len(mutation.TRUST["core/ledger.py"])]
    mutant(module, 2)
    assert mutation.selected_check("core/ledger.py") == [*base, "t.py::A"]
    mutant(module, 3)
    assert mutation.selected_check("core/ledger.py") == [*base, "t.py::B", "t.py::A"]
    mutant(module, 5)  # u.py's import ran it: every test of u.py
    assert mutation.selected_check("core/ledger.py") == [*base, "u.py::D", "u.py::E"]


def test_a_line_run_at_an_import_or_outside_the_map_runs_the_whole_check(mapped: tuple[ModuleType, Path]) -> None:
    mutation, module = mapped
    whole = mutation.trust_check("core/ledger.py")
    for line in (4, 6, 7):  # a plugin's import ran it; a continuation line; module level
        mutant(module, line)
        assert mutation.selected_check("core/ledger.py") == whole, line
    assert mutation.function_bodies(SOURCE) == {2, 3, 4, 5, 6}


def test_each_line_maps_to_the_tests_that_execute_it_in_process_and_in_subprocesses(tmp_path: Path) -> None:
    pytest.importorskip("coverage", reason="the mapping run needs coverage (pip install coverage)")
    (tmp_path / "target.py").write_text(
        textwrap.dedent(
            """\
            def in_process():
                return 1

            def in_child():
                return 2

            def at_import():
                return 3

            if __name__ == "__main__":
                in_child()

            import functools

            @functools.lru_cache
            def cached():
                return 4
            """
        )
    )
    (tmp_path / "oneroof_target.py").write_text("from target import *\n")  # a module of oneroof's name
    (tmp_path / "test_it.py").write_text(
        textwrap.dedent(
            """\
            import subprocess, sys
            import oneroof_target, target

            CASES = target.at_import()

            def test_a():
                assert target.in_process() == 1

            def test_b():
                subprocess.run([sys.executable, "target.py"], check=True)

            def test_c():
                assert target.cached() == 4

            def test_d():
                assert target.cached() == 4
            """
        )
    )
    (tmp_path / "rc").write_text(
        f"[run]\ndata_file = {tmp_path / 'cov'}\nparallel = true\npatch = subprocess\ninclude = */target.py\n"
    )
    env = {
        "PYTHONPATH": f"{tmp_path}:{BENCH}",
        "MUTATION_ORDER": str(tmp_path / "order.json"),
        "PATH": os.environ["PATH"],
    }
    run = [sys.executable, "-m", "coverage"]
    pytest_args = ["-p", "mutation_contexts", "-p", "no:cacheprovider", "-q", "test_it.py"]
    subprocess.run([*run, "run", "--rcfile=rc", "-m", "pytest", *pytest_args], cwd=tmp_path, env=env, check=True)
    subprocess.run([*run, "combine", "--rcfile=rc"], cwd=tmp_path, env=env, check=True, capture_output=True)
    subprocess.run(
        [*run, "json", "--rcfile=rc", "--show-contexts", "-o", "cov.json"], cwd=tmp_path, env=env, check=True
    )
    (entry,) = json.loads((tmp_path / "cov.json").read_text())["files"].values()
    contexts = entry["contexts"]
    assert contexts["2"] == ["test_it.py::test_a"]
    assert contexts["5"] == ["test_it.py::test_b"]  # in the subprocess test_b started
    assert contexts["8"] == ["collect:test_it.py"]  # the test module's import ran it
    # a cached call runs again for each test: the plugin empties the caches of oneroof's modules
    assert set(contexts["17"]) == {"test_it.py::test_c", "test_it.py::test_d"}
    assert set(contexts["1"]) == {"collect:test_it.py", "test_it.py::test_b"}  # target.py's import (and test_b's)
    assert json.loads((tmp_path / "order.json").read_text()) == [
        "test_it.py::test_a",
        "test_it.py::test_b",
        "test_it.py::test_c",
        "test_it.py::test_d",
    ]


def test_a_checks_processes_know_cosmic_rays_replacement_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`except (CosmicRayTestingException, ValueError)` still catches a ValueError in a check's
    process: the mutant replaced one name of the handler, not the whole handler.
    """
    pytest.importorskip("cosmic_ray", reason="the trust run's checks need cosmic-ray (pip install cosmic-ray)")
    mutation = bench("mutation")
    monkeypatch.setattr(mutation, "SITE", tmp_path / "site")
    env = mutation.child_env()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "site")
    code = "try:\n    int('x')\nexcept (CosmicRayTestingException, ValueError):\n    print('caught')\n"
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert (ran.returncode, ran.stdout) == (0, "caught\n"), ran.stderr[-300:]
