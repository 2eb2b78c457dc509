"""The release ledger's integrity: the hash chain its rows form, the operator's release log kept
outside the database (the chain's head and every statement a deployment spent), and the audit of
every deployment the ledger records against the allowed signers (`oneroof approvals verify`, the
finalized and greenfield stages, and a rollback's check of the deployment it reverts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from oneroof.core import signatures
from oneroof.harness.errors import UsageError

# What a row's chain hash covers: every column the executor writes, and the hash of the row before.
CHAIN_FIELDS = (
    "action",
    "tier",
    "package_name",
    "package_sha256",
    "proposal_id",
    "approval_ids",
    "database",
    "executed_by",
    "tool_version",
    "executed_at",
    "allowed_signers_sha256",
    "statement_nonces",
    "rehearsal_sha256",
)
LEDGER_SQL = "SELECT id, " + ", ".join(CHAIN_FIELDS) + ", chain_sha256 FROM os_release_ledger ORDER BY id"
# Tier 1 of an older oneroof has no chain column: its owner adds it (docs/gate.md).
CHAIN_COLUMN_SQL = """
SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
               WHERE attrelid = 'public.os_release_ledger'::pg_catalog.regclass
                 AND attname = 'chain_sha256' AND NOT attisdropped) AS chained
"""
ADD_CHAIN_COLUMN = (
    "ALTER TABLE os_release_ledger ADD COLUMN IF NOT EXISTS chain_sha256 text CHECK (chain_sha256 ~ '^[0-9a-f]{64}$')"
)
LOG_NAME = "release-log.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def link(previous: str | None, row: Mapping[str, Any]) -> str:
    """The chain hash of `row`: SHA-256 over its columns and the chain hash of the row before it."""
    body = {name: _plain(row[name]) for name in CHAIN_FIELDS}
    body["previous"] = previous or ""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every ledger row, oldest first, inside the caller's transaction."""
    return [dict(r) for r in conn.execute(LEDGER_SQL).fetchall()]


def head(conn: psycopg.Connection[Any]) -> str | None:
    """The chain hash of the newest ledger row (None for an empty ledger or an unchained row)."""
    row = conn.execute("SELECT chain_sha256 FROM os_release_ledger ORDER BY id DESC LIMIT 1").fetchone()
    return row["chain_sha256"] if row else None


def chain_problems(ledger: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where the chain breaks: a row whose hash does not follow from its columns and the row before
    it (edited, or a row before it deleted or edited), or an unchained row after chained ones.
    Rows from before the chain existed (no hash) may only come first.
    """
    previous: str | None = None
    problems = []
    for row in ledger:
        if row["chain_sha256"] is None:
            if previous is not None:
                problems.append(f"ledger row #{row['id']} carries no chain hash after chained rows (written by hand)")
            continue
        if row["chain_sha256"] != link(previous, row):
            problems.append(
                f"ledger row #{row['id']} does not follow from its columns and the row before it "
                "(it, or a row before it, was edited or deleted)"
            )
        previous = row["chain_sha256"]
    return problems


# -- the release log: outside the database ---------------------------------------------------------


@dataclass(frozen=True)
class ReleaseLog:
    """The operator's append-only release log (JSON lines): for each rollout and rollback it ran,
    the target, the statements the deployment spent and the ledger's chain head after the commit.
    """

    path: Path

    @classmethod
    def at(cls, path: str | Path | None, home: Path) -> ReleaseLog:
        """The log at `path`, else `home`/release-log.jsonl."""
        return cls(Path(path).expanduser() if path else home / LOG_NAME)

    @classmethod
    def from_setting(cls, value: str) -> ReleaseLog | None:
        """The log a verification session was given (--release-log), or None."""
        return cls(Path(value).expanduser()) if value else None

    def records(self) -> list[dict[str, Any]]:
        """Every record (none when the file does not exist yet); UsageError on a line that is not one."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"release log {self.path}: cannot read it ({type(exc).__name__})") from exc
        found = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("nonces", []), list):
                    raise ValueError
            except ValueError:
                raise UsageError(
                    f"release log {self.path}: line {number} is not a release record; restore the "
                    "file from its backup (it is append-only)"
                ) from None
            found.append(record)
        return found

    def spent_nonces(self) -> frozenset[str]:
        """Every statement a deployment this log recorded carried, on any target."""
        return frozenset(str(n) for r in self.records() for n in r.get("nonces", []))

    def head(self, database: str, system_identifier: str | None) -> dict[str, Any] | None:
        """The newest record for this database on this cluster, or None."""
        mine = [
            r
            for r in self.records()
            if (r.get("database"), r.get("system_identifier")) == (database, system_identifier)
        ]
        return mine[-1] if mine else None

    def append(self, record: dict[str, Any]) -> None:
        """Add one record, flushed to disk (the file is created 0600)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            out.flush()
            os.fsync(out.fileno())


def head_problem(
    ledger: Sequence[Mapping[str, Any]], log: ReleaseLog, database: str, cluster: str | None
) -> str | None:
    """Why the ledger is not the one the release log last saw (None when it holds the recorded head)."""
    recorded = log.head(database, cluster)
    if recorded is None or not recorded.get("head"):
        return None
    if any(r["chain_sha256"] == recorded["head"] for r in ledger):
        return None
    return (
        f"the release log {log.path} records the ledger's head {str(recorded['head'])[:12]} after the "
        f"{recorded.get('action', 'release')} of {recorded.get('at', '?')}, which os_release_ledger no longer "
        "holds: rows were deleted or edited since; compare the ledger with the release log before any release"
    )


def integrity_problems(conn: psycopg.Connection[Any], log: ReleaseLog | None, cluster: str | None) -> list[str]:
    """Chain breaks, and a head the release log recorded that the ledger lost, inside the caller's transaction."""
    found = conn.execute(CHAIN_COLUMN_SQL).fetchone()
    if not (found and found["chained"]):
        return [
            "os_release_ledger has no chain_sha256 column (tier 1 of an older oneroof): its owner runs "
            f"`{ADD_CHAIN_COLUMN}` once (docs/gate.md)"
        ]
    ledger = rows(conn)
    problems = chain_problems(ledger)
    if log is not None:
        lost = head_problem(ledger, log, conn.info.dbname, cluster)
        if lost:
            problems.append(lost)
    return problems


