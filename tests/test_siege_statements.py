"""The gate's second siege (issue 18), what a signed statement binds and who may sign: one
statement on two databases of a cluster (a rename and a copy), a faked system_identifier, a
package that asks for no signatures, one approver counted twice, a pattern in the trust file,
a revoked statement copied to a new row, and a statement of the old format. Each attack is
reproduced as the siege made it, and refused with its own reason.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from oneroof.core import evidence, gate, package, signatures
from oneroof.executor import release
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from oneroof.harness.errors import Blocked, UsageError
from tests.support.testing import PgServer, bound_evidence, one_line_error, signers

PKG = package.load()
SIGNERS = signers()
L4, L2 = catalog.account("l4"), catalog.account("l2")


def drop(admin_dsn: str, *names: str) -> None:
    with connect(admin_dsn, autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def standin(test_server: PgServer, name: str) -> str:
    """A copy of the golden database without any oneroof mark: production, as the gate sees it."""
    clones.create(test_server.admin, source=test_server.golden, name=name, wait=60)
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
    return test_server.dsn(name)


@pytest.fixture(scope="module")
def target(test_server: PgServer, unique: Any) -> Iterator[psycopg.Connection[Any]]:
    """A marked clone of the golden database; every case runs in a transaction that is rolled back."""
    made = clones.create(test_server.admin, source=test_server.golden, name=unique("siege"), wait=60)
    try:
        with connect(made.dsn) as conn:
            yield conn
    finally:
        drop(test_server.admin, made.name)


def approvals_reason(conn: psycopg.Connection[Any], pkg: package.Package = PKG, **kw: Any) -> str:
    verdict = gate.evaluate(conn, pkg, confirm_db=conn.info.dbname, trust=kw.pop("trust", SIGNERS.trust), **kw)
    return verdict.reasons.get("approvals", "")


# -- 18.2: one statement, two databases on one cluster ----------------------------------------------


def test_a_statement_does_not_follow_its_database_name_to_a_copy(
    test_server: PgServer, unique: Any, tmp_path: Path
) -> None:
    """The siege: approve rt_prod, rename it, copy it under the old name, roll out on the copy."""
    name, renamed = unique("rt_prod"), unique("rt_prod_was")
    try:
        dsn = standin(test_server, name)
        with connect(dsn, autocommit=True) as conn:
            SIGNERS.approve(conn)  # signed for rt_prod as it is now
            assert approvals_reason(conn) == ""  # it counts on the database it was signed for
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(renamed))
            )
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(renamed))
            )
        bound = evidence.load(bound_evidence(dsn, tmp_path))  # the copy is bound to a rehearsal of itself
        with pytest.raises(Blocked) as caught:
            release.rollout(
                dsn, PKG, confirm_db=name, gate_session=False, audit=False, trust=SIGNERS.trust, rehearsal=bound
            )
        assert "its statement is signed for another database identity" in str(caught.value), caught.value
        with connect(dsn) as conn:
            assert gate.state(conn) == "greenfield"
        # and the original, under its new name, is not the database the statement named either
        with connect(test_server.dsn(renamed)) as conn:
            assert f"signed for database {name!r}, not {renamed!r}" in approvals_reason(conn)
    finally:
        drop(test_server.admin, name, renamed)


def test_a_statement_for_production_does_not_open_a_clone_of_it_nor_the_reverse(
    test_server: PgServer, unique: Any
) -> None:
    """A clone made from production has production's name inside, but never its OID."""
    production, clone = unique("prod_identity"), unique("prod_identity_clone")
    try:
        dsn = standin(test_server, production)
        with connect(dsn) as prod:
            for_production = SIGNERS.statement(prod)
        clones.create(test_server.admin, source=production, name=clone, wait=60)
        with connect(test_server.dsn(clone)) as conn:
            try:
                approval = SIGNERS.approve(conn, signed=False)
                SIGNERS.attach(conn, approval, for_production)
                got = approvals_reason(conn)
            finally:
                conn.rollback()
            assert f"signed for database {production!r}, not {clone!r}" in got
            try:
                approval = SIGNERS.approve(conn, signed=False)
                SIGNERS.attach(conn, approval, SIGNERS.statement(conn, database=clone))
                assert approvals_reason(conn) == ""
                for_clone = SIGNERS.statement(conn, database=production)  # the clone's OID, production's name
            finally:
                conn.rollback()
        with connect(dsn) as prod:
            try:
                SIGNERS.attach(prod, SIGNERS.approve(prod, signed=False), for_clone)
                got = approvals_reason(prod)
            finally:
                prod.rollback()
        assert "its statement is signed for another database identity" in got, got
    finally:
        drop(test_server.admin, clone, production)


