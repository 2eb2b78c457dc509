"""Issue 18, the operator's side: a package that PostgreSQL reads otherwise than its check
(standard_conforming_strings off), calls that reach outside the release, files outside the
package, an oversized package; and the connection that runs the tiers pins how SQL is parsed.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pglast
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg import conninfo, sql

from oneroof.core import evidence, package, signatures
from oneroof.executor import cli, release
from oneroof.harness import catalog, clones
from oneroof.harness.db import PARSE_SETTINGS, connect, pin
from oneroof.harness.errors import IntegrityError, InvariantFailed, UsageError
from tests.support.release import PKG
from tests.support.testing import ROOT, PgServer, one_line_error, signers

SIGNERS = signers()

# The exact reproduction: pglast (and PostgreSQL with standard_conforming_strings on) reads one
# SELECT of a string; with it off, PostgreSQL reads `'x\''` as the string x', then the hidden
# COMMIT, the DDL and the grant outside the release transaction, and a comment.
ATTACK = (
    "SELECT 'x\\''; COMMIT; CREATE TABLE {table} (id int); "
    "INSERT INTO directus_access (id, role, policy) SELECT gen_random_uuid(), NULL, id FROM directus_policies "
    "WHERE admin_access LIMIT 1; COMMIT; BEGIN; --';"
)
HIDDEN = "oneroof_hidden_by_a_backslash"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the repository's package to damage."""
    return package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path


def append(copy: Path, text: str, name: str = "tier4_axes.deploy.sql") -> None:
    """Append `text` to a tier file and reseal: only the checker can refuse it now."""
    target = copy / name
    target.write_text(target.read_text() + "\n" + text + "\n")
    package.seal(copy)


# -- 18.4: the package check and the parser's settings --------------------------------------------


def test_the_shipped_package_passes_the_stricter_check_with_the_same_hash() -> None:
    """The stricter check loads the shipped package, whose hash is still the one the operator's
    runbook pins (the checker changed, not the package).
    """
    runbook = (ROOT / "docs" / "runbooks" / "operator.md").read_text()
    pinned = re.search(r"^PINNED=([0-9a-f]{64})$", runbook, re.M)
    assert pinned is not None and package.load().sha256 == pinned.group(1)


def test_pglast_reads_the_attack_as_one_select() -> None:
    """Why the check was defeated: the parser the check uses sees one harmless statement."""
    parsed = pglast.parse_sql(ATTACK.format(table=HIDDEN))
    assert [type(raw.stmt).__name__ for raw in parsed] == ["SelectStmt"]


def test_a_backslash_that_hides_statements_is_refused_by_package_verify(copy: Path, oneroof: Any) -> None:
    append(copy, ATTACK.format(table=HIDDEN))
    with pytest.raises(IntegrityError, match="backslash .*standard_conforming_strings"):
        package.load(copy)
    result = oneroof("package", "verify", "--package", str(copy))
    assert result.returncode == 4 and "tier4_axes.deploy.sql: line" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 'a\\b' AS path;",
        "SELECT E'\\'' AS quote;",
        "SELECT U&'d\\0061t\\+000061' AS unicode;",
        'SELECT 1 AS "odd\\name";',
    ],
)
def test_every_backslash_outside_comments_and_dollar_quotes_is_refused(copy: Path, text: str) -> None:
    append(copy, text)
    with pytest.raises(IntegrityError, match="backslash"):
        package.load(copy)


def test_a_backslash_in_a_comment_or_a_dollar_quote_is_allowed(copy: Path) -> None:
    append(copy, "-- C:\\path\\ in a comment\n/* and \\ here */ SELECT $$a\\b$$ AS dollar;")
    assert package.load(copy).tiers[2].deploy_statements[-1].endswith("SELECT $$a\\b$$ AS dollar")


