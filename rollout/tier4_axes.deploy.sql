-- Tier 4, axes: every governed collection is classified on two axes, its domain and its
-- sensitivity, taken from the inventory.

-- Adopt nothing: an object already there fails the transaction before the commit, named (the
-- cast of the sentence to integer is the only way a data statement can raise).
SELECT CAST('tier 4 refuses to adopt what is already there: ' || string_agg(o.object, '; ' ORDER BY o.object)
            || '; a greenfield target has none of it (run `oneroof rollback`, or remove it)' AS integer)
FROM (
    SELECT 'axis ' || collection || ' ' || axis FROM os_collection_axes
) AS o (object)
HAVING count(*) > 0;

INSERT INTO os_collection_axes (collection, axis, value)
SELECT collection, 'domain', domain FROM os_collection_inventory
UNION ALL
SELECT collection, 'sensitivity', sensitivity FROM os_collection_inventory;
