"""Golden snapshots of production, with the PostgreSQL 15 service playing production.

A production database is built there (the synthetic golden layer, then extra content, users
with passwords, static tokens and TFA secrets, settings secrets, a share, a webhook and a live
session) under a unique name, and dropped after the module. It is snapshotted into the test
server. Skips, saying so, when the service is unreachable (ONEROOF_TEST_PRODUCTION names another).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from oneroof.core import metrics, package
from oneroof.core.evidence import StepName
from oneroof.executor import report
from oneroof.executor.capture import take
from oneroof.executor.rehearse import rehearse
from oneroof.harness import capture, clones, golden
from oneroof.harness.capture import MARKER, SnapshotFailed, SnapshotResult
from oneroof.harness.db import LOCK_TIMEOUT_MS, connect
from oneroof.harness.errors import DatabaseExists
from oneroof.harness.server import bin_dir
from tests.support.processes import interrupt, start_executor
from tests.support.production import (
    Production,
    drop_database,
    production_database,
    skip_below_a_rehearsal_server,
)
from tests.support.testing import PgServer

# Per-table write counters of production: a snapshot must not move them.
COUNTERS_SQL = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables ORDER BY relname"
)


def leftovers(admin_dsn: str, name: str) -> list[str]:
    """Databases named `name`, or a snapshot's temporary name of it, on a server."""
    with connect(admin_dsn, autocommit=True) as admin:
        return [
            r["datname"]
            for r in admin.execute(
                "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s) ORDER BY 1",
                (name, name[:40] + "__snapshot_"),
            ).fetchall()
        ]


def counters(dsn: str) -> list[dict[str, Any]]:
    with connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(COUNTERS_SQL).fetchall()


@pytest.fixture(scope="module", autouse=True)
def rehearsal_server_of_17_or_later(test_server: PgServer) -> None:
    skip_below_a_rehearsal_server(test_server.version)


@pytest.fixture(scope="module")
def production(worker_id: str) -> Iterator[Production]:
    """A Directus production database on the PostgreSQL 15 service, dropped after the module."""
    with production_database(worker_id) as made:
        yield made


@dataclass(frozen=True)
class Snapshot:
    result: SnapshotResult
    name: str
    dsn: str
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]


@pytest.fixture(scope="module")
def snap(production: Production, test_server: PgServer, worker_id: str) -> Iterator[Snapshot]:
    """Production snapshotted into the test server (--jobs 1: the data streamed); dropped after the module."""
    name = f"{test_server.prefix}_{worker_id}_snap_{secrets.token_hex(3)}"  # dropped at the run's end too
    before = counters(production.dsn)
    try:
        result = take(production.dsn, test_server.admin, name=name, jobs=1)
        time.sleep(0.1)
        yield Snapshot(result, name, test_server.dsn(name), before, counters(production.dsn))
    finally:
        drop_database(test_server.admin, name)


def reading(dsn: str) -> metrics.Reading:
    with connect(dsn) as conn:
        return metrics.read(conn)


def test_snapshot_equals_production_at_the_snapshot(snap: Snapshot, production: Production) -> None:
    result = snap.result
    assert result.entry == result.exit == result.golden
    assert not result.xid_assigned
    assert reading(snap.dsn).fingerprint == reading(production.dsn).fingerprint == result.entry
    assert reading(snap.dsn).metrics == {**reading(production.dsn).metrics, "db": snap.name}
    # Content outside the fingerprint is copied exactly too.
    digest = "SELECT md5(string_agg(t::text, E'\\n' ORDER BY id)) AS d, count(*) AS n FROM prod_extra AS t"
    with connect(snap.dsn) as copy, connect(production.dsn) as prod:
        assert copy.execute(digest).fetchone() == prod.execute(digest).fetchone()
        ident = prod.execute("SELECT system_identifier::text AS id FROM pg_control_system()").fetchone()
    prov = golden.provenance(snap.dsn, snap.name)
    assert (prov.kind, prov.database, prov.fingerprint) == ("production snapshot", production.name, result.entry)
    assert ident is not None and prov.system_identifier == ident["id"]
    assert prov.describe().startswith(f"clone of production `{production.name}` on host 127.0.0.1")


def test_production_did_not_move(snap: Snapshot) -> None:
    assert snap.before == snap.after
    assert len(snap.before) > 40


