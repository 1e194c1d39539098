-- bae-merge, version 5: row stamps keyed so a batch's stamps cluster.
--
-- Version 4 keyed a row stamp by (table number, row key), and a row key
-- was the op log's packed id: bae's ids are random UUIDs, so each of a
-- batch's row stamps landed on its own page of the table (53 stamps of a
-- demo album: 61 leaf pages written per batch, splits included), a third
-- of the pages a batch commits. But bae derives the ids of join and child
-- rows from their row's (a track `{t}`, its credit `{t}:{artist}`, its
-- audio format `af:{t}`). Now a key leads with the id's first UUID
-- (`crates/merge/src/keys.rs`) and the row stamps are keyed by key first,
-- so those stamps sit side by side: a track and what hangs off it share a
-- page (37 leaf pages per demo album). A key is as long as before; column
-- stamps take the same keys (their table number still leads: a row
-- usually has none).
--
-- A BLOB key moves the 16 bytes after its first zero byte to the front
-- (TEXT keys, ids without a UUID, stay as they are). `instr` on BLOBs
-- counts bytes, and `hex`/`unhex` keep every byte.
--
-- This migration is one transaction (`bae_oplog::migrate`): the stamps
-- move to the new tables and the old ones go, or nothing changes and the
-- library converts on its next open.

CREATE TABLE bae_sync_row_stamps_v5 (
    row_key NOT NULL,
    table_id INTEGER NOT NULL,
    ins_hlc INTEGER,
    ins_writer INTEGER,
    del_hlc INTEGER,
    del_writer INTEGER,
    PRIMARY KEY (row_key, table_id)
) WITHOUT ROWID;

INSERT INTO bae_sync_row_stamps_v5 (row_key, table_id, ins_hlc, ins_writer, del_hlc, del_writer)
    SELECT CASE WHEN typeof(row_key) = 'blob' THEN
               unhex(substr(hex(row_key), 2 * instr(row_key, x'00') + 1, 32)
                     || substr(hex(row_key), 1, 2 * instr(row_key, x'00'))
                     || substr(hex(row_key), 2 * instr(row_key, x'00') + 33))
           ELSE row_key END,
           table_id, ins_hlc, ins_writer, del_hlc, del_writer
    FROM bae_sync_row_stamps
    ORDER BY 1, 2;

CREATE TABLE bae_sync_column_stamps_v5 (
    table_id INTEGER NOT NULL,
    row_key NOT NULL,
    "column" TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    writer INTEGER NOT NULL,
    PRIMARY KEY (table_id, row_key, "column")
) WITHOUT ROWID;

INSERT INTO bae_sync_column_stamps_v5 (table_id, row_key, "column", hlc, writer)
    SELECT table_id,
           CASE WHEN typeof(row_key) = 'blob' THEN
               unhex(substr(hex(row_key), 2 * instr(row_key, x'00') + 1, 32)
                     || substr(hex(row_key), 1, 2 * instr(row_key, x'00'))
                     || substr(hex(row_key), 2 * instr(row_key, x'00') + 33))
           ELSE row_key END,
           "column", hlc, writer
    FROM bae_sync_column_stamps
    ORDER BY 1, 2, 3;

DROP TABLE bae_sync_row_stamps;
DROP TABLE bae_sync_column_stamps;
ALTER TABLE bae_sync_row_stamps_v5 RENAME TO bae_sync_row_stamps;
ALTER TABLE bae_sync_column_stamps_v5 RENAME TO bae_sync_column_stamps;
