//! The background loop bae runs: a sync at start, on every timer tick, and
//! on demand (debounced), skipping and retrying with back-off while the
//! bucket is unreachable.
//!
//! Every outcome goes through [`SyncService::sync`], which records the last
//! error for `status`; the loop itself never stops on an error.

use crate::error::SyncError;
use crate::service::SyncService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest the loop waits after repeated unreachable-bucket failures,
/// as a multiple of its interval.
const MAX_BACKOFF_FACTOR: u32 = 32;

/// What the loop has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopState {
    /// Syncs that succeeded.
    pub syncs: u64,
    /// Syncs that failed (any error).
    pub failures: u64,
    /// Failures in a row because the bucket was unreachable.
    pub unreachable_streak: u32,
    /// The error of the last sync, if it failed.
    pub last_error: Option<String>,
}

/// Starts the loop.
pub struct SyncLoop;

/// The running loop: ask for a sync, watch its state, stop it.
#[derive(Debug)]
pub struct SyncHandle {
    requests: mpsc::Sender<()>,
    stop: oneshot::Sender<()>,
    state: watch::Receiver<LoopState>,
    task: JoinHandle<()>,
}

impl SyncLoop {
    /// Spawns the loop on the current tokio runtime: it syncs at once, then
    /// every `interval`, and `debounce` after a [`SyncHandle::request_sync`]
    /// (requests within that window coalesce into one sync).
    pub fn spawn(service: Arc<SyncService>, interval: Duration, debounce: Duration) -> SyncHandle {
        let (requests, rx) = mpsc::channel(1);
        let (stop, stop_rx) = oneshot::channel();
        let (state_tx, state) = watch::channel(LoopState::default());
        let task = tokio::spawn(run(service, interval, debounce, rx, stop_rx, state_tx));
        SyncHandle {
            requests,
            stop,
            state,
            task,
        }
    }
}

impl SyncHandle {
    /// Asks for a sync soon (after the debounce window); never blocks.
    pub fn request_sync(&self) {
        // A full channel means a request is already pending: coalesce.
        let _ = self.requests.try_send(());
    }

    /// The loop's state now.
    pub fn state(&self) -> LoopState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<LoopState> {
        self.state.clone()
    }

    /// Stops the loop, letting a sync in progress finish.
    pub async fn shutdown(self) -> Result<(), SyncError> {
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}

async fn run(
    service: Arc<SyncService>,
    interval: Duration,
    debounce: Duration,
    mut requests: mpsc::Receiver<()>,
    mut stop: oneshot::Receiver<()>,
    state: watch::Sender<LoopState>,
) {
    let mut next = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(()) = requests.recv() => {
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(debounce) => {}
                }
                while requests.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let outcome = service.sync().await;
        let mut wait = interval;
        state.send_modify(|s| match &outcome {
            Ok(_) => {
                s.syncs += 1;
                s.unreachable_streak = 0;
                s.last_error = None;
            }
            Err(e) => {
                s.failures += 1;
                s.last_error = Some(e.to_string());
                if unreachable(e) {
                    s.unreachable_streak = s.unreachable_streak.saturating_add(1);
                    wait = backoff(interval, s.unreachable_streak);
                    tracing::warn!(error = %e, retry_in = ?wait, "bucket unreachable; will retry");
                } else {
                    s.unreachable_streak = 0;
                    tracing::error!(error = %e, "sync failed");
                }
            }
        });
        next = Instant::now() + wait;
    }
}

/// Whether a sync failed only because the bucket could not be reached.
fn unreachable(e: &SyncError) -> bool {
    matches!(e, SyncError::Store(s) if s.may_pass_later())
}

/// The wait after `streak` unreachable failures in a row: the interval,
/// doubling each time, up to [`MAX_BACKOFF_FACTOR`] intervals.
fn backoff(interval: Duration, streak: u32) -> Duration {
    let factor = 1u32
        .checked_shl(streak.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(MAX_BACKOFF_FACTOR);
    interval.saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bae_crypto::LibraryKey;
    use bae_storage_s3::testing::{CountingStore, Fault, FaultyStore, OpKind, Trigger};
    use bae_storage_s3::{MemoryStore, ObjectStore, StoreError};

    fn service(dir: &tempfile::TempDir, store: Arc<dyn ObjectStore>) -> Arc<SyncService> {
        let rec = bae_oplog::fixture::open_library(&dir.path().join("lib.db")).unwrap();
        let member = crate::Member::founder_of_library(bae_crypto::IdentitySigningKey::generate());
        Arc::new(SyncService::new(rec, store, LibraryKey::generate(), member).unwrap())
    }

    async fn wait_for(
        handle: &SyncHandle,
        what: &str,
        done: impl Fn(&LoopState) -> bool,
    ) -> LoopState {
        let mut rx = handle.subscribe();
        let state = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| done(s)))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", handle.state()))
            .unwrap()
            .clone();
        state
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let i = Duration::from_secs(10);
        assert_eq!(backoff(i, 1), i);
        assert_eq!(backoff(i, 2), i * 2);
        assert_eq!(backoff(i, 4), i * 8);
        assert_eq!(backoff(i, 40), i * MAX_BACKOFF_FACTOR);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_within_the_debounce_window_coalesce_into_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
        let svc = service(&dir, counting.clone());
        let handle = SyncLoop::spawn(svc, Duration::from_secs(3600), Duration::from_millis(300));
        wait_for(&handle, "the start-up sync", |s| s.syncs == 1).await;
        let lists = counting.snapshot().list;
        for _ in 0..5 {
            handle.request_sync();
        }
        wait_for(&handle, "the requested sync", |s| s.syncs == 2).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(handle.state().syncs, 2, "five requests made one sync");
        // An idle sync is two LISTs (pull: `membership/`, `heads/`) and
        // nothing else.
        assert_eq!(counting.snapshot().list, lists + 2);
        handle.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timer_syncs_without_requests() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, Arc::new(MemoryStore::new()));
        let handle = SyncLoop::spawn(svc, Duration::from_millis(30), Duration::from_millis(5));
        wait_for(&handle, "three timer syncs", |s| s.syncs >= 3).await;
        handle.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_bucket_is_retried_with_backoff_and_shown_in_status() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
        let unreachable = StoreError::Transient {
            detail: "connection refused".into(),
        };
        faulty.inject(OpKind::List, Trigger::Always, Fault::Error(unreachable));
        let svc = service(&dir, faulty.clone());
        let handle = SyncLoop::spawn(
            Arc::clone(&svc),
            Duration::from_millis(20),
            Duration::from_millis(5),
        );
        let state = wait_for(&handle, "two failures", |s| s.unreachable_streak >= 2).await;
        assert!(state.last_error.unwrap().contains("connection refused"));
        let status = svc.status().await.unwrap();
        assert!(status.last_error.unwrap().contains("connection refused"));

        faulty.clear();
        handle.request_sync();
        let state = wait_for(&handle, "a sync after recovery", |s| s.syncs >= 1).await;
        assert_eq!(state.unreachable_streak, 0);
        assert_eq!(svc.status().await.unwrap().last_error, None);
        handle.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_stops_the_loop_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, Arc::new(MemoryStore::new()));
        let handle = SyncLoop::spawn(svc, Duration::from_secs(3600), Duration::from_secs(3600));
        wait_for(&handle, "the start-up sync", |s| s.syncs == 1).await;
        handle.request_sync();
        tokio::time::timeout(Duration::from_secs(5), handle.shutdown())
            .await
            .expect("shutdown within the debounce window")
            .unwrap();
    }
}
