"""The release gate (docs/design.md#s5): every condition that must hold before tiers 2-6 may
be applied, each giving its own reason when it does not.

The conditions read the database only; the executor evaluates them once before its pytest gate
session, and again inside its transaction, under the release lock.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from oneroof.core import assumptions, ledger, settings, signatures
from oneroof.core import evidence as rehearsals
from oneroof.core.content import POLICY_ID, POLICY_NAME, TIER2_COLLECTIONS
from oneroof.core.package import APPROVER_LEVELS, MIN_APPROVALS, Package
from oneroof.harness.marks import connected_is_clone, is_golden

LOCK_KEY = (0x6F6E6572, 0x6F6F6601)  # 'oner', 'oof\x01': the release lock, per database
CONDITIONS = ("proposal", "approvals", "target", "rehearsed", "state", "lock", "ledger", "assumptions")
# What to do next, by condition, for the lines that print a BLOCKED reason; kept apart from the
# reasons so that the verdict's text (evidence, --json, reports) stays what it was. The
# conditions whose reasons already name the next step (rehearsed, state) have none here.
NEXT_STEPS = {
    "approvals": f"a human {'/'.join(APPROVER_LEVELS)} approver runs `oneroof approve` (see the approver runbook)",
    "lock": "wait for that executor to finish, or look its pid up in pg_stat_activity before retrying",
    "ledger": "find out who changed os_release_ledger (`oneroof approvals verify` lists what it finds); "
    "nothing is released onto a ledger that lost its history",
}


def with_next_step(condition: str, reason: str) -> str:
    """`reason` followed by the next step for its `condition`, when there is one."""
    step = NEXT_STEPS.get(condition)
    return f"{reason}; next: {step}" if step else reason


@dataclass(frozen=True)
class Approval:
    """One row of os_proposal_approvals with what the gate needs to judge it."""

    id: int
    proposal_code: str | None
    proposal_status: str | None
    package_sha256: str
    level: str
    revoked: bool
    rehearsal: bool
    user_status: str | None
    approver_kind: str | None
    approver_level: str | None
    has_token: bool = False
    spent: bool = False  # named by a deployment (whatever followed), or made before a revert
    approver_id: str = ""
    approver_email: str | None = None
    statements: tuple[str, ...] = ()  # the Directus comments on the row: its signed statements
    created_by: str | None = None  # directus_activity: the user who created the row through Directus
    updates: int = 0  # directus_activity: changes to the row after its creation


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: OPEN when `reasons` is empty."""

    reasons: dict[str, str]
    valid_approvals: tuple[int, ...]
    state: str
    proposal_id: int | None
    notes: list[str] = field(default_factory=list)
    allowed_signers_sha256: str | None = None  # the trust root the approvals were verified against
    statement_nonces: tuple[str, ...] = ()  # the nonces of the valid approvals' statements
    rehearsal_sha256: str | None = None  # the evidence file the target's rollout is bound to (not on a clone)
    spent_approvals: tuple[int, ...] = ()  # valid but for being spent: a deployment carried them already

    @property
    def open(self) -> bool:
        """True when no condition blocks the release."""
        return not self.reasons