@pytest.mark.parametrize(
    ("text", "called"),
    [
        ("SELECT set_config('standard_conforming_strings', 'off', false);", "set_config"),
        ("SELECT pg_catalog.set_config('search_path', 'evil', false);", "set_config"),
        ("SELECT pg_read_file('/etc/passwd');", "pg_read_file"),
        ("SELECT pg_read_binary_file('/etc/passwd');", "pg_read_binary_file"),
        ("SELECT * FROM pg_ls_dir('.');", "pg_ls_dir"),
        ("SELECT lo_export(16384, '/tmp/x');", "lo_export"),
        ("SELECT lo_import('/etc/passwd');", "lo_import"),
        ("SELECT dblink_exec('host=evil', 'DROP TABLE x');", "dblink_exec"),
        ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity;", "pg_terminate_backend"),
        ("SELECT pg_cancel_backend(1);", "pg_cancel_backend"),
        ("SELECT pg_reload_conf();", "pg_reload_conf"),
        ("SELECT pg_promote();", "pg_promote"),
        ("SELECT setval('os_axes_id_seq', 1);", "setval"),
        ("SELECT pg_advisory_lock(1);", "pg_advisory_lock"),
        ("SELECT query_to_xml('DELETE FROM os_axes RETURNING 1', true, true, '');", "query_to_xml"),
        ("UPDATE os_axes SET label = (SELECT pg_read_file('x')) WHERE false;", "pg_read_file"),
    ],
)
def test_calls_that_reach_outside_the_release_are_refused(copy: Path, text: str, called: str) -> None:
    append(copy, text)
    with pytest.raises(IntegrityError, match=f"calls {called}\\(\\)"):
        package.load(copy)


def test_select_into_creates_a_table_and_is_refused(copy: Path) -> None:
    append(copy, "SELECT * INTO stolen FROM directus_users;")
    with pytest.raises(IntegrityError, match="SELECT INTO"):
        package.load(copy)


def test_a_connection_asking_for_standard_conforming_strings_off_runs_with_it_on(
    clone: clones.Clone, clone_conn: Any
) -> None:
    """The executor's own connection: startup options the operator (or PGOPTIONS, or ALTER ROLE)
    set cannot change how PostgreSQL reads the tier text; the hidden statements stay a string.
    """
    hostile = conninfo.make_conninfo(
        clone.dsn,
        options="-c standard_conforming_strings=off -c backslash_quote=on -c transform_null_equals=on",
    )
    statement = pglast.split(ATTACK.format(table=HIDDEN))[0]
    with connect(hostile) as conn:
        shown = {
            name: conn.execute(sql.SQL("SELECT current_setting({}) AS v").format(sql.Literal(name))).fetchone()
            for name, _ in PARSE_SETTINGS
        }
        assert {name: (row or {}).get("v") for name, row in shown.items()} == dict(PARSE_SETTINGS)
        release._run(conn, "tier4_axes.deploy.sql", (statement,))
        conn.rollback()
    assert clone_conn.execute("SELECT pg_catalog.to_regclass(%s) AS t", (HIDDEN,)).fetchone() == {"t": None}


def test_a_setting_changed_after_connecting_is_pinned_again(clone: clones.Clone) -> None:
    """A pooler that drops startup options, or a SET on the session: pin() sets them back."""
    with connect(clone.dsn) as conn:
        conn.execute("SET standard_conforming_strings = off")
        conn.execute("SET backslash_quote = on")
        conn.commit()
        pin(conn)
        row = conn.execute(
            "SELECT current_setting('standard_conforming_strings') AS scs, current_setting('backslash_quote') AS bq"
        ).fetchone()
    assert row == {"scs": "on", "bq": "safe_encoding"}


def test_a_statement_that_ends_the_transaction_is_still_caught_at_run_time(clone: clones.Clone) -> None:
    """The last line of defence stays: were the text to commit, the run stops."""
    said = r"^x\.sql: statement 2 ended the release transaction; nothing after it was kept$"  # counted from 1
    with connect(clone.dsn) as conn, pytest.raises(InvariantFailed, match=said):
        conn.execute("SELECT 1")
        release._run(conn, "x.sql", ("SELECT 1", "COMMIT"))


# -- weak points: files outside the package, the size limit ---------------------------------------


