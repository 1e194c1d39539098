-- bae-merge, version 3: what a device on an older sync schema keeps of
-- batches written under a newer one (docs/SCHEMA-EVOLUTION.md).
--
-- A batch from a writer whose schema version is newer than this device's
-- may name tables and columns this device does not know. Merge applies
-- everything it knows and keeps the rest here, op by op with the op's
-- stamp, until the host opens the library with a schema that knows them;
-- then each kept op is applied under the usual rules (late, but merge does
-- not depend on arrival order) and removed.
CREATE TABLE bae_sync_kept (
    -- The op's stamp: its writer's device id (16 bytes) and HLC. An honest
    -- device stamps each op with its own HLC, but a member can sign two
    -- ops with one stamp, and devices that know their names apply both:
    -- the stamp with the op's table and row names one kept op.
    device BLOB NOT NULL,
    hlc INTEGER NOT NULL,
    -- The writer's schema version.
    schema_version INTEGER NOT NULL,
    -- The table and row, as the writer named them (hostile: only ever
    -- bound values, never SQL identifiers).
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    -- 0 insert, 1 update, 2 delete (bae_sync_op_log.kind).
    kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    -- 1: the whole op (its table was unknown); 0: only the fields below,
    -- the rest of the op applied when it arrived.
    whole INTEGER NOT NULL CHECK (whole IN (0, 1)),
    -- The kept fields: postcard, a list of (column name, value).
    fields BLOB NOT NULL,
    -- 1 once the schema knows the op's table but the op could not apply
    -- yet (its parent or row has not arrived): retried after every pull.
    ready INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, hlc, table_name, row_id)
) WITHOUT ROWID;
CREATE INDEX bae_sync_kept_ready ON bae_sync_kept (ready) WHERE ready = 1;

-- The newest schema version each writer's batches carried, where newer
-- than the version this device last ran (for status: "update to see
-- everything").
CREATE TABLE bae_sync_newer_writers (
    device BLOB PRIMARY KEY,
    schema_version INTEGER NOT NULL
) WITHOUT ROWID;

-- The schema version whose kept ops were last replayed.
ALTER TABLE bae_sync_merge ADD COLUMN kept_replayed_version INTEGER NOT NULL DEFAULT 0;