# -- the deployments, audited ------------------------------------------------------------------------

APPROVALS_SQL = """
SELECT a.id, a.approver::text AS approver_id, u.email, a.level, a.package_sha256, p.code AS proposal,
       coalesce((SELECT pg_catalog.array_agg(c.comment ORDER BY c.date_created, c.id) FROM directus_comments AS c
                 WHERE c.collection = 'os_proposal_approvals' AND c.item = a.id::text), '{}') AS statements
FROM os_proposal_approvals AS a
LEFT JOIN directus_users AS u ON u.id = a.approver
LEFT JOIN os_proposals AS p ON p.id = a.proposal_id
ORDER BY a.id
"""
PROPOSALS_SQL = "SELECT id, code FROM os_proposals"


@dataclass
class Finding:
    """One approval or deployment and what the re-check found."""

    what: str
    ok: bool
    detail: str


def judge(
    row: Mapping[str, Any],
    trust: signatures.TrustRoot,
    *,
    package_sha256: str,
    proposal: str,
    database: str,
    database_oid: str | None,
    cluster: str | None,
    at: dt.datetime | None,
    evidence: str | None = None,
    require_user_verification: bool = False,
) -> tuple[signatures.Statement | None, str]:
    """The first statement of an approval row that verifies for this package, proposal and target
    (by name, OID and cluster; at `at`, None leaving the clock out; with the rehearsal `evidence`
    a deployment was bound to, if any; under the user-verification policy when asked), with a line
    saying who signed it; else None and why not.
    """
    problems = []
    for text in row["statements"]:
        try:
            statement, fingerprint = signatures.check(
                text,
                trust,
                approver_id=row["approver_id"],
                approver_email=row["email"] or "",
                level=row["level"],
                package_sha256=package_sha256,
                proposal=proposal,
                database=database,
                database_oid=database_oid,
                system_identifier=cluster,
                now=at,
                rehearsal_sha256=evidence,
                require_user_verification=require_user_verification,
            )
        except signatures.BadStatement as exc:
            problems.append(str(exc))
            continue
        return statement, (
            f"signed by {row['email']} with {fingerprint}, valid {statement.issued_at} .. {statement.expires_at}"
        )
    return None, "; ".join(problems) or "no signed statement"


@dataclass(frozen=True)
class Target:
    """What the audit reads of the target once: its name, OID and cluster, approvals, proposals, ledger."""

    database: str
    cluster: str | None
    approvals: dict[int, dict[str, Any]]
    proposals: dict[int, str]
    ledger: list[dict[str, Any]]
    oid: str | None = None

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], cluster: str | None, oid: str | None = None) -> Target:
        """Read inside the caller's (consistent) transaction; `oid` is the database's (gate.database_oid)."""
        approvals = {
            r["id"]: {**r, "statements": list(r["statements"])} for r in conn.execute(APPROVALS_SQL).fetchall()
        }
        proposals = {r["id"]: r["code"] for r in conn.execute(PROPOSALS_SQL).fetchall()}
        return cls(conn.info.dbname, cluster, approvals, proposals, rows(conn), oid)


