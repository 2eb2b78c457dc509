"""Ratify with a passkey in Chromium against real Directus 11.3.5 (issue 19): the extension built
and loaded, an approver logged in as themself registers a passkey on a CDP virtual authenticator,
the registration's line goes into the trust file, the approver opens the rehearsal evidence and
ratifies, and `oneroof monitor` counts the approval; then they sign and save in the page, record
the file with `oneroof approve --submit`, and `oneroof rollout` applies the release; all of it
under the user-verification policy (`--require-user-verification`).

The page refuses an L3 user and a Directus admin. Each approval below is made in the browser, with
the approver's own virtual authenticator, and recorded through Directus; the gate (`oneroof
monitor --json`, under the policy) stays BLOCKED, each with its own reason:
- an authenticator that does not verify the user (isUserVerified false, UV = 0);
- an assertion over another statement than the one stored beside it;
- an assertion made on another origin (a page at http://localhost:OTHER asks the same
  authenticator for the same RP ID, which WebAuthn allows: the port is not part of it);
- a row of the L4 approver carrying an assertion by the L2 approver's passkey;
- an ordinary ed25519 key file approval made with `oneroof approve` (it counts without the policy);
- the same assertion copied onto a second row (counted once; and not at all once the first row is
  revoked).

Chromium is the system's (`apt-get install chromium`), driven by Playwright for Python; WebAuthn
needs a secure context, so the page is served at http://localhost:PORT. Skips, naming what is
missing, without chromium, Playwright, node or npm, unless ONEROOF_DIRECTUS_REQUIRED is set.
Set ONEROOF_SCREENSHOTS=DIR to keep the screenshots the test takes.

One scenario in order: each step changes the approvals the next one judges.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import gate, package, passkeys, signatures
from oneroof.harness import catalog
from oneroof.harness.db import connect
from tests.support import directus, ratify_page
from tests.support.processes import clean_env, run_executor
from tests.support.testing import bound_evidence, signers

pytestmark = [pytest.mark.directus, pytest.mark.proof]  # a slow proof: CI runs it once
PKG = package.load()
SIGNERS = signers()
PASSWORD = "oneroof-test-password"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_MS = 90_000


def chromium() -> str:
    """The system's Chromium and Playwright's Python package, or skip (fail when required)."""
    found = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    missing = [] if found else ["chromium (apt-get install chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python (pip install playwright)")
    if missing:
        message = f"the browser test needs {' and '.join(missing)}"
        if directus.required():
            pytest.fail(f"{message}; {directus.REQUIRED_ENV} is set, so this fails instead of skipping", pytrace=False)
        pytest.skip(message)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def server(
    directus_install: directus.Installation, governed_directus_db: directus.DirectusDatabase
) -> Iterator[directus.DirectusServer]:
    """Directus with the ratification page built into its EXTENSIONS_PATH."""
    chromium()
    ratify_page.build(governed_directus_db.workdir / "extensions")
    # Directus loads no extension at all when its working directory has no package.json (where
    # it looks for extensions installed as npm dependencies).
    (governed_directus_db.workdir / "package.json").write_text('{"name": "oneroof-directus", "private": true}\n')
    running = directus.start(directus_install, governed_directus_db, log=governed_directus_db.workdir / "server.log")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Any, name: str) -> None:
    keep = os.environ.get("ONEROOF_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(keep) / f"{name}.png"), full_page=True)


class Approver:
    """One approver in a browser context of their own, with a CDP virtual authenticator."""

    def __init__(self, browser: Any, server: directus.DirectusServer, account: str, *, verified: bool) -> None:
        self.url = server.url.replace(directus.LOOPBACK, "localhost")
        self.account = catalog.account(account)
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": verified,
            "automaticPresenceSimulation": True,
        }
        self.authenticator = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]

    def verified(self, yes: bool) -> None:
        self.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": self.authenticator, "isUserVerified": yes})

    def log_in(self, path: str = "/oneroof-ratify/register") -> None:
        """Open `path` of the admin app logged out: Directus shows its login form there and, once
        logged in, opens `path` in the same page load (one load of the app instead of two).
        """
        self.page.goto(f"{self.url}/admin{path}")
        self.page.fill("input[type=email]", self.account.email)
        self.page.fill("input[type=password]", PASSWORD)
        self.page.keyboard.press("Enter")
        self.page.wait_for_url(lambda url: "/login" not in url)

    def open(self, path: str) -> None:
        """Show `path` of the admin app, unless it shows it already: through the page's own link
        to `path`, as an approver moves between registering and ratifying (no reload of the app),
        or by loading it when the page is not the admin app's.
        """
        if self.page.url == f"{self.url}/admin{path}":
            return
        if not self.page.url.startswith(f"{self.url}/admin/"):
            self.page.goto(f"{self.url}/admin{path}")
            return
        self.page.click(f"a[href='/admin{path}']")
        self.page.wait_for_url(f"{self.url}/admin{path}")

    def register(self) -> str:
        self.open("/oneroof-ratify/register")
        try:
            self.page.wait_for_selector("[data-test=register]", timeout=30_000)
        except Exception:
            screenshot(self.page, "failed-register")
            shown = self.page.inner_text("body")[:2000]
            raise AssertionError(f"no register button at {self.page.url}: {shown}") from None
        self.page.click("[data-test=register]")
        line = self.page.wait_for_selector("[data-test=trust-line]").inner_text().strip()
        screenshot(self.page, f"register-{self.account.key}")
        return str(line)

    def ratify(self, evidence: Path) -> str:
        """Open the evidence, press Ratify; the page's result or error line."""
        self.open("/oneroof-ratify")
        self.page.wait_for_selector("[data-test=package-sha256]")
        self.page.set_input_files("[data-test=evidence]", str(evidence))
        self.page.wait_for_selector("[data-test=matrix]")
        screenshot(self.page, f"ratify-{self.account.key}")
        self.page.click("[data-test=ratify]")
        done = self.page.wait_for_selector("[data-test=result], [data-test=error]")
        self.page.locator("[data-test=evidence-sha256]").scroll_into_view_if_needed()
        screenshot(self.page, f"ratified-{self.account.key}")
        return str(done.inner_text())

    def save(self, evidence: Path, directory: Path) -> Path:
        """Open the evidence, press Sign and save: the file the page saved, in `directory`."""
        self.page.goto(f"{self.url}/admin/oneroof-ratify")
        self.page.set_input_files("[data-test=evidence]", str(evidence))
        self.page.wait_for_selector("[data-test=matrix]")
        with self.page.expect_download() as download:
            self.page.click("[data-test=save]")
        saved = directory / download.value.suggested_filename
        download.value.save_as(saved)
        said = self.page.wait_for_selector("[data-test=result]").inner_text()
        assert f"saved as {saved.name}" in said, said
        return saved


