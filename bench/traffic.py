"""The running application during a release, printed as a Markdown table (docs/results/benchmarks.md).

    python bench/traffic.py [--prod ADMIN_DSN] [--dsn ADMIN_DSN] [--scales 1] [--rate 10] [--idle 15]
                            [--rounds 3] [--write-docs]

"Production" is a golden database built at each scale on the server of --prod (default: the
PostgreSQL 15 service at 127.0.0.1:5432), its oneroof marks removed, served by a real Directus
11.3.5 (installed once into ~/.cache/oneroof, as the tests do), and dropped at the end. The
rehearsal server is --dsn, or a throw-away embedded PostgreSQL 18.

All through the run the application writes through Directus at --rate writes per second
(tests/support/traffic.py: item creates and updates in the governed collections, system_issues
inserts, logins). Each oneroof command runs as a whole process while it does: `golden snapshot
--from`, `rehearse --from` (its evidence binds the rollouts), then --rounds times an idle window
of --idle seconds, `rollout`, another idle window and `rollback` (a human approval, signed with a
test key, before each rollout). Measured, in the same run so the machine's load moves every side alike:

- each command's time;
- the application's write latency, p50 and p99, during each command against the idle windows;
- every lock wait in production (sampled every 20 ms): the release should block no content table;
- that no write failed and none was lost (the writes made equal the rows found).

With --write-docs the table replaces the block `traffic` of docs/results/benchmarks.md, once the
run is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import results
from psycopg import sql

from oneroof.core import evidence as rehearsals
from oneroof.core import package
from oneroof.executor import release
from oneroof.harness import catalog, golden, server
from oneroof.harness.db import connect, with_dbname

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support, which no install carries
from tests.support import directus, traffic  # noqa: E402
from tests.support.testing import bound_evidence, signers  # noqa: E402

DEFAULT_PROD = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
GOAL_P99_MS = 200.0  # the release adds less than this to the p99 of application writes
TABLE: list[str] = []  # the lines printed so far, for --write-docs


def line(text: str) -> None:
    TABLE.append(text)
    print(text, flush=True)


def row(name: str, value: str, goal: str = "") -> None:
    line(f"| {name} | {value} | {goal} |")


def drop(admin: str, name: str) -> None:
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class LockWatch:
    """Samples production's ungranted locks every `every` seconds: (seconds on the traffic's clock,
    lock type, relation name or '', the waiting backend's application_name).
    """

    dsn: str
    clock: traffic.Traffic
    every: float = 0.02
    seen: list[tuple[float, str, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LockWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                rows = conn.execute(
                    "SELECT l.locktype, coalesce(c.relname, '') AS rel, a.application_name AS app "
                    "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
                    "LEFT JOIN pg_class AS c ON c.oid = l.relation "
                    "WHERE NOT l.granted AND a.datname = current_database()"
                ).fetchall()
                now = self.clock.now()
                self.seen.extend((now, r["locktype"], r["rel"], r["app"]) for r in rows)

    def between(self, start: float, stop: float) -> list[str]:
        return sorted({f"{kind} {rel}".strip() for t, kind, rel, _ in self.seen if start <= t <= stop})


@dataclass
class Window:
    name: str
    start: float
    stop: float
    seconds: float
    outcome: str = ""


def installed() -> directus.Installation:
    """directus@11.3.5 from the tests' cache, installed there first if need be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("bench/traffic.py needs Node.js >= 18 with npm on PATH (it runs Directus 11.3.5)")
    return directus.install(directus.cache_dir(), npm=npm, node=node, progress=print)


