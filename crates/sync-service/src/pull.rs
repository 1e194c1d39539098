//! Pull: one LIST of `membership/` (fetching only entries not cached), one
//! LIST of `heads/`, then only what is newer than our cursors: fetch,
//! decrypt, verify the signature and the author's rights (`members.rs`),
//! verify the chain, merge, and advance cursors only after the merge
//! committed. A backlog goes in slices, each merged while the next is
//! fetched and checked (`read_ahead.rs` reads the objects ahead). An idle
//! pull is exactly two LIST requests.

use crate::bootstrap::Recovery;
use crate::error::{ChainBreak, InvalidObject, SyncError};
use crate::head::{Head, MAX_HEAD_OBJECT_BYTES};
use crate::images::want_images;
use crate::members::Refusal;
use crate::progress::Stage;
use crate::read_ahead::{ReadAhead, READ_AHEAD};
use crate::service::{batch_place, head_place, SyncService, MAX_BATCH_OBJECT_BYTES};
use bae_crypto::object::HEADER_LEN;
use bae_crypto::IdentityPublicKey;
use bae_hlc::DeviceId;
use bae_membership::{EnvelopeHeader, SignedKind};
use bae_oplog::{decode_batch, Batch, BatchHash, SyncSchema};
use bae_storage_s3::{layout, StoreError};
use rusqlite::params;
use std::collections::{BTreeMap, HashMap};
use tracing::Instrument;

/// A remote batch that did not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The device whose batch it is.
    pub device: DeviceId,
    /// The batch.
    pub seq: u64,
    /// Held (will be retried) or rejected (its device must repair it).
    pub kind: ProblemKind,
    /// Why, naming the object.
    pub reason: String,
}

/// Whether a problem batch waits or was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Kept for a later pull (a parent not yet arrived, clock drift).
    Held,
    /// Did not decrypt or verify; nothing from it was applied.
    Rejected,
}

impl ProblemKind {
    fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Held => "held",
            ProblemKind::Rejected => "rejected",
        }
    }
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct PullReport {
    /// Batches applied.
    pub applied: usize,
    /// Batches not applied, with reasons.
    pub problems: Vec<Problem>,
    /// Images fetched (those the pulled batches insert and this device lacked).
    pub images: usize,
    /// Images in the bucket that did not open, each naming its key: wanted
    /// and retried by later pulls; the device that wrote one re-uploads it
    /// with `push --repair`. The batches still merged.
    pub images_rejected: Vec<String>,
    /// Streams whose next batch is gone from the bucket and that no
    /// checkpoint restored: (device, the first missing seq). Each is also a
    /// rejected problem; later pulls retry the recovery.
    pub gaps: Vec<(DeviceId, u64)>,
    /// Whether a checkpoint that a recovery tries holds one of `gaps`
    /// (refused for another reason, or the recovery ran and a gap remains):
    /// a checkpoint written by this device now would hide it
    /// ([`SyncService::checkpoint`] refuses).
    pub gaps_held_by_a_checkpoint: bool,
    /// Streams listed above this library's cursor none of whose heads
    /// opened (each a rejected problem), so nothing of them was read:
    /// (device, the first seq this library lacks). Their next batch may be
    /// gone with no gap found; [`SyncService::checkpoint`] looks before it
    /// writes one (seed 50398).
    pub unread: Vec<(DeviceId, u64)>,
}

#[derive(Clone, Copy)]
struct Cursor {
    applied: u64,
    hash: Option<BatchHash>,
}

/// One device's batches still to fetch in this pull.
struct Stream {
    device: DeviceId,
    head: Head,
    /// The next seq to fetch.
    next: u64,
    /// The hash the next batch must name as its predecessor.
    prev: Option<BatchHash>,
    /// Stopped at a bad object (a problem was recorded).
    failed: bool,
    /// Read up to a removed member's cutoff, its head refused: `head` is
    /// not a head this device read, only where the stream ends.
    to_cutoff: bool,
    /// The last seq that counts, for a removed member's device: a batch
    /// past it that is gone is no gap (nothing there would apply).
    cutoff: Option<u64>,
    /// For a removed member's device whose removal pinned the hash of its
    /// last batch: the hashes of the chain from the cursor to the cutoff,
    /// read and found to end in that hash before any batch of it applies.
    pinned: Option<Pinned>,
    /// This slice's batches of the stream whose signatures are not checked
    /// yet; checked by [`SyncService::settle`] before the slice merges.
    unsigned: Option<UnsignedRun>,
    /// The next batch objects, read ahead of need.
    ahead: ReadAhead,
}

/// A stream's batches in the current slice read without checking their
/// signatures: every other check passed, and each names the hash of the
/// one before it, so the signature of the last, verified before any of
/// them is applied, authenticates them all (`docs/SECURITY.md`, "One
/// signature per pull window").
struct UnsignedRun {
    /// The run's first seq, and the hash it names as its predecessor
    /// (where the stream restarts if the last signature fails).
    first: u64,
    prev: Option<BatchHash>,
    /// The author every batch of the run claims.
    author: IdentityPublicKey,
    /// The run's last batch: its seq, key, sealed object header (the epoch
    /// it was sealed under) and opened envelope.
    last: u64,
    key: String,
    sealed_header: Vec<u8>,
    plain: Vec<u8>,
}