def test_no_secret_of_production_survives_in_the_golden(
    snap: Snapshot, production: Production, test_server: PgServer
) -> None:
    dump = subprocess.run(
        [str(bin_dir() / "pg_dump"), f"--dbname={snap.dsn}"], capture_output=True, check=True, timeout=300
    ).stdout
    assert b"prod_extra" in dump and len(dump) > 10_000_000
    assert [s for s in production.secrets if s.encode() in dump] == []
    assert b"s3cr3t" not in dump
    # NULL stays NULL and a value stays a value: the gate still sees who has a static token.
    who = (
        "SELECT email, password IS NULL AS p, token IS NULL AS t, tfa_secret IS NULL AS f, auth_data IS NULL AS a "
        "FROM directus_users ORDER BY email"
    )
    with connect(snap.dsn) as copy, connect(production.dsn) as prod:
        assert copy.execute(who).fetchall() == prod.execute(who).fetchall()
        tokens = copy.execute("SELECT token FROM directus_users WHERE token IS NOT NULL").fetchall()
        assert len(tokens) == 3 and all(r["token"].startswith(MARKER) for r in tokens)
        assert copy.execute("SELECT count(*) AS n FROM directus_sessions").fetchone() == {"n": 0}
        settings = copy.execute("SELECT mapbox_key FROM directus_settings").fetchone()
        assert settings is not None and settings["mapbox_key"].startswith(MARKER)


def test_the_streamed_dump_carries_no_secret(production: Production, tmp_path: Path) -> None:
    """What --jobs 1 pipes straight into the copy, pg_dump's data at the snapshot, holds none of
    production's secrets, in any schema (`legacy.directus_users` too), and no session row.
    """
    with connect(production.dsn) as src:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        snap = src.execute("SELECT pg_export_snapshot() AS id").fetchone()
        assert snap is not None
        copy = capture._Copy(production.dsn, "", "x", "x", 1, lambda _m: None, tmp_path, snapshot_id=snap["id"])
        argv, env = capture._streamed_dump(copy)
        stream = subprocess.run(argv, env=env, capture_output=True, check=True, timeout=300).stdout
    assert b"prod_extra" in stream and len(stream) > 10_000_000
    assert [s for s in production.secrets if s.encode() in stream] == []
    assert b"s3cr3t" not in stream


def test_jobs_2_copies_without_secrets_too(production: Production, test_server: PgServer, unique: Any) -> None:
    """--jobs 2 dumps in parallel to the workdir and redacts there: the copy is exact, with no secret."""
    name = unique("snap_j2")
    try:
        result = take(production.dsn, test_server.admin, name=name, jobs=2)
        assert result.entry == result.exit == result.golden and "dump" in result.phases
        dump = subprocess.run(
            [str(bin_dir() / "pg_dump"), f"--dbname={test_server.dsn(name)}"], capture_output=True, check=True
        ).stdout
        assert b"prod_extra" in dump and b"s3cr3t" not in dump
    finally:
        drop_database(test_server.admin, name)


