//! Release files (phase 3): a release's audio files in the bucket at
//! `storage/{ab}/{cd}/{file_id}`, encrypted with the release's key in bae's
//! chunked format (`docs/FORMAT-crypto.md` sections 1 and 5), fetched whole
//! or by byte range.
//!
//! - **Keys.** A release's key is derived from the library key of the epoch
//!   recorded in `releases.key_epoch` (a synced column). The epoch is set to
//!   the newest held when the release's first file is uploaded and never
//!   changes, so a key rotation never forces re-encrypting audio: devices
//!   keep every epoch's key.
//! - **Where plaintext lives.** `files.source_path`, a local-only column:
//!   the device that imported the file has it, others fetch it.
//! - **Upload state** is the row itself: `files.encryption_nonce` is
//!   recorded only after the file's object is complete in the bucket, so a
//!   row with a nonce names an uploaded object, and one without names a file
//!   still to upload (by the device whose `source_path` has it). No engine
//!   table has to agree with the bucket or the row.
//! - **Write order.** The object is written first (encrypted from disk
//!   straight into the store's temp file for the object, in bounded
//!   memory; an S3 upload spools it next to the library first), then the nonce and scheme are
//!   recorded in a batch, which a later push publishes: nothing in the
//!   bucket names an object before the object exists. A crash between the
//!   two leaves an object no row names; the next upload writes it again
//!   under a fresh nonce (idempotent: the object is replaced whole).
//! - **Reads** are hostile: the recorded size and nonce decide what is
//!   fetched and how much, a whole-file fetch checks the object's size and
//!   nonce first, every chunk must authenticate, and the output is written
//!   to a temp file renamed into place only when everything decrypted.

use crate::error::SyncError;
use crate::service::SyncService;
use bae_crypto::chunked::{self, BaseNonce, RangePlan, CHUNK_SIZE, NONCE_LEN};
use bae_crypto::{derive_release_key, ChunkedError, KeyEpoch, ReleaseKey};
use bae_oplog::Value;
use bae_storage_s3::layout::{self, ObjectId};
use bae_storage_s3::{ObjectStore, StoreError, WriteObject};
use rusqlite::OptionalExtension;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `files.encryption_scheme` of a file this engine uploaded: bae's chunked
/// format v1 under the release key.
pub const SCHEME_CHUNKED_V1: &str = "bae-chunked-v1";

/// How many chunks one ranged GET fetches when a fetch spans more: 17, the
/// most a 1 MiB range can touch, so a 1 MiB read is one request; also what
/// a fetch holds in memory at once (about 1.1 MiB).
const CHUNKS_PER_REQUEST: u64 = 17;

/// Where demo files (and other files a library keeps for itself) live:
/// `{library file name}.files`, next to the library file.
pub fn files_dir_for(library: &Path) -> PathBuf {
    let mut name = library.file_name().unwrap_or_default().to_os_string();
    name.push(".files");
    library.with_file_name(name)
}

/// Whether a release file's bytes are in the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadState {
    /// In the bucket (its nonce is recorded): any device can fetch it.
    Uploaded,
    /// Not uploaded yet; this device has its bytes and uploads it.
    Waiting,
    /// Not uploaded yet, and this device does not have its bytes: the
    /// device that imported it uploads it.
    Elsewhere,
}

impl UploadState {
    /// One word for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Uploaded => "uploaded",
            UploadState::Waiting => "waiting",
            UploadState::Elsewhere => "elsewhere",
        }
    }
}

/// One file of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseFile {
    /// The file's id (its bucket object is `storage/{ab}/{cd}/{id}`).
    pub id: String,
    /// Its original file name.
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Whether it is in the bucket.
    pub state: UploadState,
}

/// What an upload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadReport {
    /// Files uploaded now (their nonces recorded for the next push).
    pub uploaded: Vec<String>,
    /// Plaintext bytes uploaded.
    pub bytes: u64,
    /// Files already in the bucket.
    pub already: usize,
    /// Files not uploaded whose bytes this device does not have.
    pub elsewhere: Vec<String>,
}

