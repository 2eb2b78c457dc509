"""Signed approvals: what `oneroof approve` shows, signs and records through Directus, and what
`oneroof approvals verify` re-checks for auditors, offline (no Directus, no key from the database).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from dataclasses import dataclass, field

from oneroof.core import evidence as rehearsals
from oneroof.core import gate, ledger, settings, signatures
from oneroof.core.ledger import Finding
from oneroof.core.package import Package
from oneroof.executor import directus
from oneroof.harness.db import connect, consistent_read
from oneroof.harness.errors import UsageError
from oneroof.harness.marks import connected_is_clone

SEED_PAIR = re.compile(r"\('([a-z0-9_]+)', '([A-Z][A-Z-]*)'\)")
COMMENT_COLLECTION = "os_proposal_approvals"


@dataclass(frozen=True)
class Plan:
    """What an approver is about to sign: the statement and the facts it was made from."""

    statement: signatures.Statement
    proposal_id: int
    tiers: tuple[str, ...]
    ownership: dict[str, list[str]]

    def summary(self) -> list[str]:
        """What the approver is about to sign, one line per field, for the confirmation prompt."""
        s = self.statement
        lines = [
            f"package      {s.package_sha256}",
            f"proposal     {s.proposal}" + (f" (#{self.proposal_id})" if self.proposal_id else ""),
            *([f"tiers        {', '.join(self.tiers)}"] if self.tiers else []),
            f"target       database {s.database!r} (OID {s.database_oid}) on cluster system_identifier "
            f"{s.system_identifier}",
            f"approver     {s.approver_email} ({s.approver_id}) at level {s.level}",
            f"valid        from {s.issued_at} until {s.expires_at}",
            *([f"rehearsal    evidence sha256 {s.rehearsal_sha256}"] if s.rehearsal_sha256 else []),
            *([f"ownership    {sum(len(v) for v in self.ownership.values())} collections:"] if self.ownership else []),
        ]
        for unit, names in sorted(self.ownership.items()):
            lines.append(f"  {unit:<12} {len(names):>2}: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")
        return lines


def ownership_map(package: Package) -> dict[str, list[str]]:
    """The ownership seed of the package's ownership tier (tier 3): owner unit -> collections."""
    seed: dict[str, list[str]] = {}
    for tier in package.tiers:
        if tier.number == 3:
            for collection, unit in SEED_PAIR.findall(tier.deploy):
                seed.setdefault(unit, []).append(collection)
    return seed


def reviewed(rehearsal: rehearsals.Rehearsal | None, package: Package, database: str, on_clone: bool) -> str | None:
    """The SHA-256 of the rehearsal evidence the statement names: required off a marked clone, where
    the rollout will be bound to it, and then GO and of this package; UsageError otherwise.
    """
    if rehearsal is None:
        if on_clone:
            return None
        raise UsageError(
            f"{database!r} is not a marked clone: pass the evidence of the rehearsal you reviewed with "
            "--rehearsal FILE (the rollout must then use that very file); nothing was signed"
        )
    if not rehearsal.go or rehearsal.package_sha256 != package.sha256:
        why = rehearsal.why_not or f"of package {rehearsal.package_sha256[:12]}"
        raise UsageError(
            f"the rehearsal {rehearsal.path} is not a GO rehearsal of this package ({why}): do not approve; "
            "nothing was signed"
        )
    return rehearsal.sha256