def test_a_restore_that_refuses_the_stream_leaves_nothing(
    production: Production, test_server: PgServer, unique: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamed pg_restore refuses a row (a CHECK that holds on production and not in the copy)
    while pg_dump still writes: the snapshot fails with pg_restore's error (not pg_dump's broken
    pipe), pg_dump is gone from production, and no database, temporary database or workdir is left.
    """
    name = unique("snap_refused")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with connect(production.dsn, autocommit=True) as conn:
        # First in the dump's order, before 10 MB more: pg_dump is still writing when pg_restore stops.
        conn.execute(
            "CREATE TABLE public.aaa_refused (id integer PRIMARY KEY, "
            "CHECK (current_database() NOT LIKE '%\\_\\_snapshot\\_%'))"
        )
        conn.execute("INSERT INTO public.aaa_refused SELECT generate_series(1, 100)")
    try:
        with pytest.raises(SnapshotFailed) as failed:
            take(production.dsn, test_server.admin, name=name, jobs=1)
        message = failed.value.message
        assert message.startswith("pg_restore failed: ") and "violates check constraint" in message, message
        assert message.endswith("nothing was kept")
    finally:
        with connect(production.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE public.aaa_refused")
    assert leftovers(test_server.admin, name) == []
    assert _sessions(production) == []
    assert list(tmp_path.iterdir()) == []


def test_a_secret_table_with_a_child_table_is_refused(
    production: Production, test_server: PgServer, unique: Any
) -> None:
    """An inheriting table (or a partition) of directus_users holds rows the dump would copy under
    its own name, secrets unredacted: the snapshot refuses before it creates anything.
    """
    name = unique("snap_child")
    with connect(production.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.zz_more_users () INHERITS (public.directus_users)")
        conn.execute("INSERT INTO public.zz_more_users SELECT * FROM ONLY public.directus_users LIMIT 1")
    try:
        with pytest.raises(SnapshotFailed) as failed:
            take(production.dsn, test_server.admin, name=name, jobs=1)
        assert failed.value.message == (
            "public.directus_users has child tables (zz_more_users): a partition or an inheriting table would be "
            "copied without its secrets redacted; a Directus database has none, so detach or drop them first; "
            "nothing was kept"
        )
    finally:
        with connect(production.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE public.zz_more_users")
    assert leftovers(test_server.admin, name) == []
    assert _sessions(production) == []


def test_progress_lines_keep_coming_through_one_slow_table(
    production: Production, test_server: PgServer, unique: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One table is slow to restore (a CHECK that sleeps in the copy, 2 s in all) and pg_restore
    prints nothing meanwhile: the copy's lines still come every PROGRESS_EVERY, the table's bytes in
    flight are read from pg_stat_progress_copy, and the snapshot succeeds.
    """
    name = unique("snap_progress")
    monkeypatch.setattr(capture, "PROGRESS_EVERY", 0.1)
    read, seen = capture._copying, []

    def copying(*args: str) -> dict[str, int]:
        seen.append(found := read(*args))
        return found

    monkeypatch.setattr(capture, "_copying", copying)
    lines: list[tuple[float, str]] = []
    with connect(production.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.aaa_progress_in_a_copy() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
            "IF current_database() LIKE '%\\_\\_snapshot\\_%' THEN PERFORM pg_sleep(0.05); END IF; "
            "RETURN true; END $$"
        )
        conn.execute(
            "CREATE TABLE public.aaa_progress (id integer PRIMARY KEY, CHECK (public.aaa_progress_in_a_copy()))"
        )
        conn.execute("INSERT INTO public.aaa_progress SELECT generate_series(1, 40)")
    try:
        result = take(
            production.dsn,
            test_server.admin,
            name=name,
            jobs=1,
            progress=lambda m: lines.append((time.monotonic(), m)),
        )
        assert result.entry == result.exit == result.golden
    finally:
        drop_database(test_server.admin, name)
        with connect(production.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE public.aaa_progress")
            conn.execute("DROP FUNCTION public.aaa_progress_in_a_copy()")
    copy = [(at, m) for at, m in lines if m.startswith("copy: ")]
    gaps = [later - at for (at, _), (later, _) in zip(copy, copy[1:], strict=False)]
    assert len(copy) >= 10 and max(gaps) < 1, copy  # the slow table alone takes 2 s
    assert any(found.get("public.aaa_progress", 0) > 0 for found in seen), seen
    done, of = copy[-1][1].removeprefix("copy: ").split(" tables")[0].split("/")
    assert done == of, copy[-1]


def _client_pids(tool: str, *args: str) -> list[int]:
    """This user's running `tool` processes whose command line holds each of `args` as a substring."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except (OSError, ValueError):
            continue
        if argv and Path(argv[0]).name == tool and all(any(a in arg for arg in argv) for a in args):
            found.append(int(entry.name))
    return found


def test_a_restore_killed_mid_stream_leaves_nothing(
    production: Production, test_server: PgServer, unique: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamed pg_restore is killed while it copies (a table that is slow to restore, first
    in the dump's order): the snapshot fails saying so, pg_dump is gone from production, and no
    database, temporary database or workdir is left.
    """
    name = unique("snap_killed")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with connect(production.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.aaa_slow_in_a_copy() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
            "IF current_database() LIKE '%\\_\\_snapshot\\_%' THEN PERFORM pg_sleep(0.1); END IF; "
            "RETURN true; END $$"
        )
        conn.execute("CREATE TABLE public.aaa_slow (id integer PRIMARY KEY, CHECK (public.aaa_slow_in_a_copy()))")
        conn.execute("INSERT INTO public.aaa_slow SELECT generate_series(1, 600)")
    try:
        with ThreadPoolExecutor(1) as pool:
            taking = pool.submit(take, production.dsn, test_server.admin, name=name, jobs=1)
            deadline = time.monotonic() + 120
            with connect(test_server.admin, autocommit=True) as conn:
                while not conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'oneroof-snapshot-restore' "
                    "AND starts_with(query, 'COPY public.aaa_slow ')"
                ).fetchall():
                    assert time.monotonic() < deadline and not taking.done(), "pg_restore never copied aaa_slow"
                    time.sleep(0.05)
            (pid,) = _client_pids("pg_restore", f"{name[:40]}__snapshot_", "--section=data")
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(SnapshotFailed) as failed:
                taking.result(timeout=120)
        assert failed.value.message == "pg_restore failed: ended by SIGKILL; nothing was kept"
    finally:
        with connect(production.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE public.aaa_slow")
            conn.execute("DROP FUNCTION public.aaa_slow_in_a_copy()")
    assert leftovers(test_server.admin, name) == []
    assert _sessions(production) == []
    assert list(tmp_path.iterdir()) == []


def test_golden_list_and_show_name_the_source(
    oneroof: Any, snap: Snapshot, test_server: PgServer, production: Production
) -> None:
    listed = oneroof("golden", "list", "--dsn", test_server.admin)
    assert listed.returncode == 0, listed.stderr
    assert f"{snap.name}\tclone of production `{production.name}` on host 127.0.0.1:5432" in listed.stdout
    assert f"{test_server.golden}\tsynthetic golden" in listed.stdout
    shown = oneroof("golden", "show", snap.name, "--dsn", test_server.admin)
    assert shown.returncode == 0, shown.stderr
    assert snap.result.entry in shown.stdout and "system_identifier" in shown.stdout


def test_replace_refreshes_only_a_golden_oneroof_made(
    production: Production, test_server: PgServer, admin: Any, unique: Any
) -> None:
    name = unique("notgolden")
    drop_database(test_server.admin, name)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with pytest.raises(DatabaseExists, match="not a golden database"):
            take(production.dsn, test_server.admin, name=name, replace=True)
        with pytest.raises(DatabaseExists, match="--replace"):
            take(production.dsn, test_server.admin, name=test_server.golden)
        assert leftovers(test_server.admin, name) == [name]
    finally:
        drop_database(test_server.admin, name)


def _hold_a_table(production: Production) -> psycopg.Connection[Any]:
    """A production session holding ACCESS EXCLUSIVE on a table outside the fingerprint, so the
    snapshot's pg_dumps (of the data and of the schema) wait on it.
    """
    conn = connect(production.dsn)
    conn.execute("LOCK TABLE prod_extra IN ACCESS EXCLUSIVE MODE")
    return conn


def _wait_for_dump(production: Production, timeout: float = 120) -> None:
    """Until both of the snapshot's pg_dumps wait on the held table: the data's, and the schema's,
    which runs beside it once the temporary database is created.
    """
    deadline = time.monotonic() + timeout
    with connect(production.admin, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(DISTINCT application_name) AS n FROM pg_stat_activity WHERE datname = %s "
                "AND application_name IN ('oneroof-snapshot-dump', 'oneroof-snapshot-schema') "
                "AND wait_event_type = 'Lock'",
                (production.name,),
            ).fetchone()
            if waiting is not None and waiting["n"] == 2:
                return
            time.sleep(0.1)
    raise AssertionError("pg_dump never waited on the held table")


def _sessions(production: Production, wait: float = 10) -> list[str]:
    """Oneroof's sessions left on production, once they have had `wait` seconds to end."""
    deadline = time.monotonic() + wait
    with connect(production.admin, autocommit=True) as conn:
        while True:
            left = [
                r["application_name"]
                for r in conn.execute(
                    "SELECT application_name FROM pg_stat_activity "
                    "WHERE datname = %s AND starts_with(application_name, 'oneroof-snapshot')",
                    (production.name,),
                ).fetchall()
            ]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)


