"""The release against real Directus 11.3.5: a human ratifies through Directus itself with
`oneroof approve` (a signed statement), the gate opens only for that, and rollout and rollback
keep Directus serving.

One scenario on one bootstrapped database, in order: the gate is judged after each approval
attempt, so the steps cannot be separate tests that run in any order.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import evidence as rehearsal
from oneroof.core import package
from oneroof.core.content import TIER2_COLLECTIONS
from oneroof.executor.monitor import Report, monitor
from oneroof.harness import catalog
from oneroof.harness.db import connect
from tests.support.directus import (
    DirectusClient,
    DirectusDatabase,
    DirectusServer,
    Installation,
    create_approval,
    login_as,
    proposal_id,
    set_password,
    start,
)
from tests.support.processes import clean_env, run_executor
from tests.support.testing import bound_evidence, signers

pytestmark = pytest.mark.directus
PKG = package.load()
SIGNERS = signers()
PASSWORD = "oneroof-test-password"
TIER2 = TIER2_COLLECTIONS


# The rehearsal evidence the Directus database stands bound to (it is not a marked clone: its
# rollout needs one; tests/test_rehearsed.py proves that condition with real rehearsals).
BOUND: dict[str, Path] = {}


def watch(database: DirectusDatabase) -> Report:
    """The monitor's report on `database`, which the monitor leaves as it found it."""
    report = monitor(
        database.dsn,
        PKG.path,
        confirm_db=database.name,
        trust=SIGNERS.trust,
        rehearsal=rehearsal.load(BOUND[database.name]),
    )
    assert report.entry == report.exit
    return report


def gate(database: DirectusDatabase) -> tuple[str, list[str]]:
    report = watch(database)
    return report.verdict, report.reasons


