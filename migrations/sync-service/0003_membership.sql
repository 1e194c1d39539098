-- bae-sync-service, version 3: phase 2 membership. The founder the chain
-- is validated against, the membership entries fetched (so a pull fetches
-- only new ones), and which author each device id is bound to.

-- The founder's Ed25519 public key (32 bytes), saved with library_id by
-- `init` or `join`: only its self-addition can be the chain's genesis.
ALTER TABLE bae_sync_library ADD COLUMN founder BLOB;

-- Every membership entry fetched from the bucket whose signature verified,
-- by bucket key (`membership/{author}/{seq}`): validation runs over all of
-- them (the result depends on the set, not on which ones counted).
CREATE TABLE bae_sync_membership (
    object_key TEXT PRIMARY KEY,
    entry BLOB NOT NULL
);

-- A device id belongs to the author of its first accepted signed object;
-- an object of that device signed by anyone else is rejected.
CREATE TABLE bae_sync_device_authors (
    device_id TEXT PRIMARY KEY,
    author BLOB NOT NULL
);