/// The hashes of a removed member's device's batches `first..` up to its
/// cutoff, as the chain ending in the hash its removal pinned has them.
struct Pinned {
    first: u64,
    hashes: Vec<BatchHash>,
}

impl Pinned {
    /// Whether `hash` may be the batch at `seq` (seqs outside the pinned
    /// range are not this check's).
    fn allows(&self, seq: u64, hash: BatchHash) -> bool {
        seq.checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.hashes.get(i))
            .is_none_or(|pinned| *pinned == hash)
    }
}

/// The most batches of a removed member's device read ahead of applying
/// any, to check them against the hash the removal pinned (32 bytes of
/// hash kept per batch: 32 MiB at most).
const MAX_PINNED_BATCHES: u64 = 1 << 20;

/// A batch fetched into a slice, with the stream it came from.
struct Fetched {
    stream: usize,
    seq: u64,
    hash: BatchHash,
    batch: Batch,
}

impl Stream {
    /// Moves past the batch just read, whose hash is `hash`: the head's
    /// batch must be the one the head names (a stream read to a cutoff has
    /// no head it read).
    fn step(&mut self, hash: BatchHash) -> Result<(), SyncError> {
        if self
            .pinned
            .as_ref()
            .is_some_and(|p| !p.allows(self.next, hash))
        {
            return Err(SyncError::Chain {
                device: self.device,
                seq: self.next,
                broken: ChainBreak::NotPinned,
            });
        }
        if self.next == self.head.seq && !self.to_cutoff && self.head.hash != Some(hash) {
            return Err(SyncError::Chain {
                device: self.device,
                seq: self.next,
                broken: ChainBreak::NotTheHeadsBatch,
            });
        }
        self.next += 1;
        self.prev = Some(hash);
        Ok(())
    }

    fn remaining(&self) -> u64 {
        if self.failed {
            0
        } else {
            self.head.seq.saturating_add(1).saturating_sub(self.next)
        }
    }
}

/// Where each device's cursor can move: batches applied in this pull, kept
/// until every earlier batch of the same device applied too.
struct Advance {
    /// Hashes of fetched batches, by device and seq, until applied.
    fetched: HashMap<(DeviceId, u64), BatchHash>,
    /// Per device: the contiguous applied seq and its hash, and applied
    /// batches beyond it (a held batch in between).
    devices: BTreeMap<DeviceId, (Cursor, BTreeMap<u64, BatchHash>)>,
}

impl Advance {
    fn new(cursors: &HashMap<DeviceId, Cursor>) -> Self {
        Advance {
            fetched: HashMap::new(),
            devices: cursors
                .iter()
                .map(|(d, c)| (*d, (*c, BTreeMap::new())))
                .collect(),
        }
    }

    /// Records applied batches; returns the devices whose cursor moved.
    fn applied(&mut self, applied: &[(DeviceId, u64)]) -> Vec<(DeviceId, Cursor)> {
        let mut moved = BTreeMap::new();
        for (device, seq) in applied {
            let Some(hash) = self.fetched.remove(&(*device, *seq)) else {
                continue;
            };
            let (cursor, ahead) = self.devices.entry(*device).or_insert((
                Cursor {
                    applied: 0,
                    hash: None,
                },
                BTreeMap::new(),
            ));
            ahead.insert(*seq, hash);
            while let Some(hash) = ahead.remove(&(cursor.applied + 1)) {
                cursor.applied += 1;
                cursor.hash = Some(hash);
                moved.insert(*device, *cursor);
            }
        }
        moved.into_iter().collect()
    }
}

