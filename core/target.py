"""Which server and database a command works on: --dsn, else the PG* variables, else the embedded server."""

from __future__ import annotations

import os
from collections.abc import Callable

from oneroof.harness import server
from oneroof.harness.catalog import GOLDEN_NAME
from oneroof.harness.db import connect, database_exists, with_dbname
from oneroof.harness.errors import UsageError

PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")


def uses_pg_env() -> bool:
    """True when a libpq PG* variable (host, port, database, service, user) is set."""
    return any(os.environ.get(name) for name in PG_ENV)


Progress = Callable[[str], None]


def admin_dsn(dsn: str | None, progress: Progress | None = None) -> str:
    """A DSN of the server (any database on it): --dsn, the PG* variables, or the embedded server."""
    if dsn is not None:
        return dsn
    if uses_pg_env():
        return ""
    return server.start(progress=progress).dsn()


def target_dsn(dsn: str | None, database: str = GOLDEN_NAME, progress: Progress | None = None) -> str:
    """The DSN of the database to read or change: --dsn, the PG* variables, or `database` on the
    embedded server (started on demand; the database must exist).
    """
    if dsn is not None:
        return dsn
    if uses_pg_env():
        return ""
    embedded = server.start(progress=progress).dsn()
    with connect(embedded, autocommit=True) as admin:
        if not database_exists(admin, database):
            raise UsageError(
                f"database {database!r} does not exist on the embedded server: "
                "run `oneroof golden build` first, or pass --dsn"
            )
    return with_dbname(embedded, database)
