"""How a missing privilege is named in the release's refusal, without a database: the lock a
package's LOCK TABLE needs, an UPDATE of any column, of one column, and a table privilege. Each
form was a mutant of executor/release.py that the mutation check did not kill (bench/mutation.py,
docs/results/mutation.md).
"""

from __future__ import annotations

import pytest

from oneroof.executor import release


@pytest.mark.parametrize(
    ("privilege", "named"),
    [
        (
            (release.LOCK_PRIVILEGE, "directus_policies", None),
            "DELETE (or UPDATE, TRUNCATE) on directus_policies (for its LOCK TABLE)",
        ),
        (("UPDATE", "os_proposals", release.ANY_COLUMN), "UPDATE on a column of os_proposals"),
        (("UPDATE", "os_proposals", "status"), "UPDATE (status) on os_proposals"),
        (("INSERT", "os_release_ledger", None), "INSERT on os_release_ledger"),
    ],
    ids=["lock", "any column", "one column", "table"],
)
def test_a_privilege_is_named_as_grant_spells_it(privilege: release.Privilege, named: str) -> None:
    assert release.describe(privilege) == named
