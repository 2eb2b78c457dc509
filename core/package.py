"""The release package: manifest.toml plus one deploy and one revert SQL file per tier.

Integrity follows atlas.sum: a SHA-256 per file over its raw bytes, recorded in the manifest,
and one package hash, the SHA-256 of the manifest's raw bytes, that operators pin and approvals
name. The manifest must be in canonical form (what `canonical` writes from its values), so one
set of values has exactly one hash and no byte of the package (a comment, a space) escapes it.
Loading reads every file once; what is applied is exactly the bytes that were hashed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pglast

from oneroof.core import settings, signatures
from oneroof.harness.errors import HashMismatch, IntegrityError, UsageError

MANIFEST = "manifest.toml"
SEAL_SIGNATURE = "manifest.toml.sig"  # the sealer's SSH signature of the manifest's bytes
DEFAULT_DIR = settings.DEFAULT_PACKAGE
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The expected figures the stages compare against (syrupy amber files): the manifest lists them as
# snapshots/NAME.ambr with their SHA-256, so the package hash, the pin and the approval cover them.
# In the checkout (and an installed copy) they sit in the top-level snapshots/ beside the package
# directory; a bundle (`oneroof package bundle`) carries them inside, one self-contained directory.
SNAPSHOTS = "snapshots"
SNAPSHOT_PATH = re.compile(r"^snapshots/[A-Za-z0-9_.-]+\.ambr$")
# What a tier may contain, judged by PostgreSQL's own parser (libpg_query, through pglast):
# data statements only. Transaction control, DO blocks, CALL and DDL such as CREATE INDEX
# CONCURRENTLY belong to the executor or to no release at all.
ALLOWED_STATEMENTS = ("InsertStmt", "UpdateStmt", "DeleteStmt", "SelectStmt")
# Functions a data statement may not call, whatever their schema: they reach outside the release
# transaction (settings, sequences, locks, notifications, other backends, replication), outside
# the database (files, large objects, other servers) or run SQL text the parser never saw.
REFUSED_FUNCTIONS = frozenset(
    {
        "set_config", "setval", "pg_notify", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_promote", "pg_rotate_logfile",
        "pg_switch_wal", "pg_stat_file", "pg_import_system_collations", "pg_export_snapshot",
        "pg_log_backend_memory_contexts", "pg_log_standby_snapshot", "txid_current_snapshot",
        "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema", "ts_stat",
    }
)  # fmt: skip
REFUSED_PREFIXES = (
    "pg_read_", "pg_ls_", "pg_file_", "lo_", "dblink", "pg_advisory_", "pg_try_advisory_", "pg_backup_",
    "pg_create_", "pg_drop_replication", "pg_replication_", "pg_logical_", "pg_wal_", "pg_stat_reset",
    "pg_copy_", "table_to_xml", "cursor_to_xml", "schema_to_xml", "database_to_xml",
)  # fmt: skip
# PostgreSQL reads a backslash in a '...' literal as an escape when standard_conforming_strings
# is off, and as a plain character when it is on (pglast's reading): such a literal can hide
# statements from one reading and not the other. Only comments and dollar quotes may hold one.
BACKSLASH_SAFE_TOKENS = ("SQL_COMMENT", "C_COMMENT")
# Above this size (every file the manifest lists, the manifest included) a package is refused
# before any of it is read or parsed: the shipped one is about 65 kB, and parsing takes time and
# memory in proportion (a 20 MB tier took 57 s and 2.4 GB; 5 MiB took 48 s on a busy machine).
MAX_PACKAGE_BYTES = 1024 * 1024
# The gate policy of docs/design.md#s5-2: a package may ask for more, never for less.
MIN_APPROVALS = 1
APPROVER_LEVELS = ("L2", "L4")


def check_sha256(value: str, what: str = "--expect-sha256") -> str:
    """`value` if it is 64 lower-case hex digits, else UsageError (an empty pin is no pin)."""
    if SHA256.match(value):
        return value
    raise UsageError(
        f"{what} {value!r} is not a SHA-256 (64 hex digits): pass the hash the approval names, "
        "as `oneroof package hash` prints it"
    )


def sha256(data: bytes) -> str:
    """The SHA-256 of `data`, in hex."""
    return hashlib.sha256(data).hexdigest()


Write = tuple[str, str, str | None]  # (INSERT, UPDATE or DELETE, table, the column an UPDATE sets or None)
_WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE"}


@dataclass(frozen=True)
class Relations:
    """What SQL reads and writes, named by PostgreSQL's parser. `reads` is every table it names
    (a written table is named too; WITH queries are not tables, and information_schema and
    pg_catalog are left out: every role reads them); `writes` what it inserts, deletes and, per
    column it sets, updates (ON CONFLICT DO UPDATE included).
    """

    reads: frozenset[str] = frozenset()
    writes: frozenset[Write] = frozenset()

    def __or__(self, other: Relations) -> Relations:
        return Relations(self.reads | other.reads, self.writes | other.writes)

    @property
    def written(self) -> frozenset[str]:
        """The tables it writes."""
        return frozenset(table for _, table, _ in self.writes)


def _written(node: Any) -> set[Write]:
    privilege = _WRITES.get(type(node).__name__)
    if privilege is None or node.relation is None:
        return set()
    table = str(node.relation.relname)
    if privilege == "UPDATE":
        return {("UPDATE", table, str(target.name)) for target in node.targetList or ()}
    found: set[Write] = {(privilege, table, None)}
    conflict = node.onConflictClause if privilege == "INSERT" else None
    if conflict is not None and conflict.action == pglast.enums.OnConflictAction.ONCONFLICT_UPDATE:
        found |= {("UPDATE", table, str(target.name)) for target in conflict.targetList or ()}
    return found


def _walk(node: Any, reads: set[str], writes: set[Write], ctes: set[str]) -> None:
    """The one walk over a parse tree: the tables it names, what it writes and its WITH names."""
    if isinstance(node, (list, tuple)):
        for item in node:
            _walk(item, reads, writes, ctes)
    elif isinstance(node, pglast.ast.Node):
        writes |= _written(node)
        if isinstance(node, pglast.ast.RangeVar) and node.schemaname in (None, "public"):
            reads.add(str(node.relname))
        if isinstance(node, pglast.ast.CommonTableExpr):
            ctes.add(str(node.ctename))
        for attribute in node:
            _walk(getattr(node, attribute), reads, writes, ctes)


def parsed_relations(parsed: tuple[Any, ...]) -> Relations:
    """What parsed statements read and write (a WITH query's name is no table in its own statement)."""
    found = Relations()
    for raw in parsed:
        reads: set[str] = set()
        writes: set[Write] = set()
        ctes: set[str] = set()
        _walk(raw, reads, writes, ctes)
        # PostgreSQL writes a table even when a WITH query has its name (the target of an INSERT,
        # UPDATE or DELETE is never a WITH query): keep the write, and the table among the reads.
        written = {table for _, table, _ in writes}
        found |= Relations(frozenset((reads - ctes) | written), frozenset(writes))
    return found


@dataclass(frozen=True)
class Tier:
    """One tier: its number, name and the SQL text of its deploy and revert, parsed once (when the
    tier is made): their statements and what each reads and writes.
    """

    number: int
    name: str
    deploy_file: str
    revert_file: str
    deploy: str
    revert: str
    deploy_statements: tuple[str, ...] = field(init=False)
    revert_statements: tuple[str, ...] = field(init=False)
    deploy_relations: Relations = field(init=False)
    revert_relations: Relations = field(init=False)

    def __post_init__(self) -> None:
        for kind, name, text in (("deploy", self.deploy_file, self.deploy), ("revert", self.revert_file, self.revert)):
            statements, relations = _analysed(name, text)
            object.__setattr__(self, f"{kind}_statements", statements)
            object.__setattr__(self, f"{kind}_relations", relations)

    def relations(self, kind: str) -> Relations:
        """What the tier's `deploy` or `revert` reads and writes."""
        return self.deploy_relations if kind == "deploy" else self.revert_relations


@functools.lru_cache(maxsize=32)
def _analysed(name: str, text: str) -> tuple[tuple[str, ...], Relations]:
    """A package file's statements and what they read and write, checked by _parse: once per
    process for the same text (a rehearsal loads the package in several steps, and its stage
    sessions fork from a worker that loaded it). A file that is refused is refused every time.
    """
    parsed = _parse(name, text)
    return tuple(pglast.split(text)), parsed_relations(parsed)


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
    require_signatures: bool = False
    sealer_key: str | None = None  # fingerprint of the key that sealed (signed) the manifest
    seal_signature: str | None = None  # its signature, manifest.toml.sig
    snapshots: tuple[str, ...] = ()  # the expected figures (syrupy amber files), paths in the package
    # only approvals by a user-verified authenticator count: a passkey, or a FIDO key listed with verify-required
    require_user_verification: bool = False

    def relations(self, kind: str) -> Relations:
        """What the tiers' `deploy` or `revert` SQL reads and writes, all tiers together."""
        found = Relations()
        for tier in self.tiers:
            found |= tier.relations(kind)
        return found

    @property
    def tables(self) -> frozenset[str]:
        """Every table the package's deploy or revert SQL reads or writes."""
        both = self.relations("deploy") | self.relations("revert")
        return both.reads | both.written


HEADER = (
    "# The One-Roof release package (canonical form: edit values, then run `oneroof package seal`).\n"
    "# The package hash is the SHA-256 of this file's bytes: `oneroof package hash`.\n"
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, (str, int, list)):
        raise IntegrityError(f"manifest value {value!r} is not a string, an integer, a boolean or a list of strings")
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
    for entry in manifest.get("snapshot", []):
        lines += ["", "[[snapshot]]"] + [f"{k} = {_toml_value(v)}" for k, v in sorted(entry.items())]
    return ("\n".join(lines) + "\n").encode()


def snapshots_dir(path: Path) -> Path:
    """Where the package at `path` keeps its expected figures: its own snapshots/ (a bundle), else
    the snapshots/ beside it (the checkout's layout).
    """
    inside = path / SNAPSHOTS
    return inside if inside.is_dir() else path.parent / SNAPSHOTS


def _manifest(path: Path) -> tuple[dict[str, Any], bytes]:
    file = path / MANIFEST
    if not path.is_dir():
        hint = (
            " (oneroof runs from its checkout: install it with `pip install -e .`)"
            if "site-packages" in path.parts
            else ""
        )
        raise UsageError(f"package directory {path} does not exist: pass --package DIR{hint}")
    if file.is_symlink():
        raise IntegrityError(f"{file} is a symbolic link: a package holds its manifest itself")
    if file.is_file() and file.stat().st_size > MAX_PACKAGE_BYTES:
        raise IntegrityError(f"{file} is over the package limit of {MAX_PACKAGE_BYTES / 1048576:.0f} MiB")
    try:
        data = file.read_bytes()
        return tomllib.loads(data.decode("utf-8")), data
    except FileNotFoundError as exc:
        raise IntegrityError(f"{file} is missing: a package directory needs its manifest") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{file} is not valid TOML: {exc}") from exc


def _parse(name: str, text: str) -> tuple[Any, ...]:
    """A package file's statements parsed by PostgreSQL's parser; IntegrityError for a file that
    does not parse or holds anything but INSERT, UPDATE, DELETE and SELECT.
    """
    try:
        parsed = tuple(pglast.parse_sql(text))
    except pglast.parser.ParseError as exc:
        raise IntegrityError(f"{name} does not parse as PostgreSQL: {exc}") from exc
    for index, raw in enumerate(parsed, 1):
        kind = type(raw.stmt).__name__
        if isinstance(raw.stmt, pglast.ast.SelectStmt) and raw.stmt.intoClause is not None:
            kind = "SELECT INTO (CREATE TABLE)"
        if kind not in ALLOWED_STATEMENTS:
            raise IntegrityError(
                f"{name}: statement {index} is {kind.removesuffix('Stmt')}; package files may only "
                "INSERT, UPDATE, DELETE or SELECT (they may not control transactions, run DO or "
                "CALL, or change the schema)"
            )
        refused = sorted(_refused_calls(raw.stmt))
        if refused:
            raise IntegrityError(
                f"{name}: statement {index} calls {refused[0]}(), which reaches outside the release "
                "transaction or the database (settings, files, locks, other sessions or servers); "
                "package files may not call it"
            )
    _no_ambiguous_backslash(name, text)
    return parsed


def _no_ambiguous_backslash(name: str, text: str) -> None:
    """IntegrityError for a backslash outside comments and dollar-quoted strings: PostgreSQL with
    standard_conforming_strings off would split such a file where pglast does not.
    """
    if "\\" not in text:
        return
    data = text.encode()
    for token in pglast.parser.scan(text):
        found = data[token.start : token.end + 1]
        if b"\\" in found and token.name not in BACKSLASH_SAFE_TOKENS and not found.startswith(b"$"):
            line = data[: token.start].count(b"\n") + 1
            raise IntegrityError(
                f"{name}: line {line} has a backslash in {found[:40].decode(errors='replace')!r}; PostgreSQL "
                "reads it differently when standard_conforming_strings is off, so package files may hold "
                "a backslash only in comments and $$-quoted strings"
            )


def _refused_calls(node: Any) -> set[str]:
    """The REFUSED_FUNCTIONS / REFUSED_PREFIXES a parse tree calls, by their last name."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, pglast.ast.Node):
            if isinstance(item, pglast.ast.FuncCall) and item.funcname:
                called = str(item.funcname[-1].sval).lower()
                if called in REFUSED_FUNCTIONS or called.startswith(REFUSED_PREFIXES):
                    found.add(called)
            stack.extend(getattr(item, attribute) for attribute in item)
    return found


def _inside(path: Path, name: str) -> Path:
    """The file `name` of the package at `path`; IntegrityError for a name that leaves the package
    directory (absolute, `..`) or a symbolic link: what is hashed and applied is the package's own.
    """
    file = path / name
    if Path(name).is_absolute() or ".." in Path(name).parts or not file.resolve().is_relative_to(path):
        raise IntegrityError(f"{name!r} in the manifest is outside the package directory {path}: name files inside it")
    if any(p.is_symlink() for p in (file, *file.parents) if p.is_relative_to(path) and p != path):
        raise IntegrityError(f"{name} in {path} is a symbolic link: a package holds its files themselves")
    return file


def _check_size(path: Path, manifest: dict[str, Any]) -> None:
    """IntegrityError, before anything is read, when the files the manifest lists exceed MAX_PACKAGE_BYTES."""
    names = [str(t[kind]) for t in manifest["tier"] for kind in ("deploy", "revert")]
    total = (path / MANIFEST).stat().st_size
    for name in names:
        file = _inside(path, name)
        total += file.stat().st_size if file.is_file() else 0
    for entry in manifest.get("snapshot", []):
        file = snapshots_dir(path) / str(entry["path"]).removeprefix(f"{SNAPSHOTS}/")
        total += file.stat().st_size if file.is_file() and SNAPSHOT_PATH.match(str(entry["path"])) else 0
    if total > MAX_PACKAGE_BYTES:
        raise IntegrityError(
            f"the package in {path} is {total / 1048576:.1f} MiB, over the limit of "
            f"{MAX_PACKAGE_BYTES / 1048576:.0f} MiB: a release package is reviewed by people; split it"
        )


def _file_text(path: Path, name: str, expected: str) -> str:
    """The text of package file `name`, its bytes checked against the manifest's SHA-256."""
    try:
        data = _inside(path, name).read_bytes()
    except FileNotFoundError as exc:
        raise IntegrityError(f"{name} is listed in the manifest but missing from {path}") from exc
    actual = sha256(data)
    if actual != expected:
        raise HashMismatch(name, expected, actual)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"{name} is not UTF-8 text") from exc