# Every function and aggregate is named with its schema: a superuser's look-alike in public
# (`public.unnest(text[])`, an exact match that would beat pg_catalog's polymorphic one) does not
# run here. The operators compare identical built-in types, so pg_catalog's exact match is used.
APPROVALS_SQL = """
SELECT a.id, p.code AS proposal_code, p.status AS proposal_status, a.package_sha256, a.level,
       a.revoked_at IS NOT NULL AS revoked, a.rehearsal, u.status AS user_status,
       r.kind AS approver_kind, r.level AS approver_level, u.token IS NOT NULL AS has_token,
       -- spent by the ledger, whatever follows: a deployment named it, or it was made before a revert
       (EXISTS (SELECT FROM os_release_ledger AS d
                WHERE d.action = 'deploy' AND a.id = ANY (d.approval_ids))
        OR a.approved_at <= (SELECT pg_catalog.max(l.executed_at) FROM os_release_ledger AS l
                             WHERE l.action = 'revert') IS TRUE) AS spent,
       a.approver::text AS approver_id, u.email AS approver_email,
       coalesce((SELECT pg_catalog.array_agg(c.comment ORDER BY c.date_created, c.id)
                 FROM directus_comments AS c
                 WHERE c.collection = 'os_proposal_approvals' AND c.item = a.id::text), '{}') AS statements,
       (SELECT act."user"::text FROM directus_activity AS act
        WHERE act.collection = 'os_proposal_approvals' AND act.item = a.id::text AND act.action = 'create'
        ORDER BY act.id LIMIT 1) AS created_by,
       (SELECT pg_catalog.count(*) FROM directus_activity AS act
        WHERE act.collection = 'os_proposal_approvals' AND act.item = a.id::text AND act.action <> 'create') AS updates
FROM os_proposal_approvals AS a
LEFT JOIN os_proposals AS p ON p.id = a.proposal_id
LEFT JOIN directus_users AS u ON u.id = a.approver
LEFT JOIN os_approvers AS r ON r.user_id = a.approver
ORDER BY a.id
"""

# A statement is spent once any deploy row carries its nonce, whatever follows (a revert, or
# none, or rows deleted since): no lookup by proposal, which a superuser can rename.
SPENT_NONCES_SQL = """
SELECT DISTINCT n.nonce
FROM os_release_ledger AS d CROSS JOIN LATERAL pg_catalog.unnest(d.statement_nonces) AS n (nonce)
WHERE d.action = 'deploy'
"""

STATE_SQL = """
SELECT (SELECT count(*) FROM os_collection_inventory) AS inventory,
       (SELECT count(*) FROM os_collection_owners) AS owners,
       (SELECT count(*) FROM os_governance_gap) AS gap
"""

# Every kind of object tiers 2-6 create or register, each named: the One-Roof policy (by its id,
# or by its name whatever the case and the surrounding spaces), the access rows and permissions
# of such a policy, the governance collections' metadata and fields in Directus, the axes, label
# rules, lifecycle policies, event bindings and owners, and a proposal left ratified. A greenfield
# target has none of them.
_ONE_ROOF = "(SELECT id FROM directus_policies WHERE id = %(policy)s OR lower(btrim(name)) = lower(%(name)s))"
LEFTOVERS_SQL = f"""
SELECT kind || ' ' || object AS leftover FROM (
    SELECT 'policy', quote_literal(p.name) || ' (' || p.id || ')'
           || CASE WHEN p.admin_access THEN ' with admin_access' ELSE '' END
    FROM directus_policies AS p WHERE p.id IN {_ONE_ROOF}
    UNION ALL
    SELECT 'access row', 'linking policy ' || quote_literal(pol.name) || ' to '
           || coalesce('role ' || quote_literal(r.name), 'user ' || coalesce(u.email, u.id::text), 'the public')
    FROM directus_access AS a JOIN directus_policies AS pol ON pol.id = a.policy
    LEFT JOIN directus_roles AS r ON r.id = a.role LEFT JOIN directus_users AS u ON u.id = a."user"
    WHERE a.policy IN {_ONE_ROOF}
    UNION ALL
    SELECT 'permission', p.action || ' ' || p.collection || ' of policy ' || quote_literal(pol.name)
    FROM directus_permissions AS p JOIN directus_policies AS pol ON pol.id = p.policy
    WHERE p.policy IN {_ONE_ROOF}
    UNION ALL
    SELECT 'collection metadata', collection FROM directus_collections WHERE collection = ANY (%(tier2)s)
    UNION ALL
    SELECT 'field', collection || '.' || field
           || CASE WHEN readonly THEN '' ELSE ' (writable)' END
    FROM directus_fields WHERE collection = ANY (%(tier2)s)
    UNION ALL
    SELECT 'axis', collection || ' ' || axis || '=' || value FROM os_collection_axes
    UNION ALL
    SELECT 'label rule', collection || ' ' || effect || ' ' || label FROM os_label_rules
    UNION ALL
    SELECT 'lifecycle policy', collection FROM os_lifecycle_policies
    UNION ALL
    SELECT 'event binding', collection || ' ' || event FROM os_event_bindings
    UNION ALL
    SELECT 'owner', collection || ' ' || owner_unit || CASE WHEN active THEN '' ELSE ' (inactive)' END
    FROM os_collection_owners
    UNION ALL
    SELECT 'proposal', code || ' is ratified' FROM os_proposals WHERE status = 'ratified'
) AS o (kind, object)
ORDER BY kind || ' ' || object COLLATE "C"
"""


