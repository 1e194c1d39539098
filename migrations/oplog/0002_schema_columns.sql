-- bae-oplog, version 2: the sync schema this library last ran with, so a
-- host that renames, removes, reorders or retypes a synced column (which
-- batches and op-log payloads cannot survive) is refused at open, and a
-- schema that grew must carry a newer version.

-- Each synced column, by its position in its table's `columns` list.
CREATE TABLE bae_sync_schema_columns (
    table_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    column_name TEXT NOT NULL,
    -- The declared type in the host's table, as PRAGMA table_info gives it.
    column_type TEXT NOT NULL,
    PRIMARY KEY (table_name, position)
) WITHOUT ROWID;

-- The version of that schema (0: none recorded yet).
ALTER TABLE bae_sync_device ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 0;
