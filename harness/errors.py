"""The one error hierarchy of oneroof; the CLI turns each into its exit code."""

from __future__ import annotations


class OneroofError(Exception):
    """Base of every error oneroof reports to a user: a one-line message and an exit code."""

    exit_code = 2

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

    exit_code = 1


class Blocked(OneroofError):
    """The release gate is closed; nothing was changed."""

    exit_code = 3

    def __init__(self, reasons: list[str], *, database: str = "", entry: str = "", exit: str = "") -> None:
        super().__init__("BLOCKED: " + "; ".join(reasons))
        self.reasons = reasons
        self.database, self.entry, self.exit = database, entry, exit


class IntegrityError(OneroofError):
    """The release package does not match its manifest or its pinned hash."""

    exit_code = 4


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

    exit_code = 5


class Interrupted(OneroofError):
    """Ctrl-C at a point where the user must know what state was left (e.g. after the commit)."""

    exit_code = 130