def old_format(conn: psycopg.Connection[Any]) -> str:
    """A statement of format v1 (the database by name only), signed by the L4 approver for `conn`."""
    now = dt.datetime.now(dt.UTC)
    doc = {
        "type": "oneroof-approval/v1",
        "package_sha256": PKG.sha256,
        "proposal": PKG.proposal,
        "approver": {"id": str(L4.id), "email": L4.email},
        "level": "L4",
        "target": {"database": conn.info.dbname, "system_identifier": str(gate.system_identifier(conn))},
        "issued_at": signatures.utc(now - dt.timedelta(minutes=1)),
        "expires_at": signatures.utc(now + dt.timedelta(hours=1)),
        "nonce": "0" * 32,
    }
    message = (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
    return message.decode() + signatures.sign(message, SIGNERS.keys["l4"])


def test_a_statement_of_the_old_format_is_refused_with_its_reason(target: psycopg.Connection[Any]) -> None:
    try:
        SIGNERS.attach(target, SIGNERS.approve(target, signed=False), old_format(target))
        got = approvals_reason(target)
    finally:
        target.rollback()
    assert "its statement is of the old format oneroof-approval/v1" in got and "sign" in got, got


def test_approve_signs_the_database_identity(oneroof: Any, clone: clones.Clone, tmp_path: Path) -> None:
    out = tmp_path / "approval.txt"
    result = oneroof(
        "approve", "--dsn", clone.dsn, "--email", L4.email, "--key", str(SIGNERS.keys["l4"]), "--out", str(out), "--yes"
    )
    assert result.returncode == 0, result.stderr
    with connect(clone.dsn) as conn:
        oid = gate.database_oid(conn)
    statement = json.loads(out.read_text().split("\n", 1)[0])
    assert statement["type"] == "oneroof-approval/v2"
    assert statement["target"]["database_oid"] == oid and statement["target"]["database"] == clone.name
    assert f"(OID {oid})" in result.stdout
    issued, expires = (dt.datetime.fromisoformat(statement[k]) for k in ("issued_at", "expires_at"))
    assert expires - issued == dt.timedelta(hours=24)  # the default lifetime


# -- 18.3: a faked system_identifier ----------------------------------------------------------------

FAKE = """
CREATE FUNCTION pg_catalog.pg_control_system(OUT pg_control_version integer, OUT catalog_version_no integer,
    OUT system_identifier bigint, OUT pg_control_last_modified timestamptz)
LANGUAGE sql AS $$ SELECT 1300, 202307071, 1::bigint, now() $$
"""
# A superuser renames the built-in and puts a function of their own under its name. (Replacing it
# in place, CREATE OR REPLACE, changes nothing: PostgreSQL calls a built-in's C code by its OID.)
SWAPS = {
    "renamed and replaced": ["ALTER FUNCTION pg_catalog.pg_control_system() RENAME TO pg_control_system_real", FAKE],
    "moved and replaced": ["ALTER FUNCTION pg_catalog.pg_control_system() SET SCHEMA public", FAKE],
}


@pytest.mark.parametrize("swap", SWAPS.values(), ids=SWAPS.keys())
def test_a_swapped_pg_control_system_does_not_open_the_gate(target: psycopg.Connection[Any], swap: list[str]) -> None:
    """The siege: a superuser's pg_control_system() returns the identifier a statement for another
    cluster (here: 1) names.
    """
    try:
        for statement in swap:
            target.execute(statement)
        faked = target.execute("SELECT system_identifier::text AS id FROM pg_catalog.pg_control_system()").fetchone()
        assert faked is not None and faked["id"] == "1"
        SIGNERS.approve(target, system_identifier="1")
        got = approvals_reason(target)
    finally:
        target.rollback()
    assert "pg_catalog.pg_control_system() is not PostgreSQL's built-in function" in got, got


def test_a_swapped_pg_control_system_binds_no_rehearsal(test_server: PgServer, unique: Any, tmp_path: Path) -> None:
    """On production the swap does not bind the rollout to a rehearsal of another cluster either."""
    name = unique("swap_prod")
    try:
        dsn = standin(test_server, name)
        bound = evidence.load(bound_evidence(dsn, tmp_path))
        with connect(dsn) as conn:
            try:
                for statement in SWAPS["renamed and replaced"]:
                    conn.execute(statement)
                verdict = gate.evaluate(conn, PKG, confirm_db=name, trust=SIGNERS.trust, rehearsal=bound)
            finally:
                conn.rollback()
        assert "pg_catalog.pg_control_system() is not PostgreSQL's built-in" in verdict.reasons["rehearsed"]
    finally:
        drop(test_server.admin, name)


def test_the_built_in_pg_control_system_still_counts(target: psycopg.Connection[Any]) -> None:
    """The check knows the built-in of this server version (its OID and C symbol)."""
    assert gate.builtin_problem(target) is None
    assert gate.system_identifier(target) not in (None, "1")


# -- 18.5: a package that needs no signatures -------------------------------------------------------


def unsigned_copy(tmp_path: Path, **manifest: str) -> package.Package:
    """A resealed copy of the package, its manifest edited (`old=new`)."""
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    text = (copy / "manifest.toml").read_text()
    for old, new in manifest.items():
        assert old in text
        text = text.replace(old, new)
    (copy / "manifest.toml").write_text(text)
    package.seal(copy)
    return package.load(copy)


def test_off_a_marked_clone_signatures_are_required_whatever_the_manifest_says(
    test_server: PgServer, unique: Any, tmp_path: Path
) -> None:
    """The siege: a resealed copy with require_signatures = false, the proposal pointed at it by a
    superuser, and an unsigned approval row.
    """
    unsigned = unsigned_copy(tmp_path, **{"require_signatures = true\n": "require_signatures = false\n"})
    assert not unsigned.require_signatures
    name = unique("nosig_prod")
    try:
        dsn = standin(test_server, name)
        with connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE os_proposals SET package_sha256 = %s WHERE code = %s", (unsigned.sha256, PKG.proposal))
            approval = SIGNERS.approve(conn, sha=unsigned.sha256, signed=False)
        bound = evidence.load(bound_evidence(dsn, tmp_path / "evidence", unsigned))
        with pytest.raises(Blocked) as caught:
            release.rollout(
                dsn, unsigned, confirm_db=name, gate_session=False, audit=False, trust=SIGNERS.trust, rehearsal=bound
            )
        assert f"#{approval} no signed statement" in str(caught.value), caught.value
        with connect(dsn) as conn:
            assert gate.state(conn) == "greenfield"
    finally:
        drop(test_server.admin, name)


# -- weak points: distinct approvers, patterns in the trust file, revocations -----------------------


def test_two_approvals_need_two_approvers(target: psycopg.Connection[Any], tmp_path: Path) -> None:
    two = unsigned_copy(tmp_path, **{"min_approvals = 1\n": "min_approvals = 2\n"})
    assert two.min_approvals == 2 and two.require_signatures
    try:
        target.execute("UPDATE os_proposals SET package_sha256 = %s WHERE code = %s", (two.sha256, two.proposal))
        first = SIGNERS.approve(target, "l4", sha=two.sha256)
        second = SIGNERS.approve(target, "l4", sha=two.sha256)  # the same human signs again: a new nonce
        once = approvals_reason(target, two)
        SIGNERS.approve(target, "l2", sha=two.sha256)
        twice = approvals_reason(target, two)
    finally:
        target.rollback()
    assert once == (
        f"valid approvals 2 by 1 distinct approver < 2: each approver counts once "
        f"(#{second} is by the same approver (or key) as #{first})"
    )
    assert twice == ""


def test_one_key_listed_for_two_approvers_counts_once(target: psycopg.Connection[Any], tmp_path: Path) -> None:
    two = unsigned_copy(tmp_path, **{"min_approvals = 1\n": "min_approvals = 2\n"})
    l4_public = " ".join(SIGNERS.keys["l4"].with_suffix(".pub").read_text().split()[:2])
    allowed = tmp_path / "allowed_signers"
    allowed.write_bytes(SIGNERS.trust.data + f"{L2.email} {l4_public}\n".encode())
    trust = signatures.TrustRoot.load(allowed)
    try:
        target.execute("UPDATE os_proposals SET package_sha256 = %s WHERE code = %s", (two.sha256, two.proposal))
        first = SIGNERS.approve(target, "l4", sha=two.sha256)
        second = SIGNERS.approve(target, "l2", sha=two.sha256, key=SIGNERS.keys["l4"])
        got = approvals_reason(target, two, trust=trust)
    finally:
        target.rollback()
    repeat = f"#{second} is by the same approver (or key) as #{first}"
    assert f"by 1 distinct approver < 2: each approver counts once ({repeat})" in got, got


PATTERNS = {
    "anyone": "*",
    "a whole domain": "*@gov.example.com",
    "a pattern": "dung.pham@gov.example.co?",
    "a comma list": f"{L4.email},{L2.email}",
    "a negation": f"!{L2.email}",
    "quoted": f'"{L4.email}"',
}


@pytest.mark.parametrize("principal", PATTERNS.values(), ids=PATTERNS.keys())
def test_a_trust_file_principal_must_be_one_plain_email(principal: str, tmp_path: Path) -> None:
    public = " ".join(SIGNERS.keys["l4"].with_suffix(".pub").read_text().split()[:2])
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"# reviewed\n{L2.email} {public}\n\n{principal} {public}\n")
    with pytest.raises(UsageError) as caught:
        signatures.TrustRoot.load(allowed)
    assert f"line 4: principal {principal!r} is not one plain email" in str(caught.value)


