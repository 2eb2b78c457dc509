"""Benchmarks of oneroof, printed as Markdown tables (figures for docs/results/benchmarks.md).

    python bench/run.py [--dsn ADMIN_DSN] [--repeat N] [--scales 1,20] [--only content|rehearse] [--write-docs]

Without --dsn a throw-away embedded server is started under a temporary ONEROOF_HOME. Ratios
are measured in the same run, interleaved, so a noisy shared machine moves both sides alike.
Every row that runs a command gives its peak memory: the largest resident set of the process and
of every process it waited for (os.wait4). The rehearsal is broken down per step, beside its
floor: the same steps run in this process with each stage's SQL run directly instead of a
pytest session.
With --write-docs the table replaces the block `run` (`content` with --only content, `rehearse`
with --only rehearse) of docs/results/benchmarks.md, once the run is complete.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import results
from psycopg import conninfo, sql

from oneroof.core import content, dispatch, gate, ledger, metrics, package, privileges, signatures
from oneroof.executor import rehearse as rehearsal
from oneroof.executor import release
from oneroof.executor.rehearse import approve_rehearsal, one_off_signer
from oneroof.harness import catalog, clones, golden, server
from oneroof.harness.db import connect, consistent_read, with_dbname


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


def row(name: str, value: str, goal: str = "", memory: str = "") -> None:
    line(f"| {name} | {value} | {memory} | {goal} |")


def run_command(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run `command` to its end (it must exit 0): its wall time, and its peak memory in kB, the
    largest resident set of it and of the processes it waited for (os.wait4's ru_maxrss). Its
    CPU time (user + system, theirs included) goes to CPU[command[3]].
    """
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    CPU.setdefault(command[3], []).append(usage.ru_utime + usage.ru_stime)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]} exited {proc.returncode}: {errors.decode()[-2000:]}")
    return seconds, usage.ru_maxrss


CPU: dict[str, list[float]] = {}  # CPU seconds of each command run, by its verb


