"""Effective Directus privileges (core/privileges.py): how Directus 11 resolves who may do what,
read in SQL on a clone, and the pinned sets of the three stages, which must differ by exactly
the release's grants.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from oneroof.core import package, privileges
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect

PKG = package.load()
SNAPSHOTS = package.snapshots_dir(PKG.path)
POLICY = "'One-Roof Governance'"
AGENT = catalog.account("agent").email
GRANT = (
    "INSERT INTO directus_policies (id, name, admin_access, app_access) VALUES "
    "('11111111-2222-3333-4444-555555555555', 'Extra', false, false)",
    "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) VALUES "
    "('os_collection_owners', 'update', '{}', '{}', '*', '11111111-2222-3333-4444-555555555555')",
)
# Each way a privilege arrives, and a sentence the difference must hold.
ARRIVALS = {
    "a policy linked to a role": (
        (
            *GRANT,
            'INSERT INTO directus_access (id, role, "user", policy) SELECT gen_random_uuid(), id, NULL, '
            "'11111111-2222-3333-4444-555555555555' FROM directus_roles WHERE name = 'Automation'",
        ),
        "the Automation role can update os_collection_owners (via policy 'Extra')",
    ),
    "a policy linked to a user": (
        (
            *GRANT,
            'INSERT INTO directus_access (id, role, "user", policy) SELECT gen_random_uuid(), NULL, id, '
            f"'11111111-2222-3333-4444-555555555555' FROM directus_users WHERE email = '{AGENT}'",
        ),
        f"the user {AGENT} can update os_collection_owners (via policy 'Extra', linked to the user)",
    ),
    "the public policy": (
        (
            "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) "
            "SELECT 'os_release_ledger', 'read', '{}', '{}', '*', id FROM directus_policies "
            "WHERE name = '$t:public_label'",
        ),
        "the public can read os_release_ledger (via policy '$t:public_label')",
    ),
    "a role's parent": (
        (
            "UPDATE directus_roles SET parent = (SELECT id FROM directus_roles WHERE name = 'Governance Council') "
            "WHERE name = 'Automation'",
        ),
        "the Automation role can create os_proposal_approvals [fields proposal_id,level,package_sha256,comment] "
        "(via policy 'Governance Approvers', inherited from role 'Governance Council')",
    ),
    "public registration": (
        (
            "UPDATE directus_settings SET public_registration = true, public_registration_role = "
            "(SELECT id FROM directus_roles WHERE name = 'Governance Council')",
        ),
        "anyone who registers (public registration) can read os_proposals "
        "(via policy 'Governance Approvers', through role 'Governance Council')",
    ),
    "admin access on a policy": (
        ("UPDATE directus_policies SET admin_access = true WHERE name = 'Automation'",),
        f"the user {AGENT} can do anything: admin_access (via policy 'Automation', through role 'Automation')",
    ),
    "a user moved into a role": (
        (
            f"UPDATE directus_users SET role = (SELECT id FROM directus_roles WHERE name = 'Administrator') "
            f"WHERE email = '{AGENT}'",
        ),
        f"the user {AGENT} can do anything: admin_access (via policy 'Administrator', through role 'Administrator')",
    ),
}


@pytest.fixture(scope="module")
def conn(test_server: Any, unique: Any) -> Iterator[psycopg.Connection[Any]]:
    name = unique("privileges")
    clones.create(test_server.admin, source=test_server.golden, name=name, wait=60)
    try:
        with connect(test_server.dsn(name)) as c:
            yield c
    finally:
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
            )


@pytest.mark.parametrize("case", list(ARRIVALS))
def test_a_privilege_arriving_another_way_is_named(conn: psycopg.Connection[Any], case: str) -> None:
    statements, sentence = ARRIVALS[case]
    before = privileges.read(conn)
    try:
        for statement in statements:
            conn.execute(statement.encode())
        after = privileges.read(conn)
    finally:
        conn.rollback()
    assert sentence in privileges.differences(before, after)


def test_the_golden_set_is_the_baselines(conn: psycopg.Connection[Any]) -> None:
    """The package's baseline pins the golden database's set (a clone of it reads the same)."""
    found = privileges.read(conn)
    conn.rollback()
    assert (
        privileges.unchanged(found, privileges.pinned(SNAPSHOTS, "baseline", "test_effective_privileges"), "") is None
    )


def test_the_stages_differ_by_exactly_the_release_grants() -> None:
    """Greenfield pins the baseline's set; finalized pins it plus the One-Roof policy's grants, and
    those only read (and use the app), only for the Governance Council and its members.
    """
    for test in ("test_effective_privileges", "test_governance_writes"):
        base, green, final = (
            privileges.pinned(SNAPSHOTS, stage, test) for stage in ("baseline", "greenfield", "finalized")
        )
        assert base and green == base
        added = [(actor, entry) for actor, entry in _pairs(final) if (actor, entry) not in set(_pairs(base))]
        assert set(_pairs(base)) <= set(_pairs(final))
        assert all(f"(via policy {POLICY}" in entry for _, entry in added), added
        assert all(entry.startswith(("read ", privileges.APP)) for _, entry in added), added
        members = {f"the user {a.email}" for a in catalog.ACCOUNTS if a.role == "Governance Council"}
        assert {actor for actor, _ in added} <= {"the Governance Council role"} | members


def _pairs(effective: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(actor, entry) for actor, entries in effective.items() for entry in entries]