def test_a_trust_file_with_a_pattern_is_bad_input_to_the_gate(
    oneroof: Any, clone: clones.Clone, tmp_path: Path
) -> None:
    public = " ".join(SIGNERS.keys["l4"].with_suffix(".pub").read_text().split()[:2])
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"*@gov.example.com {public}\n")
    result = oneroof("monitor", "--dsn", clone.dsn, "--allowed-signers", str(allowed))
    one_line_error(result, "line 1: principal '*@gov.example.com' is not one plain email")


def test_a_revocation_spends_its_statement(target: psycopg.Connection[Any]) -> None:
    """The siege: a superuser copies a revoked row's statement onto a new row."""
    try:
        revoked = SIGNERS.approve(target)
        target.execute("UPDATE os_proposal_approvals SET revoked_at = now() WHERE id = %s", (revoked,))
        text = target.execute("SELECT comment FROM directus_comments WHERE item = %s", (str(revoked),)).fetchone()
        assert text is not None
        copy = SIGNERS.approve(target, signed=False)
        SIGNERS.attach(target, copy, text["comment"])
        got = approvals_reason(target)
    finally:
        target.rollback()
    assert f"#{copy} its statement is the one of a revoked approval (a revocation spends it)" in got, got


# -- the evidence the approver reviewed ----------------------------------------------------------------


