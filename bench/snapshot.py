"""Benchmarks of golden snapshots, printed as a Markdown table (figures for docs/results/benchmarks.md).

    python bench/snapshot.py [--prod ADMIN_DSN] [--dsn ADMIN_DSN] [--scales 1,20] [--repeat 3] [--write-docs]

"Production" is a golden database built at each scale on the server of --prod (default: the
PostgreSQL 15 service at 127.0.0.1:5432), under a unique name, with oneroof's marks removed; it is
dropped at the end. The rehearsal server is --dsn, or a throw-away embedded PostgreSQL 18.

Measured, interleaved in each round so a noisy machine moves every side alike:
- `golden snapshot` (exported snapshot, fingerprints, secrets, restore, checks) with --jobs 1 (the
  data streamed from pg_dump into pg_restore) and --jobs 2 (a parallel dump, then restore), with
  the phases of each (phases beside the copy overlap it);
- a plain `pg_dump -Fc | pg_restore` of the same database into the same rehearsal server;
- the whole `oneroof rehearse --from PROD` process.

With --write-docs the table replaces the block `snapshot` of docs/results/benchmarks.md, once the
run is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results
from psycopg import sql

from oneroof.core import package
from oneroof.executor.capture import take
from oneroof.harness import golden, server
from oneroof.harness.capture import _tool_env
from oneroof.harness.db import connect, with_dbname

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PROD = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


TABLE: list[str] = []  # the lines printed so far, for --write-docs


def line(text: str) -> None:
    TABLE.append(text)
    print(text, flush=True)


def row(name: str, value: str, goal: str = "") -> None:
    line(f"| {name} | {value} | {goal} |")


def drop(admin: str, name: str) -> None:
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def plain_copy(prod_dsn: str, admin: str, name: str) -> float:
    """pg_dump -Fc | pg_restore into a new database, no options: what a DBA types."""
    drop(admin, name)
    started = time.perf_counter()
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    src, src_env = _tool_env(prod_dsn)
    dst, dst_env = _tool_env(with_dbname(admin, name))
    dumper = subprocess.Popen(
        [str(server.bin_dir() / "pg_dump"), "-Fc", f"--dbname={src}"], stdout=subprocess.PIPE, env=src_env
    )
    # Exit 1 is allowed: a stock PostgreSQL 18 refuses the private column options (`pg_attver`) that
    # the PostgreSQL 15 service here sets; pg_restore goes on and restores all the data.
    restored = subprocess.run(
        [str(server.bin_dir() / "pg_restore"), "--no-owner", f"--dbname={dst}"],
        stdin=dumper.stdout,
        env=dst_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert restored.returncode in (0, 1), restored.stderr[-2000:]
    assert dumper.wait() == 0
    seconds = time.perf_counter() - started
    drop(admin, name)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prod", default=DEFAULT_PROD, help="admin DSN of the server that plays production")
    parser.add_argument("--dsn", help="admin DSN of the rehearsal server (default: a temporary embedded one)")
    parser.add_argument("--scales", default="1,20")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-copies", action="store_true", help="measure only the whole rehearsal")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results/benchmarks.md")
    args = parser.parse_args()

    home = None
    if args.dsn:
        admin = args.dsn
    else:
        home = Path(tempfile.mkdtemp(prefix="oneroof-bench-"))
        admin = server.start(home).dsn()
    env = dict(os.environ, **({"ONEROOF_HOME": str(home)} if home else {}))
    sha = package.load().sha256
    tag = secrets.token_hex(3)
    made: list[str] = []
    line("| measure | median | goal |\n|---|---|---|")
    try:
        with connect(args.prod, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()["server_version"]  # type: ignore[index]
        row("production server", f"PostgreSQL {version}")
        for scale in [int(s) for s in args.scales.split(",")]:
            prod = f"bench_prod_s{scale}_{tag}"
            made.append(prod)
            golden.build(args.prod, name=prod, scale=scale, package_sha256=sha)
            with connect(args.prod, autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(prod)))
                size = conn.execute("SELECT pg_database_size(%s) AS b", (prod,)).fetchone()["b"]  # type: ignore[index]
            row(f"production database, scale {scale}", f"{size / 1e6:,.0f} MB")
            prod_dsn = with_dbname(args.prod, prod)
            times: dict[str, list[float]] = {"jobs1": [], "jobs2": [], "plain": []}
            phases: dict[int, dict[str, list[float]]] = {1: {}, 2: {}}
            for _ in range(0 if args.no_copies else args.repeat):
                times["plain"].append(plain_copy(prod_dsn, admin, f"bench_plain_{tag}"))
                for jobs in (1, 2):
                    started = time.perf_counter()
                    result = take(prod_dsn, admin, name=f"bench_snap_{tag}", replace=True, jobs=jobs)
                    times[f"jobs{jobs}"].append(time.perf_counter() - started)
                    for phase, seconds in result.phases.items():
                        phases[jobs].setdefault(phase, []).append(seconds)
            for jobs in (1, 2) if times["plain"] else ():
                if jobs == 1:
                    plain = statistics.median(times["plain"])
                    row(f"plain pg_dump -Fc \\| pg_restore, scale {scale}", f"{plain:.1f} s")
                mine = statistics.median(times[f"jobs{jobs}"])
                ratio = statistics.median([a / b for a, b in zip(times[f"jobs{jobs}"], times["plain"], strict=True)])
                row(f"golden snapshot --jobs {jobs}, scale {scale}", f"{mine:.1f} s")
                row(f"golden snapshot --jobs {jobs} / plain copy, scale {scale}", f"{ratio:.2f}x", "<= 1.1x")
            for jobs, measured in phases.items() if times["plain"] else ():
                row(
                    f"phases of --jobs {jobs}, scale {scale}",
                    ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in measured.items()),
                )
            drop(admin, f"bench_snap_{tag}")

            runs = Path(tempfile.mkdtemp(prefix="oneroof-bench-runs-"))
            command = [sys.executable, "-m", "oneroof.executor", "rehearse", "--dsn", admin, "--from", prod_dsn]
            command += ["--golden", f"bench_rh_{tag}", "--jobs", "2", "--runs-dir", str(runs)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, env=env, cwd=ROOT, check=False)
            seconds = time.perf_counter() - started
            assert done.returncode in (0, 1), done.stderr[-2000:]
            evidence = json.loads(sorted(runs.glob("*/evidence.json"))[-1].read_text())
            failed = [s["name"] for s in evidence["steps"] if not s["ok"]]
            # system_issues is observed, never compared with the package: GO at every scale.
            verdict = "GO" if done.returncode == 0 else f"NO-GO at {', '.join(failed)}"
            snapshot_step = next(s for s in evidence["steps"] if s["name"] == "snapshot")
            row(
                f"`oneroof rehearse --from PROD --jobs 2` whole process, scale {scale}",
                f"{seconds:.1f} s ({verdict}; snapshot step {snapshot_step['seconds']:.1f} s)",
            )
            shutil.rmtree(runs, ignore_errors=True)
            drop(admin, f"bench_rh_{tag}")
        if args.write_docs:
            page = results.DOCS / "benchmarks.md"
            command = results.command_line("snapshot.py", sys.argv[1:])
            results.write(page, "\n".join(TABLE), command, name="snapshot")
            print(f"wrote the block 'snapshot' of {page}")
    finally:
        for name in made:
            drop(args.prod, name)
        if home:
            server.stop(home)
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
