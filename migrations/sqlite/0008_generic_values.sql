-- Values held by cards standing for more people than a project's max_merge_group (one shared
-- office phone given by hundreds): such a value can never join them, so it stops being
-- compared (SPEC "Multi-contact matching"). Recorded once, when first seen so, with how many
-- cards held it then; lookups skip it from then on, so its cost never grows with them.
CREATE TABLE generic_values (
    project_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    cards BIGINT NOT NULL,
    PRIMARY KEY (project_id, field, value)
);
