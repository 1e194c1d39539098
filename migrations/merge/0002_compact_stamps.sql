-- bae-merge, version 2: the stamps in a compact layout, one entry per row.
--
-- Version 1 kept a row of (table TEXT, row id TEXT, column TEXT, hlc,
-- 16-byte device) for every stamp, and a device folded every column of its
-- own inserts: 13 stamp rows per track, 2.9 times the library itself.
-- A column's effective stamp is the newer of its own and its row's insert
-- stamp, so a column stamp no newer than the row's says nothing: version 2
-- keeps one entry per row (insert and delete stamps together), column
-- stamps only where a column is newer than its row, devices as small
-- local numbers, and the canonical lowercase UUIDs inside row ids as their 16
-- bytes wherever they occur in the id (see `crates/merge/src/keys.rs`; an
-- id with no UUID stays TEXT; the two never compare equal).

-- Every device that wrote a stamp here, numbered for this database only
-- (a stamp compares by the device's bytes, never by this number).
CREATE TABLE bae_sync_writers (
    id INTEGER PRIMARY KEY,
    device BLOB NOT NULL UNIQUE
);

-- Per row: the stamp of its newest insert and of its newest delete
-- (either may be NULL; never both).
CREATE TABLE bae_sync_row_stamps (
    table_name TEXT NOT NULL,
    row_key NOT NULL,
    ins_hlc INTEGER,
    ins_writer INTEGER,
    del_hlc INTEGER,
    del_writer INTEGER,
    PRIMARY KEY (table_name, row_key)
) WITHOUT ROWID;

-- Column stamps newer than their row's insert stamp (updates, and local
-- writes folded after the row's insert).
CREATE TABLE bae_sync_column_stamps (
    table_name TEXT NOT NULL,
    row_key NOT NULL,
    "column" TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    writer INTEGER NOT NULL,
    PRIMARY KEY (table_name, row_key, "column")
) WITHOUT ROWID;

-- The version 1 tables (bae_sync_stamps, bae_sync_tombstones) are
-- converted into these and dropped by bae-merge right after this migration,
-- in one transaction of its own (`crates/merge/src/convert.rs`): a row key
-- packs the UUIDs inside an id, which SQL alone cannot compute. Until that
-- transaction commits, the library does not open.
