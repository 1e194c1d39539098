//! The SyncService: one library, one bucket, one key.

use crate::error::SyncError;
use crate::keystore::KeyStore;
use crate::members::{Member, MemberState};
use crate::progress::{Progress, Stage};
use bae_crypto::{KeyEpoch, KeyRing, ObjectKind, ObjectPlace};
use bae_hlc::DeviceId;
use bae_membership::LibraryId;
use bae_oplog::{Migration, Migrations, OpRecorder, SyncSchema, TableSchema};
use bae_storage_s3::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Syncs one library with one bucket. Database work runs on blocking
/// threads; no transaction is held across an await.
pub struct SyncService {
    pub(crate) db: Arc<Mutex<OpRecorder>>,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Every key epoch this member holds; replaced whole when a rotation
    /// brings a new epoch (`epochs.rs`).
    pub(crate) keys: std::sync::RwLock<Arc<KeyRing>>,
    /// Where a new epoch is saved before anything is sealed with it
    /// (`None`: kept in memory only, for services built without a store).
    pub(crate) key_store: Option<(KeyStore, String)>,
    pub(crate) device: DeviceId,
    /// Where image bytes live locally (`{library file}.images/{image_id}`);
    /// without it push and pull leave images alone.
    pub(crate) images_dir: Option<PathBuf>,
    /// Which tables and columns sync (the recorder's).
    pub(crate) schema: &'static SyncSchema,
    /// The library file, for work that runs on a connection of its own
    /// (checkpoint snapshots, restores) instead of the shared one.
    pub(crate) path: Option<PathBuf>,
    /// Long operations stop at their next safe point once cancelled.
    pub(crate) cancel: CancellationToken,
    /// One push, pull, repair, restore, checkpoint or GC of this service
    /// at a time: overlapping ones would race on the head, the pushed
    /// marks and the cursors (a second pull would fetch and apply the same
    /// batches). A second call waits for the first, then runs (finding
    /// nothing left to do). Never held across a call that takes it again:
    /// tokio's mutex is not reentrant.
    pub(crate) flight: tokio::sync::Mutex<()>,
    /// This device's head seqs as the last LIST of `heads/` showed them;
    /// `None` before the first.
    pub(crate) own_head: Mutex<Option<Vec<u64>>>,
    /// Whether this service has LISTed its own `heads/{device}/` prefix
    /// (the first push does, whatever a pull's LIST of `heads/` showed:
    /// one stale LIST must not be all a restarted device trusts).
    pub(crate) own_heads_listed: std::sync::atomic::AtomicBool,
    /// The sync schema's image table (whose row ids name image files);
    /// without one, push and pull leave images alone.
    pub(crate) images_table: Option<&'static TableSchema>,
    /// Where long steps report progress.
    pub(crate) progress: Option<Progress>,
    /// How much of a pull backlog is held in memory at once.
    pub(crate) pull_window: PullWindow,
    /// How much of a push backlog is encoded and held at once.
    pub(crate) push_slice: crate::push::PushSlice,
    /// Who this device signs as, and the library's founder.
    pub(crate) member: Member,
    /// The library id every signed object names (its first key's
    /// fingerprint).
    pub(crate) library_id: LibraryId,
    /// The validated membership chain and device bindings.
    pub(crate) members: Mutex<MemberState>,
    /// The key and cursors of the newest checkpoint `checkpoint` last
    /// weighed or this service wrote: one that opened and verified is not
    /// downloaded again while it is still the newest listed.
    pub(crate) newest_weighed: Mutex<Option<(String, Vec<crate::checkpoint::CheckpointCursor>)>>,
}

/// How much of a backlog a pull fetches before merging it: a slice is
/// merged (while the next one is fetched) and its cursors saved before
/// the next one merges, so a long backlog needs bounded memory (two
/// slices) and an interrupted pull keeps what it merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullWindow {
    /// At most this many batches per slice.
    pub batches: usize,
    /// At most about this many bytes of decrypted batches per slice (a
    /// slice always takes at least one batch).
    pub bytes: usize,
}

impl Default for PullWindow {
    fn default() -> Self {
        // A decoded batch takes about six times its encoded bytes in
        // memory (each op's strings and values): 2 MiB of batches is a
        // slice of some 12 MB, about 250 demo albums of 12 tracks. A pull
        // holds two slices (one merging, the next being read), as much as
        // one of 4 MiB did before the two overlapped.
        PullWindow {
            batches: 2048,
            bytes: 2 << 20,
        }
    }
}