@contextmanager
def _snapshot_mid_copy(
    production: Production, admin: str, name: str, *, group: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """`oneroof golden snapshot` of production into `name` on `admin`, held mid-copy: its pg_dump
    waits on a locked table until the block ends (`group`: in a process group of its own, for
    interrupt()).
    """
    holder = _hold_a_table(production)
    try:
        snapshot = ("golden", "snapshot", "--from", production.dsn, "--dsn", admin, "--name", name)
        proc = start_executor(*snapshot, group=group)
        _wait_for_dump(production)
        yield proc
    finally:
        holder.close()


def test_ctrl_c_mid_copy_leaves_no_golden_and_no_temporary_database(
    production: Production, test_server: PgServer, unique: Any
) -> None:
    """Ctrl-C ends the copy at once, both pg_dumps included: well before the schema's pg_dump, left
    alone, would give up waiting on the held table (its lock wait timeout).
    """
    name = unique("snap_int")
    with _snapshot_mid_copy(production, test_server.admin, name, group=True) as proc:
        assert leftovers(test_server.admin, name) != []  # the temporary database exists mid-copy
        started = time.monotonic()
        _, err = interrupt(proc)
        took = time.monotonic() - started
    # A third of the lock wait timeout: the pg_dumps began to wait before the Ctrl-C, so one left
    # to wait out the lock would end the command just under the whole timeout after it.
    assert took < LOCK_TIMEOUT_MS / 3000, f"Ctrl-C took {took:.1f} s: something waited out the lock"
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert leftovers(test_server.admin, name) == []
    assert _sessions(production) == []


def test_a_source_that_goes_away_mid_copy_leaves_nothing(
    production: Production, test_server: PgServer, unique: Any
) -> None:
    name = unique("snap_gone")
    with _snapshot_mid_copy(production, test_server.admin, name) as proc:
        with connect(production.admin, autocommit=True) as conn:  # production goes away
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
                "starts_with(application_name, 'oneroof-snapshot')",
                (production.name,),
            )
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "pg_dump failed" in err and "nothing was kept" in err and "Traceback" not in err
    assert leftovers(test_server.admin, name) == []


