"""Attacks on the gate from inside the database: shadow schemas and search paths, a temporary
table, an overloaded built-in, a rollback with another package, a future-dated approval, roles
without the release role's privileges; and a rollout that loses a race under the lock.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from oneroof.core import gate, package
from oneroof.executor import release
from oneroof.harness import catalog, clones
from oneroof.harness.db import SEARCH_PATH, connect, pin
from oneroof.harness.errors import Blocked, IntegrityError, MissingPrivilege, UnsafeSchema
from tests.support.release import PKG, TRUST, approve, reading
from tests.support.roles import as_role, readme_grants
from tests.support.testing import PgServer, signers

Role = Callable[..., str]


@pytest.fixture
def make_role(test_server: PgServer, clone: clones.Clone, worker_id: str) -> Iterator[Role]:
    """A login role of a unique name given `grants` on the clone, as `make_role("reader", *grants)`
    ({role} and {db} are filled in); dropped with everything it owns after the test.
    """
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
        with psycopg.connect(clone.dsn, autocommit=True) as conn:  # connect() would refuse a planted overload
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name)))
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


SELECT_ONLY = (
    "GRANT CONNECT ON DATABASE {db} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
)
ATTACKER = (*SELECT_ONLY, "GRANT CREATE ON DATABASE {db} TO {role}")


def rollout(clone: clones.Clone, progress: Callable[[str], None] | None = None) -> release.Outcome:
    """The package's rollout on `clone`, in this process, without the gate session and the audit."""
    return release.rollout(
        clone.dsn, PKG, confirm_db=clone.name, trust=signers().trust, gate_session=False, audit=False, progress=progress
    )


