"""What scripts and terminals read (issue 21, "Should fix"): `--json` on the commands a script
calls, each document parsing whole and holding its documented keys; colour on verdict lines only
on a terminal; `monitor --until-open`; and the line under a verdict saying what it means.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from oneroof.executor import output, report
from oneroof.executor.monitor import Report, until_open
from oneroof.harness import clones
from oneroof.harness.db import connect
from tests.support.processes import clean_env
from tests.support.testing import ROOT, PgServer, one_line_error, signers

OUTCOME_KEYS = {
    "result",
    "database",
    "package_sha256",
    "approvals",
    "entry",
    "exit",
    "seconds",
    "metrics",
    "audit_exit",
    "reasons",
    "blocked_by",
}
REHEARSAL_KEYS = {
    "ok",
    "interrupted",
    "verdict",
    "meaning",
    "golden",
    "golden_origin",
    "package_sha256",
    "run_dir",
    "evidence",
    "reports",
    "kept_clone_dsn",
    "failed_steps",
}
AUDIT_KEYS = {"ok", "database", "system_identifier", "allowed_signers_sha256", "approvals", "deployments"}


def as_json(result: Any, code: int) -> Any:
    """The one JSON document of stdout (nothing else is there), after the exit code it must have."""
    assert result.returncode == code, result.stdout + result.stderr
    return json.loads(result.stdout)


# -- --json ----------------------------------------------------------------------------------------


def test_golden_list_and_clone_list_json(test_server: PgServer, clone: clones.Clone, oneroof: Any) -> None:
    found = as_json(oneroof("golden", "list", "--json", "--dsn", test_server.admin), 0)
    assert set(found) == {"goldens"}
    mine = next(g for g in found["goldens"] if g["name"] == test_server.golden)
    assert set(mine) == {"name", "kind", "description", "provenance"} and mine["kind"] == "synthetic"
    listed = as_json(oneroof("clone", "list", "--json", "--dsn", test_server.admin), 0)
    assert set(listed) == {"clones"}
    assert {"name": clone.name, "source": test_server.golden, "dsn": clone.dsn} in listed["clones"]


def test_rollout_rollback_and_approvals_verify_json(clone: clones.Clone, oneroof: Any) -> None:
    target = ("--dsn", clone.dsn, "--confirm-db", clone.name, "--json")
    closed = as_json(oneroof("rollout", *target), 3)
    assert set(closed) == OUTCOME_KEYS and closed["result"] == "BLOCKED"
    assert closed["reasons"] == ["valid approvals 0 < 1"] and list(closed["blocked_by"]) == ["approvals"]
    assert closed["entry"] == closed["exit"] and closed["database"] == clone.name
    with connect(clone.dsn, autocommit=True) as conn:
        approval = signers().approve(conn, "l4")
    applied = as_json(oneroof("rollout", *target), 0)
    assert set(applied) == OUTCOME_KEYS and applied["result"] == "APPLIED"
    assert applied["approvals"] == [approval] and applied["metrics"]["own"] == 35 and applied["audit_exit"] == 0
    audit = as_json(oneroof("approvals", "verify", "--json", "--dsn", clone.dsn), 0)
    assert set(audit) == AUDIT_KEYS and audit["ok"] and audit["database"] == clone.name
    assert [f["ok"] for f in audit["approvals"]] == [True] and len(audit["deployments"]) == 1
    assert set(audit["deployments"][0]) == {"what", "ok", "detail"}
    reverted = as_json(oneroof("rollback", *target), 0)
    assert set(reverted) == OUTCOME_KEYS and reverted["result"] == "REVERTED" and reverted["metrics"]["own"] == 0
    again = as_json(oneroof("rollback", *target), 0)
    assert again["result"] == "ALREADY-GREENFIELD" and again["entry"] == again["exit"]


def test_rehearse_json_the_meaning_and_the_terms(test_server: PgServer, oneroof: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = ("rehearse", "--dsn", test_server.admin, "--golden", test_server.golden, "--runs-dir", str(runs))
    done = as_json(oneroof(*args, "--json"), 0)
    assert set(done) == REHEARSAL_KEYS and done["ok"] and not done["interrupted"] and done["failed_steps"] == []
    assert set(done["verdict"]) == {"release_readiness", "production_execution"}
    assert Path(done["evidence"]).is_file() and Path(done["reports"]["md"]).is_file()
    assert done["meaning"].startswith("What this means: the release holds on a copy, but production was not read")
    text = oneroof("report", "--run", done["run_dir"], "--format", "text").stdout.splitlines()
    verdict = next(i for i, line in enumerate(text) if line.startswith("PRODUCTION EXECUTION:"))
    assert text[verdict + 1].startswith("What this means:")
    markdown = Path(done["reports"]["md"]).read_text()
    assert done["meaning"] in markdown and "## Terms" in markdown
    for term, _text in report.GLOSSARY:
        assert f"- **{term}**:" in markdown


# -- colour ----------------------------------------------------------------------------------------


def on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """`oneroof ARGS` with its stdout on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oneroof.executor", *args],
            cwd=ROOT,
            env=env,
            stdout=follower,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=120)
    finally:
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_verdict_lines_are_coloured_only_on_a_terminal(test_server: PgServer, oneroof: Any) -> None:
    dsn = test_server.dsn(test_server.golden)
    env = clean_env(TERM="xterm")
    coloured = on_a_terminal("monitor", "--dsn", dsn, env=env)
    assert f"{output.YELLOW}BLOCKED: valid approvals 0 < 1" in coloured
    painted = [line for line in coloured.splitlines() if "\033[" in line]
    assert painted and all(  # each BLOCKED line, and nothing else
        line.startswith(f"{output.YELLOW}BLOCKED: ") and line.endswith(output.RESET) for line in painted
    ), painted
    for plain in (
        on_a_terminal("monitor", "--dsn", dsn, "--no-color", env=env),
        on_a_terminal("monitor", "--dsn", dsn, env={**env, "NO_COLOR": "1"}),
        on_a_terminal("monitor", "--dsn", dsn, env={**env, "TERM": "dumb"}),
        on_a_terminal("monitor", "--dsn", dsn, "--json", env=env),
        oneroof("monitor", "--dsn", dsn).stdout,  # a pipe
    ):
        assert "\033[" not in plain and "BLOCKED" in plain


