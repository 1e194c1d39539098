-- bae-merge, version 2: the stamps in a compact layout, one entry per row.
--
-- Version 1 kept a row of (table TEXT, row id TEXT, column TEXT, hlc,
-- 16-byte device) for every stamp, and a device folded every column of its
-- own inserts: 13 stamp rows per track, 2.9 times the library itself.
-- A column's effective stamp is the newer of its own and its row's insert
-- stamp, so a column stamp no newer than the row's says nothing: version 2
-- keeps one entry per row (insert and delete stamps together), column
-- stamps only where a column is newer than its row, devices as small
-- local numbers, and row ids in canonical lowercase UUID form as their 16
-- bytes (any other id stays TEXT; the two never compare equal).

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

-- Conversion of the version 1 state. The row key expression is the one
-- `crates/merge/src/keys.rs` builds (ROW_KEY_SQL), spelled out because a
-- migration is fixed once released.
INSERT INTO bae_sync_writers (device)
    SELECT device FROM bae_sync_stamps UNION SELECT device FROM bae_sync_tombstones;

CREATE TEMP TABLE bae_sync_v1_rows AS
    SELECT table_name, row_id,
        CASE WHEN row_id GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'
             THEN unhex(replace(row_id, '-', '')) ELSE row_id END AS row_key
    FROM (SELECT table_name, row_id FROM bae_sync_stamps
          UNION SELECT table_name, row_id FROM bae_sync_tombstones);

INSERT INTO bae_sync_row_stamps (table_name, row_key, ins_hlc, ins_writer, del_hlc, del_writer)
    SELECT r.table_name, r.row_key, s.hlc, ws.id, t.hlc, wt.id
    FROM temp.bae_sync_v1_rows r
    LEFT JOIN bae_sync_stamps s
        ON s.table_name = r.table_name AND s.row_id = r.row_id AND s."column" = '#row'
    LEFT JOIN bae_sync_writers ws ON ws.device = s.device
    LEFT JOIN bae_sync_tombstones t ON t.table_name = r.table_name AND t.row_id = r.row_id
    LEFT JOIN bae_sync_writers wt ON wt.device = t.device
    WHERE s.hlc IS NOT NULL OR t.hlc IS NOT NULL;

-- Stamps order by (hlc, device bytes): a column stamp at or below its
-- row's insert stamp is dropped.
INSERT INTO bae_sync_column_stamps (table_name, row_key, "column", hlc, writer)
    SELECT f.table_name, r.row_key, f."column", f.hlc, w.id
    FROM bae_sync_stamps f
    JOIN temp.bae_sync_v1_rows r ON r.table_name = f.table_name AND r.row_id = f.row_id
    JOIN bae_sync_writers w ON w.device = f.device
    WHERE f."column" <> '#row' AND NOT EXISTS (
        SELECT 1 FROM bae_sync_stamps i
        WHERE i.table_name = f.table_name AND i.row_id = f.row_id AND i."column" = '#row'
          AND (i.hlc > f.hlc OR (i.hlc = f.hlc AND i.device >= f.device)));

DROP TABLE temp.bae_sync_v1_rows;
DROP TABLE bae_sync_stamps;
DROP TABLE bae_sync_tombstones;
