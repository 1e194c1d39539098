//! Library-level commands: set a library up for sync, join one, open one.

use crate::error::SyncError;
use crate::images::images_dir_for;
use crate::keystore::{read_key_file, write_private, KeyStore};
use crate::progress::Progress;
use crate::service::SyncService;
use bae_crypto::LibraryKey;
use bae_oplog::OpRecorder;
use rusqlite::params;
use std::path::Path;

pub use crate::lock::LibraryLock;

/// A library's id: the fingerprint of its key (so a device joining with the
/// key knows the id without being told).
pub fn library_id(key: &LibraryKey) -> String {
    key.fingerprint().to_string()
}

/// The library id and bucket URL `init` or `join` saved, if any.
fn sync_setup(rec: &mut OpRecorder) -> Result<Option<(String, String)>, SyncError> {
    crate::service::migrate(rec)?;
    let (id, url): (Option<String>, Option<String>) = rec.sync_parts().0.query_row(
        "SELECT library_id, bucket_url FROM bae_sync_library WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(id.zip(url))
}

fn open_store(url: &str) -> Result<std::sync::Arc<dyn bae_storage_s3::ObjectStore>, SyncError> {
    bae_storage_s3::open_store(url).map_err(|source| SyncError::BucketUrl {
        url: url.to_owned(),
        source,
    })
}

fn remember(rec: &mut OpRecorder, id: &str, url: &str) -> Result<(), SyncError> {
    rec.sync_parts().0.execute(
        "UPDATE bae_sync_library SET library_id = ?1, bucket_url = ?2 WHERE id = 1",
        params![id, url],
    )?;
    Ok(())
}

/// The service over `rec`, keeping image bytes next to the library file.
fn service(
    rec: OpRecorder,
    store: std::sync::Arc<dyn bae_storage_s3::ObjectStore>,
    key: LibraryKey,
) -> Result<SyncService, SyncError> {
    let images = rec.path().map(images_dir_for);
    let service = SyncService::new(rec, store, key)?;
    Ok(match images {
        Some(dir) => service.with_images_dir(dir),
        None => service,
    })
}

/// `init`: makes a library key, remembers the bucket, pushes what the
/// library already holds. `rec` is a recorder on the library (the host's
/// tables exist; the engine's are created if needed).
pub async fn init(
    mut rec: OpRecorder,
    bucket_url: &str,
    keys: &KeyStore,
) -> Result<SyncService, SyncError> {
    if let Some((_, url)) = sync_setup(&mut rec)? {
        return Err(SyncError::AlreadyInitialized(url));
    }
    let store = open_store(bucket_url)?;
    let key = LibraryKey::generate();
    let id = library_id(&key);
    keys.save(&id, &key)?;
    remember(&mut rec, &id, bucket_url)?;
    let service = service(rec, store, key)?;
    service.push().await?;
    Ok(service)
}

/// `join`: a new device of the same user, with the key from `key export`.
pub async fn join(
    mut rec: OpRecorder,
    bucket_url: &str,
    key_file: &Path,
    keys: &KeyStore,
    progress: Option<Progress>,
) -> Result<SyncService, SyncError> {
    let key = read_key_file(key_file)?;
    if let Some((_, url)) = sync_setup(&mut rec)? {
        return Err(SyncError::AlreadyInitialized(url));
    }
    let store = open_store(bucket_url)?;
    let id = library_id(&key);
    keys.save(&id, &key)?;
    remember(&mut rec, &id, bucket_url)?;
    let mut service = service(rec, store, key)?;
    if let Some(p) = progress {
        service = service.with_progress(p);
    }
    // The newest checkpoint first (if any), then only the batches after it.
    service.bootstrap_from_checkpoint().await?;
    service.pull().await?;
    Ok(service)
}

/// Opens a library set up by `init` or `join`.
pub fn open(mut rec: OpRecorder, keys: &KeyStore) -> Result<SyncService, SyncError> {
    let (id, url) = sync_setup(&mut rec)?.ok_or(SyncError::NotInitialized)?;
    let key = keys.load(&id)?;
    service(rec, open_store(&url)?, key)
}

/// `key export`: writes the library key to a file only its owner can read.
pub fn export_key(mut rec: OpRecorder, keys: &KeyStore, out: &Path) -> Result<(), SyncError> {
    let (id, _) = sync_setup(&mut rec)?.ok_or(SyncError::NotInitialized)?;
    let key = keys.load(&id)?;
    // Built in one zeroizing buffer with room for the newline, so no
    // reallocation leaves a copy of the key text behind.
    let key_text = key.to_key_text();
    let mut text = zeroize::Zeroizing::new(String::with_capacity(key_text.len() + 1));
    text.push_str(&key_text);
    text.push('\n');
    write_private(out, text.as_bytes())
}