def deployments(ledger: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The deploy rows grouped by deployment (one transaction, one executed_at), oldest first."""
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for row in ledger:
        if row["action"] == "deploy":
            groups.setdefault(row["executed_at"], []).append(row)
    return list(groups.values())


CONSISTENT = tuple(name for name in CHAIN_FIELDS if name not in ("tier", "action"))


def _verify_statements(
    group: Sequence[Mapping[str, Any]], target: Target, trust: signatures.TrustRoot, proposal: str | None
) -> list[str]:
    """The approvals a deployment names: each verifies for its package, proposal (`proposal`, else
    the code of the proposal its rows name) and target at its time, and the nonces it carries are
    exactly those of the statements that verify.
    """
    first = group[0]
    problems = []
    if proposal is None:
        proposal = target.proposals.get(first["proposal_id"]) if first["proposal_id"] is not None else None
        if proposal is None:
            problems.append(f"it names proposal id {first['proposal_id']}, which does not exist")
    if not first["approval_ids"]:
        problems.append("it names no approval")
    verified = set()
    for approval_id in first["approval_ids"]:
        named = target.approvals.get(approval_id)
        if named is None:
            problems.append(f"approval #{approval_id} is gone")
            continue
        statement, detail = judge(
            named,
            trust,
            package_sha256=first["package_sha256"],
            proposal=proposal or "",
            database=target.database,
            database_oid=target.oid,
            cluster=target.cluster,
            at=first["executed_at"],
            evidence=first["rehearsal_sha256"],
        )
        if statement is None:
            problems.append(f"approval #{approval_id}: {detail}")
        else:
            verified.add(statement.nonce)
    carried = set(first["statement_nonces"])
    if not carried:
        problems.append("it carries no statement nonce")
    elif carried != verified and not problems:
        problems.append(
            f"it carries nonces {', '.join(sorted(n[:8] for n in carried))}, not those of its approvals' "
            f"verified statements ({', '.join(sorted(n[:8] for n in verified)) or 'none'})"
        )
    return problems


def deployment_problems(
    group: Sequence[Mapping[str, Any]],
    target: Target,
    trust: signatures.TrustRoot,
    spent: dict[str, str],
    *,
    strict_trust: bool = True,
    proposal: str | None = None,
) -> list[str]:
    """Why one deployment does not verify: its rows disagree, a tier is recorded twice, it names
    another database or trust root, a statement does not verify, or a nonce was spent before (in
    `spent`: nonce -> the deployment that carried it, which this call extends). A rollback judges
    the statements for its package's `proposal`, and accepts a trust root changed since.
    """
    first = group[0]
    problems = [
        f"its rows disagree on {name}"
        for name in CONSISTENT
        if any(_plain(r[name]) != _plain(first[name]) for r in group)
    ]
    tiers = [r["tier"] for r in group]
    problems += [f"tier {t} is recorded {tiers.count(t)} times" for t in sorted(set(tiers)) if tiers.count(t) > 1]
    if first["database"] != target.database:
        problems.append(f"it names database {first['database']!r}, not this database {target.database!r}")
    recorded = first["allowed_signers_sha256"]
    if strict_trust and recorded != trust.sha256:
        problems.append(
            f"the ledger records allowed signers {recorded or 'none'}, not this file's "
            f"{trust.sha256}: re-run with the file of that hash"
        )
    problems += _verify_statements(group, target, trust, proposal)
    label = f"the deployment of {signatures.utc(first['executed_at'])}"
    for nonce in first["statement_nonces"]:
        if nonce in spent:
            problems.append(
                f"its statement {nonce[:8]} was carried by {spent[nonce]} already (a statement counts once)"
            )
        else:
            spent[nonce] = label
    return problems


def audit(target: Target, trust: signatures.TrustRoot) -> list[Finding]:
    """Every deployment of the ledger re-checked, oldest first."""
    spent: dict[str, str] = {}
    found = []
    for group in deployments(target.ledger):
        first = group[0]
        what = (
            f"deployment {signatures.utc(first['executed_at'])} of package {first['package_sha256'][:12]} "
            f"(tiers {','.join(str(r['tier']) for r in sorted(group, key=lambda r: r['tier']))})"
        )
        problems = deployment_problems(group, target, trust, spent)
        rehearsed = (
            f"; bound to rehearsal evidence sha256 {first['rehearsal_sha256']}"
            if first["rehearsal_sha256"]
            else "; no rehearsal evidence recorded"
        )
        detail = "; ".join(problems) or (
            f"approvals {', '.join(f'#{i}' for i in first['approval_ids'])} verify" + rehearsed
        )
        found.append(Finding(what, not problems, detail))
    return found


def refused_deployments(conn: psycopg.Connection[Any], trust: signatures.TrustRoot | None) -> list[str]:
    """Every deployment of the ledger that does not verify against `trust`, one line each, inside
    the caller's transaction; a ledger with deployments and no trust root is refused too.
    """
    from oneroof.core.gate import database_oid, system_identifier

    target = Target.read(conn, system_identifier(conn), database_oid(conn))
    if not deployments(target.ledger):
        return []
    if trust is None:
        return [
            "os_release_ledger records deployments, and no allowed signers were given to verify them: "
            f"pass --allowed-signers FILE ({signatures.ENV})"
        ]
    return [f"{f.what}: {f.detail}" for f in audit(target, trust) if not f.ok]