def oneroof(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_executor(*args, env=clean_env(**(env or {})))


def signed_by(account: str) -> tuple[str, ...]:
    """`oneroof approve`'s arguments naming `account` and its test key."""
    return ("--email", catalog.account(account).email, "--key", str(SIGNERS.keys[account]))


def readable(client: DirectusClient, collection: str) -> int:
    """The HTTP status of reading one item of `collection`."""
    return client.request("GET", f"/items/{collection}", params={"limit": 1}).status


def test_ratify_through_directus_then_roll_out_and_back(
    directus_install: Installation,
    directus: DirectusServer,
    directus_admin: DirectusClient,
    tmp_path: Path,
    oneroof_main: Any,
) -> None:
    database = directus.database
    BOUND[database.name] = bound_evidence(database.dsn, tmp_path)
    assert gate(database) == ("BLOCKED", ["valid approvals 0 < 1"])
    l4 = login_as(directus, directus_admin, catalog.account("l4"), PASSWORD)
    l3 = login_as(directus, directus_admin, catalog.account("l3"))
    service = directus.client(catalog.account("svc-etl").token)
    proposal = proposal_id(l4)

    # A service account may create the row through Directus, but it never counts, even when it
    # names a human approver: Directus refuses `approver`, and fills it in itself.
    forged = create_approval(
        service, proposal=proposal, level="L4", package_sha256=PKG.sha256, approver=str(catalog.account("l4").id)
    )
    assert forged.status == 403, forged.payload
    as_service = create_approval(service, proposal=proposal, level="L4", package_sha256=PKG.sha256)
    assert as_service.ok, as_service.payload
    verdict, reasons = gate(database)
    assert verdict == "BLOCKED" and "approver is a service account" in reasons[0]

    # An L3 user may not create approvals at all, and would not count.
    assert not create_approval(l3, proposal=proposal, level="L4", package_sha256=PKG.sha256).ok
    assert gate(database)[0] == "BLOCKED"

    # An admin rewrites the service account's approval into the L4 human's name: Directus
    # accepts it (admins may), but its activity shows who created the row and that it changed.
    with connect(database.dsn) as conn:  # the service account may not read what it created
        made = conn.execute(
            "SELECT id FROM os_proposal_approvals WHERE approver = %s", (catalog.account("svc-etl").id,)
        ).fetchone()
    assert made is not None
    directus_admin.patch(f"/items/os_proposal_approvals/{made['id']}", {"approver": str(catalog.account("l4").id)})
    verdict, reasons = gate(database)
    assert verdict == "BLOCKED"
    assert f"Directus shows it was created by user {catalog.account('svc-etl').id}, not by its approver" in reasons[0]

    # An unsigned approval by the L4 human through Directus is only a record: it does not count.
    unsigned = create_approval(l4, proposal=proposal, level="L4", package_sha256=PKG.sha256)
    assert unsigned.ok, unsigned.payload
    verdict, reasons = gate(database)
    assert verdict == "BLOCKED" and f"#{unsigned.data['id']} no signed statement" in reasons[0]

    # The human L4 approver ratifies with `oneroof approve`: signed, recorded as them: the gate opens.
    # The database is not a marked clone: the statement names the rehearsal evidence reviewed.
    trusted = ("--allowed-signers", str(SIGNERS.trust.path), "--rehearsal", str(BOUND[database.name]))
    ratify = ("approve", "--dsn", database.dsn, "--directus", directus.url, *signed_by("l4"), "--yes", *trusted)
    approved = oneroof(*ratify, env={"ONEROOF_DIRECTUS_PASSWORD": PASSWORD})
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "APPROVED: approval #" in approved.stdout and "GOV-COUNCIL" in approved.stdout
    with connect(database.dsn) as conn:
        rows = conn.execute(
            "SELECT a.id, a.approver, c.user_created FROM os_proposal_approvals a "
            "LEFT JOIN directus_comments c ON c.item = a.id::text ORDER BY a.id"
        ).fetchall()
    l4_id = catalog.account("l4").id
    assert [(r["approver"], r["user_created"]) for r in rows] == [(l4_id, None), (l4_id, None), (l4_id, l4_id)]
    assert gate(database) == ("OPEN", [])

    # The L2 approver signs offline (--out) and records the statement later (--submit), as themself.
    # The signing runs in this process (oneroof_main): what it writes is the subject, and the
    # `approve` processes above and below keep the command's exit codes checked.
    set_password(directus_admin, catalog.account("l2").id, PASSWORD)
    handed = Path(database.workdir) / "l2-approval.txt"
    signed = oneroof_main(
        "approve",
        "--dsn",
        database.dsn,
        *signed_by("l2"),
        "--out",
        str(handed),
        "--yes",
        *trusted,
    )
    assert signed.returncode == 0, signed.stderr

    def submit(account: str) -> subprocess.CompletedProcess[str]:
        """Record the handed statement through Directus, logged in as `account`."""
        email = catalog.account(account).email
        args = (
            "approve",
            "--submit",
            str(handed),
            "--directus",
            directus.url,
            "--email",
            email,
            "--yes",
            "--allowed-signers",
            str(SIGNERS.trust.path),
        )
        return oneroof(*args, env={"ONEROOF_DIRECTUS_PASSWORD": PASSWORD})

    as_l4 = submit("l4")
    assert as_l4.returncode == 2 and "log in as yourself" in as_l4.stderr  # nobody records another's statement
    submitted = submit("l2")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    report = watch(database)
    assert report.verdict == "OPEN" and len(report.valid_approvals) == 2

    # Before the rollout, nobody reads the governance records tier 2 registers.
    assert readable(l4, "os_collection_owners") == 403
    rolled = oneroof(
        "rollout",
        "--dsn",
        database.dsn,
        "--confirm-db",
        database.name,
        "--expect-sha256",
        PKG.sha256,
        "--allowed-signers",
        str(SIGNERS.trust.path),
        "--rehearsal",
        str(BOUND[database.name]),
    )
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    directus_admin.call("POST", "/utils/cache/clear", params={"system": "true"})  # schema and permissions
    assert directus.client().health() == {"status": "ok"}
    assert readable(l4, "os_collection_owners") == 200  # the Governance Council holds the One-Roof policy
    assert len(l4.get("/items/os_collection_owners", limit=-1)) == 35
    assert readable(l4, "kh_documents") == 200  # the access facet on a governed collection
    assert readable(l3, "os_collection_owners") == 403  # Data Stewards do not
    served = {c["collection"]: c for c in directus_admin.get("/collections", limit=-1)}
    assert all(served[name]["meta"] is not None for name in TIER2)

    back = oneroof(
        "rollback", "--dsn", database.dsn, "--confirm-db", database.name, "--allowed-signers", str(SIGNERS.trust.path)
    )
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
