//! Shared setup for the end-to-end tests: a temp world with a bucket (a
//! local directory or a unique prefix on the test S3 server), a file-backed
//! key store, libraries with imported albums and their image bytes.
#![allow(dead_code)]

use bae_crypto::{IdentitySigningKey, LibraryKey, ObjectKind, ObjectPlace};
use bae_membership::{EnvelopeHeader, LibraryId, SignedKind, SignedObject};
use bae_oplog::fixture::{demo_album, open_library, Library};
use bae_oplog::{canonical_dump, Value, BAE_SCHEMA};
use bae_storage_s3::layout;
use bae_storage_s3::ObjectStore;
use bae_sync_service::{images_dir_for, library, write_genesis, KeyStore, Member, SyncService};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

/// Which bucket a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// A local directory (the embedded default).
    Local,
    /// The test S3 server `cargo xtask test` starts.
    S3,
}

/// A temp dir holding libraries, keys and (for local buckets) the bucket.
pub struct World {
    pub dir: tempfile::TempDir,
    pub bucket: String,
    pub keys: KeyStore,
}

impl World {
    pub fn new(bucket: Bucket, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bucket = match bucket {
            Bucket::Local => dir.path().join("bucket").to_string_lossy().into_owned(),
            Bucket::S3 => s3_bucket_url(name),
        };
        let keys = KeyStore::Files(dir.path().join("home"));
        World { dir, bucket, keys }
    }

    /// The home directory the CLI gets with `--home`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A device's library file.
    pub fn library(&self, device: &str) -> PathBuf {
        self.dir.path().join(format!("{device}.db"))
    }

    /// The file `key export` writes.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("library.key")
    }

    /// The bucket, opened directly (to inspect or tamper with objects).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        bae_storage_s3::open_store(&self.bucket).unwrap()
    }

    /// The first device: imports `albums` albums (with image bytes), then `init`.
    pub async fn first_device(&self, device: &str, albums: u64) -> SyncService {
        let lib = self.library(device);
        import_albums(&lib, 0, albums);
        let s = library::init(open_library(&lib).unwrap(), &self.bucket, &self.keys)
            .await
            .unwrap();
        library::export_key(
            open_library(&lib).unwrap(),
            &self.keys,
            &self.key_file(),
            false,
        )
        .unwrap();
        s
    }

    /// Another device of the same user: `join` with the exported key.
    pub async fn join(&self, device: &str) -> SyncService {
        library::join(
            open_library(&self.library(device)).unwrap(),
            &self.bucket,
            &self.key_file(),
            &self.keys,
            None,
        )
        .await
        .unwrap()
    }
}

impl World {
    /// A device of the same user running bae's schema version 2 (the
    /// fixture's `BAE_SCHEMA_V2`): its library migrated by the host's
    /// version 2 migration, opened with that schema. A device that ran
    /// version 1 before comes back upgraded.
    pub fn device_v2(&self, device: &str) -> SyncService {
        let lib = self.library(device);
        let conn = rusqlite::Connection::open(&lib).unwrap();
        bae_oplog::fixture::create_bae_library(&conn).unwrap();
        bae_oplog::fixture::upgrade_to_v2(&conn).unwrap();
        drop(conn);
        let rec = bae_oplog::OpRecorder::open(&lib, &bae_oplog::fixture::BAE_SCHEMA_V2).unwrap();
        let file = bae_sync_service::keystore::read_key_file(&self.key_file()).unwrap();
        let member = Member::new(file.identity.clone(), file.identity.public_key());
        SyncService::new(rec, self.store(), file.key, member)
            .unwrap()
            .with_images_dir(images_dir_for(&lib))
    }

