"""What the embedded server's SCRAM stretching costs a rehearsal: `oneroof rehearse`, whole
process, on two throw-away embedded servers whose superuser secret is stretched PostgreSQL's
4,096 times and oneroof's SCRAM_ITERATIONS times, run in turns.

    python bench/scram.py [--repeat N]

Prints the median wall time and CPU time (user + system of the command and every process it
waited for: its stage worker and sessions) of each, and one login's client CPU. The server's own
CPU is not in it: a server checks a SCRAM proof with two hashes, whatever the count.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from oneroof.harness import server

PG_DEFAULT = 4096  # PostgreSQL's scram_iterations


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def login_cpu_ms(dsn: str, n: int = 40) -> float:
    """One login's client CPU (connect, SELECT 1, close), in milliseconds."""
    before = time.process_time()
    for _ in range(n):
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")
    return (time.process_time() - before) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()
    oneroof = [sys.executable, "-m", "oneroof.executor"]
    homes: dict[int, Path] = {}
    try:
        for count in (PG_DEFAULT, server.SCRAM_ITERATIONS):
            home = Path(tempfile.mkdtemp(prefix=f"oneroof-scram-{count}-"))
            saved, server.SCRAM_ITERATIONS = server.SCRAM_ITERATIONS, count
            try:
                server.start(home)
            finally:
                server.SCRAM_ITERATIONS = saved
            env = {**os.environ, server.HOME_ENV: str(home)}
            subprocess.run([*oneroof, "golden", "build"], env=env, check=True, capture_output=True)
            homes[count] = home
        wall: dict[int, list[float]] = {count: [] for count in homes}
        cpu: dict[int, list[float]] = {count: [] for count in homes}
        for _ in range(args.repeat):  # in turns, so the machine's load moves both alike
            for count, home in homes.items():
                env = {**os.environ, server.HOME_ENV: str(home)}
                before, started = cpu_of_children(), time.perf_counter()
                subprocess.run([*oneroof, "rehearse"], env=env, check=True, capture_output=True)
                wall[count].append(time.perf_counter() - started)
                cpu[count].append(cpu_of_children() - before)
        print("| superuser secret stretched | `oneroof rehearse` wall | its CPU | one login's client CPU |")
        print("|---|---|---|---|")
        for count, home in homes.items():
            login = login_cpu_ms(server.start(home).dsn())
            print(
                f"| {count:,} times | {statistics.median(wall[count]):.2f} s | "
                f"{statistics.median(cpu[count]):.2f} s | {login:.1f} ms |"
            )
        print(f"\nmedians of {args.repeat} rehearsals each, in turns")
    finally:
        for home in homes.values():
            server.stop(home)
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
