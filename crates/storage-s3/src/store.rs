//! The object-store trait every backend implements.

use std::fmt::Debug;
use std::future::poll_fn;
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;
use std::task::Poll;

use async_trait::async_trait;

use crate::error::StoreError;

/// What [`ObjectStore::put_writer`] runs, on a blocking thread, to produce
/// an object: it writes the object's bytes to the writer it is given. An
/// error from it stores nothing.
pub type WriteObject = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// What a `head` request tells about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
}

/// A flat namespace of immutable-ish blobs addressed by `/`-separated keys.
///
/// Keys are relative to the store (an S3 store living under a prefix of a
/// shared bucket applies that prefix itself) and must pass
/// [`crate::key::validate_key`]; list prefixes must pass
/// [`crate::key::validate_prefix`]. Bytes are opaque.
///
/// Semantics every implementation keeps (checked by the conformance suite):
/// - `put` replaces the whole object atomically: a reader sees the old or the
///   new bytes, never a mix or a prefix.
/// - `get_range(key, start..end)` returns the bytes of `start..end` clamped to
///   the object: a range reaching past the end returns what exists (possibly
///   nothing); `start > end` is [`StoreError::InvalidRange`]; a missing object
///   is [`StoreError::NotFound`] whatever the range.
/// - `list(prefix)` is complete (no page limit) and sorted bytewise; `prefix`
///   is a plain string prefix, as in S3 (`"ops/a"` also matches `"ops/ab/1"`;
///   end it with `/` to list one "directory").
/// - `delete` of a missing key succeeds.
/// - `get(key, max_bytes)` and `get_to_file(key, path, max_bytes)` take
///   the most the caller accepts. An object larger than that is
///   [`StoreError::TooLarge`], and the store stops reading past it: `get`
///   never holds more than `max_bytes + 1` bytes of the object, and
///   `get_to_file` never writes more than that to the file. Every bucket
///   object may be hostile, so every whole-object read states its bound.
/// - `put_file` / `get_to_file` move the same bytes as `put` / `get`;
///   backends override them to stream, so an object of any size passes
///   through bounded memory. On a failed `get_to_file` the file's contents
///   are unspecified: download to a temp file.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Stores `bytes` under `key`, replacing any previous object.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// Reads a whole object of at most `max_bytes` bytes; a larger one is
    /// [`StoreError::TooLarge`], found without reading more than
    /// `max_bytes + 1` bytes of it.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError>;

    /// Reads several whole objects, each as [`ObjectStore::get`] with the
    /// same `max_bytes`: one result per key, in the order of `keys`, so one
    /// missing or oversized object fails only its own read. The default
    /// runs the `get`s concurrently (an S3 store overlaps their round
    /// trips); the local-directory store reads them all in one hop to a
    /// blocking thread, which costs more than reading a small file.
    async fn get_many(&self, keys: &[String], max_bytes: u64) -> Vec<Result<Vec<u8>, StoreError>> {
        let mut reads: Vec<_> = keys.iter().map(|key| self.get(key, max_bytes)).collect();
        let mut done: Vec<Option<Result<Vec<u8>, StoreError>>> =
            keys.iter().map(|_| None).collect();
        poll_fn(move |cx| {
            for (read, slot) in reads.iter_mut().zip(done.iter_mut()) {
                if slot.is_none() {
                    if let Poll::Ready(result) = read.as_mut().poll(cx) {
                        *slot = Some(result);
                    }
                }
            }
            if done.iter().all(Option::is_some) {
                Poll::Ready(done.drain(..).flatten().collect())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Stores the contents of the file at `path` under `key`, replacing
    /// any previous object. The default reads the file into memory and
    /// calls [`ObjectStore::put`]; the local-directory and S3 stores stream.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| StoreError::local_file(path, &e))?;
        self.put(key, &bytes).await
    }

    /// Stores what `write` writes under `key`, replacing any previous
    /// object; if `write` fails, nothing is stored. The default spools the
    /// bytes to a temp file in `spool` (removed after) and stores it with
    /// [`ObjectStore::put_file`], since an upload needs the whole object
    /// first; the local-directory store writes them straight into the
    /// object's own temp file: one pass over the bytes, one fsync.
    async fn put_writer(
        &self,
        key: &str,
        spool: &Path,
        write: WriteObject,
    ) -> Result<(), StoreError> {
        let dir = spool.to_owned();
        let temp = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let local = |e: io::Error| StoreError::local_file(&dir, &e);
            let temp = tempfile::Builder::new()
                .prefix(".bae-spool-")
                .tempfile_in(&dir)
                .map_err(local)?;
            let mut out = io::BufWriter::with_capacity(1 << 20, temp.as_file());
            write(&mut out).and_then(|()| out.flush()).map_err(local)?;
            drop(out);
            Ok(temp)
        })
        .await
        .map_err(|e| StoreError::backend(format!("blocking task failed: {e}")))??;
        self.put_file(key, temp.path()).await
    }

    /// Writes a whole object of at most `max_bytes` bytes to the file at
    /// `path` (created or truncated) and returns its size; a larger one is
    /// [`StoreError::TooLarge`], with at most `max_bytes + 1` bytes written.
    /// The default holds the object in memory (through
    /// [`ObjectStore::get`]); the local-directory and S3 stores stream.
    async fn get_to_file(&self, key: &str, path: &Path, max_bytes: u64) -> Result<u64, StoreError> {
        let bytes = self.get(key, max_bytes).await?;
        tokio::fs::write(path, &bytes)
            .await
            .map_err(|e| StoreError::local_file(path, &e))?;
        Ok(bytes.len() as u64)
    }

    /// Reads the bytes `range` of an object, clamped to its size.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError>;

    /// Size of an object; [`StoreError::NotFound`] when it is missing.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;

    /// Whether an object exists.
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes an object; succeeds when it is already gone.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Checks a range and clamps it to an object of `size` bytes.
pub(crate) fn clamp_range(range: &Range<u64>, size: u64) -> Result<Range<u64>, StoreError> {
    if range.start > range.end {
        return Err(StoreError::InvalidRange {
            start: range.start,
            end: range.end,
        });
    }
    let start = range.start.min(size);
    Ok(start..range.end.min(size))
}