def _tiers(path: Path, manifest: dict[str, Any], listed: set[str]) -> tuple[Tier, ...]:
    """The manifest's tiers in order, each file verified and parsed; their files join `listed`."""
    loaded = []
    for entry in sorted(manifest["tier"], key=lambda t: int(t["number"])):
        names = {kind: str(entry[kind]) for kind in ("deploy", "revert")}
        listed.update(names.values())
        texts = {kind: _file_text(path, name, str(entry[f"{kind}_sha256"])) for kind, name in names.items()}
        loaded.append(Tier(int(entry["number"]), str(entry["name"]), names["deploy"], names["revert"], **texts))
    return tuple(loaded)


def _snapshots(path: Path, manifest: dict[str, Any], listed: set[str]) -> tuple[str, ...]:
    """The manifest's snapshot files, each verified; they join `listed`."""
    expected = []
    for entry in manifest.get("snapshot", []):
        name = str(entry["path"])
        if not SNAPSHOT_PATH.match(name):
            raise IntegrityError(f"snapshot path {name!r} in the manifest is not snapshots/NAME.ambr")
        listed.add(name)
        file = snapshots_dir(path) / name.removeprefix(f"{SNAPSHOTS}/")
        if file.is_symlink():
            raise IntegrityError(f"{name} in {path} is a symbolic link: a package holds its files themselves")
        try:
            actual = sha256(file.read_bytes())
        except FileNotFoundError as exc:
            raise IntegrityError(f"{name} is listed in the manifest but missing from {path}") from exc
        if actual != entry["sha256"]:
            raise HashMismatch(name, str(entry["sha256"]), actual)
        expected.append(name)
    return tuple(expected)


