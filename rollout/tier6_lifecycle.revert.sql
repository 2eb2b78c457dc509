-- Tier 6 revert: remove the event bindings and lifecycle policies of the governed collections.

DELETE FROM os_event_bindings WHERE collection IN (SELECT collection FROM os_collection_inventory);
DELETE FROM os_lifecycle_policies WHERE collection IN (SELECT collection FROM os_collection_inventory);