def spent_nonces(conn: psycopg.Connection[Any], release_log: ledger.ReleaseLog | None) -> frozenset[str]:
    """Every statement a deployment carried: by any deploy row of the ledger, and by the release log."""
    spent = frozenset(r["nonce"] for r in conn.execute(SPENT_NONCES_SQL).fetchall())
    return spent | release_log.spent_nonces() if release_log is not None else spent


def approval_problem(approval: Approval, package: Package, on_clone: bool) -> str | None:
    """Why this approval does not count, or None when it is valid."""
    if approval.proposal_code != package.proposal:
        return f"for proposal {approval.proposal_code}, not {package.proposal}"
    if approval.proposal_status not in ("pending", "ratified"):
        return f"its proposal is {approval.proposal_status}"
    if approval.package_sha256 != package.sha256:
        return f"names package {approval.package_sha256[:12]}, not {package.sha256[:12]}"
    if approval.revoked:
        return "revoked"
    if approval.user_status != "active":
        return f"approver is {approval.user_status or 'not a Directus user'}"
    if approval.approver_kind is None:
        return "approver is not registered in os_approvers"
    if approval.approver_kind != "human":
        article = "an" if approval.approver_kind[:1] in "aeiou" else "a"
        return f"approver is {article} {approval.approver_kind} account"
    if approval.approver_level not in package.levels or approval.approver_level not in APPROVER_LEVELS:
        return f"approver level {approval.approver_level} is not one of {'/'.join(package.levels)}"
    if approval.level != approval.approver_level:
        return f"claims level {approval.level} but the approver is {approval.approver_level}"
    if approval.has_token:
        return "approver has a static token, so automation could act as them"
    if approval.spent:
        return "authorised a deployment already (an approval opens the gate once); ratify again"
    if approval.rehearsal and not on_clone:
        return "a rehearsal approval on a database that is not a marked clone"
    if approval.created_by is not None and approval.created_by != approval.approver_id:
        return f"Directus shows it was created by user {approval.created_by}, not by its approver"
    if approval.updates:
        return f"Directus shows it was changed after its creation ({approval.updates} change(s))"
    return None


@dataclass(frozen=True)
class Signing:
    """What the signature checks of one evaluation need: the trust root, the target, the clock."""

    trust: signatures.TrustRoot | None
    database: str
    system_identifier: str | None
    now: dt.datetime
    sealers: frozenset[str] = frozenset()  # principals the allowed signers list for the sealer's key
    spent_nonces: frozenset[str] = frozenset()  # statements a deployment carried (the ledger, the release log)
    database_oid: str | None = None  # the target's pg_database.oid: its identity on the cluster
    identity_problem: str | None = None  # why the cluster's identity cannot be read or trusted
    revoked_nonces: frozenset[str] = frozenset()  # statements carried by a revoked approval: spent by it
    rehearsal_sha256: str | None = (
        None  # the evidence a rollout off a clone is bound to: a statement naming other evidence does not count
    )
    require_user_verification: bool = False  # the policy: only user-verified authenticators count