def _package(path: Path, manifest: dict[str, Any], raw: bytes, listed: set[str]) -> Package:
    """The package the manifest describes, every file it lists verified."""
    if canonical(manifest) != raw:
        raise IntegrityError(
            f"{MANIFEST} is not in canonical form (a comment, a space or the order of keys "
            "changed): restore it, or rewrite it with `oneroof package seal`"
        )
    meta, gate = manifest["package"], manifest["gate"]
    for key in ("name", "version", "proposal"):
        if not isinstance(meta[key], str):
            raise TypeError(f"package.{key} (a string)")
    approvals = gate["min_approvals"]
    if type(approvals) is not int:  # not a string of digits, nor true (a bool is an int to Python)
        raise TypeError("gate.min_approvals (a whole number, at least 1)")
    _check_size(path, manifest)
    tiers = _tiers(path, manifest, listed)
    expected = _snapshots(path, manifest, listed)
    require = gate.get("require_signatures", False)
    if not isinstance(require, bool):
        raise TypeError("gate.require_signatures (true or false)")
    sealer = meta.get("sealer_key")
    if sealer is not None and not (isinstance(sealer, str) and signatures.FINGERPRINT.fullmatch(sealer)):
        raise TypeError("package.sealer_key (an SSH key fingerprint, SHA256:...)")
    if not isinstance(gate.get("require_sealed", False), bool):
        raise TypeError("gate.require_sealed (true or false)")
    verified = gate.get("require_user_verification", False)
    if not isinstance(verified, bool):
        raise TypeError("gate.require_user_verification (true or false)")
    if gate.get("require_sealed") and sealer is None:
        raise IntegrityError(
            f"{MANIFEST} says require_sealed = true, but the package is not sealed: seal it with "
            "`oneroof package seal --sign KEY` (the sealer's key), or it is not the package that was reviewed"
        )
    return Package(
        path,
        meta["name"],
        meta["version"],
        meta["proposal"],
        approvals,
        tuple(gate["levels"]),
        tiers,
        sha256(raw),
        require,
        sealer,
        snapshots=expected,
        require_user_verification=verified,
    )


