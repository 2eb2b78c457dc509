"""The one error hierarchy of oneroof; the CLI turns each into its exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of the `oneroof` command line (`verify` passes pytest's own codes through)."""

    OK = 0
    FAILED = 1  # an invariant failed / NO-GO / the approver said no
    USAGE = 2
    BLOCKED = 3
    INTEGRITY = 4
    LOCK_HELD = 5
    LIVE_AUDIT_FAILED = 6  # rollout: committed, but the audit after the commit failed
    INTERRUPTED = 130


# One line per code, as the README's "Exit codes" table says it; the docs generate that table from this.
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "ok; the gate is OPEN; GO",
    ExitCode.FAILED: "an invariant failed, and nothing was kept; NO-GO. `probe` exits 1 when one of its reads "
    "was assigned a transaction id (it cannot prove it wrote nothing).",
    ExitCode.USAGE: "bad input, an unreachable database, a refusal by the database, a role that lacks a privilege "
    "`rollout` or `rollback` needs (named before anything is tried), or a function that could shadow a built-in: "
    "one line on stderr, no traceback (`--debug` shows one), nothing written. A DSN that does not parse is not "
    "echoed, since it may hold a password.",
    ExitCode.BLOCKED: "BLOCKED: the gate is closed; for `monitor --until-open`, still closed at its --timeout",
    ExitCode.INTEGRITY: "package integrity: a changed, missing or extra file, or a hash that differs from the pinned "
    "one; for `rollback`, a package that is not the one the ledger says was deployed",
    ExitCode.LOCK_HELD: "the release lock is held by another executor",
    ExitCode.LIVE_AUDIT_FAILED: "`rollout` only: tiers 2-6 were applied and committed, but the finalized audit after "
    "the commit failed. They are live: inspect with `oneroof verify --stage finalized`, undo with `oneroof rollback`",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C). `rehearse` drops its clone first. A `rollout` interrupted after its "
    "commit says that tiers 2-6 are live and how to roll back",
}


class OneroofError(Exception):
    """Base of every error oneroof reports to a user: a one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(OneroofError):
    """Bad input: a flag, a name or a value that cannot be used as given."""


class DatabaseUnreachable(OneroofError):
    """The server did not accept the connection (down, wrong host or port, wrong password)."""


class UnsafeSchema(OneroofError):
    """The connection's schema could let another role's objects stand in for what oneroof reads."""


class MissingPrivilege(OneroofError):
    """The role lacks a privilege the command needs; nothing was written."""


class NotDirectus(OneroofError):
    """The target database is not a Directus database."""


class NotGoverned(OneroofError):
    """The target is Directus but lacks the tier-1 One-Roof governance tables."""


class DatabaseExists(OneroofError):
    """A database the command would create already exists."""


class CloneError(OneroofError):
    """The clone harness refused: an unmarked database, a busy template, a missing source."""


class ServerError(OneroofError):
    """The embedded PostgreSQL server could not be started, stopped or found."""


class InvariantFailed(OneroofError):
    """An invariant did not hold; whatever the command did was rolled back."""

    exit_code = ExitCode.FAILED


class Blocked(OneroofError):
    """The release gate is closed; nothing was changed."""

    exit_code = ExitCode.BLOCKED

    def __init__(
        self,
        reasons: list[str],
        *,
        database: str = "",
        entry: str = "",
        exit: str = "",
        blocked_by: dict[str, str] | None = None,
    ) -> None:
        super().__init__("BLOCKED: " + "; ".join(reasons))
        self.reasons = reasons
        self.database, self.entry, self.exit = database, entry, exit
        self.blocked_by = blocked_by or {}  # the reasons by gate condition, when the gate gave them


class IntegrityError(OneroofError):
    """The release package does not match its manifest or its pinned hash."""

    exit_code = ExitCode.INTEGRITY


class HashMismatch(IntegrityError):
    """One file's bytes differ from the hash the manifest records."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        if path == "package":
            message = (
                f"package: sha256 {actual} is not the pinned {expected}: this is not the package that "
                "was ratified; stop, and find out which one is"
            )
        else:
            message = (
                f"{path}: sha256 {actual} does not match the manifest's {expected}; "
                "restore the file or rebuild the package"
            )
        super().__init__(message)
        self.path, self.expected, self.actual = path, expected, actual


class LockHeld(OneroofError):
    """Another executor holds the release lock."""

    exit_code = ExitCode.LOCK_HELD


class Interrupted(OneroofError):
    """Ctrl-C at a point where the user must know what state was left (e.g. after the commit)."""

    exit_code = ExitCode.INTERRUPTED
