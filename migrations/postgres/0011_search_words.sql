-- Client search that holds up at a million cards. Prefix lookups read the first rows of a
-- term in client order straight off one index, with no sort. Typo tolerance moves from a
-- trigram row per name word per card to a vocabulary: each distinct name word of a project,
-- once per trigram, so a misspelt word is corrected against the words that exist and the
-- corrected name is then looked up exactly. Names are found whole by their word rotations
-- (model::search). The terms change, so the index is cleared and the writer rebuilds it
-- when it next starts (store_meta 'search_index').
DROP INDEX search_terms_by_term;
CREATE INDEX search_terms_by_term ON search_terms (project_id, term, client_id);

CREATE TABLE search_words (
    project_id TEXT COLLATE "C" NOT NULL,
    trigram TEXT COLLATE "C" NOT NULL,
    word TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project_id, trigram, word)
);

DELETE FROM search_terms;
DELETE FROM store_meta WHERE key = 'search_index';