def _no_extra_file(path: Path, listed: set[str]) -> None:
    present = [p.relative_to(path).as_posix() for p in path.rglob("*") if not (p.is_dir() and p.name == SNAPSHOTS)]
    folder = snapshots_dir(path)
    if folder.is_dir() and folder.parent != path:
        present += [f"{SNAPSHOTS}/{p.name}" for p in folder.iterdir()]
    extra = sorted(name for name in present if name not in listed)
    if extra:
        raise IntegrityError(f"{extra[0]} is in {path} but not in the manifest: remove it or seal the package")


def load(path: Path = DEFAULT_DIR, expect_sha256: str | None = None) -> Package:
    """Read and verify the package at `path`: every file's bytes, no missing or extra file,
    no forbidden statement, and the package hash against `expect_sha256` when given.
    """
    path = path.resolve()
    manifest, raw = _manifest(path)
    listed = {MANIFEST}
    try:
        package = _package(path, manifest, raw, listed)
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{path / MANIFEST} lacks or mistypes {exc}: see rollout/manifest.toml") from exc
    if package.min_approvals < MIN_APPROVALS or not set(package.levels) <= set(APPROVER_LEVELS) or not package.levels:
        raise IntegrityError(
            f"{path / MANIFEST} asks for min_approvals = {package.min_approvals} and levels "
            f"{list(package.levels)}: the gate needs at least {MIN_APPROVALS} approval from levels "
            f"within {list(APPROVER_LEVELS)}; a package cannot lower that"
        )
    if package.sealer_key is not None:
        listed.add(SEAL_SIGNATURE)
        package = dataclasses.replace(package, seal_signature=_check_seal(path, raw, package.sealer_key))
    _no_extra_file(path, listed)
    if expect_sha256 is not None and check_sha256(expect_sha256) != package.sha256:
        raise HashMismatch("package", expect_sha256, package.sha256)
    return package