def _rename_tier(copy: Path, new: str) -> None:
    manifest = copy / "manifest.toml"
    text = manifest.read_text().replace('deploy = "tier4_axes.deploy.sql"', f"deploy = {json.dumps(new)}")
    manifest.write_text(text)


def test_a_symbolic_link_inside_the_package_is_refused(copy: Path) -> None:
    (copy / "real").mkdir()
    (copy / "tier4_axes.deploy.sql").rename(copy / "real" / "tier4.sql")
    (copy / "tier4_axes.deploy.sql").symlink_to(copy / "real" / "tier4.sql")
    with pytest.raises(IntegrityError, match="is a symbolic link"):
        package.load(copy)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_a_tier_file_outside_the_package_is_refused(copy: Path, where: str) -> None:
    outside = copy.parent / "x.sql"
    outside.write_bytes((copy / "tier4_axes.deploy.sql").read_bytes())
    if where == "symlink":
        (copy / "tier4_axes.deploy.sql").unlink()
        (copy / "tier4_axes.deploy.sql").symlink_to(outside)
        match = "outside the package directory"  # where the link leads
    else:
        (copy / "tier4_axes.deploy.sql").unlink()
        _rename_tier(copy, "../x.sql" if where == "parent" else str(outside))
        match = "outside the package directory"
    with pytest.raises(IntegrityError, match=match):
        package.load(copy)


def test_an_oversized_package_is_refused_before_it_is_parsed(copy: Path) -> None:
    line = "SELECT 1 FROM os_axes WHERE code = 'padding-padding-padding-padding';\n"
    append(copy, line * (package.MAX_PACKAGE_BYTES // len(line) + 1))
    started = time.monotonic()
    with pytest.raises(IntegrityError, match=f"over the limit of {package.MAX_PACKAGE_BYTES // 1048576} MiB"):
        package.load(copy)
    assert time.monotonic() - started < 5  # parsing it took seconds: it is refused before


def test_the_shipped_package_is_far_below_the_limit(copy: Path) -> None:
    size = sum(os.path.getsize(p) for p in copy.rglob("*") if p.is_file())
    assert size < package.MAX_PACKAGE_BYTES // 4  # the shipped package (about 200 kB) is far below the limit


# -- 18.10: a closed output pipe never turns into success -----------------------------------------


def closed_pipe(oneroof_home: Path, *args: str, stderr_too: bool = True, timeout: float = 600) -> tuple[int, str]:
    """Run `oneroof ARGS` as `oneroof ARGS 2>&1 | head -0` would: its stdout (and with `stderr_too`
    its stderr) is a pipe whose reader is gone before the first line. Returns the real exit code
    and what stderr said when it was not closed.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ONEROOF_"))}
    env.update(ONEROOF_HOME=str(oneroof_home), ONEROOF_ALLOWED_SIGNERS=str(SIGNERS.trust.path))
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oneroof.executor", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr_too else errors,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        proc.stdout.close()
        code = proc.wait(timeout=timeout)
        errors.seek(0)
        return code, errors.read().decode(errors="replace")


def deployed(conn: Any) -> int:
    """How many deploy rows the ledger holds more than revert rows (0: greenfield)."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE action = 'deploy') - count(*) FILTER (WHERE action = 'revert') AS n "
        "FROM os_release_ledger"
    ).fetchone()
    return int(row["n"])


def test_a_rollout_whose_output_pipe_closed_still_applies_and_exits_0(
    oneroof_home: Path, clone: clones.Clone, clone_conn: Any
) -> None:
    """`oneroof rollout ... 2>&1 | head -1` exited 0 with nothing applied."""
    SIGNERS.approve(clone_conn)
    code, _ = closed_pipe(oneroof_home, "rollout", "--dsn", clone.dsn, "--confirm-db", clone.name)
    assert code == 0 and deployed(clone_conn) == len(PKG.tiers)


def test_a_blocked_rollout_whose_output_pipe_closed_exits_3(
    oneroof_home: Path, clone: clones.Clone, clone_conn: Any
) -> None:
    code, _ = closed_pipe(oneroof_home, "rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, stderr_too=False)
    assert code == 3 and deployed(clone_conn) == 0


def test_a_rollback_whose_output_pipe_closed_still_reverts_and_exits_0(
    oneroof_home: Path, clone: clones.Clone, clone_conn: Any
) -> None:
    SIGNERS.approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=SIGNERS.trust)
    code, _ = closed_pipe(oneroof_home, "rollback", "--dsn", clone.dsn, "--confirm-db", clone.name)
    assert code == 0 and deployed(clone_conn) == 0


@pytest.mark.parametrize("stderr_too", [False, True])
def test_a_blocked_monitor_piped_into_true_exits_3(oneroof_home: Path, clone: clones.Clone, stderr_too: bool) -> None:
    code, _ = closed_pipe(oneroof_home, "monitor", "--dsn", clone.dsn, stderr_too=stderr_too)
    assert code == 3


def test_an_audit_that_refuses_keeps_exit_1_on_a_closed_pipe(
    oneroof_home: Path, clone: clones.Clone, clone_conn: Any
) -> None:
    approval = SIGNERS.approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=SIGNERS.trust)
    clone_conn.execute(
        'UPDATE directus_comments SET comment = replace(comment, \'"level":"L4"\', \'"level":"L2"\') WHERE item = %s',
        (str(approval),),
    )
    code, _ = closed_pipe(oneroof_home, "approvals", "verify", "--dsn", clone.dsn)
    assert code == 1


