-- bae-oplog, version 1: the op log and this device's identity and clock.

-- One row per recorded op. `seq` is local and increasing, never reused even
-- after pruning (AUTOINCREMENT), so "ops after seq N" stays meaningful for
-- the merge crate's fold of local writes. `batch_id` is the device's batch
-- number: the ops of one transaction share it, and it is the `{seq}` of the
-- batch's object in the bucket. `pushed` turns 1 once the batch's object is
-- safely in the bucket.
CREATE TABLE bae_sync_op_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    table_name TEXT NOT NULL,
    row_id TEXT NOT NULL,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    payload BLOB NOT NULL,
    pushed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX bae_sync_op_log_batch ON bae_sync_op_log (batch_id);

-- This device: exactly one row.
CREATE TABLE bae_sync_device (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    -- Last HLC value made or adopted (packed u64) by any connection to this
    -- library, so a restart never goes back and two connections (the
    -- host's and the sync service's) never run behind each other.
    clock INTEGER NOT NULL,
    -- Batch number of the next local transaction that records ops.
    next_batch INTEGER NOT NULL DEFAULT 1
);
