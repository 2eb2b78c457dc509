"""The release package: manifest.toml plus one deploy and one revert SQL file per tier.

Integrity follows atlas.sum: a SHA-256 per file over its raw bytes, recorded in the manifest,
and one package hash, the SHA-256 of the manifest's raw bytes, that operators pin and approvals
name. The manifest must be in canonical form (what `canonical` writes from its values), so one
set of values has exactly one hash and no byte of the package (a comment, a space) escapes it.
Loading reads every file once; what is applied is exactly the bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.errors import HashMismatch, IntegrityError, UsageError

MANIFEST = "manifest.toml"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "rollout"
# Transaction control belongs to the executor alone; CONCURRENTLY cannot run in a transaction.
FORBIDDEN = re.compile(
    r"\b(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|START\s+TRANSACTION|PREPARE\s+TRANSACTION|ABORT"
    r"|END\s+TRANSACTION|CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY)\b", re.IGNORECASE)
COMMENTS_AND_STRINGS = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Tier:
    """One tier: its number, name and the SQL text of its deploy and revert."""

    number: int
    name: str
    deploy_file: str
    revert_file: str
    deploy: str
    revert: str


@dataclass(frozen=True)
class Package:
    """A verified release package."""

    path: Path
    name: str
    version: str
    proposal: str
    min_approvals: int
    levels: tuple[str, ...]
    tiers: tuple[Tier, ...]
    sha256: str


HEADER = ("# The One-Roof release package (canonical form: edit values, then run `oneroof package seal`).\n"
          "# The package hash is the SHA-256 of this file's bytes: `oneroof package hash`.\n")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, list)):
        raise IntegrityError(f"manifest value {value!r} is not a string, an integer or a list of strings")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def canonical(manifest: dict[str, Any]) -> bytes:
    """The one text of a manifest: fixed header, tables in order, keys sorted, JSON-quoted strings."""
    lines = [HEADER.rstrip("\n")]
    for table in ("package", "gate"):
        lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in sorted(manifest[table].items())]
    for tier in manifest["tier"]:
        lines += ["", "[[tier]]"] + [f"{k} = {_toml_value(v)}" for k, v in sorted(tier.items())]
    return ("\n".join(lines) + "\n").encode()


def _manifest(path: Path) -> tuple[dict[str, Any], bytes]:
    file = path / MANIFEST
    if not path.is_dir():
        raise UsageError(f"package directory {path} does not exist: pass --package DIR")
    try:
        data = file.read_bytes()
        return tomllib.loads(data.decode("utf-8")), data
    except FileNotFoundError as exc:
        raise IntegrityError(f"{file} is missing: a package directory needs its manifest") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{file} is not valid TOML: {exc}") from exc


def forbidden_statement(text: str) -> str | None:
    """The first transaction-control or CONCURRENTLY statement in `text`, outside comments and strings."""
    match = FORBIDDEN.search(COMMENTS_AND_STRINGS.sub(" ", text))
    return match.group(0) if match else None


def load(path: Path = DEFAULT_DIR, expect_sha256: str | None = None) -> Package:
    """Read and verify the package at `path`: every file's bytes, no missing or extra file,
    no forbidden statement, and the package hash against `expect_sha256` when given."""
    path = path.resolve()
    manifest, raw = _manifest(path)
    try:
        if canonical(manifest) != raw:
            raise IntegrityError(f"{MANIFEST} is not in canonical form (a comment, a space or the order of keys "
                                 "changed): restore it, or rewrite it with `oneroof package seal`")
        meta, gate, tiers = manifest["package"], manifest["gate"], manifest["tier"]
        listed = {MANIFEST}
        loaded = []
        for entry in sorted(tiers, key=lambda t: int(t["number"])):
            texts = {}
            for kind in ("deploy", "revert"):
                name = str(entry[kind])
                listed.add(name)
                try:
                    data = (path / name).read_bytes()
                except FileNotFoundError as exc:
                    raise IntegrityError(f"{name} is listed in the manifest but missing from {path}") from exc
                actual = sha256(data)
                if actual != entry[f"{kind}_sha256"]:
                    raise HashMismatch(name, str(entry[f"{kind}_sha256"]), actual)
                try:
                    texts[kind] = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise IntegrityError(f"{name} is not UTF-8 text") from exc
                bad = forbidden_statement(texts[kind])
                if bad:
                    raise IntegrityError(f"{name} contains {bad!r}: package files may not control "
                                         "transactions or build indexes concurrently")
            loaded.append(Tier(int(entry["number"]), str(entry["name"]), str(entry["deploy"]),
                               str(entry["revert"]), texts["deploy"], texts["revert"]))
        package = Package(path, str(meta["name"]), str(meta["version"]), str(meta["proposal"]),
                          int(gate["min_approvals"]), tuple(gate["levels"]), tuple(loaded),
                          sha256(raw))
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{path / MANIFEST} lacks or mistypes {exc}: see rollout/manifest.toml") from exc
    extra = sorted(p.name for p in path.iterdir() if p.name not in listed)
    if extra:
        raise IntegrityError(f"{extra[0]} is in {path} but not in the manifest: remove it or seal the package")
    if expect_sha256 and expect_sha256 != package.sha256:
        raise HashMismatch("package", expect_sha256, package.sha256)
    return package


def seal(path: Path = DEFAULT_DIR) -> str:
    """Record each listed file's SHA-256 and rewrite the manifest in canonical form (a developer's
    act after editing SQL); returns the new package hash."""
    file = path / MANIFEST
    manifest = tomllib.loads(file.read_text(encoding="utf-8"))
    for tier in manifest["tier"]:
        for kind in ("deploy", "revert"):
            tier[f"{kind}_sha256"] = sha256((path / str(tier[kind])).read_bytes())
    file.write_bytes(canonical(manifest))
    return sha256(canonical(manifest))