def test_paint_reads_no_go_as_no_go() -> None:
    lines = "RELEASE READINESS: GO (x)\nPRODUCTION EXECUTION: NO-GO until y\nBLOCKED: z\nOPEN\nGolden g: GO"
    painted = output.paint(lines, True).split("\n")
    assert painted[0] == f"{output.GREEN}RELEASE READINESS: GO (x){output.RESET}"
    assert painted[1] == f"{output.RED}PRODUCTION EXECUTION: NO-GO until y{output.RESET}"
    assert painted[2].startswith(output.YELLOW) and painted[3].startswith(output.GREEN)
    assert painted[4] == "Golden g: GO"
    assert output.paint(lines, False) == lines


# -- monitor --until-open --------------------------------------------------------------------------


def shot(verdict: str, *reasons: str) -> Report:
    return Report("db", verdict, list(reasons), [], "greenfield", [], {}, "e", "e")


def test_until_open_waits_longer_each_time_and_says_each_change() -> None:
    said: list[str] = []
    slept: list[float] = []
    now = [0.0]
    reads = iter([shot("BLOCKED", "valid approvals 0 < 1"), shot("BLOCKED", "valid approvals 0 < 1"), shot("OPEN")])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    final = until_open(lambda: next(reads), timeout=None, progress=said.append, sleep=sleep, clock=lambda: now[0])
    assert final.verdict == "OPEN" and slept == [2.0, 3.0]
    assert said == [
        "0 s: BLOCKED: valid approvals 0 < 1; next read in 2 s",
        "2 s: still BLOCKED; next read in 3 s",
        "5 s: OPEN",
    ]


def test_until_open_stops_at_its_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    final = until_open(
        lambda: shot("BLOCKED", "r"), timeout=10, progress=lambda _m: None, sleep=sleep, clock=lambda: now[0]
    )
    assert final.verdict == "BLOCKED" and now[0] == 10  # 2 + 3 + 4.5, then the last 0.5 s: never past it


def test_monitor_until_open_exits_0_once_a_human_approves(clone: clones.Clone) -> None:
    env = clean_env(ONEROOF_ALLOWED_SIGNERS=str(signers().trust.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneroof.executor", "monitor", "--dsn", clone.dsn, "--until-open", "--timeout", "300"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first read: BLOCKED
        assert "BLOCKED: valid approvals 0 < 1; next read in 2 s" in first, first
        with connect(clone.dsn, autocommit=True) as conn:
            signers().approve(conn, "l4")
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out.startswith("OPEN\n") and err.rstrip().splitlines()[-1].endswith(": OPEN")


def test_monitor_until_open_times_out_with_exit_3(clone: clones.Clone, oneroof: Any) -> None:
    started = time.monotonic()
    waited = oneroof("monitor", "--dsn", clone.dsn, "--until-open", "--timeout", "3")
    assert waited.returncode == 3 and waited.stdout.startswith("BLOCKED: valid approvals 0 < 1")
    assert "oneroof: the gate did not open within 3 s (exit 3)" in waited.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "args", [("--until-open", "--timeout", t) for t in ("0", "-5", "nan", "inf")] + [("--timeout", "5")]
)
def test_monitor_until_open_refuses_a_bad_timeout(
    clone: clones.Clone, oneroof_main: Any, args: tuple[str, ...]
) -> None:
    # What the command line parses and says is the subject, not its process: run in this one.
    one_line_error(oneroof_main("monitor", "--dsn", clone.dsn, *args), "--timeout")
