"""Dispatch by other means: what could emit governance events besides tier 6's bindings, which
the release creates disabled. gov_emit counts these with the events themselves, so an active
Directus flow on a governed collection's item events, or a trigger writing os_gov_events, moves
the figure as an emitted event would; `found` names each of them.
"""

from __future__ import annotations

from typing import Any

import psycopg

# Each finding named: an active event flow on the item events of a governed collection (the
# inventory's or a governance os_* one), an active flow with an operation writing os_gov_events,
# and a trigger (or rule) of any table whose code writes os_gov_events. No parameters: the SQL
# holds LIKE patterns with '%'.
DISPATCHERS_SQL = r"""
SELECT found FROM (
    SELECT 'active Directus flow ' || quote_literal(f.name) || ' on ' || s.scope || ' of ' || c.collection
    FROM directus_flows AS f
    CROSS JOIN LATERAL json_array_elements_text(
        CASE WHEN json_typeof(f.options -> 'scope') = 'array' THEN f.options -> 'scope' ELSE '[]' END) AS s (scope)
    CROSS JOIN LATERAL json_array_elements_text(
        CASE WHEN json_typeof(f.options -> 'collections') = 'array' THEN f.options -> 'collections' ELSE '[]' END)
        AS c (collection)
    WHERE f.status = 'active' AND f.trigger = 'event' AND s.scope LIKE 'items.%'
      AND (c.collection IN (SELECT collection FROM os_collection_inventory) OR c.collection LIKE 'os\_%')
    UNION ALL
    SELECT 'active Directus flow ' || quote_literal(f.name) || ' writes os_gov_events (operation '
           || quote_literal(o.name) || ')'
    FROM directus_flows AS f JOIN directus_operations AS o ON o.flow = f.id
    WHERE f.status = 'active' AND o.options::text LIKE '%os\_gov\_events%'
    UNION ALL
    SELECT 'trigger ' || quote_ident(t.tgname) || ' on ' || c.relname || ' writes os_gov_events (function '
           || p.proname || ')'
    FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid JOIN pg_proc AS p ON p.oid = t.tgfoid
    WHERE NOT t.tgisinternal AND c.relname <> 'os_gov_events' AND p.prosrc LIKE '%os\_gov\_events%'
    UNION ALL
    SELECT 'rule ' || quote_ident(r.rulename) || ' on ' || c.relname || ' writes os_gov_events'
    FROM pg_rewrite AS r JOIN pg_class AS c ON c.oid = r.ev_class
    WHERE r.rulename <> '_RETURN' AND c.relname <> 'os_gov_events'
      AND pg_get_ruledef(r.oid) LIKE '%os\_gov\_events%'
) AS d (found)
"""
COUNT_SQL = f"(SELECT count(*) FROM ({DISPATCHERS_SQL}) AS dispatchers)"


def found(conn: psycopg.Connection[Any]) -> list[str]:
    """Every dispatcher of governance events by other means, named and sorted (inside the caller's
    transaction); none on a target the release may touch.
    """
    return sorted(r["found"] for r in conn.execute(DISPATCHERS_SQL).fetchall())