def prepare(
    dsn: str,
    package: Package,
    *,
    email: str,
    valid_for: dt.timedelta,
    rehearsal: rehearsals.Rehearsal | None = None,
) -> Plan:
    """Read, read-only, what the statement names: the target's identity, the proposal, and the
    approver's Directus id and level, and the rehearsal evidence reviewed (see `reviewed`);
    UsageError when any of them does not allow an approval.
    """
    with connect(dsn, application_name="oneroof-approve") as conn, consistent_read(conn):
        on_clone = connected_is_clone(conn)
        cluster, unknown = gate.cluster_identity(conn)
        if cluster is None:
            raise UsageError(f"{unknown}; nothing was signed")
        oid = gate.database_oid(conn)
        assert oid is not None  # the catalog is the built-in one: cluster_identity checked it
        proposal = conn.execute(
            "SELECT id, status, package_sha256 FROM os_proposals WHERE code = %s", (package.proposal,)
        ).fetchone()
        user = conn.execute(
            "SELECT u.id::text AS id, u.email, u.status, r.level, r.kind FROM directus_users AS u "
            "LEFT JOIN os_approvers AS r ON r.user_id = u.id WHERE lower(u.email) = lower(%s)",
            (email,),
        ).fetchone()
        database = conn.info.dbname
    if proposal is None:
        raise UsageError(f"proposal {package.proposal} does not exist in {database!r}: is this the right target?")
    if proposal["package_sha256"] != package.sha256 or proposal["status"] not in ("pending", "ratified"):
        raise UsageError(
            f"proposal {package.proposal} is {proposal['status']} and names package "
            f"{proposal['package_sha256'][:12]}, not this package {package.sha256[:12]}: do not approve"
        )
    if user is None or user["kind"] != "human" or user["status"] != "active":
        raise UsageError(f"{email} is not an active human approver in {database!r} (os_approvers)")
    if user["level"] not in package.levels:
        raise UsageError(f"{email} is at level {user['level']}; this package needs {'/'.join(package.levels)}")
    statement = signatures.Statement.new(
        package_sha256=package.sha256,
        proposal=package.proposal,
        approver_id=user["id"],
        approver_email=user["email"],
        level=user["level"],
        database=database,
        database_oid=oid,
        system_identifier=cluster,
        valid_for=valid_for,
        rehearsal_sha256=reviewed(rehearsal, package, database, on_clone),
    )
    return Plan(
        statement, int(proposal["id"]), tuple(f"{t.number} {t.name}" for t in package.tiers), ownership_map(package)
    )


def sign(plan: Plan, key: str, package: Package, trust: signatures.TrustRoot) -> tuple[str, str]:
    """Sign the plan's statement with the approver's key and judge it as the gate will; (bundle,
    key fingerprint). SigningFailed when the gate would not count it (nothing is recorded then).
    """
    signature = signatures.sign(plan.statement.message(), key)
    try:
        text = signatures.bundle(plan.statement, signature)
    except signatures.BadStatement as exc:
        raise signatures.SigningFailed(f"the new signature does not verify: {exc}") from exc
    return text, counted(plan.statement, text, package, trust)


STATEMENT_FIELDS = (
    "approver_id",
    "approver_email",
    "level",
    "package_sha256",
    "proposal",
    "database",
    "database_oid",
    "system_identifier",
    "rehearsal_sha256",
)


def counted(statement: signatures.Statement, text: str, package: Package | None, trust: signatures.TrustRoot) -> str:
    """The fingerprint of the key that signed `text`, when the gate would count it as the approval
    `statement` describes (gate.statement_problem: every check of signatures.check at this moment,
    and four eyes against `package` when it is known); else SigningFailed with the gate's reason.
    """
    try:
        # What the statement names is what the gate will expect of it: the same fields, by name.
        expected = {name: getattr(statement, name) for name in STATEMENT_FIELDS}
        policy = (  # the package's policy, or the executor's setting when the package is not at hand (--submit)
            gate.user_verification_required(package)
            if package is not None
            else settings.truthy(os.environ.get(settings.REQUIRE_USER_VERIFICATION.env))
        )
        _, fingerprint = signatures.check(
            text, trust, now=gate.clock(None), require_user_verification=policy, **expected
        )
    except signatures.BadStatement as exc:
        raise signatures.SigningFailed(
            f"the gate would not count this approval, so nothing was recorded: {exc}"
        ) from exc
    if package is not None and package.sealer_key == fingerprint:
        raise signatures.SigningFailed(
            f"{fingerprint} sealed this package: the approver must not be its sealer "
            "(four eyes); sign with your own key"
        )
    if package is not None and package.seal_signature:
        sealers = {p.lower() for p in signatures.principals(package.seal_signature, trust)}
        if statement.approver_email.lower() in sealers:
            raise signatures.SigningFailed(
                f"its approver {statement.approver_email} sealed the package (four eyes): "
                "another approver must ratify it; nothing was recorded"
            )
    return fingerprint


def whoami(session: directus.Session) -> tuple[str, str]:
    """The logged-in Directus user: (id, email)."""
    me = session.call("GET", "/users/me?fields=id,email")
    if not isinstance(me, dict) or not me.get("id"):
        raise directus.DirectusRefused("Directus did not say who is logged in (GET /users/me)")
    return str(me["id"]), str(me.get("email") or "")


