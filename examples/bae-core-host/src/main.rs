//! An example host of the bae sync engine that plays bae-core: what bae-core
//! does to adopt the engine, in one small program you can run and copy.
//!
//! ```text
//! cargo run -p bae-core-host
//! ```
//!
//! Two "bae-core instances" (two devices of one user) each own a library
//! file in a temporary directory; one local directory plays the bucket.
//! Each instance holds three things on its library file, as bae-core would:
//!
//! - a [`Database`]: the host's sqlx pool. The host creates bae's schema with
//!   its own migration and reads through this pool, as bae-core does today.
//! - a [`LibraryManager`]: the host's writes, each one recorded transaction
//!   on the host's own `OpRecorder` (`LibraryManager -> OpRecorder -> Database`).
//! - a `SyncService` on a second `OpRecorder` (its own connection to the same
//!   file), which pushes this device's writes to the bucket and merges the
//!   other devices' writes in.
//!
//! The story: A imports an album and deletes a track, pushes, writes a
//! checkpoint, then renames the album and pushes again; B starts empty,
//! bootstraps from the checkpoint and pulls the rename; B's background sync
//! loop carries an edit made on B back to A. Finally the synced tables, read
//! through each host's sqlx pool, must be identical: the program prints a
//! summary and exits 0 if they are, one line and exit code 1 if anything
//! differs or fails.

mod database;
mod manager;

use bae_crypto::LibraryKey;
use bae_oplog::{OpRecorder, BAE_SCHEMA};
use bae_storage_s3::{LocalDirStore, ObjectStore};
use bae_sync_service::{
    images_dir_for, LoopState, Member, PullReport, SyncHandle, SyncLoop, SyncService,
};
use database::Database;
use manager::{ImportedAlbum, LibraryManager, NewAlbum, NewTrack};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Every failure in this example: a one-line message is all it prints.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the example waits for the background loop before giving up.
const LOOP_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bae-core-host: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One bae-core instance: one device, one library file, three connections
/// to it (the host's pool, the host's recorder, the sync service's recorder).
struct Instance {
    name: &'static str,
    db: Database,
    manager: LibraryManager,
    sync: Arc<SyncService>,
    images: PathBuf,
}

impl Instance {
    /// Starts an instance on `dir/{name}.db` as bae-core starts: its own
    /// schema first, then the engine on top.
    async fn start(
        name: &'static str,
        dir: &Path,
        bucket: Arc<dyn ObjectStore>,
        key: LibraryKey,
        member: Member,
    ) -> Result<Self, BoxError> {
        let library = dir.join(format!("{name}.db"));
        // The host's schema, by the host's own migration, on its pool.
        let db = Database::open(&library).await?;
        // The host's writes go through its own OpRecorder.
        let manager = LibraryManager::open(&library)?;
        // The sync service gets its own OpRecorder: a second connection
        // to the same file (WAL, busy timeout), so a long pull or checkpoint
        // never holds up the host's writes behind one lock. Both recorders
        // share the library's device id and clock (kept in the file).
        let images = images_dir_for(&library);
        std::fs::create_dir_all(&images)?;
        let sync = SyncService::new(
            OpRecorder::open(&library, &BAE_SCHEMA)?,
            bucket,
            key,
            member,
        )?
        // Image rows name files in this directory; the service uploads
        // the bytes before the batch that inserts the row, and fetches
        // them before merging that batch on the other device.
        .with_images_dir(&images);
        Ok(Instance {
            name,
            db,
            manager,
            sync: Arc::new(sync),
            images,
        })
    }
}

