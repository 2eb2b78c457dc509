-- Tier 4 revert: remove the classification axes of the governed collections.

DELETE FROM os_collection_axes WHERE collection IN (SELECT collection FROM os_collection_inventory);
