-- bae-merge, version 1: the merge state. See the merge rules in
-- crates/merge/src/lib.rs.

-- The stamp (HLC, device) of the last accepted write of each synced field,
-- and of each row's newest insert under the pseudo-column '#row'.
CREATE TABLE bae_sync_stamps (
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    "column" TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    device BLOB NOT NULL,
    PRIMARY KEY (table_name, row_id, "column")
) WITHOUT ROWID;

-- Deleted rows with the stamp of the newest delete. HLC-compared, not
-- permanent: older writes are blocked, a newer insert brings the row back.
CREATE TABLE bae_sync_tombstones (
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    device BLOB NOT NULL,
    PRIMARY KEY (table_name, row_id)
) WITHOUT ROWID;

-- Winning values written to rows that are absent (deleted, under an absent
-- parent, or outbid for a unique key), kept so a later revival restores the
-- same values on every device whatever the arrival order.
CREATE TABLE bae_sync_parked (
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    "column" TEXT NOT NULL,
    value,
    PRIMARY KEY (table_name, row_id, "column")
) WITHOUT ROWID;
CREATE INDEX bae_sync_parked_by_value ON bae_sync_parked (table_name, "column", value);

-- How far local writes are folded into the stamps: exactly one row.
CREATE TABLE bae_sync_merge (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- Highest bae_sync_op_log.seq whose stamps are folded.
    folded_seq INTEGER NOT NULL DEFAULT 0
);
INSERT INTO bae_sync_merge (id, folded_seq) VALUES (1, 0);