def test_rehearse_from_production_snapshots_first_and_is_go(
    production: Production, test_server: PgServer, unique: Any, tmp_path: Path
) -> None:
    name = unique("snap_rh")
    try:
        evidence = rehearse(test_server.admin, run_dir=tmp_path, golden_name=name, snapshot_from=production.dsn)
        assert evidence.ok, [(s.name, s.detail) for s in evidence.steps if not s.ok]
        assert [s.name for s in evidence.steps][:3] == ["package", "snapshot", "golden"]
        assert evidence.golden_origin.startswith(f"clone of production `{production.name}` on host 127.0.0.1:5432 at ")
        assert evidence.golden_provenance["kind"] == "production snapshot"
        assert (evidence.production or {}).get("database") == production.name  # production's gate read too
        assert f"Golden `{name}`: clone of production `{production.name}`" in report.render(evidence, "md")
        assert clones.list_clones(test_server.admin) == [
            c for c in clones.list_clones(test_server.admin) if c.source != name
        ]
    finally:
        drop_database(test_server.admin, name)


@pytest.mark.directus
def test_directus_serves_a_clone_of_the_snapshot_and_a_human_ratifies(
    directus_install: Any, snap: Snapshot, test_server: PgServer, tmp_path: Path
) -> None:
    from oneroof.executor.monitor import monitor
    from tests.support.directus import ratify_on_clone

    made = clones.create(test_server.admin, source=snap.name, name=clones.default_name("t_dxs"), wait=60)
    try:
        from tests.support.testing import signers

        trust = signers()
        running, approved = ratify_on_clone(directus_install, made.dsn, tmp_path, trust.keys["l4"], trust.trust.path)
        running.stop()
        assert approved.returncode == 0, approved.stdout + approved.stderr
        verdict = monitor(made.dsn, package.load().path, confirm_db=made.name, trust=trust.trust)
        assert (verdict.verdict, verdict.reasons) == ("OPEN", [])
    finally:
        clones.drop(test_server.admin, made.name)


def test_bad_snapshot_input_is_one_line_exit_2(oneroof: Any, test_server: PgServer) -> None:
    for args, says in (
        (("golden", "snapshot"), "needs --from PROD_DSN"),
        (("golden", "snapshot", "--from", "host=127.0.0.1 port=1 dbname=x", "--jobs", "0"), "--jobs 0 is out of range"),
        (("golden", "snapshot", "--from", "host=127.0.0.1 port=1 dbname=x password=hunter2"), "cannot connect to"),
        (("rehearse", "--from", "host=127.0.0.1 port=1 dbname=x", "--jobs", "65"), "--jobs 65 is out of range"),
        (("golden", "show"), "needs the NAME"),
        (("golden", "show", "t_no_such_golden"), "no database named"),
    ):
        result = oneroof(*args, "--dsn", test_server.admin)
        assert result.returncode == 2, (args, result.stderr)
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "hunter2" not in result.stderr


def test_rehearse_never_rebuilds_a_snapshot_for_another_package(
    snap: Snapshot, test_server: PgServer, tmp_path: Path
) -> None:
    other = tmp_path / "package"
    package.bundle(package.DEFAULT_DIR, other)
    deploy = sorted(other.glob("*deploy*.sql"))[0]
    deploy.write_text(deploy.read_text() + "\n-- another package\n")
    assert package.seal(other) != package.load().sha256
    evidence = rehearse(test_server.admin, run_dir=tmp_path / "run", package_dir=other, golden_name=snap.name)
    assert not evidence.ok
    failed = evidence.step(StepName.GOLDEN)
    assert failed is not None and not failed.ok and "production has not been prepared" in failed.detail
    assert golden.provenance(test_server.admin, snap.name).kind == "production snapshot"
    assert reading(snap.dsn).fingerprint == snap.result.entry
