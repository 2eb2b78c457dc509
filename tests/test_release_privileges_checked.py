"""The privileges check of the release on one clone, with nothing rolled out: the release role as
docs/release-role.md grants it passes for both actions; without USAGE on the sequences the rollout
is refused (naming how many more it lacks) and the rollback, which inserts nowhere, is not; one
privilege missing is named alone; a rollback needs none of the grants that let the rollout lock
rows. Each was a mutant of executor/release.py that the mutation check
did not reach (bench/mutation.py, docs/results/mutation.md).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from oneroof.core import package
from oneroof.executor import release
from oneroof.harness import clones
from oneroof.harness.db import connect
from oneroof.harness.errors import MissingPrivilege
from tests.support.release import TRUST, approve
from tests.support.roles import as_role, readme_grants
from tests.support.testing import PgServer

PKG = package.load()


@pytest.fixture
def roles(test_server: PgServer, clone: clones.Clone) -> Iterator[list[str]]:
    """The login roles a test makes on the clone (dropped after it)."""
    made: list[str] = []
    yield made
    for name in made:
        with connect(clone.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name)))
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def release_role(test_server: PgServer, clone: clones.Clone, roles: list[str], left_out: str = "") -> str:
    """A login role of this run with the docs' grants on the clone, but the one that contains
    `left_out`: its dsn.
    """
    name = f"{test_server.prefix}_priv_{secrets.token_hex(4)}"
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(name)))
    roles.append(name)
    grants = [g for g in readme_grants() if not (left_out and left_out in g)]
    assert len(grants) == len(readme_grants()) - (1 if left_out else 0)
    with connect(clone.dsn, autocommit=True) as conn:
        for grant in grants:
            conn.execute(sql.SQL(grant).format(role=sql.Identifier(name), db=sql.Identifier(clone.name)))
    return as_role(clone.dsn, name)


def test_the_release_role_needs_usage_on_a_sequence_only_to_insert(
    test_server: PgServer, clone: clones.Clone, roles: list[str]
) -> None:
    role = release_role(test_server, clone, roles)
    with connect(role) as conn:
        release.check_privileges(conn, PKG, "rollout")
        release.check_privileges(conn, PKG, "rollback")
    assert not release.runs_as_superuser(role) and release.runs_as_superuser(clone.dsn)  # the tests' server role
    with connect(release_role(test_server, clone, roles, left_out="USAGE ON SEQUENCE")) as conn:
        with pytest.raises(MissingPrivilege) as caught:
            release.check_privileges(conn, PKG, "rollout")
        assert re.search(
            r"role 'oneroof_t_\w+_priv_\w+' lacks USAGE on sequence public\.directus_fields_id_seq and 1 more that the "
            r"rollout needs: grant",
            str(caught.value),
        ), caught.value
        release.check_privileges(conn, PKG, "rollback")  # it deletes the rows the rollout inserted


def test_one_missing_privilege_is_named_alone(test_server: PgServer, clone: clones.Clone, roles: list[str]) -> None:
    with connect(release_role(test_server, clone, roles, left_out="INSERT ON os_release_ledger")) as conn:
        for action in ("rollout", "rollback"):
            with pytest.raises(MissingPrivilege) as caught:
                release.check_privileges(conn, PKG, action)
            assert re.search(
                rf"role 'oneroof_t_\w+_priv_\w+' lacks INSERT on os_release_ledger that the {action} needs: grant",
                str(caught.value),
            ), caught.value


def test_a_rollback_locks_no_row_so_needs_no_update_to_lock_one(
    test_server: PgServer, clone: clones.Clone, clone_conn: Any, roles: list[str]
) -> None:
    """The UPDATE grants that let the rollout lock the approvals' rows FOR SHARE are the rollout's
    alone: a role without one rolls back.
    """
    role = release_role(test_server, clone, roles, left_out="UPDATE (comment) ON os_proposal_approvals")
    approve(clone_conn)
    release.rollout(clone.dsn, PKG, confirm_db=clone.name, trust=TRUST, gate_session=False, audit=False)
    with connect(role) as conn:
        with pytest.raises(MissingPrivilege, match="lacks UPDATE on a column of os_proposal_approvals that"):
            release.check_privileges(conn, PKG, "rollout")
    assert release.rollback(role, PKG, confirm_db=clone.name, trust=TRUST).action == "reverted"
