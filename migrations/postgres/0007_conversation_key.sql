-- An appeal is one conversation (SPEC "Appeals and messages"): keyed by `v:<channel>:<visitor>`
-- as before, or by `x:<channel>:<external id>` when the messages carry an external ID, so
-- every device of a signed-in person shares one appeal. The column held the visitor form
-- already; only its name changes (the partial index follows the column).
ALTER TABLE appeals RENAME COLUMN visitor_handle TO conversation_key;
