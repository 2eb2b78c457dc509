"""The kill matrix's violations and controls, as data: each crafted violation, the state it starts
from, the stage that must see it and the invariant ids it must fail. tests/test_kill_matrix.py
proves them one at a time; bench/mutation.py replays a selection against each mutant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from oneroof.core import gate, package
from oneroof.core.content import FACETS, GOVERNANCE_FACETS, POLICY_ID, TIER2_COLLECTIONS
from oneroof.harness import catalog

PKG = package.load()
COLLECTIONS = sorted(name for name, _, _ in catalog.GOVERNED)


# -- the ids a violation fails -----------------------------------------------------------------


def each(test: str, facet: str, collections: tuple[str, ...] | list[str] = tuple(COLLECTIONS)) -> set[str]:
    return {f"{test}[{c}-{facet}]" for c in collections}


def one(test: str, collection: str, facet: str) -> set[str]:
    return {f"{test}[{collection}-{facet}]"}


def tier(name: str) -> set[str]:
    return {f"test_tier_content[{name}]"}


def metric(stage: str, *names: str) -> set[str]:
    test = {
        "baseline": "test_metric_matches_baseline",
        "finalized": "test_metric_is_finalized",
        "greenfield": "test_metric_is_greenfield",
    }[stage]
    return {f"{test}[{n}]" for n in names}


FIN, GREEN = "test_collection_content", "test_collection_has_no_release_facet"
FIN_GOV, GREEN_GOV = "test_governance_collection_content", "test_governance_collection_is_unregistered"
RATIFIED = "test_owners_are_ratified_by_valid_approvals"
DB_NAME = {"test_database_is_the_one_the_run_expects"}
CONDITION = "test_gate_condition_holds[{}]"
CHAIN, DEPLOYMENTS = "test_ledger_chain_holds", "test_ledger_deployments_verify"
# A ledger row written by hand (by the release role, which may INSERT there): naming no approval
# and no statement, and chained or not.
FORGED_ROW = (
    "INSERT INTO os_release_ledger (action, tier, package_name, package_sha256, tool_version, chain_sha256) "
    "VALUES ('{action}', 2, 'forged', '" + "0" * 64 + "', 'oneroof', {chain})"
)


@dataclass(frozen=True)
class Violation:
    """One crafted violation: the state it starts from, what it runs, the stage that must see it,
    the invariant ids that must fail (all others pass) and what their messages must name.
    """

    name: str
    family: str
    state: str  # greenfield / approved / finalized
    stage: str  # baseline / gate / finalized / greenfield
    sql: tuple[str, ...]
    fails: frozenset[str]
    says: tuple[str, ...] = ()
    expect_db: str | None = None
    hold_lock: bool = False
    tamper_package: bool = False


def v(
    name: str,
    family: str,
    state: str,
    stage: str,
    statements: str | tuple[str, ...],
    fails: set[str],
    says: tuple[str, ...] = (),
    **extra: object,
) -> Violation:
    stmts = (statements,) if isinstance(statements, str) else statements
    return Violation(name, family, state, stage, stmts, frozenset(fails), says, **extra)  # type: ignore[arg-type]


P = f"'{POLICY_ID}'"
TIER2_LIST = "(" + ", ".join(f"'{c}'" for c in TIER2_COLLECTIONS) + ")"
POLICY_INSERT = (
    "INSERT INTO directus_policies (id, name, icon, description, enforce_tfa, admin_access, app_access) "
    f"VALUES ({P}, 'One-Roof Governance', 'policy', 'left over', false, false, true)"
)
OWNER = (
    "INSERT INTO os_collection_owners (collection, owner_unit, proposal_id, approval_ids, active) "
    "SELECT %s, %s, id, '{}', %s FROM os_proposals WHERE code = 'OR-T3-OWNERSHIP-SEED'"
)


def owner(collection: str, unit: str, active: bool) -> str:
    return (
        OWNER.replace("%s", f"'{collection}'", 1)
        .replace("%s", f"'{unit}'", 1)
        .replace("%s", "true" if active else "false", 1)
    )


def deploy_sql(number: int) -> tuple[str, ...]:
    return next(t.deploy_statements for t in PKG.tiers if t.number == number)


FINALIZED = [
    # tier 2: Directus access, privilege escalation
    v(
        "policy-admin-access",
        "directus privilege",
        "finalized",
        "finalized",
        f"UPDATE directus_policies SET admin_access = true WHERE id = {P}",
        tier("tier2_access"),
        ("tier2_access", "admin_access"),
    ),
    v(
        "policy-enforce-tfa-dropped",
        "directus privilege",
        "finalized",
        "finalized",
        f"UPDATE directus_policies SET enforce_tfa = true, app_access = false WHERE id = {P}",
        tier("tier2_access"),
        ("enforce_tfa", "app_access"),
    ),
    v(
        "policy-given-delete",
        "directus privilege",
        "finalized",
        "finalized",
        "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) "
        f"VALUES ('kg_claims', 'delete', '{{}}', '{{}}', '*', {P})",
        tier("tier2_access") | one(FIN, "kg_claims", "tier2_permission"),
        ("kg_claims", "tier2_access", "'delete'"),
    ),
    v(
        "permission-validation-altered",
        "tier 2 altered",
        "finalized",
        "finalized",
        "UPDATE directus_permissions SET validation = NULL, fields = 'id' "
        f"WHERE policy = {P} AND collection = 'dot_routes'",
        tier("tier2_access") | one(FIN, "dot_routes", "tier2_permission"),
        ("dot_routes", "tier2_access", "'id'"),
    ),
    v(
        "permission-duplicated",
        "tier 2 duplicated",
        "finalized",
        "finalized",
        "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) "
        f"SELECT collection, action, permissions, validation, fields, policy FROM directus_permissions "
        f"WHERE policy = {P} AND collection = 'kh_tags'",
        tier("tier2_access") | one(FIN, "kh_tags", "tier2_permission"),
        ("kh_tags", "tier2_access"),
    ),
    v(
        "permission-missing",
        "tier 2 missing",
        "finalized",
        "finalized",
        f"DELETE FROM directus_permissions WHERE policy = {P} AND collection = 'moit_partners'",
        tier("tier2_access") | one(FIN, "moit_partners", "tier2_permission") | metric("finalized", "gap"),
        ("moit_partners", "tier2_access", "None"),
    ),
    v(
        "policy-unlinked-from-role",
        "directus privilege",
        "finalized",
        "finalized",
        f"DELETE FROM directus_access WHERE policy = {P}",
        tier("tier2_access"),
        ("Governance Council",),
    ),
    v(
        "policy-linked-to-agent",
        "tier 2 extra",
        "finalized",
        "finalized",
        'INSERT INTO directus_access (id, role, "user", policy, sort) SELECT gen_random_uuid(), NULL, id, '
        f"{P}, 11 FROM directus_users WHERE email = '{catalog.account('agent').email}'",
        tier("tier2_access"),
        (catalog.account("agent").email,),
    ),
    v(
        "fields-made-writable",
        "directus privilege",
        "finalized",
        "finalized",
        "UPDATE directus_fields SET readonly = false WHERE collection = 'os_collection_owners'",
        tier("tier2_access") | one(FIN_GOV, "os_collection_owners", "tier2_fields"),
        ("os_collection_owners", "tier2_access", "'readonly': False"),
    ),
    v(
        "registration-altered",
        "tier 2 altered",
        "finalized",
        "finalized",
        "UPDATE directus_collections SET hidden = true WHERE collection = 'os_release_ledger'",
        tier("tier2_access") | one(FIN_GOV, "os_release_ledger", "tier2_registration"),
        ("os_release_ledger", "tier2_access", "'hidden': True"),
    ),
    v(
        "policy-deleted",
        "tier 2 missing",
        "finalized",
        "finalized",
        f"DELETE FROM directus_policies WHERE id = {P}",
        tier("tier2_access")
        | each(FIN, "tier2_permission")
        | each(FIN_GOV, "tier2_permission", TIER2_COLLECTIONS)
        | metric("finalized", "gap"),
        ("tier2_access",),
    ),
    v(
        "registrations-missing",
        "tier 2 missing",
        "finalized",
        "finalized",
        (
            f"DELETE FROM directus_fields WHERE collection IN {TIER2_LIST}",
            f"DELETE FROM directus_collections WHERE collection IN {TIER2_LIST}",
        ),
        tier("tier2_access")
        | each(FIN_GOV, "tier2_registration", TIER2_COLLECTIONS)
        | each(FIN_GOV, "tier2_fields", TIER2_COLLECTIONS),
        ("os_idle_flags", "tier2_registration"),
    ),
    # tier 3: ownership, proposal, approvals
    v(
        "owner-unit-changed",
        "tier 3 altered",
        "finalized",
        "finalized",
        "UPDATE os_collection_owners SET owner_unit = 'MOIT' WHERE collection = 'kg_claims'",
        tier("tier3_ownership") | one(FIN, "kg_claims", "tier3_owner"),
        ("kg_claims", "tier3_ownership", "MOIT"),
    ),
    v(
        "owner-inactive",
        "tier 3 altered",
        "finalized",
        "finalized",
        "UPDATE os_collection_owners SET active = false WHERE collection = 'dot_stops'",
        tier("tier3_ownership") | one(FIN, "dot_stops", "tier3_owner") | metric("finalized", "own", "gap"),
        ("dot_stops: tier3_ownership tier3_owner: expected", "'active': False"),
    ),
    v(
        "owner-duplicated",
        "tier 3 duplicated",
        "finalized",
        "finalized",
        owner("kh_reports", "DOT", True),
        tier("tier3_ownership")
        | one(FIN, "kh_reports", "tier3_owner")
        | metric("finalized", "own", "conflict")
        | {f"{RATIFIED}[kh_reports]"},
        ("kh_reports", "tier3_ownership", "DOT"),
    ),
    v(
        "owner-missing",
        "tier 3 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_collection_owners WHERE collection = 'moit_licenses'",
        tier("tier3_ownership") | one(FIN, "moit_licenses", "tier3_owner") | metric("finalized", "own", "gap"),
        ("moit_licenses", "tier3_ownership", "None"),
    ),
    v(
        "owners-all-missing",
        "tier 3 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_collection_owners",
        tier("tier3_ownership") | each(FIN, "tier3_owner") | metric("finalized", "own", "gap"),
        ("tier3_ownership",),
    ),
    v(
        "proposal-back-to-pending",
        "history and status",
        "finalized",
        "finalized",
        "UPDATE os_proposals SET status = 'pending'",
        tier("tier3_ownership"),
        ("pending",),
    ),
    v(
        "approval-revoked-after-finalization",
        "history and status",
        "finalized",
        "finalized",
        "UPDATE os_proposal_approvals SET revoked_at = now()",
        {f"{RATIFIED}[{c}]" for c in COLLECTIONS},
        ("kg_claims: tier3_ownership", "of which [1] are not valid now (valid: [])"),
    ),
    v(
        "owner-unit-renamed",
        "history and status",
        "finalized",
        "finalized",
        "UPDATE os_owner_units SET name = 'Ministry of Trade' WHERE code = 'MOIT'",
        tier("tier3_ownership"),
        ("Ministry of Trade",),
    ),
    # tier 4: axes
    v(
        "axis-missing",
        "tier 4 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_collection_axes WHERE collection = 'kg_claims' AND axis = 'domain'",
        tier("tier4_axes") | one(FIN, "kg_claims", "tier4_axes"),
        ("kg_claims", "tier4_axes", "knowledge-graph"),
    ),
    v(
        "axis-value-changed",
        "tier 4 altered",
        "finalized",
        "finalized",
        "UPDATE os_collection_axes SET value = 'public' WHERE collection = 'dot_permits' AND axis = 'sensitivity'",
        tier("tier4_axes") | one(FIN, "dot_permits", "tier4_axes"),
        ("dot_permits: tier4_axes tier4_axes: expected", "'public'"),
    ),
    v(
        "axis-extra",
        "tier 4 extra",
        "finalized",
        "finalized",
        "INSERT INTO os_collection_axes VALUES ('kh_tags', 'region', 'north')",
        tier("tier4_axes") | one(FIN, "kh_tags", "tier4_axes"),
        ("kh_tags", "tier4_axes", "region"),
    ),
    v(
        "axes-all-missing",
        "tier 4 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_collection_axes",
        tier("tier4_axes") | each(FIN, "tier4_axes") | metric("finalized", "axis", "gap"),
        ("tier4_axes",),
    ),
    # tier 5: label rules
    v(
        "label-effect-flipped",
        "tier 5 altered",
        "finalized",
        "finalized",
        "UPDATE os_label_rules SET effect = 'require' "
        "WHERE collection = 'moit_enterprises' AND label = 'export:public'",
        tier("tier5_label_rules") | one(FIN, "moit_enterprises", "tier5_label_rules"),
        ("moit_enterprises", "tier5_label_rules", "'export:public': 'require'"),
    ),
    v(
        "label-forbid-missing",
        "tier 5 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_label_rules WHERE collection = 'dot_incidents' AND label = 'export:public'",
        tier("tier5_label_rules") | one(FIN, "dot_incidents", "tier5_label_rules"),
        ("dot_incidents", "tier5_label_rules", "export:public"),
    ),
    v(
        "label-contradicting-duplicate",
        "tier 5 duplicated",
        "finalized",
        "finalized",
        "INSERT INTO os_label_rules VALUES ('kh_faq_entries', 'sensitivity:public', 'forbid')",
        tier("tier5_label_rules") | one(FIN, "kh_faq_entries", "tier5_label_rules") | metric("finalized", "conflict"),
        ("kh_faq_entries", "tier5_label_rules", "forbid"),
    ),
    v(
        "label-extra",
        "tier 5 extra",
        "finalized",
        "finalized",
        "INSERT INTO os_label_rules VALUES ('kh_tags', 'export:partner', 'forbid')",
        tier("tier5_label_rules") | one(FIN, "kh_tags", "tier5_label_rules"),
        ("kh_tags", "tier5_label_rules", "export:partner"),
    ),
    v(
        "labels-all-missing",
        "tier 5 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_label_rules",
        tier("tier5_label_rules") | each(FIN, "tier5_label_rules") | metric("finalized", "gap"),
        ("tier5_label_rules",),
    ),
    # tier 6: lifecycle and event bindings
    v(
        "retention-one-day",
        "tier 6 altered",
        "finalized",
        "finalized",
        "UPDATE os_lifecycle_policies SET retention_days = 1 WHERE collection = 'gc_decisions'",
        tier("tier6_lifecycle") | one(FIN, "gc_decisions", "tier6_lifecycle"),
        ("gc_decisions", "tier6_lifecycle", "'retention_days': 1"),
    ),
    v(
        "binding-missing",
        "tier 6 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_event_bindings WHERE collection = 'kg_sources' AND event = 'items.delete'",
        tier("tier6_lifecycle") | one(FIN, "kg_sources", "tier6_event_bindings"),
        ("kg_sources", "tier6_lifecycle", "items.delete"),
    ),
    v(
        "binding-target-external",
        "tier 6 altered",
        "finalized",
        "finalized",
        "UPDATE os_event_bindings SET target = 'https://hooks.example.net/x' WHERE collection = 'dot_routes' "
        "AND event = 'items.update'",
        tier("tier6_lifecycle") | one(FIN, "dot_routes", "tier6_event_bindings"),
        ("dot_routes", "tier6_lifecycle", "https://hooks.example.net/x"),
    ),
    v(
        "binding-enabled",
        "tier 6 altered",
        "finalized",
        "finalized",
        "UPDATE os_event_bindings SET enabled = true WHERE collection = 'kh_articles' AND event = 'items.create'",
        tier("tier6_lifecycle") | one(FIN, "kh_articles", "tier6_event_bindings"),
        ("kh_articles", "tier6_lifecycle", "'enabled': True"),
    ),
    v(
        "binding-extra",
        "tier 6 extra",
        "finalized",
        "finalized",
        "INSERT INTO os_event_bindings VALUES ('moit_commodities', 'items.sort', 'os_gov_events', false)",
        tier("tier6_lifecycle") | one(FIN, "moit_commodities", "tier6_event_bindings"),
        ("moit_commodities", "tier6_lifecycle", "items.sort"),
    ),
    v(
        "lifecycle-all-missing",
        "tier 6 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_lifecycle_policies",
        tier("tier6_lifecycle") | each(FIN, "tier6_lifecycle") | metric("finalized", "gap"),
        ("tier6_lifecycle",),
    ),
    v(
        "bindings-all-missing",
        "tier 6 missing",
        "finalized",
        "finalized",
        "DELETE FROM os_event_bindings",
        tier("tier6_lifecycle") | each(FIN, "tier6_event_bindings") | metric("finalized", "gap"),
        ("tier6_lifecycle",),
    ),
    # figures, history, data, target
    v(
        "event-emitted",
        "figures",
        "finalized",
        "finalized",
        "INSERT INTO os_gov_events (collection, event) VALUES ('kh_tags', 'items.create')",
        metric("finalized", "gov_emit"),
        ("gov_emit",),
    ),
    v(
        "collection-flagged-idle",
        "figures",
        "finalized",
        "finalized",
        "INSERT INTO os_idle_flags (collection) VALUES ('kh_tags')",
        metric("finalized", "idle"),
        ("idle",),
    ),
    v(
        "collection-added-to-inventory",
        "figures",
        "finalized",
        "finalized",
        (
            "INSERT INTO directus_collections (collection) VALUES ('dot_bridges')",
            "INSERT INTO os_collection_inventory VALUES ('dot_bridges', 'transport', 'public', now())",
        ),
        {"test_inventory_is_the_governed_set"}
        | {f"{FIN}[dot_bridges-{f}]" for f in FACETS}
        | metric("finalized", "inventory", "gap"),
        ("dot_bridges", "the package intends no"),
    ),
    v(
        "ledger-row-missing",
        "history and status",
        "finalized",
        "finalized",
        "DELETE FROM os_release_ledger WHERE tier = 4",
        {"test_ledger_records_each_tier", CHAIN},
        ("ledger row #", "does not follow"),
    ),
    v(
        "ledger-row-altered",
        "history and status",
        "finalized",
        "finalized",
        f"UPDATE os_release_ledger SET package_sha256 = '{'0' * 64}' WHERE tier = 4",
        {"test_ledger_records_each_tier", CHAIN, DEPLOYMENTS},
        ("'tier': 4", "'package_sha256': '000000000000", "its rows disagree on package_sha256"),
    ),
    v(
        "ledger-chain-rewritten",
        "history and status",
        "finalized",
        "finalized",
        f"UPDATE os_release_ledger SET chain_sha256 = '{'0' * 64}' WHERE tier = 4",
        {CHAIN},
        ("does not follow from its columns",),
    ),
    v(
        "ledger-statement-gone",
        "history and status",
        "finalized",
        "finalized",
        "DELETE FROM directus_comments WHERE collection = 'os_proposal_approvals'",
        {DEPLOYMENTS} | {f"{RATIFIED}[{c}]" for c in COLLECTIONS},
        ("approval #1: no signed statement",),
    ),
    v("wrong-database", "wrong database", "finalized", "finalized", (), DB_NAME, ("'directus'",), expect_db="directus"),
]

GREENFIELD = [
    v(
        "leftover-policy",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        POLICY_INSERT,
        tier("tier2_access"),
        ("One-Roof Governance",),
    ),
    v(
        "leftover-access-row",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        (
            POLICY_INSERT.replace(POLICY_ID, "11111111-2222-3333-4444-555555555555"),
            'INSERT INTO directus_access (id, role, "user", policy, sort) SELECT gen_random_uuid(), id, NULL, '
            "'11111111-2222-3333-4444-555555555555', 10 FROM directus_roles WHERE name = 'Governance Council'",
        ),
        tier("tier2_access"),
        ("Governance Council",),
    ),
    v(
        "leftover-field",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        "INSERT INTO directus_fields (collection, field, interface, readonly) "
        "VALUES ('os_collection_owners', 'owner_unit', 'input', true)",
        tier("tier2_access") | one(GREEN_GOV, "os_collection_owners", "tier2_fields"),
        ("os_collection_owners", "tier2_access", "owner_unit"),
    ),
    v(
        "ledger-row-forged-chain",
        "history and status",
        "greenfield",
        "greenfield",
        FORGED_ROW.format(action="revert", chain=f"'{'0' * 64}'"),
        {CHAIN},
        ("does not follow from its columns",),
    ),
    v(
        "ledger-deployment-unsigned",
        "history and status",
        "greenfield",
        "greenfield",
        FORGED_ROW.format(action="deploy", chain="NULL"),
        {DEPLOYMENTS},
        ("it names no approval",),
    ),
    v(
        "leftover-registration",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        "INSERT INTO directus_collections (collection) VALUES ('os_release_ledger')",
        tier("tier2_access") | one(GREEN_GOV, "os_release_ledger", "tier2_registration"),
        ("os_release_ledger", "tier2_access"),
    ),
    v(
        "leftover-permission",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        (
            POLICY_INSERT,
            "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, "
            f"policy) VALUES ('kg_claims', 'read', '{{}}', '{{}}', '*', {P})",
        ),
        tier("tier2_access") | one(GREEN, "kg_claims", "tier2_permission") | metric("greenfield", "gap"),
        ("kg_claims", "tier2_access", "'read'"),
    ),
    v(
        "tier2-left-everywhere",
        "half-applied tier",
        "greenfield",
        "greenfield",
        deploy_sql(2),
        tier("tier2_access")
        | each(GREEN, "tier2_permission")
        | {f"{GREEN_GOV}[{c}-{f}]" for c in TIER2_COLLECTIONS for f in GOVERNANCE_FACETS}
        | metric("greenfield", "gap"),
        ("tier2_access",),
    ),
    v(
        "leftover-inactive-owner",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        owner("dot_vehicles", "DOT", False),
        tier("tier3_ownership") | one(GREEN, "dot_vehicles", "tier3_owner"),
        ("dot_vehicles: tier3_ownership tier3_owner is left", "'active': False"),
    ),
    v(
        "inactive-owners-everywhere",
        "half-applied tier",
        "greenfield",
        "greenfield",
        "INSERT INTO os_collection_owners (collection, owner_unit, proposal_id, approval_ids, active) "
        "SELECT i.collection, 'KG-SYS', p.id, '{}', false FROM os_collection_inventory AS i, os_proposals AS p",
        tier("tier3_ownership") | each(GREEN, "tier3_owner"),
        ("tier3_ownership",),
    ),
    v(
        "proposal-left-ratified",
        "history and status",
        "greenfield",
        "greenfield",
        "UPDATE os_proposals SET status = 'ratified'",
        tier("tier3_ownership"),
        ("ratified",),
    ),
    v(
        "owner-unit-deleted",
        "history and status",
        "greenfield",
        "greenfield",
        "DELETE FROM os_owner_units WHERE code = 'MOIT'",
        tier("tier3_ownership"),
        ("MOIT",),
    ),
    v(
        "leftover-active-owner",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        owner("kh_topics", "GOV-COUNCIL", True),
        tier("tier3_ownership") | one(GREEN, "kh_topics", "tier3_owner") | metric("greenfield", "own", "gap"),
        ("kh_topics", "tier3_ownership", "GOV-COUNCIL"),
    ),
    v(
        "leftover-axis",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        "INSERT INTO os_collection_axes VALUES ('kg_aliases', 'domain', 'knowledge-graph')",
        tier("tier4_axes") | one(GREEN, "kg_aliases", "tier4_axes") | metric("greenfield", "axis", "gap"),
        ("kg_aliases", "tier4_axes", "knowledge-graph"),
    ),
    v(
        "tier4-left-everywhere",
        "half-applied tier",
        "greenfield",
        "greenfield",
        deploy_sql(4),
        tier("tier4_axes") | each(GREEN, "tier4_axes") | metric("greenfield", "axis", "gap"),
        ("tier4_axes",),
    ),
    v(
        "leftover-label-rule",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        "INSERT INTO os_label_rules VALUES ('moit_licenses', 'export:public', 'forbid')",
        tier("tier5_label_rules") | one(GREEN, "moit_licenses", "tier5_label_rules") | metric("greenfield", "gap"),
        ("moit_licenses", "tier5_label_rules", "export:public"),
    ),
    v(
        "contradicting-label-rules",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        (
            "INSERT INTO os_label_rules VALUES ('kh_tags', 'export:public', 'forbid')",
            "INSERT INTO os_label_rules VALUES ('kh_tags', 'export:public', 'require')",
        ),
        tier("tier5_label_rules")
        | one(GREEN, "kh_tags", "tier5_label_rules")
        | metric("greenfield", "conflict", "gap"),
        ("kh_tags", "tier5_label_rules", "require"),
    ),
    v(
        "tier5-left-everywhere",
        "half-applied tier",
        "greenfield",
        "greenfield",
        deploy_sql(5),
        tier("tier5_label_rules") | each(GREEN, "tier5_label_rules") | metric("greenfield", "gap"),
        ("tier5_label_rules",),
    ),
    v(
        "leftover-lifecycle",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        "INSERT INTO os_lifecycle_policies VALUES ('gc_meetings', 1, 1)",
        tier("tier6_lifecycle") | one(GREEN, "gc_meetings", "tier6_lifecycle") | metric("greenfield", "gap"),
        ("gc_meetings", "tier6_lifecycle", "'retention_days': 1"),
    ),
    v(
        "leftover-disabled-binding",
        "greenfield leftovers",
        "greenfield",
        "greenfield",
        "INSERT INTO os_event_bindings VALUES ('kh_reports', 'items.create', 'os_gov_events', false)",
        tier("tier6_lifecycle") | one(GREEN, "kh_reports", "tier6_event_bindings") | metric("greenfield", "gap"),
        ("kh_reports", "tier6_lifecycle", "items.create"),
    ),
    v(
        "tier6-left-everywhere",
        "half-applied tier",
        "greenfield",
        "greenfield",
        deploy_sql(6),
        tier("tier6_lifecycle")
        | each(GREEN, "tier6_lifecycle")
        | each(GREEN, "tier6_event_bindings")
        | metric("greenfield", "gap"),
        ("tier6_lifecycle",),
    ),
    v(
        "greenfield-event-emitted",
        "figures",
        "greenfield",
        "greenfield",
        "INSERT INTO os_gov_events (collection, event) VALUES ('kh_tags', 'items.create')",
        metric("greenfield", "gov_emit"),
        ("gov_emit",),
    ),
    v(
        "greenfield-collection-flagged-idle",
        "figures",
        "greenfield",
        "greenfield",
        "INSERT INTO os_idle_flags (collection) VALUES ('kh_tags')",
        metric("greenfield", "idle"),
        ("idle",),
    ),
    v(
        "greenfield-collection-added",
        "figures",
        "greenfield",
        "greenfield",
        (
            "INSERT INTO directus_collections (collection) VALUES ('dot_bridges')",
            "INSERT INTO os_collection_inventory VALUES ('dot_bridges', 'transport', 'public', now())",
        ),
        {"test_inventory_is_the_governed_set"} | metric("greenfield", "inventory", "gap"),
        ("dot_bridges",),
    ),
    v(
        "greenfield-wrong-database",
        "wrong database",
        "greenfield",
        "greenfield",
        (),
        DB_NAME,
        ("'directus'",),
        expect_db="directus",
    ),
]

APPROVAL = (
    "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256) SELECT p.id, "
    "a.user_id, a.level, p.package_sha256 FROM os_proposals AS p, os_approvers AS a "
    "WHERE a.kind = 'human' AND a.level = 'L4' LIMIT 1"
)
BASELINE = [
    v(
        "baseline-approval-recorded",
        "figures",
        "greenfield",
        "baseline",
        APPROVAL,
        metric("baseline", "ospa"),
        ("ospa",),
    ),
    v(
        "baseline-owner-seeded",
        "figures",
        "greenfield",
        "baseline",
        owner("kh_topics", "GOV-COUNCIL", True),
        metric("baseline", "own", "gap"),
        ("own",),
    ),
    v(
        "baseline-label-rule",
        "figures",
        "greenfield",
        "baseline",
        "INSERT INTO os_label_rules VALUES ('kh_tags', 'export:public', 'forbid')",
        metric("baseline", "gap"),
        ("gap",),
    ),
    v(
        "baseline-conflict",
        "figures",
        "greenfield",
        "baseline",
        (
            "INSERT INTO os_label_rules VALUES ('kh_tags', 'export:public', 'forbid')",
            "INSERT INTO os_label_rules VALUES ('kh_tags', 'export:public', 'require')",
        ),
        metric("baseline", "conflict", "gap"),
        ("conflict",),
    ),
    v(
        "baseline-event-emitted",
        "figures",
        "greenfield",
        "baseline",
        "INSERT INTO os_gov_events (collection, event) VALUES ('kh_tags', 'items.create')",
        metric("baseline", "gov_emit"),
    ),
    v(
        "baseline-collection-added",
        "figures",
        "greenfield",
        "baseline",
        (
            "INSERT INTO directus_collections (collection) VALUES ('dot_bridges')",
            "INSERT INTO os_collection_inventory VALUES ('dot_bridges', 'transport', 'public', now())",
        ),
        metric("baseline", "inventory", "gap"),
    ),
    v(
        "baseline-axis",
        "figures",
        "greenfield",
        "baseline",
        "INSERT INTO os_collection_axes VALUES ('kg_aliases', 'domain', 'knowledge-graph')",
        metric("baseline", "axis", "gap"),
    ),
    v(
        "baseline-idle-flag",
        "figures",
        "greenfield",
        "baseline",
        "INSERT INTO os_idle_flags (collection) VALUES ('kh_tags')",
        metric("baseline", "idle"),
    ),
    v("baseline-wrong-database", "wrong database", "greenfield", "baseline", (), DB_NAME, expect_db="directus"),
]

GATE = [
    v(
        "gate-approval-revoked",
        "gate",
        "approved",
        "gate",
        "UPDATE os_proposal_approvals SET revoked_at = now()",
        {CONDITION.format("approvals")},
        ("(ospa=1: 1 approval row, 1 not valid: #1 revoked)",),
    ),
    v(
        "gate-approval-for-another-package",
        "gate",
        "approved",
        "gate",
        f"UPDATE os_proposal_approvals SET package_sha256 = '{'0' * 64}'",
        {CONDITION.format("approvals")},
        ("names package 000000000000",),
    ),
    v(
        "gate-proposal-withdrawn",
        "gate",
        "approved",
        "gate",
        "UPDATE os_proposals SET status = 'withdrawn'",
        {CONDITION.format("proposal"), CONDITION.format("approvals")},
        ("withdrawn",),
    ),
    v(
        "gate-proposal-names-another-package",
        "gate",
        "approved",
        "gate",
        f"UPDATE os_proposals SET package_sha256 = '{'0' * 64}'",
        {CONDITION.format("proposal")},
        (f"names package {'0' * 12}, not this package {PKG.sha256[:12]}\nassert",),
    ),
    # The clone mark taken off: the database is production to the gate, and no rehearsal binds it.
    v(
        "gate-not-rehearsed",
        "gate",
        "approved",
        "gate",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET oneroof.clone', current_database()); END $$",
        {CONDITION.format("rehearsed")},
        ("no rehearsal evidence: ", "is not a marked clone"),
    ),
    v(
        "gate-wrong-database",
        "wrong database",
        "approved",
        "gate",
        (),
        {CONDITION.format("target")},
        ("'directus'",),
        expect_db="directus",
    ),
    v(
        "gate-mixed-state",
        "gate",
        "approved",
        "gate",
        "INSERT INTO os_collection_axes VALUES ('kg_aliases', 'domain', 'knowledge-graph')",
        {CONDITION.format("state")},
        ("state=mixed",),
    ),
    v(
        "gate-ledger-rewritten",
        "gate",
        "approved",
        "gate",
        FORGED_ROW.format(action="deploy", chain=f"'{'0' * 64}'"),
        {CONDITION.format("ledger")},
        ("does not follow from its columns",),
    ),
    v("gate-lock-held", "gate", "approved", "gate", (), {CONDITION.format("lock")}, ("release lock",), hold_lock=True),
    v(
        "gate-package-tampered",
        "gate",
        "approved",
        "gate",
        (),
        {"test_package_verifies"} | {CONDITION.format(c) for c in gate.CONDITIONS},
        ("tier4_axes.deploy.sql",),
        tamper_package=True,
    ),
]


# -- issue 20: invariants of effect --------------------------------------------------------------
# Privileges that arrive another way than the One-Roof policy, a greenfield that is not empty, the
# inventory's content, the gate's own assumptions and dispatch by other means: each caught by the
# stage that should see it, its message naming the actor and the object.
PRIVILEGES = {"test_effective_privileges"}
WRITES = PRIVILEGES | {"test_governance_writes"}
DISPATCH = {"test_no_dispatch_by_other_means"}
LEFT = {"test_nothing_of_the_release_is_left"}
EXTRA = "'22222222-3333-4444-5555-666666666666'"
AGENT = catalog.account("agent").email


def extra_policy(name: str, grants: tuple[tuple[str, str], ...], admin: bool = False) -> tuple[str, ...]:
    """A policy of its own with `grants` ((collection, action) pairs): privileges another way."""
    return (
        "INSERT INTO directus_policies (id, name, icon, admin_access, app_access) "
        f"VALUES ({EXTRA}, '{name}', 'badge', {str(admin).lower()}, false)",
        *(
            "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) "
            f"VALUES ('{collection}', '{action}', '{{}}', '{{}}', '*', {EXTRA})"
            for collection, action in grants
        ),
    )


def link(policy: str, role: str | None = None, email: str | None = None) -> str:
    """An access row linking `policy` (an id literal) to a role (by name) or a user (by email)."""
    if role is not None:
        return (
            'INSERT INTO directus_access (id, role, "user", policy, sort) SELECT gen_random_uuid(), id, NULL, '
            f"{policy}, 20 FROM directus_roles WHERE name = '{role}'"
        )
    return (
        'INSERT INTO directus_access (id, role, "user", policy, sort) SELECT gen_random_uuid(), NULL, id, '
        f"{policy}, 20 FROM directus_users WHERE email = '{email}'"
    )


def policy_named(name: str) -> str:
    return f"(SELECT id FROM directus_policies WHERE name = '{name}')"


def role_named(name: str) -> str:
    return f"(SELECT id FROM directus_roles WHERE name = '{name}')"


COUNCIL_WRITES = extra_policy(
    "Council Writers",
    (("os_collection_owners", "create"), ("os_collection_owners", "update"), ("os_collection_owners", "delete")),
)
FLOW = (
    "INSERT INTO directus_flows (id, name, status, trigger, options) VALUES (gen_random_uuid(), 'Notify stewards', "
    '\'active\', \'event\', \'{"type": "action", "scope": ["items.update"], "collections": ["kg_claims"]}\')'
)
TRIGGER = (
    "CREATE FUNCTION public.km_emit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO os_gov_events (collection, event) VALUES (TG_TABLE_NAME, TG_OP); RETURN NEW; END $$",
    "CREATE TRIGGER km_emit AFTER UPDATE ON dot_routes FOR EACH ROW EXECUTE FUNCTION public.km_emit()",
)
PUBLIC_READS_LEDGER = (
    "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) "
    "SELECT 'os_release_ledger', 'read', '{}', '{}', '*', id FROM directus_policies "
    "WHERE name = '$t:public_label'"
)
REGISTRATION = (
    "UPDATE directus_settings SET public_registration = true, "
    f"public_registration_role = {role_named('Governance Council')}"
)
PARENT = f"UPDATE directus_roles SET parent = {role_named('Governance Council')} WHERE name = 'Automation'"
MOVE_AGENT = f"UPDATE directus_users SET role = {role_named('Governance Council')} WHERE email = '{AGENT}'"


def effect(stage: str, state: str, prefix: str) -> list[Violation]:
    """The privileges that arrive another way, as `stage` must see them."""
    return [
        v(
            f"{prefix}other-policy-grants-council-writes",
            "privileges another way",
            state,
            stage,
            (*COUNCIL_WRITES, link(EXTRA, role="Governance Council")),
            WRITES,
            ("the Governance Council role can update os_collection_owners (via policy 'Council Writers')",),
        ),
        v(
            f"{prefix}admin-policy-linked-to-a-role",
            "privileges another way",
            state,
            stage,
            link(policy_named("Administrator"), role="Data Stewards"),
            WRITES,
            ("the Data Stewards role can do anything: admin_access (via policy 'Administrator')",),
        ),
        v(
            f"{prefix}agent-moved-into-council",
            "privileges another way",
            state,
            stage,
            MOVE_AGENT,
            WRITES,
            (f"the user {AGENT} can create os_proposal_approvals",),
        ),
        v(
            f"{prefix}role-parent-is-council",
            "privileges another way",
            state,
            stage,
            PARENT,
            WRITES,
            ("the Automation role can create os_proposal_approvals", "inherited from role 'Governance Council'"),
        ),
        v(
            f"{prefix}public-reads-the-ledger",
            "privileges another way",
            state,
            stage,
            PUBLIC_READS_LEDGER,
            PRIVILEGES,
            ("the public can read os_release_ledger (via policy '$t:public_label')",),
        ),
        v(
            f"{prefix}public-registration-into-council",
            "privileges another way",
            state,
            stage,
            REGISTRATION,
            WRITES,
            ("anyone who registers (public registration) can create os_proposal_approvals",),
        ),
        v(
            f"{prefix}flow-on-governed-items",
            "dispatch by other means",
            state,
            stage,
            FLOW,
            DISPATCH | metric(stage, "gov_emit"),
            ("active Directus flow 'Notify stewards' on items.update of kg_claims",),
        ),
        v(
            f"{prefix}trigger-writes-events",
            "dispatch by other means",
            state,
            stage,
            TRIGGER,
            DISPATCH | metric(stage, "gov_emit"),
            ("trigger km_emit on dot_routes writes os_gov_events (function km_emit)",),
        ),
    ]


EFFECT = [
    *effect("finalized", "finalized", "finalized-"),
    *effect("baseline", "greenfield", "baseline-"),
    *effect("greenfield", "greenfield", "greenfield-"),
    v(
        "finalized-service-account-moved-into-council",
        "privileges another way",
        "finalized",
        "finalized",
        MOVE_AGENT.replace(AGENT, catalog.account("svc-etl").email),
        WRITES,
        (
            "the user svc-etl@gov.example.com can create os_proposal_approvals [fields proposal_id,level,"
            "package_sha256,comment] (via policy 'Governance Approvers', through role 'Governance Council')",
        ),
    ),
    v(
        "finalized-look-alike-policy",
        "privileges another way",
        "finalized",
        "finalized",
        (
            *extra_policy("One-Roof Governance ", (("os_collection_owners", "update"),)),
            link(EXTRA, role="Governance Council"),
        ),
        WRITES,
        ("the Governance Council role can update os_collection_owners (via policy 'One-Roof Governance ')",),
    ),
    v(
        "finalized-automation-writes-the-ledger",
        "privileges another way",
        "finalized",
        "finalized",
        "INSERT INTO directus_permissions (collection, action, permissions, validation, fields, policy) "
        "SELECT 'os_release_ledger', 'update', '{}', '{}', '*', id FROM directus_policies "
        "WHERE name = 'Automation'",
        WRITES,
        ("the Automation role can update os_release_ledger (via policy 'Automation')",),
    ),
    v(
        "finalized-admin-policy-linked-to-a-user",
        "privileges another way",
        "finalized",
        "finalized",
        link(policy_named("Administrator"), email="svc-ci@gov.example.com"),
        WRITES,
        ("the user svc-ci@gov.example.com can do anything: admin_access (via policy 'Administrator', linked",),
    ),
    # greenfield means empty
    v(
        "greenfield-leftover-admin-policy",
        "greenfield means empty",
        "greenfield",
        "greenfield",
        POLICY_INSERT.replace("false, false, true)", "false, true, true)"),
        tier("tier2_access") | LEFT,
        ("policy 'One-Roof Governance' (75c09095-c4f0-5d33-aaa1-31764f52c0b5) with admin_access",),
    ),
    v(
        "greenfield-look-alike-policy-linked-to-agent",
        "greenfield means empty",
        "greenfield",
        "greenfield",
        (
            "INSERT INTO directus_policies (id, name, icon, admin_access, app_access) "
            f"VALUES ({EXTRA}, 'one-roof governance', 'policy', false, true)",
            link(EXTRA, email=AGENT),
        ),
        LEFT | PRIVILEGES,
        (f"access row linking policy 'one-roof governance' to user {AGENT}", f"the user {AGENT} can use"),
    ),
    v(
        "greenfield-writable-field",
        "greenfield means empty",
        "greenfield",
        "greenfield",
        "INSERT INTO directus_fields (collection, field, interface, readonly) "
        "VALUES ('os_collection_owners', 'active', 'boolean', false)",
        tier("tier2_access") | one(GREEN_GOV, "os_collection_owners", "tier2_fields") | LEFT,
        ("field os_collection_owners.active (writable)",),
    ),
    # the content of the inventory and of the roles the release grants to
    v(
        "baseline-sensitivity-changed",
        "content not counts",
        "greenfield",
        "baseline",
        "UPDATE os_collection_inventory SET sensitivity = 'public' WHERE collection = 'kg_claims'",
        {"test_inventory_content"},
        ("os_collection_inventory: kg_claims is", "'sensitivity': 'public'", "'sensitivity': 'restricted'"),
    ),
    v(
        "baseline-domain-changed",
        "content not counts",
        "greenfield",
        "baseline",
        "UPDATE os_collection_inventory SET domain = 'trade' WHERE collection = 'dot_permits'",
        {"test_inventory_content"},
        ("os_collection_inventory: dot_permits is", "'domain': 'trade'"),
    ),
    v(
        "baseline-collection-swapped",
        "content not counts",
        "greenfield",
        "baseline",
        (
            "DELETE FROM os_collection_inventory WHERE collection = 'kh_tags'",
            "INSERT INTO os_collection_inventory VALUES ('cms_pages', 'documents', 'public', now())",
        ),
        {"test_inventory_content"},
        ("os_collection_inventory: cms_pages is", "os_collection_inventory: kh_tags is None"),
    ),
    v(
        "baseline-council-renamed",
        "content not counts",
        "greenfield",
        "baseline",
        "UPDATE directus_roles SET name = 'Council' WHERE name = 'Governance Council'",
        {"test_release_grantee_roles"} | WRITES,
        ("directus_roles: role b8afb63b-5e1f-5d03-ac93-9a7cce83f691 is named 'Council'",),
    ),
    v(
        "baseline-council-swapped",
        "content not counts",
        "greenfield",
        "baseline",
        (
            "UPDATE directus_roles SET name = 'Former Council' WHERE name = 'Governance Council'",
            "UPDATE directus_roles SET name = 'Governance Council' WHERE name = 'Data Stewards'",
        ),
        {"test_release_grantee_roles"} | WRITES,
        ("the role the release grants to as 'Governance Council' is",),
    ),
    # the gate's own assumptions, and leftovers it must block on
    v(
        "gate-no-activity-on-approvals",
        "gate assumptions",
        "approved",
        "gate",
        "UPDATE directus_collections SET accountability = NULL WHERE collection = 'os_proposal_approvals'",
        {CONDITION.format("assumptions")},
        ("Directus records no activity on os_proposal_approvals",),
    ),
    v(
        "gate-approver-not-user-created",
        "gate assumptions",
        "approved",
        "gate",
        "UPDATE directus_fields SET special = NULL WHERE collection = 'os_proposal_approvals' AND field = 'approver'",
        {CONDITION.format("assumptions")},
        ("os_proposal_approvals.approver is not filled in by Directus",),
    ),
    v(
        "gate-approver-writable-on-create",
        "gate assumptions",
        "approved",
        "gate",
        "UPDATE directus_permissions SET fields = '*' WHERE collection = 'os_proposal_approvals' AND action = 'create' "
        f"AND policy = {policy_named('Service Accounts')}",
        {CONDITION.format("assumptions")},
        ("policy 'Service Accounts' (fields *) may create os_proposal_approvals",),
    ),
    v(
        "gate-leftover-admin-policy",
        "greenfield means empty",
        "approved",
        "gate",
        POLICY_INSERT.replace("false, false, true)", "false, true, true)"),
        {CONDITION.format("state")},
        ("state=mixed", "policy 'One-Roof Governance' (75c09095-c4f0-5d33-aaa1-31764f52c0b5) with admin_access"),
    ),
    v(
        "gate-leftover-writable-field",
        "greenfield means empty",
        "approved",
        "gate",
        "INSERT INTO directus_fields (collection, field, interface, readonly) "
        "VALUES ('os_collection_owners', 'owner_unit', 'input', false)",
        {CONDITION.format("state")},
        ("field os_collection_owners.owner_unit (writable)",),
    ),
    v(
        "gate-leftover-policy-linked-to-agent",
        "greenfield means empty",
        "approved",
        "gate",
        (POLICY_INSERT, link(P, email=AGENT)),
        {CONDITION.format("state")},
        (f"access row linking policy 'One-Roof Governance' to user {AGENT}",),
    ),
    v(
        "gate-proposal-left-ratified",
        "greenfield means empty",
        "approved",
        "gate",
        "UPDATE os_proposals SET status = 'ratified'",
        {CONDITION.format("state")},
        ("proposal OR-T3-OWNERSHIP-SEED is ratified",),
    ),
]

# What the invariants of effect add to the violations above: a leftover is named by the greenfield
# stage's emptiness check, and a changed grant by the effective privileges.
ALSO: dict[str, set[str]] = {
    "baseline-collection-added": {"test_inventory_content"},
    "contradicting-label-rules": LEFT,
    "inactive-owners-everywhere": LEFT,
    "leftover-access-row": PRIVILEGES | LEFT,
    "leftover-active-owner": LEFT,
    "leftover-axis": LEFT,
    "leftover-disabled-binding": LEFT,
    "leftover-field": LEFT,
    "leftover-inactive-owner": LEFT,
    "leftover-label-rule": LEFT,
    "leftover-lifecycle": LEFT,
    "leftover-permission": LEFT,
    "leftover-policy": LEFT,
    "leftover-registration": LEFT,
    "permission-missing": PRIVILEGES,
    "permission-validation-altered": PRIVILEGES,
    "policy-admin-access": WRITES,
    "policy-deleted": PRIVILEGES,
    "policy-enforce-tfa-dropped": PRIVILEGES,
    "policy-given-delete": PRIVILEGES,
    "policy-linked-to-agent": PRIVILEGES,
    "policy-unlinked-from-role": PRIVILEGES,
    "proposal-left-ratified": LEFT,
    "tier2-left-everywhere": PRIVILEGES | LEFT,
    "tier4-left-everywhere": LEFT,
    "tier5-left-everywhere": LEFT,
    "tier6-left-everywhere": LEFT,
}
EARLIER = [replace(x, fails=x.fails | ALSO.get(x.name, set())) for x in FINALIZED + GREENFIELD + BASELINE + GATE]

VIOLATIONS = EARLIER + EFFECT
CONTROLS = {"baseline": "greenfield", "greenfield": "greenfield", "gate": "approved", "finalized": "finalized"}
