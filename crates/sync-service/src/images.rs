//! Image bytes: local files `{library file}.images/{image_id}`, bucket
//! objects `images/{ab}/{cd}/{image_id}` sealed as [`ObjectKind::Image`].
//!
//! Write order: push uploads an image before the batch whose ops reference
//! it, and drops it from `bae_sync_image_queue` only after that batch is marked
//! pushed. Pull writes a missing image (temp file + rename) before the
//! batch that inserts its row is merged, so a row never names bytes that a
//! crash could leave half-written.

use crate::error::SyncError;
use crate::progress::Stage;
use crate::service::{now_ms, SyncService};
use bae_crypto::{ObjectKind, ObjectPlace};
use bae_oplog::{Batch, OpKind, SyncSchema};
use bae_storage_s3::layout::{self, ObjectId};
use bae_storage_s3::StoreError;
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

/// The most image bytes a pull accepts for one image (64 MiB): far above
/// cover art and scans (a 4000×4000 uncompressed RGBA image is 61 MiB), and
/// what a pull holds in memory at once for an image, twice (sealed and
/// opened).
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// The largest image object a pull reads: [`MAX_IMAGE_BYTES`] sealed.
pub const MAX_IMAGE_OBJECT_BYTES: u64 = bae_crypto::object::sealed_len(MAX_IMAGE_BYTES);

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
    /// Uploads the queued images of batches above `after` and up to
    /// `through`: a push's first slice passes 0 (the batches it sends and
    /// any pushed earlier whose image was skipped), each later slice the
    /// last batch of the one before, so an image still waiting for its
    /// bytes is tried once a push, not once a slice. An image whose local
    /// file is missing stays queued for a later push.
    pub(crate) async fn upload_queued_images(
        &self,
        after: u64,
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
                    "SELECT image_id, batch_id FROM bae_sync_image_queue WHERE batch_id > ?1 AND batch_id <= ?2 ORDER BY batch_id, image_id",
                )?;
                let rows = stmt
                    .query_map([after as i64, through as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
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

    /// Fetches the images that `batches` insert and this device lacks
    /// (one file-existence check per incoming image insert). An image the
    /// bucket does not have yet (its device had no bytes when it pushed) is
    /// returned in [`ImageFetch::missing`] to be wanted and retried later,
    /// and so is one that does not open (reported in
    /// [`ImageFetch::rejected`]); an unreachable bucket fails the pull
    /// before anything is merged.
    pub(crate) async fn fetch_missing_images(
        &self,
        batches: &[Batch],
    ) -> Result<ImageFetch, SyncError> {
        let mut report = ImageFetch::default();
        let Some(dir) = self.images_dir.clone() else {
            return Ok(report);
        };
        let images_table = self.images_table.map(|t| t.name);
        let ids: BTreeSet<&str> = batches
            .iter()
            .flat_map(|b| &b.ops)
            .filter(|op| Some(op.table.as_str()) == images_table && op.kind == OpKind::Insert)
            .map(|op| op.row_id.as_str())
            .collect();
        for image in ids {
            match self.fetch_image(&dir, image).await? {
                Fetched::Written => report.written += 1,
                Fetched::Missing => report.missing.push(image.to_owned()),
                Fetched::Rejected(why) => {
                    report.missing.push(image.to_owned());
                    report.rejected.push(why);
                }
                Fetched::Present | Fetched::Invalid => {}
            }
        }
        Ok(report)
    }

    /// Retries the wanted images that are due: fetched ones and ones whose
    /// row is gone are forgotten, the rest wait longer. Costs no request
    /// when nothing is due, so an idle pull stays one LIST. Returns the
    /// images written.
    pub(crate) async fn retry_wanted_images(&self) -> Result<usize, SyncError> {
        let (Some(dir), Some(table)) = (self.images_dir.clone(), self.images_table) else {
            return Ok(0);
        };
        let now = now_ms();
        let due: Vec<(String, i64, bool)> = self
            .with_db(move |rec| {
                let (conn, _, _) = rec.sync_parts();
                let mut stmt = conn.prepare(&format!(
                    "SELECT w.image_id, w.attempts, EXISTS (SELECT 1 FROM {} i WHERE i.id = w.image_id)
                     FROM bae_sync_wanted_images w WHERE w.next_try_ms <= ?1 ORDER BY w.image_id",
                    table.name
                ))?;
                let rows = stmt
                    .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let total = due.len() as u64;
        let mut written = 0;
        let mut outcome: Vec<(String, Option<i64>)> = Vec::new();
        for (done, (image, attempts, row_exists)) in due.into_iter().enumerate() {
            self.report(Stage::Images, done as u64, total);
            let fetched = if row_exists {
                self.fetch_image(&dir, &image).await?
            } else {
                Fetched::Invalid
            };
            let retry = match fetched {
                Fetched::Written => {
                    written += 1;
                    None
                }
                Fetched::Missing | Fetched::Rejected(_) => Some(attempts + 1),
                Fetched::Present | Fetched::Invalid => None,
            };
            outcome.push((image, retry));
        }
        self.report(Stage::Images, total, total);
        self.with_db(move |rec| {
            let (conn, _, _) = rec.sync_parts();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (image, retry) in &outcome {
                match retry {
                    None => {
                        tx.execute("DELETE FROM bae_sync_wanted_images WHERE image_id = ?1", [image])?;
                    }
                    Some(attempts) => {
                        tx.execute(
                            "UPDATE bae_sync_wanted_images SET attempts = ?2, next_try_ms = ?3 WHERE image_id = ?1",
                            params![image, attempts, now + retry_delay_ms(*attempts)],
                        )?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(written)
    }

    /// `push --repair` for images: every image this device holds whose
    /// bucket object is missing or does not open is uploaded again from
    /// the local bytes. Returns the image ids re-uploaded.
    pub(crate) async fn repair_images(&self) -> Result<Vec<String>, SyncError> {
        let Some(dir) = self.images_dir.clone() else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| SyncError::io(&dir, e))?
            {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        let mut repaired = Vec::new();
        for name in names {
            let Ok(id) = ObjectId::parse(&name) else {
                continue;
            };
            let key = layout::image_key(&id);
            let sound = match self.store.get(&key, MAX_IMAGE_OBJECT_BYTES).await {
                Ok(sealed) => self.open(&key, &image_place(&id), &sealed).is_ok(),
                Err(e) if e.is_not_found() => false,
                Err(bae_storage_s3::StoreError::TooLarge { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if sound {
                continue;
            }
            let path = dir.join(id.as_str());
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| SyncError::io(&path, e))?;
            let sealed = self.seal(&image_place(&id), &bytes)?;
            self.store.put(&key, &sealed).await?;
            tracing::info!(%key, "re-uploaded image");
            repaired.push(name);
        }
        Ok(repaired)
    }

    /// Fetches one image into `dir` unless it is already there.
    async fn fetch_image(&self, dir: &Path, image: &str) -> Result<Fetched, SyncError> {
        let Ok(id) = ObjectId::parse(image) else {
            tracing::warn!(%image, "incoming image id is not a valid object id; not fetched");
            return Ok(Fetched::Invalid);
        };
        let path = dir.join(id.as_str());
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Fetched::Present);
        }
        let key = layout::image_key(&id);
        let sealed = match self.store.get(&key, MAX_IMAGE_OBJECT_BYTES).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                tracing::warn!(%key, "image not in the bucket yet; wanted for a later pull");
                return Ok(Fetched::Missing);
            }
            // Not usable as it is, like a missing one: wanted and retried
            // later (its device may upload it again), never a failed pull.
            Err(e @ StoreError::TooLarge { .. }) => {
                tracing::warn!(%key, error = %e, "image too large to fetch; wanted for a later pull");
                return Ok(Fetched::Missing);
            }
            Err(e) => return Err(e.into()),
        };
        let plain = match self.open(&key, &image_place(&id), &sealed) {
            Ok(plain) => plain,
            // A damaged image is one image missing, not a failed pull: it is
            // wanted and retried like an image not uploaded yet (its device
            // re-uploads it with `push --repair`).
            Err(e) => {
                tracing::warn!(%key, error = %e, "image rejected; wanted for a later pull");
                return Ok(Fetched::Rejected(e.to_string()));
            }
        };
        write_atomic(dir, &path, &plain).await?;
        Ok(Fetched::Written)
    }
}

/// What the image step of a pull slice did.
#[derive(Debug, Default)]
pub(crate) struct ImageFetch {
    /// Images written.
    pub written: usize,
    /// Images the bucket does not have yet, or has damaged.
    pub missing: Vec<String>,
    /// Why each damaged image was rejected (naming its key).
    pub rejected: Vec<String>,
}

enum Fetched {
    Written,
    Present,
    Missing,
    /// In the bucket but does not open (tampered, wrong key, moved).
    Rejected(String),
    Invalid,
}

/// How long a wanted image waits before its next try: 30 s, doubling per
/// failed try, at most an hour.
pub(crate) fn retry_delay_ms(attempts: i64) -> i64 {
    const FIRST_MS: i64 = 30_000;
    const MAX_MS: i64 = 3_600_000;
    let shift = attempts.clamp(0, 20) as u32;
    (FIRST_MS << shift).min(MAX_MS)
}

/// Wants every image whose row `conn`'s library holds and whose bytes are
/// not in `dir`, due at once; returns how many. A restore calls it inside
/// the transaction that brings a checkpoint's rows (the batches that
/// inserted them may be gone from the bucket, so no pull would fetch
/// their bytes): a process killed once that transaction commits still
/// leaves every absent image wanted, and the next pull fetches it. Row
/// ids come from the checkpoint: one that is no valid object id (a path,
/// say) is never joined to `dir` nor wanted (a fetch would refuse it),
/// and what is present is read with one listing of `dir`, not a lookup per
/// row.
pub(crate) fn want_absent_images(
    conn: &rusqlite::Connection,
    schema: &SyncSchema,
    dir: &Path,
) -> Result<usize, SyncError> {
    let Some(table) = schema.images_table() else {
        return Ok(0);
    };
    let present: BTreeSet<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(SyncError::io(dir, e)),
    };
    let mut rows = conn.prepare(&format!("SELECT id FROM {} ORDER BY id", table.name))?;
    let mut want = conn.prepare_cached(
        "INSERT INTO bae_sync_wanted_images (image_id, attempts, next_try_ms) VALUES (?1, 0, 0)
         ON CONFLICT (image_id) DO UPDATE SET next_try_ms = 0",
    )?;
    let mut wanted = 0;
    let mut ids = rows.query([])?;
    while let Some(row) = ids.next()? {
        let id: String = row.get(0)?;
        if ObjectId::parse(&id).is_ok() && !present.contains(&id) {
            want.execute([&id])?;
            wanted += 1;
        }
    }
    Ok(wanted)
}

/// Records images the bucket did not have yet, to retry later (an image
/// already wanted keeps its schedule).
pub(crate) fn want_images(conn: &rusqlite::Connection, images: &[String]) -> Result<(), SyncError> {
    let next = now_ms() + retry_delay_ms(0);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO bae_sync_wanted_images (image_id, attempts, next_try_ms) VALUES (?1, 1, ?2)
         ON CONFLICT (image_id) DO NOTHING",
    )?;
    for image in images {
        stmt.execute(params![image, next])?;
    }
    Ok(())
}

/// Queues the images `batch` inserts or updates (rows of the sync schema's
/// image table) for upload before the batch: a newer batch re-queues an
/// image under its own number.
pub(crate) fn queue_images(
    conn: &rusqlite::Connection,
    schema: &SyncSchema,
    batch: &Batch,
) -> Result<(), SyncError> {
    let Some(images) = schema.images_table() else {
        return Ok(());
    };
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO bae_sync_image_queue (image_id, batch_id) VALUES (?1, ?2)",
    )?;
    for op in &batch.ops {
        if op.table == images.name && op.kind != OpKind::Delete {
            stmt.execute(params![op.row_id, batch.seq.0 as i64])?;
        }
    }
    Ok(())
}

/// Drops uploaded images from the queue (after their batches are marked
/// pushed), unless the image was queued again by a newer batch meanwhile.
pub(crate) fn forget_uploaded(
    conn: &rusqlite::Connection,
    uploaded: &[Uploaded],
) -> Result<(), SyncError> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM bae_sync_image_queue WHERE image_id = ?1 AND batch_id = ?2")?;
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
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_images_back_off_to_an_hour() {
        assert_eq!(retry_delay_ms(0), 30_000);
        assert_eq!(retry_delay_ms(1), 60_000);
        assert_eq!(retry_delay_ms(6), 1_920_000);
        assert_eq!(retry_delay_ms(7), 3_600_000);
        assert_eq!(retry_delay_ms(i64::MAX), 3_600_000);
        assert_eq!(retry_delay_ms(-5), 30_000);
    }

    /// Ids come from checkpoint rows: one that is not an object id (a
    /// path out of the images directory) is neither looked up nor wanted;
    /// a present image is not wanted; an absent one is, due at once.
    #[test]
    fn only_absent_images_with_valid_ids_are_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("lib.images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("aaaa-0001"), b"x").unwrap();
        let mut rec = bae_oplog::fixture::open_library(&dir.path().join("lib.db")).unwrap();
        crate::service::migrate(&mut rec).unwrap();
        let conn = rec.sync_parts().0;
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        for id in [
            "aaaa-0001",
            "bbbb-0002",
            "../../etc/passwd",
            "/tmp/x",
            "AAAA",
        ] {
            conn.execute(
                "INSERT INTO images (id, release_id, filename, content_type, file_size, source, created_at)
                 VALUES (?1, 'r', 'f', 'image/png', 1, 'local', '')",
                [id],
            )
            .unwrap();
        }
        let schema = &bae_oplog::BAE_SCHEMA;
        assert_eq!(want_absent_images(conn, schema, &images).unwrap(), 1);
        let wanted: Vec<(String, i64)> = conn
            .prepare("SELECT image_id, next_try_ms FROM bae_sync_wanted_images")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(wanted, vec![("bbbb-0002".to_owned(), 0)]);
        // No images directory yet: every valid id is absent.
        let none = dir.path().join("missing.images");
        assert_eq!(want_absent_images(conn, schema, &none).unwrap(), 2);
    }

    #[test]
    fn images_live_next_to_the_library_file() {
        assert_eq!(
            images_dir_for(Path::new("/data/music/library.db")),
            Path::new("/data/music/library.db.images")
        );
    }
}
