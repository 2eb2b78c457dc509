"""Golden snapshots of production: a consistent, read-only copy of a Directus production database,
restored on the rehearsal server as a golden database, with production's secrets left behind.

One exported snapshot (`pg_export_snapshot()` in a REPEATABLE READ READ ONLY transaction) serves
the fingerprint read before the copy, `pg_dump --snapshot` itself and the fingerprint read after
it, so the three see the same data. The copy is restored under a temporary name and renamed into
place only when its fingerprint equals production's; anything else leaves nothing behind.

The fingerprint is not computed here (the harness does not import the invariant suite): the
caller passes `read`, a function that checks the target and returns its fingerprint and metrics
inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import conninfo, sql

from oneroof.harness import catalog
from oneroof.harness.db import LOCK_TIMEOUT_MS, check_identifier, connect, database_exists, parse, with_dbname
from oneroof.harness.errors import ExitCode, OneroofError, UsageError
from oneroof.harness.marks import GOLDEN_SETTING, claim_golden_name
from oneroof.harness.server import bin_dir

Progress = Callable[[str], None]
Reader = Callable[[psycopg.Connection[Any]], tuple[str, dict[str, Any]]]
PROVENANCE_SETTING = "oneroof.provenance"
# Secrets that stay in production. Each value becomes a marker of its own (unique, since
# directus_users.token is unique, and unguessable, so a marker is no key to a clone): NULL stays
# NULL and a value stays a value, so the gate still sees which approver has a static token.
SECRETS: dict[str, tuple[str, ...]] = {
    "directus_users": ("password", "token", "tfa_secret", "auth_data"),
    "directus_settings": ("mapbox_key", "basemaps"),
    "directus_shares": ("password",),
    "directus_webhooks": ("headers",),
}
# Tables whose rows are not copied at all: live session tokens.
NO_DATA = ("directus_sessions",)
MARKER = "oneroof:redacted:"
PROGRESS_EVERY = 2.0  # seconds between progress lines
# The sessions of the pg_restore of the data: their COPYs, and no others (the secret tables
# restored beside them), are the bytes in flight of the progress.
RESTORE_APP = "oneroof-snapshot-restore"


class SnapshotFailed(OneroofError):
    """The copy is not production at the snapshot (or the copy failed); nothing was kept."""

    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class Provenance:
    """Where a golden database came from; stored on it as the database setting oneroof.provenance."""

    kind: str  # "production snapshot" or "synthetic"
    host: str = ""
    port: str = ""
    database: str = ""
    system_identifier: str | None = None
    server_version: str = ""
    taken_at: str = ""
    fingerprint: str = ""
    tool: str = ""
    scale: int | None = None

    def describe(self) -> str:
        """One line for the evidence and the report."""
        if self.kind == "synthetic":
            return "synthetic golden" + (f" (scale {self.scale})" if self.scale else "")
        if self.kind != "production snapshot":
            return "a database not made by oneroof (no golden mark)"
        return f"clone of production `{self.database}` on host {self.host}:{self.port} at {self.taken_at}"

    @classmethod
    def from_setting(cls, text: str | None) -> Provenance:
        """The provenance a golden database's oneroof.provenance setting records (none: synthetic)."""
        if not text:
            return cls("synthetic")
        try:
            data = json.loads(text)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return cls("unknown")


