"""The ledger and spent statements under siege (issues 18.1, 18.6 and 20.2), each reproduction as it
was reported: a statement replayed after a rollback whose revert rows name no proposal, or through
a superuser's look-alike of a built-in; a deploy row the release role forged so that `rollback`
runs an evil package's revert; ledger rows deleted or edited after a rollback. Each is refused
with its own reason.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from oneroof.core import gate, ledger, package
from oneroof.executor import release
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from oneroof.harness.errors import Blocked
from tests.support.release import PKG, TRUST, approve, reading
from tests.support.roles import as_role, readme_grants
from tests.support.testing import PgServer, signers

PROPOSAL = catalog.PROPOSAL_CODE
Role = Callable[..., str]


@pytest.fixture
def make_role(test_server: PgServer, clone: clones.Clone, worker_id: str) -> Iterator[Role]:
    """A login role of a unique name given `grants` on the clone ({role} and {db} filled in)."""
    made: list[str] = []

    def make(kind: str, *grants: str) -> str:
        name = f"t_{worker_id}_{kind}_{secrets.token_hex(3)}"
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(name)))
        made.append(name)
        with connect(clone.dsn, autocommit=True) as conn:
            for grant in grants:
                conn.execute(sql.SQL(grant).format(role=sql.Identifier(name), db=sql.Identifier(clone.name)))
        return name

    yield make
    for name in made:
        with psycopg.connect(clone.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name)))
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def rollout(clone: clones.Clone, log: ledger.ReleaseLog | None = None) -> release.Outcome:
    """The package's rollout in this process, without the gate session and the audit."""
    return release.rollout(
        clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=TRUST, release_log=log
    )


def rollback(clone: clones.Clone, log: ledger.ReleaseLog | None = None) -> release.Outcome:
    return release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST, release_log=log)


def replay(conn: psycopg.Connection[Any], approval: int) -> int:
    """A superuser copies `approval`'s signed statement onto a new approval row; the new row's id."""
    row = conn.execute(
        "SELECT comment FROM directus_comments WHERE collection = 'os_proposal_approvals' AND item = %s",
        (str(approval),),
    ).fetchone()
    assert row is not None
    copy = signers().approve(conn, signed=False)
    signers().attach(conn, copy, row["comment"])
    return copy


def blocked_reasons(clone: clones.Clone, log: ledger.ReleaseLog | None = None) -> dict[str, str]:
    with pytest.raises(Blocked) as caught:
        rollout(clone, log)
    assert reading(clone.dsn).metrics["own"] == 0  # nothing was applied
    return caught.value.blocked_by


# -- 18.1: a spent statement is spent by any deploy row, whatever follows ----------------------------


def test_a_replay_after_a_rollback_whose_revert_rows_name_no_proposal_is_refused(
    clone: clones.Clone, clone_conn: Any
) -> None:
    first = approve(clone_conn)
    assert rollout(clone).action == "applied"
    # A superuser renames the proposal's code and deletes the owners: the revert finds no proposal.
    # (They also set its status back, as the revert would have: a ratified proposal left behind
    # would make the rollback itself fail, since greenfield means empty.)
    clone_conn.execute("UPDATE os_proposals SET code = 'OR-RENAMED', status = 'pending' WHERE code = %s", (PROPOSAL,))
    clone_conn.execute("DELETE FROM os_collection_owners")
    assert rollback(clone).action == "reverted"
    reverts = clone_conn.execute("SELECT DISTINCT proposal_id FROM os_release_ledger WHERE action = 'revert'")
    assert reverts.fetchall() == [{"proposal_id": None}]
    # They restore the code and copy the old statement onto a new approval row.
    clone_conn.execute("UPDATE os_proposals SET code = %s WHERE code = 'OR-RENAMED'", (PROPOSAL,))
    copy = replay(clone_conn, first)
    reasons = blocked_reasons(clone)["approvals"]
    assert f"#{copy} its statement authorised a deployment already (a statement opens the gate once)" in reasons
    assert f"#{first} authorised a deployment already (an approval opens the gate once)" in reasons


UNNEST_SHADOW = (
    "CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS 'SELECT NULL::text WHERE false'"
)
# Look-alikes of every function the gate's ledger and approvals SQL calls, owned by the superuser
# (so the shadow check, which lets a superuser's functions be, does not refuse them).
SHADOWS = (
    UNNEST_SHADOW,
    "CREATE FUNCTION public.shadow_keep(text[], text) RETURNS text[] LANGUAGE sql AS 'SELECT $1'",
    "CREATE AGGREGATE public.array_agg(text) (sfunc = public.shadow_keep, stype = text[], initcond = '{}')",
    "CREATE FUNCTION public.shadow_zero(bigint, text) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'",
    "CREATE AGGREGATE public.count(text) (sfunc = public.shadow_zero, stype = bigint, initcond = '0')",
    "CREATE FUNCTION public.max(timestamptz) RETURNS timestamptz LANGUAGE sql AS 'SELECT NULL::timestamptz'",
)


