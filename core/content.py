"""What tiers 2-6 write, read back as plain sorted Python data: the one place that defines it.

The finalized and greenfield stages compare this reading with the package's snapshots, one
document per tier, so a reviewer reads the intended state as a document and a failure names
the collection, the tier and the value. Nothing here counts: every row the release writes is
read with its values, wherever it is (any collection, active or not), and no id or timestamp
is kept, so two databases in the same state read the same.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from oneroof.core.metrics import RELEASE_TABLES

# The One-Roof Governance policy of tier 2, by its fixed id and by its name: a leftover under
# either is still the release's.
POLICY_ID = "75c09095-c4f0-5d33-aaa1-31764f52c0b5"
POLICY_NAME = "One-Roof Governance"
# The governance collections tier 2 registers in Directus (directus_collections, directus_fields)
# and grants the policy read on.
TIER2_COLLECTIONS = (*RELEASE_TABLES, "os_release_ledger")
TIERS = ("tier2_access", "tier3_ownership", "tier4_axes", "tier5_label_rules", "tier6_lifecycle")
# Per governed collection: the facet, its tier document and the key of that document holding it.
FACETS = {
    "tier2_permission": ("tier2_access", "permissions"),
    "tier3_owner": ("tier3_ownership", "owners"),
    "tier4_axes": ("tier4_axes", "axes"),
    "tier5_label_rules": ("tier5_label_rules", "label_rules"),
    "tier6_lifecycle": ("tier6_lifecycle", "lifecycle"),
    "tier6_event_bindings": ("tier6_lifecycle", "event_bindings"),
}
# Per governance collection of tier 2: its registration, its fields and the policy's permission.
GOVERNANCE_FACETS = {
    "tier2_registration": ("tier2_access", "collections"),
    "tier2_fields": ("tier2_access", "fields"),
    "tier2_permission": ("tier2_access", "permissions"),
}

_POLICIES = "(SELECT id FROM directus_policies WHERE id = %(policy)s OR name = %(name)s)"
SQL: dict[str, str] = {
    "policies": "SELECT jsonb_strip_nulls(to_jsonb(p) - 'id') AS row FROM directus_policies AS p "
    "WHERE p.id = %(policy)s OR p.name = %(name)s",
    "access": "SELECT jsonb_strip_nulls(jsonb_build_object('role', coalesce(r.name, a.role::text), "
    "'user', coalesce(u.email, a.\"user\"::text), 'policy', pol.name, 'sort', a.sort)) AS row "
    "FROM directus_access AS a LEFT JOIN directus_roles AS r ON r.id = a.role "
    'LEFT JOIN directus_users AS u ON u.id = a."user" '
    "LEFT JOIN directus_policies AS pol ON pol.id = a.policy "
    f"WHERE a.policy = %(policy)s OR a.policy IN {_POLICIES}",
    "permissions": "SELECT p.collection AS key, jsonb_strip_nulls(to_jsonb(p) - 'id' - 'collection' - 'policy') "
    f"AS row FROM directus_permissions AS p WHERE p.policy = %(policy)s OR p.policy IN {_POLICIES}",
    "collections": "SELECT c.collection AS key, jsonb_strip_nulls(to_jsonb(c) - 'collection') AS row "
    "FROM directus_collections AS c WHERE c.collection = ANY(%(tier2)s)",
    "fields": "SELECT f.collection AS key, f.field AS sub, jsonb_strip_nulls(to_jsonb(f) - 'id' - 'collection' "
    "- 'field') AS row FROM directus_fields AS f WHERE f.collection = ANY(%(tier2)s)",
    "owners": "SELECT o.collection AS key, jsonb_build_object('owner_unit', o.owner_unit, 'active', o.active, "
    "'proposal', coalesce(p.code, o.proposal_id::text)) AS row "
    "FROM os_collection_owners AS o LEFT JOIN os_proposals AS p ON p.id = o.proposal_id",
    "proposals": "SELECT code AS key, status AS row FROM os_proposals",
    "owner_units": "SELECT code AS key, name AS row FROM os_owner_units",
    "axes": "SELECT collection AS key, axis AS sub, value AS row FROM os_collection_axes",
    "label_rules": "SELECT collection AS key, label AS sub, effect AS row FROM os_label_rules",
    "lifecycle": "SELECT collection AS key, jsonb_build_object('retention_days', retention_days, "
    "'idle_after_days', idle_after_days) AS row FROM os_lifecycle_policies",
    "event_bindings": "SELECT collection AS key, event AS sub, jsonb_build_object('target', target, "
    "'enabled', enabled) AS row FROM os_event_bindings",
}
# How each part is shaped: a sorted list of rows, {key: sorted list of rows}, {key: value},
# or {key: {sub: value}} (sub keys that repeat, as a label with two effects, keep every value).
LISTS = ("policies", "access")
KEYED_LISTS = ("permissions", "owners")
KEYED = ("collections", "proposals", "owner_units", "lifecycle")
NESTED = ("fields", "axes", "label_rules", "event_bindings")
PARTS = {
    "tier2_access": ("policies", "access", "permissions", "collections", "fields"),
    "tier3_ownership": ("proposals", "owner_units", "owners"),
    "tier4_axes": ("axes",),
    "tier5_label_rules": ("label_rules",),
    "tier6_lifecycle": ("lifecycle", "event_bindings"),
}


def _key(value: Any) -> str:
    return repr(value)


def _part(conn: psycopg.Connection[Any], name: str) -> Any:
    rows = conn.execute(
        SQL[name], {"policy": POLICY_ID, "name": POLICY_NAME, "tier2": list(TIER2_COLLECTIONS)}
    ).fetchall()
    if name in LISTS:
        return sorted((r["row"] for r in rows), key=_key)
    if name in KEYED_LISTS:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            grouped[r["key"]].append(r["row"])
        return {k: sorted(v, key=_key) for k, v in sorted(grouped.items())}
    if name in KEYED:
        keyed: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            keyed[r["key"]].append(r["row"])
        # A key is unique where the schema says so; were it not, every value is kept.
        return {k: v[0] if len(v) == 1 else sorted(v, key=_key) for k, v in sorted(keyed.items())}
    nested: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        nested[r["key"]][r["sub"]].append(r["row"])
    return {
        k: {s: v[0] if len(v) == 1 else sorted(v, key=_key) for s, v in sorted(subs.items())}
        for k, subs in sorted(nested.items())
    }


def read(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Every tier's document, inside the caller's transaction (one snapshot)."""
    return {tier: {part: _part(conn, part) for part in PARTS[tier]} for tier in TIERS}


