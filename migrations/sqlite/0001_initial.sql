-- appealflow state. Cards and appeals keep indexed columns plus a JSON document.
CREATE TABLE project_state (
    project_id TEXT PRIMARY KEY,
    next_appeal_number BIGINT NOT NULL
);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    appeal_count BIGINT NOT NULL,
    merged_into TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX clients_merged_into ON clients (merged_into) WHERE merged_into IS NOT NULL;

-- Unique technical contacts: `v:<channel>:<visitor>` and `x:<external id>` → one card.
CREATE TABLE client_handles (
    project_id TEXT NOT NULL,
    handle TEXT NOT NULL,
    client_id TEXT NOT NULL,
    PRIMARY KEY (project_id, handle)
);

-- Values multi-contact rules compare; several cards may share one (refused or blocked).
CREATE TABLE client_values (
    project_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    client_id TEXT NOT NULL,
    PRIMARY KEY (project_id, field, value, client_id)
);
CREATE INDEX client_values_by_client ON client_values (client_id);

CREATE TABLE appeals (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    client_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    -- `v:<channel>:<visitor>`: one indexed key for "the open appeal of this visitor".
    visitor_handle TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL,
    close_deadline BIGINT,
    partition_key TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (project_id, number)
);
CREATE INDEX appeals_open_by_visitor ON appeals (project_id, visitor_handle) WHERE status = 'open';
CREATE INDEX appeals_idle ON appeals (partition_key, close_deadline) WHERE status = 'open';
CREATE INDEX appeals_by_client ON appeals (client_id);

CREATE TABLE messages (
    project_id TEXT NOT NULL,
    id TEXT NOT NULL,
    appeal_id TEXT,
    doc TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);

-- Ids of applied inputs (`m:<message_id>`, `c:<command_id>`): a second copy is a no-op.
CREATE TABLE applied_inputs (
    project_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    PRIMARY KEY (project_id, input_id)
);

-- Per input partition: the event-time clock and, for Kafka, the next offset to read.
CREATE TABLE partitions (
    partition_key TEXT PRIMARY KEY,
    clock BIGINT NOT NULL,
    next_offset BIGINT
);

-- Transactional outbox: records committed with the state that produced them.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    record_key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX outbox_by_batch ON outbox (batch_id);
