//! Test support for the layers above: a store that counts requests and one
//! that injects faults. Both wrap any `Arc<dyn ObjectStore>`.
//!
//! Behind the cargo feature `testing`, off by default: a crate whose tests
//! use it enables it in its dev-dependencies,
//! `bae-storage-s3 = { workspace = true, features = ["testing"] }`.
//!
//! ```
//! # async fn demo() {
//! use std::sync::Arc;
//! use bae_storage_s3::testing::{CountingStore, FaultyStore, Fault, OpKind, Trigger};
//! use bae_storage_s3::{MemoryStore, ObjectStore, StoreError};
//!
//! let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
//! let faulty = FaultyStore::new(counting.clone());
//! faulty.inject(OpKind::Get, Trigger::Nth(1), Fault::Error(StoreError::Transient { detail: "503".into() }));
//! faulty.put("k", b"v").await.unwrap();
//! assert!(faulty.get("k", 100).await.unwrap_err().is_retryable());
//! assert_eq!(faulty.get("k", 100).await.unwrap(), b"v");
//! assert_eq!(counting.snapshot().get, 1); // the failed call never reached the store
//! # }
//! ```

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::{ObjectMeta, ObjectStore, WriteObject};

/// The kinds of request a store serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `put` and `put_file`.
    Put,
    /// `get` and `get_to_file`.
    Get,
    /// `get_range`.
    GetRange,
    /// `head` (and `exists`, which is a head).
    Head,
    /// `list`.
    List,
    /// `delete`.
    Delete,
}

/// Requests and bytes seen by a [`CountingStore`] since the last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// `put` and `put_file` calls.
    pub put: u64,
    /// `get` and `get_to_file` calls.
    pub get: u64,
    /// `get_range` calls.
    pub get_range: u64,
    /// `head` and `exists` calls.
    pub head: u64,
    /// `list` calls (one per call, however many pages the backend needed).
    pub list: u64,
    /// `delete` calls.
    pub delete: u64,
    /// Bytes sent to the store by successful puts (a file's size for
    /// `put_file`).
    pub bytes_in: u64,
    /// Bytes returned by successful gets and range gets (the object's size
    /// for `get_to_file`), plus, for each get or `get_to_file` refused as
    /// [`StoreError::TooLarge`], the most a store may read of the object
    /// before refusing it (`limit + 1`, the bound every store keeps): an
    /// upper bound of the bytes that came out of the store.
    pub bytes_out: u64,
}

impl RequestCounts {
    /// All requests, of every kind.
    pub fn total(&self) -> u64 {
        self.put + self.get + self.get_range + self.head + self.list + self.delete
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: [AtomicU64; 6],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Counts the requests that pass through it, by kind, and the bytes moved.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Counters,
}

impl CountingStore {
    /// Wraps `inner`, starting from zero.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counters: Counters::default(),
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let c = &self.counters;
        let calls = |kind: OpKind| c.calls[index(kind)].load(Ordering::SeqCst);
        RequestCounts {
            put: calls(OpKind::Put),
            get: calls(OpKind::Get),
            get_range: calls(OpKind::GetRange),
            head: calls(OpKind::Head),
            list: calls(OpKind::List),
            delete: calls(OpKind::Delete),
            bytes_in: c.bytes_in.load(Ordering::SeqCst),
            bytes_out: c.bytes_out.load(Ordering::SeqCst),
        }
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        let c = &self.counters;
        for counter in c.calls.iter().chain([&c.bytes_in, &c.bytes_out]) {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// The counts so far, then a reset.
    pub fn take(&self) -> RequestCounts {
        let counts = self.snapshot();
        self.reset();
        counts
    }

    fn count(&self, kind: OpKind) {
        self.counters.calls[index(kind)].fetch_add(1, Ordering::SeqCst);
    }

    fn count_out(&self, result: Result<Vec<u8>, StoreError>) -> Result<Vec<u8>, StoreError> {
        match &result {
            Ok(bytes) => self.add_out(bytes.len() as u64),
            Err(e) => self.count_refused(e),
        }
        result
    }

    /// Counts what a store may have read of an object it refused as too
    /// large.
    fn count_refused(&self, e: &StoreError) {
        if let StoreError::TooLarge { limit, .. } = e {
            self.add_out(limit.saturating_add(1));
        }
    }

    fn add_in(&self, n: u64) {
        self.counters.bytes_in.fetch_add(n, Ordering::SeqCst);
    }

    fn add_out(&self, n: u64) {
        self.counters.bytes_out.fetch_add(n, Ordering::SeqCst);
    }
}

/// Counts the bytes a [`WriteObject`] writes.
struct CountingWriter<'a> {
    inner: &'a mut dyn std::io::Write,
    written: Arc<AtomicU64>,
}

impl std::io::Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn index(kind: OpKind) -> usize {
    match kind {
        OpKind::Put => 0,
        OpKind::Get => 1,
        OpKind::GetRange => 2,
        OpKind::Head => 3,
        OpKind::List => 4,
        OpKind::Delete => 5,
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.count(OpKind::Put);
        self.inner.put(key, bytes).await?;
        self.add_in(bytes.len() as u64);
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        self.count(OpKind::Get);
        self.count_out(self.inner.get(key, max_bytes).await)
    }