def statement_problem(
    approval: Approval,
    package: Package,
    signing: Signing,
    nonces: dict[str, int],
    keys: dict[int, str] | None = None,
) -> str | None:
    """Why the approval's signed statement does not make it count, or None when one verifies (its
    signing key's fingerprint then goes into `keys`, by approval id).

    A statement counts once: a row carrying the statement (nonce) of an earlier row replays it,
    and so does one carrying the statement of a revoked row.
    """
    if not approval.statements:
        return "no signed statement (the approver signs with `oneroof approve`)"
    if signing.trust is None:
        return (
            f"no allowed signers to verify its statement against: pass --allowed-signers FILE or set {signatures.ENV}"
        )
    if signing.identity_problem:
        return signing.identity_problem
    problems = []
    for text in approval.statements:
        try:
            statement, fingerprint = signatures.check(
                text,
                signing.trust,
                approver_id=approval.approver_id,
                approver_email=approval.approver_email or "",
                level=approval.level,
                package_sha256=package.sha256,
                proposal=package.proposal,
                database=signing.database,
                database_oid=signing.database_oid,
                system_identifier=signing.system_identifier,
                now=signing.now,
                rehearsal_sha256=signing.rehearsal_sha256,
                # a rehearsal's one-off signer stays as it is (its rows count on a marked clone only)
                require_user_verification=signing.require_user_verification and not approval.rehearsal,
            )
        except signatures.BadStatement as exc:
            problems.append(str(exc))
            continue
        if package.sealer_key is not None and fingerprint == package.sealer_key:
            problems.append(f"signed by {fingerprint}, the key that sealed the package (four eyes)")
            continue
        if statement.approver_email.lower() in signing.sealers:
            problems.append(f"its approver {statement.approver_email} sealed the package (four eyes)")
            continue
        if statement.nonce in signing.spent_nonces:
            problems.append(
                "its statement authorised a deployment already (a statement opens the gate once); sign a new one"
            )
            continue
        if statement.nonce in signing.revoked_nonces:
            problems.append("its statement is the one of a revoked approval (a revocation spends it); sign a new one")
            continue
        if statement.nonce in nonces and nonces[statement.nonce] != approval.id:
            problems.append(f"its statement is the one of #{nonces[statement.nonce]} (a statement counts once)")
            continue
        nonces[statement.nonce] = approval.id
        if keys is not None:
            keys[approval.id] = fingerprint
        return None
    return problems[0] if len(problems) == 1 else "; ".join(dict.fromkeys(problems))


def clock(now: dt.datetime | None) -> dt.datetime:
    """The time statements are judged at: `now` when a caller gives one (the tests), else this
    machine's clock (never the database's, nor none: a statement is always judged at a time).
    """
    return now or dt.datetime.now(dt.UTC)


# The catalog objects the target's identity is read through, by their fixed OIDs (the same in
# every PostgreSQL release since 9.6): a superuser can rename a built-in and put a function or
# view of their own under its name, or CREATE OR REPLACE it; the OID, the internal language and
# the C symbol of a built-in they cannot give to something else.
BUILTIN_FUNCTIONS = {"pg_catalog.pg_control_system()": 3441}
BUILTIN_RELATIONS = {"pg_catalog.pg_proc": 1255, "pg_catalog.pg_database": 1262}
BUILTIN_SQL = """
SELECT pg_catalog.to_regprocedure(%(name)s) IS NOT DISTINCT FROM %(oid)s::pg_catalog.oid AS resolves,
       (SELECT p.pronamespace = 11 AND p.prolang = 12 AND p.prosrc = p.proname::pg_catalog.text
               AND %(name)s = 'pg_catalog.' || p.proname::pg_catalog.text || '()'
        FROM pg_catalog.pg_proc AS p WHERE p.oid = %(oid)s::pg_catalog.oid) AS builtin
"""