@dataclass
class SnapshotResult:
    """What `take` made and what it saw."""

    name: str
    provenance: Provenance
    entry: str
    exit: str
    golden: str
    xid_assigned: bool
    metrics: dict[str, Any]
    tables: int
    bytes: int
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The result as plain JSON data."""
        data = asdict(self)
        data["provenance"] = asdict(self.provenance)
        return data


def source_database(prod_dsn: str) -> str:
    """The database `prod_dsn` names, found as libpq finds it but without connecting: dbname, else
    PGDATABASE, else the user name (user, PGUSER, the login name).
    """
    params = parse(prod_dsn)
    return str(
        params.get("dbname")
        or os.environ.get("PGDATABASE")
        or params.get("user")
        or os.environ.get("PGUSER")
        or getpass.getuser()
    )


def default_name(prod_dsn: str) -> str:
    """The golden name a capture of `prod_dsn` gets unless one is given: capture_<its database>."""
    return catalog.capture_name(source_database(prod_dsn))


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


class _Watch:
    """Progress of one pg_dump or pg_restore: tables and bytes done, elapsed, estimate; on stderr
    through `note`, every PROGRESS_EVERY seconds while the tool runs (`start` to `stop`), from a
    thread of its own, so the lines keep coming while the tool prints nothing (one long table).

    `feed` reads the tool's --verbose lines for the tables it has reached: such a table counts with
    its size (`done_bytes`). `copying`, when given, says which tables are being copied right now
    and how many bytes of each the server has read (see _copying): those count with these bytes
    instead. They are COPY text bytes, an estimate against the sizes on disk, so `done` is capped
    at the total. The lock keeps `feed` (the thread reading the tool) and the ticker apart.
    """

    DONE = re.compile(
        r"(?:finished item \d+ TABLE DATA|dumping contents of table|processing data for table)"
        r"\s+\"?([^\"\s]+(?:\s[^\"\s]+)?)\"?"
    )

    def __init__(
        self,
        phase: str,
        note: Progress,
        tables: int,
        total_bytes: int,
        done_bytes: Callable[[set[str]], int],
        copying: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.phase, self.note, self.tables, self.total = phase, note, tables, total_bytes
        self.done_bytes, self.copying = done_bytes, copying
        self.done: set[str] = set()
        self.started = time.monotonic()
        self.last = self.started
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None

    def feed(self, line: str) -> None:
        found = self.DONE.search(line)
        if found:
            with self.lock:
                self.done.add(found.group(1).replace(" ", "."))

    def start(self) -> None:
        """Print a line every PROGRESS_EVERY seconds from now until `stop`."""
        self.ticker = threading.Thread(target=self._tick, name="oneroof-snapshot-progress", daemon=True)
        self.ticker.start()

    def stop(self) -> None:
        """No line from the ticker any more; returns once its thread has ended."""
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join()
            self.ticker = None

    def _tick(self) -> None:
        while not self.stopped.wait(max(0.0, self.last + PROGRESS_EVERY - time.monotonic())):
            copying = self.copying() if self.copying is not None else {}
            with self.lock:
                if self.stopped.is_set():  # the tool ended during the read: its last line is the caller's
                    return
                self._report(copying)

    def report(self) -> None:
        """A line now (the tool's last, once it has ended)."""
        with self.lock:
            self._report({})

    def _report(self, copying: dict[str, int]) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.started
        settled = self.done - copying.keys()
        done = self.done_bytes(settled) + sum(copying.values())
        done = min(done, self.total) if self.total else done
        # From 1% on: a few bytes of a table in flight would give an estimate of weeks.
        left = (
            f", ~{elapsed * (self.total - done) / done:.0f} s left" if self.total and done >= self.total / 100 else ""
        )
        self.note(
            f"{self.phase}: {min(len(settled), self.tables)}/{self.tables} tables, {_mb(done)} of "
            f"~{_mb(self.total)}, {elapsed:.1f} s elapsed{left}"
        )


# The tables a COPY FROM into one database reads now, and its bytes read so far (PostgreSQL 14+).
# The view gives the table's oid, which only its own database can name: the name is the COPY's own.
COPYING_SQL = """
SELECT a.query, p.bytes_processed AS bytes
FROM pg_stat_progress_copy AS p JOIN pg_stat_activity AS a ON a.pid = p.pid
WHERE p.datname = %s AND p.command = 'COPY FROM' AND a.application_name = %s AND p.bytes_processed IS NOT NULL"""
_IDENT = r'(?:"(?:[^"]|"")+"|[^\s".(]+)'
COPY_TARGET = re.compile(rf"^\s*COPY\s+({_IDENT})(?:\.({_IDENT}))?", re.IGNORECASE)
COPYING_TIMEOUT = 2  # seconds: a read of the copy's progress gives up (connect_timeout, statement_timeout)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _copying(admin_dsn: str, database: str, application: str) -> dict[str, int]:
    """The tables that sessions named `application` copy into `database` now (COPY FROM), as
    `schema.table` (their COPY's text), and the COPY text bytes the server has read of each.

    Read from pg_stat_progress_copy on a short-lived autocommit connection to `admin_dsn`; empty on
    a server before PostgreSQL 14 (no such view) and when the read fails: progress never fails a
    snapshot, and never waits more than about COPYING_TIMEOUT seconds.
    """
    try:
        params = parse(admin_dsn)
        params["connect_timeout"] = COPYING_TIMEOUT
        params["options"] = f"{params.get('options') or ''} -c statement_timeout={COPYING_TIMEOUT * 1000}".strip()
        with connect(
            conninfo.make_conninfo("", **params), autocommit=True, application_name="oneroof-snapshot-progress"
        ) as conn:
            if conn.info.server_version < 140000:
                return {}
            rows = conn.execute(COPYING_SQL, (database, application)).fetchall()
    except Exception:  # noqa: BLE001 - a progress line is worth no failure
        return {}
    copying: dict[str, int] = {}
    for row in rows:
        found = COPY_TARGET.match(row["query"] or "")
        name = ".".join(_unquote(part) for part in found.groups() if part) if found else ""
        copying[name] = copying.get(name, 0) + int(row["bytes"])
    return copying


def _run_tool(
    argv: list[str],
    env: dict[str, str],
    watch: _Watch | None = None,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
    *,
    stdin: IO[bytes] | int = subprocess.DEVNULL,
    pipe_out: bool = False,
) -> None:
    """Run a client tool (pg_dump, pg_restore, psql) to its end, in a process group of its own,
    feeding each line of its output to `watch` when given, whose ticker prints progress while the
    tool runs and is stopped before this returns. `started` sees the child as soon as it
    runs, and may refuse it by raising. On any exit (also Ctrl-C) the child is gone when this
    returns. A failure is a SnapshotFailed with the tool's last error line (when none says error:
    the signal that killed it, else its last line); the password travels in `env` (see _tool_env), never in `argv`.

    `stdin` feeds the tool (the other end of a pipe, see _run_pipe). With `pipe_out` its standard
    output is data, left for `started` to hand on, and its standard error is what is read.
    """
    tail: list[str] = []
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if pipe_out else subprocess.STDOUT,
        stdin=stdin,
        start_new_session=True,
    )
    log = proc.stderr if pipe_out else proc.stdout
    try:
        if started is not None:
            started(proc)
        if watch is not None:
            watch.start()
        assert log is not None
        for raw in log:
            tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
            del tail[:-40]
            if watch is not None:
                watch.feed(tail[-1])
        code = proc.wait()
    finally:
        try:
            if watch is not None:
                watch.stop()
        finally:
            _end(proc)
            if log is not None:
                log.close()  # with `pipe_out`, standard output is the caller's to close
    if code != 0:
        errors = [ln for ln in tail if "error" in ln.lower()]
        if not errors and code < 0:  # killed: its last line is whatever it was doing, no cause
            try:
                errors = [f"ended by {signal.Signals(-code).name}"]
            except ValueError:
                errors = [f"ended by signal {-code}"]
        errors = errors or [ln for ln in tail if ln.strip()]
        raise SnapshotFailed(
            f"{Path(argv[0]).name} failed: {errors[-1].strip() if errors else f'exit code {code}'}; nothing was kept"
        )
    if watch is not None:
        watch.report()