def cpu_seconds() -> float:
    """This process's CPU time so far, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def megabytes(kilobytes: list[int]) -> str:
    return f"{max(kilobytes) / 1024:.0f} MB"


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


def stage_sql(
    dsn: str, stages: str, *, expect_db: str | None = None, allowed_signers: Path | None = None, **_: object
) -> int:
    """A stage's work without pytest, for the floor: what the invariants' session fixtures read (the
    package verified, entry and exit readings, the tiers' content, effective privileges, other
    dispatch, the ledger's two checks and the gate's verdict), each once, in one snapshot.
    """
    pkg = package.load()
    trust = signatures.TrustRoot.load(allowed_signers) if allowed_signers else None
    with connect(dsn, application_name="oneroof-bench-floor") as conn:
        conn.read_only = True
        metrics.read(conn)
        conn.rollback()
        with consistent_read(conn):
            content.read(conn)
            privileges.read(conn)
            dispatch.found(conn)
            ledger.integrity_problems(conn, None, gate.system_identifier(conn))
            ledger.refused_deployments(conn, trust)
            gate.evaluate(conn, pkg, confirm_db=expect_db, trust=trust)
        metrics.read(conn)
        conn.rollback()
    return 0


def floor(admin: str, runs: Path) -> rehearsal.Evidence:
    """The rehearsal's steps in this process, each stage's SQL run directly (stage_sql)."""
    run_stage = release.run_stage
    release.run_stage = stage_sql  # type: ignore[assignment]
    try:
        evidence = rehearsal.rehearse(admin, run_dir=rehearsal.new_run_dir(runs), golden_name="bench_golden_s1")
    finally:
        release.run_stage = run_stage
    assert evidence.ok, [s.detail for s in evidence.steps if not s.ok]
    return evidence


def step_seconds(evidence: dict[str, object]) -> dict[str, float]:
    """Each step's seconds, the rollout's gate session apart from the rest of the rollout."""
    steps: dict[str, float] = {}
    for step in evidence["steps"]:  # type: ignore[attr-defined]
        steps[step["name"]] = step["seconds"]
        if step["name"] == "rollout":
            gate_session = step["figures"]["seconds"].get("gate_session", 0.0)
            steps["rollout"] -= gate_session
            steps["rollout: gate session"] = gate_session
    return steps


def bench_rehearse(admin: str, home: Path | None, repeat: int) -> None:
    """`oneroof rehearse` as a whole process on scale 1 (golden already built), its cloning share,
    its steps, and the floor (the same steps with each stage's SQL run directly), interleaved.
    """
    runs = Path(tempfile.mkdtemp(prefix="oneroof-bench-runs-"))
    env = dict(os.environ, ONEROOF_HOME=str(home)) if home else dict(os.environ)
    command = [sys.executable, "-m", "oneroof.executor", "rehearse", "--dsn", admin]
    command += ["--golden", "bench_golden_s1", "--runs-dir", str(runs / "whole")]
    totals, shares, memory, floors, floor_cpu = [], [], [], [], []
    steps: dict[str, list[float]] = {}
    floor_steps: dict[str, list[float]] = {}
    for _ in range(max(3, repeat)):
        seconds, rss = run_command(command, env)
        totals.append(seconds)
        memory.append(rss)
        data = json.loads(sorted((runs / "whole").glob("*/evidence.json"))[-1].read_text())
        shares.append(data["clone_seconds"] / data["seconds"])
        for name, value in step_seconds(data).items():
            steps.setdefault(name, []).append(value)
        started, cpu = time.perf_counter(), cpu_seconds()
        evidence = floor(admin, runs / "floor")
        floors.append(time.perf_counter() - started)
        floor_cpu.append(cpu_seconds() - cpu)
        for name, value in step_seconds(evidence.as_json()).items():
            floor_steps.setdefault(name, []).append(value)
    shutil.rmtree(runs, ignore_errors=True)
    ratio = median([t / f for t, f in zip(totals, floors, strict=True)])
    row("`oneroof rehearse` whole process, scale 1", f"{median(totals):.1f} s", "< 3 s", megabytes(memory))
    row("rehearsal floor: the same steps in one process, each stage's SQL direct", f"{median(floors):.1f} s")
    row("`oneroof rehearse` / floor", f"{ratio:.1f}x", "<= 2x")
    # CPU time, which others' load barely moves (the server's work is in neither)
    cpu = CPU["rehearse"][-len(floor_cpu) :]
    row("`oneroof rehearse` CPU time, user + system, its sessions included", f"{median(cpu):.2f} s")
    row("rehearsal floor CPU time (in a warm process: no Python start, no imports)", f"{median(floor_cpu):.2f} s")
    row(
        "CPU time: `oneroof rehearse` / floor",
        f"{median([r / f for r, f in zip(cpu, floor_cpu, strict=True)]):.1f}x",
    )
    row("share of the rehearsal spent cloning (create + drop)", f"{median(shares) * 100:.0f} %")
    BREAKDOWN.append("| rehearsal step, scale 1 | `oneroof rehearse` | floor |\n|---|---|---|")
    for name, values in steps.items():
        direct = floor_steps.get(name)
        BREAKDOWN.append(f"| {name} | {median(values):.2f} s | {f'{median(direct):.2f} s' if direct else ''} |")
    whole = f"{median(totals) - median([sum(v) for v in zip(*steps.values(), strict=True)]):.2f} s"
    BREAKDOWN.append(f"| outside the steps (Python start, imports, report) | {whole} | |")


BREAKDOWN: list[str] = []  # the rehearsal's steps, a second table


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
    template, dump, memory = [], [], []
    with connect(admin, autocommit=True) as conn:

        def copy(target: str) -> None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
            dumper = subprocess.Popen(
                [str(bin_dir / "pg_dump"), *args, "-Fc", source], stdout=subprocess.PIPE, env=client_env
            )
            restorer = subprocess.Popen(
                [str(bin_dir / "pg_restore"), *args, "-d", target], stdin=dumper.stdout, env=client_env
            )
            assert dumper.stdout is not None
            dumper.stdout.close()
            for proc in (restorer, dumper):
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                assert proc.returncode == 0, proc.args
                memory.append(usage.ru_maxrss)

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
    row(f"copy by pg_dump -Fc \\| pg_restore, scale {scale}", f"{median(dump):.2f} s", memory=megabytes(memory))
    row(f"pg_dump\\|pg_restore / TEMPLATE, scale {scale}", f"{median(dump) / median(template):.1f}x", ">= 10x")


# Other ways to digest system_issues, measured beside the rehearsal's (docs/rehearsal.md): each
# row's text (the digest before table_digests), PostgreSQL's hash of the whole row, and the
# floor of a digest that calls one hash function per column.
DIGEST_ALTERNATIVES = {
    "each row's text, hashtextextended(t::text)": (
        "SELECT count(*), sum(hashtextextended(t::text, 0)::numeric) FROM system_issues AS t"
    ),
    "hash_record_extended(t)": "SELECT count(*), sum(hash_record_extended(t, 0)) FROM system_issues AS t",
    # What reading every column costs, without a hash: count(*) itself reads only the primary
    # key's index (an index-only scan), a digest must read and take apart every row of the heap.
    "a read of every column, no hash: count(fingerprint), its last": ("SELECT count(fingerprint) FROM system_issues"),
    # The floor of one hash call per column: the cheapest hash, once per column of system_issues,
    # over that read of every column (without count(fingerprint), the index alone would serve it).
    "13 calls of hashint8extended(id) over that read (the floor)": (
        f"SELECT count(fingerprint), sum({'hashint8extended(id, ' * 13}0{')' * 13}) FROM system_issues"
    ),
}


def digest_of_system_issues(conn: Any) -> sql.Composed:
    """The digest's own query on system_issues alone, as metrics.table_digests builds it."""
    native = metrics.native_hashes(conn)
    columns = [
        (r["column"], r["type"], r["not_null"])
        for r in conn.execute(metrics.DIGEST_COLUMNS_SQL, (["system_issues"],)).fetchall()
    ]
    return sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM system_issues").format(metrics.row_hash(columns, native))


def bench_content(admin: str, name: str, scale: int, repeat: int) -> None:
    """The rehearsal's content digests (system_issues and every governed collection), against a count,
    and the other ways to digest system_issues, interleaved with it.
    """
    with connect(with_dbname(admin, name)) as conn:
        conn.read_only = True
        count_t, digest_t = [], []
        alternatives = {"the digest's own row hash": digest_of_system_issues(conn), **DIGEST_ALTERNATIVES}
        conn.rollback()
        other_t: dict[str, list[float]] = {k: [] for k in alternatives}
        for _ in range(repeat + 1):  # interleaved, the first of each a warm-up
            count_t.append(timed(lambda: conn.execute("SELECT count(*) FROM system_issues").fetchone()))
            conn.rollback()
            digest_t.append(timed(lambda: metrics.read_content(conn)))
            for label, query in alternatives.items():
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
        choices=("all", "content", "rehearse"),
        default="all",
        help="content: only the rehearsal's content digests, at each scale, and the package check's memory; "
        "rehearse: only the rehearsal, its steps and its floor, at scale 1",
    )
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results/benchmarks.md")
    args = parser.parse_args()

    home = None
    if args.dsn:
        admin = args.dsn
    else:
        home = Path(tempfile.mkdtemp(prefix="oneroof-bench-"))
        admin = server.start(home).dsn()
    host = results.machine(postgres=server_version(admin))  # the load before the run's own work
    sha = package.load().sha256
    scales = [int(s) for s in args.scales.split(",")]
    line("| measure | median | peak memory | goal |\n|---|---|---|---|")
    release_times: dict[int, dict[str, list[float]]] = {}
    try:
        if args.only == "content":
            for scale in scales:
                name = f"bench_golden_s{scale}"
                golden.build(admin, name=name, scale=scale, package_sha256=sha, replace=True)
                bench_content(admin, name, scale, args.repeat)
            bench_package_memory()
            if args.write_docs:
                write_docs("content", host)
            return 0
        if args.only == "rehearse":
            golden.build(admin, name="bench_golden_s1", package_sha256=sha, replace=True)
            bench_rehearse(admin, home, args.repeat)
            line("")
            for text in BREAKDOWN:
                line(text)
            if args.write_docs:
                write_docs("rehearse", host)
            return 0
        builds = [
            timed(lambda: golden.build(admin, name="bench_golden_s1", package_sha256=sha, replace=True))
            for _ in range(3)
        ]
        row("golden build, scale 1", f"{median(builds):.2f} s", "< 30 s")

        env = dict(os.environ, ONEROOF_HOME=str(home)) if home else dict(os.environ)
        probe_cmd = [sys.executable, "-m", "oneroof.executor", "probe", "--dsn", with_dbname(admin, "bench_golden_s1")]
        probes = [run_command(probe_cmd, env) for _ in range(args.repeat)]
        row(
            "`oneroof probe` whole process",
            f"{median([t for t, _ in probes]) * 1000:.0f} ms",
            "< 500 ms",
            megabytes([m for _, m in probes]),
        )
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
        line("")
        for text in BREAKDOWN:
            line(text)
        if args.write_docs:
            write_docs("run", host)
    finally:
        if home:
            server.stop(home)
            shutil.rmtree(home, ignore_errors=True)
    return 0


def server_version(admin: str) -> str:
    with connect(admin) as conn:
        return str(conn.execute("SELECT current_setting('server_version') AS v").fetchone()["v"])  # type: ignore[index]


def write_docs(block: str, host: results.Machine) -> None:
    page = results.DOCS / "benchmarks.md"
    results.write(page, "\n".join(TABLE), results.command_line("run.py", sys.argv[1:]), name=block, host=host)
    print(f"wrote the block {block!r} of {page}")


if __name__ == "__main__":
    raise SystemExit(main())
