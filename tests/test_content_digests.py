"""The rehearsal's content digests (core/metrics.py `table_digests`): every change to a row changes
its table's digest, whatever the columns' types and NULLs, and nothing else does.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from oneroof.core import metrics

TABLE = """
CREATE TABLE public.digest_probe (
    k integer NOT NULL, b text, c text, v varchar(8), p char(4), n numeric, f double precision,
    j json, jb jsonb, ts timestamptz, u uuid, arr integer[], d date)"""
ROWS = """
INSERT INTO public.digest_probe VALUES
    (1, 'x', 'y', 'v', 'p', 1.0, 0.5, '{"a": 1}', '{"a": 1.0}', '2026-01-01 00:00+00',
     '00000000-0000-0000-0000-000000000001', '{1,2}', '2026-01-01'),
    (2, NULL, 'z', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, 'w', '', 'w', 'w', 2, 1.5, '[]', '[]', '2026-01-02 00:00+00',
     '00000000-0000-0000-0000-000000000002', '{}', '2026-01-02'),
    (3, 'w', '', 'w', 'w', 2, 1.5, '[]', '[]', '2026-01-02 00:00+00',
     '00000000-0000-0000-0000-000000000002', '{}', '2026-01-02')"""
# Each a change of rows; each must change the digest.
CHANGES = {
    "a NOT NULL value modified": "UPDATE digest_probe SET k = 4 WHERE k = 1",
    "a text value modified": "UPDATE digest_probe SET b = 'X' WHERE k = 1",
    "a row deleted": "DELETE FROM digest_probe WHERE k = 1",
    "a row added": "INSERT INTO digest_probe (k) VALUES (5)",
    "one of two duplicate rows deleted": (
        "DELETE FROM digest_probe WHERE ctid = (SELECT max(ctid) FROM digest_probe WHERE k = 3)"
    ),
    "one of two duplicate rows modified": (
        "UPDATE digest_probe SET c = 'q' WHERE ctid = (SELECT max(ctid) FROM digest_probe WHERE k = 3)"
    ),
    "a duplicate row added": "INSERT INTO digest_probe SELECT * FROM digest_probe WHERE k = 1",
    "two columns' values swapped": "UPDATE digest_probe SET b = c, c = b WHERE k = 1",
    "a NULL moved to the next column": "UPDATE digest_probe SET b = c, c = NULL WHERE k = 2",
    "an empty string made NULL": "UPDATE digest_probe SET c = NULL WHERE k = 3",
    "a NULL made an empty string": "UPDATE digest_probe SET b = '' WHERE k = 2",
    "two rows' values of one column swapped": (
        "UPDATE digest_probe SET c = CASE k WHEN 1 THEN 'z' ELSE 'y' END WHERE k IN (1, 2)"
    ),
    "numeric 1.0 made 1.00": "UPDATE digest_probe SET n = 1.00 WHERE k = 1",
    "json reformatted": """UPDATE digest_probe SET j = '{"a":1}' WHERE k = 1""",
    "jsonb 1.0 made 1.00": """UPDATE digest_probe SET jb = '{"a": 1.00}' WHERE k = 1""",
    "a timestamp moved by a microsecond": "UPDATE digest_probe SET ts = ts + interval '1 microsecond' WHERE k = 1",
    "a uuid modified": "UPDATE digest_probe SET u = '00000000-0000-0000-0000-000000000003' WHERE k = 1",
    "an array modified": "UPDATE digest_probe SET arr = '{2,1}' WHERE k = 1",
    "a date modified": "UPDATE digest_probe SET d = d + 1 WHERE k = 1",
    "a char value modified": "UPDATE digest_probe SET p = 'q' WHERE k = 1",
    "a varchar value modified": "UPDATE digest_probe SET v = 'V' WHERE k = 1",
    "a float modified": "UPDATE digest_probe SET f = 0.25 WHERE k = 1",
}


def digest(conn: psycopg.Connection[Any]) -> str:
    return metrics.table_digests(conn, ["digest_probe"])["digest_probe"]


@pytest.fixture
def probe(clone_conn: psycopg.Connection[dict[str, Any]]) -> psycopg.Connection[dict[str, Any]]:
    clone_conn.execute(TABLE)
    clone_conn.execute(ROWS)
    clone_conn.autocommit = False
    return clone_conn


def test_every_change_of_a_row_changes_the_digest(probe: psycopg.Connection[dict[str, Any]]) -> None:
    before = digest(probe)
    changed = {}
    for name, change in CHANGES.items():
        probe.execute(change)
        changed[name] = digest(probe)
        probe.rollback()
        assert digest(probe) == before, f"{name}: the digest did not come back after the rollback"
    assert [name for name, after in changed.items() if after == before] == []
    assert len(set(changed.values())) == len(CHANGES)  # and no two changes read alike


def test_the_digest_does_not_depend_on_the_rows_order(probe: psycopg.Connection[dict[str, Any]]) -> None:
    """The same rows, written in the reverse order into a table of the same columns, digest alike; an
    order-free digest needs no sort at any size.
    """
    probe.execute("CREATE TABLE public.digest_probe_reversed (LIKE public.digest_probe)")
    probe.execute("INSERT INTO public.digest_probe_reversed SELECT * FROM digest_probe ORDER BY k DESC, b")
    found = metrics.table_digests(probe, ["digest_probe", "digest_probe_reversed"])
    assert found["digest_probe"] == found["digest_probe_reversed"]
    assert found["digest_probe"].startswith("4:")


def test_the_content_tables_are_digested_in_one_reading(probe: psycopg.Connection[dict[str, Any]]) -> None:
    """system_issues and the 35 governed collections, each with its row count; a changed
    system_issues row changes only its own table's digest.
    """
    before = metrics.content_digests(probe)
    assert len(before) == 36 and before["system_issues"].startswith("204556:")
    probe.execute("UPDATE system_issues SET occurrences = occurrences + 1 WHERE id = 1")
    after = metrics.content_digests(probe)
    assert [t for t in before if before[t] != after[t]] == ["system_issues"]
