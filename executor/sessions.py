"""Stage sessions: each a real pytest process of its own, forked from a prepared worker.

Starting Python and importing pytest, psycopg and oneroof's core again for every stage session
cost more than the session's SQL. A worker, started once per executor process (on first use, or
early with `prepare()` so that its start-up overlaps other work), imports them once, then forks
one child per session. Each child is a new process with its own pid, environment, standard
output and exit code, which can be killed alone; it starts from the worker's clean state, in
which no session has ever run: the invariant modules, their conftest, syrupy and the suite's
plugin are imported and run in the child only, so no module state passes from one session to the
next. Their asserts are rewritten once, in the worker (`rewrite_ahead`): pytest in a child takes a
file's rewritten code from there while the file holds the bytes the worker rewrote, and rewrites it
afresh otherwise.

The protocol, over a Unix socket pair: the caller sends one JSON request (argv, environment,
working directory) with its standard output and error as file descriptors (SCM_RIGHTS); the
worker answers `pid N`, then `exit CODE MAXRSS_KB CPU_SECONDS` when the child has ended.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    import types
    from collections.abc import Callable

# Imported once by the worker. Never a module pytest marks for assertion rewriting in a session
# (syrupy, oneroof.fixtures.plugin, xdist, the invariants): imported before pytest's hook, it
# would not be rewritten, and pytest's warning about it is an error in a stage session.
PRELOAD = (
    "pytest",
    "_pytest.junitxml",
    "psycopg",
    "psycopg.rows",
    "oneroof.core.content",
    "oneroof.core.dispatch",
    "oneroof.core.evidence",
    "oneroof.core.gate",
    "oneroof.core.ledger",
    "oneroof.core.metrics",
    "oneroof.core.package",
    "oneroof.core.privileges",
    "oneroof.core.settings",
    "oneroof.core.signatures",
    "oneroof.core.target",
    "oneroof.harness.catalog",
    "oneroof.harness.db",
    "oneroof.harness.errors",
)
REWRITTEN = ("syrupy", "oneroof.fixtures.plugin", "xdist", "oneroof.invariants")
CRASHED = 70  # the child's exit code when pytest itself could not run (EX_SOFTWARE)


@dataclass(frozen=True)
class Ended:
    """How one session ended: its process id, its exit code (negative: killed by that signal) and
    its peak memory.
    """

    pid: int
    code: int
    max_rss_kb: int
    cpu_seconds: float  # user and system time: unlike wall time, barely moved by others' load


class Worker:
    """One prepared worker process; it runs one session at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))}
        self.proc = subprocess.Popen(
            # -P: the working directory stays off the import path, as in `python -m oneroof.executor`
            [sys.executable, "-P", "-m", "oneroof.executor.sessions", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            # Nothing of the caller's: a relay of the caller's output (`oneroof verify`) waits for every
            # writer to close it, and the worker outlives the sessions. Each child gets its own.
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=Path(__file__).resolve().parent,
        )
        theirs.close()
        self.sock = ours
        self.buffer = b""

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, stdout: int, stderr: int, timeout: float) -> Ended:
        """Run `pytest argv` in a fresh child; kill it after `timeout` seconds (code TIMED_OUT then)."""
        request = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode() + b"\n"
        socket.send_fds(self.sock, [request], [stdout, stderr])
        pid = int(self._line().removeprefix("pid "))
        try:
            answer = self._line(time.monotonic() + timeout)
            if answer is None:
                os.kill(pid, signal.SIGKILL)
                _, _, rss, cpu = self._line().split()
                return Ended(pid, TIMED_OUT, int(rss), float(cpu))
        except BaseException:  # Ctrl-C or anything else: the session does not outlive its caller
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.close()
            raise
        _, code, rss, cpu = answer.split()
        return Ended(pid, int(code), int(rss), float(cpu))

    @overload
    def _line(self) -> str: ...
    @overload
    def _line(self, deadline: float) -> str | None: ...
    def _line(self, deadline: float | None = None) -> str | None:
        """The worker's next line; None when `deadline` (time.monotonic()) passes first."""
        while b"\n" not in self.buffer:
            if deadline is not None:
                ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    return None
            data = self.sock.recv(4096)
            if not data:
                raise OSError(
                    f"the stage-session worker (pid {self.proc.pid}) ended unexpectedly (exit {self.proc.poll()})"
                )
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        """Let the worker go: it ends when its socket closes."""
        self.sock.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


TIMED_OUT = 124  # the exit code `timeout` uses
_idle: list[Worker] = []
_lock = threading.Lock()


def prepare() -> None:
    """Start a worker now, if none is idle, so that its imports overlap the caller's other work."""
    with _lock:
        if not _idle:
            _idle.append(Worker())


