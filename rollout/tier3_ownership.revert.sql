-- Tier 3 revert: withdraw the ownership seed and return the proposal to pending. The approvals
-- stay: they are history.

DELETE FROM os_collection_owners
WHERE proposal_id = (SELECT id FROM os_proposals WHERE code = current_setting('oneroof.proposal'));

UPDATE os_proposals SET status = 'pending'
WHERE code = current_setting('oneroof.proposal') AND status = 'ratified';
