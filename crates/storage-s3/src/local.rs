//! The embedded default: a local directory is the bucket.
//!
//! A key `a/b/c` is the file `root/a/b/c`. Writes go to a temp file in the
//! target directory, are fsynced, renamed over the real name, and the
//! directory is fsynced, so a crash leaves the old object or the new one,
//! never half of one under a real name. Temp files start with
//! [`RESERVED_PREFIX`], which no key may use, so listings never show them;
//! a crash can leave one behind (harmless, just space). `put_file`,
//! `put_writer` and `get_to_file` copy through a 1 MiB buffer on a blocking
//! thread, so large objects never sit in memory.

use std::fs::{self, File};
use std::io::{self, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rand::Rng;

use crate::error::StoreError;
use crate::key::{validate_key, validate_prefix, RESERVED_PREFIX};
use crate::store::{clamp_range, ObjectMeta, ObjectStore, WriteObject};

/// A directory used as a bucket.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// Opens the existing directory `root` as a store. A missing directory
    /// is [`StoreError::MissingDirectory`], never created here: a bucket
    /// that vanished (unmounted, moved, deleted) must be an error, not a
    /// fresh empty bucket that later pushes fill behind everyone's back.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref();
        let shown = root.display().to_string();
        let root = root.canonicalize().map_err(|e| match e.kind() {
            ErrorKind::NotFound => StoreError::MissingDirectory {
                path: shown.clone(),
            },
            _ => io_error(&shown, e),
        })?;
        if !root.is_dir() {
            return Err(StoreError::LocalFile {
                path: shown,
                detail: "not a directory".to_owned(),
            });
        }
        Ok(Self { root })
    }

    /// Creates the directory `root` (and its parents) if missing, then
    /// opens it: only setting up a new library (`init`) asks for this.
    pub fn create(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| io_error(&root.display().to_string(), e))?;
        Self::new(root)
    }

    /// The directory holding the objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let bytes = bytes.to_vec();
        let key = key.to_owned();
        blocking(move || {
            write_atomically(&path, &key, |tmp| {
                tmp.write_all(&bytes).map_err(|e| put_error(&key, e))
            })
        })
        .await
    }

    async fn put_file(&self, key: &str, source: &Path) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        let source = source.to_owned();
        blocking(move || {
            // Opened before the temp file exists, so a missing source leaves
            // nothing behind.
            let mut file = File::open(&source).map_err(|e| StoreError::local_file(&source, &e))?;
            write_atomically(&path, &key, |tmp| {
                copy(&mut file, tmp).map(drop).map_err(|e| match e {
                    CopyError::Read(e) => StoreError::local_file(&source, &e),
                    CopyError::Write(e) => put_error(&key, e),
                })
            })
        })
        .await
    }

    async fn put_writer(
        &self,
        key: &str,
        _spool: &Path,
        write: WriteObject,
    ) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || {
            write_atomically(&path, &key, |tmp| {
                // Large writes: the caller may write in small pieces.
                let mut out = BufWriter::with_capacity(COPY_BUFFER, tmp);
                write(&mut out)
                    .and_then(|()| out.flush())
                    .map_err(|e| put_error(&key, e))
            })
        })
        .await
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || read_bounded(&path, &key, max_bytes)).await
    }

    async fn get_many(&self, keys: &[String], max_bytes: u64) -> Vec<Result<Vec<u8>, StoreError>> {
        let paths: Vec<_> = keys
            .iter()
            .map(|key| Ok((self.path_of(key)?, key.clone())))
            .collect();
        let read = blocking(move || {
            Ok(paths
                .into_iter()
                .map(|path| path.and_then(|(path, key)| read_bounded(&path, &key, max_bytes)))
                .collect())
        })
        .await;
        match read {
            Ok(objects) => objects,
            // The blocking task itself failed: every read did.
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn get_to_file(&self, key: &str, dest: &Path, max_bytes: u64) -> Result<u64, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        let dest = dest.to_owned();
        blocking(move || {
            // The object is opened (and sized) first, so a missing or
            // oversized one creates no file.
            let (object, _) = open_bounded(&path, &key, max_bytes)?;
            let mut file = File::create(&dest).map_err(|e| StoreError::local_file(&dest, &e))?;
            // Not fsynced: a download can be repeated, and the caller decides
            // whether the copy must survive a crash.
            let copied = copy(&mut object.take(max_bytes.saturating_add(1)), &mut file).map_err(
                |e| match e {
                    CopyError::Read(e) => io_error(&key, e),
                    CopyError::Write(e) => StoreError::local_file(&dest, &e),
                },
            )?;
            if copied > max_bytes {
                return Err(StoreError::too_large(&key, max_bytes, None));
            }
            Ok(copied)
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || read_range(&path, &key, range)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.path_of(key)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io_error(key, e))?;
        if !meta.is_file() {
            return Err(StoreError::not_found(key));
        }
        Ok(ObjectMeta { size: meta.len() })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || list_files(&root, &prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if is_absent(&e) || e.kind() == ErrorKind::IsADirectory => Ok(()),
            Err(e) => Err(io_error(key, e)),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(format!("blocking task failed: {e}")))?
}

/// Temp file beside the target, filled by `fill`, fsync, rename, fsync the
/// directory. Failures of the store's own files are [`put_error`]s; `fill`
/// maps its own (it may also read a source that can fail).
fn write_atomically(
    path: &Path,
    key: &str,
    fill: impl FnOnce(&mut File) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "key has no parent"))
        .map_err(|e| put_error(key, e))?;
    fs::create_dir_all(dir).map_err(|e| put_error(key, e))?;
    let tmp = dir.join(format!(
        "{RESERVED_PREFIX}-{:016x}",
        rand::thread_rng().gen::<u64>()
    ));
    let mut file = File::create(&tmp).map_err(|e| put_error(key, e))?;
    let written = fill(&mut file).and_then(|()| {
        file.sync_all()
            .and_then(|()| fs::rename(&tmp, path))
            .map_err(|e| put_error(key, e))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir).map_err(|e| put_error(key, e))
}

/// Which side of a [`copy`] failed: the two are different files with
/// different errors (the object or the caller's file).
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` to the end into `writer` through a bounded buffer and
/// returns the byte count.
fn copy(reader: &mut impl Read, writer: &mut File) -> Result<u64, CopyError> {
    /// Remembers whether the reader failed, since `io::copy` returns the
    /// error of either side alike.
    struct Blame<'a, R> {
        inner: &'a mut R,
        failed: bool,
    }
    impl<R: Read> Read for Blame<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.inner.read(buf).inspect_err(|_| self.failed = true)
        }
    }
    let mut reader = Blame {
        inner: reader,
        failed: false,
    };
    // A larger buffer than io::copy's own 8 KiB: fewer syscalls for
    // multi-hundred-MB objects, still bounded.
    let mut writer = BufWriter::with_capacity(COPY_BUFFER, writer);
    match io::copy(&mut reader, &mut writer) {
        Ok(n) => writer.flush().map(|()| n).map_err(CopyError::Write),
        Err(e) if reader.failed => Err(CopyError::Read(e)),
        Err(e) => Err(CopyError::Write(e)),
    }
}

/// The buffer [`copy`] moves bytes through.
const COPY_BUFFER: usize = 1 << 20;

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for fsync on Windows; rename is durable
    // enough there once the file itself is synced.
    Ok(())
}

/// Opens the file of an object and returns it with its size; a directory
/// (the parent of other keys) is no object.
fn open_object(path: &Path, key: &str) -> Result<(File, u64), StoreError> {
    let file = File::open(path).map_err(|e| io_error(key, e))?;
    let meta = file.metadata().map_err(|e| io_error(key, e))?;
    if !meta.is_file() {
        return Err(StoreError::not_found(key));
    }
    Ok((file, meta.len()))
}

/// [`open_object`], refusing an object whose size is above `max_bytes`
/// before reading any of it (the fast path; the caller's read still stops
/// at `max_bytes + 1`, since the file may grow after the stat).
fn open_bounded(path: &Path, key: &str, max_bytes: u64) -> Result<(File, u64), StoreError> {
    let (file, size) = open_object(path, key)?;
    if size > max_bytes {
        return Err(StoreError::too_large(key, max_bytes, Some(size)));
    }
    Ok((file, size))
}

/// The whole object at `path`, if at most `max_bytes`.
fn read_bounded(path: &Path, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
    let (object, size) = open_bounded(path, key, max_bytes)?;
    // Sized by the stat, but the file may grow after it: `take` is what
    // bounds the read.
    let mut bytes = Vec::with_capacity(size as usize);
    let mut limited = object.take(max_bytes.saturating_add(1));
    limited
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(key, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(StoreError::too_large(key, max_bytes, None));
    }
    Ok(bytes)
}

fn read_range(path: &Path, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
    let (mut file, size) = open_object(path, key)?;
    let r = clamp_range(&range, size)?;
    let mut buf = vec![0; (r.end - r.start) as usize];
    file.seek(SeekFrom::Start(r.start))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| io_error(key, e))?;
    Ok(buf)
}

/// Walks the deepest directory the prefix names, keeping files whose key
/// starts with the prefix.
fn list_files(root: &Path, prefix: &str) -> Result<Vec<String>, StoreError> {
    let base = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut keys = Vec::new();
    let mut pending = vec![base.to_owned()];
    while let Some(dir_key) = pending.pop() {
        let entries = match fs::read_dir(root.join(&dir_key)) {
            Ok(entries) => entries,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(io_error(prefix, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(prefix, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not UTF-8: cannot be a key we wrote
            };
            if name.starts_with(RESERVED_PREFIX) {
                continue;
            }
            let key = if dir_key.is_empty() {
                name
            } else {
                format!("{dir_key}/{name}")
            };
            let kind = entry.file_type().map_err(|e| io_error(prefix, e))?;
            if kind.is_dir() && (key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")))
            {
                pending.push(key);
            } else if kind.is_file() && key.starts_with(prefix) && validate_key(&key).is_ok() {
                keys.push(key);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

fn put_error(key: &str, e: io::Error) -> StoreError {
    match e.kind() {
        // A path segment is an object, or the key is a "directory" of others.
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::AlreadyExists => {
            StoreError::InvalidKey {
                key: key.to_owned(),
                reason: "conflicts with an existing object or directory",
            }
        }
        _ => io_error(key, e),
    }
}

fn io_error(key: &str, e: io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            StoreError::not_found(key)
        }
        ErrorKind::PermissionDenied => StoreError::PermissionDenied {
            detail: format!("{key}: {e}"),
        },
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            StoreError::transient(format!("{key}: {e}"))
        }
        ErrorKind::UnexpectedEof => StoreError::Corrupt {
            key: key.to_owned(),
            detail: format!("object shorter than its size: {e}"),
        },
        _ => StoreError::backend(format!("{key}: {e}")),
    }
}