def run(argv: list[str], env: dict[str, str], cwd: Path, *, quiet: bool, timeout: float) -> Ended:
    """Run one pytest session (`pytest argv`, environment `env` exactly, in `cwd`) in a child of
    an idle worker (started if there is none); its output is the caller's (discarded if `quiet`).
    """
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None or worker.proc.poll() is not None:
        worker = Worker()
    sys.stdout.flush()
    sys.stderr.flush()
    if quiet:
        with open(os.devnull, "wb") as null:
            ended = worker.run(argv, env, cwd, null.fileno(), null.fileno(), timeout)
    else:
        ended = worker.run(argv, env, cwd, 1, 2, timeout)  # as a subprocess inherits them
    with _lock:
        _idle.append(worker)
    return ended


@atexit.register
def _close_all() -> None:
    with _lock:
        while _idle:
            _idle.pop().close()


# -- the worker's side -----------------------------------------------------------------------------


def serve(sock: socket.socket) -> None:
    """The worker's loop: one request at a time, one forked child each, until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the session's and the caller's
    while True:
        message = b""
        fds: list[int] = []
        while not message.endswith(b"\n"):
            data, got, _flags, _addr = socket.recv_fds(sock, 1 << 20, 2)
            if not data:
                return
            message += data
            fds += got
        request = json.loads(message)
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            gc.enable()
            sock.close()
            _child(request, fds)
        for fd in fds:
            os.close(fd)
        sock.sendall(f"pid {pid}\n".encode())
        _, status, usage = os.wait4(pid, 0)
        cpu = usage.ru_utime + usage.ru_stime
        sock.sendall(f"exit {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {cpu:.3f}\n".encode())


def _child(request: dict[str, object], fds: list[int]) -> None:
    code = CRASHED
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        env = request["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(str(request["cwd"]))
        import pytest

        argv = request["argv"]
        assert isinstance(argv, list)
        sys.argv = ["pytest", *argv]
        code = int(pytest.main(argv))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def rewrite_ahead(files: list[Path]) -> Callable[[Path, object], tuple[os.stat_result, types.CodeType]]:
    """The assertion rewrite of pytest (`_pytest.assertion.rewrite._rewrite_test`) of every file of
    `files` done now, once, without importing them, and a stand-in for that function that hands a
    file's code object out again while the file holds the very bytes rewritten: otherwise (and for
    every other file, or with the assertion-pass hook on) it rewrites the file afresh.
    """
    import ast

    from _pytest.assertion import rewrite

    original = rewrite._rewrite_test
    ready: dict[str, tuple[bytes, types.CodeType]] = {}
    for path in files:
        try:
            # as _rewrite_test does, but from the very bytes kept beside the code: a file changed
            # between two reads cannot pair one version's bytes with the other's code
            source = path.read_bytes()
            tree = ast.parse(source, filename=str(path))
            rewrite.rewrite_asserts(tree, source, str(path), None)  # no config: no assertion-pass hook
            code = compile(tree, str(path), "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError):
            continue  # the child rewrites it, and reports what is wrong, as pytest always does
        ready[str(path)] = (source, code)

    def rewrite_test(fn: Path, config: object) -> tuple[os.stat_result, types.CodeType]:
        known = ready.get(str(fn))
        hook = getattr(config, "getini", None)
        if known is not None and not (hook and hook("enable_assertion_pass_hook")):
            stat = os.stat(fn)
            if fn.read_bytes() == known[0]:
                return stat, known[1]
        return original(fn, config)  # type: ignore[arg-type]

    return rewrite_test


def rewritten_files() -> list[Path]:
    """The files a stage session rewrites: the invariants, the suite's plugin, syrupy's modules."""
    import importlib.util

    from oneroof.core import settings

    files = sorted((settings.ROOT / "invariants").rglob("*.py"))
    for name in ("syrupy", "oneroof.fixtures.plugin"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if spec.submodule_search_locations:
            files += sorted(p for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py"))
        else:
            files.append(Path(spec.origin))
    return files


def main() -> None:
    """`python -m oneroof.executor.sessions FD`: the worker, serving the socket FD."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    # What the worker imports stays out of every child's garbage collection (Python's advice for
    # a process that forks without exec): pytest collects five times as a session ends, and
    # walking the worker's objects there cost more than the session's SQL; objects a session
    # makes are collected as ever.
    gc.disable()
    for name in PRELOAD:
        importlib.import_module(name)
    early = [name for name in REWRITTEN if name in sys.modules]
    if early:
        raise SystemExit(f"stage-session worker: {', '.join(early)} imported before pytest could rewrite it")
    from _pytest.assertion import rewrite

    from oneroof.core import package
    from oneroof.harness.errors import OneroofError

    # Each child still imports and runs the invariants, the plugin and syrupy afresh, but from code
    # objects rewritten here once, not from a rewrite of its own: most of a session's start-up where
    # no bytecode may be written (PYTHONDONTWRITEBYTECODE).
    rewrite._rewrite_test = rewrite_ahead(rewritten_files())  # type: ignore[assignment]
    # Parse the default package's SQL once, here: each session still reads and verifies every
    # file, and parses again whatever differs (core/package.py caches by file text).
    with contextlib.suppress(OneroofError, OSError):
        package.load()
    gc.freeze()
    serve(sock)


if __name__ == "__main__":
    main()