def ledger(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM os_release_ledger ORDER BY id").fetchall()


# -- the release role ------------------------------------------------------------------------


def test_the_readme_grants_are_enough_to_roll_out_and_back_and_cannot_approve(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, make_role: Role
) -> None:
    role = make_role("release", *readme_grants())
    dsn = as_role(clone.dsn, role)
    approve(clone_conn)
    applied = oneroof("rollout", "--dsn", dsn, "--confirm-db", clone.name, "--expect-sha256", PKG.sha256)
    assert applied.returncode == 0 and applied.stdout.startswith("APPLIED"), applied.stdout + applied.stderr
    assert SUPERUSER_WARNING not in applied.stderr  # the release role as the docs grant it
    reverted = oneroof("rollback", "--dsn", dsn, "--confirm-db", clone.name, "--expect-sha256", PKG.sha256)
    assert reverted.returncode == 0 and reverted.stdout.startswith("REVERTED"), reverted.stdout + reverted.stderr
    with connect(dsn, autocommit=True) as conn:
        for forge in (
            "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256) "
            "SELECT proposal_id, approver, level, package_sha256 FROM os_proposal_approvals",
            "UPDATE os_proposal_approvals SET revoked_at = NULL, approved_at = now()",
            "UPDATE directus_users SET status = 'active'",
            "UPDATE os_approvers SET level = 'L4'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forge)


SUPERUSER_WARNING = "oneroof: warning: the release role should not be a superuser; see docs/release-role.md"
APPROVER_STEP = "; next: a human L2/L4 approver runs `oneroof approve` (see the approver runbook)"


def test_a_blocked_rollout_names_the_next_step_and_a_superuser_is_warned_not_blocked(
    oneroof: Any, oneroof_main: Any, clone: clones.Clone, clone_conn: Any
) -> None:
    """The tests' server role is a superuser: the rollout warns about it, and goes on."""
    blocked = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name)
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    assert blocked.stdout.splitlines()[0] == "BLOCKED: valid approvals 0 < 1" + APPROVER_STEP, blocked.stdout
    assert blocked.stderr.count(SUPERUSER_WARNING) == 1, blocked.stderr
    monitor = oneroof_main("monitor", "--dsn", clone.dsn)
    assert monitor.stdout.splitlines()[0] == "BLOCKED: valid approvals 0 < 1" + APPROVER_STEP, monitor.stdout
    as_json = oneroof_main("monitor", "--json", "--dsn", clone.dsn)
    assert '"reasons": ["valid approvals 0 < 1"]' in as_json.stdout  # the gate's verdict text is unchanged
    approve(clone_conn)
    applied = oneroof("rollout", "--dsn", clone.dsn, "--confirm-db", clone.name)
    assert applied.returncode == 0 and applied.stdout.startswith("APPLIED"), applied.stdout + applied.stderr
    assert SUPERUSER_WARNING in applied.stderr


def test_a_held_lock_names_the_next_step() -> None:
    reason = "the release lock is held by another executor (pid 42)"
    assert gate.with_next_step("lock", reason) == (
        f"{reason}; next: wait for that executor to finish, or look its pid up in pg_stat_activity before retrying"
    )
    assert gate.with_next_step("state", "state=mixed: run `oneroof rollback` first").endswith("first")


def test_a_select_only_role_reads_and_is_refused_before_the_gate_session(
    oneroof: Any, oneroof_main: Any, clone: clones.Clone, clone_conn: Any, make_role: Role
) -> None:
    dsn = as_role(clone.dsn, make_role("reader", *SELECT_ONLY))
    assert oneroof_main("probe", "--dsn", dsn).returncode == 0
    assert oneroof_main("monitor", "--dsn", dsn).returncode == 3
    assert oneroof("verify", "--stage", "baseline", "--dsn", dsn, "--expect-db", clone.name).returncode == 0
    approve(clone_conn)
    assert oneroof_main("monitor", "--dsn", dsn).returncode == 0
    before = reading(clone.dsn).fingerprint
    refused = oneroof("rollout", "--dsn", dsn, "--confirm-db", clone.name)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert re.search(
        r"role 't_\w+_reader_\w+' lacks INSERT on directus_access and \d+ more that the rollout needs", refused.stderr
    ), refused.stderr
    assert "gate session" not in refused.stderr and reading(clone.dsn).fingerprint == before
    rollout(clone)
    finalized = reading(clone.dsn).fingerprint
    refused = oneroof("rollback", "--dsn", dsn, "--confirm-db", clone.name)
    assert refused.returncode == 2 and "lacks DELETE on directus_access" in refused.stderr, refused.stderr
    assert reading(clone.dsn).fingerprint == finalized and len(ledger(clone_conn)) == 5


def test_every_privilege_of_the_readme_is_needed(clone: clones.Clone, make_role: Role) -> None:
    """Each GRANT of docs/release-role.md, left out, is named by the check: the list is exact."""
    grants = readme_grants()
    for left_out in range(3, len(grants)):  # CONNECT, USAGE and SELECT are needed to connect and read
        role = make_role("partial", *(g for i, g in enumerate(grants) if i != left_out))
        with connect(as_role(clone.dsn, role)) as conn:
            with pytest.raises(MissingPrivilege, match="lacks") as caught:
                check_both(conn)
            assert "nothing was changed" in str(caught.value), grants[left_out]


def check_both(conn: psycopg.Connection[Any]) -> None:
    release.check_privileges(conn, PKG, "rollout")
    release.check_privileges(conn, PKG, "rollback")


# -- the pinned schema -----------------------------------------------------------------------

FORGED = (
    "CREATE TABLE {schema}.os_proposal_approvals (LIKE public.os_proposal_approvals INCLUDING DEFAULTS)",
    "INSERT INTO {schema}.os_proposal_approvals (id, proposal_id, approver, level, package_sha256) "
    "SELECT 1, id, %s, 'L4', package_sha256 FROM public.os_proposals WHERE code = %s",
    "GRANT USAGE ON SCHEMA {schema} TO PUBLIC",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO PUBLIC",
)


def forge(dsn: str, schema: str) -> None:
    """As the attacker: a schema with its own os_proposal_approvals holding one perfect-looking row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for statement in FORGED:
            params = (catalog.account("l4").id, catalog.PROPOSAL_CODE) if "%s" in statement else None
            conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)), params)


@pytest.mark.parametrize("where", ["user-schema", "role", "database", "PGOPTIONS", "dsn-options"])
def test_a_shadow_schema_cannot_open_the_gate(
    oneroof: Any, test_server: PgServer, clone: clones.Clone, clone_conn: Any, make_role: Role, where: str
) -> None:
    releaser = make_role("release", *readme_grants())
    attacker = make_role("attacker", *ATTACKER)
    schema = releaser if where == "user-schema" else "shadow"  # "$user" opens the release role's default path
    forge(as_role(clone.dsn, attacker), schema)
    dsn, env = as_role(clone.dsn, releaser), {}
    path = sql.SQL("{}, public").format(sql.Identifier(schema))
    if where == "role":
        clone_conn.execute(sql.SQL("ALTER ROLE {} SET search_path = {}").format(sql.Identifier(releaser), path))
    elif where == "database":
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} SET search_path = {}").format(sql.Identifier(clone.name), path))
    elif where == "PGOPTIONS":
        env = {"PGOPTIONS": f"-c search_path={schema},public"}
    elif where == "dsn-options":
        dsn = f"{dsn} options='-c search_path={schema},public'"
    # the attack is real: a plain session of the release role reads the forged table
    with psycopg.connect(dsn, autocommit=True, **({"options": env["PGOPTIONS"]} if env else {})) as plain:
        assert plain.execute("SELECT count(*) FROM os_proposal_approvals").fetchone() == (1,)

    monitor = oneroof("monitor", "--json", "--dsn", dsn, env=env)
    assert monitor.returncode == 3 and '"reasons": ["valid approvals 0 < 1"]' in monitor.stdout, (
        monitor.stdout + monitor.stderr
    )
    assert '"ospa": 0' in monitor.stdout
    rollout = oneroof("rollout", "--dsn", dsn, "--confirm-db", clone.name, env=env)
    assert rollout.returncode == 3 and rollout.stdout.startswith("BLOCKED: valid approvals 0 < 1"), rollout.stdout
    assert clone_conn.execute("SELECT count(*) AS n FROM public.os_proposal_approvals").fetchone() == {"n": 0}
    assert reading(clone.dsn).metrics["own"] == 0 and ledger(clone_conn) == []


def test_a_temporary_table_does_not_shadow_the_approvals(clone: clones.Clone) -> None:
    forged = (
        "CREATE TEMP TABLE os_proposal_approvals AS SELECT * FROM public.os_proposal_approvals",
        "INSERT INTO pg_temp.os_proposal_approvals (id, proposal_id, approver, level, package_sha256, approved_at, "
        "rehearsal) SELECT 1, id, %s, 'L4', package_sha256, now(), false FROM public.os_proposals WHERE code = %s",
    )
    for pinned in (True, False):
        with connect(clone.dsn) as conn:
            if not pinned:  # what PostgreSQL does by default: pg_temp is searched first
                conn.execute('SET search_path = "$user", public')
            for statement in forged:
                conn.execute(
                    statement, (catalog.account("l4").id, catalog.PROPOSAL_CODE) if "%s" in statement else None
                )
            signers().attach(conn, 1, signers().statement(conn))  # a perfect forgery: signed, too
            verdict = gate.evaluate(conn, PKG, confirm_db=clone.name, trust=signers().trust)
            conn.rollback()
        assert verdict.open is not pinned, verdict.reasons


def test_a_search_path_the_startup_packet_did_not_set_is_set_and_checked(clone: clones.Clone) -> None:
    """A pooler may drop the startup options: the path is then set on the session, and checked."""
    with psycopg.connect(clone.dsn, options="-c search_path=shadow,public", row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("SELECT 1")
        conn.rollback()
        pin(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SHOW search_path").fetchone() == {"search_path": SEARCH_PATH}


def test_an_overloaded_builtin_by_a_non_superuser_is_refused(
    oneroof_main: Any, clone: clones.Clone, make_role: Role
) -> None:
    attacker = make_role("attacker", *SELECT_ONLY, "GRANT CREATE ON SCHEMA public TO {role}")
    with psycopg.connect(as_role(clone.dsn, attacker), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.thirty_five(bigint, varchar) RETURNS bigint LANGUAGE sql AS 'SELECT 35::bigint'"
        )
        conn.execute(
            "CREATE AGGREGATE public.count(varchar) (sfunc = public.thirty_five, stype = bigint, initcond = '35')"
        )
        # the attack is real: an exact match on varchar beats pg_catalog's count("any")
        conn.execute("SET search_path = pg_catalog, public")
        assert conn.execute("SELECT count(DISTINCT collection) FROM os_collection_axes").fetchone() == (35,)
    probe = oneroof_main("probe", "--dsn", clone.dsn)
    assert probe.returncode == 2, probe.stdout + probe.stderr
    assert "function count(character varying) shares a built-in's name" in probe.stderr
    with pytest.raises(UnsafeSchema):
        connect(clone.dsn)


# -- rollback bound to the deployment --------------------------------------------------------


@pytest.fixture
def other_package(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """A sealed copy of the package with one file changed."""

    def make(file: str, old: str, new: str) -> Path:
        copy = package.bundle(package.DEFAULT_DIR, tmp_path / f"copy-{secrets.token_hex(3)}").path
        text = (copy / file).read_text()
        assert old in text
        (copy / file).write_text(text.replace(old, new, 1))
        package.seal(copy)
        return copy

    return make


@pytest.mark.parametrize("change", ["resealed-revert", "other-version"])
def test_rollback_refuses_a_package_that_was_not_deployed(
    oneroof: Any, clone: clones.Clone, clone_conn: Any, other_package: Any, change: str
) -> None:
    approve(clone_conn)
    rollout(clone)
    if change == "resealed-revert":  # its revert would forge an approval
        copy = other_package(
            "tier6_lifecycle.revert.sql",
            "DELETE",
            "INSERT INTO os_proposal_approvals (proposal_id, "
            "approver, level, package_sha256) SELECT id, approver, 'L4', package_sha256 FROM "
            "os_proposals, (SELECT approver FROM os_proposal_approvals LIMIT 1) AS a;\nDELETE",
        )
    else:
        copy = other_package("manifest.toml", f'version = "{PKG.version}"', 'version = "9.9.9"')
    other = package.load(copy)
    assert other.sha256 != PKG.sha256
    before, rows = reading(clone.dsn).fingerprint, ledger(clone_conn)
    result = oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", clone.name, "--package", str(copy))
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"is not the package the ledger records for the current deployment, {PKG.sha256}" in result.stderr
    pinned = oneroof(
        "rollback",
        "--dsn",
        clone.dsn,
        "--confirm-db",
        clone.name,
        "--package",
        str(copy),
        "--expect-sha256",
        PKG.sha256,
    )
    assert pinned.returncode == 4 and "is not the pinned" in pinned.stderr
    assert reading(clone.dsn).fingerprint == before and ledger(clone_conn) == rows
    assert (
        oneroof("rollback", "--dsn", clone.dsn, "--confirm-db", clone.name, "--expect-sha256", PKG.sha256).returncode
        == 0
    )


def test_rollback_of_a_mixed_database_without_a_deployment_follows_the_proposal(
    clone: clones.Clone, clone_conn: Any, other_package: Any
) -> None:
    clone_conn.execute("INSERT INTO os_collection_axes VALUES ('kh_tags', 'domain', 'documents')")  # by hand
    copy = package.load(other_package("manifest.toml", f'version = "{PKG.version}"', 'version = "9.9.9"'))
    with pytest.raises(IntegrityError, match=f"proposal {catalog.PROPOSAL_CODE} names"):
        release.rollback(clone.dsn, copy, confirm_db=clone.name)
    assert release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST).action == "reverted"


# -- approvals spent by the ledger -----------------------------------------------------------


def test_a_future_dated_approval_is_spent_by_a_rollback(clone: clones.Clone, clone_conn: Any) -> None:
    approval = approve(clone_conn)
    clone_conn.execute(
        "UPDATE os_proposal_approvals SET approved_at = now() + interval '1 day' WHERE id = %s", (approval,)
    )
    assert rollout(clone).action == "applied"
    assert release.rollback(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST).action == "reverted"
    with pytest.raises(Blocked) as caught:
        rollout(clone)
    assert f"#{approval} authorised a deployment already" in caught.value.reasons[0]
    assert reading(clone.dsn).metrics["own"] == 0


# -- under the lock --------------------------------------------------------------------------


def test_a_rollout_that_lost_the_race_under_the_lock_says_already_finalized(
    clone: clones.Clone, clone_conn: Any
) -> None:
    approve(clone_conn)

    def the_other_executor_wins(message: str) -> None:
        if message.startswith("taking the release lock"):
            assert rollout(clone).action == "applied"

    outcome = rollout(clone, progress=the_other_executor_wins)
    assert outcome.action == "already-finalized"
    assert clone_conn.execute("SELECT count(*) AS n FROM os_release_ledger").fetchone() == {"n": 5}


def test_a_rollout_blocked_under_the_lock_locks_no_row(clone: clones.Clone, clone_conn: Any) -> None:
    """Row locks would give the blocked rollout a transaction id: it re-checks without them first."""
    approval = approve(clone_conn)

    def revoke(message: str) -> None:
        if message.startswith("taking the release lock"):
            clone_conn.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (approval,))

    before = lockers(clone_conn)
    with pytest.raises(Blocked, match="revoked"):
        rollout(clone, progress=revoke)
    assert lockers(clone_conn) == before  # the revocation's new row version has none either


def lockers(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """The xmax of every row the gate's re-check would lock (a row lock writes its locker there)."""
    return {
        table: [
            r["x"]
            for r in conn.execute(
                sql.SQL("SELECT xmax::text AS x FROM {} ORDER BY ctid").format(sql.Identifier(table))
            ).fetchall()
        ]
        for table in release.ROW_LOCKED
    }
