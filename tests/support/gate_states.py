"""The states tests/test_gate.py judges gate.state by, as data: each case names the state it
must read (before any colon) and the steps that make it. bench/mutation.py replays them too.
"""

from __future__ import annotations

from typing import Any

import psycopg

from oneroof.core import gate, package
from oneroof.harness import catalog

PKG = package.load()

STATES = {
    "greenfield": [],
    "finalized": ["tiers"],
    "finalized: an inventory of one collection": [
        "DELETE FROM os_collection_inventory WHERE collection <> 'kh_tags'",
        "tiers",
    ],
    "mixed: one axis": ["INSERT INTO os_collection_axes VALUES ('kh_tags', 'domain', 'documents')"],
    "mixed: an inactive owner": [
        "INSERT INTO os_collection_owners (collection, owner_unit, proposal_id, approval_ids, "
        "active) SELECT 'kh_tags', 'DOT', id, '{}', false FROM os_proposals WHERE code = "
        "'OR-T3-OWNERSHIP-SEED'"
    ],
    "mixed: finalized but one owner": ["tiers", "DELETE FROM os_collection_owners WHERE collection = 'kh_tags'"],
    "mixed: finalized but one lifecycle": ["tiers", "DELETE FROM os_lifecycle_policies WHERE collection = 'kh_tags'"],
    "mixed: finalized but the permissions": [
        "tiers",
        "DELETE FROM directus_permissions WHERE policy = '75c09095-c4f0-5d33-aaa1-31764f52c0b5'",
    ],
    # Greenfield means empty: a leftover of any kind tiers 2-6 write or register is a trace.
    "mixed: a leftover One-Roof policy with admin_access": [
        "INSERT INTO directus_policies (id, name, admin_access, app_access) VALUES "
        "('75c09095-c4f0-5d33-aaa1-31764f52c0b5', 'One-Roof Governance', true, true)"
    ],
    "mixed: a look-alike One-Roof policy linked to the agent user": [
        "INSERT INTO directus_policies (id, name, admin_access, app_access) VALUES "
        "('11111111-2222-3333-4444-555555555555', 'One-Roof Governance ', false, true)",
        'INSERT INTO directus_access (id, role, "user", policy) SELECT gen_random_uuid(), NULL, id, '
        "'11111111-2222-3333-4444-555555555555' FROM directus_users WHERE email = 'one-roof-agent@gov.example.com'",
    ],
    "mixed: a leftover writable field on os_collection_owners": [
        "INSERT INTO directus_fields (collection, field, readonly) VALUES ('os_collection_owners', 'owner_unit', false)"
    ],
    "mixed: the ledger's collection metadata": [
        "INSERT INTO directus_collections (collection) VALUES ('os_release_ledger')"
    ],
    "mixed: the proposal left ratified": ["UPDATE os_proposals SET status = 'ratified'"],
    # No collection governed any more, so no owner is missing and no gap is left: the permissions
    # left behind are still a trace, not a finalized release.
    "mixed: no inventory, the permissions left": [
        "tiers",
        "DELETE FROM os_collection_owners",
        "DELETE FROM os_collection_axes",
        "DELETE FROM os_label_rules",
        "DELETE FROM os_lifecycle_policies",
        "DELETE FROM os_event_bindings",
        "DELETE FROM os_collection_inventory",
    ],
}


def deploy_tiers(conn: psycopg.Connection[Any]) -> None:
    """Deploy tiers 2-6 in `conn`'s open transaction, under the settings a rollout gives them; the
    caller rolls back.
    """
    conn.execute(
        "SELECT set_config('oneroof.proposal', %s, true), set_config('oneroof.approval_ids', '{1}', true)",
        (catalog.PROPOSAL_CODE,),
    )
    for tier in PKG.tiers:
        for statement in tier.deploy_statements:
            conn.execute(statement.encode())


def state_after(conn: psycopg.Connection[Any], case: str) -> str:
    """gate.state after the steps of STATES[case], all rolled back ("tiers": deploy tiers 2-6)."""
    try:
        for step in STATES[case]:
            if step == "tiers":
                deploy_tiers(conn)
            else:
                conn.execute(step)
        return gate.state(conn)
    finally:
        conn.rollback()
