//! Image bytes: local files `{library file}.images/{image_id}`, bucket
//! objects `images/{ab}/{cd}/{image_id}` sealed as [`ObjectKind::Image`].
//!
//! Write order: push uploads an image before the batch whose ops reference
//! it, and drops it from `image_sync_queue` only after that batch is marked
//! pushed. Pull writes a missing image (temp file + rename) before the
//! batch that inserts its row is merged, so a row never names bytes that a
//! crash could leave half-written.

use crate::error::SyncError;
use crate::service::SyncService;
use bae_crypto::{ObjectKind, ObjectPlace};
use bae_oplog::{Batch, OpKind};
use bae_storage_s3::layout::{self, ObjectId};
use rusqlite::params;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a library's image bytes live: `{library file name}.images`, next
/// to the library file.
pub fn images_dir_for(library: &Path) -> PathBuf {
    let mut name = library.file_name().unwrap_or_default().to_os_string();
    name.push(".images");
    library.with_file_name(name)
}

/// The place an image object belongs: its id, hashed into the owner field.
pub(crate) fn image_place(id: &ObjectId) -> ObjectPlace {
    ObjectPlace::hashed_owner(ObjectKind::Image, id.as_str().as_bytes(), 0)
}

/// A queued image this push uploaded: `(image_id, batch_id)` as queued, so
/// a newer queue entry for the same image is not dropped with it.
pub(crate) type Uploaded = (String, i64);

/// What the image step of a push did.
#[derive(Debug, Default)]
pub(crate) struct ImageUpload {
    pub uploaded: Vec<Uploaded>,
    pub skipped: usize,
}

impl SyncService {
    /// Uploads the queued images of batches up to `through` (the batches
    /// this push sends and any pushed earlier whose image was skipped).
    /// An image whose local file is missing stays queued for a later push.
    pub(crate) async fn upload_queued_images(
        &self,
        through: u64,
    ) -> Result<ImageUpload, SyncError> {
        let mut report = ImageUpload::default();
        let Some(dir) = self.images_dir.clone() else {
            return Ok(report);
        };
        let queued = self
            .with_db(move |rec| {
                let (conn, _, _) = rec.sync_parts();
                let mut stmt = conn.prepare(
                    "SELECT image_id, batch_id FROM image_sync_queue WHERE batch_id <= ?1 ORDER BY batch_id, image_id",
                )?;
                let rows = stmt
                    .query_map([through as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<Uploaded>, _>>()?;
                Ok(rows)
            })
            .await?;
        for (image, batch) in queued {
            let Ok(id) = ObjectId::parse(&image) else {
                tracing::warn!(%image, "queued image id is not a valid object id; left queued");
                report.skipped += 1;
                continue;
            };
            let path = dir.join(id.as_str());
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(%image, path = %path.display(), "image bytes not here yet; left queued");
                    report.skipped += 1;
                    continue;
                }
                Err(e) => return Err(SyncError::io(&path, e)),
            };
            let key = layout::image_key(&id);
            let sealed = self.seal(&image_place(&id), &bytes)?;
            self.store.put(&key, &sealed).await?;
            tracing::debug!(%key, bytes = sealed.len(), "pushed image");
            report.uploaded.push((image, batch));
        }
        Ok(report)
    }

    /// Fetches the images that `batches` insert and this device lacks. An
    /// image missing from the bucket too is logged and skipped (its device
    /// did not have the bytes yet); any other failure fails the pull before
    /// anything is merged. Returns the number of images written.
    pub(crate) async fn fetch_missing_images(&self, batches: &[Batch]) -> Result<usize, SyncError> {
        let Some(dir) = self.images_dir.clone() else {
            return Ok(0);
        };
        let ids: BTreeSet<&str> = batches
            .iter()
            .flat_map(|b| &b.ops)
            .filter(|op| op.table == "images" && op.kind == OpKind::Insert)
            .map(|op| op.row_id.as_str())
            .collect();
        let mut written = 0;
        for image in ids {
            let Ok(id) = ObjectId::parse(image) else {
                tracing::warn!(%image, "incoming image id is not a valid object id; not fetched");
                continue;
            };
            let path = dir.join(id.as_str());
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                continue;
            }
            let key = layout::image_key(&id);
            let sealed = match self.store.get(&key).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => {
                    tracing::warn!(%key, "image not in the bucket yet; not fetched");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let plain = self.open(&key, &image_place(&id), &sealed)?;
            write_atomic(&dir, &path, &plain).await?;
            written += 1;
        }
        Ok(written)
    }
}

/// Drops uploaded images from the queue (after their batches are marked
/// pushed), unless the image was queued again by a newer batch meanwhile.
pub(crate) fn forget_uploaded(
    conn: &rusqlite::Connection,
    uploaded: &[Uploaded],
) -> Result<(), SyncError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM image_sync_queue WHERE image_id = ?1 AND batch_id = ?2")?;
    for (image, batch) in uploaded {
        stmt.execute(params![image, batch])?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temp file in the same directory and a
/// rename, so a crash never leaves a partial image under its final name.
async fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| SyncError::io(dir, e))?;
    let dir = dir.to_path_buf();
    let path = path.to_path_buf();
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| SyncError::io(&dir, e))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| SyncError::io(tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| SyncError::io(&path, e.error))?;
        Ok(())
    })
    .await
    .map_err(|e| SyncError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_live_next_to_the_library_file() {
        assert_eq!(
            images_dir_for(Path::new("/data/music/library.db")),
            Path::new("/data/music/library.db.images")
        );
    }
}
