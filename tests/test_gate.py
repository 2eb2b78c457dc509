"""The gate: which approvals count, judged by a table of cases and by random approval sets
against the policy written independently here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from oneroof.core import dispatch, gate, metrics, package, signatures
from oneroof.core import evidence as rehearsal
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect, consistent_read
from tests.support.gate_states import STATES, deploy_tiers, state_after
from tests.support.testing import PgServer, bound_evidence, signers

PKG = package.load()
SIGNERS = signers()
OTHER_SHA = "f" * 64
APPROVERS = [a.key for a in catalog.ACCOUNTS if a.level] + ["editor"]  # editor: not in os_approvers
# The rehearsal evidence each database stands bound to (the production stand-in's; tests/test_rehearsed.py
# proves the condition itself with real rehearsals).
BOUND: dict[str, rehearsal.Rehearsal] = {}


@dataclass(frozen=True)
class Row:
    """One approval as a test writes it."""

    approver: str = "l4"
    level: str | None = None  # default: the approver's own level
    proposal: str = "active"  # active / withdrawn
    sha: str = "this"  # this / other
    revoked: bool = False
    rehearsal: bool = False


def expected_valid(row: Row, on_clone: bool) -> bool:
    """The policy of docs/design.md#s5, written independently of core/gate.py."""
    account = catalog.account(row.approver)
    return (
        row.proposal == "active"
        and row.sha == "this"
        and not row.revoked
        and account.status == "active"
        and account.kind == "human"
        and account.level in ("L2", "L4")
        and (row.level or account.level) == account.level
        and (on_clone or not row.rehearsal)
    )


def insert(conn: psycopg.Connection[Any], rows: list[Row]) -> None:
    """Insert each row with a statement its approver signed for exactly what the row says."""
    for row in rows:
        account = catalog.account(row.approver)
        level = row.level or account.level or "L1"
        sha = PKG.sha256 if row.sha == "this" else OTHER_SHA
        code = catalog.PROPOSAL_CODE if row.proposal == "active" else "OR-WITHDRAWN"
        found = conn.execute(
            "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256, revoked_at, rehearsal) "
            "SELECT p.id, %s, %s, %s, CASE WHEN %s THEN now() END, %s FROM os_proposals p WHERE p.code = %s "
            "RETURNING id",
            (account.id, level, sha, row.revoked, row.rehearsal, code),
        ).fetchone()
        assert found is not None
        SIGNERS.attach(
            conn,
            found["id"],
            SIGNERS.statement(conn, row.approver, level=level, package_sha256=sha, proposal=code),
            row.approver,
        )


def judge(conn: psycopg.Connection[Any], rows: list[Row]) -> gate.Verdict:
    """Insert `rows`, evaluate the gate, and roll everything back."""
    try:
        insert(conn, rows)
        return gate.evaluate(
            conn, PKG, confirm_db=conn.info.dbname, trust=SIGNERS.trust, rehearsal=BOUND.get(conn.info.dbname)
        )
    finally:
        conn.rollback()


