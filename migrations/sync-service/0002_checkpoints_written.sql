-- bae-sync-service, version 2: the checkpoints this device wrote.
--
-- GC deletes batches only on the strength of a checkpoint this device wrote
-- itself (so a checkpoint forged by another key holder, or replayed by the
-- bucket host, never drives it), and measures the grace period from when
-- this device wrote it, by its own wall clock, not by the checkpoint's HLC.
CREATE TABLE bae_sync_checkpoints_written (
    key TEXT PRIMARY KEY NOT NULL,
    -- Unix ms of this device's wall clock when the upload finished.
    written_ms INTEGER NOT NULL
);
