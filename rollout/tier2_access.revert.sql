-- Tier 2 revert: remove the One-Roof Governance policy with its permissions and grants, and
-- unregister the governance collections. Idempotent: deleting what is absent deletes nothing.

DELETE FROM directus_permissions WHERE policy = '75c09095-c4f0-5d33-aaa1-31764f52c0b5';
DELETE FROM directus_access WHERE policy = '75c09095-c4f0-5d33-aaa1-31764f52c0b5';
DELETE FROM directus_policies WHERE id = '75c09095-c4f0-5d33-aaa1-31764f52c0b5';
DELETE FROM directus_fields WHERE collection IN ('os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger');
DELETE FROM directus_collections WHERE collection IN ('os_collection_owners', 'os_collection_axes', 'os_label_rules', 'os_lifecycle_policies', 'os_event_bindings', 'os_gov_events', 'os_idle_flags', 'os_release_ledger');