def test_a_superusers_unnest_look_alike_does_not_reopen_the_gate(clone: clones.Clone, clone_conn: Any) -> None:
    first = approve(clone_conn)
    rollout(clone)
    rollback(clone)
    clone_conn.execute(UNNEST_SHADOW)  # the tests' server role is a superuser
    owner = clone_conn.execute(
        "SELECT r.rolsuper FROM pg_proc AS p JOIN pg_roles AS r ON r.oid = p.proowner "
        "WHERE p.proname = 'unnest' AND p.pronamespace = 'public'::regnamespace"
    ).fetchone()
    assert owner == {"rolsuper": True}
    copy = replay(clone_conn, first)
    assert f"#{copy} its statement authorised a deployment already" in blocked_reasons(clone)["approvals"]


def test_look_alikes_of_the_gates_functions_change_nothing(clone: clones.Clone, clone_conn: Any) -> None:
    """The gate's ledger and approvals SQL name pg_catalog's functions: with a superuser's
    look-alikes in public (unnest, array_agg, count, max) it reads exactly what it read without.
    """
    first = approve(clone_conn)
    rollout(clone)
    rollback(clone)
    replay(clone_conn, first)

    def seen() -> tuple[Any, ...]:
        with connect(clone.dsn) as conn:
            conn.read_only = True
            verdict = gate.evaluate(conn, PKG, confirm_db=clone.name, trust=TRUST)
            return (
                conn.execute(gate.APPROVALS_SQL).fetchall(),
                gate.spent_nonces(conn, None),
                verdict.reasons,
                verdict.valid_approvals,
            )

    before = seen()
    assert before[1] and before[0][0]["statements"] and before[0][0]["spent"]
    for statement in SHADOWS:
        clone_conn.execute(statement)
    assert seen() == before


