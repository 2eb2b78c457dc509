"""What the gate itself relies on, checked as a gate condition of its own ("assumptions").

The approvals condition trusts Directus's activity log (who created an approval row, and whether
it changed since), so Directus must still record activity on os_proposal_approvals; it trusts
that `approver` is the logged-in user, so the field must still be `user-created` and no create
permission may let a client send it; and it verifies statements against the allowed-signers
file, whose principals must be the people who approve: each an active human L2/L4 approver.
"""

from __future__ import annotations

import shlex
from typing import Any

import psycopg

from oneroof.core import signatures
from oneroof.core.package import APPROVER_LEVELS

APPROVALS = "os_proposal_approvals"

DIRECTUS_SQL = """
SELECT (SELECT accountability FROM directus_collections WHERE collection = %(c)s) AS accountability,
       (SELECT count(*) FROM directus_collections WHERE collection = %(c)s) AS registered,
       (SELECT special FROM directus_fields WHERE collection = %(c)s AND field = 'approver') AS special,
       coalesce((SELECT array_agg(quote_literal(pol.name) || ' (fields ' || coalesce(p.fields, 'all') || ')'
                                  ORDER BY pol.name)
                 FROM directus_permissions AS p JOIN directus_policies AS pol ON pol.id = p.policy
                 WHERE p.collection = %(c)s AND p.action = 'create'
                   AND (p.fields IS NULL OR string_to_array(replace(p.fields, ' ', ''), ',') && ARRAY['*', 'approver']
                        OR coalesce(p.presets::text, '') LIKE '%%"approver"%%')), '{}') AS writable
"""

APPROVERS_SQL = """
SELECT lower(u.email) AS email, u.status, r.kind, r.level
FROM directus_users AS u LEFT JOIN os_approvers AS r ON r.user_id = u.id
WHERE lower(u.email) = ANY (%s)
"""


def trust_principals(trust: signatures.TrustRoot) -> list[str]:
    """The principals an allowed-signers file lists (the first field of each line, comma-separated),
    lower-cased, in file order.
    """
    found: list[str] = []
    for line in trust.data.decode("ascii").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            first = shlex.split(line)[0]
        except ValueError:
            first = line.split()[0]
        found += [p.strip().lower() for p in first.split(",") if p.strip()]
    return list(dict.fromkeys(found))


def _directus_problems(conn: psycopg.Connection[Any]) -> list[str]:
    row = conn.execute(DIRECTUS_SQL, {"c": APPROVALS}).fetchone()
    assert row is not None
    problems = []
    if not row["registered"] or row["accountability"] not in ("all", "activity"):
        problems.append(
            f"Directus records no activity on {APPROVALS} (accountability {row['accountability']!r}): "
            "the gate could not tell who created an approval or whether it changed"
        )
    if "user-created" not in (row["special"] or "").split(","):
        problems.append(
            f"{APPROVALS}.approver is not filled in by Directus (special {row['special']!r}, not user-created): "
            "a client could approve in another's name"
        )
    problems += [
        f"policy {name} may create {APPROVALS} with the approver set by the client" for name in row["writable"]
    ]
    return problems


def _trust_problems(conn: psycopg.Connection[Any], trust: signatures.TrustRoot, notes: list[str]) -> list[str]:
    listed = trust_principals(trust)
    users = {r["email"]: r for r in conn.execute(APPROVERS_SQL, (listed,)).fetchall()}
    problems, unusual = [], []
    for principal in listed:
        user = users.get(principal)
        if user is None:
            problems.append(f"the allowed signers list {principal}, who is no Directus user")
        elif user["kind"] != "human":
            article = "an" if user["kind"] == "agent" else "a"
            what = f"{article} {user['kind']} account" if user["kind"] else "not a registered approver"
            problems.append(f"the allowed signers list {principal}, {what}")
        elif user["status"] != "active" or user["level"] not in APPROVER_LEVELS:
            unusual.append(f"{principal} ({user['status']}, {user['level']})")
    if unusual:
        notes.append(f"the allowed signers list humans who cannot approve now: {', '.join(unusual)}")
    return problems


def problem(conn: psycopg.Connection[Any], trust: signatures.TrustRoot | None, notes: list[str]) -> str | None:
    """Why the gate's own assumptions do not hold on `conn` (None when they do), each named."""
    problems = _directus_problems(conn)
    if trust is not None:
        problems += _trust_problems(conn, trust, notes)
    return "; ".join(problems) or None