/// The whole story; returns the summary printed on success.
async fn run() -> Result<String, BoxError> {
    let dir = tempfile::tempdir()?;
    // The bucket: a local directory here, made now as `init` would (opening
    // one never creates it). A host with a bucket URL uses
    // `bae_storage_s3::open_store("s3://...")` and gets the same trait object.
    let bucket: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::create(dir.path().join("bucket"))?);
    // The library key. bae-core keeps it in its KeyService; the second
    // device gets it by a key export and import. Here both share a clone.
    let key = LibraryKey::generate();
    // One user on two devices: the founder's identity, and the genesis
    // membership entry (it adds itself as owner) before any batch.
    let identity = bae_crypto::IdentitySigningKey::generate();
    bae_sync_service::write_genesis(bucket.as_ref(), &key, &identity).await?;
    let member = Member::founder_of_library(identity);

    // --- Instance A: import, delete, push, checkpoint, then an edit ---
    let a = Instance::start(
        "a",
        dir.path(),
        Arc::clone(&bucket),
        key.clone(),
        member.clone(),
    )
    .await?;
    let album = import_demo_album(&a).await?;
    a.manager.delete_track(&album.track_ids[2]).await?;
    // The writes are visible to the host's own connection at once: the
    // recorder committed them to the same file.
    expect_eq(
        "A's tracks, read through A's sqlx pool",
        a.db.track_titles(&album.release_id).await?,
        vec!["So What".to_owned(), "Freddie Freeloader".to_owned()],
    )?;
    let pushed = a.sync.push().await?;
    println!(
        "a: pushed {} batches and {} image",
        pushed.batches, pushed.images
    );
    // A checkpoint lets a new device start from one object instead of
    // replaying every batch.
    let checkpoint = a.sync.checkpoint().await?;
    println!(
        "a: wrote checkpoint {} ({} records)",
        checkpoint.key, checkpoint.records
    );
    // An edit after the checkpoint: B gets it by a normal pull.
    a.manager
        .rename_album(&album.album_id, "Kind of Blue (Legacy Edition)")
        .await?;
    expect_eq(
        "A's album title, read through A's sqlx pool",
        a.db.album_title(&album.album_id).await?,
        Some("Kind of Blue (Legacy Edition)".to_owned()),
    )?;
    a.sync.push().await?;

    // --- Instance B: a second device joins from the checkpoint ---
    let b = Instance::start(
        "b",
        dir.path(),
        Arc::clone(&bucket),
        key.clone(),
        member.clone(),
    )
    .await?;
    let restored = b
        .sync
        .bootstrap_from_checkpoint()
        .await?
        .ok_or("b: the bucket holds no usable checkpoint")?;
    println!(
        "b: restored {} records from {}",
        restored.records, restored.key
    );
    // Anything pushed after the checkpoint (A's rename) arrives by a
    // normal pull.
    let pulled = b.sync.pull().await?;
    all_applied("b", &pulled)?;
    println!("b: pulled {} batch after the checkpoint", pulled.applied);
    expect_eq(
        "B's album title, read through B's sqlx pool",
        b.db.album_title(&album.album_id).await?,
        Some("Kind of Blue (Legacy Edition)".to_owned()),
    )?;
    // Local-only columns stay on their device.
    expect_eq(
        "B's source_path of a file A imported (local-only)",
        b.db.file_source_path(&album.file_ids[0]).await?,
        None,
    )?;
    expect_eq(
        "the cover's bytes on B",
        std::fs::read(b.images.join(&album.cover_image_id))?,
        std::fs::read(a.images.join(&album.cover_image_id))?,
    )?;

    // --- B syncs in the background, as bae-core would run it ---
    // The loop syncs at start, every `interval`, and `debounce` after a
    // request; the host requests a sync after each write.
    let b_loop = SyncLoop::spawn(
        Arc::clone(&b.sync),
        Duration::from_secs(60),
        Duration::from_millis(50),
    );
    wait_for_syncs(&b_loop, 1).await?;
    b.manager
        .rename_track(&album.track_ids[0], "So What (Take 3)")
        .await?;
    b_loop.request_sync();
    wait_for_syncs(&b_loop, 2).await?;
    b_loop.shutdown().await?;
    println!("b: its loop pushed the edit");

    // A calls `sync()` (push then pull) directly: a host can use the loop
    // or call the service itself (on a button, or in a test); both go
    // through the same code.
    let (_, pulled) = a.sync.sync().await?;
    all_applied("a", &pulled)?;
    println!("a: pulled {} batch from b", pulled.applied);
    expect_eq(
        "A's first track after B's edit",
        a.db.track_titles(&album.release_id).await?.first().cloned(),
        Some("So What (Take 3)".to_owned()),
    )?;

    // --- Both devices must hold the same synced rows ---
    let rows = compare(&a, &b).await?;
    let pending = a.sync.status().await?.pending_batches + b.sync.status().await?.pending_batches;
    a.db.close().await;
    b.db.close().await;
    Ok(format!(
        "bae-core-host: converged: {} synced tables, {rows} rows identical on a and b; {pending} batches pending",
        BAE_SCHEMA.tables().len()
    ))
}