    async fn get_many(&self, keys: &[String], max_bytes: u64) -> Vec<Result<Vec<u8>, StoreError>> {
        // One GET per key, as the store would count them, but the inner
        // store's batching kept.
        let reads = self.inner.get_many(keys, max_bytes).await;
        reads
            .into_iter()
            .map(|read| {
                self.count(OpKind::Get);
                self.count_out(read)
            })
            .collect()
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.count(OpKind::Put);
        // Sized before the upload: what the store read, even if the caller
        // removes the file right after. An unreadable file fails the upload
        // anyway, and failed puts add no bytes.
        let size = tokio::fs::metadata(path).await.map(|m| m.len());
        self.inner.put_file(key, path).await?;
        self.add_in(size.unwrap_or(0));
        Ok(())
    }

    async fn put_writer(
        &self,
        key: &str,
        spool: &Path,
        write: WriteObject,
    ) -> Result<(), StoreError> {
        self.count(OpKind::Put);
        let written = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&written);
        let write: WriteObject = Box::new(move |out| {
            write(&mut CountingWriter {
                inner: out,
                written: counted,
            })
        });
        self.inner.put_writer(key, spool, write).await?;
        self.add_in(written.load(Ordering::SeqCst));
        Ok(())
    }

    async fn get_to_file(&self, key: &str, path: &Path, max_bytes: u64) -> Result<u64, StoreError> {
        self.count(OpKind::Get);
        let size = self
            .inner
            .get_to_file(key, path, max_bytes)
            .await
            .inspect_err(|e| self.count_refused(e))?;
        self.add_out(size);
        Ok(size)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        self.count(OpKind::GetRange);
        self.count_out(self.inner.get_range(key, range).await)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.count(OpKind::Head);
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.count(OpKind::List);
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count(OpKind::Delete);
        self.inner.delete(key).await
    }
}

/// Which calls of a kind a fault hits (calls are counted from 1, per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Only the nth call.
    Nth(u64),
    /// The first n calls (then the store recovers).
    FirstN(u64),
    /// Every call.
    Always,
}

impl Trigger {
    fn hits(self, call: u64) -> bool {
        match self {
            Trigger::Nth(n) => call == n,
            Trigger::FirstN(n) => call <= n,
            Trigger::Always => true,
        }
    }
}

/// What happens to a call a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail with this error; the wrapped store is not called.
    Error(StoreError),
    /// Hang for this long, then fail with [`StoreError::Transient`] (a
    /// request timeout); the wrapped store is not called.
    Timeout(Duration),
    /// Call the wrapped store, then return at most this many bytes of the
    /// body (gets and range gets; other kinds are unaffected). For
    /// `get_to_file` the file is cut to this length and that length returned.
    Truncate(usize),
}

/// Injects faults into calls of chosen kinds; everything else passes through.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<(OpKind, Trigger, Fault)>>,
    calls: Mutex<HashMap<OpKind, u64>>,
}

impl FaultyStore {
    /// Wraps `inner` with no faults yet.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            rules: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a fault. When several rules hit one call, the first added wins.
    pub fn inject(&self, kind: OpKind, trigger: Trigger, fault: Fault) {
        lock(&self.rules).push((kind, trigger, fault));
    }

    /// Removes every fault and restarts call counting.
    pub fn clear(&self) {
        lock(&self.rules).clear();
        lock(&self.calls).clear();
    }

    /// Calls of `kind` seen so far, faulted or not.
    pub fn calls(&self, kind: OpKind) -> u64 {
        lock(&self.calls).get(&kind).copied().unwrap_or(0)
    }

    /// Counts the call and returns the fault that hits it, if any.
    fn next_fault(&self, kind: OpKind) -> Option<Fault> {
        let call = {
            let mut calls = lock(&self.calls);
            let n = calls.entry(kind).or_insert(0);
            *n += 1;
            *n
        };
        lock(&self.rules)
            .iter()
            .find(|(k, trigger, _)| *k == kind && trigger.hits(call))
            .map(|(_, _, fault)| fault.clone())
    }