/// A release file that cannot be listed, uploaded or fetched. Each
/// variant names the file or release.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The library's sync schema has no `files` or `releases` table.
    #[error("this library has no release files (no files table in its sync schema)")]
    NoFilesTable,
    /// No release with that id.
    #[error("no release {release} in this library")]
    UnknownRelease {
        /// The id asked for.
        release: String,
    },
    /// No file with that id.
    #[error("no file {file} in this library")]
    UnknownFile {
        /// The id asked for.
        file: String,
    },
    /// A file id that cannot name a bucket object.
    #[error("file id {file:?} is not a valid object id")]
    BadFileId {
        /// The id.
        file: String,
    },
    /// The file has no recorded nonce: it is not in the bucket yet.
    #[error("file {file} is not uploaded yet: the device that imported it runs `bae-sync upload` and pushes")]
    NotUploaded {
        /// The file.
        file: String,
    },
    /// Encrypted with a scheme this version does not read.
    #[error("file {file} is encrypted with scheme {scheme:?}, which this version cannot read")]
    UnsupportedScheme {
        /// The file.
        file: String,
        /// The recorded scheme (or `NULL`).
        scheme: String,
    },
    /// The recorded nonce is not a nonce.
    #[error("file {file}: its recorded nonce is {len} bytes, not 24")]
    BadNonce {
        /// The file.
        file: String,
        /// Its length.
        len: usize,
    },
    /// The recorded size is negative or beyond the format's limit.
    #[error("file {file}: its recorded size {size} is not a file size")]
    BadSize {
        /// The file.
        file: String,
        /// The recorded value.
        size: i64,
    },
    /// The recorded key epoch is not an epoch.
    #[error("release {release}: its recorded key epoch {epoch} is not a key epoch")]
    BadEpoch {
        /// The release.
        release: String,
        /// The recorded value.
        epoch: i64,
    },
    /// A release with uploaded files but no key epoch: its files were not
    /// encrypted by this engine.
    #[error("release {release} has no key epoch recorded, so its files' key is unknown")]
    NoEpoch {
        /// The release.
        release: String,
    },
    /// The release's key epoch is one this device does not hold.
    #[error(
        "release {release} is encrypted under key epoch {epoch}, which this device does not hold"
    )]
    NoKeyForEpoch {
        /// The release.
        release: String,
        /// The epoch.
        epoch: u32,
    },
    /// A range outside the file.
    #[error("file {file}: range {start}-{end} is outside its {size} bytes")]
    RangeOutOfBounds {
        /// The file.
        file: String,
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// The file's size.
        size: u64,
    },
    /// The file's object is not in the bucket.
    #[error("file {file}: its object {key} is missing from the bucket")]
    Missing {
        /// The file.
        file: String,
        /// The bucket key.
        key: String,
    },
    /// The object is not the size the file's recorded size encrypts to.
    #[error("file {file}: its object {key} is {found} bytes, but {size} bytes encrypt to {expected} (truncated or extended)")]
    WrongSize {
        /// The file.
        file: String,
        /// The bucket key.
        key: String,
        /// The file's recorded size.
        size: u64,
        /// The object size that size encrypts to.
        expected: u64,
        /// The object's size.
        found: u64,
    },
    /// The object starts with another nonce than the recorded one: it was
    /// replaced or swapped with another file's.
    #[error("file {file}: its object {key} does not start with the recorded nonce (replaced or swapped)")]
    NonceMismatch {
        /// The file.
        file: String,
        /// The bucket key.
        key: String,
    },
    /// The object does not decrypt: tampered, truncated, or another key.
    #[error("file {file}: its object {key} rejected: {source}")]
    Corrupt {
        /// The file.
        file: String,
        /// The bucket key.
        key: String,
        /// Why.
        source: ChunkedError,
    },
    /// The local copy is not the size the library records (changed since
    /// import): not uploaded.
    #[error("file {file}: its local copy {path} is {found} bytes, the library records {expected}; not uploaded")]
    SourceChanged {
        /// The file.
        file: String,
        /// The local copy.
        path: PathBuf,
        /// The recorded size.
        expected: u64,
        /// The local copy's size.
        found: u64,
    },
}

/// A file row as read for a fetch (or a grant's manifest entry), every
/// field checked.
pub(crate) struct StoredFile {
    pub(crate) id: ObjectId,
    pub(crate) release: String,
    pub(crate) size: u64,
    pub(crate) nonce: BaseNonce,
}

