-- Tier 5, label rules: every item of a governed collection must carry its sensitivity label;
-- restricted collections also forbid the public-export label. No rule contradicts another.

-- Adopt nothing: an object already there fails the transaction before the commit, named (the
-- cast of the sentence to integer is the only way a data statement can raise).
SELECT CAST('tier 5 refuses to adopt what is already there: ' || string_agg(o.object, '; ' ORDER BY o.object)
            || '; a greenfield target has none of it (run `oneroof rollback`, or remove it)' AS integer)
FROM (
    SELECT 'label rule ' || collection || ' ' || effect || ' ' || label FROM os_label_rules
) AS o (object)
HAVING count(*) > 0;

INSERT INTO os_label_rules (collection, label, effect)
SELECT collection, 'sensitivity:' || sensitivity, 'require' FROM os_collection_inventory
UNION ALL
SELECT collection, 'export:public', 'forbid' FROM os_collection_inventory WHERE sensitivity = 'restricted';
