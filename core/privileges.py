"""Who can do what in Directus: the effective Directus 11 permission set of every actor, computed
in SQL, and the differences between two such sets as sentences that name the actor and the object.

Directus 11 resolves an actor's policies (api/src/permissions/lib/fetch-policies and
fetch-roles-tree) as read here:
- an unauthenticated request (the public) holds the policies of the access rows with neither a
  role nor a user;
- a role holds the policies linked to it and to every role above it (`directus_roles.parent`);
- a user holds the policies linked to the user and those of its role (with that role's parents),
  whatever its status: suspending and reinstating a user is the approvals' concern, not a grant;
- with public registration on (`directus_settings.public_registration`), anyone who registers
  holds the policies of the registration role;
- a policy with `admin_access` may do anything, one with `app_access` may use the Data Studio.

The set is plain sorted data, {actor: [what it may do (via which policy)]}, so a stage can pin it
in its snapshot and a changed privilege reads as "the Automation role can update
os_collection_owners (via policy 'X')".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from oneroof.core.content import snapshot_entries

# The governance records: writing them is a governance act, checked on its own.
GOVERNANCE_PREFIX = "os_"
WRITES = ("create", "update", "delete")
# The roles tier 2 grants its policy to, by name (tier2_access.deploy.sql): the baseline pins their ids.
GRANTEES = ("Governance Council",)
ADMIN = "do anything: admin_access"
APP = "use the Data Studio app: app_access"

EFFECTIVE_SQL = """
WITH RECURSIVE tree (role, ancestor, path) AS (
    SELECT r.id, r.id, ARRAY[r.id] FROM directus_roles AS r
    UNION ALL
    SELECT t.role, p.parent, t.path || p.parent
    FROM tree AS t JOIN directus_roles AS p ON p.id = t.ancestor
    WHERE p.parent IS NOT NULL AND NOT p.parent = ANY (t.path)
),
holders (actor, policy, how) AS (
    SELECT 'the public', a.policy, ''
    FROM directus_access AS a WHERE a.role IS NULL AND a."user" IS NULL
    UNION
    SELECT 'the ' || r.name || ' role', a.policy,
           CASE WHEN t.ancestor <> t.role THEN ', inherited from role ' || quote_literal(up.name) ELSE '' END
    FROM tree AS t JOIN directus_roles AS r ON r.id = t.role JOIN directus_roles AS up ON up.id = t.ancestor
    JOIN directus_access AS a ON a.role = t.ancestor
    UNION
    SELECT 'the user ' || coalesce(u.email, u.id::text), a.policy, ', through role ' || quote_literal(up.name)
    FROM directus_users AS u JOIN tree AS t ON t.role = u.role JOIN directus_roles AS up ON up.id = t.ancestor
    JOIN directus_access AS a ON a.role = t.ancestor
    UNION
    SELECT 'the user ' || coalesce(u.email, u.id::text), a.policy, ', linked to the user'
    FROM directus_users AS u JOIN directus_access AS a ON a."user" = u.id
    UNION
    SELECT 'anyone who registers (public registration)', a.policy, ', through role ' || quote_literal(up.name)
    FROM directus_settings AS s JOIN tree AS t ON t.role = s.public_registration_role
    JOIN directus_roles AS up ON up.id = t.ancestor JOIN directus_access AS a ON a.role = t.ancestor
    WHERE s.public_registration
)
SELECT DISTINCT h.actor, e.what || ' (via policy ' || quote_literal(pol.name) || h.how || ')' AS entry
FROM holders AS h
JOIN directus_policies AS pol ON pol.id = h.policy
CROSS JOIN LATERAL (
    SELECT %(admin)s AS what WHERE pol.admin_access
    UNION ALL
    SELECT %(app)s WHERE pol.app_access
    UNION ALL
    SELECT p.action || ' ' || p.collection
           || CASE WHEN coalesce(p.fields, '*') <> '*' THEN ' [fields ' || p.fields || ']' ELSE '' END
           || CASE WHEN coalesce(p.permissions::text, '{}') NOT IN ('{}', 'null')
                   THEN ' [where ' || p.permissions::text || ']' ELSE '' END
    FROM directus_permissions AS p WHERE p.policy = pol.id
) AS e
"""


def read(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """The effective permission set of every actor, inside the caller's transaction:
    {actor: sorted entries}, actors sorted.
    """
    rows = conn.execute(EFFECTIVE_SQL, {"admin": ADMIN, "app": APP}).fetchall()
    found: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        found[row["actor"]].append(row["entry"])
    return {actor: sorted(entries) for actor, entries in sorted(found.items())}


def _writes_governance(entry: str) -> bool:
    if entry.startswith(ADMIN):
        return True
    verb, _, rest = entry.partition(" ")
    return verb in WRITES and rest.startswith(GOVERNANCE_PREFIX)


def governance_writes(effective: dict[str, list[str]]) -> dict[str, list[str]]:
    """The part of an effective set that writes governance records (os_* collections, or anything
    with admin_access): who can create, update or delete owners, approvals, proposals, the ledger.
    """
    kept = {actor: [e for e in entries if _writes_governance(e)] for actor, entries in effective.items()}
    return {actor: entries for actor, entries in kept.items() if entries}


def differences(expected: dict[str, list[str]], found: dict[str, list[str]]) -> list[str]:
    """What `found` grants beyond `expected` and what it no longer grants, one sentence each:
    "the Automation role can update os_collection_owners (via policy 'X')".
    """
    gained, lost = [], []
    for actor in sorted(set(expected) | set(found)):
        want, got = set(expected.get(actor, ())), set(found.get(actor, ()))
        gained += [f"{actor} can {entry}" for entry in sorted(got - want)]
        lost += [f"{actor} can no longer {entry}" for entry in sorted(want - got)]
    return gained + lost


def pinned(snapshots: Path, stage: str, test: str) -> Any:
    """The value the package's snapshot of `stage` (in `snapshots`, `package.snapshots_dir`) pins for
    `test`; None when it pins none yet.
    """
    return snapshot_entries(snapshots / f"test_{stage}.ambr").get(test)


def shown(sentences: list[str], limit: int = 12) -> str:
    """Sentences joined for a failure message, the first `limit` of them."""
    more = f"; and {len(sentences) - limit} more" if len(sentences) > limit else ""
    return "; ".join(sentences[:limit]) + more


def unchanged(found: dict[str, list[str]], want: Any, what: str) -> str | None:
    """None when `found` grants exactly the pinned `want` (or nothing is pinned yet), else a message
    naming each actor that gained or lost a privilege.
    """
    if want is None:
        return None
    changed = differences(want, found)
    return f"{what}: {shown(changed)}" if changed else None
