"""The one settings table of oneroof: every setting of a verification session as a flag, an ini key
and an environment variable. The pytest plugin declares its options from it, the executor passes
its sessions' settings through its environment variables, and the docs' settings page is
generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oneroof.harness.catalog import GOLDEN_NAME
from oneroof.harness.db import public
from oneroof.harness.server import HOME_ENV

# Where the card's folders sit: the checkout, or site-packages/oneroof in an installed copy (the
# release package and its expected figures install beside the code).
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = ROOT / "rollout"


@dataclass(frozen=True)
class Setting:
    """One setting: the Options attribute, its flag, ini key, environment variable, default and help."""

    attr: str
    flag: str
    ini: str
    env: str
    default: str
    help: str


def _setting(attr: str, default: str, text: str) -> Setting:
    return Setting(attr, "--" + attr.replace("_", "-"), f"oneroof_{attr}", f"ONEROOF_{attr.upper()}", default, text)


DSN = _setting(
    "dsn", "", "target database of the invariants (libpq DSN); default: the golden database on the embedded server"
)
EXPECT_DB = _setting("expect_db", GOLDEN_NAME, "the database name the run expects the target to have")
PACKAGE = _setting("package", str(DEFAULT_PACKAGE), "release package directory")
EXPECT_SHA256 = _setting("expect_sha256", "", "the package hash the operator pinned (gate stage)")
ALLOWED_SIGNERS = _setting(
    "allowed_signers",
    "",
    "allowed-signers file (ssh-keygen format) that approvals' signed statements are verified against (gate stage)",
)
ALLOWED_SIGNERS_SHA256 = _setting(
    "allowed_signers_sha256",
    "",
    "the SHA-256 the allowed-signers file must have (a pin of the reviewed trust root; refused when it differs)",
)
REHEARSAL = _setting(
    "rehearsal",
    "",
    "evidence of a GO rehearsal (evidence.json of `oneroof rehearse`) that a "
    "database which is not a marked clone is bound to (gate stage)",
)
RELEASE_LOG = _setting(
    "release_log",
    "",
    "the operator's append-only release log (JSON lines): each rollout and rollback records there the "
    "statements it spent and the ledger's chain head; the gate refuses a statement found in it and a "
    "ledger that lost the head (the executor's default: $ONEROOF_HOME/release-log.jsonl)",
)
REQUIRE_USER_VERIFICATION = _setting(
    "require_user_verification",
    "",
    "1 (or true/yes): only approvals by a user-verified authenticator count (a passkey, or a FIDO key the "
    "trust file lists with verify-required), whatever the package's manifest says; the manifest can raise "
    "this, never lower it (gate stage)",
)
TEST_SERVER = _setting(
    "test_server", "", "DSN of an existing server for the project's own tests; default: a temporary embedded server"
)
SETTINGS = (
    DSN,
    EXPECT_DB,
    PACKAGE,
    EXPECT_SHA256,
    ALLOWED_SIGNERS,
    ALLOWED_SIGNERS_SHA256,
    REHEARSAL,
    TEST_SERVER,
    RELEASE_LOG,
    REQUIRE_USER_VERIFICATION,
)


def truthy(value: str | None) -> bool:
    """A boolean setting's value: 1, true, yes or on (any case) is set; anything else is not."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# Environment variables that are not session settings.
RELEASE_SESSION_ENV = "ONEROOF_RELEASE_SESSION"  # set by the executor on the sessions it runs
DIRECTUS_PASSWORD_ENV = "ONEROOF_DIRECTUS_PASSWORD"  # `oneroof approve` without a terminal
ENVIRONMENT = (
    (HOME_ENV, "where the embedded server and rehearsal runs keep their data (default: the user data directory)"),
    (DIRECTUS_PASSWORD_ENV, "the approver's Directus password for `oneroof approve` when there is no terminal"),
    (
        "ONEROOF_LOCK_TIMEOUT",
        "seconds the release transaction of `rollout` and `rollback` waits for a lock before exit 5 "
        "(default 10; above 0 and up to 3600)",
    ),
    (
        RELEASE_SESSION_ENV,
        "set by the executor on the pytest sessions it runs (gate session, audit, rehearsal "
        "stages): they refuse every option that writes or relaxes the expected figures",
    ),
)
GATE_SESSION_INI = "oneroof_gate_session"


@dataclass(frozen=True)
class Options:
    """The oneroof settings of one pytest run: plain strings, which xdist can ship to workers."""

    dsn: str
    expect_db: str
    package: str
    expect_sha256: str
    allowed_signers: str
    allowed_signers_sha256: str
    rehearsal: str
    test_server: str
    release_log: str = ""
    require_user_verification: str = ""

    def __repr__(self) -> str:
        # pytest prints the arguments of a failing test (and JUnit XML keeps them): the DSNs are
        # shown without their passwords.
        shown = {k: (public(v) if k in ("dsn", "test_server") and v else v) for k, v in self.__dict__.items()}
        return f"Options({', '.join(f'{k}={v!r}' for k, v in shown.items())})"