@pytest.mark.parametrize(("stage", "expected"), [("greenfield", 0), ("finalized", 1)])
def test_verify_keeps_pytest_s_code_on_a_closed_pipe(
    oneroof_home: Path, clone: clones.Clone, stage: str, expected: int
) -> None:
    code, _ = closed_pipe(oneroof_home, "verify", "--stage", stage, "--dsn", clone.dsn, "--expect-db", clone.name)
    assert code == expected


def queued(fd: int) -> int:
    """How many bytes wait in the pipe `fd` is an end of."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0]


def poll_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"waited 30 s for {what}"
        time.sleep(0.001)


def test_verify_s_relay_delivers_what_its_pipe_still_holds_when_the_session_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`oneroof verify` relays pytest's output through a pipe of its own (cli._relayed). When the session
    has ended, what is still in that pipe reaches the real descriptor before it is closed (before
    9bd2898 it was closed first: the rest met a closed descriptor, 'Bad file descriptor', and was
    lost). No timing: the real pipe is full and unread, so the relay holds one page of the message
    and the rest waits in its pipe when the block ends; the real pipe is read only once the block's
    end waits for the relay.
    """
    sink, out = os.pipe()  # `out`: the descriptor verify writes to, `sink` its reader
    page = select.PIPE_BUF  # a pipe write of one page is atomic: the relay reads it whole
    pages = fcntl.fcntl(out, fcntl.F_GETPIPE_SZ) // page + 1  # one more than the real pipe holds
    message = os.urandom(pages * page + 60_000)
    received = bytearray()
    waited = threading.Event()

    class Relay(threading.Thread):
        def join(self, timeout: float | None = None) -> None:
            waited.set()  # the block's end waits for the relay: from now on the real pipe is read
            super().join(timeout)

    def read() -> None:
        waited.wait(60)
        while chunk := os.read(sink, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    with monkeypatch.context() as patch:
        patch.setattr(cli.threading, "Thread", Relay)
        with cli._relayed(out):  # `out` is now the write end of the relay's pipe
            for at in range(0, pages * page, page):
                os.write(out, message[at : at + page])
                poll_until(lambda: queued(out) == 0, "the relay to read a page")
            poll_until(lambda: queued(sink) == (pages - 1) * page, "the real pipe to fill up")
            os.write(out, message[pages * page :])  # the relay is stuck writing: this stays in its pipe
    os.close(out)
    reader.join(60)
    os.close(sink)
    assert not reader.is_alive()
    assert (len(received), bytes(received) == message) == (len(message), True)


def test_a_rehearsal_whose_output_pipe_closed_still_runs_to_its_verdict(
    oneroof_home: Path, test_server: PgServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    args = ("rehearse", "--dsn", test_server.admin, "--golden", test_server.golden, "--runs-dir", str(runs))
    code, _ = closed_pipe(oneroof_home, *args)
    evidence = [json.loads(p.read_text()) for p in runs.rglob("evidence*.json")]
    assert code == 0 and len(evidence) == 1 and all(step["ok"] for step in evidence[0]["steps"])


# -- 18.11: evidence with wrong types is bad input, never a traceback -----------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ("steps", "package", "golden_provenance", "bound", "started_at", "interrupted", "golden")


def good_evidence() -> dict[str, Any]:
    """Evidence as a GO rehearsal writes it (the shape, not a binding one)."""
    return {
        "tool": "tests",
        "started_at": "2026-01-01T00:00:00+00:00",
        "package": {"sha256": PKG.sha256},
        "golden": "directus",
        "steps": [{"name": name, "ok": True, "detail": ""} for name in evidence.REQUIRED_STEPS],
        "golden_provenance": {
            "kind": "production snapshot",
            "database": "directus",
            "system_identifier": "7",
            "taken_at": "2026-01-01T00:00:00+00:00",
        },
        "bound": {"tables": {"os_axes": "1:abc"}},
    }


@pytest.mark.parametrize(
    "damage",
    [
        {"steps": 5},
        {"package": "x"},
        {"steps": [5]},
        {"steps": [{"name": ["rollout"], "ok": True}]},
        {"golden_provenance": "production snapshot"},
        {"golden_provenance": {"kind": 1}},
        {"bound": {"tables": ["os_axes"]}},
        {"bound": []},
        {"package": {"sha256": 7}},
    ],
)
def test_evidence_with_wrong_types_is_one_line_exit_2(
    oneroof: Any, clone: clones.Clone, tmp_path: Path, damage: dict[str, Any]
) -> None:
    file = tmp_path / "evidence.json"
    file.write_text(json.dumps({**good_evidence(), **damage}))
    with pytest.raises(UsageError, match="not the evidence of a rehearsal"):
        evidence.load(file)
    for args in (("monitor",), ("rollout", "--confirm-db", clone.name)):
        result = oneroof(*args, "--dsn", clone.dsn, "--rehearsal", str(file))
        one_line_error(result, "--rehearsal", "not the evidence of a rehearsal")


def test_verify_refuses_evidence_with_wrong_types(oneroof: Any, clone: clones.Clone, tmp_path: Path) -> None:
    file = tmp_path / "evidence.json"
    file.write_text(json.dumps({**good_evidence(), "steps": 5}))
    args = ("--stage", "gate", "--dsn", clone.dsn, "--expect-db", clone.name, "--rehearsal", str(file))
    result = oneroof("verify", *args)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "not the evidence of a rehearsal" in result.stdout + result.stderr


@given(field=st.sampled_from(FIELDS), value=JSON, inner=st.sampled_from(("", "name", "ok", "sha256", "kind", "tables")))
@example(field="steps", value=5, inner="")
@example(field="package", value="x", inner="")
@example(field="golden_provenance", value={"system_identifier": 7}, inner="")
def test_random_types_in_evidence_never_give_a_traceback(field: str, value: Any, inner: str) -> None:
    data = good_evidence()
    if inner and isinstance(data.get(field), dict):
        data[field] = {**data[field], inner: value}
    elif inner and field == "steps":
        data["steps"] = [{**data["steps"][0], inner: value}, *data["steps"][1:]]
    else:
        data[field] = value
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "evidence.json"
        file.write_text(json.dumps(data))
        try:
            loaded = evidence.load(file)
        except UsageError:
            return
    assert isinstance(loaded.go, bool) and isinstance(loaded.why_not, str)
    assert all(isinstance(v, str) for v in (loaded.package_sha256, loaded.origin, loaded.database, loaded.taken_at))
    assert loaded.system_identifier is None or isinstance(loaded.system_identifier, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in loaded.tables.items())


def test_the_evidence_a_rehearsal_writes_has_the_shape() -> None:
    assert evidence.shape_problem(good_evidence()) is None


# -- 18.7: a swapped trust root -------------------------------------------------------------------


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, capture_output=True)
    return path


def operator_dir(tmp_path: Path, mode: int) -> Path:
    """The operator's directory with trust/allowed_signers, the reviewed file (the tests' signers)."""
    home = tmp_path / "operator"
    (home / "trust").mkdir(parents=True)
    (home / "trust" / "allowed_signers").write_bytes(SIGNERS.trust.data)
    home.chmod(mode)
    return home


def swap_trust_root(home: Path, conn: Any) -> None:
    """The attack: the folder is moved aside (its file could not be written), a new folder holds the
    attacker's key under the L4 approver's email, and an approval signed with that key is stored.
    """
    (home / "trust").rename(home / "trust.reviewed")
    (home / "trust").mkdir()
    key = keygen(home / "trust" / "attacker")
    email = catalog.account("l4").email
    (home / "trust" / "allowed_signers").write_text(
        f"{email} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    SIGNERS.attach(conn, SIGNERS.approve(conn, signed=False), SIGNERS.statement(conn, key=key))


def test_a_swapped_trust_root_in_a_world_writable_directory_is_refused(
    oneroof_main: Any, clone: clones.Clone, clone_conn: Any, tmp_path: Path
) -> None:
    home = operator_dir(tmp_path, 0o777)
    swap_trust_root(home, clone_conn)
    # How monitor reads --allowed-signers and what it says is the subject, not its process: run in
    # this one (the next test's pin given in the environment stays a process's).
    result = oneroof_main("monitor", "--dsn", clone.dsn, "--allowed-signers", str(home / "trust" / "allowed_signers"))
    assert "OPEN" not in result.stdout
    one_line_error(result, f"the directory {home} is owned by uid", "world-writable", "chmod go-w")


def test_a_pinned_trust_root_refuses_a_swap_the_modes_cannot_see(
    oneroof: Any, oneroof_main: Any, clone: clones.Clone, clone_conn: Any, tmp_path: Path
) -> None:
    home = operator_dir(tmp_path, 0o755)
    trust = str(home / "trust" / "allowed_signers")
    pin = SIGNERS.trust.sha256
    SIGNERS.approve(clone_conn)
    assert (
        oneroof_main(
            "monitor", "--dsn", clone.dsn, "--allowed-signers", trust, "--allowed-signers-sha256", pin
        ).returncode
        == 0
    )
    swap_trust_root(home, clone_conn)  # as the user themselves, say, or root
    flag = oneroof_main("monitor", "--dsn", clone.dsn, "--allowed-signers", trust, "--allowed-signers-sha256", pin)
    one_line_error(flag, "is not the pinned", pin)
    env = oneroof(
        "monitor", "--dsn", clone.dsn, "--allowed-signers", trust, env={"ONEROOF_ALLOWED_SIGNERS_SHA256": pin}
    )
    one_line_error(env, "is not the pinned", "ONEROOF_ALLOWED_SIGNERS_SHA256")
    gate = oneroof(
        "verify", "--stage", "gate", "--dsn", clone.dsn, "--expect-db", clone.name,
        env={"ONEROOF_ALLOWED_SIGNERS": trust, "ONEROOF_ALLOWED_SIGNERS_SHA256": pin},
    )  # fmt: skip
    assert gate.returncode == 2 and "is not the pinned" in gate.stderr + gate.stdout


@pytest.mark.parametrize(
    ("setup", "refused"),
    [
        ("group-writable file", "it is owned by uid 0 and group-writable"),
        ("world-writable file", "world-writable"),
        ("group-writable directory", "group-writable"),
        ("foreign owner", "owned by uid 65534"),
        ("sticky world-writable directory", ""),
        ("private directory", ""),
        ("a FIFO in its place", "it is not a regular file"),
    ],
)
def test_the_trust_file_and_its_directories_follow_openssh_strict_modes(
    tmp_path: Path, setup: str, refused: str
) -> None:
    home = operator_dir(tmp_path, 0o700)
    file = home / "trust" / "allowed_signers"
    if setup.endswith("file") and "writable" in setup:
        file.chmod(0o620 if "group" in setup else 0o606)
    elif setup == "group-writable directory":
        (home / "trust").chmod(0o770)
    elif setup == "foreign owner":
        if os.geteuid() != 0:
            pytest.skip("only root can give a file away")
        os.chown(file, 65534, 65534)
    elif setup == "a FIFO in its place":
        file.unlink()
        os.mkfifo(file, 0o600)
    elif setup == "sticky world-writable directory":
        home.chmod(0o1777)  # as /tmp: others may add names, not rename or remove the user's
    if refused:
        with pytest.raises(UsageError, match=refused):
            signatures.TrustRoot.load(file)
    else:
        assert signatures.TrustRoot.load(file).sha256 == SIGNERS.trust.sha256


def test_a_trust_root_pin_that_is_not_a_sha256_or_has_no_file_is_bad_input(oneroof: Any) -> None:
    one_line_error(oneroof("monitor", "--allowed-signers-sha256", "abc"), "is not a SHA-256")
    result = oneroof("monitor", "--allowed-signers-sha256", "0" * 64, env={"ONEROOF_ALLOWED_SIGNERS": ""})
    one_line_error(result, "none is given")


# -- 18.8: python -m oneroof.executor does not import from the working directory ------------------


@pytest.mark.parametrize("module", ["pglast", "psycopg", "argparse"])
def test_a_module_planted_in_the_working_directory_is_not_imported(tmp_path: Path, module: str) -> None:
    """A `pglast.py` in the directory patched the gate: `python -m` put the directory first."""
    marker = tmp_path / "planted-ran"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(0)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEROOF_")}
    proc = subprocess.run(
        [sys.executable, "-m", "oneroof.executor", "package", "verify", "--package", str(package.DEFAULT_DIR)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not marker.exists()
    assert proc.returncode == 0 and PKG.sha256 in proc.stdout, proc.stdout + proc.stderr


# -- weak point: numeric options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("clone", "gc", "--older-than", "-5"),
        ("clone", "gc", "--older-than", "nan"),
        ("clone", "create", "--wait", "-1"),
        ("clone", "create", "--wait", "nan"),
        ("clone", "create", "--wait", "inf"),
        ("verify", "--stage", "gate", "-n", "-1"),
        ("golden", "build", "--scale", "0"),
        ("rehearse", "--scale", "-1"),
        ("golden", "snapshot", "--from", "x", "--jobs", "0"),
    ],
)
def test_every_numeric_option_refuses_nonsense_with_exit_2(oneroof: Any, args: tuple[str, ...]) -> None:
    one_line_error(oneroof(*args, "--dsn", "host=/nonexistent"), args[-2])


# -- weak point: a package may require its seal ---------------------------------------------------


def test_require_sealed_refuses_an_unsealed_package_and_accepts_a_sealed_one(copy: Path) -> None:
    manifest = copy / "manifest.toml"
    manifest.write_text(
        manifest.read_text().replace(
            "require_signatures = true\n", "require_sealed = true\nrequire_signatures = true\n"
        )
    )
    package.seal(copy)
    with pytest.raises(IntegrityError, match="require_sealed = true, but the package is not sealed"):
        package.load(copy)
    package.seal(copy, SIGNERS.keys["l2"])
    sealed = package.load(copy)
    assert sealed.sealer_key is not None and sealed.sha256 != PKG.sha256


def test_a_snapshot_behind_a_symbolic_link_is_refused(copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.ambr"
    snapshot = copy / "snapshots" / "test_baseline.ambr"
    outside.write_bytes(snapshot.read_bytes())
    snapshot.unlink()
    snapshot.symlink_to(outside)
    with pytest.raises(IntegrityError, match="symbolic link"):
        package.load(copy)
