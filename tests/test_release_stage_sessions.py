"""The executor's stage sessions (release.run_stage) on a clone, each selecting no test (pytest's
exit 5, "no tests ran", in about half a second): the caller's PYTEST_* settings do not reach them,
`-n` loads xdist for them, and what they print is discarded by default. Each was a mutant of
executor/release.py that the mutation check did not kill (bench/mutation.py,
docs/results/mutation.md).
"""

from __future__ import annotations

import pytest

from oneroof.executor import release
from oneroof.harness import clones

NO_TESTS_RAN = 5  # pytest.ExitCode.NO_TESTS_COLLECTED: every test deselected


def test_a_stage_session_takes_none_of_the_callers_pytest_settings(
    clone: clones.Clone, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "--no-such-option")  # pytest's usage error (exit 4) if it got through
    assert release.run_stage(clone.dsn, "no_such_stage") == NO_TESTS_RAN
    assert capfd.readouterr() == ("", "")  # quiet unless asked: a rollout prints no session's output
    assert release.run_stage(clone.dsn, "no_such_stage", quiet=False) == NO_TESTS_RAN
    said = capfd.readouterr().out  # as `oneroof verify` shows it: pytest's own header and summary
    assert said.startswith("=") and "\nrootdir: " in said and " deselected in " in said, said


@pytest.mark.parametrize("workers", [("-n", "0"), ("--numprocesses=0",)], ids=["-n", "--numprocesses"])
def test_a_stage_session_spread_over_workers_loads_xdist(clone: clones.Clone, workers: tuple[str, ...]) -> None:
    assert release.run_stage(clone.dsn, "no_such_stage", extra=workers) == NO_TESTS_RAN
