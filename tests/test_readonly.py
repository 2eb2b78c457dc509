"""Read-only, proven (proof): probe, monitor, verify of every stage, and a rollout blocked before
and under the release lock, against a database standing for production, on a server of the
test's own where nothing else runs. No transaction id is assigned (the server's next xid does not
move), the write counters of pg_stat_database and pg_stat_user_tables do not move, and every
command's entry fingerprint equals its exit fingerprint.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from oneroof.core import evidence as rehearsal
from oneroof.executor import release
from oneroof.harness import clones, golden, server
from oneroof.harness.db import connect, with_dbname
from oneroof.harness.errors import Blocked
from tests.support.processes import clean_env, run_executor
from tests.support.release import PKG, approve
from tests.support.testing import bound_evidence, signers

pytestmark = pytest.mark.proof
PRODUCTION = "directus_standin"
COUNTERS_SQL = """
SELECT d.tup_inserted, d.tup_updated, d.tup_deleted,
       (SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables) AS n_tup_ins,
       (SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables) AS n_tup_upd,
       (SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables) AS n_tup_del,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid
FROM pg_stat_database AS d WHERE d.datname = current_database()
"""


@pytest.fixture(scope="module")
def quiet() -> Iterator[str]:
    """A server of this module's own, autovacuum off (its ANALYZE would take transaction ids),
    holding a golden database and an unmarked copy of it standing for production.
    """
    home = Path(tempfile.mkdtemp(prefix="oneroof-quiet-"))
    try:
        admin = server.start(home, fast=True, auth="trust").dsn()
        with connect(admin, autocommit=True) as conn:
            if int(conn.execute("SHOW server_version_num").fetchone()["server_version_num"]) < 150000:  # type: ignore[index]
                pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15 or later")
            conn.execute("ALTER SYSTEM SET autovacuum = off")
            conn.execute("SELECT pg_reload_conf()")
        golden.build(admin, name="quiet_golden", package_sha256=PKG.sha256)
        clones.create(admin, source="quiet_golden", name=PRODUCTION)
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(PRODUCTION)))
        yield with_dbname(admin, PRODUCTION)
    finally:
        server.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def counters(dsn: str) -> dict[str, int]:
    """The write counters and the next transaction id, once every other session has gone and
    its statistics are flushed.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(100):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if row == (0,):
                break
            time.sleep(0.05)
        time.sleep(0.2)  # an exiting backend flushes its statistics on the way out
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT pg_stat_clear_snapshot()")
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        found = cur.execute(COUNTERS_SQL).fetchone()
        assert found is not None
        return {k: int(v) for k, v in found.items()}


def oneroof(*args: str) -> subprocess.CompletedProcess[str]:
    trust = str(signers().trust.path)  # the tests' trust root
    return run_executor(*args, env=clean_env(ONEROOF_ALLOWED_SIGNERS=trust))


COMMANDS = {  # name: (arguments, exit code, the line proving entry == exit)
    "probe": (("probe",), 0, "entry == exit  yes"),
    "monitor": (("monitor",), 3, "entry == exit  yes"),
    "verify baseline": (("verify", "--stage", "baseline", "--expect-db", PRODUCTION), 0, "oneroof entry == exit"),
    "verify greenfield": (("verify", "--stage", "greenfield", "--expect-db", PRODUCTION), 0, "oneroof entry == exit"),
    "verify finalized": (("verify", "--stage", "finalized", "--expect-db", PRODUCTION), 1, "oneroof entry == exit"),
    "verify gate": (("verify", "--stage", "gate", "--expect-db", PRODUCTION), 1, "oneroof entry == exit"),
    "rollout blocked before the lock": (("rollout", "--confirm-db", PRODUCTION), 3, "entry == exit: yes"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_read_only_command_writes_nothing(quiet: str, name: str) -> None:
    args, code, proof = COMMANDS[name]
    before = counters(quiet)
    result = oneroof(*args, "--dsn", quiet)
    after = counters(quiet)
    assert result.returncode == code, result.stdout + result.stderr
    assert proof in result.stdout, result.stdout
    assert after == before, {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_a_rollout_blocked_under_the_lock_writes_nothing_but_the_revocation(quiet: str, tmp_path: Path) -> None:
    with connect(quiet, autocommit=True) as conn:
        approval = approve(conn)
    bound = rehearsal.load(bound_evidence(quiet, tmp_path))  # the stand-in is production: its rollout is bound
    before = counters(quiet)

    def revoke(message: str) -> None:
        if message.startswith("taking the release lock"):
            with psycopg.connect(quiet, autocommit=True) as conn:
                conn.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (approval,))

    with pytest.raises(Blocked, match="revoked") as caught:
        release.rollout(
            quiet, PKG, confirm_db=PRODUCTION, trust=signers().trust, audit=False, progress=revoke, rehearsal=bound
        )
    after = counters(quiet)
    # the revocation is the one transaction and the one row written; the rollout adds none
    assert {k: after[k] - before[k] for k in after} == {
        "tup_inserted": 0,
        "tup_updated": 1,
        "tup_deleted": 0,
        "n_tup_ins": 0,
        "n_tup_upd": 1,
        "n_tup_del": 0,
        "next_xid": 1,
    }
    assert caught.value.entry != caught.value.exit  # the revocation changed the approvals' digest
