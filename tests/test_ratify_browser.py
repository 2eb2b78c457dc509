"""Ratify with a passkey in Chromium against real Directus 11.3.5 (issue 19): the extension built
and loaded, an approver logged in as themself registers a passkey on a CDP virtual authenticator,
the registration's line goes into the trust file, the approver opens the rehearsal evidence and
ratifies, `oneroof monitor` counts the approval and `oneroof rollout` applies the release. The
page refuses an L3 user and a Directus admin; an authenticator that does not verify the user
(isUserVerified false) gives no approval that counts, neither through the page nor through a
tampered page that asks without requiring it.

Chromium is the system's (`apt-get install chromium`), driven by Playwright for Python; WebAuthn
needs a secure context, so the page is served at http://localhost:PORT. Skips, naming what is
missing, without chromium, Playwright, node or npm, unless ONEROOF_DIRECTUS_REQUIRED is set.
Set ONEROOF_SCREENSHOTS=DIR to keep the screenshots the test takes.

One scenario in order: each step changes the approvals the next one judges.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oneroof.core import package, passkeys, signatures
from oneroof.harness import catalog
from oneroof.harness.db import connect
from tests.support import directus, ratify_page
from tests.support.processes import run_executor
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

    def log_in(self) -> None:
        self.page.goto(f"{self.url}/admin/login")
        self.page.fill("input[type=email]", self.account.email)
        self.page.fill("input[type=password]", PASSWORD)
        self.page.keyboard.press("Enter")
        self.page.wait_for_url(lambda url: "/login" not in url)

    def register(self) -> str:
        self.page.goto(f"{self.url}/admin/oneroof-ratify/register")
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
        self.page.goto(f"{self.url}/admin/oneroof-ratify")
        self.page.wait_for_selector("[data-test=package-sha256]")
        self.page.set_input_files("[data-test=evidence]", str(evidence))
        self.page.wait_for_selector("[data-test=matrix]")
        screenshot(self.page, f"ratify-{self.account.key}")
        self.page.click("[data-test=ratify]")
        done = self.page.wait_for_selector("[data-test=result], [data-test=error]")
        self.page.locator("[data-test=evidence-sha256]").scroll_into_view_if_needed()
        screenshot(self.page, f"ratified-{self.account.key}")
        return str(done.inner_text())


def refused_in_the_page(browser: Any, server: directus.DirectusServer, email: str, password: str) -> str:
    """Log in as `email` and open the ratification page: its reason why Ratify is disabled."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{server.url.replace(directus.LOOPBACK, 'localhost')}/admin/login")
        page.fill("input[type=email]", email)
        page.fill("input[type=password]", password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(f"{server.url.replace(directus.LOOPBACK, 'localhost')}/admin/oneroof-ratify")
        reason = page.wait_for_selector("[data-test=blocked]").inner_text()
        assert page.is_disabled("[data-test=ratify]")
        return str(reason)
    finally:
        context.close()


def unverified_assertion(approver: Approver, database: directus.DirectusDatabase) -> str:
    """A statement for `approver`, asserted in their page by navigator.credentials.get without
    userVerification "required": the bundle the page would store.
    """
    with connect(database.dsn) as conn:  # the statement the test signers make, its SSH signature dropped
        message, _ = signatures.parse_bundle(SIGNERS.statement(conn, approver.account.key))
    statement = signatures.Statement.parse(message)
    parts = approver.page.evaluate(
        """async (challenge) => {
            const bytes = Uint8Array.from(challenge.match(/../g).map((b) => parseInt(b, 16)));
            const got = await navigator.credentials.get({
                publicKey: { challenge: bytes, rpId: location.hostname, userVerification: 'discouraged' },
            });
            const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
            const r = got.response;
            return [hex(got.rawId), hex(r.authenticatorData), hex(r.clientDataJSON), hex(r.signature)];
        }""",
        passkeys.challenge(statement.message()).hex(),
    )
    assertion = passkeys.Assertion(*(bytes.fromhex(p) for p in parts))
    return passkeys.bundle(statement.message(), assertion)


def record(rest: directus.DirectusClient, account: catalog.Account, text: str) -> int:
    """The approval row and its statement, created through Directus as the logged-in approver."""
    proposal = directus.proposal_id(rest)
    created = directus.create_approval(rest, proposal=proposal, level=str(account.level), package_sha256=PKG.sha256)
    assert created.ok, created.payload
    approval = int(created.data["id"])
    rest.post("/comments", {"collection": "os_proposal_approvals", "item": str(approval), "comment": text})
    return approval


def monitor(database: directus.DirectusDatabase, trust: Path, evidence: Path) -> dict[str, Any]:
    proc = run_executor(
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
    )
    assert proc.returncode in (0, 3), proc.stderr
    return dict(json.loads(proc.stdout))


def test_ratify_with_a_user_verified_passkey_in_directus(
    server: directus.DirectusServer, browser: Any, tmp_path: Path
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
    rest = server.login(binh.account.email, PASSWORD)
    recorded = record(rest, binh.account, unverified_assertion(binh, database))
    blocked = monitor(database, trust, evidence)
    assert blocked["verdict"] == "BLOCKED", blocked
    assert f"#{recorded} its passkey assertion has no user verification (UV flag not set)" in blocked["reasons"][0]

    # L4 registers and ratifies with user verification: the approval counts.
    dung = Approver(browser, server, "l4", verified=True)
    dung.log_in()
    line = dung.register()
    assert line.startswith(f"{dung.account.email} passkey directus-id={dung.account.id} level=L4 rp-id=localhost ")
    without_line = dung.ratify(evidence)
    assert "Approval #" in without_line, without_line
    unlisted = monitor(database, trust, evidence)
    assert unlisted["verdict"] == "BLOCKED" and "is not listed in the trust file" in " ".join(unlisted["reasons"])
    with trust.open("a") as out:
        out.write(line + "\n")
    opened = monitor(database, trust, evidence)
    assert opened["verdict"] == "OPEN", opened
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
    )
    assert rolled.returncode == 0 and "APPLIED" in rolled.stdout, rolled.stdout + rolled.stderr
