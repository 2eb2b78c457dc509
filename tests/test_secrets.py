"""No secret reaches any output or file: hostile DSNs (a password in a URI, a password and an
sslpassword as key=value, PGPASSWORD) go through every command, and every line it prints and
every file it writes (JUnit XML, evidence, reports) is searched for them.

The test server trusts local logins, so libpq never needs these passwords: they only have to
stay unprinted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from oneroof.core import package
from oneroof.fixtures.plugin import Options
from oneroof.harness import clones
from oneroof.harness.db import parse, public
from tests.support.testing import PgServer, signers

URI_SECRET = "uri-Secret-7f3a"
KV_SECRET = "kv-Secret-91c2"
SSL_SECRET = "ssl-Secret-c0d4"
ENV_SECRET = "env-Secret-5e6b"
SECRETS = (URI_SECRET, KV_SECRET, SSL_SECRET, ENV_SECRET)
ENV = {"PGPASSWORD": ENV_SECRET}


def hostile(dsn: str) -> list[str]:
    """The same target as `dsn`, spelt with secrets: a URI with a password, key=value with a
    password and an sslpassword.
    """
    params = parse(dsn)
    extra = "&".join(f"{k}={v}" for k, v in params.items() if k not in ("host", "port", "user", "dbname"))
    uri = (
        f"postgresql://{params.get('user', 'postgres')}:{URI_SECRET}@{params['host']}:{params['port']}/"
        f"{params['dbname']}" + (f"?{extra}" if extra else "")
    )
    return [uri, conninfo.make_conninfo(dsn, password=KV_SECRET, sslpassword=SSL_SECRET)]


def assert_no_secret(*texts: str, files: Path | None = None) -> None:
    seen = list(texts)
    if files is not None:
        seen += [p.read_text(errors="replace") for p in files.rglob("*") if p.is_file()]
    for secret in SECRETS:
        assert not any(secret in text for text in seen), (
            f"{secret} leaked: {[t for t in seen if secret in t][0][:3000]}"
        )


def test_public_drops_every_secret() -> None:
    for dsn in hostile("host=127.0.0.1 port=5432 user=u dbname=d"):
        shown = public(dsn)
        assert "127.0.0.1" in shown and "dbname=d" in shown
        assert_no_secret(shown)
        options = Options(
            dsn=dsn,
            expect_db="d",
            package="rollout",
            expect_sha256="",
            allowed_signers="",
            allowed_signers_sha256="",
            rehearsal="",
            test_server=dsn,
        )
        assert "dbname=d" in repr(options)  # what pytest shows of a failing test's oneroof_options
        assert_no_secret(repr(options))


def test_read_only_commands_never_print_a_secret(oneroof: Any, clone: clones.Clone) -> None:
    for dsn in hostile(clone.dsn):
        for command in (["probe"], ["probe", "--json"], ["monitor"], ["monitor", "--json"]):
            result = oneroof(*command, "--dsn", dsn, env=ENV)
            assert result.returncode in (0, 3), result.stderr
            assert_no_secret(result.stdout, result.stderr)


def test_verify_of_a_failing_database_keeps_secrets_out_of_output_and_junit(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, tmp_path: Path
) -> None:
    clone_conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")
    for index, dsn in enumerate(hostile(clone.dsn)):
        # -l shows the locals of every failing frame; -rA the captured output of every test
        # --expect-db names another database, so the test taking oneroof_options fails too
        result = oneroof(
            "verify",
            "--stage",
            "baseline",
            "--dsn",
            dsn,
            "--expect-db",
            "directus",
            "-l",
            "-rA",
            "--junitxml",
            str(tmp_path / f"j{index}.xml"),
            env=ENV,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert "test_metric_matches_baseline[inventory]" in result.stdout
        assert "test_database_is_the_one_the_run_expects" in result.stdout
        assert_no_secret(result.stdout, result.stderr, files=tmp_path)
    assert "oneroof_options" in result.stdout  # the failing test's arguments are shown, redacted


def test_clone_commands_never_print_a_secret(oneroof: Any, test_server: PgServer, unique: Any) -> None:
    for index, admin in enumerate(hostile(test_server.admin)):
        name = unique(f"secret_{index}")
        created = oneroof(
            "clone", "create", "--from", test_server.golden, "--name", name, "--wait", "60", "--dsn", admin, env=ENV
        )
        assert created.returncode == 0, created.stderr
        listed = oneroof("clone", "list", "--dsn", admin, env=ENV)
        assert name in listed.stdout
        dropped = oneroof("clone", "drop", name, "--dsn", admin, env=ENV)
        assert dropped.returncode == 0, dropped.stderr
        assert_no_secret(created.stdout, created.stderr, listed.stdout, listed.stderr, dropped.stdout, dropped.stderr)


def test_rollout_and_rollback_never_print_a_secret(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    uri, keyvalue = hostile(clone.dsn)
    blocked = oneroof("rollout", "--dsn", keyvalue, "--confirm-db", clone.name, env=ENV)
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    signers().approve(clone_conn)  # a signed L4 approval
    applied = oneroof(
        "rollout", "--dsn", uri, "--confirm-db", clone.name, "--expect-sha256", package.load().sha256, env=ENV
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    reverted = oneroof("rollback", "--dsn", keyvalue, "--confirm-db", clone.name, env=ENV)
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert_no_secret(*(r.stdout + r.stderr for r in (blocked, applied, reverted)))


def test_rehearse_with_a_production_dsn_writes_no_secret(
    oneroof: Any, test_server: PgServer, clone: clones.Clone, clone_conn: Any, tmp_path: Path
) -> None:
    # production's governance moved: its baseline fails
    clone_conn.execute("DELETE FROM os_collection_inventory WHERE collection = 'gc_meetings'")
    uri, keyvalue = hostile(test_server.admin)
    prod = hostile(clone.dsn)[0]
    # --prod-db names another database: the baseline test that shows the options fails too
    result = oneroof(
        "rehearse",
        "--dsn",
        keyvalue,
        "--golden",
        test_server.golden,
        "--prod-dsn",
        prod,
        "--prod-db",
        "directus",
        "--runs-dir",
        str(tmp_path),
        env=ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr  # the rehearsal itself is GO
    run = next(tmp_path.iterdir())
    assert json.loads((run / "evidence.json").read_text())["production"]["baseline_exit"] == 1
    for fmt in ("md", "json", "html", "text"):
        rendered = oneroof("report", "--run", str(run), "--format", fmt)
        assert_no_secret(rendered.stdout, rendered.stderr)
    assert (run / "junit-production-baseline.xml").is_file()
    assert_no_secret(result.stdout, result.stderr, files=tmp_path)


@pytest.mark.parametrize("debug", [[], ["--debug"]], ids=["plain", "debug"])
def test_errors_never_print_a_secret(oneroof: Any, debug: list[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsns = [
        *hostile(f"host=127.0.0.1 port={port} user=postgres dbname=x"),
        f"postgresql://u:{URI_SECRET}@[::1/db",
        f"host=127.0.0.1 port=abc password={KV_SECRET} sslpassword={SSL_SECRET}",
    ]
    for dsn in dsns:
        for command in (["probe"], ["monitor", "--json"], ["clone", "list"], ["rollback", "--confirm-db", "x"]):
            result = oneroof(*debug, *command, "--dsn", dsn, env=ENV)
            assert result.returncode == (1 if debug else 2), result.stderr  # --debug: Python's traceback
            assert_no_secret(result.stdout, result.stderr)


def test_psycopg_itself_would_have_shown_it() -> None:
    """The hostile URI does carry its password: what the tests above hide is really there."""
    assert parse(hostile("host=h port=1 user=u dbname=d")[0])["password"] == URI_SECRET
    with pytest.raises(psycopg.ProgrammingError, match=URI_SECRET):
        conninfo.conninfo_to_dict(f"postgresql://u:{URI_SECRET}@[::1/db")


def test_any_failing_test_that_shows_the_dsn_is_redacted(pytester: pytest.Pytester, clone: clones.Clone) -> None:
    """Beyond the options: a test that prints the DSN, or fails showing it, still shows no password."""
    from tests.support.testing import ROOT

    shows = pytester.makepyfile(
        test_shows="""
        def test_prints_and_fails(target_dsn):
            print("the target is", target_dsn)
            assert target_dsn == ""
    """
    )
    junit = pytester.path / "shows.xml"
    result = pytester.runpytest_subprocess(
        str(ROOT / "invariants"),
        str(shows),
        "-m",
        "not baseline",
        "-k",
        "prints_and_fails",
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        "--dsn",
        hostile(clone.dsn)[0],
        "--expect-db",
        clone.name,
        "-p",
        "no:cacheprovider",
        "-rA",
        "-l",
        "--junitxml",
        str(junit),
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*the target is postgresql://*:[*][*][*]@*"])
    assert_no_secret(result.stdout.str(), result.stderr.str(), junit.read_text())