def refused_in_the_page(browser: Any, server: directus.DirectusServer, email: str, password: str) -> str:
    """Open the ratification page, log in there as `email`: its reason why Ratify is disabled."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{server.url.replace(directus.LOOPBACK, 'localhost')}/admin/oneroof-ratify")  # to the login form
        page.fill("input[type=email]", email)
        page.fill("input[type=password]", password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login" not in url)
        reason = page.wait_for_selector("[data-test=blocked]").inner_text()
        assert page.is_disabled("[data-test=ratify]")
        return str(reason)
    finally:
        context.close()


ASSERT_JS = """async ([challenge, userVerification]) => {
    const bytes = Uint8Array.from(challenge.match(/../g).map((b) => parseInt(b, 16)));
    const got = await navigator.credentials.get({
        publicKey: { challenge: bytes, rpId: 'localhost', userVerification },
    });
    const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
    const r = got.response;
    return [hex(got.rawId), hex(r.authenticatorData), hex(r.clientDataJSON), hex(r.signature)];
}"""


def asserted(approver: Approver, over: bytes, user_verification: str = "required") -> passkeys.Assertion:
    """What navigator.credentials.get returns in the approver's page as it is now (its origin), on
    their authenticator, for the challenge of the statement bytes `over`: a tampered page's call.
    """
    parts = approver.page.evaluate(ASSERT_JS, [passkeys.challenge(over).hex(), user_verification])
    return passkeys.Assertion(*(bytes.fromhex(p) for p in parts))


def statement_for(database: directus.DirectusDatabase, account: str, evidence: Path) -> signatures.Statement:
    """A fresh statement of `account` for this target and evidence, as the page makes one."""
    who = catalog.account(account)
    with connect(database.dsn) as conn:
        return signatures.Statement.new(
            package_sha256=PKG.sha256,
            proposal=catalog.PROPOSAL_CODE,
            approver_id=str(who.id),
            approver_email=who.email,
            level=str(who.level),
            database=database.name,
            database_oid=str(gate.database_oid(conn)),
            system_identifier=str(gate.system_identifier(conn)),
            valid_for=dt.timedelta(hours=1),
            rehearsal_sha256=hashlib.sha256(evidence.read_bytes()).hexdigest(),
        )


@contextlib.contextmanager
def another_origin() -> Iterator[str]:
    """A page served at http://localhost:OTHER (another port than Directus's): its origin."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"<!doctype html><title>another origin</title><p>not Directus</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    served = http.server.ThreadingHTTPServer((directus.LOOPBACK, 0), Blank)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{served.server_address[1]}"
    finally:
        served.shutdown()
        served.server_close()
        thread.join()