@pytest.fixture(scope="module")
def databases(test_server: PgServer, unique: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A marked clone, and an unmarked copy standing in for production, each with a withdrawn proposal."""
    names = {"clone": unique("gate_clone"), "production": unique("gate_prod")}
    for role, name in names.items():
        clones.create(test_server.admin, source=test_server.golden, name=name, wait=60)
        with connect(test_server.dsn(name), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO os_proposals (code, title, package_sha256, status, created_at) "
                "VALUES ('OR-WITHDRAWN', 'an older seed', %s, 'withdrawn', now())",
                (PKG.sha256,),
            )
        if role == "production":
            with connect(test_server.admin, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
            BOUND[name] = rehearsal.load(bound_evidence(test_server.dsn(name), tmp_path_factory.mktemp("bound")))
    try:
        yield {role: test_server.dsn(name) for role, name in names.items()}
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            for name in names.values():
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def conns(databases: dict[str, str]) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    with connect(databases["clone"]) as clone, connect(databases["production"]) as production:
        yield {"clone": clone, "production": production}


CASES = [
    ("no approval at all", [], "production", False),
    ("human L4", [Row("l4")], "production", True),
    ("human L2", [Row("l2")], "production", True),
    ("human L1", [Row("l1")], "production", False),
    ("human L3", [Row("l3")], "production", False),
    ("human L5", [Row("l5")], "production", False),
    ("suspended human L4", [Row("l4-suspended")], "production", False),
    ("service account at L4", [Row("svc-etl")], "production", False),
    ("service account at L2", [Row("svc-ci")], "production", False),
    ("automation agent at L4", [Row("agent")], "production", False),
    ("user who is no approver", [Row("editor", level="L4")], "production", False),
    ("L3 claiming L4", [Row("l3", level="L4")], "production", False),
    ("revoked L4", [Row("l4", revoked=True)], "production", False),
    ("L4 for another proposal", [Row("l4", proposal="withdrawn")], "production", False),
    ("L4 naming another package", [Row("l4", sha="other")], "production", False),
    ("rehearsal L4 on production", [Row("l4", rehearsal=True)], "production", False),
    ("rehearsal L4 on a marked clone", [Row("l4", rehearsal=True)], "clone", True),
    ("agent and revoked L2", [Row("agent"), Row("l2", revoked=True)], "production", False),
    ("service, then valid L2", [Row("svc-etl"), Row("l2")], "production", True),
    ("two valid humans", [Row("l4"), Row("l2")], "production", True),
]


@pytest.mark.parametrize(("rows", "where", "opens"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict_table(conns: dict[str, psycopg.Connection[Any]], rows: list[Row], where: str, opens: bool) -> None:
    verdict = judge(conns[where], rows)
    assert verdict.open is opens, verdict.reasons
    if not opens:
        assert verdict.reasons["approvals"].startswith("valid approvals 0 < 1")


def test_no_approval_gives_the_seed_reason(conns: dict[str, psycopg.Connection[Any]]) -> None:
    assert judge(conns["production"], []).reasons == {"approvals": "valid approvals 0 < 1"}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.builds(
            Row,
            approver=st.sampled_from(APPROVERS),
            level=st.none() | st.sampled_from(["L1", "L2", "L3", "L4", "L5"]),
            proposal=st.sampled_from(["active", "withdrawn"]),
            sha=st.sampled_from(["this", "other"]),
            revoked=st.booleans(),
            rehearsal=st.booleans(),
        ),
        max_size=5,
    ),
    where=st.sampled_from(["clone", "production"]),
)
@example(rows=[Row("l2", rehearsal=True)], where="production")
@example(rows=[Row("l4", level="L2")], where="clone")
def test_random_approval_sets_follow_the_policy(
    conns: dict[str, psycopg.Connection[Any]], rows: list[Row], where: str
) -> None:
    verdict = judge(conns[where], rows)
    expected = sum(expected_valid(r, where == "clone") for r in rows)
    assert len(verdict.valid_approvals) == expected
    assert verdict.open is (expected >= 1)


def test_target_must_be_the_named_database(conns: dict[str, psycopg.Connection[Any]]) -> None:
    conn = conns["production"]
    try:
        insert(conn, [Row("l4")])
        verdict = gate.evaluate(
            conn, PKG, confirm_db="directus", trust=SIGNERS.trust, rehearsal=BOUND[conn.info.dbname]
        )
    finally:
        conn.rollback()
    assert list(verdict.reasons) == ["target"] and "'directus'" in verdict.reasons["target"]


def test_proposal_naming_another_package_blocks(conns: dict[str, psycopg.Connection[Any]]) -> None:
    conn = conns["production"]
    try:
        conn.execute("UPDATE os_proposals SET package_sha256 = %s WHERE code = %s", (OTHER_SHA, catalog.PROPOSAL_CODE))
        insert(conn, [Row("l4")])
        verdict = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname, trust=SIGNERS.trust)
    finally:
        conn.rollback()
    assert "proposal" in verdict.reasons and "not this package" in verdict.reasons["proposal"]


def test_mixed_state_blocks(conns: dict[str, psycopg.Connection[Any]]) -> None:
    conn = conns["production"]
    try:
        insert(conn, [Row("l4")])
        conn.execute("INSERT INTO os_collection_axes VALUES ('kh_tags', 'domain', 'documents')")
        verdict = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname, trust=SIGNERS.trust)
    finally:
        conn.rollback()
    assert verdict.state == "mixed" and "state" in verdict.reasons


def test_lock_held_by_another_session_blocks(
    databases: dict[str, str], conns: dict[str, psycopg.Connection[Any]]
) -> None:
    with connect(databases["production"], autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", gate.LOCK_KEY)
        with consistent_read(conns["production"]) as conn:
            verdict = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname)
    assert "lock" in verdict.reasons and "held by another executor" in verdict.reasons["lock"]


def test_finalized_is_a_note_not_a_reason(conns: dict[str, psycopg.Connection[Any]]) -> None:
    """The executor reads a finalized target as done (exit 0): the gate notes it, and notes nothing
    of the state on a greenfield target.
    """
    conn = conns["production"]

    def evaluate() -> gate.Verdict:
        return gate.evaluate(
            conn, PKG, confirm_db=conn.info.dbname, trust=SIGNERS.trust, rehearsal=BOUND[conn.info.dbname]
        )

    assert not [n for n in evaluate().notes if n.startswith("state=")]
    try:
        deploy_tiers(conn)
        verdict = evaluate()
    finally:
        conn.rollback()
    assert verdict.state == "finalized" and "state" not in verdict.reasons
    assert "state=finalized: tiers 2-6 are already applied" in verdict.notes


@pytest.mark.parametrize("case", list(STATES))
def test_state_is_greenfield_finalized_or_mixed(conns: dict[str, psycopg.Connection[Any]], case: str) -> None:
    """gate.state: no trace at all, every facet of every collection, or anything between."""
    assert state_after(conns["production"], case) == case.split(":")[0]


def test_mixed_state_names_what_is_left(conns: dict[str, psycopg.Connection[Any]]) -> None:
    """A leftover the gate blocks on is named in the reason (the object and, for a grant, the actor)."""
    conn = conns["production"]
    try:
        insert(conn, [Row("l4")])
        for step in STATES["mixed: a look-alike One-Roof policy linked to the agent user"]:
            conn.execute(step)
        verdict = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname, trust=SIGNERS.trust)
    finally:
        conn.rollback()
    assert verdict.reasons["state"].startswith("state=mixed: ")
    assert (
        "access row linking policy 'One-Roof Governance ' to user one-roof-agent@gov.example.com"
        in (verdict.reasons["state"])
    )


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("mixed: a leftover One-Roof policy with admin_access", "tier 2 refuses to adopt what is already there"),
        ("mixed: a look-alike One-Roof policy linked to the agent user", "policy 'One-Roof Governance ' (1111"),
        ("mixed: a leftover writable field on os_collection_owners", "field os_collection_owners.owner_unit"),
        ("mixed: the ledger's collection metadata", "collection metadata os_release_ledger"),
        ("mixed: the proposal left ratified", "tier 3 refuses to adopt what is already there: proposal"),
        ("mixed: an inactive owner", "owner kh_tags DOT"),
        ("mixed: one axis", "tier 4 refuses to adopt what is already there: axis kh_tags domain"),
    ],
)
def test_deploy_adopts_nothing(conns: dict[str, psycopg.Connection[Any]], case: str, named: str) -> None:
    """A deploy on a target that is not empty fails before the commit, naming what is there,
    instead of adopting it (ON CONFLICT DO NOTHING let a leftover with admin_access go live).
    """
    conn = conns["production"]
    try:
        for step in STATES[case]:
            conn.execute(step)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as failed:
            deploy_tiers(conn)
    finally:
        conn.rollback()
    assert named in str(failed.value)


ASSUMPTIONS = {
    "no activity recorded on the approvals": (
        "UPDATE directus_collections SET accountability = NULL WHERE collection = 'os_proposal_approvals'",
        "Directus records no activity on os_proposal_approvals",
    ),
    "approver no longer user-created": (
        "UPDATE directus_fields SET special = NULL WHERE collection = 'os_proposal_approvals' AND field = 'approver'",
        "os_proposal_approvals.approver is not filled in by Directus",
    ),
    "a create permission sends the approver": (
        "UPDATE directus_permissions SET fields = 'proposal_id,level,package_sha256,comment,approver' "
        "WHERE collection = 'os_proposal_approvals' AND action = 'create' AND policy = "
        "(SELECT id FROM directus_policies WHERE name = 'Service Accounts')",
        "policy 'Service Accounts' (fields proposal_id,level,package_sha256,comment,approver) may create",
    ),
    "the allowed signers list the agent": (
        "",
        "the allowed signers list one-roof-agent@gov.example.com, an agent account",
    ),
}


@pytest.mark.parametrize("case", list(ASSUMPTIONS))
def test_the_gates_own_assumptions_block(conns: dict[str, psycopg.Connection[Any]], case: str) -> None:
    """What the approvals condition relies on is a condition of its own: Directus's activity on the
    approvals, `approver` set by Directus alone, and allowed signers who are human approvers.
    """
    statement, named = ASSUMPTIONS[case]
    trust = SIGNERS.trust
    if not statement:
        agent = b"one-roof-agent@gov.example.com " + trust.data.splitlines()[0].split(b" ", 1)[1] + b"\n"
        trust = signatures.TrustRoot(trust.path, trust.data + agent)
    conn = conns["production"]
    try:
        insert(conn, [Row("l4")])
        opened = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname, trust=trust)
        if statement:
            conn.execute(statement)
        verdict = gate.evaluate(conn, PKG, confirm_db=conn.info.dbname, trust=trust)
    finally:
        conn.rollback()
    assert ("assumptions" in opened.reasons) == (not statement)
    assert named in verdict.reasons.get("assumptions", "")


FLOW = (
    "INSERT INTO directus_flows (id, name, status, trigger, options) VALUES (gen_random_uuid(), 'Notify', %s, "
    '\'event\', \'{"type": "action", "scope": ["items.create"], "collections": [%s]}\')'
)
EMITTER = (
    "CREATE FUNCTION pg_temp.emit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO os_gov_events (collection, event) VALUES (TG_TABLE_NAME, TG_OP); RETURN NEW; END $$"
)
DISPATCH = {
    "an active flow on a governed collection": (
        (FLOW % ("'active'", '"cms_pages", "kh_tags"'),),
        ["active Directus flow 'Notify' on items.create of kh_tags"],
    ),
    "an active flow on a governance collection": (
        (FLOW % ("'active'", '"os_collection_owners"'),),
        ["active Directus flow 'Notify' on items.create of os_collection_owners"],
    ),
    "an inactive flow": ((FLOW % ("'inactive'", '"kh_tags"'),), []),
    "an active flow on an ungoverned collection": ((FLOW % ("'active'", '"cms_pages"'),), []),
    "a trigger writing the events": (
        (EMITTER, "CREATE TRIGGER emit_tags AFTER INSERT ON kh_tags FOR EACH ROW EXECUTE FUNCTION pg_temp.emit()"),
        ["trigger emit_tags on kh_tags writes os_gov_events (function emit)"],
    ),
}


@pytest.mark.parametrize("case", list(DISPATCH))
def test_gov_emit_counts_dispatch_by_other_means(conns: dict[str, psycopg.Connection[Any]], case: str) -> None:
    """gov_emit is the events emitted plus every other way to emit them: an active Directus flow on a
    governed collection's item events, a trigger writing os_gov_events; each is named.
    """
    statements, named = DISPATCH[case]
    conn = conns["production"]
    try:
        for statement in statements:
            conn.execute(statement.encode())
        figure = metrics.read_some(conn, ("gov_emit",))["gov_emit"]
        found = dispatch.found(conn)
    finally:
        conn.rollback()
    assert (figure, found) == (len(named), named)
