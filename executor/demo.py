"""A production to practise on: `oneroof demo production` builds, on a server of one's own, the
Directus 11 + tier-1 database a production would be (the golden database's build, without its
golden and read-only marks), and `oneroof demo directus-env` says how Directus reaches it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oneroof.core import package
from oneroof.harness import golden
from oneroof.harness.db import check_identifier, connect, database_exists, parse, public, with_dbname
from oneroof.harness.errors import UsageError

DEFAULT_NAME = "demo_production"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Demo:
    """What `production` made: the database's name, its DSN (no password) and the build's figures."""

    name: str
    dsn: str
    result: golden.BuildResult
    package_sha256: str


def production(
    admin_dsn: str,
    *,
    name: str = DEFAULT_NAME,
    scale: int = 1,
    replace: bool = False,
    package_dir: Path = package.DEFAULT_DIR,
    progress: Progress | None = None,
) -> Demo:
    """Build demo production `name` on the server of `admin_dsn`: Directus 11 with its content,
    system_issues and tier 1 live, its proposal naming the package of `package_dir`, and nothing
    of oneroof's on it but a comment. An existing database is refused (DatabaseExists, exit 2)
    unless `replace`, and even then anything but a demo production oneroof made.
    """
    check_identifier(name, "--name")
    pkg = package.load(package_dir)
    result = golden.build(
        admin_dsn, name=name, scale=scale, package_sha256=pkg.sha256, replace=replace, progress=progress, demo=True
    )
    return Demo(name, public(with_dbname(admin_dsn, name)), result, pkg.sha256)


def directus_env(admin_dsn: str, name: str = DEFAULT_NAME) -> tuple[dict[str, str], list[str]]:
    """The environment Directus needs to serve database `name` (DB_CLIENT, DB_HOST, DB_PORT,
    DB_DATABASE, DB_USER and, when the connection names one, PGPASSFILE, which Directus's
    PostgreSQL driver reads), as the server's own connection reports them; and notes. Never a
    password: one in the DSN becomes a note saying to give Directus DB_PASSWORD yourself.
    """
    check_identifier(name, "--name")
    dsn = with_dbname(admin_dsn, name)
    with connect(admin_dsn, autocommit=True) as admin:
        if not database_exists(admin, name):
            raise UsageError(
                f"no database named {name!r} on this server: make it with `oneroof demo production --name {name}`"
            )
    with connect(dsn) as conn:
        info = conn.info
        env = {
            "DB_CLIENT": "pg",
            "DB_HOST": info.host,
            "DB_PORT": str(info.port),
            "DB_DATABASE": info.dbname,
            "DB_USER": info.user,
        }
    params = parse(dsn)
    passfile = params.get("passfile") or os.environ.get("PGPASSFILE")
    if passfile:
        env["PGPASSFILE"] = str(Path(passfile).expanduser().resolve())
    notes = []
    if params.get("password") or os.environ.get("PGPASSWORD"):
        notes.append(
            "the connection carries a password, which is never printed: give Directus DB_PASSWORD yourself, "
            "or put the password in ~/.pgpass (which Directus's PostgreSQL driver reads)"
        )
    return env, notes


def as_shell(env: dict[str, str]) -> str:
    """`export NAME=value` lines, quoted for a POSIX shell (for `eval "$(...)"`)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
