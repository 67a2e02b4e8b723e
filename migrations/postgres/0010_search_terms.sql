-- The client search index (SPEC "Read API", search): the terms each live card is found by
-- (model::search), rewritten in the batch that changed the card's name, contacts, fields or
-- technical contacts, so a committed card is searchable at once. Prefix searches are range
-- scans over (project_id, term) in byte order. Cards stored before this migration are
-- indexed by the writer when it next starts, which then records key 'search_index' in
-- store_meta.
CREATE TABLE search_terms (
    project_id TEXT COLLATE "C" NOT NULL,
    term TEXT COLLATE "C" NOT NULL,
    client_id TEXT COLLATE "C" NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX search_terms_by_term ON search_terms (project_id, term);
CREATE INDEX search_terms_by_client ON search_terms (client_id);

CREATE TABLE store_meta (
    key TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