    /// A device that has not joined through `library::join`, talking to
    /// the bucket through `store` (a counting or faulty wrapper), with its
    /// images directory set.
    pub fn device_over(&self, device: &str, store: Arc<dyn ObjectStore>) -> SyncService {
        let lib = self.library(device);
        let rec = open_library(&lib).unwrap();
        let file = bae_sync_service::keystore::read_key_file(&self.key_file()).unwrap();
        let member = Member::new(file.identity.clone(), file.identity.public_key());
        SyncService::new(rec, store, file.key, member)
            .unwrap()
            .with_images_dir(images_dir_for(&lib))
    }
}

/// Seals `body` in an envelope `signer` signs over `header`, at the place
/// the header names, under `key`: what a member (or a key holder forging
/// one) writes.
pub fn sign_and_seal(
    key: &LibraryKey,
    signer: &IdentitySigningKey,
    header: EnvelopeHeader,
    body: Vec<u8>,
) -> Vec<u8> {
    let kind = match header.kind {
        SignedKind::Batch => ObjectKind::OpBatch,
        _ => ObjectKind::Head,
    };
    let place = ObjectPlace {
        kind,
        device: *header.device.as_bytes(),
        seq: header.seq,
    };
    let epoch = header.epoch;
    let signed = SignedObject::sign(signer, header, body).unwrap();
    bae_crypto::seal_object(key, epoch, &place, &signed.to_bytes())
}

/// The envelope header of a head or batch of `library` at `device`/`seq`.
pub fn envelope(
    key: &LibraryKey,
    kind: SignedKind,
    device: bae_hlc::DeviceId,
    seq: u64,
    hlc: bae_hlc::Timestamp,
    prev: Option<bae_oplog::BatchHash>,
) -> EnvelopeHeader {
    EnvelopeHeader {
        library_id: LibraryId::from(key.fingerprint()),
        kind,
        device,
        seq,
        hlc,
        epoch: bae_crypto::KeyEpoch(0),
        prev,
    }
}

/// The member every device of a test bucket built without `init` signs
/// as: one user, whose identity is derived from the library key (so every
/// call for a key agrees). Writes its genesis entry to `store` first if it
/// is not there yet.
pub fn founder_of(store: &Arc<dyn ObjectStore>, key: &LibraryKey) -> Member {
    let fp = *key.fingerprint().as_bytes();
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&fp);
    seed[16..].copy_from_slice(&fp);
    let identity = IdentitySigningKey::from_seed(&seed);
    let (store, key, id) = (store.clone(), key.clone(), identity.clone());
    // On a runtime of its own: callers may be sync code inside a
    // current-thread runtime, which cannot block on a future.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(write_genesis(store.as_ref(), &key, &id))
    })
    .join()
    .unwrap()
    .unwrap();
    Member::founder_of_library(identity)
}

/// The bucket URL of a unique prefix on the test S3 server. Panics (never
/// skips) when the server is not configured.
pub fn s3_bucket_url(name: &str) -> String {
    let var = |n: &str| {
        std::env::var(n).unwrap_or_else(|_| {
            panic!(
                "{n} is not set: the S3 end-to-end tests need the test S3 server; \
                 run them with `cargo xtask test` (it starts s3s-fs and sets BAE_TEST_S3_*)"
            )
        })
    };
    let endpoint = var("BAE_TEST_S3_ENDPOINT");
    let bucket = var("BAE_TEST_S3_BUCKET");
    static CREDENTIALS: Once = Once::new();
    let (access, secret) = (var("BAE_TEST_S3_ACCESS_KEY"), var("BAE_TEST_S3_SECRET_KEY"));
    // Bucket URLs carry no credentials: the store reads them from the
    // environment, as it would for a user.
    CREDENTIALS.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", access);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
    });
    format!(
        "s3://{bucket}/{}?endpoint={endpoint}&region=us-east-1",
        unique_prefix(name)
    )
}

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("e2e/{name}-{nanos:x}-{}", std::process::id())
}