/// A file row as read for an upload.
struct PendingFile {
    id: ObjectId,
    release: String,
    size: u64,
    source: Option<PathBuf>,
}

pub(crate) fn file_error(e: FileError) -> SyncError {
    SyncError::File(Box::new(e))
}

impl SyncService {
    fn require_files_table(&self) -> Result<(), SyncError> {
        match (self.schema.table("files"), self.schema.table("releases")) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(file_error(FileError::NoFilesTable)),
        }
    }

    /// The files of `release`, with whether each is in the bucket.
    pub async fn release_files(&self, release: &str) -> Result<Vec<ReleaseFile>, SyncError> {
        self.require_files_table()?;
        let release = release.to_owned();
        let rows = self
            .with_db(move |rec| {
                let (db, _, _) = rec.sync_parts();
                if !release_exists(db, &release)? {
                    return Err(file_error(FileError::UnknownRelease { release }));
                }
                let mut stmt = db.prepare(
                    "SELECT id, original_filename, file_size, encryption_nonce IS NOT NULL, source_path
                     FROM files WHERE release_id = ?1 ORDER BY original_filename, id",
                )?;
                let rows = stmt
                    .query_map([&release], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, Option<String>>(4)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, size, uploaded, source)| {
                let state = match (uploaded, source) {
                    (true, _) => UploadState::Uploaded,
                    (false, Some(path)) if Path::new(&path).is_file() => UploadState::Waiting,
                    (false, _) => UploadState::Elsewhere,
                };
                ReleaseFile {
                    id,
                    name,
                    size: size.max(0) as u64,
                    state,
                }
            })
            .collect())
    }

    /// Uploads every file not in the bucket yet whose bytes this device
    /// has (`files.source_path`), of one release or of all, and records
    /// each one's nonce and scheme (and, for a release's first file, the
    /// release's key epoch) in batches the next push publishes. Files
    /// already uploaded are left alone, so running it again after a crash
    /// finishes the rest.
    pub async fn upload_release_files(
        &self,
        release: Option<&str>,
    ) -> Result<UploadReport, SyncError> {
        self.require_files_table()?;
        // No pull may merge another device's nonce for a file while this
        // one replaces the file's object.
        let _one_at_a_time = self.flight.lock().await;
        let release = release.map(str::to_owned);
        let (pending, already) = self
            .with_db(move |rec| {
                let (db, _, _) = rec.sync_parts();
                if let Some(release) = &release {
                    if !release_exists(db, release)? {
                        return Err(file_error(FileError::UnknownRelease {
                            release: release.clone(),
                        }));
                    }
                }
                let mut stmt = db.prepare(
                    "SELECT id, release_id, file_size, source_path, encryption_nonce IS NOT NULL FROM files
                     WHERE ?1 IS NULL OR release_id = ?1 ORDER BY release_id, id",
                )?;
                let rows = stmt
                    .query_map([&release], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, bool>(4)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let already = rows.iter().filter(|r| r.4).count();
                let mut pending = Vec::new();
                for (id, release, size, source, _) in rows.into_iter().filter(|r| !r.4) {
                    let Ok(object) = ObjectId::parse(&id) else {
                        return Err(file_error(FileError::BadFileId { file: id }));
                    };
                    let size = checked_size(&id, size)?;
                    pending.push(PendingFile {
                        id: object,
                        release,
                        size,
                        source: source.map(PathBuf::from),
                    });
                }
                Ok((pending, already))
            })
            .await?;
        let mut report = UploadReport {
            already,
            ..UploadReport::default()
        };
        for file in pending {
            let Some(source) = file.source.clone().filter(|p| p.is_file()) else {
                report.elsewhere.push(file.id.as_str().to_owned());
                continue;
            };
            self.check_cancelled()?;
            let (epoch, key) = self.release_key(&file.release, true).await?;
            let nonce = self.upload_one(&file, &source, key).await?;
            self.record_upload(&file, nonce).await?;
            tracing::info!(file = file.id.as_str(), release = %file.release, epoch = epoch.0, bytes = file.size, "uploaded release file");
            report.uploaded.push(file.id.as_str().to_owned());
            report.bytes += file.size;
        }
        Ok(report)
    }

    /// Encrypts `source` straight into the file's object (the local store
    /// writes it into the object's temp file in one pass; others spool it
    /// next to the library first). Returns the nonce it was encrypted
    /// under. A source whose size is not the recorded one stores nothing.
    async fn upload_one(
        &self,
        file: &PendingFile,
        source: &Path,
        key: ReleaseKey,
    ) -> Result<BaseNonce, SyncError> {
        let spool = self
            .path
            .as_deref()
            .and_then(Path::parent)
            .map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nonce = BaseNonce::random();
        // Why the source side failed, if it did: the store only sees an
        // I/O error and reports it as its own.
        let blame: Arc<Mutex<Option<SyncError>>> = Arc::default();
        let write: WriteObject = {
            let (source, expected) = (source.to_owned(), file.size);
            let (id, blame) = (file.id.as_str().to_owned(), Arc::clone(&blame));
            Box::new(move |out| {
                let failed = |e: SyncError| {
                    if let Ok(mut slot) = blame.lock() {
                        *slot = Some(e);
                    }
                    std::io::Error::other("the source file failed")
                };
                encrypt_source(&key, &nonce, &source, expected, &id, out).map_err(|e| match e {
                    Ok(sink) => sink,
                    Err(e) => failed(e),
                })
            })
        };
        let stored = self
            .store
            .put_writer(&layout::storage_key(&file.id), &spool, write)
            .await;
        if let Some(e) = blame.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(e);
        }
        stored?;
        Ok(nonce)
    }

    /// Records an uploaded file's nonce and scheme (one batch).
    async fn record_upload(&self, file: &PendingFile, nonce: BaseNonce) -> Result<(), SyncError> {
        let id = file.id.as_str().to_owned();
        self.with_db(move |rec| {
            let mut tx = rec.transaction()?;
            tx.update(
                "files",
                &id,
                &[
                    ("encryption_nonce", Value::Blob(nonce.as_bytes().to_vec())),
                    (
                        "encryption_scheme",
                        Value::Text(SCHEME_CHUNKED_V1.to_owned()),
                    ),
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The key of `release`, derived from the library key of its recorded
    /// epoch. A release without one gets the newest epoch held (recorded
    /// in a batch) when `assign` is set, and is refused otherwise.
    pub(crate) async fn release_key(
        &self,
        release: &str,
        assign: bool,
    ) -> Result<(KeyEpoch, ReleaseKey), SyncError> {
        let newest = self.key_epoch();
        let id = release.to_owned();
        let epoch = self
            .with_db(move |rec| {
                let recorded: Option<Option<i64>> = rec
                    .sync_parts()
                    .0
                    .query_row("SELECT key_epoch FROM releases WHERE id = ?1", [&id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                match recorded {
                    None => Err(file_error(FileError::UnknownRelease { release: id })),
                    Some(Some(epoch)) => u32::try_from(epoch)
                        .map(KeyEpoch)
                        .map_err(|_| file_error(FileError::BadEpoch { release: id, epoch })),
                    Some(None) if assign => {
                        let mut tx = rec.transaction()?;
                        tx.update(
                            "releases",
                            &id,
                            &[("key_epoch", Value::Integer(i64::from(newest.0)))],
                        )?;
                        tx.commit()?;
                        Ok(newest)
                    }
                    Some(None) => Err(file_error(FileError::NoEpoch { release: id })),
                }
            })
            .await?;
        let ring = self.key_ring();
        let library_key = ring.get(epoch).ok_or_else(|| {
            file_error(FileError::NoKeyForEpoch {
                release: release.to_owned(),
                epoch: epoch.0,
            })
        })?;
        Ok((epoch, derive_release_key(library_key, release)))
    }

    /// Fetches and decrypts file `file` into `out` (created or replaced):
    /// the whole file, or plaintext bytes `range` (end excluded), fetching
    /// only the chunks the range covers. Returns the bytes written. On any
    /// error `out` is left as it was.
    pub async fn fetch_file(
        &self,
        file: &str,
        out: &Path,
        range: Option<Range<u64>>,
    ) -> Result<u64, SyncError> {
        self.require_files_table()?;
        let stored = self.stored_file(file).await?;
        let whole = range.is_none();
        let range = range.unwrap_or(0..stored.size);
        if range.start > range.end || range.end > stored.size {
            return Err(file_error(FileError::RangeOutOfBounds {
                file: file.to_owned(),
                start: range.start,
                end: range.end,
                size: stored.size,
            }));
        }
        let (_, key) = self.release_key(&stored.release, false).await?;
        if whole {
            check_object(&*self.store, &stored).await?;
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let temp = tempfile::Builder::new()
            .prefix(".bae-fetch-")
            .tempfile_in(dir)
            .map_err(|e| SyncError::io(dir, e))?;
        fetch_into(
            &*self.store,
            &stored,
            &key,
            range.clone(),
            temp.as_file(),
            temp.path(),
        )
        .await?;
        temp.persist(out).map_err(|e| SyncError::io(out, e.error))?;
        Ok(range.end - range.start)
    }

    /// Reads and checks a file's row for a fetch.
    pub(crate) async fn stored_file(&self, file: &str) -> Result<StoredFile, SyncError> {
        let file = file.to_owned();
        self.with_db(move |rec| {
            type Row = (String, i64, Option<Vec<u8>>, Option<String>);
            let row: Option<Row> = rec
                .sync_parts()
                .0
                .query_row(
                    "SELECT release_id, file_size, encryption_nonce, encryption_scheme FROM files WHERE id = ?1",
                    [&file],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some((release, size, nonce, scheme)) = row else {
                return Err(file_error(FileError::UnknownFile { file }));
            };
            let Some(nonce) = nonce else {
                return Err(file_error(FileError::NotUploaded { file }));
            };
            if scheme.as_deref() != Some(SCHEME_CHUNKED_V1) {
                return Err(file_error(FileError::UnsupportedScheme {
                    file,
                    scheme: scheme.unwrap_or_else(|| "NULL".to_owned()),
                }));
            }
            let nonce = <[u8; NONCE_LEN]>::try_from(nonce.as_slice())
                .map(BaseNonce::from_bytes)
                .map_err(|_| {
                    file_error(FileError::BadNonce {
                        file: file.clone(),
                        len: nonce.len(),
                    })
                })?;
            let size = checked_size(&file, size)?;
            let id = ObjectId::parse(&file)
                .map_err(|_| file_error(FileError::BadFileId { file: file.clone() }))?;
            Ok(StoredFile {
                id,
                release,
                size,
                nonce,
            })
        })
        .await
    }
}

/// Fetches plaintext `range` of `stored` (every chunk authenticated) into
/// `file` (at `path`, for errors), then flushes and fsyncs it. Windows of
/// [`CHUNKS_PER_REQUEST`] chunks end on chunk boundaries, so no chunk is
/// fetched twice and memory stays bounded.
pub(crate) async fn fetch_into(
    store: &dyn ObjectStore,
    stored: &StoredFile,
    key: &ReleaseKey,
    range: Range<u64>,
    file: &std::fs::File,
    path: &Path,
) -> Result<(), SyncError> {
    let object = layout::storage_key(&stored.id);
    let mut writer = BufWriter::with_capacity(256 << 10, file);
    let chunk = CHUNK_SIZE as u64;
    let mut at = range.start;
    while at < range.end {
        let end = range.end.min((at / chunk + CHUNKS_PER_REQUEST) * chunk);
        let plain = fetch_range(store, stored, key, &object, at..end).await?;
        writer
            .write_all(&plain)
            .map_err(|e| SyncError::io(path, e))?;
        at = end;
    }
    writer.flush().map_err(|e| SyncError::io(path, e))?;
    drop(writer);
    file.sync_all().map_err(|e| SyncError::io(path, e))
}

/// One ranged GET of the chunks under plaintext `range`, decrypted.
async fn fetch_range(
    store: &dyn ObjectStore,
    stored: &StoredFile,
    key: &ReleaseKey,
    object: &str,
    range: Range<u64>,
) -> Result<Vec<u8>, SyncError> {
    let corrupt = |source| {
        file_error(FileError::Corrupt {
            file: stored.id.as_str().to_owned(),
            key: object.to_owned(),
            source,
        })
    };
    let plan = RangePlan::new(stored.size, range.clone()).map_err(corrupt)?;
    let fetched = store
        .get_range(object, plan.ciphertext_range())
        .await
        .map_err(|e| missing_or(stored, object, e))?;
    chunked::decrypt_range_bytes(key, &stored.nonce, stored.size, range, &fetched).map_err(corrupt)
}

/// Before a whole-file fetch: the object has the size the recorded size
/// encrypts to and starts with the recorded nonce (two small requests that
/// tell a truncated, extended or swapped object apart from a tampered one
/// before anything is written).
pub(crate) async fn check_object(
    store: &dyn ObjectStore,
    stored: &StoredFile,
) -> Result<(), SyncError> {
    let object = layout::storage_key(&stored.id);
    let found = store
        .head(&object)
        .await
        .map_err(|e| missing_or(stored, &object, e))?
        .size;
    let expected = chunked::ciphertext_len(stored.size);
    if found != expected {
        return Err(file_error(FileError::WrongSize {
            file: stored.id.as_str().to_owned(),
            key: object,
            size: stored.size,
            expected,
            found,
        }));
    }
    let head = store
        .get_range(&object, 0..NONCE_LEN as u64)
        .await
        .map_err(|e| missing_or(stored, &object, e))?;
    if head.as_slice() != stored.nonce.as_bytes() {
        return Err(file_error(FileError::NonceMismatch {
            file: stored.id.as_str().to_owned(),
            key: object,
        }));
    }
    Ok(())
}

fn missing_or(stored: &StoredFile, object: &str, e: StoreError) -> SyncError {
    if e.is_not_found() {
        file_error(FileError::Missing {
            file: stored.id.as_str().to_owned(),
            key: object.to_owned(),
        })
    } else {
        e.into()
    }
}

fn release_exists(db: &rusqlite::Connection, release: &str) -> Result<bool, SyncError> {
    Ok(db
        .query_row(
            "SELECT 1 FROM releases WHERE id = ?1",
            [release],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Encrypts the file at `source` (which must be `expected` bytes, before
/// and after) into `out`. `Err(Ok(e))` is `out` failing, `Err(Err(e))` the
/// source.
fn encrypt_source(
    key: &ReleaseKey,
    nonce: &BaseNonce,
    source: &Path,
    expected: u64,
    id: &str,
    out: &mut dyn Write,
) -> Result<(), Result<std::io::Error, SyncError>> {
    let changed = |found| {
        Err(file_error(FileError::SourceChanged {
            file: id.to_owned(),
            path: source.to_owned(),
            expected,
            found,
        }))
    };
    let input = std::fs::File::open(source).map_err(|e| Err(SyncError::io(source, e)))?;
    let found = input
        .metadata()
        .map_err(|e| Err(SyncError::io(source, e)))?
        .len();
    if found != expected {
        return Err(changed(found));
    }
    let mut reader = Blame {
        inner: BufReader::with_capacity(1 << 20, input),
        failed: false,
    };
    let summary = chunked::encrypt_stream_with_nonce(key, nonce, &mut reader, out);
    match summary {
        // The file may have changed while it was read.
        Ok(s) if s.plaintext_len != expected => Err(changed(s.plaintext_len)),
        Ok(_) => Ok(()),
        Err(ChunkedError::Io(e)) if reader.failed => Err(Err(SyncError::io(source, e))),
        Err(ChunkedError::Io(e)) => Err(Ok(e)),
        Err(other) => Err(Err(SyncError::io(
            source,
            std::io::Error::other(other.to_string()),
        ))),
    }
}

/// Remembers whether reading failed, since a stream encryption returns
/// the error of either side alike.
struct Blame<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Blame<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

/// A recorded file size, checked: not negative, within the format's limit.
pub(crate) fn checked_size(file: &str, size: i64) -> Result<u64, SyncError> {
    u64::try_from(size)
        .ok()
        .filter(|s| *s <= chunked::MAX_PLAINTEXT_LEN)
        .ok_or_else(|| {
            file_error(FileError::BadSize {
                file: file.to_owned(),
                size,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_live_next_to_the_library_file() {
        assert_eq!(
            files_dir_for(Path::new("/data/music/library.db")),
            Path::new("/data/music/library.db.files")
        );
    }

    #[test]
    fn recorded_sizes_are_checked() {
        assert_eq!(checked_size("f", 0).unwrap(), 0);
        assert!(checked_size("f", -1).is_err());
        assert!(checked_size("f", i64::MAX).is_err());
    }
}
