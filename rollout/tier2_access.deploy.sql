-- Tier 2, access: the One-Roof Governance policy, granted to the Governance Council role; its
-- read permission on every governed collection (the access facet) and on the governance
-- records; and the governance collections registered in Directus (fields read-only: only the
-- executor writes them). Nothing of it may be there before: the deploy adopts no leftover.

-- Adopt nothing: an object already there fails the transaction before the commit, named (the
-- cast of the sentence to integer is the only way a data statement can raise).
SELECT CAST('tier 2 refuses to adopt what is already there: ' || string_agg(o.object, '; ' ORDER BY o.object)
            || '; a greenfield target has none of it (run `oneroof rollback`, or remove it)' AS integer)
FROM (
    SELECT 'policy ' || quote_literal(name) || ' (' || id || ')' FROM directus_policies
    WHERE id = '75c09095-c4f0-5d33-aaa1-31764f52c0b5' OR lower(btrim(name)) = 'one-roof governance'
    UNION ALL
    SELECT 'access row ' || id FROM directus_access
    WHERE id = 'd6330810-3d1e-5222-9bbb-c4b0e51d619f' OR policy = '75c09095-c4f0-5d33-aaa1-31764f52c0b5'
    UNION ALL
    SELECT 'permission ' || action || ' ' || collection FROM directus_permissions WHERE policy = '75c09095-c4f0-5d33-aaa1-31764f52c0b5'
    UNION ALL
    SELECT 'collection metadata ' || collection FROM directus_collections WHERE collection = ANY (ARRAY['os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger'])
    UNION ALL
    SELECT 'field ' || collection || '.' || field FROM directus_fields WHERE collection = ANY (ARRAY['os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger'])
) AS o (object)
HAVING count(*) > 0;

INSERT INTO directus_policies (id, name, icon, description, ip_access, enforce_tfa, admin_access, app_access)
VALUES ('75c09095-c4f0-5d33-aaa1-31764f52c0b5', 'One-Roof Governance', 'policy',
        'Read access to the governed collections and the One-Roof governance records (tier 2)',
        NULL, false, false, true);

INSERT INTO directus_access (id, role, "user", policy, sort)
SELECT 'd6330810-3d1e-5222-9bbb-c4b0e51d619f', r.id, NULL, '75c09095-c4f0-5d33-aaa1-31764f52c0b5', 10
FROM directus_roles AS r
WHERE r.name = 'Governance Council';

INSERT INTO directus_collections (collection, icon, note, hidden, singleton, accountability, sort, "group",
                                  collapse, versioning)
SELECT g.collection, 'policy', 'One-Roof ' || replace(substr(g.collection, 4), '_', ' '), false, false, 'all',
       10 + g.ord, 'one_roof', 'open', false
FROM unnest(ARRAY['os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger']) WITH ORDINALITY AS g (collection, ord);

INSERT INTO directus_fields (collection, field, special, interface, readonly, hidden, sort, width, required)
SELECT c.table_name, c.column_name, CASE WHEN c.data_type = 'jsonb' THEN 'cast-json' END, 'input', true, false,
       c.ordinal_position, 'full', false
FROM information_schema.columns AS c
WHERE c.table_schema = 'public'
  AND c.table_name IN ('os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger');

INSERT INTO directus_permissions (collection, action, permissions, validation, presets, fields, policy)
SELECT t.collection, 'read', '{}', '{}', NULL, '*', '75c09095-c4f0-5d33-aaa1-31764f52c0b5'
FROM (SELECT collection FROM os_collection_inventory
      UNION ALL
      SELECT unnest(ARRAY['os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger'])) AS t (collection);