def test_approvals_verify_flags_a_statement_two_deployments_carried(
    oneroof: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    approve(clone_conn)
    rollout(clone)
    rollback(clone)
    # A superuser writes a second deployment carrying the first one's statements, chained as the
    # executor chains its rows: only the nonce gives it away.
    later = dt.datetime.now(dt.UTC)
    rows = ledger.rows(clone_conn)
    head = rows[-1]["chain_sha256"]
    for row in [r for r in rows if r["action"] == "deploy"]:
        copy = {**row, "executed_at": later}
        head = ledger.link(head, copy)
        clone_conn.execute(release.LEDGER_INSERT.encode(), [*(copy[name] for name in ledger.CHAIN_FIELDS), head])
    audit = oneroof("approvals", "verify", "--dsn", clone.dsn)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    twice = [line for line in audit.stdout.splitlines() if "REFUSED" in line]
    assert len(twice) == 1 and "was carried by the deployment of" in twice[0], audit.stdout
    assert "ledger chain intact" in audit.stdout


# -- 18.6: a rollback runs only a package a human-signed statement approved and a deployment applied --


def evil_package(directory: Path) -> package.Package:
    """The package, resealed with a revert that grants the Administrator policy to the Automation role."""
    copy = package.bundle(PKG.path, directory / "evil").path
    revert = copy / "tier2_access.revert.sql"
    revert.write_text(
        revert.read_text() + '\nINSERT INTO directus_access (id, role, "user", policy, sort)\n'
        "SELECT '0f0e0d0c-0b0a-4909-8807-060504030201', r.id, NULL, p.id, 99\n"
        "FROM directus_roles AS r, directus_policies AS p\n"
        "WHERE r.name = 'Automation' AND p.admin_access;\n"
    )
    package.seal(copy)
    return package.load(copy)


ADMIN_FOR_AUTOMATION = (
    "SELECT count(*) AS n FROM directus_access AS a JOIN directus_roles AS r ON r.id = a.role "
    "JOIN directus_policies AS p ON p.id = a.policy WHERE r.name = 'Automation' AND p.admin_access"
)


def test_the_release_role_cannot_roll_back_an_evil_package_through_a_forged_deploy_row(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, make_role: Role, tmp_path: Path
) -> None:
    dsn = as_role(clone.dsn, make_role("release", *readme_grants()))
    approve(clone_conn)
    assert rollout(clone).action == "applied"
    evil = evil_package(tmp_path)
    with connect(dsn, autocommit=True) as conn:  # exactly the docs' grants: INSERT on the ledger
        conn.execute(
            "INSERT INTO os_release_ledger (action, tier, package_name, package_sha256, proposal_id, approval_ids, "
            "tool_version, allowed_signers_sha256, statement_nonces) "
            "SELECT 'deploy', 2, 'evil', %s, proposal_id, approval_ids, tool_version, allowed_signers_sha256, "
            "statement_nonces FROM os_release_ledger WHERE action = 'deploy' ORDER BY id DESC LIMIT 1",
            (evil.sha256,),
        )
    before = reading(clone.dsn).fingerprint
    result = oneroof("rollback", "--dsn", dsn, "--confirm-db", clone.name, "--package", str(evil.path))
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"the ledger's deployment of package {evil.sha256[:12]} does not verify" in result.stderr
    assert f"its statement approves package {PKG.sha256[:12]}, not {evil.sha256[:12]}" in result.stderr
    assert clone_conn.execute(ADMIN_FOR_AUTOMATION).fetchone() == {"n": 0}
    assert reading(clone.dsn).fingerprint == before


def test_a_rollback_without_allowed_signers_is_refused(oneroof: Any, clone: clones.Clone, clone_conn: Any) -> None:
    approve(clone_conn)
    rollout(clone)
    result = oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", clone.name, env={"ONEROOF_ALLOWED_SIGNERS": ""})
    assert result.returncode == 2 and "pass --allowed-signers FILE" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and reading(clone.dsn).metrics["own"] == 35


# -- 20.2: a ledger nobody can quietly rewrite -------------------------------------------------------


@pytest.mark.parametrize("deleted", ["revert rows", "every row"])
def test_deleting_ledger_rows_after_a_rollback_does_not_reopen_the_gate(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, tmp_path: Path, deleted: str
) -> None:
    log = tmp_path / "release-log.jsonl"
    env = {"ONEROOF_RELEASE_LOG": str(log)}
    first = approve(clone_conn)
    applied = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    reverted = oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", clone.name, env=env)
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    heads = [
        line.split()[-1] for out in (applied, reverted) for line in out.stdout.splitlines() if "ledger head" in line
    ]
    assert [r["action"] for r in records] == ["deploy", "revert"] and [r["head"] for r in records] == heads
    assert records[0]["nonces"] and records[0]["nonces"] == records[1]["nonces"]
    clone_conn.execute(
        "DELETE FROM os_release_ledger" + (" WHERE action = 'revert'" if deleted == "revert rows" else "")
    )
    again = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name, env=env)
    assert again.returncode == 3, again.stdout + again.stderr
    blocked = [line for line in again.stdout.splitlines() if line.startswith("BLOCKED: ")]
    assert any(f"the release log {log} records the ledger's head" in line for line in blocked), again.stdout
    assert any(f"#{first} " in line and "authorised a deployment already" in line for line in blocked), again.stdout
    assert reading(clone.dsn).metrics["own"] == 0
    monitor = oneroof("monitor", "--dsn", clone.dsn, "--json", env=env)
    assert monitor.returncode == 3 and "no longer holds" in json.loads(monitor.stdout)["blocked_by"]["ledger"]


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_an_edited_or_deleted_ledger_row_is_seen_by_the_audit_the_gate_and_the_stage(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, tmp_path: Path, change: str
) -> None:
    log = ledger.ReleaseLog(tmp_path / "release-log.jsonl")
    approve(clone_conn)
    rollout(clone, log)
    if change == "edited":
        clone_conn.execute("UPDATE os_release_ledger SET executed_by = 'someone' WHERE tier = 4")
        said = "does not follow from its columns and the row before it"
    else:  # the newest row: what is left still chains, but the release log's head is gone
        clone_conn.execute("DELETE FROM os_release_ledger WHERE id = (SELECT max(id) FROM os_release_ledger)")
        said = "no longer holds"
    audit = oneroof("approvals", "verify", "--dsn", clone.dsn, "--release-log", str(log.path))
    assert audit.returncode == 1 and said in audit.stdout and "ledger: BROKEN" in audit.stdout, audit.stdout
    with connect(clone.dsn) as conn:
        assert said in gate.evaluate(conn, PKG, confirm_db=clone.name, trust=TRUST, release_log=log).reasons["ledger"]
    junit = tmp_path / "finalized.xml"
    stage = oneroof(
        "verify", "--stage", "finalized", "--dsn", clone.dsn, "--expect-db", clone.name,
        "--release-log", str(log.path), "-q", "--junitxml", str(junit),
    )  # fmt: skip
    failed = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None}
    assert stage.returncode == 1 and "test_ledger_chain_holds" in failed, failed