def _check_seal(path: Path, raw: bytes, sealer_key: str) -> str:
    """The manifest names its sealer's key: its signature must be there and be by that key; the signature."""
    try:
        signature = (path / SEAL_SIGNATURE).read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise IntegrityError(
            f"{SEAL_SIGNATURE} is missing from {path}, but the manifest says the package was "
            f"sealed by {sealer_key}: restore it"
        ) from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise IntegrityError(f"{SEAL_SIGNATURE} in {path} is not an SSH signature") from exc
    try:
        found = signatures.signer(raw, signature, signatures.PACKAGE_NAMESPACE)
    except signatures.BadStatement as exc:
        raise IntegrityError(f"{SEAL_SIGNATURE}: {str(exc).replace('its statement', 'the manifest')}") from exc
    if found != sealer_key:
        raise IntegrityError(f"{SEAL_SIGNATURE} is signed by {found}, but the manifest names the sealer {sealer_key}")
    return signature


def seal(path: Path = DEFAULT_DIR, sign_key: Path | None = None) -> str:
    """Record each listed file's SHA-256 and rewrite the manifest in canonical form (a developer's
    act after editing SQL); returns the new package hash.

    With `sign_key` the sealer also signs: the manifest names the key's fingerprint (so the
    package hash covers it) and manifest.toml.sig holds the signature of its bytes. An approval
    signed by that key does not count (four eyes). Without it, a stale signature is removed.
    """
    manifest, _ = _manifest(path.resolve())
    file = path / MANIFEST
    for tier in manifest.get("tier", []):
        for kind in ("deploy", "revert"):
            tier[f"{kind}_sha256"] = sha256((path / str(tier[kind])).read_bytes())
    # The snapshot files present (after a reviewed --snapshot-update) are the expected figures.
    manifest["snapshot"] = [
        {"path": f"{SNAPSHOTS}/{p.name}", "sha256": sha256(p.read_bytes())}
        for p in sorted(snapshots_dir(path).glob("*.ambr"))
    ]
    if not manifest["snapshot"]:
        del manifest["snapshot"]
    manifest["package"].pop("sealer_key", None)
    if sign_key is not None:
        manifest["package"]["sealer_key"] = signatures.key_fingerprint(sign_key)
    data = canonical(manifest)
    signature = signatures.sign(data, sign_key, signatures.PACKAGE_NAMESPACE) if sign_key is not None else None
    file.write_bytes(data)
    if signature is not None:
        (path / SEAL_SIGNATURE).write_text(signature, encoding="ascii")
    else:
        (path / SEAL_SIGNATURE).unlink(missing_ok=True)
    return sha256(data)


def bundle(source: Path, destination: Path) -> Package:
    """Copy the verified package at `source` into the new directory `destination`, its expected
    figures inside (destination/snapshots/): one self-contained directory to ship, with the same
    package hash. Returns the copy, verified.
    """
    package = load(source)
    if destination.exists():
        raise UsageError(f"{destination} already exists: bundle into a new directory")
    (destination / SNAPSHOTS).mkdir(parents=True)
    names = [MANIFEST] + [t.deploy_file for t in package.tiers] + [t.revert_file for t in package.tiers]
    names += [SEAL_SIGNATURE] if package.seal_signature is not None else []
    for name in names:
        shutil.copy2(package.path / name, destination / name)
    for name in package.snapshots:
        shutil.copy2(snapshots_dir(package.path) / name.removeprefix(f"{SNAPSHOTS}/"), destination / name)
    return load(destination, package.sha256)