/// Imports albums `first..first + n` of seed 1, writing each album's image
/// bytes where bae keeps them.
/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn import_albums(lib: &Path, first: u64, n: u64) {
    let mut library = Library::new(open_library(lib).unwrap());
    let dir = images_dir_for(lib);
    std::fs::create_dir_all(&dir).unwrap();
    for i in first..first + n {
        let album = demo_album(1, i, 3);
        for row in album.rows.iter().filter(|r| r.table == "images") {
            std::fs::write(dir.join(&row.id), image_bytes(&row.id)).unwrap();
        }
        library.import_album(&album).unwrap();
    }
}

/// Imports album `i` of seed 1 (3 tracks) with real release files next to
/// `lib` (`files_dir_for`).
pub fn import_with_files(lib: &Path, i: u64) {
    let album = demo_album(1, i, 3)
        .with_files_in(&bae_sync_service::files_dir_for(lib))
        .unwrap();
    Library::new(open_library(lib).unwrap())
        .import_album(&album)
        .unwrap();
}

/// The ids of album `i`'s files (seed 1, 3 tracks).
pub fn file_ids(i: u64) -> Vec<String> {
    demo_album(1, i, 3)
        .ids("files")
        .map(str::to_owned)
        .collect()
}

/// The bytes the tests use for an image.
pub fn image_bytes(id: &str) -> Vec<u8> {
    format!("image bytes of {id}").into_bytes()
}

/// The id of album `i`'s row in `table` (albums, releases, images...).
pub fn album_row(i: u64, table: &str) -> String {
    demo_album(1, i, 3)
        .rows
        .iter()
        .find(|r| r.table == table)
        .map(|r| r.id.clone())
        .unwrap()
}

/// One recorded edit on a device.
pub async fn edit(
    s: &SyncService,
    table: &'static str,
    row: &str,
    column: &'static str,
    value: &str,
) {
    let (row, value) = (row.to_owned(), Value::Text(value.to_owned()));
    s.with_db(move |rec| {
        let mut tx = rec.transaction()?;
        tx.update(table, &row, &[(column, value)])?;
        tx.commit()?;
        Ok(())
    })
    .await
    .unwrap();
}

/// One recorded delete (with its cascade) on a device.
pub async fn delete(s: &SyncService, table: &'static str, row: &str) {
    let row = row.to_owned();
    s.with_db(move |rec| {
        let mut tx = rec.transaction()?;
        tx.delete(table, &row)?;
        tx.commit()?;
        Ok(())
    })
    .await
    .unwrap();
}

/// A field of a row, as text ("NULL" when absent or null).
pub async fn field(
    s: &SyncService,
    table: &'static str,
    row: &str,
    column: &'static str,
) -> String {
    let row = row.to_owned();
    s.with_db(move |rec| {
        use rusqlite::OptionalExtension;
        let v: Option<Option<String>> = rec
            .sync_parts()
            .0
            .query_row(
                &format!("SELECT CAST({column} AS TEXT) FROM {table} WHERE id = ?1"),
                [row],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.flatten().unwrap_or_else(|| "NULL".into()))
    })
    .await
    .unwrap()
}

/// The canonical dump of a device's synced tables.
pub async fn dump(s: &SyncService) -> String {
    dump_as(s, &BAE_SCHEMA).await
}

/// The canonical dump of the tables and columns of `schema` (which the
/// device's library has).
pub async fn dump_as(s: &SyncService, schema: &'static bae_oplog::SyncSchema) -> String {
    s.with_db(move |rec| Ok(canonical_dump(rec.sync_parts().0, schema)?))
        .await
        .unwrap()
}

/// Syncs every device in turn, twice (so each sees every other's batches).
pub async fn sync_all(devices: &[&SyncService]) {
    for _ in 0..2 {
        for d in devices {
            let (_, pull) = d.sync().await.unwrap();
            assert!(pull.problems.is_empty(), "{:?}", pull.problems);
        }
    }
}

