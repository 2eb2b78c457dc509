"""Benchmarks of oneroof, printed as a Markdown table (figures for docs/results/benchmarks.md).

    python bench/run.py [--dsn ADMIN_DSN] [--repeat N] [--scales 1,20] [--only content] [--write-docs]

Without --dsn a throw-away embedded server is started under a temporary ONEROOF_HOME. Ratios
are measured in the same run, interleaved, so a noisy shared machine moves both sides alike.
With --write-docs the table replaces the block `run` (`content` with --only content) of
docs/results/benchmarks.md, once the run is complete.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import results
from psycopg import conninfo, sql

from oneroof.core import gate, metrics, package
from oneroof.executor import release
from oneroof.executor.rehearse import approve_rehearsal, one_off_signer
from oneroof.harness import catalog, clones, golden, server
from oneroof.harness.db import connect, with_dbname


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


TABLE: list[str] = []  # the lines printed so far, for --write-docs


def line(text: str) -> None:
    TABLE.append(text)
    print(text, flush=True)


def row(name: str, value: str, goal: str = "") -> None:
    line(f"| {name} | {value} | {goal} |")


LOCKED: set[str] = set()


def bench_release(admin: str, golden_name: str, repeat: int) -> dict[str, list[float]]:
    """Rollout and rollback transactions (gate session and audit left out) on one clone, alternating."""
    clone = clones.create(admin, source=golden_name, wait=30)
    pkg = package.load()
    times: dict[str, list[float]] = {"rollout": [], "rollback": []}
    keys = Path(tempfile.mkdtemp(prefix="oneroof-bench-key-"))
    signer = one_off_signer(keys)  # signed rehearsal approvals, as `oneroof rehearse` makes them
    try:

        def approve() -> None:  # a deployment spends the approval that authorised it
            approve_rehearsal(clone.dsn, key=signer.key)

        approve()
        with connect(clone.dsn) as conn:  # which tables does the deploy lock?
            release.apply_tiers(conn, pkg, gate.evaluate(conn, pkg, confirm_db=clone.name, trust=signer.trust))
            LOCKED.update(
                r["relname"]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE l.pid = pg_backend_pid() AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"
                ).fetchall()
            )
            conn.rollback()
        for _ in range(repeat):
            approve()
            out = release.rollout(
                clone.dsn, pkg, confirm_db=clone.name, gate_session=False, audit=False, trust=signer.trust
            )
            times["rollout"].append(out.seconds["transaction"])
            back = release.rollback(clone.dsn, pkg, confirm_db=clone.name, trust=signer.trust)
            times["rollback"].append(back.seconds["transaction"])
    finally:
        clones.drop(admin, clone.name)
        shutil.rmtree(keys, ignore_errors=True)
    return times


def bench_rehearse(admin: str, home: Path | None, repeat: int) -> None:
    """`oneroof rehearse` as a whole process on scale 1 (golden already built), and its cloning share."""
    runs = Path(tempfile.mkdtemp(prefix="oneroof-bench-runs-"))
    env = dict(os.environ, ONEROOF_HOME=str(home)) if home else dict(os.environ)
    command = [sys.executable, "-m", "oneroof.executor", "rehearse", "--dsn", admin]
    command += ["--golden", "bench_golden_s1", "--runs-dir", str(runs)]
    totals, shares = [], []
    for _ in range(max(3, repeat // 2)):
        totals.append(timed(lambda: subprocess.run(command, check=True, capture_output=True, env=env)))
        latest = sorted(runs.glob("*/evidence.json"))[-1]
        data = json.loads(latest.read_text())
        shares.append(data["clone_seconds"] / data["seconds"])
    shutil.rmtree(runs, ignore_errors=True)
    row("`oneroof rehearse` whole process, scale 1", f"{median(totals):.1f} s", "< 20 s")
    row("share of the rehearsal spent cloning (create + drop)", f"{median(shares) * 100:.0f} %")


def bench_clone_vs_dump(admin: str, source: str, scale: int, repeat: int) -> None:
    """A clone by CREATE DATABASE ... TEMPLATE against a pg_dump | pg_restore copy, interleaved."""
    bin_dir = server.bin_dir()
    params = conninfo.conninfo_to_dict(admin)
    args = [
        "-h",
        str(params.get("host", "127.0.0.1")),
        "-p",
        str(params.get("port", 5432)),
        "-U",
        str(params.get("user", "postgres")),
    ]
    client_env = dict(os.environ, **({"PGPASSFILE": str(params["passfile"])} if params.get("passfile") else {}))
    template, dump = [], []
    with connect(admin, autocommit=True) as conn:

        def copy(target: str) -> None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
            dumper = subprocess.Popen(
                [str(bin_dir / "pg_dump"), *args, "-Fc", source], stdout=subprocess.PIPE, env=client_env
            )
            subprocess.run(
                [str(bin_dir / "pg_restore"), *args, "-d", target], stdin=dumper.stdout, check=True, env=client_env
            )
            assert dumper.wait() == 0

        conn.execute("CHECKPOINT")
        time.sleep(2)  # let the build's writeback settle: both sides then start alike
        for i in range(3 if scale > 1 else repeat):
            # pg_dump's session may still be closing: wait it out, so the clone's time is its own
            while conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = %s", (source,)).fetchone()[
                "n"
            ]:  # type: ignore[index]
                time.sleep(0.05)
            made = clones.create(admin, source=source, name=f"bench_tpl_{i}", wait=30)
            template.append(made.seconds)
            clones.drop(admin, made.name)
            dump.append(timed(functools.partial(copy, f"bench_dump_{i}")))
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(f"bench_dump_{i}")))
    row(f"clone by CREATE DATABASE ... TEMPLATE (FILE_COPY, marked), scale {scale}", f"{median(template):.2f} s")
    row(f"copy by pg_dump -Fc \\| pg_restore, scale {scale}", f"{median(dump):.2f} s")
    row(f"pg_dump\\|pg_restore / TEMPLATE, scale {scale}", f"{median(dump) / median(template):.1f}x", ">= 10x")


# Other ways to digest system_issues, measured beside the rehearsal's (docs/rehearsal.md): each
# row's text (the digest before table_digests), PostgreSQL's hash of the whole row, and the
# floor of a digest that calls one hash function per column.
DIGEST_ALTERNATIVES = {
    "each row's text, hashtextextended(t::text)": (
        "SELECT count(*), sum(hashtextextended(t::text, 0)::numeric) FROM system_issues AS t"
    ),
    "hash_record_extended(t)": "SELECT count(*), sum(hash_record_extended(t, 0)) FROM system_issues AS t",
    # The floor of one hash call per column: the cheapest hash, once per column of system_issues.
    "13 calls of hashint8extended(id) (the floor)": (
        f"SELECT count(*), sum({'hashint8extended(id, ' * 13}0{')' * 13}) FROM system_issues"
    ),
}


def bench_content(admin: str, name: str, scale: int, repeat: int) -> None:
    """The rehearsal's content digests (system_issues and every governed collection), against a count,
    and the other ways to digest system_issues, interleaved with it.
    """
    with connect(with_dbname(admin, name)) as conn:
        conn.read_only = True
        count_t, digest_t = [], []
        other_t: dict[str, list[float]] = {k: [] for k in DIGEST_ALTERNATIVES}
        for _ in range(repeat + 1):  # interleaved, the first of each a warm-up
            count_t.append(timed(lambda: conn.execute("SELECT count(*) FROM system_issues").fetchone()))
            conn.rollback()
            digest_t.append(timed(lambda: metrics.read_content(conn)))
            for label, query in DIGEST_ALTERNATIVES.items():
                other_t[label].append(timed(functools.partial(conn.execute, query)))
                conn.rollback()
        count_t, digest_t = count_t[1:], digest_t[1:]
    row(f"count(*) system_issues beside the digests, scale {scale}", f"{median(count_t) * 1000:.0f} ms")
    row(f"content digests (system_issues + 35 collections), scale {scale}", f"{median(digest_t) * 1000:.0f} ms")
    row(
        f"content digests / count(*) system_issues, scale {scale}",
        f"{median([d / c for d, c in zip(digest_t, count_t, strict=True)]):.1f}x",
        "<= 4x at scale 20",
    )
    for label, times in other_t.items():
        ratio = median([d / c for d, c in zip(times[1:], count_t, strict=True)])
        row(f"system_issues alone by {label} / count(*), scale {scale}", f"{ratio:.1f}x")


# A statement the package check accepts, to pad a tier to a size.
PADDING = "SELECT 1 FROM os_axes WHERE code = 'padding-padding-padding-padding';\n"
# Runs a command and prints its peak resident memory (KiB) and exit code. A small process of its
# own: a child forked from this bench would count the bench's memory at the fork as its own peak.
PEAK = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, "
    "stderr=subprocess.DEVNULL); _, status, use = os.wait4(p.pid, 0); "
    "print(use.ru_maxrss, os.waitstatus_to_exitcode(status))"
)


def bench_package_memory() -> None:
    """Peak memory of `oneroof package verify` on the shipped package and on copies padded to a
    quarter, a half and nearly all of the size limit, and to 20 MB (refused before it is read).
    """
    where = Path(tempfile.mkdtemp(prefix="oneroof-bench-package-"))
    limit = package.MAX_PACKAGE_BYTES
    peaks: list[tuple[int, float]] = []
    try:
        for target in (0, limit // 4, limit // 2, limit - 32 * 1024, 20 * 1024 * 1024):
            copy = where / f"package_{target}"
            shutil.copytree(package.DEFAULT_DIR, copy)
            tier = copy / "tier4_axes.deploy.sql"
            pad = max(0, target - sum(f.stat().st_size for f in copy.rglob("*") if f.is_file()))
            tier.write_text(tier.read_text() + "\n" + PADDING * (pad // len(PADDING)))
            package.seal(copy)
            size = sum(f.stat().st_size for f in copy.rglob("*") if f.is_file())
            command = [sys.executable, "-m", "oneroof.executor", "package", "verify", "--package", str(copy)]
            done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True)
            kib, code = (int(v) for v in done.stdout.split())
            what = f"a {size / 1024:,.0f} kB package" + ("" if code == 0 else f" (refused, exit {code})")
            row(f"peak memory of `oneroof package verify`, {what}", f"{kib / 1024:.0f} MB")
            if code == 0:
                peaks.append((size, kib / 1024))
    finally:
        shutil.rmtree(where, ignore_errors=True)
    (small, low), (large, high) = peaks[0], peaks[-1]
    row(
        "peak memory growth per MiB of package, verified packages",
        f"{(high - low) / ((large - small) / 1048576):.0f} MB",
        f"linear, bounded by the {limit // 1048576} MiB limit",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="admin DSN of an existing server (default: a temporary embedded one)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--scales", default="1,20")
    parser.add_argument(
        "--only",
        choices=("all", "content"),
        default="all",
        help="content: only the rehearsal's content digests, at each scale, and the package check's memory",
    )
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results/benchmarks.md")
    args = parser.parse_args()

    home = None
    if args.dsn:
        admin = args.dsn
    else:
        home = Path(tempfile.mkdtemp(prefix="oneroof-bench-"))
        admin = server.start(home).dsn()
    sha = package.load().sha256
    scales = [int(s) for s in args.scales.split(",")]
    line("| measure | median | goal |\n|---|---|---|")
    release_times: dict[int, dict[str, list[float]]] = {}
    try:
        if args.only == "content":
            for scale in scales:
                name = f"bench_golden_s{scale}"
                golden.build(admin, name=name, scale=scale, package_sha256=sha, replace=True)
                bench_content(admin, name, scale, args.repeat)
            bench_package_memory()
            if args.write_docs:
                write_docs("content")
            return 0
        builds = [
            timed(lambda: golden.build(admin, name="bench_golden_s1", package_sha256=sha, replace=True))
            for _ in range(3)
        ]
        row("golden build, scale 1", f"{median(builds):.2f} s", "< 30 s")

        env = dict(os.environ, ONEROOF_HOME=str(home)) if home else dict(os.environ)
        probe_cmd = [sys.executable, "-m", "oneroof.executor", "probe", "--dsn", with_dbname(admin, "bench_golden_s1")]
        probes = [
            timed(lambda: subprocess.run(probe_cmd, check=True, capture_output=True, env=env))
            for _ in range(args.repeat)
        ]
        row("`oneroof probe` whole process", f"{median(probes) * 1000:.0f} ms", "< 500 ms")
        bench_clone_vs_dump(admin, "bench_golden_s1", 1, args.repeat)

        for scale in scales:
            name = f"bench_golden_s{scale}"
            if scale != 1:
                build = functools.partial(golden.build, admin, name=name, scale=scale, package_sha256=sha, replace=True)
                seconds = timed(build)
                row(f"golden build, scale {scale}", f"{seconds:.1f} s")
            with connect(with_dbname(admin, name)) as conn:
                conn.read_only = True
                count_t, metric_t = [], []
                for _ in range(args.repeat):  # interleaved, after one warm-up each
                    count_t.append(timed(lambda: conn.execute("SELECT count(*) FROM system_issues").fetchone()))
                    metric_t.append(timed(lambda: metrics.read_in_snapshot(conn)))
                    conn.rollback()
                count_t, metric_t = count_t[1:], metric_t[1:]
            ratio = median([m / c for m, c in zip(metric_t, count_t, strict=True)])
            row(f"count(*) system_issues, scale {scale}", f"{median(count_t) * 1000:.1f} ms")
            row(f"metrics + digests, scale {scale}", f"{median(metric_t) * 1000:.1f} ms")
            row(f"metrics / count ratio, scale {scale}", f"{ratio:.2f}", "<= 1.5")
            bench_content(admin, name, scale, args.repeat)
            release_times[scale] = bench_release(admin, name, args.repeat)
            if scale != 1:
                bench_clone_vs_dump(admin, name, scale, args.repeat)
        for label in ("rollout", "rollback"):
            one, many = median(release_times[scales[0]][label]), median(release_times[scales[-1]][label])
            for scale in scales:
                row(
                    f"{label} transaction, scale {scale}",
                    f"{median(release_times[scale][label]) * 1000:.0f} ms",
                    "< 1 s",
                )
            row(f"{label} transaction, scale {scales[-1]} / scale {scales[0]}", f"{many / one:.2f}", "<= 1.5")
        bench_rehearse(admin, home, args.repeat)
        row("tables locked by the rollout transaction", ", ".join(sorted(LOCKED)) or "none")
        touched = LOCKED & ({n for n, _, _ in catalog.GOVERNED} | set(catalog.UNGOVERNED) | {"system_issues"})
        row("content tables or system_issues among them", ", ".join(sorted(touched)) or "none", "none")
        if args.write_docs:
            write_docs("run")
    finally:
        if home:
            server.stop(home)
            shutil.rmtree(home, ignore_errors=True)
    return 0


def write_docs(block: str) -> None:
    page = results.DOCS / "benchmarks.md"
    results.write(page, "\n".join(TABLE), results.command_line("run.py", sys.argv[1:]), name=block)
    print(f"wrote the block {block!r} of {page}")


if __name__ == "__main__":
    raise SystemExit(main())
