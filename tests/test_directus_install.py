"""The npm install of Directus is not silent: while npm runs, a line with the elapsed time and
npm's latest output comes every heartbeat. A stand-in npm (a shell script that prints, sleeps and
fails) plays the part of the minutes-long install.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import directus


def test_a_long_npm_install_reports_progress_every_heartbeat(tmp_path: Path) -> None:
    if shutil.which("sh") is None:
        pytest.skip("needs /bin/sh for the stand-in npm")
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\necho 'npm http fetch GET 200 directus'\nsleep 2.6\necho 'npm ERR! gave up'\nexit 3\n")
    npm.chmod(0o755)
    lines: list[str] = []
    with pytest.raises(directus.InstallFailed, match="failed with exit code 3") as failed:
        (tmp_path / "cache").mkdir()
        directus._npm_install(
            tmp_path / "cache", npm=str(npm), node="node", timeout=60, progress=lines.append, heartbeat=1.0
        )
    assert "npm ERR! gave up" in str(failed.value)
    assert lines[0].startswith(f"installing directus@{directus.DIRECTUS_VERSION} with npm into")
    beats = lines[1:]
    assert len(beats) >= 2, lines
    assert beats[0].endswith("s elapsed; npm: npm http fetch GET 200 directus")
    assert [int(b.split(": ")[1].split(" s elapsed")[0]) for b in beats][:2] == [1, 2]