def builtin_problem(conn: psycopg.Connection[Any]) -> str | None:
    """Why the target's identity cannot be read through PostgreSQL's own built-ins (one of them
    was replaced or renamed by a superuser), or None.
    """
    for name, oid in BUILTIN_RELATIONS.items():
        row = conn.execute("SELECT pg_catalog.to_regclass(%s)::pg_catalog.oid AS oid", (name,)).fetchone()
        if not row or row["oid"] != oid:
            return f"{name} is not PostgreSQL's catalog (OID {oid}): a superuser replaced it"
    for name, oid in BUILTIN_FUNCTIONS.items():
        row = conn.execute(BUILTIN_SQL, {"name": name, "oid": oid}).fetchone()
        if not (row and row["resolves"] and row["builtin"]):
            return (
                f"{name} is not PostgreSQL's built-in function (OID {oid}, language internal): a superuser "
                "renamed or replaced it, so the cluster's identity cannot be trusted"
            )
    return None


def cluster_identity(conn: psycopg.Connection[Any]) -> tuple[str | None, str | None]:
    """(the cluster's system_identifier, None), or (None, why it cannot be read): the role may not
    call pg_control_system(), or the function its name resolves to is not the built-in.
    """
    faked = builtin_problem(conn)
    if faked:
        return None, faked
    row = conn.execute(
        "SELECT pg_catalog.has_function_privilege(%s::pg_catalog.oid, 'EXECUTE') AS ok",
        (BUILTIN_FUNCTIONS["pg_catalog.pg_control_system()"],),
    ).fetchone()
    if not (row and row["ok"]):
        return None, (
            "the cluster's system_identifier cannot be read (pg_control_system() is not granted "
            "to this role): grant it EXECUTE on pg_control_system() or the pg_monitor role"
        )
    row = conn.execute("SELECT system_identifier::text AS id FROM pg_catalog.pg_control_system()").fetchone()
    faked = builtin_problem(conn)  # again: not swapped while it was called
    if faked or not row:
        return None, faked or "pg_control_system() returned no row"
    return str(row["id"]), None


def system_identifier(conn: psycopg.Connection[Any]) -> str | None:
    """The cluster's system_identifier (pg_control_system(), the built-in), or None when it cannot be
    read or trusted (cluster_identity says why).
    """
    return cluster_identity(conn)[0]


def database_oid(conn: psycopg.Connection[Any]) -> str | None:
    """The OID of the database `conn` is connected to (pg_database.oid), which a statement binds:
    a rename keeps it, and a copy under the old name (CREATE DATABASE ... TEMPLATE) gets another.
    None when the catalog is not PostgreSQL's own.
    """
    if builtin_problem(conn):
        return None
    row = conn.execute(
        "SELECT d.oid::pg_catalog.text AS oid FROM pg_catalog.pg_database AS d WHERE d.datname = %s",
        (conn.info.dbname,),
    ).fetchone()
    return str(row["oid"]) if row else None


def leftovers(conn: psycopg.Connection[Any]) -> list[str]:
    """Every object of tiers 2-6 on the target, each named ("field os_collection_owners.owner_unit
    (writable)"), sorted; none on a greenfield target.
    """
    params = {"policy": POLICY_ID, "name": POLICY_NAME, "tier2": list(TIER2_COLLECTIONS)}
    return [r["leftover"] for r in conn.execute(LEFTOVERS_SQL, params).fetchall()]


def state(conn: psycopg.Connection[Any]) -> str:
    """Greenfield (no object of tiers 2-6 of any kind: `leftovers`), finalized (every facet present)
    or mixed.
    """
    row = conn.execute(STATE_SQL).fetchone()
    assert row is not None
    if row["gap"] == 6 * row["inventory"] and not leftovers(conn):
        return "greenfield"
    if row["gap"] == 0 and row["owners"] == row["inventory"] > 0:
        return "finalized"
    return "mixed"


def mixed_reason(conn: psycopg.Connection[Any]) -> str:
    """The BLOCKED reason of a mixed target, naming what of tiers 2-6 is there."""
    found = leftovers(conn)
    shown = "; ".join(found[:6]) + (f"; and {len(found) - 6} more" if len(found) > 6 else "")
    detail = f" ({shown})" if found else ""
    return f"state=mixed: some tier 2-6 facets are present{detail}; run `oneroof rollback` first"


