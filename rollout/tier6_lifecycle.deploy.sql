-- Tier 6, lifecycle: retention and idle thresholds per governed collection, and the governance
-- event bindings, created DISABLED: nothing is dispatched and gov_emit stays 0 until a later,
-- separately gated release enables them.

-- Adopt nothing: an object already there fails the transaction before the commit, named (the
-- cast of the sentence to integer is the only way a data statement can raise).
SELECT CAST('tier 6 refuses to adopt what is already there: ' || string_agg(o.object, '; ' ORDER BY o.object)
            || '; a greenfield target has none of it (run `oneroof rollback`, or remove it)' AS integer)
FROM (
    SELECT 'lifecycle policy ' || collection FROM os_lifecycle_policies
    UNION ALL
    SELECT 'event binding ' || collection || ' ' || event FROM os_event_bindings
) AS o (object)
HAVING count(*) > 0;

INSERT INTO os_lifecycle_policies (collection, retention_days, idle_after_days)
SELECT collection,
       CASE sensitivity WHEN 'restricted' THEN 3650 WHEN 'internal' THEN 1825 ELSE 1095 END,
       CASE domain WHEN 'transport' THEN 90 WHEN 'trade' THEN 180 ELSE 365 END
FROM os_collection_inventory;

INSERT INTO os_event_bindings (collection, event, target, enabled)
SELECT i.collection, e.event, 'os_gov_events', false
FROM os_collection_inventory AS i
CROSS JOIN (VALUES ('items.create'), ('items.update'), ('items.delete')) AS e (event);
