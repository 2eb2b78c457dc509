-- Tier 4, axes: every governed collection is classified on two axes, its domain and its
-- sensitivity, taken from the inventory.

INSERT INTO os_collection_axes (collection, axis, value)
SELECT collection, 'domain', domain FROM os_collection_inventory
UNION ALL
SELECT collection, 'sensitivity', sensitivity FROM os_collection_inventory
ON CONFLICT (collection, axis) DO NOTHING;
