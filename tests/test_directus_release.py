"""The release against real Directus 11.3.5: a human ratifies through Directus itself, the gate
opens only for that, and rollout and rollback keep Directus serving.

One scenario on one bootstrapped database, in order: the gate is judged after each approval
attempt, so the steps cannot be separate tests that run in any order.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from executor import package
from harness.db import connect
from executor.monitor import monitor
from harness import catalog
from fixtures.directus import (
    DirectusClient,
    DirectusDatabase,
    DirectusServer,
    Installation,
    create_approval,
    login_as,
    proposal_id,
    start,
)
from fixtures.plugin import ROOT

pytestmark = pytest.mark.directus
PKG = package.load()
TIER2 = ("os_collection_owners", "os_collection_axes", "os_label_rules", "os_lifecycle_policies",
         "os_event_bindings", "os_gov_events", "os_idle_flags", "os_release_ledger")


def gate(database: DirectusDatabase) -> tuple[str, list[str]]:
    report = monitor(database.dsn, PKG.path, confirm_db=database.name)
    assert report.entry == report.exit
    return report.verdict, report.reasons


def oneroof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=False)


def readable(client: DirectusClient, collection: str) -> int:
    """The HTTP status of reading one item of `collection`."""
    return client.request("GET", f"/items/{collection}", params={"limit": 1}).status


def test_ratify_through_directus_then_roll_out_and_back(directus_install: Installation, directus: DirectusServer,
                                                        directus_admin: DirectusClient) -> None:
    database = directus.database
    assert gate(database) == ("BLOCKED", ["valid approvals 0 < 1"])
    l4 = login_as(directus, directus_admin, catalog.account("l4"))
    l3 = login_as(directus, directus_admin, catalog.account("l3"))
    service = directus.client(catalog.account("svc-etl").token)
    proposal = proposal_id(l4)

    # A service account may create the row through Directus, but it never counts, even when it
    # names a human approver: Directus refuses `approver`, and fills it in itself.
    forged = create_approval(service, proposal=proposal, level="L4", package_sha256=PKG.sha256,
                             approver=str(catalog.account("l4").id))
    assert forged.status == 403, forged.payload
    as_service = create_approval(service, proposal=proposal, level="L4", package_sha256=PKG.sha256)
    assert as_service.ok, as_service.payload
    verdict, reasons = gate(database)
    assert verdict == "BLOCKED" and "approver is a service account" in reasons[0]

    # An L3 user may not create approvals at all, and would not count.
    assert not create_approval(l3, proposal=proposal, level="L4", package_sha256=PKG.sha256).ok
    assert gate(database)[0] == "BLOCKED"

    # The human L4 approver ratifies: the gate opens.
    ratified = create_approval(l4, proposal=proposal, level="L4", package_sha256=PKG.sha256,
                               comment="ratified after review of the ownership seed")
    assert ratified.ok, ratified.payload
    with connect(database.dsn) as conn:
        rows = conn.execute("SELECT approver, level FROM os_proposal_approvals ORDER BY id").fetchall()
    assert [r["approver"] for r in rows] == [catalog.account("svc-etl").id, catalog.account("l4").id]
    assert gate(database) == ("OPEN", [])

    # Before the rollout, nobody reads the governance records tier 2 registers.
    assert readable(l4, "os_collection_owners") == 403
    rolled = oneroof("rollout", "--dsn", database.dsn, "--confirm-db", database.name, "--expect-sha256", PKG.sha256)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    directus_admin.call("POST", "/utils/cache/clear", params={"system": "true"})  # schema and permissions
    assert directus.client().health() == {"status": "ok"}
    assert readable(l4, "os_collection_owners") == 200  # the Governance Council holds the One-Roof policy
    assert len(l4.get("/items/os_collection_owners", limit=-1)) == 35
    assert readable(l4, "kh_documents") == 200  # the access facet on a governed collection
    assert readable(l3, "os_collection_owners") == 403  # Data Stewards do not
    served = {c["collection"]: c for c in directus_admin.get("/collections", limit=-1)}
    assert all(served[name]["meta"] is not None for name in TIER2)

    back = oneroof("rollback", "--dsn", database.dsn, "--confirm-db", database.name)
    assert back.returncode == 0, back.stdout + back.stderr
    directus.stop()
    restarted = start(directus_install, database, log=Path(database.workdir) / "restart.log")
    try:
        assert restarted.client().health() == {"status": "ok"}
        admin = restarted.admin()
        served = {c["collection"]: c for c in admin.get("/collections", limit=-1)}
        assert [name for name in TIER2 if served.get(name, {}).get("meta") is not None] == []
        l4 = login_as(restarted, admin, catalog.account("l4"))
        assert readable(l4, "os_collection_owners") == 403
    finally:
        restarted.stop()