def record(rest: directus.DirectusClient, account: catalog.Account, text: str) -> int:
    """The approval row and its statement, created through Directus as the logged-in approver."""
    proposal = directus.proposal_id(rest)
    created = directus.create_approval(rest, proposal=proposal, level=str(account.level), package_sha256=PKG.sha256)
    assert created.ok, created.payload
    approval = int(created.data["id"])
    rest.post("/comments", {"collection": "os_proposal_approvals", "item": str(approval), "comment": text})
    return approval


def stored(database: directus.DirectusDatabase, approval: int) -> str:
    """The statement text stored as the approval's comment."""
    with connect(database.dsn) as conn:
        row = conn.execute(
            "SELECT comment FROM directus_comments WHERE collection = 'os_proposal_approvals' AND item = %s",
            (str(approval),),
        ).fetchone()
    assert row is not None
    return str(row["comment"])


def approval_rows(database: directus.DirectusDatabase) -> int:
    with connect(database.dsn) as conn:
        row = conn.execute("SELECT count(*) AS n FROM os_proposal_approvals").fetchone()
    assert row is not None
    return int(row["n"])


def monitor(
    run: Any, database: directus.DirectusDatabase, trust: Path, evidence: Path, *, policy: bool = True
) -> dict[str, Any]:
    """`oneroof monitor --json`, under the user-verification policy unless `policy` is false, run
    in this process (`run` is the oneroof_main fixture): the test reads the gate's verdict and
    reasons a dozen times, which the command line prints the same in a process of its own; the
    processes this test keeps are the approver's `approve` and the rollout.
    """
    proc = run(
        "monitor",
        "--json",
        "--dsn",
        database.dsn,
        "--confirm-db",
        database.name,
        "--allowed-signers",
        str(trust),
        "--rehearsal",
        str(evidence),
        *(["--require-user-verification"] if policy else []),
    )
    assert proc.returncode in (0, 3), proc.stderr
    return dict(json.loads(proc.stdout))


def reason_of(report: dict[str, Any], approval: int) -> str:
    """The gate's reason for one approval row: in the BLOCKED reasons, or among the ignored
    approvals of the notes when the gate is OPEN; "" when the row counts.
    """
    for text in [*report["reasons"], *report["notes"]]:
        found = re.search(rf"(?:: |; )#{approval} (.*?)(?=; #\d+ |$)", text)
        if found:
            return found.group(1).removesuffix(")") if text.startswith("valid approvals") else found.group(1)
    return ""


