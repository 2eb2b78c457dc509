-- Tier 3, ownership seed: the accountability assertion a human ratified. Each of the 35 governed
-- collections gets exactly one owner unit, recorded with the proposal and the approvals that
-- ratified it (the executor sets oneroof.proposal and oneroof.approval_ids for the transaction).

-- Adopt nothing: an object already there fails the transaction before the commit, named (the
-- cast of the sentence to integer is the only way a data statement can raise).
SELECT CAST('tier 3 refuses to adopt what is already there: ' || string_agg(o.object, '; ' ORDER BY o.object)
            || '; a greenfield target has none of it (run `oneroof rollback`, or remove it)' AS integer)
FROM (
    SELECT 'owner ' || collection || ' ' || owner_unit FROM os_collection_owners
    UNION ALL
    SELECT 'proposal ' || code || ' ' || status FROM os_proposals
    WHERE code = current_setting('oneroof.proposal') AND status <> 'pending'
) AS o (object)
HAVING count(*) > 0;

INSERT INTO os_collection_owners (collection, owner_unit, proposal_id, approval_ids, active)
SELECT seed.collection, seed.owner_unit, p.id, current_setting('oneroof.approval_ids')::integer[], true
FROM (VALUES
    ('kh_documents', 'GOV-COUNCIL'),
    ('kh_document_versions', 'GOV-COUNCIL'),
    ('kh_reports', 'GOV-COUNCIL'),
    ('kh_report_sections', 'GOV-COUNCIL'),
    ('kh_articles', 'GOV-COUNCIL'),
    ('kh_glossary_terms', 'GOV-COUNCIL'),
    ('kh_faq_entries', 'GOV-COUNCIL'),
    ('kh_attachments_meta', 'GOV-COUNCIL'),
    ('kh_tags', 'GOV-COUNCIL'),
    ('kh_topics', 'GOV-COUNCIL'),
    ('kg_entities', 'KG-SYS'),
    ('kg_relations', 'KG-SYS'),
    ('kg_entity_types', 'KG-SYS'),
    ('kg_relation_types', 'KG-SYS'),
    ('kg_sources', 'KG-SYS'),
    ('kg_claims', 'KG-SYS'),
    ('kg_aliases', 'KG-SYS'),
    ('dot_routes', 'DOT'),
    ('dot_stops', 'DOT'),
    ('dot_vehicles', 'DOT'),
    ('dot_operators', 'DOT'),
    ('dot_ridership_daily', 'DOT'),
    ('dot_road_segments', 'DOT'),
    ('dot_incidents', 'DOT'),
    ('dot_permits', 'DOT'),
    ('moit_trade_flows', 'MOIT'),
    ('moit_commodities', 'MOIT'),
    ('moit_partners', 'MOIT'),
    ('moit_tariff_lines', 'MOIT'),
    ('moit_enterprises', 'MOIT'),
    ('moit_licenses', 'MOIT'),
    ('moit_price_index', 'MOIT'),
    ('gc_decisions', 'GOV-COUNCIL'),
    ('gc_meetings', 'GOV-COUNCIL'),
    ('gc_resolutions', 'GOV-COUNCIL')
) AS seed (collection, owner_unit)
JOIN os_collection_inventory AS i ON i.collection = seed.collection
JOIN os_proposals AS p ON p.code = current_setting('oneroof.proposal');

UPDATE os_proposals SET status = 'ratified'
WHERE code = current_setting('oneroof.proposal') AND status = 'pending';
