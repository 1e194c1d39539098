-- bae-oplog, version 4: an op-log row holds a transaction's ops, not one
-- op.
--
-- Version 3 inserted a row per op: record_overhead's profile put that
-- insert at about a third of what recording adds to a write, and each
-- row spent about 20 bytes on its SQLite cell and 8 on its HLC. Now the
-- recorder gathers a transaction's ops in memory and writes them as a few
-- rows of about `compact::CHUNK_BYTES` (800: rows that pack the pages),
-- the last when it commits, each op's HLC a small delta from the one before
-- (`crates/oplog/src/compact.rs`, `ChunkWriter`). A row is keyed by the
-- seq of its last op, so a batch's ops are still the rows whose key is
-- in `first_seq ..= last_seq`, and seqs are numbered as before.
--
-- This file creates the new table; the conversion of the version 3 rows
-- (their payloads must be decoded and re-encoded, which SQL cannot) runs
-- in Rust in the same transaction (`migrate::CONVERSIONS`), then drops
-- the old table and renames this one to `bae_sync_op_log`. Each batch's
-- ops keep their seqs, HLCs, tables, row ids, kinds and values, so
-- batches rebuilt from them are byte-identical.

CREATE TABLE bae_sync_op_log_v4 (
    -- The seq of the row's last op; its ops are the consecutive seqs
    -- before it, all of one batch.
    last_seq INTEGER PRIMARY KEY,
    -- The ops (`compact::ChunkWriter`).
    ops BLOB NOT NULL
);