    /// Applies a fault that stops the call; returns the truncation length of
    /// one that lets it through.
    async fn before(&self, kind: OpKind) -> Result<Option<usize>, StoreError> {
        match self.next_fault(kind) {
            None => Ok(None),
            Some(Fault::Error(e)) => Err(e),
            Some(Fault::Timeout(wait)) => {
                tokio::time::sleep(wait).await;
                Err(StoreError::Transient {
                    detail: format!("injected timeout after {wait:?}"),
                })
            }
            Some(Fault::Truncate(len)) => Ok(Some(len)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn truncate(body: Result<Vec<u8>, StoreError>, len: Option<usize>) -> Result<Vec<u8>, StoreError> {
    let mut body = body?;
    if let Some(len) = len {
        body.truncate(len);
    }
    Ok(body)
}

/// Cuts a downloaded file short, as a [`Fault::Truncate`] of `get_to_file`.
async fn truncate_file(path: &Path, len: u64) -> Result<(), StoreError> {
    let local = |e: std::io::Error| StoreError::local_file(path, &e);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(local)?;
    file.set_len(len).await.map_err(local)
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.before(OpKind::Put).await?;
        self.inner.put(key, bytes).await
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        let cut = self.before(OpKind::Get).await?;
        truncate(self.inner.get(key, max_bytes).await, cut)
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.before(OpKind::Put).await?;
        self.inner.put_file(key, path).await
    }

    async fn put_writer(
        &self,
        key: &str,
        spool: &Path,
        write: WriteObject,
    ) -> Result<(), StoreError> {
        self.before(OpKind::Put).await?;
        self.inner.put_writer(key, spool, write).await
    }

    async fn get_to_file(&self, key: &str, path: &Path, max_bytes: u64) -> Result<u64, StoreError> {
        let cut = self.before(OpKind::Get).await?;
        let size = self.inner.get_to_file(key, path, max_bytes).await?;
        match cut {
            Some(len) if (len as u64) < size => {
                truncate_file(path, len as u64).await?;
                Ok(len as u64)
            }
            _ => Ok(size),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let cut = self.before(OpKind::GetRange).await?;
        truncate(self.inner.get_range(key, range).await, cut)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.before(OpKind::Head).await?;
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.before(OpKind::List).await?;
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.before(OpKind::Delete).await?;
        self.inner.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::retry::RetryPolicy;
    use crate::MemoryStore;

    fn stack() -> (Arc<CountingStore>, FaultyStore) {
        let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
        let faulty = FaultyStore::new(counting.clone());
        (counting, faulty)
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn counting_store_counts_each_kind_and_bytes() {
        let (counting, store) = stack();
        store.put("a/1", b"hello").await.unwrap();
        store.put("a/2", b"").await.unwrap();
        assert_eq!(store.get("a/1", 5).await.unwrap(), b"hello");
        assert_eq!(store.get_range("a/1", 1..3).await.unwrap(), b"el");
        assert!(store.exists("a/1").await.unwrap());
        assert_eq!(store.list("a/").await.unwrap().len(), 2);
        store.delete("a/2").await.unwrap();
        let counts = counting.take();
        assert_eq!(
            counts,
            RequestCounts {
                put: 2,
                get: 1,
                get_range: 1,
                head: 1,
                list: 1,
                delete: 1,
                bytes_in: 5,
                bytes_out: 7,
            }
        );
        assert_eq!(counts.total(), 7);
        assert_eq!(counting.snapshot(), RequestCounts::default());
    }

    #[tokio::test]
    async fn counting_store_counts_file_transfers_as_puts_and_gets() {
        let (counting, store) = stack();
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("source"), dir.path().join("dest"));
        std::fs::write(&source, b"checkpoint bytes").unwrap();
        store.put_file("cp/1", &source).await.unwrap();
        assert_eq!(store.get_to_file("cp/1", &dest, 16).await.unwrap(), 16);
        assert_eq!(std::fs::read(&dest).unwrap(), b"checkpoint bytes");
        // Failures count as calls but move no bytes.
        let missing = dir.path().join("missing");
        assert!(store.put_file("cp/2", &missing).await.is_err());
        assert!(store.get_to_file("cp/2", &dest, 16).await.is_err());
        assert_eq!(
            counting.take(),
            RequestCounts {
                put: 2,
                get: 2,
                bytes_in: 16,
                bytes_out: 16,
                ..RequestCounts::default()
            }
        );
    }

    #[tokio::test]
    async fn a_refused_oversized_get_counts_the_most_a_store_may_have_read() {
        let (counting, store) = stack();
        store.put("big", &[7; 1000]).await.unwrap();
        counting.reset();
        assert!(matches!(
            store.get("big", 10).await,
            Err(StoreError::TooLarge { limit: 10, .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        assert!(matches!(
            store.get_to_file("big", &dest, 20).await,
            Err(StoreError::TooLarge { limit: 20, .. })
        ));
        let counts = counting.take();
        assert_eq!((counts.get, counts.bytes_out), (2, 11 + 21));
    }

    #[tokio::test]
    async fn file_transfers_take_put_and_get_faults() {
        let (counting, store) = stack();
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("source"), dir.path().join("dest"));
        std::fs::write(&source, b"0123456789").unwrap();
        let busy = StoreError::Transient {
            detail: "503".into(),
        };
        store.inject(OpKind::Put, Trigger::Nth(1), Fault::Error(busy.clone()));
        assert_eq!(store.put_file("k", &source).await.unwrap_err(), busy);
        store.put_file("k", &source).await.unwrap();
        store.inject(OpKind::Get, Trigger::Nth(1), Fault::Truncate(4));
        assert_eq!(store.get_to_file("k", &dest, 10).await.unwrap(), 4);
        assert_eq!(std::fs::read(&dest).unwrap(), b"0123");
        assert_eq!(store.get_to_file("k", &dest, 10).await.unwrap(), 10);
        assert_eq!(std::fs::read(&dest).unwrap(), b"0123456789");
        let counts = counting.snapshot();
        assert_eq!((counts.put, counts.get), (1, 2));
    }

    #[tokio::test]
    async fn nth_call_fails_with_the_chosen_error_and_the_rest_pass() {
        let (counting, store) = stack();
        let denied = StoreError::PermissionDenied {
            detail: "injected".into(),
        };
        store.inject(OpKind::Put, Trigger::Nth(2), Fault::Error(denied.clone()));
        store.put("k1", b"1").await.unwrap();
        assert_eq!(store.put("k2", b"2").await.unwrap_err(), denied);
        store.put("k3", b"3").await.unwrap();
        assert_eq!(store.calls(OpKind::Put), 3);
        assert_eq!(counting.snapshot().put, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_fault_sleeps_then_fails_transiently() {
        let (_, store) = stack();
        store.inject(
            OpKind::List,
            Trigger::Always,
            Fault::Timeout(Duration::from_secs(30)),
        );
        let started = tokio::time::Instant::now();
        let err = store.list("").await.unwrap_err();
        assert!(err.is_retryable());
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test]
    async fn truncate_fault_returns_a_short_body() {
        let (_, store) = stack();
        store.put("k", b"0123456789").await.unwrap();
        store.inject(OpKind::Get, Trigger::FirstN(1), Fault::Truncate(4));
        assert_eq!(store.get("k", 10).await.unwrap(), b"0123");
        assert_eq!(store.get("k", 10).await.unwrap(), b"0123456789");
    }

    #[tokio::test]
    async fn retry_policy_rides_out_transient_faults() {
        let (counting, store) = stack();
        store.put("k", b"v").await.unwrap();
        let busy = StoreError::Transient {
            detail: "503 SlowDown".into(),
        };
        store.inject(OpKind::Get, Trigger::FirstN(2), Fault::Error(busy));
        let got = fast_retry().run("get", || store.get("k", 1)).await.unwrap();
        assert_eq!(got, b"v");
        assert_eq!(store.calls(OpKind::Get), 3);
        assert_eq!(counting.snapshot().get, 1);
    }

    #[tokio::test]
    async fn retry_policy_gives_up_on_permanent_faults_at_once() {
        let (_, store) = stack();
        store.inject(
            OpKind::Head,
            Trigger::Always,
            Fault::Error(StoreError::PermissionDenied {
                detail: "403".into(),
            }),
        );
        let err = fast_retry()
            .run("head", || store.head("k"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::PermissionDenied { .. }));
        assert_eq!(store.calls(OpKind::Head), 1);
        // A missing object is permanent too.
        store.clear();
        let err = fast_retry()
            .run("head", || store.head("k"))
            .await
            .unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(store.calls(OpKind::Head), 1);
    }

    #[tokio::test]
    async fn retry_policy_stops_after_max_attempts_of_timeouts() {
        let (_, store) = stack();
        store.inject(
            OpKind::List,
            Trigger::Always,
            Fault::Timeout(Duration::from_millis(1)),
        );
        let err = fast_retry()
            .run("list", || store.list(""))
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(store.calls(OpKind::List), 4);
    }
}
