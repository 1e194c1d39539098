-- bae-oplog, version 3: a batch is one row, not a column and an index
-- entry on each of its ops.
--
-- Version 1 kept `batch_id` and `pushed` on every op and indexed
-- `batch_id`: each recorded write inserted into two b-trees and
-- AUTOINCREMENT updated `sqlite_sequence` besides (record_overhead's
-- profile: the op row about as costly as the host row it records). The
-- ops of a batch are one transaction's, which held the write lock, so
-- they are contiguous in `seq`: a batch is the range `first_seq ..=
-- last_seq`, written once when its transaction commits (in it, so a
-- crash keeps both or neither), and the device row is no longer written
-- on every commit. `seq` stays never reused after pruning:
-- the recorder numbers ops from `bae_sync_device.next_seq` instead of
-- AUTOINCREMENT.
--
-- An op's row is smaller too: its table is a small number
-- (`bae_sync_op_tables`, local to this database like merge's table
-- numbers: never the table's position in the sync schema, which moves
-- between versions), and the recorder packs UUIDs in row ids and text
-- values (`crates/oplog/src/compact.rs`; rows converted here keep their
-- TEXT row id and plain payload, which read the same).
--
-- This migration is one transaction (`bae_oplog::migrate`): the op log
-- moves to the new layout, or nothing changes and the library converts
-- on its next open. The ops themselves (hlc, table, row, kind, payload)
-- are copied unchanged but for the table's number, so batches rebuilt
-- from them are byte-identical.

-- One row per batch still in the op log (pruned with its ops).
CREATE TABLE bae_sync_op_batches (
    -- The device's batch number (the `{seq}` of its object in the bucket).
    batch_id INTEGER PRIMARY KEY,
    -- Its ops: `bae_sync_op_log.seq` from `first_seq` to `last_seq`.
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    -- 1 once the batch's object is safely in the bucket.
    pushed INTEGER NOT NULL DEFAULT 0 CHECK (pushed IN (0, 1)),
    -- The recording clock's value at commit (packed u64): the newest
    -- batch's stands in for `bae_sync_device.clock` when it is newer.
    last_hlc INTEGER NOT NULL,
    CHECK (first_seq <= last_seq)
);

INSERT INTO bae_sync_op_batches (batch_id, first_seq, last_seq, pushed, last_hlc)
    SELECT batch_id, MIN(seq), MAX(seq), MIN(pushed), MAX(hlc) FROM bae_sync_op_log
    GROUP BY batch_id ORDER BY batch_id;

-- The seq of the next recorded op: past every op ever recorded, pruned
-- ones included (AUTOINCREMENT's high-water mark). A commit writes only
-- its batch's row, not this one: the next batch number, next op seq and
-- clock are the newer of this row's and those the newest batch row
-- implies (`log::DEVICE_STATE`), and whatever removes batch rows (prune,
-- a new stream) first moves their high-water marks here.
ALTER TABLE bae_sync_device ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1;

UPDATE bae_sync_device SET next_seq = 1 + MAX(
    (SELECT COALESCE(MAX(seq), 0) FROM bae_sync_op_log),
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'bae_sync_op_log'), 0)
);

-- Each synced table the op log names: the recorder registers the sync
-- schema's tables when it opens.
CREATE TABLE bae_sync_op_tables (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

INSERT INTO bae_sync_op_tables (name)
    SELECT DISTINCT table_name FROM bae_sync_op_log ORDER BY 1;

-- One row per recorded op, numbered by the recorder (see above).
CREATE TABLE bae_sync_op_log_v3 (
    seq INTEGER PRIMARY KEY,
    hlc INTEGER NOT NULL,
    table_id INTEGER NOT NULL,
    -- TEXT, or a BLOB of the id with its UUIDs packed.
    row_id NOT NULL,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    payload BLOB NOT NULL
);

INSERT INTO bae_sync_op_log_v3 (seq, hlc, table_id, row_id, kind, payload)
    SELECT o.seq, o.hlc, t.id, o.row_id, o.kind, o.payload
    FROM bae_sync_op_log o JOIN bae_sync_op_tables t ON t.name = o.table_name
    ORDER BY o.seq;

DROP TABLE bae_sync_op_log;
ALTER TABLE bae_sync_op_log_v3 RENAME TO bae_sync_op_log;
