"""Login roles for the tests that run the executor as the release role the docs describe."""

from __future__ import annotations

import re

from psycopg import conninfo

from tests.support.testing import ROOT


def as_role(dsn: str, role: str) -> str:
    """`dsn` logged in as `role` (password = role name; a trust server ignores it)."""
    params = conninfo.conninfo_to_dict(dsn)
    params.update(user=role, password=role)
    params.pop("passfile", None)
    return conninfo.make_conninfo("", **params)


def readme_grants() -> list[str]:
    """The release role's GRANT statements from its docs page, with {role} and {db} for the names."""
    text = (ROOT / "docs" / "release-role.md").read_text()
    block = text.split("```sql\n-- the release role", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", block).split(";") if s.strip()]
    return [s.replace("TO release", "TO {role}").replace("DATABASE directus", "DATABASE {db}") for s in statements]
