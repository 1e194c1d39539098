//! The embedded default: a local directory is the bucket.
//!
//! A key `a/b/c` is the file `root/a/b/c`. Writes go to a temp file in the
//! target directory, are fsynced, renamed over the real name, and the
//! directory is fsynced, so a crash leaves the old object or the new one,
//! never half of one under a real name. Temp files start with
//! [`RESERVED_PREFIX`], which no key may use, so listings never show them;
//! a crash can leave one behind (harmless, just space).

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rand::Rng;

use crate::error::StoreError;
use crate::key::{validate_key, validate_prefix, RESERVED_PREFIX};
use crate::store::{clamp_range, ObjectMeta, ObjectStore};

/// A directory used as a bucket.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// Opens the directory `root` as a store, creating it when missing.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| io_error(&root.display().to_string(), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| io_error(&root.display().to_string(), e))?;
        Ok(Self { root })
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
        blocking(move || write_atomically(&path, &bytes).map_err(|e| put_error(&key, e))).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path).await.map_err(|e| io_error(key, e))
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

/// Temp file beside the target, fsync, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "key has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        "{RESERVED_PREFIX}-{:016x}",
        rand::thread_rng().gen::<u64>()
    ));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

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

fn read_range(path: &Path, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
    let mut file = File::open(path).map_err(|e| io_error(key, e))?;
    let meta = file.metadata().map_err(|e| io_error(key, e))?;
    if !meta.is_file() {
        return Err(StoreError::not_found(key));
    }
    let r = clamp_range(&range, meta.len())?;
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
