"""The ratification page's own code agrees with the gate (issue 19): the statement it builds in
the browser, the assertion line it stores, the trust-file line it prints at registration and the
GO/NO-GO it shows of a rehearsal's evidence are read by oneroof exactly as the page meant them.
The page's functions (extensions/oneroof-ratify/src/statement.js) run under node here; the
extension itself is built with @directus/extensions-sdk from npm.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import evidence, package, passkeys, signatures
from oneroof.executor.ratify import statement_template
from tests.support import directus, ratify_page
from tests.support.authenticator import SoftAuthenticator

STATEMENT_JS = ratify_page.EXTENSION / "src" / "statement.js"


def node(script: str, *args: Any) -> Any:
    """Run `script` (an ES module body with `S` the page's statement.js and `args`) under node; its printed JSON."""
    binary = shutil.which("node")
    if binary is None:
        message = "the page's functions run under node: node not found on PATH"
        if directus.required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    program = (
        f"const S = await import({json.dumps(STATEMENT_JS.as_uri())});\n"
        f"const args = {json.dumps([a.hex() if isinstance(a, bytes) else a for a in args])};\n"
        "const bytes = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));\n"
        f"{script}"
    )
    proc = subprocess.run(
        [binary, "--input-type=module", "-e", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("database", ["directus", 'prod "ñ" \u007f \U0001f600 \\ db', "x\ty"])
def test_the_page_builds_the_statement_the_gate_parses(database: str) -> None:
    """Whatever fields signatures.Statement has: the page fills the template the build wrote."""
    values = {f.name: f"{f.name}-value" for f in dataclasses.fields(signatures.Statement)}
    values.update(
        package_sha256="a" * 64,
        approver_id=str(uuid.uuid4()),
        approver_email="binh.tran@gov.example",
        level="L2",
        database=database,
        system_identifier="7412345678901234567",
        nonce="0123456789abcdef0123456789abcdef",
    )
    if "database_oid" in values:  # a database OID, where the statement names one
        values["database_oid"] = "16384"
    if "rehearsal_sha256" in values:  # the evidence the approver reviewed, where the statement names it
        values["rehearsal_sha256"] = "b" * 64
    issued = dt.datetime(2026, 12, 4, 21, 0, 5, tzinfo=dt.UTC)
    text = node(
        "const v = {...args[1], ...S.validity(new Date(args[2]))};\n"
        "console.log(JSON.stringify(S.statementText(args[0], v)));",
        statement_template(),
        values,
        issued.isoformat(),
    )
    expected = signatures.Statement(
        **{**values, "issued_at": "2026-12-04T21:00:05Z", "expires_at": "2026-12-04T22:00:05Z"}
    )
    assert text.encode() == expected.message()
    assert signatures.Statement.parse(text.encode()) == expected


def test_the_page_refuses_a_statement_field_it_has_no_value_for() -> None:
    template = {**statement_template(), "evidence": "<rehearsal_digest>"}
    message = node(
        "try { S.statementText(args[0], {}); console.log('null'); }"
        " catch (e) { console.log(JSON.stringify(e.message)); }",
        template,
    )
    assert message.startswith("the page has no value for the statement's field "), message


def test_the_page_stores_the_assertion_and_prints_the_trust_line_as_oneroof_reads_them() -> None:
    soft = SoftAuthenticator()
    assertion = soft.assert_(b'{"a":1}\n')
    got = node(
        "const a = S.assertionText({rawId: bytes(args[0]), authenticatorData: bytes(args[1]),"
        " clientDataJSON: bytes(args[2]), signature: bytes(args[3])});\n"
        "const line = S.trustLine({email: 'ada@gov.example', directusId: args[4], level: 'L4',"
        " rpId: 'localhost', origin: 'http://localhost:8055', authenticatorData: bytes(args[5])});\n"
        "console.log(JSON.stringify([a, line]));",
        assertion.credential_id,
        assertion.authenticator_data,
        assertion.client_data_json,
        assertion.signature,
        "2b1e8d0e-1c1a-4f57-8c1b-6a4f0e7f3c11",
        registration_data(soft),
    )
    assert got[0] == assertion.text()
    expected = soft.credential("ada@gov.example", "2b1e8d0e-1c1a-4f57-8c1b-6a4f0e7f3c11", "L4")
    assert passkeys.Credential.parse(got[1]) == expected


def registration_data(soft: SoftAuthenticator) -> bytes:
    """Authenticator data of a registration (AT flag, attested credential data, an extension after
    the key, as some authenticators add), so the page must find where the COSE key ends.
    """
    attested = uuid.UUID(soft.aaguid).bytes + len(soft.credential_id).to_bytes(2, "big") + soft.credential_id
    rp = hashlib.sha256(b"localhost").digest()
    extensions = bytes.fromhex("a1") + b"\x6bcredProtect" + b"\x02"  # {"credProtect": 2}
    return rp + bytes([0x45 | 0x80]) + (0).to_bytes(4, "big") + attested + soft.cose + extensions


EVIDENCE = {
    "GO": {"steps": [{"name": n, "ok": True} for n in evidence.REQUIRED_STEPS]},
    "a failed step": {"steps": [{"name": n, "ok": n != "rollback"} for n in evidence.REQUIRED_STEPS]},
    "a missing step": {"steps": [{"name": n, "ok": True} for n in evidence.REQUIRED_STEPS[:-1]]},
    "interrupted": {"interrupted": True, "steps": [{"name": n, "ok": True} for n in evidence.REQUIRED_STEPS]},
}


@pytest.mark.parametrize("data", EVIDENCE.values(), ids=EVIDENCE.keys())
def test_the_page_shows_the_go_the_gate_reads(data: dict[str, Any]) -> None:
    data = {"package": {"sha256": "b" * 64}, **data}
    shown = node("console.log(JSON.stringify(S.matrix(args[0])));", data)
    read = evidence.from_evidence(data)
    assert (shown["go"], shown["whyNot"], shown["packageSha256"]) == (read.go, read.why_not, read.package_sha256)
    assert list(evidence.REQUIRED_STEPS) == [str(s) for s in shown_required()]


def shown_required() -> list[str]:
    return list(node("console.log(JSON.stringify(S.REQUIRED_STEPS));"))


def test_the_extension_builds_and_asks_for_user_verification(tmp_path: Path) -> None:
    built = ratify_page.build(tmp_path)
    app = (built / "dist" / "app.js").read_text(encoding="utf-8")
    api = (built / "dist" / "api.js").read_text(encoding="utf-8")
    assert "navigator.credentials.get" in app and "userVerification: 'required'" in app.replace('"', "'")
    assert package.load().sha256 in app
    assert "/context" in api
