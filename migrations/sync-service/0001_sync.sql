-- bae-sync-service, version 1: the library's bucket, cursors, problems,
-- chain links and images.

-- The library this database syncs: exactly one row.
CREATE TABLE bae_sync_library (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- The library's id (names its key in the key store), once `init` or
    -- `join` succeeded; NULL before (and for a host that keeps its key and
    -- bucket itself).
    library_id TEXT,
    -- Where the library syncs (a bucket URL), set with library_id.
    bucket_url TEXT,
    -- Library key epoch new objects are written under (phase 2 rotates it).
    key_epoch INTEGER NOT NULL DEFAULT 0,
    -- The last sync failure, for status; cleared by a successful sync.
    last_error TEXT,
    -- Set by a checkpoint restore into a library with state: this device's
    -- batches after this seq must be replayed through merge; NULL otherwise.
    checkpoint_replay_after INTEGER
);
INSERT INTO bae_sync_library (id) VALUES (1);

-- Remote batches that did not apply in the last pull, with why: held back
-- (missing parent, clock drift) or rejected (does not decrypt or verify).
CREATE TABLE bae_sync_problems (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('held', 'rejected')),
    reason TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

-- BLAKE3 of each local batch as pushed: the next batch's chain link, and what
-- `push --repair` re-uploads against. Kept after op-log rows are pruned.
CREATE TABLE bae_sync_batch_hashes (
    batch_id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);

-- Per remote device: how far its stream has been applied here.
CREATE TABLE bae_sync_cursors (
    device_id TEXT PRIMARY KEY NOT NULL,
    applied_seq INTEGER NOT NULL DEFAULT 0,
    -- BLAKE3 of the last applied batch, to check the next one's chain link.
    applied_hash BLOB,
    -- From the device's head, as last seen by pull.
    head_seq INTEGER,
    head_hlc INTEGER,
    last_synced_ms INTEGER
);

-- Images whose bytes must reach the bucket before the batches that
-- reference them. Push fills it from the ops of the batches it sends (rows
-- of the sync schema's image table) and empties it once they are pushed.
CREATE TABLE bae_sync_image_queue (
    image_id TEXT PRIMARY KEY NOT NULL,
    batch_id INTEGER NOT NULL
);

-- Images a pull needed that the bucket did not have yet (the device that
-- imported them had no bytes when it pushed; it uploads them with a later
-- push, possibly without a new batch). Pull retries them with backoff until
-- they arrive, and forgets one whose row is gone.
CREATE TABLE bae_sync_wanted_images (
    image_id TEXT PRIMARY KEY NOT NULL,
    -- Tries so far (the pull that found it missing counts as the first).
    attempts INTEGER NOT NULL,
    -- Unix ms before which no pull retries it.
    next_try_ms INTEGER NOT NULL
);
