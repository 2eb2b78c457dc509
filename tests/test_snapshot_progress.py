"""The golden snapshot's progress while a client tool runs: lines on a ticker of their own (a tool
that prints nothing for a while, as pg_restore copying one long table, does not silence them), and
the bytes of the COPY in flight read from pg_stat_progress_copy on the test server.

`oneroof golden snapshot`'s own lines through one slow table are tested in tests/test_snapshot.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from psycopg import sql

from oneroof.harness import capture
from oneroof.harness.capture import RESTORE_APP, SnapshotFailed
from oneroof.harness.db import connect
from tests.support.production import drop_database
from tests.support.testing import PgServer

EVERY = 0.1  # PROGRESS_EVERY in these tests


def _tickers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "oneroof-snapshot-progress"]


def _watch(lines: list[tuple[float, str]]) -> capture._Watch:
    """A copy of three tables of 1 MB each, its lines kept with the time they came."""
    return capture._Watch("copy", lambda m: lines.append((time.monotonic(), m)), 3, 3_000_000, lambda d: len(d) * 10**6)


def test_lines_keep_coming_while_the_tool_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watched tool that reaches one table and then prints nothing for a second: a line every
    PROGRESS_EVERY meanwhile, then the tool's last line once it has ended, and none after it.
    """
    monkeypatch.setattr(capture, "PROGRESS_EVERY", EVERY)
    lines: list[tuple[float, str]] = []
    script = "echo 'pg_restore: processing data for table \"public.big\"'; sleep 1"
    started = time.monotonic()
    capture._run_tool(["sh", "-c", script], dict(os.environ), _watch(lines))
    ended = time.monotonic()
    assert _tickers() == []
    *ticks, last = lines
    assert len(ticks) >= 4, lines  # about 1 s / EVERY of them, on a loaded machine fewer
    assert all(started < at < ended for at, _ in lines)
    assert [m.split(", ", 1)[0] for _, m in ticks] == ["copy: 1/3 tables"] * len(ticks)
    assert last[1].startswith("copy: 1/3 tables, 1.0 MB of ~3.0 MB, 1.")
    time.sleep(3 * EVERY)  # no ticker left to print: nothing more comes
    assert len(lines) == len(ticks) + 1


def test_a_failed_tool_leaves_no_ticker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "PROGRESS_EVERY", EVERY)
    lines: list[tuple[float, str]] = []
    with pytest.raises(SnapshotFailed, match="sh failed: exit code 3; nothing was kept"):
        capture._run_tool(["sh", "-c", "sleep 0.5; exit 3"], dict(os.environ), _watch(lines))
    ended = time.monotonic()
    assert _tickers() == []
    assert len(lines) >= 2 and all(at < ended for at, _ in lines), lines


CTRL_C = textwrap.dedent(
    """
    import os, sys, threading
    from oneroof.harness import capture
    capture.PROGRESS_EVERY = 0.1
    watch = capture._Watch("copy", lambda m: print(m, flush=True), 1, 1, lambda d: 0)
    try:
        capture._run_tool(["sleep", "60"], dict(os.environ), watch, started=lambda p: print("pid", p.pid, flush=True))
    except KeyboardInterrupt:
        print("interrupted", [t.name for t in threading.enumerate() if t.name == "oneroof-snapshot-progress"])
    """
)


def test_ctrl_c_ends_the_tool_and_the_ticker() -> None:
    """Ctrl-C while the ticker runs: the tool is gone at once, and so is the ticker, with no line after."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline().split()[1])
        assert proc.stdout.readline().startswith("copy: 0/1 tables")  # the ticker runs
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - started < 5 and proc.returncode == 0
    assert rest.splitlines()[-1] == "interrupted []", rest
    assert not os.path.exists(f"/proc/{pid}"), "the tool outlived Ctrl-C"


def test_the_copy_in_flight_is_read_from_pg_stat_progress_copy(test_server: PgServer, admin: Any, unique: Any) -> None:
    """A COPY FROM STDIN still open in a scratch database, under the restore's application name:
    its table (named as its COPY names it) and bytes read so far; nothing once it has ended, nor
    for another database or application, nor from a server that cannot be reached.
    """
    name = unique("progress_copy")
    drop_database(test_server.admin, name)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(test_server.dsn(name), autocommit=True, application_name=RESTORE_APP) as conn:
            conn.execute('CREATE TABLE public."Big ""one""" (id integer, note text)')
            assert capture._copying(test_server.admin, name, RESTORE_APP) == {}
            with conn.cursor().copy('COPY public."Big ""one""" (id, note) FROM STDIN') as copy:
                for i in range(20_000):
                    copy.write_row((i, "x" * 50))
                deadline = time.monotonic() + 30
                while not (copying := capture._copying(test_server.admin, name, RESTORE_APP)):
                    assert time.monotonic() < deadline, "the open COPY was never seen"
                    time.sleep(0.05)
                assert list(copying) == ['public.Big "one"'] and copying['public.Big "one"'] > 0, copying
                assert capture._copying(test_server.admin, name, "another-application") == {}
                assert capture._copying(test_server.admin, "postgres", RESTORE_APP) == {}
            assert capture._copying(test_server.admin, name, RESTORE_APP) == {}
            assert conn.execute('SELECT count(*) AS n FROM "Big ""one"""').fetchone() == {"n": 20_000}
    finally:
        drop_database(test_server.admin, name)
    unreachable = time.monotonic()
    assert capture._copying("host=127.0.0.1 port=1 dbname=x", name, RESTORE_APP) == {}
    assert time.monotonic() - unreachable < capture.COPYING_TIMEOUT + 1


def test_bytes_in_flight_count_instead_of_the_table_s_size() -> None:
    """A table reached and still copying counts with its COPY's bytes, not its size; done stays capped."""
    lines: list[str] = []
    watch = capture._Watch("copy", lines.append, 3, 3_000_000, lambda d: len(d) * 10**6)
    for table in ("a", "b"):
        watch.feed(f'pg_restore: processing data for table "public.{table}"')
    watch._report({"public.b": 250_000})
    watch._report({"public.b": 9_000_000})
    assert [m.split(", ")[:2] for m in lines] == [
        ["copy: 1/3 tables", "1.2 MB of ~3.0 MB"],
        ["copy: 1/3 tables", "3.0 MB of ~3.0 MB"],
    ]
