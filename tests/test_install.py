"""A non-editable install works on its own, from another directory: the installed copy carries the
release package (rollout/), its expected figures (snapshots/), the invariants and the plugin, and
`oneroof verify` runs the suite without the checkout's conftest.py or pyproject.toml.

How the venv is made, and why so:

- The machine's site-packages hold an *editable* install of a checkout (an `__editable__` .pth
  that installs an import hook mapping `oneroof.*` to that checkout). A venv made with
  `--system-site-packages` processes that .pth, and `oneroof` being a namespace package, the hook
  joins its path: a file the installed copy lacks (a dropped package-data entry) would then be
  found in the checkout, and the test would prove nothing. So the venv is made without the
  system site-packages, and a .pth file of our own in the venv's site-packages lists the system's
  site-packages directory: a plain directory entry, appended after the venv's own, whose .pth
  files (the editable hook among them) are never run. The dependencies (psycopg, pytest, ...) and
  pip come from there, and no network is needed for them (`pip install --no-deps`).
- The checkout is copied first, without build/ and *.egg-info: setuptools builds in the source
  tree, and files a former build left in build/lib would be installed even after pyproject.toml
  stopped listing them.
- pip builds in an isolated environment: pyproject.toml asks for setuptools>=68 (and so `wheel`),
  which the index pip is configured with provides, as for CI's own `pip install -e .`; the
  system's setuptools may be older and lack `wheel`, so `--no-build-isolation` is not used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from oneroof.core import package
from oneroof.executor.cli import build_parser
from oneroof.harness import clones
from tests.support.testing import ROOT

JUNK = ("build", "dist", "*.egg-info", ".git", ".venv", ".oneroof-path", ".hypothesis", ".ruff_cache", "__pycache__")


def run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with a non-editable install of a clean copy of the checkout."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*JUNK))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = run(
        venv / "bin" / "python",
        "-c",
        "import sysconfig; print(sysconfig.get_path('purelib'))",
        cwd=base,
        env=clean_env(base),
    )
    (Path(purelib.stdout.strip()) / "system-site-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
        source,
        cwd=base,
        env=clean_env(base),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shutil.rmtree(source)  # nothing may be read from the copy either
    return venv


def clean_env(home: Path) -> dict[str, str]:
    """The caller's environment without anything that points at a checkout or a server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        and not k.startswith(("PG", "ONEROOF_", "PYTEST_"))
    }
    env["ONEROOF_HOME"] = str(home / "oneroof-home")
    return env


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is not the checkout, with no conftest.py or pyproject.toml."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_the_installed_copy_is_imported_not_the_checkout(venv: Path, elsewhere: Path) -> None:
    found = run(
        venv / "bin" / "python",
        "-c",
        "import sys, oneroof, oneroof.core, oneroof.core.package as p, oneroof.snapshots, oneroof.rollout\n"
        "print(oneroof.core.__file__); print(p.DEFAULT_DIR); print(list(oneroof.__path__)); print(sys.path)",
        cwd=elsewhere,
        env=clean_env(elsewhere),
    )
    assert found.returncode == 0, found.stderr
    core, default_dir, namespace, path = found.stdout.splitlines()
    site = next(venv.glob("lib/python*/site-packages")).resolve()
    assert Path(core).resolve().is_relative_to(site), core
    assert Path(default_dir).resolve() == site / "oneroof" / "rollout"
    assert namespace == repr([str(site / "oneroof")]), "the editable install's hook joined the namespace"
    assert str(ROOT) not in path


def test_every_help_of_the_installed_command(venv: Path, elsewhere: Path) -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands: list[tuple[str, ...]] = [(), *((name,) for name in sub.choices)]
    assert len(commands) > 10
    for command in commands:
        shown = run(venv / "bin" / "oneroof", *command, "--help", cwd=elsewhere, env=clean_env(elsewhere))
        assert shown.returncode == 0, (command, shown.stderr)
        assert shown.stdout.startswith(f"usage: {' '.join(('oneroof', *command))}"), shown.stdout


def test_the_installed_package_hashes_bundles_and_verifies(venv: Path, elsewhere: Path, clone: clones.Clone) -> None:
    env = clean_env(elsewhere)
    oneroof = venv / "bin" / "oneroof"
    pinned = package.load().sha256
    hashed = run(oneroof, "package", "hash", cwd=elsewhere, env=env)
    assert hashed.returncode == 0 and hashed.stdout.strip() == pinned, hashed.stderr
    bundled = run(oneroof, "package", "bundle", elsewhere / "b", cwd=elsewhere, env=env)
    assert bundled.returncode == 0 and bundled.stdout.splitlines() == [str(elsewhere / "b"), pinned], bundled.stderr
    # A clone of the tests' golden database: the same figures, and no session left on the template.
    verified = run(
        oneroof,
        "verify",
        "--stage",
        "baseline",
        "--dsn",
        clone.dsn,
        "--expect-db",
        clone.name,
        "-q",
        cwd=elsewhere,
        env=env,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "passed" in verified.stdout and str(ROOT) not in verified.stdout