/// bae's import on A: the cover's bytes first (in the images directory,
/// named by the image row's id), then the rows in one recorded transaction,
/// then the local-only import status.
async fn import_demo_album(a: &Instance) -> Result<ImportedAlbum, BoxError> {
    let cover = b"\xFF\xD8\xFF\xE0 not really a JPEG".to_vec();
    let cover_image_id = manager::new_id();
    // Bytes before the row that names them: a push uploads an image before
    // the batch inserting its row (a missing file stays queued until it
    // appears).
    std::fs::write(a.images.join(&cover_image_id), &cover)?;
    let track = |number, title: &str, duration_ms| NewTrack {
        title: title.to_owned(),
        number,
        duration_ms,
    };
    let imported = a
        .manager
        .insert_album_with_release_and_tracks(NewAlbum {
            title: "Kind of Blue".to_owned(),
            year: 1959,
            artist: "Miles Davis".to_owned(),
            tracks: vec![
                track(1, "So What", 562_000),
                track(2, "Freddie Freeloader", 586_000),
                track(3, "Blue in Green", 337_000),
            ],
            cover_image_id: cover_image_id.clone(),
            cover_size: cover.len() as i64,
            source_dir: "/home/a/Music/import".to_owned(),
        })
        .await?;
    a.manager
        .mark_release_complete(&imported.release_id)
        .await?;
    println!("{}: imported an album with 3 tracks and a cover", a.name);
    Ok(imported)
}

/// Waits until the loop has finished `syncs` successful syncs; fails on the
/// first failed one (with its error) or after [`LOOP_TIMEOUT`].
async fn wait_for_syncs(handle: &SyncHandle, syncs: u64) -> Result<(), BoxError> {
    let mut state = handle.subscribe();
    let done = |s: &LoopState| s.syncs >= syncs || s.failures > 0;
    let reached = tokio::time::timeout(LOOP_TIMEOUT, state.wait_for(done))
        .await
        .map_err(|_| format!("b: the sync loop did not finish sync {syncs} in {LOOP_TIMEOUT:?}"))??
        .clone();
    match reached.last_error {
        Some(error) => Err(format!("b: the sync loop failed: {error}").into()),
        None => Ok(()),
    }
}

/// Fails with the first batch a pull could not apply: a pull succeeds even
/// when a batch is held for later or rejected, and says so in its report.
fn all_applied(who: &str, pulled: &PullReport) -> Result<(), BoxError> {
    match pulled.problems.first() {
        None => Ok(()),
        Some(p) => Err(format!(
            "{who}: batch {} of device {} not applied ({:?}): {}",
            p.seq, p.device, p.kind, p.reason
        )
        .into()),
    }
}

/// Compares every synced table, read through each host's own sqlx pool.
/// Returns the number of rows compared, or the first difference.
async fn compare(a: &Instance, b: &Instance) -> Result<usize, BoxError> {
    let mut rows = 0;
    for table in BAE_SCHEMA.tables() {
        let (on_a, on_b) = (
            a.db.synced_rows(table).await?,
            b.db.synced_rows(table).await?,
        );
        if on_a != on_b {
            let only_a = on_a.iter().find(|r| !on_b.contains(r));
            let only_b = on_b.iter().find(|r| !on_a.contains(r));
            return Err(format!(
                "diverged: table {} differs: a has {} rows, b has {}; first only on a: {only_a:?}; first only on b: {only_b:?}",
                table.name,
                on_a.len(),
                on_b.len()
            )
            .into());
        }
        rows += on_a.len();
    }
    Ok(rows)
}

/// Fails with `what` and both values unless `got == want`.
fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), BoxError> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected {want:?}, got {got:?}").into())
    }
}