def _end(proc: subprocess.Popen[bytes]) -> None:
    """End a client tool's process group, unless the tool has ended (SIGTERM, then SIGKILL)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:  # it ended between poll and kill
        proc.wait()


def _run_pipe(
    first: tuple[list[str], dict[str, str]],
    second: tuple[list[str], dict[str, str]],
    watch: _Watch,
    ready: Callable[[], bool],
) -> None:
    """Run `first | second` (pg_dump into pg_restore), each through _run_tool. `first` starts at
    once and `second` once `ready()` (polled, it may raise) says so; meanwhile `first` writes until
    the pipe is full. A failure of either side (or Ctrl-C) ends the other, and the failure raised is
    the side that failed first: `second`'s, unless `first` had already failed on its own (not of a
    broken pipe, which is `second` going away).
    """
    handed: list[subprocess.Popen[bytes]] = []
    failed: list[BaseException] = []
    running = threading.Event()

    def hand(proc: subprocess.Popen[bytes]) -> None:
        handed.append(proc)
        running.set()

    def produce() -> None:
        try:
            _run_tool(*first, started=hand, pipe_out=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failed.append(exc)
        finally:
            running.set()

    thread = threading.Thread(target=produce, name="oneroof-snapshot-pipe", daemon=True)
    thread.start()
    try:
        running.wait()
        while not handed or not ready():
            if failed:
                raise failed[0]
        dump = handed[0]
        assert dump.stdout is not None
        data = dump.stdout
        try:
            # Once the reader runs, this process lets go of the pipe: a reader that ends makes the
            # writer's next write fail (SIGPIPE) instead of blocking for ever.
            _run_tool(*second, watch, started=lambda _proc: data.close(), stdin=data)
        except SnapshotFailed:
            code = dump.poll()  # before ending it: had the writer failed first?
            _end(dump)
            thread.join()
            if code not in (None, 0, -signal.SIGPIPE) and failed and "pipe" not in str(failed[0]).lower():
                raise failed[0] from None
            raise
    except BaseException:
        if handed:
            _end(handed[0])
        thread.join()
        raise
    finally:
        for proc in handed:
            if proc.stdout is not None:
                proc.stdout.close()
    thread.join()
    if failed:
        raise failed[0]


def _tool_env(dsn: str) -> tuple[str, dict[str, str]]:
    """A DSN without its password, and an environment that carries the password (PGPASSWORD), so
    no password appears on a command line that `ps` would show.
    """
    params = parse(dsn)
    password = params.pop("password", None)
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if password:
        env["PGPASSWORD"] = str(password)
    return conninfo.make_conninfo("", **params), env


def _server_facts(src: psycopg.Connection[Any], prod_dsn: str) -> dict[str, Any]:
    """The source's identity, read in the snapshot's own transaction (no second session). The
    system identifier needs pg_monitor or superuser: without the privilege it is recorded as
    unknown, and pg_control_system() is not called, so nothing aborts the transaction.
    """
    params = parse(prod_dsn)
    row = src.execute(
        "SELECT current_database() AS db, current_setting('server_version') AS version, "
        "pg_encoding_to_char(encoding) AS encoding, datcollate, datctype, "
        "CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') "
        "THEN (SELECT system_identifier::text FROM pg_control_system()) END AS system_identifier "
        "FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    host = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "local socket")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    return {
        "db": row["db"],
        "version": row["version"],
        "encoding": row["encoding"],
        "collate": row["datcollate"],
        "ctype": row["datctype"],
        "system_identifier": row["system_identifier"],
        "host": host,
        "port": port,
    }


COLUMNS_SQL = """
SELECT n.nspname || '.' || c.relname AS table, array_agg(a.attname::text ORDER BY a.attnum) AS columns,
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS types
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
WHERE c.relkind IN ('r', 'p') AND c.relname = ANY (%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
GROUP BY n.nspname, c.relname"""
# An estimate from the catalog (pages at the last VACUUM or ANALYZE): pg_relation_size() would
# take a lock on every table, and wait behind any session holding one.
# The partitions and inheriting tables of the secret tables (and of those not copied): their rows
# would reach the copy under another name, unredacted (the dump excludes and redacts by name).
CHILDREN_SQL = """
SELECT n.nspname || '.' || p.relname AS parent, i.inhrelid::regclass::text AS child
FROM pg_inherits AS i JOIN pg_class AS p ON p.oid = i.inhparent JOIN pg_namespace AS n ON n.oid = p.relnamespace
WHERE p.relname = ANY (%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2"""
SIZE_SQL = """
SELECT n.nspname || '.' || c.relname AS table, c.relpages::bigint * current_setting('block_size')::bigint AS bytes
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
AND NOT c.relname = ANY (%s)"""


def _redact_file(path: Path, columns: list[str], types: list[str], secret: tuple[str, ...]) -> int:
    """Replace each non-NULL value of the `secret` columns in one COPY text file by a marker.
    Returns the number of values replaced.
    """
    positions = [(i, types[i] in ("json", "jsonb")) for i, name in enumerate(columns) if name in secret]
    if not positions:
        return 0
    replaced = 0
    out = path.with_suffix(".redacting")
    with path.open("rb") as src, out.open("wb") as dst:
        for line in src:
            body = line.rstrip(b"\n")
            if body == b"\\.":
                dst.write(line)
                continue
            fields = body.split(b"\t")
            for index, is_json in positions:
                if index < len(fields) and fields[index] != b"\\N":
                    marker = MARKER + secrets.token_hex(12)
                    fields[index] = (json.dumps(marker) if is_json else marker).encode()
                    replaced += 1
            dst.write(b"\t".join(fields) + b"\n")
    out.replace(path)
    return replaced


# Column attribute options PostgreSQL itself knows; any other (a patched server's private option,
# such as `pg_attver`) would make the restore fail on a stock server, and is planner metadata at
# most: it is left out of the copy.
ATTRIBUTE_OPTION = re.compile(r"^ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \((?P<options>[^)]*)\);$")
KNOWN_ATTRIBUTE_OPTIONS = ("n_distinct", "n_distinct_inherited")


def _restore_schema(copy: _Copy, beside: _Beside) -> None:
    """Dump the pre-data section (tables, types, sequences) at the snapshot and restore it through
    psql, without owners and privileges, leaving out attribute options a stock server does not
    know. It runs beside the data's pg_dump.
    """
    script = copy.workdir / "pre-data.sql"
    prod_public, prod_env = _tool_env(copy.prod_dsn)
    prod_env["PGAPPNAME"] = "oneroof-snapshot-schema"
    beside.run(
        [
            str(bin_dir() / "pg_dump"),
            "--section=pre-data",
            f"--snapshot={copy.snapshot_id}",
            *DUMP_OPTIONS,
            f"--file={script}",
            f"--dbname={prod_public}",
        ],
        prod_env,
    )
    kept = []
    for line in script.read_text(encoding="utf-8").splitlines(keepends=True):
        found = ATTRIBUTE_OPTION.match(line.rstrip("\n"))
        if found and any(
            o.split("=")[0].strip() not in KNOWN_ATTRIBUTE_OPTIONS for o in found.group("options").split(",")
        ):
            continue
        if line.startswith("SET transaction_timeout"):  # pg_dump 17+ writes it; a server before 17 refuses it
            continue
        kept.append(line)
    script.write_text("".join(kept), encoding="utf-8")
    admin_public, admin_env = _tool_env(with_dbname(copy.admin_dsn, copy.temp))
    beside.run(
        [
            str(bin_dir() / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            f"--dbname={admin_public}",
            f"--file={script}",
        ],
        admin_env,
    )


class _Beside:
    """Work done in one thread beside the main thread's pg_dump or pg_restore. When the main thread
    fails (or Ctrl-C), `stop` ends that work's client tools and cancels its query on production,
    so nothing outlives the copy; its own failure is raised once the main thread is done.
    """

    def __init__(self, src: psycopg.Connection[Any]) -> None:
        self.src = src
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopped = False
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneroof-snapshot")
        self.pending: Future[None] | None = None

    def start(self, work: Callable[[], None]) -> None:
        self.pending = self.pool.submit(work)

    def check(self) -> None:
        """Raise if the main thread has stopped this work (between two steps of it)."""
        with self.lock:
            if self.stopped:
                raise SnapshotFailed("stopped: the copy failed; nothing was kept")

    def run(self, argv: list[str], env: dict[str, str]) -> None:
        """Run a client tool to its end (see _run_tool); `stop` ends it."""
        self.check()
        _run_tool(argv, env, started=self._started)

    def _started(self, proc: subprocess.Popen[bytes]) -> None:
        # Checked again once the child runs: a `stop` between check and here ends it (_run_tool's finally).
        with self.lock:
            self.procs.append(proc)
        self.check()

    def wait(self) -> None:
        """The work's end; its failure, if any."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def stop(self) -> None:
        """End the work now (the main thread failed): its tools are terminated, its query cancelled."""
        with self.lock:
            self.stopped = True
            procs = list(self.procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        while self.pending is not None and not self.pending.done():
            self.src.cancel_safe()  # again until it ends: the query may start just after a cancel
            wait([self.pending], timeout=0.5)
        self.pending = None

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _toc(dump: Path, env: dict[str, str]) -> dict[str, str]:
    """TABLE DATA entries of a directory dump: `schema.table` -> data file name."""
    listing = subprocess.run(
        [str(bin_dir() / "pg_restore"), "-l", str(dump)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    files = {}
    for line in listing.splitlines():
        found = re.match(r"^(\d+); \d+ \d+ TABLE DATA (\S+) (\S+) ", line)
        if found:
            files[f"{found.group(2)}.{found.group(3)}"] = f"{found.group(1)}.dat"
    return files


def _dir_bytes(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.glob("*.dat"))
    except OSError:
        return 0


# pg_restore 18 sets transaction_timeout, which servers before 17 do not know; production itself
# may be older (pg_dump 18 reads servers from 9.2 on).
MIN_REHEARSAL_SERVER = 170000


@dataclass
class _Copy:
    """One copy of production: what its phases share, filled in as they run."""

    prod_dsn: str
    admin_dsn: str
    name: str
    temp: str  # the database restored into, renamed to `name` once verified
    jobs: int
    note: Progress
    workdir: Path  # 0700: the dump holds secrets until redacted
    phases: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    entry: str = ""
    exit: str = ""
    xid_assigned: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    taken_at: str = ""
    snapshot_id: str = ""
    cols: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # secret tables' columns
    sizes: dict[str, int] = field(default_factory=dict)  # table -> bytes on disk (the catalog's estimate)
    files: dict[str, str] = field(default_factory=dict)  # table -> its data file in the dump
    tables: int = 0  # tables whose data was copied
    bytes: int = 0

    @property
    def dump(self) -> Path:
        return self.workdir / "dump"

    @property
    def post_data(self) -> Path:
        return self.workdir / "post-data.dump"

    def lap(self, phase: str, since: float) -> None:
        self.phases[phase] = time.monotonic() - since


def require_rehearsal_server(admin: psycopg.Connection[Any]) -> None:
    """Refuse (UsageError) a rehearsal server pg_restore 18 cannot restore a copy of production into."""
    if admin.info.server_version < MIN_REHEARSAL_SERVER:
        raise UsageError(
            f"the rehearsal server runs PostgreSQL {admin.info.server_version // 10000}; the copy "
            "is restored with pg_restore 18, which needs a rehearsal server of PostgreSQL 17 or "
            "later: leave out --dsn to use the embedded PostgreSQL 18 (production may be older)"
        )


def _claim(admin: psycopg.Connection[Any], copy: _Copy, replace: bool) -> None:
    """Refuse a rehearsal server pg_restore 18 cannot restore into, and a name oneroof may not use."""
    require_rehearsal_server(admin)
    claim_golden_name(admin, copy.name, replace=replace, action="golden snapshot", renew="refresh it from production")


def _create(admin: psycopg.Connection[Any], copy: _Copy) -> None:
    """Create the temporary database to restore into, like production where this server can."""
    facts = copy.facts
    # Same encoding and locale as the source when this server has it, else C (the fingerprint
    # orders its rows with COLLATE "C", so it does not depend on the copy's locale).
    try:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                sql.Identifier(copy.temp),
                sql.Literal(facts["encoding"]),
                sql.Literal(facts["collate"]),
                sql.Literal(facts["ctype"]),
            )
        )
    except psycopg.Error:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C'").format(
                sql.Identifier(copy.temp), sql.Literal(facts["encoding"])
            )
        )


def _copy(admin: psycopg.Connection[Any], copy: _Copy, read: Reader) -> None:
    """Copy production at one exported snapshot into the temporary database, secrets redacted.

    With --jobs 1 the data streams (see _copy_streamed); with more, a parallel dump to the workdir
    is redacted and then restored in parallel (see _copy_dumped). Either way the entry fingerprint
    is read beside the data's copy, and the exit fingerprint beside what follows it.
    SnapshotFailed unless the read was clean.
    """
    since = time.monotonic()
    with connect(copy.prod_dsn, application_name="oneroof-snapshot") as src:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        snap = src.execute("SELECT pg_export_snapshot() AS id").fetchone()
        assert snap is not None
        copy.snapshot_id = snap["id"]
        copy.facts = facts = _server_facts(src, copy.prod_dsn)
        copy.note(f"source: database {facts['db']} on {facts['host']}:{facts['port']}, PostgreSQL {facts['version']}")
        children = src.execute(CHILDREN_SQL, ([*SECRETS, *NO_DATA],)).fetchall()
        if children:
            raise SnapshotFailed(
                f"{children[0]['parent']} has child tables ({', '.join(r['child'] for r in children)}): a "
                "partition or an inheriting table would be copied without its secrets redacted; a Directus "
                "database has none, so detach or drop them first; nothing was kept"
            )
        copy.cols = {
            r["table"]: (list(r["columns"]), list(r["types"]))
            for r in src.execute(COLUMNS_SQL, (list(SECRETS),)).fetchall()
        }
        copy.sizes = {r["table"]: int(r["bytes"]) for r in src.execute(SIZE_SQL, (list(NO_DATA),)).fetchall()}
        copy.taken_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        copy.lap("read production", since)
        copy.note(
            f"snapshot {snap['id']} taken at {copy.taken_at}: {len(copy.sizes)} tables, "
            f"{_mb(sum(copy.sizes.values()))} on disk"
        )
        beside = _Beside(src)
        try:
            (_copy_streamed if copy.jobs == 1 else _copy_dumped)(admin, copy, read, src, beside)
        finally:
            beside.close()
    if copy.exit != copy.entry or copy.xid_assigned:
        raise SnapshotFailed(
            f"production's read was not clean (entry {copy.entry[:12]}, exit {copy.exit[:12]}, "
            f"transaction id assigned: {copy.xid_assigned}); nothing was kept"
        )


def _exit_read(copy: _Copy, read: Reader, src: psycopg.Connection[Any]) -> Callable[[], None]:
    """The exit fingerprint, and whether the snapshot's transaction was given an id; ends it."""

    def work() -> None:
        copy.exit, _ = read(src)
        assigned = src.execute("SELECT txid_current_if_assigned() AS xid").fetchone()
        copy.xid_assigned = assigned is not None and assigned["xid"] is not None
        src.rollback()

    return work


def _in_turn(beside: _Beside, work: Callable[[], None], main: Callable[[], None]) -> None:
    """`work` beside `main`; when `main` fails (or Ctrl-C) the work is stopped."""
    beside.start(work)
    try:
        main()
        beside.wait()
    except BaseException:
        beside.stop()
        raise


def _copy_dumped(
    admin: psycopg.Connection[Any], copy: _Copy, read: Reader, src: psycopg.Connection[Any], beside: _Beside
) -> None:
    """--jobs N > 1: pg_dump's parallel directory dump to the workdir (the temporary database, the
    schema and the entry fingerprint beside it), the secrets redacted in its files, then
    pg_restore's parallel restore of data and post-data (the exit fingerprint beside it).
    """

    def prepare() -> None:
        _create(admin, copy)
        _restore_schema(copy, beside)
        beside.check()
        copy.entry, copy.metrics = read(src)

    t = time.monotonic()
    _in_turn(beside, prepare, lambda: _run_pg_dump(copy))
    copy.lap("dump", t)
    copy.note(f"production's fingerprint at the snapshot: {copy.entry[:16]}")

    def restore() -> None:
        _redact(copy)
        _restore(copy)

    _in_turn(beside, _exit_read(copy, read, src), restore)


def _copy_streamed(
    admin: psycopg.Connection[Any], copy: _Copy, read: Reader, src: psycopg.Connection[Any], beside: _Beside
) -> None:
    """--jobs 1: the data of every table but the secret ones streams from pg_dump into pg_restore,
    restored while it is dumped, as a plain `pg_dump | pg_restore` copies. The data's pg_dump starts
    at once; its pg_restore once the temporary database has the schema. Beside them, in turn: the
    temporary database and the schema; the secret tables' data dumped to the workdir, redacted
    there and restored; the post-data section (indexes, constraints, triggers) dumped to the
    workdir; the entry fingerprint. Then the post-data is restored (the exit fingerprint beside it).
    """
    schema = threading.Event()

    def prepare() -> None:
        _create(admin, copy)
        _restore_schema(copy, beside)
        schema.set()
        _copy_secrets(copy, beside)
        _dump_post_data(copy, beside)
        beside.check()
        copy.entry, copy.metrics = read(src)

    def ready() -> bool:
        if schema.wait(0.1):
            return True
        if beside.pending is not None and beside.pending.done():
            beside.wait()  # its failure, before the schema was in place
        return False

    t = time.monotonic()
    _in_turn(beside, prepare, lambda: _stream_data(copy, ready))
    copy.lap("copy data", t)
    copy.note(f"production's fingerprint at the snapshot: {copy.entry[:16]}")
    t = time.monotonic()
    _in_turn(beside, _exit_read(copy, read, src), lambda: _restore_post_data(copy))
    copy.lap("indexes and constraints", t)
    shutil.rmtree(copy.workdir, ignore_errors=True)


def _dump_argv(copy: _Copy, app: str, *options: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump of production at the snapshot, with DUMP_OPTIONS and `options`, and its environment
    (its session named `app` on production).
    """
    prod_public, prod_env = _tool_env(copy.prod_dsn)
    prod_env["PGAPPNAME"] = app
    argv = [
        str(bin_dir() / "pg_dump"),
        f"--snapshot={copy.snapshot_id}",
        *DUMP_OPTIONS,
        *options,
        f"--dbname={prod_public}",
    ]
    return argv, prod_env


def _streamed_dump(copy: _Copy) -> tuple[list[str], dict[str, str]]:
    """The streamed pg_dump: the data section to standard output, without the rows of any table
    named in SECRETS or NO_DATA, in any schema (the same patterns as _copy_secrets's).
    """
    return _dump_argv(
        copy,
        "oneroof-snapshot-dump",
        "--format=custom",
        "--compress=0",
        "--section=data",
        *[f"--exclude-table-data=*.{table}" for table in (*SECRETS, *NO_DATA)],
    )


def _stream_data(copy: _Copy, ready: Callable[[], bool]) -> None:
    """The streamed data: pg_dump | pg_restore (see _run_pipe), with progress."""
    # Named in the DSN itself, where an application_name of the admin DSN would win over PGAPPNAME.
    admin_public, admin_env = _tool_env(
        conninfo.make_conninfo(with_dbname(copy.admin_dsn, copy.temp), application_name=RESTORE_APP)
    )
    sizes = {t: b for t, b in copy.sizes.items() if t.split(".", 1)[-1] not in SECRETS}
    watch = _Watch(
        "copy",
        copy.note,
        len(sizes),
        sum(sizes.values()),
        lambda done: sum(sizes.get(t, 0) for t in done),
        lambda: _copying(copy.admin_dsn, copy.temp, RESTORE_APP),
    )
    restore = [
        str(bin_dir() / "pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--section=data",
        "--exit-on-error",
        "--verbose",
        f"--dbname={admin_public}",
    ]
    _run_pipe(_streamed_dump(copy), (restore, admin_env), watch, ready)
    copy.tables += len(sizes)
    copy.bytes += sum(sizes.values())


def _copy_secrets(copy: _Copy, beside: _Beside) -> None:
    """The secret tables' data: dumped to the workdir (0700), redacted there, then restored."""
    present = sorted({qualified.split(".", 1)[-1] for qualified in copy.cols})
    if not present:
        return
    t = time.monotonic()
    argv, env = _dump_argv(
        copy,
        "oneroof-snapshot-secrets",
        "--format=directory",
        "--compress=0",
        "--section=data",
        *[f"--table=*.{table}" for table in present],
        f"--file={copy.dump}",
    )
    beside.run(argv, env)
    _redact(copy)
    beside.check()
    admin_public, admin_env = _tool_env(with_dbname(copy.admin_dsn, copy.temp))
    beside.run(
        [
            str(bin_dir() / "pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--dbname={admin_public}",
            str(copy.dump),
        ],
        admin_env,
    )
    copy.tables += len(copy.files)
    copy.bytes += _dir_bytes(copy.dump)
    shutil.rmtree(copy.dump, ignore_errors=True)
    copy.lap("secret tables", t)


def _dump_post_data(copy: _Copy, beside: _Beside) -> None:
    """The post-data section (indexes, constraints, triggers) at the snapshot, to the workdir."""
    argv, env = _dump_argv(
        copy, "oneroof-snapshot-post-data", "--format=custom", "--section=post-data", f"--file={copy.post_data}"
    )
    beside.run(argv, env)


def _restore_post_data(copy: _Copy) -> None:
    """Indexes, constraints and triggers, once all the data is in, with --jobs workers."""
    admin_public, admin_env = _tool_env(with_dbname(copy.admin_dsn, copy.temp))
    copy.note("data copied; building indexes and constraints")
    _run_tool(
        [
            str(bin_dir() / "pg_restore"),
            f"--jobs={copy.jobs}",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--dbname={admin_public}",
            str(copy.post_data),
        ],
        admin_env,
    )


# pg_dump's options for the schema and the data alike: no owners, grants or server-wide objects.
DUMP_OPTIONS = (
    "--no-owner",
    "--no-privileges",
    "--no-tablespaces",
    "--no-publications",
    "--no-subscriptions",
    "--no-security-labels",
    "--no-sync",
    f"--lock-wait-timeout={LOCK_TIMEOUT_MS}",
)


def _run_pg_dump(copy: _Copy) -> None:
    """--jobs N > 1: the parallel dump of the schema and the data to the workdir, with progress."""
    prod_public, prod_env = _tool_env(copy.prod_dsn)
    prod_env["PGAPPNAME"] = "oneroof-snapshot-dump"
    dump = copy.dump
    _run_tool(
        [
            str(bin_dir() / "pg_dump"),
            "--format=directory",
            f"--jobs={copy.jobs}",
            "--compress=0",
            f"--snapshot={copy.snapshot_id}",
            "--verbose",
            *DUMP_OPTIONS,
            *[f"--exclude-table-data=*.{table}" for table in NO_DATA],
            f"--file={dump}",
            f"--dbname={prod_public}",
        ],
        prod_env,
        _Watch("dump", copy.note, len(copy.sizes), sum(copy.sizes.values()), lambda _d: _dir_bytes(dump)),
    )


def _redact(copy: _Copy) -> None:
    """Replace the secrets in the dump's data files by markers, before anything restores them."""
    t = time.monotonic()
    _, admin_env = _tool_env(with_dbname(copy.admin_dsn, copy.temp))
    copy.files = _toc(copy.dump, admin_env)
    redacted = 0
    # In every schema: Directus may live outside `public` (DB_SEARCH_PATH).
    for qualified, file in copy.files.items():
        secret = SECRETS.get(qualified.split(".", 1)[-1], ())
        if secret and qualified in copy.cols:
            redacted += _redact_file(copy.dump / file, *copy.cols[qualified], secret)
    copy.lap("redact secrets", t)
    copy.note(f"secrets redacted: {redacted} value(s) in {', '.join(SECRETS)}; no rows of {', '.join(NO_DATA)}")


def _restore(copy: _Copy) -> None:
    """Restore the redacted dump into the temporary database, then remove the dump."""
    t = time.monotonic()
    # Named in the DSN itself, where an application_name of the admin DSN would win over PGAPPNAME.
    admin_public, admin_env = _tool_env(
        conninfo.make_conninfo(with_dbname(copy.admin_dsn, copy.temp), application_name=RESTORE_APP)
    )
    dump = copy.dump
    sizes = {table: (dump / file).stat().st_size for table, file in copy.files.items() if (dump / file).exists()}
    watch = _Watch(
        "restore",
        copy.note,
        len(copy.files),
        sum(sizes.values()),
        lambda done: sum(v for k, v in sizes.items() if k in done or k.split(".", 1)[-1] in done),
        lambda: _copying(copy.admin_dsn, copy.temp, RESTORE_APP),
    )
    _run_tool(
        [
            str(bin_dir() / "pg_restore"),
            f"--jobs={copy.jobs}",
            "--no-owner",
            "--no-privileges",
            "--section=data",
            "--section=post-data",
            "--exit-on-error",
            "--verbose",
            f"--dbname={admin_public}",
            str(dump),
        ],
        admin_env,
        watch,
    )
    copy.lap("restore", t)
    copy.tables, copy.bytes = len(copy.files), sum(sizes.values())
    shutil.rmtree(copy.workdir, ignore_errors=True)


def _verify(copy: _Copy, read: Reader) -> str:
    """The copy's fingerprint; SnapshotFailed unless it is production's at the snapshot."""
    t = time.monotonic()
    with connect(with_dbname(copy.admin_dsn, copy.temp)) as restored:
        restored.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        restored.read_only = True
        golden_fp, _ = read(restored)
        restored.rollback()
    copy.lap("verify copy", t)
    if golden_fp != copy.entry:
        raise SnapshotFailed(
            f"the copy's fingerprint {golden_fp[:16]} differs from production's {copy.entry[:16]} "
            "at the snapshot; nothing was kept"
        )
    return golden_fp


def _install(admin: psycopg.Connection[Any], copy: _Copy, tool: str, replace: bool) -> Provenance:
    """Rename the verified copy into place (replacing the old golden database) and mark it golden."""
    facts = copy.facts
    provenance = Provenance(
        "production snapshot",
        facts["host"],
        facts["port"],
        facts["db"],
        facts["system_identifier"],
        facts["version"],
        copy.taken_at,
        copy.entry,
        tool,
    )
    if replace and database_exists(admin, copy.name):
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(copy.name)))
    admin.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(copy.temp), sql.Identifier(copy.name))
    )
    mark(admin, copy.name, provenance)
    return provenance


