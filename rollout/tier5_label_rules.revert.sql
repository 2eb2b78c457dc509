-- Tier 5 revert: remove the label rules of the governed collections.

DELETE FROM os_label_rules WHERE collection IN (SELECT collection FROM os_collection_inventory);
