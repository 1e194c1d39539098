-- Phase 1, schema version 3: images a pull needed that the bucket did not
-- have yet (the device that imported them had no bytes when it pushed; it
-- uploads them with a later push, possibly without a new batch). Pull
-- retries them with backoff until they arrive, and forgets one whose row is
-- gone. Owned by the sync service.
CREATE TABLE wanted_images (
    image_id TEXT PRIMARY KEY NOT NULL,
    -- Tries so far (the pull that found it missing counts as the first).
    attempts INTEGER NOT NULL,
    -- Unix ms before which no pull retries it.
    next_try_ms INTEGER NOT NULL
);