def take(
    prod_dsn: str,
    admin_dsn: str,
    *,
    name: str,
    read: Reader,
    tool: str,
    replace: bool = False,
    jobs: int = 1,
    progress: Progress | None = None,
) -> SnapshotResult:
    """Copy production (`prod_dsn`, read-only) into golden database `name` on the server of
    `admin_dsn`. Refuses an existing database unless `replace`, and then only a golden database
    oneroof made. Raises SnapshotFailed when the copy's fingerprint differs from production's.
    """
    check_identifier(name, "golden name")
    if not 1 <= jobs <= 64:
        raise UsageError(f"--jobs {jobs} is out of range: use a whole number from 1 to 64")
    started = time.monotonic()
    temp = check_identifier(f"{name[:40]}__snapshot_{secrets.token_hex(4)}", "database name")
    workdir = Path(tempfile.mkdtemp(prefix="oneroof-snapshot-"))
    copy = _Copy(prod_dsn, admin_dsn, name, temp, jobs, progress or (lambda _m: None), workdir)
    created = False
    try:
        with connect(admin_dsn, autocommit=True) as admin:
            _claim(admin, copy, replace)
            created = True  # from here on the temporary database may exist (dropped IF EXISTS)
            _copy(admin, copy, read)
            golden_fp = _verify(copy, read)
            provenance = _install(admin, copy, tool, replace)
            created = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if created:
            with connect(admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(temp)))
    return SnapshotResult(
        name,
        provenance,
        copy.entry,
        copy.exit,
        golden_fp,
        copy.xid_assigned,
        copy.metrics,
        copy.tables,
        copy.bytes,
        copy.phases,
        time.monotonic() - started,
        []
        if copy.facts["system_identifier"]
        else ["system_identifier unknown: the role may not call pg_control_system() (grant pg_monitor)"],
    )


def mark(admin: psycopg.Connection[Any], name: str, provenance: Provenance) -> None:
    """Mark database `name` golden and read-only by default, and record where it came from."""
    for setting, value in (
        (GOLDEN_SETTING, "on"),
        (PROVENANCE_SETTING, json.dumps(asdict(provenance))),
        ("default_transaction_read_only", "on"),
    ):
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(name), sql.Identifier(*setting.split(".")), sql.Literal(value)
            )
        )