def read_only_target(conn: psycopg.Connection[Any]) -> str | None:
    """Why the connected database can never take the release, or None.

    A golden database (the oneroof.golden mark, from the catalog) is the rehearsals' template and
    is read-only by default_transaction_read_only; any database that is read-only by default
    would fail late, inside the release transaction. Either is named here, up front.
    """
    database = conn.info.dbname
    if is_golden(conn, database):
        return (
            f"{database!r} is a golden database (oneroof.golden mark): a golden database is never a rollout "
            "target; clone it with `oneroof clone create` and roll out on the clone, or name production"
        )
    row = conn.execute("SELECT current_setting('default_transaction_read_only') AS ro").fetchone()
    if row and row["ro"] == "on":
        return (
            f"{database!r} is read-only by default (default_transaction_read_only=on), so the release "
            "transaction cannot write: roll out on a clone (`oneroof clone create`), or on a writable target"
        )
    return None


def lock_holder(conn: psycopg.Connection[Any]) -> int | None:
    """The pid of another session holding the release lock on this database, if any."""
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s::bigint::oid "
        "AND objid = %s::bigint::oid AND objsubid = 2 AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) AND pid <> pg_backend_pid()",
        LOCK_KEY,
    ).fetchone()
    return int(row["pid"]) if row else None


def _proposal_reason(conn: psycopg.Connection[Any], package: Package) -> tuple[str | None, int | None]:
    """Why the package's proposal cannot be released (None when it can), and its id."""
    proposal = conn.execute(
        "SELECT id, status, package_sha256 FROM os_proposals WHERE code = %s", (package.proposal,)
    ).fetchone()
    if proposal is None:
        return f"proposal {package.proposal} does not exist", None
    if proposal["status"] not in ("pending", "ratified"):
        return f"proposal {package.proposal} is {proposal['status']}", proposal["id"]
    if proposal["package_sha256"] != package.sha256:
        return (
            f"proposal {package.proposal} names package {proposal['package_sha256'][:12]}, "
            f"not this package {package.sha256[:12]}"
        ), proposal["id"]
    return None, proposal["id"]


@dataclass(frozen=True)
class _Approvals:
    """What the gate found of the approvals: the rows, the valid ids, why the others do not count,
    the nonce of each counted statement, and the valid approvals by an approver (or a key) that an
    earlier valid one already stands for.
    """

    rows: int
    valid: tuple[int, ...]
    invalid: tuple[str, ...]
    nonces: dict[str, int]
    repeats: tuple[str, ...] = ()
    spent: tuple[int, ...] = ()  # refused only because a deployment spent them (finalized owners rest on them)

    @property
    def approvers(self) -> int:
        """How many distinct approvers the valid approvals stand for."""
        return len(self.valid) - len(self.repeats)


def signatures_required(package: Package, on_clone: bool) -> bool:
    """Whether approvals count only with a signed statement: always off a marked clone, whatever
    the manifest says (`require_signatures` only raises that, for the clones).
    """
    return package.require_signatures or not on_clone


def user_verification_required(package: Package, executor: bool = False) -> bool:
    """Whether only approvals by a user-verified authenticator count (a passkey, or a FIDO key the
    trust file lists with verify-required): when the manifest says require_user_verification, or
    the executor does (`executor`, or its setting's environment variable), whatever the manifest says.
    """
    env = os.environ.get(settings.REQUIRE_USER_VERIFICATION.env, "")
    return package.require_user_verification or executor or settings.truthy(env)


def revoked_nonces(rows: list[Approval]) -> frozenset[str]:
    """The nonces of the statements that revoked rows carry: a revocation spends its statement, so
    a copy of it on another row does not undo the revocation. Read without verifying (a forged
    statement here can only block, which a writer of the database can do anyway).
    """
    found = set()
    for approval in rows:
        for text in approval.statements if approval.revoked else ():
            try:
                found.add(signatures.statement_of(text).nonce)  # SSH-signed or passkey alike
            except signatures.BadStatement:
                continue
    return frozenset(found)