def handed_over(text: str, trust: signatures.TrustRoot) -> Plan:
    """The plan of a statement signed elsewhere (`approve --out`, or with a passkey in the
    ratification page, which saves it), to record it: the trust file must list its key or passkey
    for its approver, and it must be valid now, as the gate will judge it (which package and
    proposal it names, `record` checks against Directus).
    """
    try:
        statement = signatures.statement_of(text)
    except signatures.BadStatement as exc:
        raise UsageError(f"the handed-over statement cannot be recorded: {exc}") from exc
    counted(statement, text, None, trust)
    return Plan(statement, 0, (), {})


def record(session: directus.Session, plan: Plan, text: str) -> int:
    """Create the approval through Directus as the logged-in approver (Directus fills in
    `approver`), then store the signed statement as a comment on it; the approval's id.
    """
    s = plan.statement
    me, _ = whoami(session)
    if me != s.approver_id:
        raise directus.DirectusRefused(
            f"the Directus login is user {me}, not the approver {s.approver_email} "
            f"({s.approver_id}): log in as yourself"
        )
    proposal_id = plan.proposal_id
    if not proposal_id:  # a handed-over statement: look the proposal up as the approver sees it
        found = session.call(
            "GET", f"/items/os_proposals?filter[code][_eq]={urllib.parse.quote(s.proposal)}&fields=id,package_sha256"
        )
        if not found or found[0].get("package_sha256") != s.package_sha256:
            raise directus.DirectusRefused(
                f"Directus shows no proposal {s.proposal} naming package "
                f"{s.package_sha256[:12]}: the statement is for another release"
            )
        proposal_id = int(found[0]["id"])
    created = session.call(
        "POST",
        "/items/os_proposal_approvals",
        {"proposal_id": proposal_id, "level": s.level, "package_sha256": s.package_sha256},
    )
    if not isinstance(created, dict) or "id" not in created:
        raise directus.DirectusRefused("Directus created the approval but did not return its id")
    approval = int(created["id"])
    try:
        session.call("POST", "/comments", {"collection": COMMENT_COLLECTION, "item": str(approval), "comment": text})
    except directus.DirectusRefused as exc:
        raise directus.DirectusRefused(
            f"approval #{approval} was created, but its signed statement was not stored "
            f"({exc.message}); it does not count: revoke it and run `oneroof approve` "
            "again"
        ) from exc
    return approval


# -- the auditor's re-check -----------------------------------------------------------------------


@dataclass
class Audit:
    """Every approval and every deployment of the target, re-checked against an allowed-signers file."""

    database: str
    system_identifier: str | None
    allowed_signers_sha256: str
    approvals: list[Finding] = field(default_factory=list)
    deployments: list[Finding] = field(default_factory=list)
    ledger: list[str] = field(
        default_factory=list
    )  # where the ledger's chain breaks, or the release log's head is lost

    @property
    def ok(self) -> bool:
        """True when every deployment in the ledger is backed by statements that verify, and the
        ledger's chain holds (with the release log's head, when one is given).
        """
        return all(f.ok for f in self.deployments) and not self.ledger


def audit(dsn: str, trust: signatures.TrustRoot, log: ledger.ReleaseLog | None = None) -> Audit:
    """Re-check, read-only, every approval's statement, every deployment in the ledger and the
    ledger's chain (against the release log's head for this target, when `log` is given).
    """
    with connect(dsn, application_name="oneroof-audit") as conn, consistent_read(conn):
        cluster = gate.system_identifier(conn)
        target = ledger.Target.read(conn, cluster, gate.database_oid(conn))
        broken = ledger.integrity_problems(conn, log, cluster)
    result = Audit(target.database, cluster, trust.sha256, ledger=broken)
    policy = settings.truthy(os.environ.get(settings.REQUIRE_USER_VERIFICATION.env))  # the executor's setting
    for approval_id, row in target.approvals.items():
        statement, detail = ledger.judge(
            row,
            trust,
            package_sha256=row["package_sha256"],
            proposal=row["proposal"] or "",
            database=target.database,
            database_oid=target.oid,
            cluster=cluster,
            at=None,
            require_user_verification=policy,
        )
        result.approvals.append(Finding(f"approval #{approval_id}", statement is not None, detail))
    result.deployments = ledger.audit(target, trust)
    return result