def test_ratify_with_a_user_verified_passkey_in_directus(
    server: directus.DirectusServer, browser: Any, tmp_path: Path, oneroof_main: Any
) -> None:
    database = server.database
    evidence = bound_evidence(database.dsn, tmp_path)
    admin = server.admin()
    for account in ("l2", "l3", "l4"):
        directus.set_password(admin, catalog.account(account).id, PASSWORD)

    # The page lets neither an L3 user nor a Directus admin ratify (and the gate would not count them).
    l3 = refused_in_the_page(browser, server, catalog.account("l3").email, PASSWORD)
    assert l3 == "you are at level L3; this package needs L2/L4", l3
    it = refused_in_the_page(browser, server, directus.ADMIN_EMAIL, directus.ADMIN_PASSWORD)
    assert it == "you are not a human approver (os_approvers): you cannot ratify", it
    trust = tmp_path / "trust"
    trust.write_bytes(SIGNERS.trust.data)
    os.chmod(trust, 0o600)
    l2, l4 = catalog.account("l2"), catalog.account("l4")
    refused: dict[str, tuple[str, str]] = {}  # each approval that must not count: (verdict, its reason)

    def judged(approval: int) -> tuple[str, str]:
        report = monitor(oneroof_main, database, trust, evidence)
        return report["verdict"], reason_of(report, approval)

    # L2 registers, then ratifies on an authenticator that no longer verifies the user.
    binh = Approver(browser, server, "l2", verified=True)
    binh.log_in()
    binh_line = binh.register()
    binh.verified(False)
    # Reviewed by the trust file's maintainers and added: the human step.
    with trust.open("a") as out:
        out.write(binh_line + "\n")
    said = binh.ratify(evidence)
    assert "Approval #" not in said, said  # Chromium does not assert without UV when the page requires it
    # A tampered page asks without requiring UV and records what the authenticator returns, as
    # Binh through Directus: the assertion is genuine, with UV = 0, and does not count.
    binh_rest = server.login(binh.account.email, PASSWORD)
    mine = statement_for(database, "l2", evidence).message()
    refused["UV = 0"] = judged(
        record(binh_rest, binh.account, passkeys.bundle(mine, asserted(binh, mine, "discouraged")))
    )

    # Binh's authenticator verifies the user again; each of these is still a tampered page's work.
    binh.verified(True)
    # An assertion over another statement (another nonce) stored beside this one.
    mine, other = (statement_for(database, "l2", evidence).message() for _ in range(2))
    refused["over another statement"] = judged(
        record(binh_rest, binh.account, passkeys.bundle(mine, asserted(binh, other)))
    )
    # Dung's row carrying an assertion by Binh's passkey over Dung's statement.
    dung_rest = server.login(l4.email, PASSWORD)
    dungs = statement_for(database, "l4", evidence).message()
    refused["another approver's credential"] = judged(
        record(dung_rest, l4, passkeys.bundle(dungs, asserted(binh, dungs)))
    )
    # A page on another origin asks Binh's authenticator for the same RP ID: Chromium allows it.
    with another_origin() as elsewhere:
        binh.page.goto(elsewhere)
        mine = statement_for(database, "l2", evidence).message()
        refused["on another origin"] = judged(
            record(binh_rest, binh.account, passkeys.bundle(mine, asserted(binh, mine)))
        )

    # Dung approves with an ordinary ed25519 key file (`oneroof approve`): it counts without the
    # policy, and not under it.
    approve = run_executor(
        "approve",
        "--dsn",
        database.dsn,
        "--directus",
        server.url,
        "--email",
        l4.email,
        "--key",
        str(SIGNERS.keys["l4"]),
        "--yes",
        "--allowed-signers",
        str(trust),
        "--rehearsal",
        str(evidence),
        env=clean_env(ONEROOF_DIRECTUS_PASSWORD=PASSWORD),
    )
    assert approve.returncode == 0 and "APPROVED: approval #" in approve.stdout, approve.stdout + approve.stderr
    key_file = int(re.findall(r"APPROVED: approval #(\d+)", approve.stdout)[0])
    refused["a plain SSH key under the policy"] = judged(key_file)

    binh_key = passkeys.b64url(passkeys.Credential.parse(binh_line).credential_id)[:16]
    assert refused == {
        "UV = 0": (
            "BLOCKED",
            "its passkey assertion has no user verification (UV flag not set): the authenticator did not check a "
            "PIN or biometric; ratify again with one that does",
        ),
        "over another statement": (
            "BLOCKED",
            "its passkey assertion was made over another statement (the challenge is not its SHA-256)",
        ),
        "another approver's credential": (
            "BLOCKED",
            f"its passkey {binh_key} is listed for {l2.email} ({l2.id}), not for this approver {l4.email}",
        ),
        "on another origin": ("BLOCKED", f"its passkey assertion was made on origin '{elsewhere}', not '{binh.url}'"),
        "a plain SSH key under the policy": (
            "BLOCKED",
            "signed with a plain key file (ssh-ed25519), but user verification is required "
            f"({signatures.POLICY}): sign with a passkey or a FIDO key listed with verify-required",
        ),
    }

    # Without the policy the key file's approval counts (and none of the passkey ones).
    assert monitor(oneroof_main, database, trust, evidence, policy=False)["valid_approvals"] == [key_file]

    # L4 registers and ratifies with user verification: the approval counts under the policy, the
    # key file's does not.
    dung = Approver(browser, server, "l4", verified=True)
    dung.log_in()
    line = dung.register()
    assert line.startswith(f"{dung.account.email} passkey directus-id={dung.account.id} level=L4 rp-id=localhost ")
    without_line = dung.ratify(evidence)
    assert "Approval #" in without_line, without_line
    ratified = int(re.findall(r"Approval #(\d+)", without_line)[0])
    unlisted = monitor(oneroof_main, database, trust, evidence)
    assert unlisted["verdict"] == "BLOCKED" and "is not listed in the trust file" in reason_of(unlisted, ratified)
    with trust.open("a") as out:
        out.write(line + "\n")
    opened = monitor(oneroof_main, database, trust, evidence)
    assert opened["verdict"] == "OPEN" and opened["valid_approvals"] == [ratified], opened
    assert reason_of(opened, key_file) == refused["a plain SSH key under the policy"][1]

    # The same assertion on a second row, made by Dung through Directus (a copy made by anyone else
    # is refused as created by another user): it counts once, and not at all once the first row is
    # revoked (a revocation spends the statement).
    copy = record(dung_rest, l4, stored(database, ratified))
    twice = monitor(oneroof_main, database, trust, evidence)
    copied = {"beside the first": (twice["verdict"], reason_of(twice, copy))}
    admin.patch(f"/items/os_proposal_approvals/{ratified}", {"revoked_at": dt.datetime.now(dt.UTC).isoformat()})
    copied["once the first is revoked"] = judged(copy)
    assert copied == {
        "beside the first": ("OPEN", f"its statement is the one of #{ratified} (a statement counts once)"),
        "once the first is revoked": (
            "BLOCKED",
            "its statement is the one of a revoked approval (a revocation spends it); sign a new one",
        ),
    }

    # Dung signs in the page again, saves the approval and records it as himself with `oneroof
    # approve --submit` (under the policy too): the gate opens, and the rollout applies under it.
    rows = approval_rows(database)
    saved = dung.save(evidence, tmp_path)
    assert approval_rows(database) == rows  # saving records nothing
    submitted = run_executor(
        "approve",
        "--submit",
        str(saved),
        "--directus",
        server.url,
        "--email",
        l4.email,
        "--yes",
        "--allowed-signers",
        str(trust),
        env=clean_env(ONEROOF_DIRECTUS_PASSWORD=PASSWORD, ONEROOF_REQUIRE_USER_VERIFICATION="1"),
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    reopened = monitor(oneroof_main, database, trust, evidence)
    assert reopened["verdict"] == "OPEN", reopened
    assert reopened["valid_approvals"] == [int(re.findall(r"APPROVED: approval #(\d+)", submitted.stdout)[0])]
    rolled = run_executor(
        "rollout",
        "--dsn",
        database.dsn,
        "--confirm-db",
        database.name,
        "--expect-sha256",
        PKG.sha256,
        "--allowed-signers",
        str(trust),
        "--rehearsal",
        str(evidence),
        "--require-user-verification",
    )
    assert rolled.returncode == 0 and "APPLIED" in rolled.stdout, rolled.stdout + rolled.stderr