def _problem(
    approval: Approval,
    package: Package,
    signing: Signing,
    on_clone: bool,
    nonces: dict[str, int],
    keys: dict[int, str] | None = None,
) -> str | None:
    """Why one approval does not count: by the policy, then (off a marked clone, or when the
    package requires signatures) by its statement.
    """
    problem = approval_problem(approval, package, on_clone)
    if problem is None and signatures_required(package, on_clone):
        problem = statement_problem(approval, package, signing, nonces, keys)
    return problem


def _judge_approvals(rows: list[Approval], package: Package, signing: Signing, on_clone: bool) -> _Approvals:
    """Every approval row judged; then which valid ones repeat an approver: the same Directus
    user, or the same signing key (listed for two emails), counts once. Those refused only because
    a deployment spent them are listed apart (the finalized stage's owners rest on them).
    """
    nonces: dict[str, int] = {}
    keys: dict[int, str] = {}
    approvers: dict[str, int] = {}  # a Directus user, or a signing key -> the first valid approval of it
    signing = replace(signing, revoked_nonces=signing.revoked_nonces | revoked_nonces(rows))
    unspent, spent_nonces = replace(signing, spent_nonces=frozenset()), dict[str, int]()
    valid, invalid, repeats, spent = [], [], [], []
    for approval in rows:
        problem = _problem(approval, package, signing, on_clone, nonces, keys)
        if problem is not None:
            invalid.append(f"#{approval.id} {problem}")
            if (approval.spent or signing.spent_nonces) and (
                _problem(replace(approval, spent=False), package, unspent, on_clone, spent_nonces) is None
            ):
                spent.append(approval.id)
            continue
        valid.append(approval.id)
        who = [f"user {approval.approver_id}"] + ([f"key {keys[approval.id]}"] if approval.id in keys else [])
        first = next((approvers[w] for w in who if w in approvers), None)
        if first is not None:
            repeats.append(f"#{approval.id} is by the same approver (or key) as #{first}")
        for w in who:
            approvers.setdefault(w, approval.id if first is None else first)
    return _Approvals(len(rows), tuple(valid), tuple(invalid), nonces, tuple(repeats), tuple(spent))


def _approvals_reason(found: _Approvals, package: Package, notes: list[str]) -> str | None:
    """Why the approvals do not open the gate (None when enough are valid, by enough distinct
    approvers); notes the ignored ones.
    """
    needed = max(package.min_approvals, MIN_APPROVALS)
    if len(found.valid) < needed:
        # `ospa` keeps the source document's meaning, the rows of os_proposal_approvals; the
        # gate's own count is "valid approvals".
        rows_text = f"{found.rows} approval row{'' if found.rows == 1 else 's'}"
        invalid = found.invalid
        detail = f" (ospa={found.rows}: {rows_text}, {len(invalid)} not valid: {'; '.join(invalid)})" if invalid else ""
        return f"valid approvals {len(found.valid)} < {needed}{detail}"
    if found.approvers < needed:
        return (
            f"valid approvals {len(found.valid)} by {found.approvers} distinct approver"
            f"{'' if found.approvers == 1 else 's'} < {needed}: each approver counts once ({'; '.join(found.repeats)})"
        )
    if found.invalid:
        notes.append(f"ignored approvals: {'; '.join(found.invalid)}")
    return None


def _target_reason(conn: psycopg.Connection[Any], confirm_db: str | None) -> tuple[str | None, str | None]:
    """Why the target cannot take the release (the name the operator confirmed, a read-only
    database), and the read-only part alone.
    """
    reasons = []
    database = conn.info.dbname
    if confirm_db is not None and confirm_db != database:
        reasons.append(f"connected to {database!r}, but the operator named {confirm_db!r} (--confirm-db)")
    unwritable = read_only_target(conn)
    if unwritable:
        reasons.append(unwritable)
    return ("; ".join(reasons) or None), unwritable


