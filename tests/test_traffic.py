"""oneroof on a production that moves: every command runs while the application writes through
the real Directus 11.3.5 REST API (tests/support/traffic.py: item creates and updates in the
governed collections, system_issues inserts, logins, 20 writes per second).

Production is a governed Directus database on the PostgreSQL 15 service (tests/support/production.py),
served by one Directus for the module. For each command: it succeeds, no application write fails,
and none is lost (the writes made equal the rows found). After the rollout the finalized
invariants hold.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from oneroof.harness import catalog
from oneroof.harness.db import connect
from tests.support import traffic
from tests.support.directus import DirectusServer, Installation, database_of, set_password_cli
from tests.support.production import Production, drop_database, production_database, skip_below_a_rehearsal_server
from tests.support.testing import CliResult, PgServer, signers

pytestmark = pytest.mark.directus
RATE = 20.0  # application writes per second
WARM = 60.0  # seconds Directus may take to answer the first write
ADMIN = catalog.account("admin")


@dataclass(frozen=True)
class Live:
    """A production on the PostgreSQL 15 service, served by Directus, ready for traffic."""

    production: Production
    server: DirectusServer
    accounts: traffic.Accounts


@pytest.fixture(scope="module")
def live(directus_install: Installation, worker_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with production_database(worker_id) as production:
        workdir = tmp_path_factory.mktemp("traffic")
        database = database_of(directus_install, production.dsn, workdir)
        password = "oneroof-" + secrets.token_hex(8)
        set_password_cli(directus_install, database, ADMIN.email, password)  # the golden keeps no password
        server = traffic.serve(directus_install, database, log=workdir / "server.log")
        try:
            yield Live(production, server, traffic.prepare(server.login(ADMIN.email, password)))
        finally:
            server.stop()


@dataclass(frozen=True)
class Run:
    """A oneroof command run under traffic: its result, the traffic, and the writes sent meanwhile."""

    result: CliResult
    traffic: traffic.Traffic
    during: list[traffic.Write]

    def __repr__(self) -> str:
        return f"Run(exit {self.result.returncode}, {len(self.during)} writes during it; {self.traffic.summary()})"

    def check(self, expected: int = 0) -> None:
        """The command exits `expected`; the application wrote throughout, no write failed, none was lost."""
        assert self.during, f"no application write was sent while the command ran; {self.traffic.summary()}"
        failed = self.traffic.failures()
        assert not failed, [(w.kind, w.status, w.error) for w in failed[:5]]
        made, found = self.traffic.made(), self.traffic.found()
        assert found == made, f"writes made {dict(made)}, rows found {dict(found)}"
        assert self.result.returncode == expected, self.result.stdout[-4000:] + self.result.stderr[-3000:]


def under_traffic(live: Live, oneroof: Any, *args: str) -> Run:
    """Run `oneroof *args` while the application writes at RATE per second; the traffic starts
    (its first write answered) before the command and stops, every answer in, after it.
    """
    with traffic.running(live.accounts, live.production.dsn, rate=RATE) as running:
        deadline = time.monotonic() + WARM
        while not running.writes and time.monotonic() < deadline:
            time.sleep(0.05)
        started = running.now()
        result = oneroof(*args, timeout=900)
        during = running.between(started, running.now())
    return Run(result, running, during)


def test_the_verifications_pass_under_traffic(live: Live, oneroof: Any) -> None:
    dsn, db = live.production.dsn, live.production.name
    for stage in ("baseline", "greenfield"):
        under_traffic(live, oneroof, "verify", "--stage", stage, "--dsn", dsn, "--expect-db", db).check()


@pytest.fixture(scope="module")
def rehearsal_server(test_server: PgServer) -> PgServer:
    """The test server, when a snapshot of production can be restored into it (else skip, before
    Directus is started for nothing).
    """
    skip_below_a_rehearsal_server(test_server.version)
    return test_server


def test_snapshot_rehearse_roll_out_and_back_under_traffic(
    rehearsal_server: PgServer, live: Live, oneroof: Any, unique: Any, tmp_path: Path
) -> None:
    test_server = rehearsal_server
    dsn, db, admin = live.production.dsn, live.production.name, test_server.admin
    snapshot, golden_name = unique("traffic_snapshot"), unique("traffic_capture")
    try:
        taken = under_traffic(live, oneroof, "golden", "snapshot", "--from", dsn, "--name", snapshot, "--dsn", admin)
        taken.check()
        rehearsed = under_traffic(
            live,
            oneroof,
            *("rehearse", "--from", dsn, "--dsn", admin, "--golden", golden_name, "--runs-dir", str(tmp_path)),
        )
        rehearsed.check()
    finally:
        for name in (snapshot, golden_name):
            drop_database(admin, name)
    evidence = str(next(tmp_path.glob("*/evidence.json")))
    with connect(dsn, autocommit=True) as conn:  # the human ratifies production, after the rehearsal
        signers().approve(conn, "l4")

    monitored = under_traffic(live, oneroof, "monitor", "--dsn", dsn, "--confirm-db", db, "--rehearsal", evidence)
    monitored.check()
    assert monitored.result.stdout.startswith("OPEN"), monitored.result.stdout
    gate = "verify", "--stage", "gate", "--dsn", dsn, "--expect-db", db, "--rehearsal", evidence
    under_traffic(live, oneroof, *gate).check()

    rolled = under_traffic(live, oneroof, "rollout", "--dsn", dsn, "--confirm-db", db, "--rehearsal", evidence)
    rolled.check()
    assert rolled.result.stdout.startswith(f"APPLIED: {db}"), rolled.result.stdout
    # The governance invariants hold after the rollout, with the application still writing.
    under_traffic(live, oneroof, "verify", "--stage", "finalized", "--dsn", dsn, "--expect-db", db).check()

    back = under_traffic(live, oneroof, "rollback", "--dsn", dsn, "--confirm-db", db)
    back.check()
    under_traffic(live, oneroof, "verify", "--stage", "greenfield", "--dsn", dsn, "--expect-db", db).check()


def test_the_traffic_writes_at_its_rate_and_sees_a_lost_or_failed_write(live: Live) -> None:
    """The generator's own check: every kind of write is made at about the stated rate, each is
    found again, and a write lost afterwards, or refused by Directus, shows.
    """
    with traffic.running(live.accounts, live.production.dsn, rate=RATE) as running:
        while len(running.writes) < 2 * len(traffic.DEFAULT_MIX) and running.now() < 120:
            time.sleep(0.05)
        elapsed = running.now()
    made = running.made()
    assert set(made) == set(traffic.KINDS) and not running.failures(), running.summary()
    assert running.found() == made
    assert len(running.writes) <= RATE * elapsed + RATE, running.summary()  # never faster than stated
    first = sql.Identifier(live.accounts.collections[0])  # where the first create went
    with connect(live.production.dsn, autocommit=True) as conn:  # one created item disappears
        row = conn.execute(
            sql.SQL("DELETE FROM {} WHERE name = %s RETURNING id").format(first), (f"traffic {running.tag} c0",)
        ).fetchone()
    assert row is not None
    assert running.found()["create"] == made["create"] - 1

    forged = traffic.Accounts(**{**live.accounts.__dict__, "editor_token": "not-a-token"})
    with traffic.running(forged, live.production.dsn, rate=RATE) as refused:
        while not any(w.kind == "update" for w in refused.writes) and refused.now() < 120:
            time.sleep(0.05)
    assert {w.kind for w in refused.failures()} == {"update"}
    assert all(w.status == 401 for w in refused.failures())
