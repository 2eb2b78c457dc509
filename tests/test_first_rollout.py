"""docs/first-rollout.md, run as a reader would: every command of the blocks it marks
`<!-- tutorial-runs -->` (or `<!-- tutorial-runs: exit N -->`), in order, in one shell, each
checked against the exit code the page states. The production is a demo production on an
embedded PostgreSQL 18 of the test's own, and Directus 11.3.5 really serves it.

Three things differ from a reader's machine, and only these: `oneroof` is this checkout's
(`python -m oneroof.executor`), `npx directus` is the cached install of tests/support/directus.py
(the page's `npm install` block is not run), and Directus's port 8055 is a free port.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.directus import Installation, free_port
from tests.support.processes import clean_env
from tests.support.testing import ROOT

pytestmark = pytest.mark.directus
PAGE = ROOT / "docs" / "first-rollout.md"
MARK = re.compile(r"^<!--\s*tutorial-runs(?:\s*:\s*exit\s+(?P<code>\d+))?\s*-->\s*$")
# The path the page must walk, in this order (issue 21: from nothing to a rollback, through Directus).
PATH = (
    "oneroof demo production",
    "npx directus start",
    "oneroof golden snapshot --from",
    "oneroof rehearse --from",
    "oneroof approve",
    'oneroof monitor --dsn "$PROD" --until-open',
    "oneroof rollout",
    "oneroof monitor",
    "oneroof rollback",
)
SCRIPT_TIMEOUT = 900.0


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    expected: int


def commands(page: Path = PAGE) -> list[Command]:
    """The page's marked commands, a continued line (ending in a backslash) joined to the next."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Command] = []
    for index, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if not mark:
            continue
        assert lines[index + 1].startswith("```"), f"{page.name}:{index + 1}: a mark stands before a block"
        pending = ""
        for number in range(index + 2, len(lines)):
            body = lines[number]
            if body.startswith("```"):
                break
            pending += body
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if pending.strip():
                found.append(Command(number + 1, pending.strip(), int(mark["code"] or 0)))
            pending = ""
    return found


def script(found: list[Command], port: int, directus_cli: Path) -> str:
    """One bash script: the bindings above, then each command followed by its exit-code check."""
    out = [
        "set -u",
        f'oneroof() {{ {shlex.quote(sys.executable)} -m oneroof.executor "$@"; }}',
        f'npx() {{ if [ "$1" = directus ]; then shift; node {shlex.quote(str(directus_cli))} "$@"; '
        'else command npx "$@"; fi; }',
    ]
    for command in found:
        text = command.text.replace("8055", str(port))
        out += [
            f"echo {shlex.quote(f'+ line {command.line}: {text}')} >&2",
            text,
            f'rc=$?; if [ "$rc" -ne {command.expected} ]; then echo "tutorial line {command.line}: exit $rc, '
            f'the page says {command.expected}" >&2; exit 90; fi',
        ]
    return "\n".join(out) + "\n"


def stop_group(group: int, grace: float = 20.0) -> None:
    """SIGTERM to the script's process group, then, after `grace` seconds, SIGKILL to what is left."""
    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # ProcessLookupError once the whole group is gone
            time.sleep(0.2)
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_the_page_walks_the_whole_path_with_directus() -> None:
    texts = [c.text for c in commands()]
    at = 0
    for step in PATH:
        hits = [i for i, text in enumerate(texts) if step in text and i >= at]
        assert hits, f"docs/first-rollout.md runs no `{step}` after `{texts[at - 1] if at else 'the start'}`"
        at = hits[0] + 1
    assert (ROOT / "README.md").read_text(encoding="utf-8").count("docs/first-rollout.md") >= 1


def test_the_first_production_rollout_runs_as_the_page_says(directus_install: Installation, tmp_path: Path) -> None:
    work, home = tmp_path / "first-rollout", tmp_path / "home"
    work.mkdir()
    env = clean_env(ONEROOF_HOME=str(home))
    body = script(commands(), free_port(), directus_install.cli)
    proc = subprocess.Popen(
        ["bash", "-c", body],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Directus, started in the background by the page, is in this group
    )
    try:
        out, err = proc.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the page's commands did not finish within {SCRIPT_TIMEOUT:.0f} s:\n{err[-4000:]}")
    finally:
        stop_group(proc.pid)  # Directus, which the page started in the background
        subprocess.run(
            [sys.executable, "-m", "oneroof.executor", "server", "stop"], env=env, capture_output=True, timeout=120
        )
    log = (work / "directus.log").read_text(errors="replace")[-2000:] if (work / "directus.log").exists() else ""
    assert proc.returncode == 0, f"{err[-6000:]}\n--- stdout ---\n{out[-3000:]}\n--- directus.log ---\n{log}"
    rehearsal = json.loads((work / "rehearsal.json").read_text())
    assert rehearsal["ok"] and rehearsal["verdict"]["production_execution"] == "NO-GO until os_proposal_approvals ≥ 1"
    assert "healthy result" in rehearsal["meaning"]
    assert "APPROVED: approval #" in out
    assert "APPLIED: demo_production" in out and "REVERTED: demo_production" in out
    assert "note: state=finalized: tiers 2-6 are already applied" in out
    assert "1 deployments (1 verified)" in out
