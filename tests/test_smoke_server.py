"""The test server and golden database the session provides."""

from fixtures.testing import PgServer


def test_golden_exists(test_server: PgServer, admin) -> None:  # type: ignore[no-untyped-def]
    assert admin.execute("SELECT count(*) AS n FROM pg_database WHERE datname = %s",
                         (test_server.golden,)).fetchone()["n"] == 1