/// The sync service's own tables (`bae_sync_library`, `bae_sync_cursors`,
/// `bae_sync_problems`, `bae_sync_batch_hashes`, `bae_sync_image_queue`,
/// `bae_sync_wanted_images`, `bae_sync_checkpoints_written`,
/// `bae_sync_membership`, `bae_sync_device_authors`); no other crate names
/// them.
pub const SERVICE_MIGRATIONS: Migrations = Migrations {
    component: "sync-service",
    steps: &[
        Migration {
            name: "0001_sync",
            sql: include_str!("../../../migrations/sync-service/0001_sync.sql"),
        },
        Migration {
            name: "0002_checkpoints_written",
            sql: include_str!("../../../migrations/sync-service/0002_checkpoints_written.sql"),
        },
        Migration {
            name: "0003_membership",
            sql: include_str!("../../../migrations/sync-service/0003_membership.sql"),
        },
    ],
};

/// Creates or migrates every engine table below the op log's (merge's and
/// the sync service's) in the recorder's library.
pub(crate) fn migrate(recorder: &mut OpRecorder) -> Result<(), SyncError> {
    bae_merge::migrate(recorder)?;
    bae_oplog::migrate(recorder.sync_parts().0, &SERVICE_MIGRATIONS)?;
    Ok(())
}

impl SyncService {
    /// A service over a library, a bucket and the library keys (a
    /// [`LibraryKey`](bae_crypto::LibraryKey) converts into a ring of epoch
    /// 0), signing as `member`. `recorder` is the service's own
    /// connection to the library: the host keeps writing through its own
    /// recorder on the same file meanwhile. Creates or migrates the
    /// engine's tables; never touches the host's.
    pub fn new(
        mut recorder: OpRecorder,
        store: Arc<dyn ObjectStore>,
        keys: impl Into<KeyRing>,
        member: Member,
    ) -> Result<Self, SyncError> {
        migrate(&mut recorder)?;
        let keys: KeyRing = keys.into();
        let first = keys.get(KeyEpoch::FIRST).ok_or(SyncError::NoCurrentKey)?;
        let library_id = LibraryId::from(first.fingerprint());
        let device = recorder.device();
        let schema = recorder.schema();
        let images_table = schema.images_table();
        let path = recorder.path().map(Path::to_path_buf);
        Ok(SyncService {
            db: Arc::new(Mutex::new(recorder)),
            store,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            key_store: None,
            device,
            images_dir: None,
            schema,
            path,
            cancel: CancellationToken::new(),
            flight: tokio::sync::Mutex::new(()),
            own_head: Mutex::new(None),
            own_heads_listed: std::sync::atomic::AtomicBool::new(false),
            images_table,
            progress: None,
            pull_window: PullWindow::default(),
            push_slice: crate::push::PushSlice::default(),
            member,
            library_id,
            members: Mutex::new(MemberState::keys_unchecked()),
            newest_weighed: Mutex::new(None),
        })
    }

    /// Makes long operations (pull, checkpoint, bootstrap, GC) stop at their
    /// next safe point once `token` is cancelled, with
    /// [`SyncError::Cancelled`]: what they committed stays, nothing is half
    /// applied, and running them again resumes (see the crate docs).
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// A clock that checks remote timestamps the way this service's clock
    /// does now (its wall time and drift bound), for checks made off the
    /// shared connection.
    pub(crate) async fn drift_bound(&self) -> Result<bae_hlc::Clock, SyncError> {
        self.with_db(|rec| {
            let clock = rec.clock();
            Ok(bae_hlc::Clock::new(
                bae_hlc::WallClock::Manual(clock.wall_millis()),
                clock.max_drift_ms(),
            ))
        })
        .await
    }

    /// This device's head seqs as last seen in the bucket.
    pub(crate) fn own_heads_seen(&self) -> Option<Vec<u64>> {
        self.own_head.lock().ok().and_then(|g| g.clone())
    }

    /// Records a head this service just wrote (and the older ones it
    /// deleted).
    pub(crate) fn note_own_head(&self, seq: u64, deleted: &[u64]) {
        if let Ok(mut g) = self.own_head.lock() {
            let seen = g.get_or_insert_with(Vec::new);
            seen.retain(|s| !deleted.contains(s));
            if !seen.contains(&seq) {
                seen.push(seq);
            }
        }
    }