/// Asserts every device holds the same synced rows.
pub async fn assert_converged(devices: &[&SyncService]) {
    let first = dump(devices[0]).await;
    for d in &devices[1..] {
        assert_eq!(dump(d).await, first, "device {} differs", d.device());
    }
}

/// The bucket key of a device's batch.
pub fn ops_key(s: &SyncService, seq: u64) -> String {
    layout::ops_key(&s.device(), seq)
}

/// The newest batch a device has recorded.
pub async fn last_batch(s: &SyncService) -> u64 {
    s.with_db(|rec| Ok(bae_oplog::last_batch(rec.sync_parts().0)?.0))
        .await
        .unwrap()
}

/// What a [`HookedStore`] answers a GET of a key with, instead of the
/// bucket (`None`: the bucket answers).
pub type GetHook =
    dyn Fn(&str) -> Option<Result<Vec<u8>, bae_storage_s3::StoreError>> + Send + Sync;

/// What a [`HookedStore`] fails a PUT of a key with, before it reaches
/// the bucket (`None`: the bucket takes it).
pub type PutHook = dyn Fn(&str) -> Option<bae_storage_s3::StoreError> + Send + Sync;

/// What a [`HookedStore`] does to the bucket's answer to a GET: (key,
/// body) to the body returned.
pub type BodyHook = dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync;

/// What a [`HookedStore`] does to a LIST: (prefix, keys) to the keys shown.
pub type ListHook = dyn Fn(&str, Vec<String>) -> Vec<String> + Send + Sync;

/// A misbehaving bucket for a test: PUTs, GETs and LISTs pass through its
/// hooks, every other call goes to `inner` as it is.
pub struct HookedStore {
    inner: Arc<dyn ObjectStore>,
    put: Box<PutHook>,
    get: Box<GetHook>,
    body: Box<BodyHook>,
    list: Box<ListHook>,
}

impl HookedStore {
    /// `inner` with hooks that change nothing yet.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        HookedStore {
            inner,
            put: Box::new(|_| None),
            get: Box::new(|_| None),
            body: Box::new(|_, body| body),
            list: Box::new(|_, keys| keys),
        }
    }

    /// PUTs `put` fails fail with its error.
    pub fn on_put(
        mut self,
        put: impl Fn(&str) -> Option<bae_storage_s3::StoreError> + Send + Sync + 'static,
    ) -> Self {
        self.put = Box::new(put);
        self
    }

    /// GETs of keys `get` answers get its answer.
    pub fn on_get(
        mut self,
        get: impl Fn(&str) -> Option<Result<Vec<u8>, bae_storage_s3::StoreError>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.get = Box::new(get);
        self
    }

    /// GETs the bucket answers return what `body` makes of its answer.
    pub fn on_body(
        mut self,
        body: impl Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.body = Box::new(body);
        self
    }

    /// LISTs show what `list` makes of them.
    pub fn on_list(
        mut self,
        list: impl Fn(&str, Vec<String>) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.list = Box::new(list);
        self
    }
}

impl std::fmt::Debug for HookedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookedStore")
    }
}

#[async_trait::async_trait]
impl ObjectStore for HookedStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), bae_storage_s3::StoreError> {
        match (self.put)(key) {
            Some(e) => Err(e),
            None => self.inner.put(key, bytes).await,
        }
    }
    async fn get(&self, key: &str, max: u64) -> Result<Vec<u8>, bae_storage_s3::StoreError> {
        match (self.get)(key) {
            Some(answer) => answer,
            None => Ok((self.body)(key, self.inner.get(key, max).await?)),
        }
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, bae_storage_s3::StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<bae_storage_s3::ObjectMeta, bae_storage_s3::StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, bae_storage_s3::StoreError> {
        let keys = self.inner.list(prefix).await?;
        Ok((self.list)(prefix, keys))
    }
    async fn delete(&self, key: &str) -> Result<(), bae_storage_s3::StoreError> {
        self.inner.delete(key).await
    }
}
