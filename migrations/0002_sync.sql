-- Sync tables (phase 0): the op log, field timestamps, tombstones, sync state.

-- One row per recorded op. `seq` is local and increasing; `batch_id` is the
-- device's batch number: the ops of one transaction share it, and it is the
-- `{seq}` of the batch's object in the bucket. `pushed` turns 1 once the
-- batch's object is safely in the bucket.
CREATE TABLE op_log (
    seq INTEGER PRIMARY KEY,
    batch_id INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    payload BLOB NOT NULL,
    pushed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_op_log_batch ON op_log(batch_id);

-- The stamp (HLC, device) of the last accepted write of each synced field.
-- Remote writes set it during merge; local writes are folded in from op_log
-- (see `stamps_folded_seq`) before any merge reads it, which keeps the
-- recording path to one extra row per op.
CREATE TABLE field_timestamps (
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    "column" TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    device BLOB NOT NULL,
    PRIMARY KEY (table_name, row_id, "column")
) WITHOUT ROWID;

-- Deleted rows with the stamp of the newest delete. HLC-compared, not
-- permanent: older writes are blocked, a newer insert brings the row back.
CREATE TABLE tombstones (
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    device BLOB NOT NULL,
    PRIMARY KEY (table_name, row_id)
) WITHOUT ROWID;

-- This device's sync state: exactly one row.
CREATE TABLE sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    -- Last HLC value made or adopted (packed u64), so a restart never goes back.
    clock INTEGER NOT NULL,
    -- Batch number of the next local transaction that records ops.
    next_batch INTEGER NOT NULL DEFAULT 1,
    -- Highest op_log.seq whose stamps are folded into field_timestamps/tombstones.
    stamps_folded_seq INTEGER NOT NULL DEFAULT 0,
    -- Library key epoch new objects are written under (phase 2 rotates it).
    key_epoch INTEGER NOT NULL DEFAULT 0,
    -- The library's id (names its key in the key store), once `init`/`join` set it.
    library_id TEXT,
    -- Where the library syncs (a bucket URL), once `init`/`join` set it.
    bucket_url TEXT,
    -- The last sync failure, for status; cleared by a successful sync.
    last_error TEXT,
    -- Set by a checkpoint restore into a library with state: this device's
    -- batches after this seq must be replayed through merge; NULL otherwise.
    checkpoint_replay_after INTEGER
);

-- Remote batches that did not apply in the last pull, with why: held back
-- (missing parent, clock drift) or rejected (does not decrypt or verify).
CREATE TABLE sync_problems (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('held', 'rejected')),
    reason TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

-- BLAKE3 of each local batch as pushed: the next batch's chain link, and what
-- `push --repair` re-uploads against. Kept after op_log rows are pruned.
CREATE TABLE batch_hashes (
    batch_id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);

-- Per remote device: how far its stream has been applied here.
CREATE TABLE sync_cursors (
    device_id TEXT PRIMARY KEY NOT NULL,
    applied_seq INTEGER NOT NULL DEFAULT 0,
    -- BLAKE3 of the last applied batch, to check the next one's chain link.
    applied_hash BLOB,
    -- From the device's head, as last seen by pull.
    head_seq INTEGER,
    head_hlc INTEGER,
    last_synced_ms INTEGER
);

-- Images whose bytes must reach the bucket before the ops that reference them.
CREATE TABLE image_sync_queue (
    image_id TEXT PRIMARY KEY NOT NULL,
    batch_id INTEGER NOT NULL
);

-- Merge state: winning values written to rows that are absent (deleted, or
-- under an absent parent), kept so a later revival restores the same values
-- on every device whatever the arrival order. Owned by the merge crate.
CREATE TABLE merge_parked (
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    "column" TEXT NOT NULL,
    value,
    PRIMARY KEY (table_name, row_id, "column")
) WITHOUT ROWID;
CREATE INDEX merge_parked_by_value ON merge_parked (table_name, "column", value);
