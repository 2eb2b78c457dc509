"""The command line as a user runs it: the embedded server, the main job, probe, verify, and
every kind of bad input (one line, exit 2, no traceback, nothing written).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oneroof.core import content, package
from oneroof.harness import clones, server
from oneroof.harness.catalog import GOLDEN_NAME
from oneroof.harness.db import connect
from oneroof.harness.errors import OneroofError
from tests.support.matrix import SEED_ROWS
from tests.support.testing import PASSWORD_ROLE, PgServer, one_line_error

# a new golden database's figures: the pinned ones, and the seed's observed system_issues
SEED = {**content.figures(package.snapshots_dir(package.DEFAULT_DIR), "baseline"), "system_issues": 204_556}


def database_exists(test_server: PgServer, name: str) -> bool:
    with connect(test_server.admin, autocommit=True) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_embedded_server_and_the_main_job(oneroof: Any, tmp_path: Path) -> None:
    env = {"ONEROOF_HOME": str(tmp_path / "home")}
    try:
        started = oneroof("server", "start", env=env)
        assert started.returncode == 0 and "127.0.0.1" in started.stdout
        again = oneroof("server", "start", env=env)
        assert again.stdout == started.stdout and "already running" in again.stderr
        assert oneroof("server", "url", env=env).stdout == started.stdout
        assert "running on 127.0.0.1" in oneroof("server", "status", env=env).stdout
        assert (tmp_path / "home" / "pgdata" / "PG_VERSION").read_text().strip() == "18"
        # No other local user gets in: the superuser's password is only in the 0600 password file.
        assert "passfile=" in started.stdout and (tmp_path / "home" / "pgpass").stat().st_mode & 0o077 == 0
        without = " ".join(p for p in started.stdout.split() if not p.startswith("passfile="))
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without, connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"{without} password=not-the-password", connect_timeout=5)
        # The superuser's SCRAM secret is oneroof's own, stretched SCRAM_ITERATIONS times, and
        # libpq logs in with the passfile's password against it (each login pays the stretching).
        with psycopg.connect(started.stdout.strip(), connect_timeout=5) as conn:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
        assert row is not None and row[0].split(":")[0] == f"SCRAM-SHA-256${server.SCRAM_ITERATIONS}", "not our secret"

        built = oneroof("golden", "build", env=env)
        assert built.returncode == 0 and built.stdout.strip() == GOLDEN_NAME, built.stderr
        probe = oneroof("probe", "--json", env=env)
        assert probe.returncode == 0, probe.stderr
        data = json.loads(probe.stdout)
        assert data["database"] == GOLDEN_NAME
        assert data["metrics"] == {"db": GOLDEN_NAME, **SEED}
        assert data["fingerprint"]["equal"] and data["fingerprint"]["entry"] == data["fingerprint"]["exit"]

        main_job = oneroof("rehearse", env=env)  # the README's main-job command, on the embedded default
        assert main_job.returncode == 0, main_job.stderr
        matrix = main_job.stdout.split("\n\n")[0].splitlines()[1:]
        assert max(map(len, matrix)) <= 100  # the evidence wraps under its row
        rows = [line.split("  ")[0] for line in matrix if not line.startswith(" ")]
        assert rows == SEED_ROWS
        assert "RELEASE READINESS: GO" in main_job.stdout
        assert list((tmp_path / "home" / "runs").glob("*/report.html"))
    finally:
        oneroof("server", "stop", env=env)
    assert "not running" in oneroof("server", "status", env=env).stdout


def test_a_server_made_with_postgres_own_rounds_gets_oneroof_s_as_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server initialised before oneroof made the superuser's secret itself has PostgreSQL's
    4,096 rounds: its next start makes the secret again from the password file, which still logs in.
    """
    home = tmp_path / "home"

    def rounds() -> str:
        with psycopg.connect(server.start(home).dsn(), connect_timeout=10) as conn:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
        assert row is not None
        return str(row[0]).split(":")[0]

    try:
        monkeypatch.setattr(server, "SCRAM_ITERATIONS", 4096)
        assert rounds() == "SCRAM-SHA-256$4096"
        server.stop(home)
        monkeypatch.undo()
        assert rounds() == f"SCRAM-SHA-256${server.SCRAM_ITERATIONS}"
        server.stop(home)
        assert rounds() == f"SCRAM-SHA-256${server.SCRAM_ITERATIONS}"  # and once only
    finally:
        server.stop(home)


