"""The executor's stage sessions (executor/sessions.py): forked from a prepared worker, with only
the suite's plugins, they keep every check: the same tests pass and fail, in the same numbers, as
in a plain `python -m pytest` of the same stage with every installed plugin; each is a process of
its own, fresh, and killed when it outlives STAGE_TIMEOUT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import settings
from oneroof.executor import release, sessions
from oneroof.harness import clones
from tests.support.testing import ROOT, signers

# The ospa figure moves (an unsigned approval row): baseline fails it, the gate session fails on
# it, and the finalized stage, on a greenfield clone, fails nearly everything.
VIOLATION = (
    "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256) "
    "SELECT p.id, a.user_id, a.level, p.package_sha256 FROM os_proposals p, os_approvers a "
    "WHERE a.kind = 'human' AND a.level = 'L4' LIMIT 1"
)


def outcomes(junit: Path) -> dict[str, str]:
    """Each test case of a JUnit file by its id: passed, failed, error or skipped."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        found[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return found


def plain_session(
    dsn: str, stages: str, expect_db: str, junit: Path, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The stage as a plain `python -m pytest` of its own, every installed plugin loaded (hypothesis
    and xdist included): what the executor ran before its sessions were slimmed and forked.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))}
    env.update(
        {
            settings.DSN.env: dsn,
            settings.EXPECT_DB.env: expect_db,
            settings.RELEASE_SESSION_ENV: "1",
            settings.ALLOWED_SIGNERS.env: str(signers().trust.path),
        }
    )
    args = release.session_args()
    at = args.index("syrupy")
    del args[at - 1 : at + 1]  # its `-p syrupy`: here syrupy loads from its entry point, as every plugin does
    command = [sys.executable, "-m", "pytest", *args, "-m", stages, "-q", "--junitxml", str(junit), *extra]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=600)


@pytest.mark.parametrize("violated", [False, True], ids=["intact", "violated"])
def test_stage_sessions_keep_every_check(clone: clones.Clone, clone_conn: Any, tmp_path: Path, violated: bool) -> None:
    if violated:
        clone_conn.execute(VIOLATION)
    stages: list[tuple[str, tuple[str, ...]]] = [
        ("baseline", ()),
        ("greenfield", ()),
        ("gate or baseline", release.GATE_SESSION),
        ("finalized", ()),
    ]
    for stages_, extra in stages:
        name = stages_.replace(" ", "-")
        plain_junit, forked_junit = tmp_path / f"plain-{name}.xml", tmp_path / f"forked-{name}.xml"
        plain = plain_session(clone.dsn, stages_, clone.name, plain_junit, extra)
        forked = release.run_stage(
            clone.dsn,
            stages_,
            expect_db=clone.name,
            extra=(*extra, "--junitxml", str(forked_junit)),
            allowed_signers=signers().trust.path,
        )
        assert forked == plain.returncode, (stages_, plain.stdout[-2000:], plain.stderr[-2000:])
        assert outcomes(forked_junit) == outcomes(plain_junit), stages_
        assert len(outcomes(forked_junit)) > 10, stages_
    # the control: the violation is seen (and only then), so the comparison compared failures too
    assert ("failure" in outcomes(tmp_path / "forked-baseline.xml").values()) is violated


def test_each_session_is_a_process_of_its_own_forked_from_one_worker(clone: clones.Clone) -> None:
    sessions.prepare()
    worker = sessions._idle[-1]
    args = [*release.session_args(), "-m", "baseline", "-q"]
    env = {settings.DSN.env: clone.dsn, settings.EXPECT_DB.env: clone.name, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    first, second = (sessions.run(args, env, ROOT, quiet=True, timeout=600) for _ in range(2))
    assert (first.code, second.code) == (0, 0)
    assert len({first.pid, second.pid, worker.proc.pid, os.getpid()}) == 4
    assert first.max_rss_kb > 10_000 and first.cpu_seconds > 0  # a whole pytest process, by the worker's wait4
    assert sessions._idle[-1] is worker and worker.proc.poll() is None  # reused, not started again


def test_a_session_that_outlives_the_timeout_is_killed(clone: clones.Clone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release, "STAGE_TIMEOUT", 0.001)
    assert release.run_stage(clone.dsn, "greenfield", expect_db=clone.name) == release.STAGE_TIMED_OUT
    monkeypatch.undo()
    assert release.run_stage(clone.dsn, "baseline", expect_db=clone.name) == 0  # the worker still serves


def test_a_session_loads_the_suites_plugins_only(clone: clones.Clone, capfd: pytest.CaptureFixture[str]) -> None:
    """No plugin from an entry point but syrupy (hypothesis, installed for the tests, stays out);
    xdist only when the session spreads over workers; another only when named with -p.
    """
    assert release.run_stage(clone.dsn, "baseline", expect_db=clone.name, quiet=False) == 0
    serial = capfd.readouterr().out
    assert "plugins: syrupy-" in serial.replace("\n", " ")
    assert "hypothesis" not in serial and "xdist" not in serial and "created: 2/2 workers" not in serial
    assert release.run_stage(clone.dsn, "baseline", expect_db=clone.name, quiet=False, extra=("-n", "2")) == 0
    spread = capfd.readouterr().out
    assert "created: 2/2 workers" in spread and "14 passed" in spread
    named = ("-p", "hypothesispytest")
    assert release.run_stage(clone.dsn, "baseline", expect_db=clone.name, quiet=False, extra=named) == 0
    assert "hypothesis-" in capfd.readouterr().out


def test_the_worker_rewrites_the_asserts_ahead_and_a_changed_file_afresh(tmp_path: Path) -> None:
    kept, changed, other = (tmp_path / f"test_{n}.py" for n in ("kept", "changed", "other"))
    for path in (kept, changed, other):
        path.write_text("def test():\n    x = 1\n    assert x == 2\n")
    rewrite_test = sessions.rewrite_ahead([kept, changed, tmp_path / "test_missing.py"])
    changed.write_text("def test():\n    x = 3\n    assert x == 4\n")

    def message(path: Path) -> str:
        stat, code = rewrite_test(path, None)
        assert stat.st_size == path.stat().st_size
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        with pytest.raises(AssertionError) as caught:
            namespace["test"]()
        return str(caught.value)

    assert rewrite_test(kept, None)[1] is rewrite_test(kept, None)[1]  # the worker's code object, handed out again
    # pytest's rewrite gives the failed comparison as the message; a plain assert gives none ("")
    assert message(kept) == "assert 1 == 2"
    assert message(changed) == "assert 3 == 4"  # the file as it is now, not as the worker read it
    assert rewrite_test(changed, None)[1] is not rewrite_test(changed, None)[1]
    assert message(other) == "assert 1 == 2"  # a file the worker never saw: rewritten as pytest would


def test_the_files_rewritten_ahead_are_those_a_session_rewrites(clone: clones.Clone, capfd: Any) -> None:
    files = {str(p.resolve()) for p in sessions.rewritten_files()}  # a worktree's import path is a link tree
    assert {str(ROOT / "invariants" / "conftest.py"), str(ROOT / "fixtures" / "plugin.py")} <= files
    assert any(f.endswith(os.path.join("syrupy", "__init__.py")) for f in files)
    # a session's failed assert still shows what pytest's rewrite adds: the values and their diff
    assert release.run_stage(clone.dsn, "baseline", expect_db="not_this_one", quiet=False) == 1
    out = capfd.readouterr().out
    assert "== 'not_this_one'" in out and "- not_this_one" in out and f"+ {clone.name}" in out, out