def _rehearsed(
    conn: psycopg.Connection[Any],
    package: Package,
    rehearsal: rehearsals.Rehearsal | None,
    signing: Signing,
    on_clone: bool,
    notes: list[str],
) -> tuple[str | None, str | None]:
    """Why the target is not bound to a GO rehearsal of this package (None when it is, or needs
    none), and the SHA-256 of the evidence it is bound to.
    """
    if on_clone:
        if rehearsal is not None:
            notes.append("rehearsed: not required on a marked clone (the rehearsal evidence was not compared)")
        return None, None
    unbound = signing.identity_problem or rehearsals.problem(conn, rehearsal, package, signing.system_identifier)
    if unbound:
        return unbound, None
    return None, (rehearsal.sha256 if rehearsal is not None else None)


def evaluate(
    conn: psycopg.Connection[Any],
    package: Package,
    *,
    confirm_db: str | None,
    check_lock: bool = True,
    trust: signatures.TrustRoot | None = None,
    now: dt.datetime | None = None,
    rehearsal: rehearsals.Rehearsal | None = None,
    release_log: ledger.ReleaseLog | None = None,
    require_user_verification: bool = False,
) -> Verdict:
    """Judge every gate condition on `conn` (inside the caller's transaction).

    When the package requires signatures, an approval counts only with a statement that
    verifies against `trust`, the allowed-signers file (never keys from the database), judged
    at `now` (this machine's clock, not the database's). A target that is not a marked clone
    must be bound to `rehearsal`, the evidence of a GO rehearsal on a snapshot of it. A statement
    any deployment carried is spent, by the ledger or by the operator's `release_log`; the ledger's
    chain must hold, and keep the head the release log recorded for this target. Under the
    user-verification policy (`user_verification_required`) only user-verified authenticators count.
    """
    found: dict[str, str | None] = {}
    notes: list[str] = []
    found["proposal"], proposal_id = _proposal_reason(conn, package)
    on_clone = connected_is_clone(conn)
    rows = [Approval(**{**r, "statements": tuple(r["statements"])}) for r in conn.execute(APPROVALS_SQL).fetchall()]
    sealers = (
        frozenset(p.lower() for p in signatures.principals(package.seal_signature, trust))
        if package.seal_signature and trust is not None
        else frozenset()
    )
    spent = spent_nonces(conn, release_log)
    cluster, unknown = cluster_identity(conn)
    signing = Signing(trust, conn.info.dbname, cluster, clock(now), sealers, spent, database_oid(conn), unknown)
    signing = replace(signing, require_user_verification=user_verification_required(package, require_user_verification))
    if rehearsal is not None and not on_clone:
        signing = replace(signing, rehearsal_sha256=rehearsal.sha256)
    approvals = _judge_approvals(rows, package, signing, on_clone)
    found["approvals"] = _approvals_reason(approvals, package, notes)
    found["target"], unwritable = _target_reason(conn, confirm_db)
    bound = None
    if on_clone or unwritable is None:  # a database that can never take the release needs no rehearsal either
        found["rehearsed"], bound = _rehearsed(conn, package, rehearsal, signing, on_clone, notes)
    current = state(conn)
    if current == "mixed":
        found["state"] = mixed_reason(conn)
    elif current == "finalized":
        notes.append("state=finalized: tiers 2-6 are already applied")
    found["assumptions"] = assumptions.problem(conn, trust, notes)
    holder = lock_holder(conn) if check_lock else None
    if holder is not None:
        found["lock"] = f"the release lock is held by another executor (pid {holder})"
    found["ledger"] = "; ".join(ledger.integrity_problems(conn, release_log, signing.system_identifier)) or None
    return Verdict(
        {k: v for k, v in found.items() if v is not None},
        approvals.valid,
        current,
        proposal_id,
        notes,
        trust.sha256 if trust is not None else None,
        tuple(sorted(n for n, i in approvals.nonces.items() if i in approvals.valid)),
        bound,
        approvals.spent,
    )
