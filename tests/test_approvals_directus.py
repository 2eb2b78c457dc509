"""How `oneroof approve` records an approval through real Directus 11.3.5 (executor/approvals.py
`whoami` and `record`), and each way Directus can refuse it or answer short: a login that names no
user (a share's), a login as someone else, no proposal of that package, an approval it does not
show back, a comment it refuses. Each check was a mutant of executor/approvals.py that no test
killed (bench/mutation.py, docs/results/mutation.md).

`record` is called as `oneroof approve` calls it, with the session `directus.login` returns; the
statement text is stored as it is (the gate judges it later, tests/test_directus_release.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from oneroof.core import package, signatures
from oneroof.executor import approvals
from oneroof.executor import directus as rest
from oneroof.harness import catalog
from oneroof.harness.db import connect
from tests.support.directus import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    DirectusClient,
    DirectusServer,
    proposal_id,
    set_password,
)
from tests.support.testing import signers

pytestmark = pytest.mark.directus
PKG = package.load()
SIGNERS = signers()
PASSWORD = "oneroof-test-password"
L2, L4 = catalog.account("l2"), catalog.account("l4")


def session(directus: DirectusServer, admin: DirectusClient, account: catalog.Account) -> rest.Session:
    """The session `oneroof approve` gets when `account` logs in with a password."""
    set_password(admin, account.id, PASSWORD)
    return rest.login(directus.url, account.email, PASSWORD)


def statement(
    account: catalog.Account = L4, package_sha256: str = PKG.sha256, proposal: str = PKG.proposal
) -> signatures.Statement:
    return signatures.Statement.new(
        package_sha256=package_sha256,
        proposal=proposal,
        approver_id=str(account.id),
        approver_email=account.email,
        level=str(account.level),
        database="oneroof_target",
        database_oid="16384",
        system_identifier="7000000000000000001",
        valid_for=dt.timedelta(hours=1),
    )


def signed(s: signatures.Statement, account: str = "l4") -> str:
    return signatures.bundle(s, signatures.sign(s.message(), SIGNERS.keys[account]))


def rows(directus: DirectusServer) -> list[dict[str, Any]]:
    """Every approval and the comments on it, as the database holds them."""
    with connect(directus.database.dsn) as conn:
        return conn.execute(
            "SELECT a.id, a.proposal_id, a.approver::text AS approver, a.level, a.package_sha256, "
            "c.comment, c.user_created::text AS commenter FROM os_proposal_approvals AS a "
            "LEFT JOIN directus_comments AS c ON c.collection = 'os_proposal_approvals' AND c.item = a.id::text "
            "ORDER BY a.id, c.id"
        ).fetchall()


@pytest.fixture(scope="module")
def l4(directus: DirectusServer, directus_admin: DirectusClient) -> rest.Session:
    """The L4 approver's session, logged in once for the module: a session is no more than its
    access token, which no test here revokes, and each login costs Directus an argon2 check.
    """
    return session(directus, directus_admin, L4)


@pytest.fixture
def proposal(directus_admin: DirectusClient) -> int:
    return proposal_id(directus_admin)


def test_whoami_is_the_login_s_id_and_the_email_directus_shows(
    directus: DirectusServer, directus_admin: DirectusClient, l4: rest.Session
) -> None:
    assert approvals.whoami(l4) == (str(L4.id), L4.email)  # an app user reads their own user
    assert approvals.whoami(rest.login(directus.url, ADMIN_EMAIL, ADMIN_PASSWORD))[1] == ADMIN_EMAIL


def test_a_login_that_names_no_user_records_nothing(
    directus: DirectusServer, directus_admin: DirectusClient, proposal: int
) -> None:
    """A share's login (POST /shares/auth) is a Directus session of no user: /users/me has no id."""
    share = directus_admin.post(
        "/shares", {"name": "oneroof test", "collection": "os_proposals", "item": str(proposal)}
    )
    token = directus.client().post("/shares/auth", {"share": share["id"]})["access_token"]
    anonymous = rest.Session(directus.url, str(token))
    before = rows(directus)
    for attempt in (
        lambda: approvals.whoami(anonymous),
        lambda: approvals.record(anonymous, approvals.Plan(statement(), proposal, (), {}), signed(statement())),
    ):
        with pytest.raises(rest.DirectusRefused) as refused:
            attempt()
        assert refused.value.message == "Directus did not say who is logged in (GET /users/me)"
    assert rows(directus) == before


def test_a_login_as_someone_else_records_nothing(
    directus: DirectusServer, directus_admin: DirectusClient, proposal: int
) -> None:
    l2 = session(directus, directus_admin, L2)
    before = rows(directus)
    with pytest.raises(rest.DirectusRefused) as refused:
        approvals.record(l2, approvals.Plan(statement(), proposal, (), {}), signed(statement()))
    assert refused.value.message == (
        f"the Directus login is user {L2.id}, not the approver {L4.email} ({L4.id}): log in as yourself"
    )
    assert rows(directus) == before