impl SyncService {
    /// Pulls and merges what other devices pushed since the last pull. A
    /// device whose next batch was garbage-collected recovers from the
    /// newest checkpoint covering it (`bootstrap.rs`), then pulls again.
    ///
    /// A long backlog is fetched and merged in slices ([`crate::PullWindow`]);
    /// cursors are saved after each slice, so an interrupted pull resumes
    /// where it stopped. Batches held in one slice (a parent in a later
    /// slice) are retried with the next.
    pub async fn pull(&self) -> Result<PullReport, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        self.finish_local_replay().await?;
        let mut gaps = Vec::new();
        let mut report = self.pull_once(&mut gaps).await?;
        let mut held = false;
        if !gaps.is_empty() {
            match self.recover_from_checkpoint(&gaps).await? {
                Recovery::Recovered => {
                    gaps.clear();
                    report = self.pull_once(&mut gaps).await?;
                    // Not weighed again here: the next pull's recovery does.
                    held = !gaps.is_empty();
                }
                Recovery::NotRecovered { held: h } => held = h,
            }
        }
        report.gaps = gaps;
        report.gaps_held_by_a_checkpoint = held;
        // Own batches a re-take held wait for what this pull brought.
        report.applied += self.apply_held_own().await?;
        Ok(report)
    }

    /// One pull; batch objects found missing are added to `gaps`.
    async fn pull_once(&self, gaps: &mut Vec<(DeviceId, u64)>) -> Result<PullReport, SyncError> {
        let span = tracing::info_span!("pull", device = %self.device);
        async move {
            // Membership first: every head and batch below is checked
            // against the chain as the bucket holds it now.
            let chain = self.refresh_members().await?;
            let all_heads = self.list_all_heads().await?;
            let heads = newest_heads(&all_heads);
            let cursors = self.with_db(|rec| load_cursors(rec.sync_parts().0)).await?;
            let mut problems = Vec::new();
            let mut streams = Vec::new();
            let mut unread = Vec::new();
            for (&device, seqs) in &all_heads {
                let cursor = cursors.get(&device).copied().unwrap_or(Cursor {
                    applied: 0,
                    hash: None,
                });
                // The newest head first; if it does not open (garbage the
                // bucket host put above the real one), an older one, so one
                // bad object never hides a whole stream.
                let mut opened = None;
                for &head_seq in seqs.iter().take(MAX_HEADS_TRIED) {
                    if head_seq <= cursor.applied {
                        break;
                    }
                    match self.open_stream(device, head_seq, cursor).await {
                        Ok(stream) => {
                            opened = Some(stream);
                            break;
                        }
                        Err(e) => problems.push(rejected(device, head_seq, e, gaps)?),
                    }
                }
                // After the heads: one that opened bound the device to its
                // author.
                let cutoff = self.cutoff_of(&chain, device);
                // A removed member's device: nothing past its cutoff counts,
                // so a batch there that GC removed is no gap to recover (the
                // first one past it that is there is refused by name); and
                // when every head was refused (their next push after the
                // removal replaced it) the batches up to it are read all the
                // same: the remover had applied them, and a device that had
                // not would otherwise never get them, its later writes to
                // their rows held for good (seed 4 with removals). Each
                // batch is still checked as any other (signature, role at
                // its HLC, cutoff, the chain of hashes from the cursor).
                let stream = match (opened, cutoff) {
                    // A head at or below the cutoff says nothing the cutoff
                    // (and its pin) does not, and the removed member can
                    // sign one at any seq there naming a hash no batch has:
                    // the stream would break at that seq on every pull, for
                    // good. Read to the cutoff as without a head.
                    (Some(stream), Some(c)) if stream.head.seq <= c => to_cutoff(device, c, cursor),
                    (Some(mut stream), cutoff) => {
                        stream.cutoff = cutoff;
                        Some(stream)
                    }
                    (None, Some(c)) => to_cutoff(device, c, cursor),
                    (None, None) => {
                        if seqs.first().is_some_and(|&newest| newest > cursor.applied) {
                            unread.push((device, cursor.applied.saturating_add(1)));
                        }
                        None
                    }
                };
                let Some(mut stream) = stream else {
                    continue;
                };
                // Its removal pinned the hash of the last batch that counts:
                // the removed member could have written others at those
                // seqs since, so none applies before the chain up to the
                // cutoff is found to end in it.
                if let Some((c, pin)) = self.cutoff_pin_of(&chain, device) {
                    if cursor.applied < c {
                        match self.read_pinned(device, cursor, c, pin).await {
                            Ok(pinned) => stream.pinned = Some(pinned),
                            Err(e) => {
                                problems.push(rejected(device, cursor.applied + 1, e, gaps)?);
                                // The pinned chain is not in the bucket (what
                                // is there is not it, or is gone): a gap a
                                // checkpoint that includes the cutoff fills.
                                gaps.push((device, c));
                                continue;
                            }
                        }
                    }
                }
                streams.push(stream);
            }
            problems.extend(rollbacks(&heads, &cursors, &streams));
            let mut report = PullReport {
                unread,
                ..PullReport::default()
            };
            if streams.is_empty() && problems.is_empty() {
                // Nothing to read and nothing wrong: a stored problem that
                // names a seq below its device's newest listed head is
                // stale (a rollback a stale LIST showed, its head now
                // listed above the one it named), and status must not keep
                // reporting it (seed 51796). Nothing is read here, so every
                // listed head is at most what this library applied: no
                // gone or held batch lies below it. A rollback still shown
                // (its head the newest listed, a witness's head saying
                // more was applied) names that head and stays.
                self.with_db(move |rec| {
                    let conn = rec.sync_parts().0;
                    let mut stale = conn.prepare_cached(
                        "DELETE FROM bae_sync_problems WHERE device_id = ?1 AND seq < ?2",
                    )?;
                    for (device, head) in &heads {
                        stale.execute(params![
                            device.to_string(),
                            i64::try_from(*head).unwrap_or(i64::MAX)
                        ])?;
                    }
                    Ok(())
                })
                .await?;
                report.images = self.retry_wanted_images().await?;
                return Ok(report);
            }
            let total: u64 = streams.iter().map(Stream::remaining).sum();
            let mut advance = Advance::new(&cursors);
            let mut carried: Vec<Batch> = Vec::new();
            let mut fetched_count = 0u64;
            self.report(Stage::Pull, 0, total);
            let mut on_batch = || {
                fetched_count += 1;
                self.report(Stage::Pull, fetched_count, total);
            };
            let mut slice = self
                .fill_slice(
                    &mut streams,
                    &mut advance,
                    &mut problems,
                    gaps,
                    &mut on_batch,
                )
                .await?;
            loop {
                let last = streams.iter().all(|s| s.remaining() == 0);
                let fetch = self.fetch_missing_images(&slice).await?;
                report.images += fetch.written;
                report
                    .images_rejected
                    .extend(fetch.rejected.iter().cloned());
                let mut batches = std::mem::take(&mut carried);
                batches.extend(slice);
                tracing::info!(batches = batches.len(), images = fetch.written, "merging");
                let merge = self.with_db(move |rec| Ok(bae_merge::apply_pull(rec, batches)?));
                // The next slice is read and checked while this one merges
                // (on a blocking thread): a pull holds at most two slices.
                // It merges only after this one's cursors are saved. Once
                // cancelled, no further slice is started.
                let stop = last || self.check_cancelled().is_err();
                let (merged, next) = if stop {
                    (merge.await?, None)
                } else {
                    let fill = self.fill_slice(
                        &mut streams,
                        &mut advance,
                        &mut problems,
                        gaps,
                        &mut on_batch,
                    );
                    let (merged, next) = tokio::join!(merge, fill);
                    (merged?, Some(next))
                };
                let applied: Vec<(DeviceId, u64)> =
                    merged.applied.iter().map(|(d, s)| (*d, s.0)).collect();
                report.applied += applied.len();
                let moved = advance.applied(&applied);
                if last {
                    for held in &merged.held {
                        problems.push(Problem {
                            device: held.batch.device,
                            seq: held.batch.seq.0,
                            kind: ProblemKind::Held,
                            reason: held.reason.to_string(),
                        });
                    }
                } else {
                    carried = merged.held.into_iter().map(|h| h.batch).collect();
                }
                let finished: Vec<Head> = if last {
                    streams
                        .iter()
                        .filter(|s| !s.failed && !s.to_cutoff)
                        .map(|s| s.head.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                let end = last.then(|| problems.clone());
                let missing = fetch.missing;
                self.with_db(move |rec| {
                    save_progress(
                        rec.sync_parts().0,
                        &moved,
                        &finished,
                        end.as_deref(),
                        &missing,
                    )
                })
                .await?;
                // A safe point: this slice is merged and its cursors saved;
                // a failure reading the next one keeps it.
                let Some(next) = next else {
                    if !last {
                        self.check_cancelled()?;
                    }
                    break;
                };
                slice = next?;
            }
            report.problems = problems;
            self.save_bindings().await?;
            report.images += self.retry_wanted_images().await?;
            tracing::info!(
                applied = report.applied,
                problems = report.problems.len(),
                "pull done"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Fetches the next slice: round-robin over the streams, one batch at a
    /// time, until the window is full or every stream is done. A bad
    /// object stops its stream with a problem; an unreachable bucket fails
    /// the pull (slices merged before it are kept).
    ///
    /// Each stream's batches are read without checking their signatures,
    /// linked by their hashes; the signature of each stream's last batch in
    /// the slice is checked before the slice is returned ([`Self::settle`]),
    /// so one signature is verified per stream and slice instead of one per
    /// batch. A batch that fails any check is read again with its
    /// signature checked, which names what is wrong with it.
    async fn fill_slice(
        &self,
        streams: &mut [Stream],
        advance: &mut Advance,
        problems: &mut Vec<Problem>,
        gaps: &mut Vec<(DeviceId, u64)>,
        mut on_batch: impl FnMut(),
    ) -> Result<Vec<Batch>, SyncError> {
        let window = self.pull_window;
        let mut slice = Vec::new();
        let mut bytes = 0usize;
        while slice.len() < window.batches && (slice.is_empty() || bytes < window.bytes) {
            let mut progressed = false;
            let active = streams.iter().filter(|s| s.remaining() > 0).count() as u64;
            let ahead_share = READ_AHEAD / active.max(1);
            for (index, stream) in streams.iter_mut().enumerate() {
                if stream.remaining() == 0 {
                    continue;
                }
                if slice.len() >= window.batches || (!slice.is_empty() && bytes >= window.bytes) {
                    break;
                }
                progressed = true;
                let seq = stream.next;
                let read = match self.next_linked(stream, ahead_share).await {
                    Ok(read) => Ok(read),
                    Err(e) => {
                        self.settle(index, stream, &mut slice, problems, gaps)
                            .await?;
                        if stream.failed {
                            continue;
                        }
                        match e {
                            // Not read: nothing to check again.
                            SyncError::Store(_) | SyncError::Background(_) => Err(e),
                            _ => self.next_batch(stream).await,
                        }
                    }
                };
                match read {
                    Ok((batch, hash, len)) => {
                        bytes += len;
                        slice.push(Fetched {
                            stream: index,
                            seq,
                            hash,
                            batch,
                        });
                        on_batch();
                    }
                    Err(SyncError::Store(StoreError::NotFound { .. }))
                        if stream.cutoff.is_some_and(|c| seq > c) =>
                    {
                        stream.failed = true;
                    }
                    Err(e) => {
                        stream.failed = true;
                        problems.push(rejected(stream.device, seq, e, gaps)?);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        for (index, stream) in streams.iter_mut().enumerate() {
            self.settle(index, stream, &mut slice, problems, gaps)
                .await?;
        }
        Ok(slice
            .into_iter()
            .map(|f| {
                advance
                    .fetched
                    .insert((streams[f.stream].device, f.seq), f.hash);
                f.batch
            })
            .collect())
    }

    /// Verifies the signature of the last batch of `stream`'s unsigned run
    /// (and its author's rights, binding its device to it). If it fails,
    /// the run leaves the slice and is read again batch by batch with each
    /// signature checked: those before the first bad batch return to the
    /// slice, and the bad one stops the stream with a problem.
    async fn settle(
        &self,
        index: usize,
        stream: &mut Stream,
        slice: &mut Vec<Fetched>,
        problems: &mut Vec<Problem>,
        gaps: &mut Vec<(DeviceId, u64)>,
    ) -> Result<(), SyncError> {
        let Some(run) = stream.unsigned.take() else {
            return Ok(());
        };
        let device = stream.device;
        if self
            .verify_signed(
                &run.key,
                SignedKind::Batch,
                device,
                run.last,
                &run.sealed_header,
                run.plain,
            )
            .await
            .is_ok()
        {
            return Ok(());
        }
        slice.retain(|f| f.stream != index || f.seq < run.first);
        stream.next = run.first;
        stream.prev = run.prev;
        while stream.next <= run.last {
            let seq = stream.next;
            match self.next_batch(stream).await {
                Ok((batch, hash, _)) => slice.push(Fetched {
                    stream: index,
                    seq,
                    hash,
                    batch,
                }),
                Err(e) => {
                    stream.failed = true;
                    problems.push(rejected(device, seq, e, gaps)?);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Reads `device`'s batches after `cursor` up to `cutoff`, each checked
    /// as a pull checks it, and requires the last to hash to `pin`. Returns
    /// their hashes, which the batches must have again when the stream
    /// applies them (the bucket could serve others the second time).
    async fn read_pinned(
        &self,
        device: DeviceId,
        cursor: Cursor,
        cutoff: u64,
        pin: BatchHash,
    ) -> Result<Pinned, SyncError> {
        let first = cursor.applied + 1;
        if cutoff - cursor.applied > MAX_PINNED_BATCHES {
            return Err(SyncError::Chain {
                device,
                seq: first,
                broken: ChainBreak::PinnedRangeTooLong,
            });
        }
        let Some(mut check) = to_cutoff(device, cutoff, cursor) else {
            return Ok(Pinned {
                first,
                hashes: Vec::new(),
            });
        };
        check.pinned = Some(Pinned {
            first: cutoff,
            hashes: vec![pin],
        });
        let mut hashes = Vec::new();
        while check.next <= cutoff {
            let (_, hash, _) = self.next_batch(&mut check).await?;
            hashes.push(hash);
        }
        Ok(Pinned { first, hashes })
    }

    /// Fetches a device's head and starts its stream after `cursor`.
    async fn open_stream(
        &self,
        device: DeviceId,
        head_seq: u64,
        cursor: Cursor,
    ) -> Result<Stream, SyncError> {
        let head_key = layout::heads_key(&device, head_seq);
        let head = self.fetch_head(&head_key, device, head_seq).await?;
        Ok(Stream {
            device,
            head,
            next: cursor.applied + 1,
            prev: cursor.hash,
            failed: false,
            to_cutoff: false,
            cutoff: None,
            pinned: None,
            unsigned: None,
            ahead: ReadAhead::default(),
        })
    }

    /// The last seq of `device` that counts, if a removal or demotion of
    /// its author recorded one: under the author it is bound to here, or,
    /// unbound, any member a cutoff lists it under (each batch is still
    /// checked against its own author's). A device of an author who may no
    /// longer write that their removal did not list has none that counts
    /// (0): batches claiming a time before the removal are refused as
    /// unlisted, later ones as not a member's.
    /// The cutoff of `device` (as [`Self::cutoff_of`] finds it) and the
    /// hash its removal pinned for it, when it pinned one.
    fn cutoff_pin_of(
        &self,
        chain: &bae_membership::ValidatedChain,
        device: DeviceId,
    ) -> Option<(u64, BatchHash)> {
        let bound = self.author_of(device);
        chain
            .cutoffs_of(device)
            .into_iter()
            .filter(|(author, _)| bound.is_none_or(|b| b == *author))
            .max_by_key(|(_, seq)| *seq)
            .and_then(|(author, seq)| Some((seq, chain.cutoff_hash(device, &author)?)))
    }

    /// The seq past which nothing of `device` counts (its member was
    /// removed, or its author's binding lapsed unlisted), if any.
    pub(crate) fn cutoff_of(
        &self,
        chain: &bae_membership::ValidatedChain,
        device: DeviceId,
    ) -> Option<u64> {
        let bound = self.author_of(device);
        let listed = chain
            .cutoffs_of(device)
            .into_iter()
            .filter(|(author, _)| bound.is_none_or(|b| b == *author))
            .map(|(_, seq)| seq)
            .max();
        let unlisted = bound.is_some_and(|author| {
            !chain.can_write_now(&author)
                && chain.unlisted_before_cut_off(device, &author, bae_hlc::Timestamp::ZERO)
        });
        listed.or(unlisted.then_some(0))
    }

    /// Fetches and verifies a stream's next batch: it must decrypt at its
    /// place, name its predecessor, and (the last one) match the head.
    /// Returns the batch, its hash and its decrypted size.
    async fn next_batch(
        &self,
        stream: &mut Stream,
    ) -> Result<(Batch, BatchHash, usize), SyncError> {
        let (device, seq) = (stream.device, stream.next);
        let key = layout::ops_key(&device, seq);
        let (batch, hash, len) = self.fetch_batch(&key, device, seq, stream.prev).await?;
        stream.step(hash)?;
        Ok((batch, hash, len))
    }

    /// [`Self::next_batch`] without checking the signature: the batch joins
    /// the stream's unsigned run, whose last signature [`Self::settle`]
    /// checks. Every other check is made here, the author's rights too.
    async fn next_linked(
        &self,
        stream: &mut Stream,
        ahead_share: u64,
    ) -> Result<(Batch, BatchHash, usize), SyncError> {
        let (device, seq) = (stream.device, stream.next);
        let key = layout::ops_key(&device, seq);
        let sealed = self.read_batch_object(stream, ahead_share).await?;
        let plain = self.open(&key, &batch_place(device, seq), &sealed)?;
        let linked = self
            .check_linked_batch(&key, device, seq, &sealed, &plain)
            .await?;
        let author = *linked.claimed_author();
        // One author signs a whole run, so its last signature speaks for
        // every batch in it.
        if stream
            .unsigned
            .as_ref()
            .is_some_and(|run| run.author != author)
        {
            return Err(mismatch(&key, "author"));
        }
        let body = linked.claimed_body();
        let batch = check_batch(
            self.schema,
            &key,
            device,
            seq,
            stream.prev,
            linked.claimed_header(),
            body,
        )?;
        let (hash, len) = (BatchHash::of(body), body.len());
        let prev = stream.prev;
        stream.step(hash)?;
        let run = stream.unsigned.get_or_insert_with(|| UnsignedRun {
            first: seq,
            prev,
            author,
            last: seq,
            key: String::new(),
            sealed_header: Vec::new(),
            plain: Vec::new(),
        });
        run.last = seq;
        run.key = key;
        run.sealed_header = sealed[..sealed.len().min(HEADER_LEN)].to_vec();
        run.plain = plain;
        Ok((batch, hash, len))
    }

    /// The object of `stream`'s next batch, with reads of up to
    /// `ahead_share` batches after it started (its share of
    /// [`READ_AHEAD`]).
    async fn read_batch_object(
        &self,
        stream: &mut Stream,
        ahead_share: u64,
    ) -> Result<Vec<u8>, SyncError> {
        let (device, seq, last) = (stream.device, stream.next, stream.head.seq);
        stream
            .ahead
            .next_object(&self.store, device, seq, last, ahead_share)
            .await
    }

    /// One LIST: every device's newest head seq (ours excluded, but noted
    /// for the next push).
    pub(crate) async fn list_heads(&self) -> Result<BTreeMap<DeviceId, u64>, SyncError> {
        Ok(newest_heads(&self.list_all_heads().await?))
    }

    /// One LIST: every other device's head seqs, newest first (several
    /// exist while a device replaces its head, or when the bucket holds
    /// garbage); this device's own are noted for the next push.
    pub(crate) async fn list_all_heads(&self) -> Result<BTreeMap<DeviceId, Vec<u64>>, SyncError> {
        let mut heads: BTreeMap<DeviceId, Vec<u64>> = BTreeMap::new();
        let mut own = Vec::new();
        for key in self.store.list(layout::HEADS_PREFIX).await? {
            let Ok((device, seq)) = layout::parse_heads_key(&key) else {
                tracing::warn!(%key, "ignoring object outside the layout");
                continue;
            };
            if device == self.device {
                own.push(seq);
            } else {
                heads.entry(device).or_default().push(seq);
            }
        }
        for seqs in heads.values_mut() {
            seqs.sort_unstable_by(|a, b| b.cmp(a));
        }
        // The next push repairs this device's head if it is stale.
        self.listed_own_heads(own);
        Ok(heads)
    }

    /// Reads and checks `device`'s head at `seq` (stored at `key`).
    pub(crate) async fn fetch_head(
        &self,
        key: &str,
        device: DeviceId,
        seq: u64,
    ) -> Result<Head, SyncError> {
        let sealed = self.store.get(key, MAX_HEAD_OBJECT_BYTES).await?;
        self.open_head(key, device, seq, &sealed).await
    }

    /// Opens and checks the bytes `sealed` read at `key` as `device`'s head
    /// at `seq`.
    pub(crate) async fn open_head(
        &self,
        key: &str,
        device: DeviceId,
        seq: u64,
        sealed: &[u8],
    ) -> Result<Head, SyncError> {
        let plain = self.open(key, &head_place(device, seq), sealed)?;
        let signed = self
            .verify_signed(key, SignedKind::Head, device, seq, sealed, plain)
            .await?;
        let head = Head::decode(signed.body()).map_err(|e| SyncError::invalid(key, e))?;
        // What membership was checked at must be what the head says.
        let header = signed.header();
        if header.hlc != head.hlc {
            return Err(mismatch(key, "HLC"));
        }
        if header.prev != head.hash {
            return Err(mismatch(key, "batch hash"));
        }
        if i64::try_from(head.seq).is_err() {
            return Err(SyncError::invalid(
                key,
                InvalidObject::SeqOutOfRange(head.seq),
            ));
        }
        if head.device != device || head.seq != seq {
            return Err(SyncError::invalid(
                key,
                InvalidObject::HeadPlace {
                    device: head.device,
                    seq: head.seq,
                },
            ));
        }
        Ok(head)
    }

    /// Reads and checks `device`'s batch at `seq` (stored at `key`), which
    /// must name `prev` as its predecessor: the batch, its hash and its
    /// plaintext size.
    pub(crate) async fn fetch_batch(
        &self,
        key: &str,
        device: DeviceId,
        seq: u64,
        prev: Option<BatchHash>,
    ) -> Result<(Batch, BatchHash, usize), SyncError> {
        let sealed = self.store.get(key, MAX_BATCH_OBJECT_BYTES).await?;
        self.open_batch(key, device, seq, prev, &sealed).await
    }

    /// Opens and checks the bytes `sealed` read at `key` as
    /// [`Self::fetch_batch`] does.
    pub(crate) async fn open_batch(
        &self,
        key: &str,
        device: DeviceId,
        seq: u64,
        prev: Option<BatchHash>,
        sealed: &[u8],
    ) -> Result<(Batch, BatchHash, usize), SyncError> {
        let plain = self.open(key, &batch_place(device, seq), sealed)?;
        let signed = self
            .verify_signed(key, SignedKind::Batch, device, seq, sealed, plain)
            .await?;
        let plain = signed.body();
        let batch = check_batch(self.schema, key, device, seq, prev, signed.header(), plain)?;
        Ok((batch, BatchHash::of(plain), plain.len()))
    }
}

/// Decodes a batch read at `key` and checks it against its envelope's
/// header and the stream: membership was checked at the header's HLC, so
/// it must be the batch's newest op HLC; the header's chain link must be
/// the batch's own; the batch must be the one of its place and name
/// `prev` as its predecessor.
pub(crate) fn check_batch(
    schema: &SyncSchema,
    key: &str,
    device: DeviceId,
    seq: u64,
    prev: Option<BatchHash>,
    header: &EnvelopeHeader,
    body: &[u8],
) -> Result<Batch, SyncError> {
    let batch = decode_batch(body, schema).map_err(|e| SyncError::invalid(key, e))?;
    if batch.ops.iter().map(|op| op.hlc).max() != Some(header.hlc) {
        return Err(mismatch(key, "HLC"));
    }
    if batch.prev != header.prev {
        return Err(mismatch(key, "previous-batch hash"));
    }
    if batch.device != device || batch.seq.0 != seq {
        return Err(SyncError::invalid(
            key,
            InvalidObject::BatchPlace {
                device: batch.device,
                seq: batch.seq.0,
            },
        ));
    }
    if batch.prev != prev {
        return Err(SyncError::Chain {
            device,
            seq,
            broken: ChainBreak::PreviousHash,
        });
    }
    Ok(batch)
}

/// A signed field that differs from the object it signs.
fn mismatch(key: &str, field: &'static str) -> SyncError {
    SyncError::Refused {
        key: key.to_owned(),
        reason: Box::new(Refusal::Mismatch(field)),
    }
}

/// How many of a device's listed heads a pull tries, newest first.
pub(crate) const MAX_HEADS_TRIED: usize = 4;

/// The stream of a removed member's device from `cursor` up to its
/// `cutoff`, if this device has not applied that far: it ends at the
/// cutoff, not at a head this device read, so its last batch is checked
/// against no head hash.
fn to_cutoff(device: DeviceId, cutoff: u64, cursor: Cursor) -> Option<Stream> {
    (cutoff > cursor.applied).then(|| Stream {
        device,
        head: Head {
            version: crate::head::HEAD_VERSION,
            device,
            seq: cutoff,
            hash: None,
            hlc: bae_hlc::Timestamp::ZERO,
            pushed_at_ms: 0,
            cursors: Vec::new(),
            schema_version: 0,
        },
        next: cursor.applied + 1,
        prev: cursor.hash,
        failed: false,
        to_cutoff: true,
        cutoff: Some(cutoff),
        pinned: None,
        unsigned: None,
        ahead: ReadAhead::default(),
    })
}

/// Each device's newest listed head seq.
fn newest_heads(all: &BTreeMap<DeviceId, Vec<u64>>) -> BTreeMap<DeviceId, u64> {
    all.iter()
        .filter_map(|(d, seqs)| seqs.first().map(|s| (*d, *s)))
        .collect()
}

/// Devices whose newest head is older than a batch known to have existed:
/// one this device applied (its cursor), or one another device's head says
/// it applied. The stream is still applied up to its head (those batches
/// are genuine); the rollback is reported by name.
fn rollbacks(
    heads: &BTreeMap<DeviceId, u64>,
    cursors: &HashMap<DeviceId, Cursor>,
    streams: &[Stream],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (&device, &head) in heads {
        let mut known = cursors
            .get(&device)
            .map_or((0, None), |c| (c.applied, None));
        for s in streams {
            for &(d, applied) in &s.head.cursors {
                if d == device && applied > known.0 {
                    known = (applied, Some(s.device));
                }
            }
        }
        if head < known.0 {
            let e = SyncError::RolledBack {
                device,
                key: layout::heads_key(&device, head),
                head,
                known: known.0,
                witness: known.1,
            };
            tracing::warn!(error = %e, "rollback");
            problems.push(Problem {
                device,
                seq: head,
                kind: ProblemKind::Rejected,
                reason: e.to_string(),
            });
        }
    }
    problems
}

/// A bad object as a rejected-batch problem: one that does not open or
/// verify, is missing (a missing batch object is also a gap, for
/// recovery), or is larger than a pull reads (named with the limit, and
/// never read past it). An unreachable bucket fails the pull instead.
fn rejected(
    device: DeviceId,
    seq: u64,
    e: SyncError,
    gaps: &mut Vec<(DeviceId, u64)>,
) -> Result<Problem, SyncError> {
    match &e {
        SyncError::Store(StoreError::NotFound { key }) if key.starts_with(layout::OPS_PREFIX) => {
            gaps.push((device, seq));
        }
        SyncError::Store(StoreError::NotFound { .. } | StoreError::TooLarge { .. }) => {}
        SyncError::Store(_) => return Err(e),
        _ => {}
    }
    tracing::warn!(%device, seq, error = %e, "batch rejected");
    Ok(Problem {
        device,
        seq,
        kind: ProblemKind::Rejected,
        reason: e.to_string(),
    })
}

/// How far this device has applied each other device's stream.
pub(crate) fn applied_cursors(
    conn: &rusqlite::Connection,
) -> Result<BTreeMap<DeviceId, u64>, SyncError> {
    Ok(load_cursors(conn)?
        .into_iter()
        .map(|(d, c)| (d, c.applied))
        .collect())
}

fn load_cursors(conn: &rusqlite::Connection) -> Result<HashMap<DeviceId, Cursor>, SyncError> {
    let mut stmt =
        conn.prepare("SELECT device_id, applied_seq, applied_hash FROM bae_sync_cursors")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<Vec<u8>>>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (device, applied, hash) = row?;
        let Ok(device) = device.parse() else { continue };
        let hash = hash
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .map(BatchHash);
        out.insert(
            device,
            Cursor {
                applied: applied as u64,
                hash,
            },
        );
    }
    Ok(out)
}

/// Saves the cursors that moved; at the end of a pull also what each
/// device's head said and the problem list (replacing the last pull's),
/// and the images the bucket did not have yet.
fn save_progress(
    conn: &mut rusqlite::Connection,
    moved: &[(DeviceId, Cursor)],
    heads: &[Head],
    problems: Option<&[Problem]>,
    missing_images: &[String],
) -> Result<(), SyncError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (device, cursor) in moved {
        tx.execute(
            "INSERT INTO bae_sync_cursors (device_id, applied_seq, applied_hash) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET applied_seq = excluded.applied_seq, applied_hash = excluded.applied_hash
             WHERE excluded.applied_seq > bae_sync_cursors.applied_seq",
            params![device.to_string(), cursor.applied as i64, cursor.hash.map(|h| h.0.to_vec())],
        )?;
    }
    for head in heads {
        tx.execute(
            "INSERT INTO bae_sync_cursors (device_id, head_seq, head_hlc, last_synced_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id) DO UPDATE SET head_seq = excluded.head_seq, head_hlc = excluded.head_hlc,
             last_synced_ms = excluded.last_synced_ms",
            params![head.device.to_string(), head.seq as i64, head.hlc.as_u64() as i64, head.pushed_at_ms],
        )?;
    }
    if let Some(problems) = problems {
        tx.execute("DELETE FROM bae_sync_problems", [])?;
        for p in problems {
            tx.execute(
                "INSERT OR REPLACE INTO bae_sync_problems (device_id, seq, kind, reason) VALUES (?1, ?2, ?3, ?4)",
                params![p.device.to_string(), p.seq as i64, p.kind.as_str(), p.reason],
            )?;
        }
    }
    want_images(&tx, missing_images)?;
    tx.commit()?;
    Ok(())
}