def test_probe_text_shows_figures_and_fingerprints(oneroof: Any, test_server: PgServer) -> None:
    result = oneroof("probe", "--dsn", test_server.dsn(test_server.golden))
    assert result.returncode == 0
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if not line.startswith("entry =="))
    assert {k: int(lines[k]) for k in SEED} == SEED
    assert lines["entry"] == lines["exit"]
    assert "entry == exit  yes" in result.stdout


def test_verify_runs_the_baseline_stage(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    ok = oneroof("verify", "--stage", "baseline", "--dsn", clone.dsn, "--expect-db", clone.name, "-q")
    assert ok.returncode == 0, ok.stdout
    clone_conn.execute("DELETE FROM system_issues WHERE id = 42")  # content: observed, not compared
    grown = oneroof("verify", "--stage", "baseline", "--dsn", clone.dsn, "--expect-db", clone.name, "-q")
    assert grown.returncode == 0, grown.stdout
    clone_conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")  # governance: pinned
    failed = oneroof("verify", "--stage", "baseline", "--dsn", clone.dsn, "--expect-db", clone.name, "-q")
    assert failed.returncode == 1
    assert "test_metric_matches_baseline[inventory]" in failed.stdout


def test_clone_commands(oneroof: Any, test_server: PgServer, unique: Any) -> None:
    name = unique("cli_clone")
    created = oneroof(
        "clone", "create", "--from", test_server.golden, "--name", name, "--wait", "60", "--dsn", test_server.admin
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1] == clones.public(test_server.dsn(name))
    assert name in oneroof("clone", "list", "--dsn", test_server.admin).stdout
    assert oneroof("clone", "drop", name, "--dsn", test_server.admin).returncode == 0
    assert not database_exists(test_server, name)
    # the auditor's runbook: CLONE and CLONE_NAME from one JSON object
    as_json = oneroof(
        "clone",
        "create",
        "--from",
        test_server.golden,
        "--name",
        name,
        "--wait",
        "60",
        "--json",
        "--dsn",
        test_server.admin,
    )
    assert as_json.returncode == 0, as_json.stderr
    made = json.loads(as_json.stdout)
    assert made == {"name": name, "source": test_server.golden, "dsn": clones.public(test_server.dsn(name))}
    assert oneroof("clone", "drop", made["name"], "--dsn", test_server.admin).returncode == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server(oneroof: Any) -> None:
    result = oneroof("probe", "--dsn", f"host=127.0.0.1 port={closed_port()} user=postgres dbname=x")
    one_line_error(result, "cannot connect", "Connection refused")


def test_wrong_password_is_refused_and_never_printed(oneroof: Any, test_server: PgServer) -> None:
    if not test_server.embedded:
        pytest.skip("the --test-server trusts every login; the wrong-password case needs the embedded test server")
    dsn = test_server.dsn("postgres").replace("user=postgres", f"user={PASSWORD_ROLE} password=hunter2-wrong")
    result = oneroof("probe", "--dsn", dsn)
    one_line_error(result, "cannot connect", "password authentication failed")
    assert "hunter2-wrong" not in result.stderr + result.stdout


def test_database_that_is_not_directus(oneroof: Any, test_server: PgServer) -> None:
    one_line_error(
        oneroof("probe", "--dsn", test_server.dsn("postgres")),
        "'postgres' is not a Directus database (no directus_collections); point --dsn at",
    )


def test_directus_without_tier_one(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    clone_conn.execute("DROP VIEW os_governance_gap")
    clone_conn.execute("DROP TABLE os_idle_flags, os_gov_events")
    result = oneroof("probe", "--dsn", clone.dsn)
    one_line_error(
        result, "is Directus but lacks the One-Roof tier-1 table os_gov_events and 2 more; tier 1 must be live"
    )


@pytest.mark.parametrize(
    ("tables", "named"),
    [("system_issues", "system_issues;"), ("os_release_ledger, system_issues", "os_release_ledger and 1 more;")],
)
def test_directus_without_one_or_two_tier_one_tables(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, tables: str, named: str
) -> None:
    clone_conn.execute(f"DROP TABLE {tables} CASCADE")
    result = oneroof("probe", "--dsn", clone.dsn)
    one_line_error(result, f"lacks the One-Roof tier-1 table {named} tier 1 must be live")


def test_scale_zero_builds_nothing(oneroof: Any, test_server: PgServer, unique: Any) -> None:
    name = unique("scale_zero")
    one_line_error(oneroof("golden", "build", "--scale", "0", "--name", name, "--dsn", test_server.admin), "--scale 0")
    assert not database_exists(test_server, name)


def test_unknown_stage(oneroof: Any, test_server: PgServer) -> None:
    one_line_error(
        oneroof("verify", "--stage", "production", "--dsn", test_server.dsn(test_server.golden)),
        "invalid choice: 'production'",
    )


@pytest.mark.parametrize("command", [["golden", "build", "--name"], ["clone", "create", "--name"]])
def test_name_that_is_not_an_identifier(oneroof: Any, test_server: PgServer, command: list[str]) -> None:
    result = oneroof(*command, 'x"; DROP DATABASE postgres; --', "--dsn", test_server.admin)
    one_line_error(result, "is not a valid identifier")
    assert database_exists(test_server, "postgres")


def test_a_role_without_privileges_is_a_one_line_error(
    oneroof: Any, test_server: PgServer, admin: Any, unique: Any
) -> None:
    from psycopg import sql

    role = unique("nopriv")  # roles are cluster-wide: a fixed name would collide with another run
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        dsn = test_server.dsn(test_server.golden).replace("user=postgres", f"user={role}")
        one_line_error(oneroof("monitor", "--dsn", dsn), "the database refused", "permission denied")
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_dsn_with_a_password_is_never_echoed(oneroof: Any) -> None:
    for dsn in ("postgresql://u:hunter2@[::1/db", "host=127.0.0.1 connect_timeout=abc password=hunter2"):
        result = oneroof("probe", "--dsn", dsn)
        one_line_error(result, "DSN")
        assert "hunter2" not in result.stderr + result.stdout


def test_report_of_garbage_evidence_is_bad_input(oneroof: Any, tmp_path: Path) -> None:
    (tmp_path / "evidence.json").write_text("[1, 2]")
    one_line_error(oneroof("report", "--run", str(tmp_path)), "is not rehearsal evidence")
    one_line_error(oneroof("report", "--run", str(tmp_path / "missing")), "cannot be read")


def test_rehearse_against_an_unreachable_server_is_bad_input(oneroof: Any, tmp_path: Path) -> None:
    result = oneroof(
        "rehearse",
        "--dsn",
        f"host=127.0.0.1 port={closed_port()} user=postgres dbname=postgres",
        "--runs-dir",
        str(tmp_path),
    )
    one_line_error(result, "cannot connect")


def test_a_read_behind_a_held_lock_fails_instead_of_hanging(oneroof: Any, clone: clones.Clone) -> None:
    with connect(clone.dsn) as ddl:  # someone's migration holds os_proposals
        ddl.execute("LOCK TABLE os_proposals IN ACCESS EXCLUSIVE MODE")
        result = oneroof("monitor", "--dsn", f"{clone.dsn} options='-c lock_timeout=500'")
        ddl.rollback()
    one_line_error(result, "the database refused", "lock timeout")


def test_debug_shows_the_traceback(oneroof: Any, test_server: PgServer) -> None:
    result = oneroof("--debug", "probe", "--dsn", test_server.dsn("postgres"))
    assert result.returncode != 0 and "Traceback" in result.stderr and "NotDirectus" in result.stderr


def test_existing_golden_is_refused_without_replace(oneroof: Any, test_server: PgServer) -> None:
    one_line_error(
        oneroof("golden", "build", "--name", test_server.golden, "--dsn", test_server.admin),
        "already exists",
        "--replace",
    )


def test_embedded_server_runs_for_an_ordinary_user() -> None:
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root and runuser to act as an ordinary user (the root path is covered above)")
    home = Path(tempfile.mkdtemp(prefix="oneroof-nobody-"))  # pytest's tmp_path is root-only
    shutil.chown(home, "nobody", "nogroup")
    env = {"PATH": os.environ["PATH"], "ONEROOF_HOME": str(home), "HOME": str(home)}

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-m", "oneroof.executor", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).parent.parent,
            timeout=120,
            check=False,
        )

    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import oneroof.executor"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"the user nobody cannot import this checkout: {probe.stderr.strip().splitlines()[-1]}")
    try:
        started = as_nobody("server", "start")
        assert started.returncode == 0, started.stderr
        assert "running on 127.0.0.1" in as_nobody("server", "status").stdout
        assert (home / "pgdata").stat().st_uid == (home).stat().st_uid  # owned by nobody, not a system user
        assert "127.0.0.1" in as_nobody("server", "url").stdout
    finally:
        as_nobody("server", "stop")
    try:
        assert "not running" in as_nobody("server", "status").stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_unwritable_home_is_a_one_line_error(oneroof: Any) -> None:
    result = oneroof("server", "start", env={"ONEROOF_HOME": "/proc/oneroof-cannot-be-here"})
    one_line_error(result, "cannot use /proc/oneroof-cannot-be-here", "ONEROOF_HOME")


@pytest.mark.parametrize(
    "option", ["--snapshot-update", "--snapshot-warn-unused", "--snapshot-details", "--snapshot-default-extension=x.Y"]
)
def test_verify_refuses_snapshot_options(oneroof: Any, clone: clones.Clone, option: str) -> None:
    snapshot_dir = package.snapshots_dir(package.DEFAULT_DIR)
    before = {p.name: p.read_bytes() for p in snapshot_dir.iterdir()}
    result = oneroof("verify", "--stage", "baseline", "--dsn", clone.dsn, "--expect-db", clone.name, option)
    one_line_error(result, f"verify does not take {option.split('=')[0]}", "pytest invariants --snapshot-update")
    assert result.stdout == ""
    assert {p.name: p.read_bytes() for p in snapshot_dir.iterdir()} == before


def test_debug_after_the_subcommand_shows_the_traceback(oneroof: Any, test_server: PgServer) -> None:
    result = oneroof("probe", "--dsn", test_server.dsn("postgres"), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "NotDirectus" in result.stderr


def test_verify_bad_input_is_2_not_pytests_4(oneroof: Any, clone: clones.Clone) -> None:
    one_line_error(
        oneroof("verify", "--stage", "baseline", "--dsn", clone.dsn, "--package", "/missing"),
        "package directory /missing does not exist",
    )
    unknown = oneroof("verify", "--stage", "baseline", "--dsn", clone.dsn, "--no-such-pytest-flag")
    assert unknown.returncode == 2 and "--no-such-pytest-flag" in unknown.stderr


def test_help_lists_every_exit_code_and_explains_every_option(oneroof_main: Any) -> None:
    """Help text only: the command line runs in the test's process."""
    top = oneroof_main("--help").stdout
    for code in (
        "0 ok",
        "1 invariant",
        "2 bad input",
        "3 BLOCKED",
        "4 package",
        "5 release lock",
        "6 rollout",
        "130 interrupted",
    ):
        assert code in " ".join(top.split()), top
    rollout = " ".join(oneroof_main("rollout", "--help").stdout.split())
    assert "6 applied and committed but the audit" in rollout and "130 interrupted" in rollout
    probe = " ".join(oneroof_main("probe", "--help").stdout.split())
    assert "1 when a read was assigned a transaction id" in probe
    assert "baseline (the seed's figures)" in " ".join(oneroof_main("verify", "--help").stdout.split())
    assert "text (the terminal matrix" in " ".join(oneroof_main("report", "--help").stdout.split())


def test_a_command_that_starts_the_embedded_server_says_so(oneroof: Any, tmp_path: Path) -> None:
    env = {"ONEROOF_HOME": str(tmp_path / "home")}
    try:
        listed = oneroof("clone", "list", env=env)  # what rehearse does too: the server named by no --dsn
        assert listed.returncode == 0, listed.stderr
        assert "starting the embedded PostgreSQL 18" in listed.stderr
        assert "keeps running after this command: `oneroof server stop` stops it" in listed.stderr
        again = oneroof("clone", "list", env=env)
        assert "starting" not in again.stderr  # already running: nothing to say
    finally:
        oneroof("server", "stop", env=env)


def test_golden_snapshot_refuses_a_rehearsal_server_before_17(oneroof: Any, test_server: PgServer) -> None:
    """pg_restore 18 cannot restore into PostgreSQL 16 or older: one line, exit 2, nothing made."""
    service = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    try:
        with connect(service) as conn:
            version = conn.info.server_version
    except OneroofError:
        pytest.skip("needs the PostgreSQL service on 127.0.0.1:5432 as an old rehearsal server")
    if version >= 170000:
        pytest.skip(f"the service on 127.0.0.1:5432 is PostgreSQL {version // 10000}, not older than 17")
    result = oneroof(
        "golden", "snapshot", "--from", test_server.admin, "--dsn", service, "--name", "oneroof_never_made"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "needs a rehearsal server of PostgreSQL 17 or later" in result.stderr and "Traceback" not in result.stderr
    with connect(service) as conn:
        assert (
            conn.execute("SELECT count(*) AS n FROM pg_database WHERE datname LIKE 'oneroof_never_made%%'").fetchone()[
                "n"
            ]
            == 0
        )
