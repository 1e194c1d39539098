//! Reads of a stream's next batch objects, started before pull needs them.
//!
//! Reading objects one at a time waits a round trip each (to S3; to a
//! blocking thread and back for a local directory), so a stream reads a
//! run of the objects after the one it checks in one
//! [`ObjectStore::get_many`]: one hop for many objects on a local
//! directory, the round trips overlapped on S3. A new run starts when half
//! the stream's share is used, so one is read while the other is checked.

use crate::error::SyncError;
use crate::service::MAX_BATCH_OBJECT_BYTES;
use bae_hlc::DeviceId;
use bae_storage_s3::{layout, ObjectStore, StoreError};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How many batch objects a pull reads ahead of the ones being checked,
/// over all its streams (each stream gets an equal share).
pub(crate) const READ_AHEAD: u64 = 32;

/// The most a batch object read ahead may be. Honest batches are a few KB
/// to a few hundred (a push slices at 2 MiB), but the bucket decides what
/// it serves: with the full [`MAX_BATCH_OBJECT_BYTES`] a read-ahead could
/// hold [`READ_AHEAD`] × 64 MiB. A larger object is read again, on its
/// turn, alone; the bytes held ahead stay under 32 MiB.
pub(crate) const READ_AHEAD_OBJECT_BYTES: u64 = 1 << 20;

/// One stream's objects read ahead: those read, by seq, then the runs of
/// seqs still being read. Together they never hold more than the stream's
/// share of [`READ_AHEAD`] objects of at most [`READ_AHEAD_OBJECT_BYTES`].
#[derive(Default)]
pub(crate) struct ReadAhead {
    read: VecDeque<(u64, Result<Vec<u8>, StoreError>)>,
    reading: VecDeque<(Range<u64>, ObjectReads)>,
}

/// A run of batch objects being read, one result per seq.
type ObjectReads = JoinHandle<Vec<Result<Vec<u8>, StoreError>>>;

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.clear();
    }
}

impl ReadAhead {
    /// The sealed object of `device`'s batch `seq`, the stream's next;
    /// reads of the batches after it, up to `last` and `share` objects
    /// ahead, are started.
    pub(crate) async fn next_object(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        device: DeviceId,
        seq: u64,
        last: u64,
        share: u64,
    ) -> Result<Vec<u8>, SyncError> {
        if self.first() != Some(seq) {
            // Nothing read ahead, or read for seqs the stream went back
            // past (a run read again).
            self.clear();
        }
        let end = seq.saturating_add(share.max(1)).min(last.saturating_add(1));
        let next = self.end().unwrap_or(seq);
        if next < end && next - seq <= share / 2 {
            let keys: Vec<String> = (next..end).map(|s| layout::ops_key(&device, s)).collect();
            let store = Arc::clone(store);
            let reads =
                tokio::spawn(async move { store.get_many(&keys, READ_AHEAD_OBJECT_BYTES).await });
            self.reading.push_back((next..end, reads));
        }
        if self.read.is_empty() {
            if let Some((seqs, reads)) = self.reading.pop_front() {
                self.read.extend(seqs.zip(reads.await?));
            }
        }
        let key = layout::ops_key(&device, seq);
        match self.read.pop_front() {
            // Too large to read ahead: read it alone now.
            Some((s, Err(StoreError::TooLarge { .. }))) if s == seq => {
                Ok(store.get(&key, MAX_BATCH_OBJECT_BYTES).await?)
            }
            Some((s, read)) if s == seq => Ok(read?),
            _ => {
                self.clear();
                Ok(store.get(&key, MAX_BATCH_OBJECT_BYTES).await?)
            }
        }
    }

    /// The first seq read or being read.
    fn first(&self) -> Option<u64> {
        match self.read.front() {
            Some((seq, _)) => Some(*seq),
            None => self.reading.front().map(|(seqs, _)| seqs.start),
        }
    }

    /// One past the last seq read or being read.
    fn end(&self) -> Option<u64> {
        match self.reading.back() {
            Some((seqs, _)) => Some(seqs.end),
            None => self.read.back().map(|(seq, _)| seq + 1),
        }
    }

    fn clear(&mut self) {
        for (_, reads) in &self.reading {
            reads.abort();
        }
        self.reading.clear();
        self.read.clear();
    }
}