    /// Replaces what is known of this device's heads by what a LIST showed.
    pub(crate) fn listed_own_heads(&self, seqs: Vec<u64>) {
        if let Ok(mut g) = self.own_head.lock() {
            *g = Some(seqs);
        }
    }

    /// Fails with [`SyncError::Cancelled`] if the cancellation token fired.
    pub(crate) fn check_cancelled(&self) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            Err(SyncError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports progress of long steps (pull, checkpoint, restore) to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Sets how much of a pull backlog is held in memory at once.
    pub fn with_pull_window(mut self, window: PullWindow) -> Self {
        self.pull_window = PullWindow {
            batches: window.batches.max(1),
            bytes: window.bytes,
        };
        self
    }

    pub(crate) fn report(&self, stage: Stage, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(stage, done, total);
        }
    }

    /// Sets the directory holding this library's image bytes.
    pub fn with_images_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.images_dir = Some(dir.into());
        self
    }

    /// The directory holding this library's image bytes, if set.
    pub fn images_dir(&self) -> Option<&Path> {
        self.images_dir.as_deref()
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Runs `f` on the library on a blocking thread.
    pub async fn with_db<T, F>(&self, f: F) -> Result<T, SyncError>
    where
        T: Send + 'static,
        F: FnOnce(&mut OpRecorder) -> Result<T, SyncError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut guard = db.lock().map_err(|_| SyncError::LibraryPoisoned)?;
            f(&mut guard)
        })
        .await?
    }

    /// Runs `f` on a blocking thread on a connection of its own to the
    /// library file, so the service's shared connection (and everything
    /// waiting for it: status, push) is not held while `f` runs; SQLite's
    /// own locking orders it with other writers. A library that is not a
    /// file has only the shared connection.
    pub(crate) async fn with_own_connection<T, F>(&self, f: F) -> Result<T, SyncError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection, &'static SyncSchema) -> Result<T, SyncError>
            + Send
            + 'static,
    {
        let schema = self.schema;
        match self.path.clone() {
            Some(path) => {
                tokio::task::spawn_blocking(move || {
                    let mut conn = rusqlite::Connection::open(&path)?;
                    bae_oplog::configure(&conn)?;
                    f(&mut conn, schema)
                })
                .await?
            }
            None => self.with_db(move |rec| f(rec.sync_parts().0, schema)).await,
        }
    }

    pub(crate) fn seal(&self, place: &ObjectPlace, plaintext: &[u8]) -> Result<Vec<u8>, SyncError> {
        let keys = self.key_ring();
        let (epoch, key) = keys.current().ok_or(SyncError::NoCurrentKey)?;
        Ok(bae_crypto::seal_object(key, epoch, place, plaintext))
    }

    pub(crate) fn open(
        &self,
        key: &str,
        place: &ObjectPlace,
        bytes: &[u8],
    ) -> Result<Vec<u8>, SyncError> {
        bae_crypto::open_object(self.key_ring().as_ref(), place, bytes).map_err(|source| {
            self.note_unknown_epoch(&source);
            SyncError::Object {
                key: key.to_owned(),
                source,
            }
        })
    }
}

/// The largest batch object a pull or `push --repair` reads: a batch of
/// [`bae_oplog::MAX_BATCH_BYTES`] (the most the codec encodes or decodes),
/// sealed. A larger object could not decode anyway, so nothing past this
/// is read.
pub const MAX_BATCH_OBJECT_BYTES: u64 =
    bae_crypto::object::sealed_len(bae_oplog::MAX_BATCH_BYTES as u64);

/// The place a device's batch belongs.
pub(crate) fn batch_place(device: DeviceId, seq: u64) -> ObjectPlace {
    ObjectPlace {
        kind: ObjectKind::OpBatch,
        device: *device.as_bytes(),
        seq,
    }
}

/// The place a device's head belongs.
pub(crate) fn head_place(device: DeviceId, seq: u64) -> ObjectPlace {
    ObjectPlace {
        kind: ObjectKind::Head,
        device: *device.as_bytes(),
        seq,
    }
}

/// A new HLC after every write this device has made or seen, persisted so
/// a restart never hands out a smaller one.
pub(crate) fn next_hlc(rec: &mut OpRecorder) -> Result<bae_hlc::Timestamp, SyncError> {
    let (conn, clock, _) = rec.sync_parts();
    bae_oplog::catch_up_clock(conn, clock)?;
    let hlc = clock.now().map_err(bae_oplog::OplogError::from)?;
    bae_oplog::persist_clock(conn, clock)?;
    Ok(hlc)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
