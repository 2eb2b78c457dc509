"""The ratification page (extensions/oneroof-ratify) built for the tests: @directus/extensions-sdk
installed once with npm into a cache directory outside the repository (`ONEROOF_RATIFY_CACHE`,
default ~/.cache/oneroof/ratify-extension-<hash of its package.json>), then each build in a
directory of the test's own, with the summary of the package under test written into its source.

Without node or npm the tests that need it skip, or fail under ONEROOF_DIRECTUS_REQUIRED, as the
Directus tests do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import filelock
import pytest

from oneroof.core import package
from oneroof.executor.ratify import package_summary
from tests.support import directus
from tests.support.testing import ROOT

EXTENSION = ROOT / "extensions" / "oneroof-ratify"
CACHE_ENV = "ONEROOF_RATIFY_CACHE"
MARKER = "oneroof-installed.json"
INSTALL_TIMEOUT = 900.0
BUILD_TIMEOUT = 300.0


def cache_dir() -> Path:
    """Where the SDK is installed: $ONEROOF_RATIFY_CACHE, else a directory per package.json."""
    digest = hashlib.sha256((EXTENSION / "package.json").read_bytes()).hexdigest()[:12]
    default = Path("~/.cache/oneroof") / f"ratify-extension-{digest}"
    return Path(os.environ.get(CACHE_ENV) or default).expanduser().resolve()


def need_node() -> tuple[str, str]:
    """The node and npm binaries, or skip (fail under ONEROOF_DIRECTUS_REQUIRED) naming what is missing."""
    missing = directus.missing_tools()
    if missing:
        message = f"the ratification page is built with npm: {' and '.join(missing)} not found on PATH"
        if directus.required():
            pytest.fail(f"{message}; {directus.REQUIRED_ENV} is set, so this fails instead of skipping", pytrace=False)
        pytest.skip(message)
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm
    return node, npm


def install_sdk(npm: str) -> Path:
    """The extension's devDependencies installed once into the cache (under a file lock)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(root / "install.lock"), timeout=INSTALL_TIMEOUT + 60):
        if not (root / MARKER).is_file():
            shutil.rmtree(root / "node_modules", ignore_errors=True)
            shutil.copy(EXTENSION / "package.json", root / "package.json")
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--ignore-scripts"],
                cwd=root,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f"npm install of the extension SDK in {root} failed:\n{directus.tail(proc.stdout + proc.stderr)}",
                    pytrace=False,
                )
            (root / MARKER).write_text(json.dumps({"package.json": cache_dir().name}) + "\n", encoding="utf-8")
    return root


def build(directory: Path, pkg: package.Package | None = None) -> Path:
    """Build the extension for `pkg` (default: the repository's package) into directory/oneroof-ratify,
    ready to be an entry of Directus's EXTENSIONS_PATH; its path.
    """
    node, npm = need_node()
    sdk = install_sdk(npm)
    work = directory / "oneroof-ratify"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(EXTENSION / "src", work / "src")
    shutil.copy(EXTENSION / "package.json", work / "package.json")
    summary = package_summary(pkg or package.load())
    (work / "src" / "package-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (work / "node_modules").symlink_to(sdk / "node_modules")
    proc = subprocess.run(
        [node, str(sdk / "node_modules/@directus/extensions-sdk/cli.js"), "build", "--no-minify"],
        cwd=work,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0 or not (work / "dist" / "app.js").is_file():
        output = directus.tail(proc.stdout + proc.stderr)
        pytest.fail(f"building the ratification page failed:\n{output}", pytrace=False)
    (work / "node_modules").unlink()
    return work
