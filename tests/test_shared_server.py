"""Two runs of the test suite against one shared server (two CI jobs, two branches) do not
collide: every database and role a run makes carries the run's own id, and the run drops them
all at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.support import testing
from tests.support.testing import ROOT, PgServer, leftovers

# A few tests that make named databases (clones, a renamed clone, a gc source) and a role.
INNER = [
    "tests/test_clones.py::test_clone_is_marked_listed_and_dropped",
    "tests/test_clones.py::test_a_renamed_clone_loses_its_mark",
    "tests/test_clones.py::test_gc_drops_idle_clones_and_keeps_busy_ones",
    "tests/test_cli.py::test_a_role_without_privileges_is_a_one_line_error",
]


@pytest.mark.proof
def test_two_concurrent_runs_on_one_server_both_pass_and_leave_nothing(test_server: PgServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ONEROOF_", "PYTEST_"))}
    env["ONEROOF_TEST_SERVER"] = test_server.admin
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", *INNER, "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, out in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out
    ids = [re.search(r"; run ([0-9a-f]{6}) \(", out) for out in outputs]
    assert all(ids), outputs
    run_ids = [m.group(1) for m in ids if m]
    assert run_ids[0] != run_ids[1]
    for run_id in run_ids:
        assert leftovers(test_server.admin, run_id) == ([], []), f"run {run_id} left databases or roles behind"


@pytest.mark.parametrize(
    ("numprocesses", "dist", "chosen"),
    [(2, "no", "worksteal"), (2, "load", "load"), (2, "loadgroup", "loadgroup"), (0, "no", "no"), (None, "no", "no")],
)
def test_n_without_dist_distributes_by_work_stealing(numprocesses: int | None, dist: str, chosen: str) -> None:
    """docs/testing.md: `-n N` alone steals work between the workers; a `--dist` given is kept."""
    config = SimpleNamespace(option=SimpleNamespace(numprocesses=numprocesses, dist=dist))
    testing.pytest_cmdline_main(config)  # type: ignore[arg-type]
    assert config.option.dist == chosen
