-- bae-merge, version 4: stamps name their table by a small number.
--
-- Version 2 repeated the table's name in every row stamp and column stamp:
-- 9 of a row stamp's 46 bytes on a library of 2,000 demo albums (106,064
-- row stamps; `album_artists`, `track_artists` and `audio_formats` are most
-- of them). A number below 128 takes one byte (1 takes none). Like a writer
-- number it is local to this database, given the first time a stamp names
-- the table and never changed: never the table's position in the sync
-- schema, which moves between schema versions. What leaves the database
-- (snapshots, checkpoints) names the table, never the number.
--
-- This migration is one transaction (`bae_oplog::migrate`): the stamps
-- move to the new tables and the old ones go, or nothing changes and the
-- library converts on its next open.

CREATE TABLE bae_sync_table_ids (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

INSERT INTO bae_sync_table_ids (name)
    SELECT table_name FROM bae_sync_row_stamps
    UNION SELECT table_name FROM bae_sync_column_stamps
    ORDER BY 1;

-- Per row: the stamp of its newest insert and of its newest delete
-- (either may be NULL; never both). `row_key` as in version 2
-- (`crates/merge/src/keys.rs`).
CREATE TABLE bae_sync_row_stamps_v4 (
    table_id INTEGER NOT NULL,
    row_key NOT NULL,
    ins_hlc INTEGER,
    ins_writer INTEGER,
    del_hlc INTEGER,
    del_writer INTEGER,
    PRIMARY KEY (table_id, row_key)
) WITHOUT ROWID;

INSERT INTO bae_sync_row_stamps_v4 (table_id, row_key, ins_hlc, ins_writer, del_hlc, del_writer)
    SELECT t.id, r.row_key, r.ins_hlc, r.ins_writer, r.del_hlc, r.del_writer
    FROM bae_sync_row_stamps r JOIN bae_sync_table_ids t ON t.name = r.table_name
    ORDER BY 1, 2;

-- Column stamps newer than their row's insert stamp.
CREATE TABLE bae_sync_column_stamps_v4 (
    table_id INTEGER NOT NULL,
    row_key NOT NULL,
    "column" TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    writer INTEGER NOT NULL,
    PRIMARY KEY (table_id, row_key, "column")
) WITHOUT ROWID;

INSERT INTO bae_sync_column_stamps_v4 (table_id, row_key, "column", hlc, writer)
    SELECT t.id, c.row_key, c."column", c.hlc, c.writer
    FROM bae_sync_column_stamps c JOIN bae_sync_table_ids t ON t.name = c.table_name
    ORDER BY 1, 2, 3;

DROP TABLE bae_sync_row_stamps;
DROP TABLE bae_sync_column_stamps;
ALTER TABLE bae_sync_row_stamps_v4 RENAME TO bae_sync_row_stamps;
ALTER TABLE bae_sync_column_stamps_v4 RENAME TO bae_sync_column_stamps;
