"""The gate condition `rehearsed`: a rollout on a database that is not a marked clone is bound to
the evidence of a GO rehearsal of the same package, on a snapshot of this same database, made on
what it still is.

Production is a database on the PostgreSQL 15 service (as in tests/test_snapshot.py); it is
snapshotted into the test server (PostgreSQL 17 or later: the embedded run) and rehearsed there
for real, then rolled out with and without the evidence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import evidence as rehearsal
from oneroof.core import gate, package
from oneroof.executor import report
from oneroof.executor.monitor import monitor
from oneroof.executor.rehearse import Evidence, rehearse
from oneroof.harness import catalog, clones, golden, marks
from oneroof.harness.db import connect, consistent_read
from tests.support.production import Production, drop_database, production_database, skip_below_a_rehearsal_server
from tests.support.testing import PgServer, signers

PKG = package.load()


@pytest.fixture(scope="module", autouse=True)
def rehearsal_server_of_17_or_later(test_server: PgServer) -> None:
    skip_below_a_rehearsal_server(test_server.version)


@pytest.fixture
def production(worker_id: str) -> Iterator[Production]:
    """A Directus production database on the PostgreSQL 15 service, dropped after the test."""
    with production_database(worker_id) as made:
        yield made


def test_the_bound_tables_are_what_the_package_reads_or_writes_but_the_approvals() -> None:
    tables = rehearsal.bound_tables(PKG)
    assert {
        "directus_permissions",
        "directus_policies",
        "directus_access",
        "directus_roles",
        "directus_fields",
        "directus_collections",
        "os_collection_inventory",
        "os_collection_owners",
        "os_collection_axes",
        "os_label_rules",
        "os_lifecycle_policies",
        "os_event_bindings",
        "os_proposals",
    } <= set(tables)
    assert not set(tables) & {"os_proposal_approvals", "directus_comments", "directus_activity"}
    assert list(tables) == sorted(tables)
    # A tier that reads more is bound to more, by the parser; but never to the approvals.
    first = replace(
        PKG.tiers[0],
        deploy=PKG.tiers[0].deploy + "\nSELECT 1 FROM os_owner_units JOIN "
        "os_proposal_approvals ON true JOIN directus_comments ON true WHERE EXISTS (SELECT 1 FROM x);",
    )
    more = rehearsal.bound_tables(replace(PKG, tiers=(first, *PKG.tiers[1:])))
    assert set(more) - set(tables) == {"os_owner_units", "x"}


def judged(path: Path, dsn: str) -> tuple[str, str, str]:
    """The report of the rehearsal at `path` with production's gate read now, with that evidence:
    (production execution verdict, status and text of the production activation row).
    """
    evidence = Evidence.from_json(json.loads(path.read_text()))
    read = monitor(dsn, PKG.path, trust=signers().trust, rehearsal=rehearsal.load(path))
    evidence.production = {**(evidence.production or {}), **read.as_json()}
    row = next(r for r in report.matrix(evidence) if r.component.startswith("Production activation"))
    return report.verdict(evidence)["production_execution"], row.status, row.evidence


def test_a_rollout_on_production_is_bound_to_its_rehearsal(
    production: Production, test_server: PgServer, unique: Any, oneroof: Any, oneroof_main: Any, tmp_path: Path
) -> None:
    name = unique("bound")
    run = tmp_path / "run"
    try:
        evidence = rehearse(test_server.admin, run_dir=run, golden_name=name, snapshot_from=production.dsn)
    finally:
        drop_database(test_server.admin, name)
    assert evidence.ok, [(s.name, s.detail) for s in evidence.steps if not s.ok]
    path = run / "evidence.json"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(evidence.bound["tables"]) == list(rehearsal.bound_tables(PKG))
    # Production's gate, read at the end of the rehearsal with this very evidence: bound, so only
    # the human's approval is missing.
    assert evidence.production is not None and list(evidence.production["blocked_by"]) == ["approvals"]
    assert report.verdict(evidence)["production_execution"] == "NO-GO until os_proposal_approvals ≥ 1"

    dsn, db = production.dsn, production.name
    with connect(dsn, autocommit=True) as conn:  # the human ratifies production, after the rehearsal
        signers().approve(conn, "l4")

    assert judged(path, dsn) == (
        "GO: a human has ratified; run the gated executor with this evidence (--rehearsal)",
        "GO — press the button",
        f"oneroof rollout --confirm-db {db} --rehearsal evidence.json",
    )
    without = oneroof("rollout", "--dsn", dsn, "--confirm-db", db)
    assert without.returncode == 3, without.stdout + without.stderr
    assert "BLOCKED: no rehearsal evidence" in without.stdout and "entry == exit: yes" in without.stdout
    # monitor and `approvals verify` read and print; what they say is the subject, not their
    # process: run in this one. The rollouts and the gate sessions stay processes.
    shown = json.loads(oneroof_main("monitor", "--dsn", dsn, "--confirm-db", db, "--json").stdout)
    assert list(shown["blocked_by"]) == ["rehearsed"] and shown["rehearsal"] is None
    shown = oneroof_main("monitor", "--dsn", dsn, "--confirm-db", db, "--rehearsal", str(path))
    assert shown.returncode == 0 and shown.stdout.startswith("OPEN"), shown.stdout
    assert f"rehearsal      sha256 {sha}" in shown.stdout
    gate_stage = oneroof("verify", "--stage", "gate", "--dsn", dsn, "--expect-db", db, "--rehearsal", str(path))
    assert gate_stage.returncode == 0, gate_stage.stdout[-3000:]
    gate_stage = oneroof("verify", "--stage", "gate", "--dsn", dsn, "--expect-db", db)
    assert gate_stage.returncode == 1 and "test_gate_condition_holds[rehearsed]" in gate_stage.stdout

    # A Directus admin edits a permission and the inventory after the rehearsal.
    with connect(dsn, autocommit=True) as conn:
        permission = conn.execute("SELECT id, fields FROM directus_permissions ORDER BY id LIMIT 1").fetchone()
        listed = conn.execute("SELECT collection, domain FROM os_collection_inventory ORDER BY 1 LIMIT 1").fetchone()
        assert permission is not None and listed is not None
        conn.execute("UPDATE directus_permissions SET fields = 'id,title' WHERE id = %s", (permission["id"],))
        conn.execute(
            "UPDATE os_collection_inventory SET domain = 'moved' WHERE collection = %s", (listed["collection"],)
        )
    verdict, status, _ = judged(path, dsn)
    assert status == "NO-GO" and verdict.startswith(
        "NO-GO: a human has ratified, but this rehearsal does not bind the rollout: production changed since the "
        "rehearsal: directus_permissions, os_collection_inventory"
    )
    changed = oneroof("rollout", "--dsn", dsn, "--confirm-db", db, "--rehearsal", str(path))
    assert changed.returncode == 3, changed.stdout + changed.stderr
    assert (
        "BLOCKED: production changed since the rehearsal: directus_permissions, os_collection_inventory "
        f"(snapshot of {evidence.golden_provenance['taken_at']}); snapshot and rehearse again"
    ) in changed.stdout
    assert "entry == exit: yes" in changed.stdout

    # Put back exactly as it was, and a second human approves: approvals are no change to production.
    with connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE directus_permissions SET fields = %s WHERE id = %s", (permission["fields"], permission["id"])
        )
        conn.execute(
            "UPDATE os_collection_inventory SET domain = %s WHERE collection = %s",
            (listed["domain"], listed["collection"]),
        )
        signers().approve(conn, "l2")
    applied = oneroof("rollout", "--dsn", dsn, "--confirm-db", db, "--rehearsal", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stdout.startswith(f"APPLIED: {db}")
    with connect(dsn) as conn:
        rows = conn.execute("SELECT rehearsal_sha256 FROM os_release_ledger WHERE action = 'deploy'").fetchall()
    assert [r["rehearsal_sha256"] for r in rows] == [sha] * 5
    audit = oneroof_main("approvals", "verify", "--dsn", dsn)
    assert audit.returncode == 0 and f"bound to rehearsal evidence sha256 {sha}" in audit.stdout, audit.stdout


def test_a_capture_keeps_its_own_name_beside_the_synthetic_golden(
    production: Production, test_server: PgServer, oneroof: Any, tmp_path: Path
) -> None:
    """`rehearse --from PROD` captures production under a name of its own (capture_<database>), and
    binds production; a plain `rehearse` afterwards still rehearses the synthetic golden, and the
    capture is still there. Each says which golden it uses.
    """
    if not test_server.embedded:
        pytest.skip("uses the default golden name, which a shared test server's own rehearsals use")
    captured, admin = f"capture_{production.name}", test_server.admin
    try:
        first = oneroof("rehearse", "--from", production.dsn, "--dsn", admin, "--runs-dir", str(tmp_path / "a"))
        plain = oneroof("rehearse", "--dsn", admin, "--runs-dir", str(tmp_path / "b"))
        with connect(admin) as conn:
            kept = marks.is_golden(conn, captured) and golden.provenance(admin, captured)
    finally:
        for name in (captured, catalog.GOLDEN_NAME):
            drop_database(admin, name)
    assert first.returncode == 0 and plain.returncode == 0, first.stderr[-2000:] + plain.stderr[-2000:]
    on_capture, on_synthetic = (
        Evidence.from_json(json.loads(next((tmp_path / run).glob("*/evidence.json")).read_text())) for run in "ab"
    )
    assert (on_synthetic.golden, on_synthetic.golden_provenance["kind"]) == (catalog.GOLDEN_NAME, "synthetic")
    assert (on_capture.golden, on_capture.golden_provenance["kind"]) == (captured, "production snapshot")
    assert on_capture.production is not None and list(on_capture.production["blocked_by"]) == ["approvals"]
    assert kept and (kept.kind, kept.database) == ("production snapshot", production.name)
    assert f"golden {captured}: a capture of production `{production.name}`, taken now (--from)" in first.stderr
    assert f"golden {catalog.GOLDEN_NAME}: synthetic golden" in plain.stderr
    assert f"Golden {catalog.GOLDEN_NAME}: synthetic golden" in plain.stdout


def _evidence(database: str, cluster: str | None, **changes: Any) -> rehearsal.Rehearsal:
    """A rehearsal that would bind `database` on `cluster` but for `changes` (as a forger or a
    careless operator would hand one in).
    """
    data: dict[str, Any] = {
        "package": {"sha256": PKG.sha256},
        "started_at": "2026-11-26T00:00:00+00:00",
        "steps": [{"name": step, "ok": True} for step in rehearsal.REQUIRED_STEPS],
        "golden_provenance": {
            "kind": "production snapshot",
            "database": database,
            "system_identifier": cluster,
            "taken_at": "2026-11-26T00:00:00+00:00",
        },
        "bound": {"tables": {}},
    }
    for key, value in changes.items():
        data[key] = value
    return rehearsal.from_evidence(data, "/runs/evidence.json", "0" * 64)


def test_each_evidence_that_does_not_bind_says_why(production: Production, test_server: PgServer) -> None:
    with connect(production.dsn) as conn, consistent_read(conn):
        cluster = gate.system_identifier(conn)
        db = production.name
        assert cluster is not None

        def why(evidence: rehearsal.Rehearsal | None) -> str:
            verdict = gate.evaluate(conn, PKG, confirm_db=db, rehearsal=evidence)
            return verdict.reasons.get("rehearsed", "")

        steps = [{"name": step, "ok": step != rehearsal.StepName.ROLLOUT} for step in rehearsal.REQUIRED_STEPS]
        cases = {
            "no rehearsal evidence: ": None,
            # the file's own `ok` is not read: GO is recomputed from the steps
            "is not GO (step rollout failed)": _evidence(db, cluster, steps=steps, ok=True),
            "is not GO (it has no step greenfield)": _evidence(
                db,
                cluster,
                steps=[{"name": n, "ok": True} for n in rehearsal.REQUIRED_STEPS if n != rehearsal.StepName.GREENFIELD],
            ),
            "is not GO (it was interrupted)": _evidence(db, cluster, interrupted=True),
            f"was of package {'1' * 12}, not this package {PKG.sha256[:12]}": _evidence(
                db, cluster, package={"sha256": "1" * 64}
            ),
            f"ran on a synthetic golden database, not on a snapshot of {db!r}": _evidence(
                db, cluster, golden_provenance={"kind": "synthetic"}
            ),
            f"ran on a snapshot of 'directus', not of {db!r}": _evidence("directus", cluster),
            f"on cluster 7, not on this cluster {cluster}": _evidence(db, "7"),
            "production changed since the rehearsal: directus_access, directus_collections": _evidence(db, cluster),
        }
        for expected, evidence in cases.items():
            assert expected in why(evidence), (expected, why(evidence))
        bound = rehearsal.digests(conn, rehearsal.bound_tables(PKG))
        exact = _evidence(db, cluster, bound={"tables": bound})
        assert why(exact) == ""
        assert gate.evaluate(conn, PKG, confirm_db=db, rehearsal=exact).rehearsal_sha256 == "0" * 64
        off_by_one = dict(bound, os_proposals=bound["os_proposals"].replace(":", ":0", 1))
        assert why(replace(exact, tables=off_by_one)).startswith(
            "production changed since the rehearsal: os_proposals (snapshot of 2026-11-26T00:00:00+00:00)"
        )

    # A marked clone needs no rehearsal: it is where rehearsals happen.
    made = clones.create(test_server.admin, source=test_server.golden, wait=60)
    try:
        with connect(made.dsn) as conn, consistent_read(conn):
            plain = gate.evaluate(conn, PKG, confirm_db=made.name)
            given = gate.evaluate(conn, PKG, confirm_db=made.name, rehearsal=_evidence(db, cluster))
        assert "rehearsed" not in plain.reasons and "rehearsed" not in given.reasons
        note = "rehearsed: not required on a marked clone (the rehearsal evidence was not compared)"
        assert note not in plain.notes and note in given.notes and given.rehearsal_sha256 is None
    finally:
        clones.drop(test_server.admin, made.name)


def test_the_digest_does_not_depend_on_the_session(production: Production) -> None:
    """Production and its copy may run with other time zones and output styles: the digest pins them."""
    tables = rehearsal.bound_tables(PKG) + ("os_release_ledger", "directus_users")
    with connect(production.dsn) as conn, consistent_read(conn):
        plain = rehearsal.digests(conn, tables)
    odd = "-c TimeZone=Pacific/Chatham -c DateStyle=SQL,DMY -c IntervalStyle=iso_8601 -c extra_float_digits=-3"
    with connect(production.dsn + f" options='{odd}'") as conn, consistent_read(conn):
        assert rehearsal.digests(conn, tables) == plain
        assert conn.execute("SELECT current_setting('TimeZone') AS tz").fetchone() == {"tz": "Pacific/Chatham"}
    with connect(production.dsn, autocommit=True) as conn:  # a secret column is not digested, a login is
        conn.execute("UPDATE directus_users SET password = 'other', token = NULL")
        with consistent_read(conn):
            assert rehearsal.digests(conn, tables) == plain
        conn.execute("UPDATE directus_users SET email = upper(email) WHERE id = %s", (catalog.account("l4").id,))
        with consistent_read(conn):
            assert [t for t in tables if rehearsal.digests(conn, tables)[t] != plain[t]] == ["directus_users"]


@pytest.mark.parametrize("command", ["rollout", "monitor", "verify"])
def test_bad_rehearsal_evidence_is_one_line_exit_2(command: str, oneroof: Any, tmp_path: Path) -> None:
    extra = {"rollout": ["--confirm-db", "x"], "monitor": [], "verify": ["--stage", "gate"]}[command]
    dsn = "host=127.0.0.1 port=1 dbname=unreachable"  # never reached: the evidence is checked first
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    for given, says in ((tmp_path / "missing.json", "No such file"), (tmp_path / "other.json", "not the evidence")):
        result = oneroof(command, *extra, "--dsn", dsn, "--rehearsal", str(given))
        assert result.returncode == 2, (given, result.stdout, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
