-- Tier 5, label rules: every item of a governed collection must carry its sensitivity label;
-- restricted collections also forbid the public-export label. No rule contradicts another.

INSERT INTO os_label_rules (collection, label, effect)
SELECT collection, 'sensitivity:' || sensitivity, 'require' FROM os_collection_inventory
UNION ALL
SELECT collection, 'export:public', 'forbid' FROM os_collection_inventory WHERE sensitivity = 'restricted'
ON CONFLICT (collection, label, effect) DO NOTHING;
