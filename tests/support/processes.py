"""The verification suite and the executor as processes of their own, as the project's tests (and
bench/mutation.py) start them: one spelling of the suite's command line, of an executor's clean
environment, and of the Ctrl-C a terminal sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.testing import ROOT, signers

INVARIANTS = ROOT / "invariants"


def suite_args(dsn: str, *options: str, paths: Sequence[Path] = (INVARIANTS,), expect_db: str = "") -> list[str]:
    """Pytest's arguments for a session of the verification suite (`paths`) on `dsn`, as `oneroof
    verify` runs it: this checkout's rootdir and pyproject.toml, no cache, `--expect-db` when
    given, then `options`.
    """
    return [
        *map(str, paths),
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        "-p",
        "no:cacheprovider",
        "--dsn",
        dsn,
        *(["--expect-db", expect_db] if expect_db else []),
        *options,
    ]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without its PG*, ONEROOF_* and PYTEST_* variables, plus
    `settings`: an executor started with it reads only what its command line and the test say.
    Its release log is this test process's own (never the user's), unless `settings` name one.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ONEROOF_", "PYTEST_"))}
    return {**env, "ONEROOF_RELEASE_LOG": str(signers().directory / "release-log.jsonl"), **settings}


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`argv` from the checkout, to its end, its output captured."""
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_executor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m oneroof.executor *args` from the checkout, to its end (clean_env() unless `env`)."""
    return _run([sys.executable, "-m", "oneroof.executor", *args], clean_env() if env is None else env, timeout)


def run_suite(
    dsn: str, *options: str, env: dict[str, str], expect_db: str = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The verification suite on `dsn` as an auditor runs it: a plain `python -m pytest` (suite_args)
    from the checkout, to its end.
    """
    return _run([sys.executable, "-m", "pytest", *suite_args(dsn, *options, expect_db=expect_db)], env, timeout)


def start_executor(*args: str, env: dict[str, str] | None = None, group: bool = False) -> subprocess.Popen[str]:
    """`python -m oneroof.executor *args` from the checkout, started and left running, its output
    piped (clean_env() unless `env`); `group`: in a process group of its own, for interrupt().
    """
    return subprocess.Popen(
        [sys.executable, "-m", "oneroof.executor", *args],
        cwd=ROOT,
        env=clean_env() if env is None else env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=group,
    )


def interrupt(proc: subprocess.Popen[str], after: str = "") -> tuple[str, str]:
    """Ctrl-C `proc` (started with group=True) as a terminal does, SIGINT to its whole process group:
    at once, or once a line of its stderr contains `after`. Waits for it to end and returns its
    (stdout, stderr), the stderr read before the signal included.
    """
    seen: list[str] = []
    reached = not after
    if after:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if after in line:
                reached = True
                break
    if reached:  # else it ended without that line, and the caller's check of its exit says so
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return out, "".join(seen) + err
