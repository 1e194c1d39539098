//! Test helpers shared by the crate's unit tests: a bucket in memory with
//! devices on it, and checkpoints a key holder forged.
#![allow(clippy::unwrap_used)]

use crate::checkpoint::{
    checkpoint_place, CheckpointHeader, Record, RecordWriter, CHECKPOINT_FORMAT_VERSION,
};
use crate::SyncService;
use bae_crypto::{IdentitySigningKey, KeyEpoch, LibraryKey};
use bae_hlc::DeviceId;
use bae_oplog::fixture::{demo_album, open_library, Library};
use bae_oplog::{canonical_dump, BAE_SCHEMA};
use bae_storage_s3::layout::{self, CheckpointId};
use bae_storage_s3::{MemoryStore, ObjectStore};
use std::sync::Arc;

pub(crate) struct Bucket {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn ObjectStore>,
    pub key: LibraryKey,
    /// The founder, whose genesis entry the bucket holds; every device
    /// signs as it (devices of one user).
    pub identity: IdentitySigningKey,
}

impl Bucket {
    /// A bucket in memory holding the genesis entry of a new founder.
    pub fn new() -> Self {
        let bucket = Bucket {
            dir: tempfile::tempdir().unwrap(),
            store: Arc::new(MemoryStore::new()),
            key: LibraryKey::generate(),
            identity: IdentitySigningKey::generate(),
        };
        let (store, key, identity) = (
            bucket.store.clone(),
            bucket.key.clone(),
            bucket.identity.clone(),
        );
        // On a runtime of its own: callers are sync and may run inside a
        // current-thread runtime, which cannot block on another future.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(crate::write_genesis(store.as_ref(), &key, &identity))
        })
        .join()
        .unwrap()
        .unwrap();
        bucket
    }

    /// Signing as the founder.
    pub fn member(&self) -> crate::Member {
        crate::Member::founder_of_library(self.identity.clone())
    }

    pub fn device(&self, name: &str, albums: u64) -> SyncService {
        let path = self.dir.path().join(format!("{name}.db"));
        let mut lib = Library::new(open_library(&path).unwrap());
        for i in 0..albums {
            lib.import_album(&demo_album(5, i, 2)).unwrap();
        }
        self.device_over(name, self.store.clone())
    }

    /// The device `name` (its library file opened again), talking to the
    /// bucket through `store` (a faulty or counting wrapper).
    pub fn device_over(&self, name: &str, store: Arc<dyn ObjectStore>) -> SyncService {
        let path = self.dir.path().join(format!("{name}.db"));
        SyncService::new(
            open_library(&path).unwrap(),
            store,
            self.key.clone(),
            self.member(),
        )
        .unwrap()
    }

    /// A checkpoint a key holder forged: newer than every honest one
    /// (its HLC `ahead_ms` past the wall clock), sealed under the
    /// library key at its proper place, with `body`.
    pub async fn forge(&self, writer: DeviceId, ahead_ms: i64, body: Vec<Record>) -> String {
        self.forge_with_cursors(writer, ahead_ms, Vec::new(), body)
            .await
    }

    /// [`Bucket::forge`] with the cursors the forged header claims.
    pub async fn forge_with_cursors(
        &self,
        writer: DeviceId,
        ahead_ms: i64,
        cursors: Vec<crate::checkpoint::CheckpointCursor>,
        body: Vec<Record>,
    ) -> String {
        let now = crate::service::now_ms();
        let hlc = bae_hlc::Timestamp::from_unix_millis(now + ahead_ms)
            .unwrap()
            .as_u64();
        let id = CheckpointId::generate(hlc);
        let header = CheckpointHeader {
            version: CHECKPOINT_FORMAT_VERSION,
            id: id.to_string(),
            writer: *writer.as_bytes(),
            hlc,
            created_ms: 0,
            schema_version: 0,
            records: body.len() as u64,
            cursors,
        };
        let mut w = RecordWriter::new(Vec::new());
        w.write(&Record::Header(header)).unwrap();
        for r in &body {
            w.write(r).unwrap();
        }
        w.write(&Record::End {
            records: body.len() as u64,
        })
        .unwrap();
        let (plain, _) = w.finish().unwrap();
        let mut sealed = Vec::new();
        bae_crypto::seal_object_stream(
            &self.key,
            KeyEpoch(0),
            &checkpoint_place(*writer.as_bytes(), hlc),
            plain.as_slice(),
            &mut sealed,
        )
        .unwrap();
        let key = format!("{}{id}", layout::CHECKPOINTS_PREFIX);
        self.store.put(&key, &sealed).await.unwrap();
        // Signed as the founder: a member forging it, whose signature holds.
        let header = bae_membership::EnvelopeHeader {
            library_id: bae_membership::LibraryId::from(self.key.fingerprint()),
            kind: bae_membership::SignedKind::Checkpoint,
            device: writer,
            seq: hlc,
            hlc: bae_hlc::Timestamp::from_u64(hlc),
            epoch: KeyEpoch(0),
            prev: None,
        };
        let hash = bae_crypto::hash::ContentHash::of(&sealed);
        let signed =
            bae_membership::SignedObject::sign(&self.identity, header, hash.as_bytes().to_vec())
                .unwrap();
        let signature = bae_crypto::seal_object(
            &self.key,
            KeyEpoch(0),
            &checkpoint_place(*writer.as_bytes(), hlc),
            &signed.to_bytes(),
        );
        self.store
            .put(&layout::checkpoint_signature_key(&id), &signature)
            .await
            .unwrap();
        key
    }
}

/// The canonical dump of a service's library.
pub(crate) async fn dump(s: &SyncService) -> String {
    s.with_db(|rec| Ok(canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?))
        .await
        .unwrap()
}

/// Marks this device's own batches after `seq` as left to replay after a
/// checkpoint restore (as a restore whose replay waits leaves them).
pub(crate) async fn set_replay_after(s: &SyncService, seq: i64) {
    s.with_db(move |rec| {
        rec.sync_parts().0.execute(
            "UPDATE bae_sync_library SET checkpoint_replay_after = ?1 WHERE id = 1",
            [seq],
        )?;
        Ok(())
    })
    .await
    .unwrap();
}

/// Records demo album `index` of `seed` on the service's own connection.
pub(crate) async fn import(s: &SyncService, seed: u64, index: u64) {
    s.with_db(move |rec| {
        let album = demo_album(seed, index, 2);
        let mut tx = rec.transaction()?;
        album.write(&mut tx)?;
        tx.commit()?;
        Ok(())
    })
    .await
    .unwrap();
}