def test_a_statement_that_names_rehearsal_evidence_counts_only_with_it(
    test_server: PgServer, unique: Any, tmp_path: Path
) -> None:
    """The approver reviewed rehearsal A; the operator rolls out with B (hand-written, binding too)."""
    name = unique("evidence_prod")
    try:
        dsn = standin(test_server, name)
        reviewed = evidence.load(bound_evidence(dsn, tmp_path / "a"))
        other = bound_evidence(dsn, tmp_path / "b")
        other.write_text(other.read_text().replace('"tool": "tests"', '"tool": "someone else"'))
        swapped = evidence.load(other)
        assert swapped.go and swapped.sha256 != reviewed.sha256
        with connect(dsn, autocommit=True) as conn:
            SIGNERS.approve(conn, rehearsal_sha256=reviewed.sha256)
            with_other = gate.evaluate(conn, PKG, confirm_db=name, trust=SIGNERS.trust, rehearsal=swapped)
            with_reviewed = gate.evaluate(conn, PKG, confirm_db=name, trust=SIGNERS.trust, rehearsal=reviewed)
        assert "rehearsed" not in with_other.reasons  # B binds production as well as A does
        assert (
            f"approves after reviewing rehearsal evidence {reviewed.sha256[:12]}, not the evidence given, "
            f"{swapped.sha256[:12]}" in with_other.reasons["approvals"]
        )
        assert with_reviewed.open, with_reviewed.reasons
    finally:
        drop(test_server.admin, name)


def test_approve_off_a_clone_names_the_evidence_reviewed(
    oneroof: Any, test_server: PgServer, unique: Any, tmp_path: Path
) -> None:
    name = unique("approve_prod")
    try:
        dsn = standin(test_server, name)
        signing = ("approve", "--dsn", dsn, "--email", L4.email, "--key", str(SIGNERS.keys["l4"]), "--yes")
        out = tmp_path / "approval.txt"
        refused = oneroof(*signing, "--out", str(out))
        one_line_error(refused, f"{name!r} is not a marked clone: pass the evidence of the rehearsal you reviewed")
        assert not out.exists()
        reviewed = evidence.load(bound_evidence(dsn, tmp_path / "evidence"))
        signed = oneroof(*signing, "--out", str(out), "--rehearsal", reviewed.path)
        assert signed.returncode == 0, signed.stderr
        assert f"rehearsal    evidence sha256 {reviewed.sha256}" in signed.stdout
        assert json.loads(out.read_text().split("\n", 1)[0])["rehearsal_sha256"] == reviewed.sha256
    finally:
        drop(test_server.admin, name)