def test_the_approval_is_recorded_as_the_approver_with_the_statement_as_its_comment(
    directus: DirectusServer, l4: rest.Session, proposal: int
) -> None:
    text = signed(statement())
    approval = approvals.record(l4, approvals.Plan(statement(), proposal, (), {}), text)
    (row,) = [r for r in rows(directus) if r["id"] == approval]
    assert row == {
        "id": approval,
        "proposal_id": proposal,
        "approver": str(L4.id),
        "level": "L4",
        "package_sha256": PKG.sha256,
        "comment": text,
        "commenter": str(L4.id),
    }


def test_a_handed_over_statement_finds_its_proposal_as_the_approver_sees_it(
    directus: DirectusServer, l4: rest.Session, proposal: int
) -> None:
    text = signed(statement())
    approval = approvals.record(l4, approvals.handed_over(text, SIGNERS.trust), text)
    (row,) = [r for r in rows(directus) if r["id"] == approval]
    assert (row["proposal_id"], row["approver"], row["comment"]) == (proposal, str(L4.id), text)


@pytest.mark.parametrize(
    ("proposal_code", "sha", "named"),
    [
        (PKG.proposal, "ab" * 32, "abababababab"),  # the proposal is there, for another package
        ("GOV-NO-SUCH-PROPOSAL", PKG.sha256, PKG.sha256[:12]),  # Directus shows no such proposal
    ],
    ids=["another package", "no such proposal"],
)
def test_a_handed_over_statement_of_another_release_records_nothing(
    directus: DirectusServer, l4: rest.Session, proposal_code: str, sha: str, named: str
) -> None:
    s = statement(package_sha256=sha, proposal=proposal_code)
    text = signed(s)
    before = rows(directus)
    with pytest.raises(rest.DirectusRefused) as refused:
        approvals.record(l4, approvals.handed_over(text, SIGNERS.trust), text)
    assert refused.value.message == (
        f"Directus shows no proposal {proposal_code} naming package {named}: the statement is for another release"
    )
    assert rows(directus) == before


@pytest.fixture
def unreadable_approvals(directus_admin: DirectusClient) -> Iterator[None]:
    """The approvers' policy without its read permission on approvals: Directus creates the row
    but answers 204 without it. The permission is put back afterwards.
    """
    (permission,) = directus_admin.get(
        "/permissions",
        **{
            "filter[collection][_eq]": "os_proposal_approvals",
            "filter[action][_eq]": "read",
            "filter[policy][name][_eq]": "Governance Approvers",
        },
    )
    directus_admin.call("DELETE", f"/permissions/{permission['id']}")
    try:
        yield
    finally:
        kept = {k: permission[k] for k in ("collection", "action", "permissions", "validation", "fields", "policy")}
        directus_admin.post("/permissions", kept)


def test_an_approval_directus_does_not_show_back_is_reported(
    directus: DirectusServer, l4: rest.Session, proposal: int, unreadable_approvals: None
) -> None:
    before = {r["id"] for r in rows(directus)}
    with pytest.raises(rest.DirectusRefused) as refused:
        approvals.record(l4, approvals.Plan(statement(), proposal, (), {}), signed(statement()))
    assert refused.value.message == "Directus created the approval but did not return its id"
    # it was created, without its statement: an approval the gate does not count
    assert [r["comment"] for r in rows(directus) if r["id"] not in before] == [None]


@pytest.fixture
def comments_refused(directus: DirectusServer) -> Iterator[None]:
    """The database refuses every new comment (a constraint no new row meets), so Directus answers
    POST /comments with an error; dropped afterwards.
    """
    with connect(directus.database.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE directus_comments ADD CONSTRAINT oneroof_test_none CHECK (false) NOT VALID")
        try:
            yield
        finally:
            conn.execute("ALTER TABLE directus_comments DROP CONSTRAINT oneroof_test_none")


def test_a_refused_comment_leaves_an_approval_that_says_it_does_not_count(
    directus: DirectusServer, l4: rest.Session, proposal: int, comments_refused: None
) -> None:
    before = {r["id"] for r in rows(directus)}
    with pytest.raises(rest.DirectusRefused) as refused:
        approvals.record(l4, approvals.Plan(statement(), proposal, (), {}), signed(statement()))
    ((approval, comment),) = [(r["id"], r["comment"]) for r in rows(directus) if r["id"] not in before]
    assert comment is None
    message = refused.value.message
    assert message.startswith(f"approval #{approval} was created, but its signed statement was not stored (Directus ")
    assert message.endswith("); it does not count: revoke it and run `oneroof approve` again"), message
