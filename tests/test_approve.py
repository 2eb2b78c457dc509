"""`oneroof approve` never reports as done an approval the gate would not count (issue 21): it
checks the signed statement against the allowed signers, exactly as the gate will, before it
logs in to Directus or writes anything; without allowed signers it refuses.

Recording through Directus needs node (tests/test_directus_release.py); these tests stop before
Directus, at an address where nothing listens, or use the offline `--out`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg

from oneroof.core import gate, package
from oneroof.harness import catalog, clones
from oneroof.harness.db import connect
from tests.support.testing import signers

PKG = package.load()
SIGNERS = signers()
L4 = catalog.account("l4")
NOBODY = "http://127.0.0.1:9"  # the discard port: no Directus answers there


def approvals(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM os_proposal_approvals").fetchone()
    assert row is not None
    return int(row["n"])


def approve(oneroof: Any, dsn: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return oneroof(
        "approve",
        "--dsn",
        dsn,
        "--email",
        L4.email,
        "--yes",
        *args,
        env={"ONEROOF_DIRECTUS_PASSWORD": "practice", **(env or {})},
    )


def test_approve_without_allowed_signers_refuses_and_writes_nothing(
    oneroof: Any, clone: clones.Clone, clone_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    before = approvals(clone_conn)
    key = str(SIGNERS.keys["l4"])
    unset = {"ONEROOF_ALLOWED_SIGNERS": ""}
    recorded = approve(oneroof, clone.dsn, "--key", key, "--directus", NOBODY, env=unset)
    assert recorded.returncode == 2, recorded.stdout + recorded.stderr
    assert "--allowed-signers FILE" in recorded.stderr and "reviewed repository" in recorded.stderr
    assert "APPROVED" not in recorded.stdout and len(recorded.stderr.strip().splitlines()) == 1
    out = tmp_path / "approval.txt"
    offline = approve(oneroof, clone.dsn, "--key", key, "--out", str(out), env=unset)
    assert offline.returncode == 2 and "--allowed-signers FILE" in offline.stderr
    assert not out.exists()
    submitted = approve(oneroof, clone.dsn, "--submit", str(out), "--directus", NOBODY, env=unset)
    assert submitted.returncode == 2 and "--allowed-signers FILE" in submitted.stderr
    assert approvals(clone_conn) == before


def test_approve_with_allowed_signers_that_lack_the_key_refuses_before_directus(
    oneroof: Any, clone: clones.Clone, clone_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    before = approvals(clone_conn)
    others = tmp_path / "allowed_signers"  # the reviewed file, but without the L4 approver's key
    others.write_text("".join(line + "\n" for line in SIGNERS.trust.data.decode().splitlines() if L4.email not in line))
    result = approve(
        oneroof, clone.dsn, "--key", str(SIGNERS.keys["l4"]), "--directus", NOBODY, "--allowed-signers", str(others)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"do not list for {L4.email}" in result.stderr and "nothing was recorded" in result.stderr
    assert "APPROVED" not in result.stdout and "Traceback" not in result.stderr
    assert approvals(clone_conn) == before


def test_approve_refuses_the_sealer_with_another_of_their_keys(
    oneroof: Any, clone: clones.Clone, clone_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # the gate refuses a statement by anyone the allowed signers list for the sealing key: so does approve
    second = tmp_path / "l4-second"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(second)], check=True, capture_output=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_bytes(SIGNERS.trust.data + f"{L4.email} {second.with_suffix('.pub').read_text()}".encode())
    before = approvals(clone_conn)
    copy = package.bundle(package.DEFAULT_DIR, tmp_path / "rollout").path
    package.seal(copy, SIGNERS.keys["l4"])
    clone_conn.execute("UPDATE os_proposals SET package_sha256 = %s", (package.load(copy).sha256,))
    out = tmp_path / "approval.txt"
    result = approve(
        oneroof,
        clone.dsn,
        "--key",
        str(second),
        "--out",
        str(out),
        "--allowed-signers",
        str(allowed),
        "--package",
        str(copy),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"its approver {L4.email} sealed the package (four eyes)" in result.stderr
    assert not out.exists() and approvals(clone_conn) == before


def test_an_approval_approve_signs_is_one_the_gate_counts(
    oneroof: Any, clone: clones.Clone, clone_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    out = tmp_path / "approval.txt"
    result = approve(
        oneroof,
        clone.dsn,
        "--key",
        str(SIGNERS.keys["l4"]),
        "--out",
        str(out),
        "--allowed-signers",
        str(SIGNERS.trust.path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # recorded as Directus would record it (tests/test_directus_release.py records it through Directus)
    SIGNERS.attach(clone_conn, SIGNERS.approve(clone_conn, signed=False), out.read_text())
    with connect(clone.dsn) as conn:
        verdict = gate.evaluate(conn, PKG, confirm_db=clone.name, trust=SIGNERS.trust)
    assert "approvals" not in verdict.reasons, verdict.reasons