def command(name: str, args: list[str], env: dict[str, str], running: traffic.Traffic, windows: list[Window]) -> int:
    """Run `oneroof ARGS` as a whole process under the traffic; its window goes to `windows`."""
    start = running.now()
    done = subprocess.run(
        [sys.executable, "-m", "oneroof.executor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    stop = running.now()
    word = (done.stdout.split(maxsplit=1) or [""])[0]  # APPLIED:, REVERTED:, BLOCKED: ...
    outcome = f"exit {done.returncode}" + (f" {word.rstrip(':')}" if word.isupper() and word.endswith(":") else "")
    windows.append(Window(name, start, stop, stop - start, outcome))
    if done.returncode not in (0, 1):
        print(f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", file=sys.stderr)
    return done.returncode


def idle(seconds: float, running: traffic.Traffic, windows: list[Window]) -> None:
    start = running.now()
    time.sleep(seconds)
    windows.append(Window("idle", start, running.now(), seconds))


@dataclass
class Production:
    name: str
    dsn: str
    build_seconds: float
    size_mb: float


def build(prod_admin: str, scale: int, tag: str) -> Production:
    name = f"bench_traffic_s{scale}_{tag}"
    started = time.perf_counter()
    golden.build(prod_admin, name=name, scale=scale, package_sha256=package.load().sha256)
    seconds = time.perf_counter() - started
    with connect(prod_admin, autocommit=True) as conn:  # production carries no oneroof marks
        conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
        size = conn.execute("SELECT pg_database_size(%s) AS b", (name,)).fetchone()["b"]  # type: ignore[index]
    return Production(name, with_dbname(prod_admin, name), seconds, size / 1e6)


def release_under_traffic(
    prod: Production, admin: str, env: dict[str, str], args: argparse.Namespace, running: traffic.Traffic
) -> tuple[list[Window], str]:
    """Snapshot, rehearse, then --rounds of idle / rollout / idle / rollback: the windows, and the
    rehearsal's verdict. A NO-GO rehearsal does not bind a rollout: the rollouts are then bound
    by a stand-in evidence, as the tests whose subject is not the rehearsal bind theirs.
    """
    windows: list[Window] = []
    tag = secrets.token_hex(3)
    runs = Path(tempfile.mkdtemp(prefix="oneroof-bench-runs-"))
    try:
        idle(args.idle, running, windows)
        snap = ["golden", "snapshot", "--from", prod.dsn, "--name", f"bench_tr_snap_{tag}", "--jobs", "2"]
        command("golden snapshot --from", [*snap, "--dsn", admin], env, running, windows)
        drop(admin, f"bench_tr_snap_{tag}")
        rehearse = ["rehearse", "--from", prod.dsn, "--golden", f"bench_tr_rh_{tag}", "--jobs", "2"]
        code = command("rehearse --from", [*rehearse, "--dsn", admin, "--runs-dir", str(runs)], env, running, windows)
        drop(admin, f"bench_tr_rh_{tag}")
        evidence = sorted(runs.glob("*/evidence.json"))[-1]
        steps = json.loads(evidence.read_text())["steps"]
        verdict = "GO" if code == 0 else "NO-GO at " + ", ".join(s["name"] for s in steps if not s["ok"])
        if code != 0:  # the rollouts are measured all the same, bound as the tests bind theirs
            evidence = bound_evidence(prod.dsn, runs / "stand-in")
            verdict += "; the rollouts bound by a stand-in evidence"
        for _ in range(args.rounds):
            release_round(prod, evidence, env, args, running, windows)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    return windows, verdict


def release_round(
    prod: Production,
    evidence: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    running: traffic.Traffic,
    windows: list[Window],
) -> None:
    """A human approval, idle, `oneroof rollout`, idle, `oneroof rollback`. A rollout the command
    line does not apply is measured again as its release transaction alone (no gate session, no
    audit; in process), so the transaction's cost to the application is measured in any case.
    """
    with connect(prod.dsn, autocommit=True) as conn:  # a human ratifies (a rollback spends it)
        signers().approve(conn, "l4")
    idle(args.idle, running, windows)
    confirm = ["--dsn", prod.dsn, "--confirm-db", prod.name]
    if command("rollout", ["rollout", *confirm, "--rehearsal", str(evidence)], env, running, windows):
        start = running.now()
        bound = rehearsals.load(evidence)
        pkg = package.load()
        done = release.rollout(
            prod.dsn, pkg, confirm_db=prod.name, gate_session=False, audit=False, trust=signers().trust, rehearsal=bound
        )
        stop = running.now()
        windows.append(Window("rollout transaction alone", start, stop, stop - start, done.action))
    idle(args.idle, running, windows)
    command("rollback", ["rollback", *confirm], env, running, windows)


def report(
    scale: int, windows: list[Window], running: traffic.Traffic, locks: LockWatch, verdict: str
) -> dict[str, float]:
    """Print the rows of one scale; returns each command's median time, in seconds."""
    times: dict[str, float] = {}

    def writes(name: str) -> list[traffic.Write]:
        return [w for win in windows if win.name == name for w in running.between(win.start, win.stop)]

    def rate(name: str, count: int) -> str:
        seconds = sum(w.seconds for w in windows if w.name == name)
        return f"{count / seconds:.1f}/s" if seconds else "-"

    base = traffic.Latency.of(writes("idle"))
    row(
        f"idle baseline, scale {scale}",
        f"p50 {base.p50:.0f} ms, p99 {base.p99:.0f} ms ({base.writes} writes, {rate('idle', base.writes)})",
    )
    spread = [traffic.Latency.of(running.between(w.start, w.stop)).p99 for w in windows if w.name == "idle"]
    row(
        f"p99 of each idle window, scale {scale} (the noise floor)",
        f"{min(spread, default=0):.0f} to {max(spread, default=0):.0f} ms over {len(spread)} windows",
    )
    for name in ("golden snapshot --from", "rehearse --from", "rollout", "rollout transaction alone", "rollback"):
        mine = [w for w in windows if w.name == name]
        if not mine:
            continue
        during = traffic.Latency.of(writes(name))
        seconds = times[name] = traffic.median([w.seconds for w in mine])
        outcomes = sorted({w.outcome for w in mine})
        extra = f"; {verdict}" if name == "rehearse --from" else ""
        row(f"`oneroof {name}` whole process, scale {scale}", f"{seconds:.1f} s ({'; '.join(outcomes)}{extra})")
        row(
            f"writes during `{name}`, scale {scale}",
            f"p50 {during.p50:.0f} ms, p99 {during.p99:.0f} ms, max {during.max:.0f} ms "
            f"({during.writes} writes, {rate(name, during.writes)})",
        )
        goal = f"< {GOAL_P99_MS:.0f} ms" if name.startswith(("rollout", "rollback")) else ""
        row(f"p99 added by `{name}` (p99 during - idle p99), scale {scale}", f"{during.p99 - base.p99:+.0f} ms", goal)
        waits = sorted({x for w in mine for x in locks.between(w.start, w.stop)})
        row(f"lock waits in production during `{name}`, scale {scale}", ", ".join(waits) or "none", "none")
    failed, made, found = running.failures(), running.made(), running.found()
    lost = {k: made[k] - found[k] for k in traffic.KINDS if made[k] != found[k]}
    row(
        f"application writes, scale {scale}",
        f"{sum(made.values())} made ({', '.join(f'{k} {made[k]}' for k in traffic.KINDS)}); "
        f"{len(failed)} failed; {'none lost' if not lost else f'lost or extra {lost}'}",
        "0 failed, none lost",
    )
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prod", default=DEFAULT_PROD, help="admin DSN of the server that plays production")
    parser.add_argument("--dsn", help="admin DSN of the rehearsal server (default: a temporary embedded one)")
    parser.add_argument("--scales", default="1")
    # 10/s: what one Directus answered without falling behind on the 2 loaded cores of the
    # development machine (at 20/s it fell behind its schedule, and the latency measured the backlog)
    parser.add_argument("--rate", type=float, default=10.0, help="application writes per second")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of each idle window")
    parser.add_argument("--rounds", type=int, default=3, help="rollout/rollback rounds per scale")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results/benchmarks.md")
    args = parser.parse_args()

    installation = installed()
    home = None
    if args.dsn:
        admin = args.dsn
    else:
        home = Path(tempfile.mkdtemp(prefix="oneroof-bench-"))
        admin = server.start(home).dsn()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ONEROOF_"))}
    env.update(ONEROOF_ALLOWED_SIGNERS=str(signers().trust.path), **({"ONEROOF_HOME": str(home)} if home else {}))
    tag = secrets.token_hex(3)
    made: list[str] = []
    times: dict[int, dict[str, float]] = {}
    line("| measure | value | goal |\n|---|---|---|")
    try:
        with connect(args.prod, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()["server_version"]  # type: ignore[index]
        row("production server", f"PostgreSQL {version}, served by Directus {directus.DIRECTUS_VERSION}")
        row("application traffic", f"{args.rate:g} writes/s: {', '.join(sorted(set(traffic.DEFAULT_MIX)))}")
        for scale in [int(s) for s in args.scales.split(",")]:
            prod = build(args.prod, scale, tag)
            made.append(prod.name)
            rows = catalog.SYSTEM_ISSUES_PER_SCALE * scale
            row(f"production, scale {scale}", f"{prod.size_mb:,.0f} MB, {rows:,} system_issues rows")
            row(f"golden build, scale {scale}", f"{prod.build_seconds:.1f} s")
            work = Path(tempfile.mkdtemp(prefix="oneroof-bench-directus-"))
            database = directus.database_of(installation, prod.dsn, work)
            password = "bench-" + secrets.token_hex(8)
            directus.set_password_cli(installation, database, catalog.account("admin").email, password)
            running_server = traffic.serve(installation, database, log=work / "server.log")
            try:
                accounts = traffic.prepare(running_server.login(catalog.account("admin").email, password))
                with (
                    traffic.running(accounts, prod.dsn, rate=args.rate) as running,
                    LockWatch(prod.dsn, running) as locks,
                ):
                    windows, verdict = release_under_traffic(prod, admin, env, args, running)
                times[scale] = report(scale, windows, running, locks, verdict)
            finally:
                running_server.stop()
                shutil.rmtree(work, ignore_errors=True)
        first, *others = times
        for scale in others:
            for name, seconds in times[scale].items():
                if name in times[first]:
                    row(f"`oneroof {name}`, scale {scale} / scale {first}", f"{seconds / times[first][name]:.1f}x")
        if args.write_docs:
            page = results.DOCS / "benchmarks.md"
            results.write(page, "\n".join(TABLE), results.command_line("traffic.py", sys.argv[1:]), name="traffic")
            print(f"wrote the block 'traffic' of {page}")
    finally:
        for name in made:
            drop(args.prod, name)
        if home:
            server.stop(home)
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