def facet(document: dict[str, dict[str, Any]], facet_name: str, collection: str) -> Any:
    """One collection's slice of a facet (None when the collection has none)."""
    tier, part = (FACETS | GOVERNANCE_FACETS)[facet_name]
    return document.get(tier, {}).get(part, {}).get(collection)


# -- the expected documents, read from the package's amber snapshots ---------------------------

_CALLS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def _literal(node: ast.AST) -> Any:
    """A value from syrupy's amber text: literals, and dict(...)/list(...)/tuple(...)/set(...) around them."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "tuple" and not node.keywords:
        return [_literal(arg) for arg in node.args]  # amber writes a tuple's items as arguments
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _CALLS
        and not node.keywords
        and len(node.args) <= 1
    ):
        inner = _literal(node.args[0]) if node.args else ()
        return _CALLS[node.func.id](inner)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    raise ValueError(f"not a snapshot value: {ast.dump(node)[:80]}")


def snapshot_texts(path: Path) -> dict[str, str]:
    """The entries of an amber snapshot file, {test name: its value's text}: the one reader of
    the format (a `# name: ` line, the value indented two spaces, a `# ---` line).
    """
    entries: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# name: "):
            name, body = line[len("# name: ") :], []
        elif line == "# ---" and name is not None:
            entries[name] = "\n".join(part[2:] for part in body)
            name = None
        elif name is not None:
            body.append(line)
    return entries


def snapshot_entries(path: Path) -> dict[str, Any]:
    """The entries of an amber snapshot file, {test name: value}."""
    return {name: _literal(ast.parse(text, mode="eval").body) for name, text in snapshot_texts(path).items()}


# The test of each stage whose snapshots hold one metric each ({name: figure}).
FIGURE_TESTS = {
    "baseline": "test_metric_matches_baseline",
    "finalized": "test_metric_is_finalized",
    "greenfield": "test_metric_is_greenfield",
}


def figures(snapshots: Path, stage: str) -> dict[str, int]:
    """The package's expected metrics of a stage (`baseline`, `finalized`, `greenfield`), {metric:
    figure}, from its hash-verified snapshot file in `snapshots` (`package.snapshots_dir`).
    """
    prefix = f"{FIGURE_TESTS[stage]}["
    found: dict[str, int] = {}
    for name, value in snapshot_entries(snapshots / f"test_{stage}.ambr").items():
        if name.startswith(prefix):
            found.update(value)
    return found


def expected_documents(snapshots: Path, stage: str) -> dict[str, dict[str, Any]]:
    """The package's intended documents of a stage (`finalized`, `greenfield`), one per tier, from
    its hash-verified snapshot file in `snapshots` (`package.snapshots_dir`).
    """
    entries = snapshot_entries(snapshots / f"test_{stage}.ambr")
    return {tier: entries.get(f"test_tier_content[{tier}]", {}) for tier in TIERS}
