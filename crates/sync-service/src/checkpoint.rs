//! Checkpoints: a consistent, encrypted snapshot of the synced tables, their
//! merge state (field timestamps, tombstones, parked values) and the cursor
//! of every device stream it includes, at `checkpoints/{hlc:020}-{suffix}`.
//!
//! The format is specified in `docs/FORMAT-checkpoint.md`: length-prefixed
//! postcard records (a header, one record per row or stamp, an end marker
//! with the record count), sealed as one streamed sync object of kind
//! `Checkpoint` at place (writer device, checkpoint HLC).
//!
//! Write order: the checkpoint is built on disk, sealed, and uploaded before
//! anything it covers may be deleted (GC, `gc.rs`). Reading assumes any
//! checkpoint can be truncated, tampered with or sealed under another key:
//! [`SyncService::newest_checkpoint`] skips such objects, naming them, and
//! falls back to the next older one.

use crate::bootstrap::Recovery;
use crate::error::SyncError;
use crate::head::MAX_HEAD_OBJECT_BYTES;
use crate::members::Refusal;
use crate::progress::{Progress, Stage, PROGRESS_EVERY};
use crate::service::SyncService;
use bae_crypto::hash::{ContentHash, ContentHasher};
use bae_crypto::object::{check_header, ObjectHeader, HEADER_LEN};
use bae_crypto::{ObjectKind, ObjectPlace};
use bae_hlc::DeviceId;
use bae_membership::SignedKind;
use bae_merge::snapshot::{self as merge_snapshot, SnapshotError, StateRecord};
use bae_oplog::{BatchHash, SyncSchema, Value};
use bae_storage_s3::layout::{self, CheckpointId};
use bae_storage_s3::StoreError;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use tracing::Instrument;

/// The checkpoint plaintext format version this build writes (it reads 1
/// and 2; in 2 the header's `schema_version` is the writer's sync schema
/// version, in 1 it was the host's `PRAGMA user_version` and reads as 0).
pub const CHECKPOINT_FORMAT_VERSION: u8 = 2;
/// The checkpoint format before sync schema versions, still read.
const CHECKPOINT_FORMAT_V1: u8 = 1;

/// The largest record a reader accepts (a row with big blobs stays far below).
pub const MAX_RECORD_BYTES: u32 = 16 << 20;

/// The largest checkpoint object a reader downloads (64 GiB, sealed). A
/// checkpoint streams through temp files, never memory, so this bounds the
/// disk a forged one can fill rather than memory. A checkpoint holds the
/// synced rows and their stamps, so 64 GiB is far above any real library;
/// and only objects whose header already checked out (a checkpoint, sealed
/// under the library key) are downloaded at all.
pub const MAX_CHECKPOINT_OBJECT_BYTES: u64 = 64 << 30;

/// One device stream a checkpoint includes: every batch up to `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCursor {
    /// The device (16 bytes).
    pub device: [u8; 16],
    /// Its last batch included.
    pub seq: u64,
    /// BLAKE3 of that batch's encoding (the next batch's chain link).
    pub hash: Option<[u8; 32]>,
}

impl CheckpointCursor {
    /// The device id.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_bytes(self.device)
    }
}

/// The first record of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// [`CHECKPOINT_FORMAT_VERSION`].
    pub version: u8,
    /// The checkpoint id as in its key (`{hlc:020}-{suffix}`): binds the
    /// contents to the key, so two checkpoints cannot be swapped.
    pub id: String,
    /// The device that wrote it.
    pub writer: [u8; 16],
    /// Its HLC (packed u64), newer than every write it includes.
    pub hlc: u64,
    /// Wall time of the writer when it wrote it (Unix ms).
    pub created_ms: i64,
    /// The writer's sync schema version (`bae_oplog::SyncSchema::version`;
    /// 0 in a checkpoint of format 1).
    pub schema_version: u32,
    /// Records between this header and the end marker.
    pub records: u64,
    /// The device streams included, one per device.
    pub cursors: Vec<CheckpointCursor>,
}

impl CheckpointHeader {
    /// The included seq of `device`'s stream (0: none of it).
    pub fn cursor_of(&self, device: DeviceId) -> u64 {
        self.cursors
            .iter()
            .find(|c| c.device == *device.as_bytes())
            .map_or(0, |c| c.seq)
    }
}

/// One record of the checkpoint plaintext: the header, the merge state's
/// records ([`StateRecord`], framed here), the end marker. The variant
/// order is the wire format (`docs/FORMAT-checkpoint.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// Always first.
    Header(CheckpointHeader),
    /// A present row: its synced columns in the sync schema's order.
    Row {
        table: String,
        id: String,
        values: Vec<Value>,
    },
    /// A field stamp (including the `#row` pseudo-column).
    Stamp {
        table: String,
        row_id: String,
        column: String,
        hlc: u64,
        device: [u8; 16],
    },
    /// A tombstone.
    Tombstone {
        table: String,
        row_id: String,
        hlc: u64,
        device: [u8; 16],
    },
    /// A parked value (the value of a known but absent row).
    Parked {
        table: String,
        row_id: String,
        column: String,
        value: Value,
    },
    /// Always last: the number of records between header and end.
    End { records: u64 },
    /// Format 2: a table's synced columns in the writer's schema (first,
    /// one per table).
    Columns { table: String, columns: Vec<String> },
    /// Format 2: an op of a newer writer the writer kept (last).
    Kept {
        device: [u8; 16],
        hlc: u64,
        schema_version: u32,
        table: String,
        row_id: String,
        kind: u8,
        whole: bool,
        fields: Vec<(String, Value)>,
    },
}

impl From<StateRecord> for Record {
    fn from(r: StateRecord) -> Self {
        match r {
            StateRecord::Row { table, id, values } => Record::Row { table, id, values },
            StateRecord::Stamp {
                table,
                row_id,
                column,
                hlc,
                device,
            } => Record::Stamp {
                table,
                row_id,
                column,
                hlc,
                device,
            },
            StateRecord::Tombstone {
                table,
                row_id,
                hlc,
                device,
            } => Record::Tombstone {
                table,
                row_id,
                hlc,
                device,
            },
            StateRecord::Parked {
                table,
                row_id,
                column,
                value,
            } => Record::Parked {
                table,
                row_id,
                column,
                value,
            },
            StateRecord::Columns { table, columns } => Record::Columns { table, columns },
            StateRecord::Kept {
                device,
                hlc,
                schema_version,
                table,
                row_id,
                kind,
                whole,
                fields,
            } => Record::Kept {
                device,
                hlc,
                schema_version,
                table,
                row_id,
                kind,
                whole,
                fields,
            },
        }
    }
}

impl Record {
    /// The merge state a body record carries; `None` for the header and
    /// the end marker.
    pub(crate) fn into_state(self) -> Option<StateRecord> {
        Some(match self {
            Record::Row { table, id, values } => StateRecord::Row { table, id, values },
            Record::Stamp {
                table,
                row_id,
                column,
                hlc,
                device,
            } => StateRecord::Stamp {
                table,
                row_id,
                column,
                hlc,
                device,
            },
            Record::Tombstone {
                table,
                row_id,
                hlc,
                device,
            } => StateRecord::Tombstone {
                table,
                row_id,
                hlc,
                device,
            },
            Record::Parked {
                table,
                row_id,
                column,
                value,
            } => StateRecord::Parked {
                table,
                row_id,
                column,
                value,
            },
            Record::Columns { table, columns } => StateRecord::Columns { table, columns },
            Record::Kept {
                device,
                hlc,
                schema_version,
                table,
                row_id,
                kind,
                whole,
                fields,
            } => StateRecord::Kept {
                device,
                hlc,
                schema_version,
                table,
                row_id,
                kind,
                whole,
                fields,
            },
            Record::Header(_) | Record::End { .. } => return None,
        })
    }
}

/// What a checkpoint write did.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    /// The bucket key written.
    pub key: String,
    /// Records between header and end marker (rows, stamps, tombstones,
    /// parked values).
    pub records: u64,
    /// Plaintext bytes.
    pub plaintext_bytes: u64,
    /// Sealed bytes uploaded.
    pub sealed_bytes: u64,
    /// The device streams it includes.
    pub cursors: Vec<(DeviceId, u64)>,
}

/// A checkpoint downloaded, verified and decrypted to a temp file.
pub(crate) struct OpenedCheckpoint {
    pub id: CheckpointId,
    pub key: String,
    pub header: CheckpointHeader,
    /// The plaintext, positioned at its start.
    pub plaintext: File,
}

/// The place a checkpoint is sealed at: kind `Checkpoint`, the writer's
/// device id, and the checkpoint's HLC as the seq.
pub(crate) fn checkpoint_place(writer: [u8; 16], hlc: u64) -> ObjectPlace {
    ObjectPlace {
        kind: ObjectKind::Checkpoint,
        device: writer,
        seq: hlc,
    }
}

/// Why a checkpoint's plaintext is not a valid record stream, or could not
/// be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the temp file failed.
    #[error("temp file: {0}")]
    Io(#[from] std::io::Error),
    /// The input ends inside a frame's length.
    #[error("truncated record length")]
    TruncatedLength,
    /// The input ends inside a record.
    #[error("truncated record")]
    TruncatedRecord,
    /// The input ends before the end marker.
    #[error("truncated: no end marker after {records} records")]
    NoEndMarker {
        /// Body records read.
        records: u64,
    },
    /// A frame longer than 16 MiB (refused before reading it).
    #[error("record of {0} bytes exceeds the limit")]
    Oversized(u64),
    /// A record that does not decode.
    #[error("record does not decode: {0}")]
    Malformed(#[from] postcard::Error),
    /// Bytes after a record inside its frame.
    #[error("{0} trailing bytes in a record")]
    TrailingBytes(usize),
    /// The first record is not a header.
    #[error("first record is not a header")]
    NoHeader,
    /// The plaintext is empty.
    #[error("empty checkpoint")]
    Empty,
    /// A format version this build does not read.
    #[error("checkpoint format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// A header record after the first.
    #[error("a second header record")]
    SecondHeader,
    /// The end marker's count disagrees with the records read.
    #[error("end marker counts {counted} records, found {found}")]
    CountMismatch {
        /// What the end marker (or header) says.
        counted: u64,
        /// Records read.
        found: u64,
    },
    /// Records after the end marker.
    #[error("records after the end marker")]
    AfterEnd,
    /// The header names another checkpoint, writer or HLC than its key.
    #[error("contents name checkpoint {found}, another writer or another HLC than the key")]
    WrongPlace {
        /// The id the header names.
        found: String,
    },
    /// The checkpoint's HLC is outside the accepted range or further ahead
    /// of this device's wall clock than the drift bound: restoring it would
    /// poison the clock. It is skipped now and usable once time catches up.
    #[error("checkpoint HLC is beyond the clock's drift bound: {0}")]
    AheadOfClock(bae_hlc::ClockError),
    /// A stamp or tombstone newer than the checkpoint that carries it (a
    /// checkpoint's HLC is newer than every write it includes).
    #[error("record {index} is stamped after the checkpoint")]
    StampAfterCheckpoint {
        /// Its position after the header.
        index: u64,
    },
    /// It lacks rows the library holds without a tombstone or other reason:
    /// not a later state of this library, so it may not replace it.
    #[error("it lacks {rows} rows of {table} this library holds, without a tombstone")]
    LacksRows {
        /// The table.
        table: &'static str,
        /// How many rows.
        rows: u64,
    },
    /// A cursor whose seq no stream can reach (above `i64::MAX`).
    #[error("its cursor for device {device} names batch {seq}, out of range")]
    CursorOutOfRange {
        /// The device.
        device: DeviceId,
        /// The seq named.
        seq: u64,
    },
    /// A cursor beyond what its device's newest head (or this device's
    /// pushed batches) confirms: GC will not delete on its strength.
    #[error("its cursor for device {device} is batch {cursor}, beyond the newest confirmed batch {head}")]
    CursorBeyondHead {
        /// The device.
        device: DeviceId,
        /// The checkpoint's cursor.
        cursor: u64,
        /// The newest batch the bucket's head (or local pushes) confirms.
        head: u64,
    },
    /// The header changed between the check and the restore.
    #[error("header changed between reads")]
    HeaderChanged,
    /// A record names a table or column outside the sync schema, or has
    /// the wrong number of values.
    #[error("record {index}: {source}")]
    Record {
        /// Its position after the header.
        index: u64,
        /// What is wrong.
        source: bae_merge::snapshot::RestoreError,
    },
}

/// Writes records as `u32 LE length || postcard(record)` frames.
pub(crate) struct RecordWriter<W: Write> {
    out: W,
    bytes: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter { out, bytes: 0 }
    }

    pub fn write(&mut self, record: &Record) -> Result<(), CheckpointError> {
        let body = postcard::to_allocvec(record)?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD_BYTES)
            .ok_or(CheckpointError::Oversized(body.len() as u64))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&body)?;
        self.bytes += 4 + body.len() as u64;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(W, u64), CheckpointError> {
        self.out.flush()?;
        Ok((self.out, self.bytes))
    }
}

/// Reads frames written by [`RecordWriter`].
pub(crate) struct RecordReader<R: Read> {
    input: R,
    buf: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    pub fn new(input: R) -> Self {
        RecordReader {
            input,
            buf: Vec::new(),
        }
    }

    /// The next record; `None` at a clean end of input.
    pub fn next_record(&mut self) -> Result<Option<Record>, CheckpointError> {
        let mut len = [0u8; 4];
        let got = read_full(&mut self.input, &mut len)?;
        if got == 0 {
            return Ok(None);
        }
        if got < 4 {
            return Err(CheckpointError::TruncatedLength);
        }
        let len = u32::from_le_bytes(len);
        if len > MAX_RECORD_BYTES {
            return Err(CheckpointError::Oversized(u64::from(len)));
        }
        // The buffer grows with the bytes actually read, not with the
        // length the frame claims: a forged length costs nothing.
        self.buf.clear();
        Read::by_ref(&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut self.buf)?;
        if self.buf.len() < len as usize {
            return Err(CheckpointError::TruncatedRecord);
        }
        let (record, rest) = postcard::take_from_bytes::<Record>(&self.buf)?;
        if !rest.is_empty() {
            return Err(CheckpointError::TrailingBytes(rest.len()));
        }
        Ok(Some(record))
    }

    /// Reads and checks the header record.
    pub fn header(&mut self) -> Result<CheckpointHeader, CheckpointError> {
        match self.next_record()? {
            Some(Record::Header(h)) if h.version == CHECKPOINT_FORMAT_VERSION => Ok(h),
            Some(Record::Header(h)) if h.version == CHECKPOINT_FORMAT_V1 => Ok(CheckpointHeader {
                schema_version: 0,
                ..h
            }),
            Some(Record::Header(h)) => Err(CheckpointError::UnsupportedVersion(h.version)),
            Some(_) => Err(CheckpointError::NoHeader),
            None => Err(CheckpointError::Empty),
        }
    }

    /// The next body record, `None` after a valid end marker (checked
    /// against `seen` records and the end of input).
    pub fn body_record(&mut self, seen: u64) -> Result<Option<Record>, CheckpointError> {
        match self.next_record()? {
            None => Err(CheckpointError::NoEndMarker { records: seen }),
            Some(Record::Header(_)) => Err(CheckpointError::SecondHeader),
            Some(Record::End { records }) => {
                if records != seen {
                    return Err(CheckpointError::CountMismatch {
                        counted: records,
                        found: seen,
                    });
                }
                if self.next_record()?.is_some() {
                    return Err(CheckpointError::AfterEnd);
                }
                Ok(None)
            }
            Some(r) => Ok(Some(r)),
        }
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn named_temp_file() -> Result<tempfile::NamedTempFile, SyncError> {
    tempfile::NamedTempFile::new().map_err(|e| SyncError::io(std::path::Path::new("temp file"), e))
}

fn temp_file() -> Result<File, SyncError> {
    tempfile::tempfile().map_err(|e| SyncError::io(std::path::Path::new("temp file"), e))
}

fn io_err(e: std::io::Error) -> SyncError {
    SyncError::io(std::path::Path::new("checkpoint temp file"), e)
}

impl SyncService {
    /// Writes a checkpoint: pushes (so the snapshot's cursor for this device
    /// names pushed batches), pulls (so it includes what others pushed, and
    /// recovers first if this device is itself behind a GC'd range), then
    /// snapshots the library in one read transaction to a temp file, seals
    /// it to a second temp file, and uploads it.
    ///
    /// The snapshot may include the effects of local batches recorded after
    /// the push; its cursor for this device still names only pushed batches,
    /// and those batches are pushed before it is uploaded (they are replayed
    /// on top of it later, which merge makes a no-op).
    ///
    /// Refused ([`SyncError::CheckpointWouldHideGap`]) while the pull left
    /// a gap (a stream's next batch gone from the bucket) that an older
    /// checkpoint holds, or may hold because it did not open: readers and
    /// GC go by the newest checkpoint, and this one would lack the range.
    /// A gap no checkpoint holds does not stop it: that range is out of
    /// every recovery's reach already, and refusing would stop this
    /// device's checkpoints (and its GC) for good.
    ///
    /// A stream the pull could not read (none of its heads opened,
    /// [`PullReport::unread`](crate::PullReport::unread)) may hide a gap:
    /// when one of its heads opens now or read cut short (not garbage read
    /// whole), its next batch is looked for, and one that is gone is
    /// recovered from (once), or refused for, as a gap the pull found. So
    /// may a stream the newest checkpoint holds further than this library
    /// has applied (a stale LIST hid its heads from the pull).
    pub async fn checkpoint(&self) -> Result<CheckpointReport, SyncError> {
        self.push().await?;
        let mut pulled = self.pull().await?;
        if !pulled.gaps.is_empty() && !pulled.gaps_held_by_a_checkpoint {
            // That no checkpoint holds the gap comes from one LIST, and one
            // that missed the checkpoint holding it (an eventually
            // consistent bucket) let this one be written without the range
            // and its GC delete the older one (seed 14159). A second pull
            // lists again (and may recover).
            pulled = self.pull().await?;
        }
        // A head that did not open (a body cut short) left its stream
        // unread, so its gap went unfound: this device wrote the newest
        // checkpoint without a range GC had removed, and its GC then
        // deleted the older checkpoint that was the range's only copy
        // (seed 50398). Not done in every pull: it reads the heads again
        // and may open checkpoints. One recovery here; a gap still unread
        // after it refuses.
        //
        // A stream the pull did not see at all (a stale LIST hid every one
        // of its heads) hid its gap the same way: this device wrote the
        // newest checkpoint without a range GC had removed under the one
        // before, and its GC deleted that one (seed 101031). So the
        // streams the newest checkpoint holds further than this library
        // has applied are looked at too.
        let mut recovered = false;
        while !pulled.gaps_held_by_a_checkpoint {
            let mut suspects = pulled.unread.clone();
            for behind in self.behind_the_newest_checkpoint().await? {
                if !suspects.iter().any(|(device, _)| *device == behind.0) {
                    suspects.push(behind);
                }
            }
            let gone = self.gone_behind_heads(&suspects).await?;
            let Some(&(device, seq)) = gone.first() else {
                break;
            };
            if recovered {
                return Err(SyncError::CheckpointWouldHideGap { device, seq });
            }
            let recovery = {
                let _one_at_a_time = self.flight.lock().await;
                self.recover_from_checkpoint(&gone).await?
            };
            match recovery {
                Recovery::Recovered => {
                    recovered = true;
                    pulled = self.pull().await?;
                }
                Recovery::NotRecovered { held: false } => break,
                Recovery::NotRecovered { held: true } => {
                    return Err(SyncError::CheckpointWouldHideGap { device, seq })
                }
            }
        }
        if pulled.gaps_held_by_a_checkpoint {
            if let Some(&(device, seq)) = pulled.gaps.first() {
                return Err(SyncError::CheckpointWouldHideGap { device, seq });
            }
        }
        // Taken after them (each takes it itself); a pull that slips in
        // between changes nothing the snapshot's one read transaction
        // cannot see.
        let _one_at_a_time = self.flight.lock().await;
        self.write_checkpoint().await
    }

    /// The streams the newest checkpoint that verifies holds further than
    /// this library has applied them (device, next seq), each only up to
    /// its cutoff when its member was removed; this device's own stream is
    /// not one of them (a push finds that it went back). Devices this
    /// library knows (it applied or bound them) come first, and at most
    /// [`MAX_UNKNOWN_STREAMS`] others: a checkpoint signed by a member may
    /// name any number of made-up devices, and each costs a LIST.
    async fn behind_the_newest_checkpoint(&self) -> Result<Vec<(DeviceId, u64)>, SyncError> {
        let Some(cursors) = self.newest_checkpoint_cursors().await? else {
            return Ok(Vec::new());
        };
        let chain = self.chain().await?;
        let applied = self
            .with_db(|rec| crate::pull::applied_cursors(rec.sync_parts().0))
            .await?;
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for c in &cursors {
            let device = c.device_id();
            if device == self.device {
                continue;
            }
            let held = self.counted_cursor(&chain, c);
            let applied_seq = applied.get(&device).copied();
            if applied_seq.unwrap_or(0) >= held {
                continue;
            }
            let next = (device, applied_seq.unwrap_or(0).saturating_add(1));
            if applied_seq.is_some() || self.author_of(device).is_some() {
                known.push(next);
            } else if unknown.len() < MAX_UNKNOWN_STREAMS {
                unknown.push(next);
            }
        }
        known.extend(unknown);
        Ok(known)
    }

    /// How far a checkpoint's cursor `c` holds batches that count: to its
    /// seq, or to the cutoff when the device's member was removed.
    pub(crate) fn counted_cursor(
        &self,
        chain: &bae_membership::ValidatedChain,
        c: &CheckpointCursor,
    ) -> u64 {
        self.cutoff_of(chain, c.device_id())
            .map_or(c.seq, |cutoff| cutoff.min(c.seq))
    }

    /// The cursors of the newest checkpoint that opens and verifies; the
    /// one weighed last is not downloaded again while it is the newest
    /// listed that verifies.
    async fn newest_checkpoint_cursors(&self) -> Result<Option<Vec<CheckpointCursor>>, SyncError> {
        let weighed = self.newest_weighed.lock().ok().and_then(|w| w.clone());
        for (id, key) in self.listed_checkpoints(None).await? {
            if let Some((_, cursors)) = weighed.as_ref().filter(|(k, _)| *k == key) {
                return Ok(Some(cursors.clone()));
            }
            match self.open_checkpoint(&id, &key).await {
                Ok(opened) => {
                    let cursors = opened.header.cursors;
                    self.remember_newest(key, cursors.clone());
                    return Ok(Some(cursors));
                }
                Err(e) if passed_over(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Notes `key` (with its cursors) as the newest checkpoint weighed.
    fn remember_newest(&self, key: String, cursors: Vec<CheckpointCursor>) {
        if let Ok(mut weighed) = self.newest_weighed.lock() {
            *weighed = Some((key, cursors));
        }
    }

    /// The streams of `suspects` (device, next seq) whose next batch is not
    /// in the bucket, of those with a head that may be real at or above
    /// that seq: it opens now, or a read came back cut short. Heads read
    /// whole that do not open are garbage (anyone with write access can
    /// put some), reported by the pull and no sign of a stream: taking
    /// them for one made every `checkpoint` open checkpoints, and with one
    /// that does not open beside them (also garbage) refuse for good. A
    /// seq no such head reaches is no gap either: a checkpoint signed by a
    /// member may name any cursor, for any device, and one beyond a real
    /// device's head would otherwise refuse every `checkpoint` for as long
    /// as it stayed the newest.
    async fn gone_behind_heads(
        &self,
        suspects: &[(DeviceId, u64)],
    ) -> Result<Vec<(DeviceId, u64)>, SyncError> {
        let mut gone = Vec::new();
        for &(device, seq) in suspects {
            if self
                .real_head(device)
                .await?
                .is_some_and(|head| head >= seq)
                && !self.store.exists(&layout::ops_key(&device, seq)).await?
            {
                gone.push((device, seq));
            }
        }
        Ok(gone)
    }

    /// The newest of `device`'s listed heads (as many as a pull tries) that
    /// opens, or came back shorter than the bucket says it is.
    async fn real_head(&self, device: DeviceId) -> Result<Option<u64>, SyncError> {
        let seqs = self.listed_head_seqs(device).await?;
        for seq in seqs.into_iter().take(crate::pull::MAX_HEADS_TRIED) {
            let key = layout::heads_key(&device, seq);
            let sealed = match self.store.get(&key, MAX_HEAD_OBJECT_BYTES).await {
                Ok(sealed) => sealed,
                Err(StoreError::NotFound { .. } | StoreError::TooLarge { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            match self.open_head(&key, device, seq, &sealed).await {
                Ok(_) => return Ok(Some(seq)),
                Err(SyncError::Store(e))
                    if !matches!(e, StoreError::NotFound { .. } | StoreError::TooLarge { .. }) =>
                {
                    return Err(e.into())
                }
                Err(_) => {}
            }
            // Gone since: nothing there to read again.
            let whole = self
                .read_was_whole(&key, sealed.len())
                .await?
                .unwrap_or(true);
            if !whole {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Snapshots the library as it stands and uploads it (the second half
    /// of [`Self::checkpoint`], without its pull); the caller holds the
    /// flight lock.
    ///
    /// No checkpoint goes up holding a write that no batch in the bucket
    /// carries: local batches are pushed before the snapshot, and again
    /// before the upload when the snapshot holds one recorded meanwhile.
    /// Its cursor for this device names only pushed batches, so the writes
    /// of a later one were explained only by that batch being pushed later
    /// with the same ops; a device that went back to a copy from before
    /// them never pushes it, and the write was then on the devices that
    /// started from the checkpoint and on no other (seed 18289, a revoke's
    /// checkpoint, written without a push).
    pub(crate) async fn write_checkpoint(&self) -> Result<CheckpointReport, SyncError> {
        let span = tracing::info_span!("checkpoint", device = %self.device);
        async move {
            let device = self.device;
            if self.with_db(|rec| any_unpushed(rec.sync_parts().0)).await? {
                self.push_locked().await?;
            }
            let (epoch, key) = self
                .key_ring()
                .current()
                .map(|(e, k)| (e, k.clone()))
                .ok_or(SyncError::NoCurrentKey)?;
            let progress = self.progress.clone();
            // Local writes reach the stamps lazily: fold them (on the shared
            // connection, briefly), and take the checkpoint's HLC after
            // every write this device has made or seen.
            let hlc = self
                .with_db(|rec| {
                    bae_merge::fold_local(rec)?;
                    crate::service::next_hlc(rec)
                })
                .await?;
            self.check_cancelled()?;
            // The snapshot and its sealing run on a connection of their own:
            // nothing else of the service waits for them.
            let cancel = self.cancel.clone();
            let (key_name, header, plain_bytes, sealed, sealed_bytes, object_hash, unpushed) = self
                .with_own_connection(move |conn, schema| {
                    let (header, mut plain, plain_bytes, unpushed) =
                        write_snapshot(conn, schema, device, hlc, progress.as_ref())?;
                    if cancel.is_cancelled() {
                        return Err(SyncError::Cancelled);
                    }
                    plain.seek(SeekFrom::Start(0)).map_err(io_err)?;
                    let place = checkpoint_place(header.writer, header.hlc);
                    let key_name = format!("{}{}", layout::CHECKPOINTS_PREFIX, header.id);
                    let sealed = named_temp_file()?;
                    let mut out = BufWriter::new(sealed.as_file());
                    bae_crypto::seal_object_stream(
                        &key,
                        epoch,
                        &place,
                        BufReader::new(&plain),
                        &mut out,
                    )
                    .map_err(|source| SyncError::Object {
                        key: key_name.clone(),
                        source,
                    })?;
                    out.flush().map_err(io_err)?;
                    drop(out);
                    let sealed_bytes = sealed.as_file().metadata().map_err(io_err)?.len();
                    let object_hash = hash_file(sealed.path())?;
                    Ok((key_name, header, plain_bytes, sealed, sealed_bytes, object_hash, unpushed))
                })
                .await?;
            self.check_cancelled()?;
            if unpushed {
                // A local write landed between the push and the snapshot.
                self.push_locked().await?;
            }
            // The sealed object streams from its temp file: a checkpoint of any
            // size passes through bounded memory.
            self.report(Stage::Upload, 0, sealed_bytes);
            self.store.put_file(&key_name, sealed.path()).await?;
            self.report(Stage::Upload, sealed_bytes, sealed_bytes);
            // The signature after the object it signs: a checkpoint without
            // one is skipped by readers, never trusted.
            let id = layout::parse_checkpoint_key(&key_name)
                .map_err(|e| SyncError::invalid(&key_name, e))?;
            let signature = self.seal_signed(
                &checkpoint_place(header.writer, header.hlc),
                SignedKind::Checkpoint,
                bae_hlc::Timestamp::from_u64(header.hlc),
                None,
                object_hash.as_bytes().to_vec(),
            )?;
            self.store
                .put(&layout::checkpoint_signature_key(&id), &signature)
                .await?;
            // Only now (it is in the bucket) may GC rely on it.
            let written = key_name.clone();
            self.with_db(move |rec| {
                rec.sync_parts().0.execute(
                    "INSERT OR IGNORE INTO bae_sync_checkpoints_written (key, written_ms) VALUES (?1, ?2)",
                    rusqlite::params![written, crate::service::now_ms()],
                )?;
                Ok(())
            })
            .await?;
            self.remember_newest(key_name.clone(), header.cursors.clone());
            tracing::info!(key = %key_name, records = header.records, bytes = sealed_bytes, "checkpoint written");
            Ok(CheckpointReport {
                key: key_name,
                records: header.records,
                plaintext_bytes: plain_bytes,
                sealed_bytes,
                cursors: header
                    .cursors
                    .iter()
                    .map(|c| (c.device_id(), c.seq))
                    .collect(),
            })
        }
        .instrument(span)
        .await
    }

    /// The newest checkpoint that opens and verifies, decrypted to a temp
    /// file, plus every newer one that did not (with why). `None` when no
    /// checkpoint verifies.
    pub(crate) async fn newest_checkpoint(
        &self,
    ) -> Result<(Option<OpenedCheckpoint>, Vec<SyncError>), SyncError> {
        self.newest_checkpoint_below(None).await
    }

    /// [`Self::newest_checkpoint`] among the checkpoints older than
    /// `below` (all of them when `None`).
    pub(crate) async fn newest_checkpoint_below(
        &self,
        below: Option<&CheckpointId>,
    ) -> Result<(Option<OpenedCheckpoint>, Vec<SyncError>), SyncError> {
        let mut rejected = Vec::new();
        for (id, key) in self.listed_checkpoints(below).await? {
            match self.open_checkpoint(&id, &key).await {
                Ok(opened) => return Ok((Some(opened), rejected)),
                Err(SyncError::Store(StoreError::NotFound { .. })) => {}
                Err(e) if passed_over(&e) => {
                    tracing::warn!(%key, error = %e, "checkpoint rejected; trying an older one");
                    rejected.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((None, rejected))
    }

    /// The checkpoints listed (older than `below`, all when `None`), newest
    /// first.
    pub(crate) async fn listed_checkpoints(
        &self,
        below: Option<&CheckpointId>,
    ) -> Result<Vec<(CheckpointId, String)>, SyncError> {
        let mut ids: Vec<(CheckpointId, String)> = Vec::new();
        for key in self.store.list(layout::CHECKPOINTS_PREFIX).await? {
            match layout::parse_checkpoint_key(&key) {
                Ok(id) if below.is_none_or(|b| id < *b) => ids.push((id, key)),
                Ok(_) => {}
                Err(_) => tracing::warn!(%key, "ignoring object outside the layout"),
            }
        }
        ids.sort();
        ids.reverse();
        Ok(ids)
    }

    /// Downloads, decrypts and checks the checkpoint at `key`; its header.
    /// Errors name the object: [`SyncError::Object`] when it does not open
    /// (truncated, tampered, wrong key, moved), [`SyncError::Invalid`] when
    /// its records are not a valid checkpoint, [`StoreError::TooLarge`]
    /// when it is larger than [`MAX_CHECKPOINT_OBJECT_BYTES`].
    pub async fn verify_checkpoint(&self, key: &str) -> Result<CheckpointHeader, SyncError> {
        let id = layout::parse_checkpoint_key(key).map_err(|e| SyncError::invalid(key, e))?;
        Ok(self.open_checkpoint(&id, key).await?.header)
    }

    /// Checks one checkpoint's object header, then downloads it (to a temp
    /// file), decrypts it and fully checks it.
    pub(crate) async fn open_checkpoint(
        &self,
        id: &CheckpointId,
        key: &str,
    ) -> Result<OpenedCheckpoint, SyncError> {
        let writer = self.check_checkpoint_header(id, key).await?;
        let signed_hash = self.checkpoint_signature(id, key, writer).await?;
        let sealed = named_temp_file()?;
        self.report(Stage::Download, 0, 0);
        let size = self
            .store
            .get_to_file(key, sealed.path(), MAX_CHECKPOINT_OBJECT_BYTES)
            .await?;
        self.report(Stage::Download, size, size);
        let path = sealed.path().to_path_buf();
        if tokio::task::spawn_blocking(move || hash_file(&path)).await?? != signed_hash {
            return Err(SyncError::Refused {
                key: key.to_owned(),
                reason: Box::new(Refusal::Mismatch("checkpoint object")),
            });
        }
        let keys = self.key_ring();
        let schema = self.schema;
        let bound = self.drift_bound().await?;
        let (id, key) = (id.clone(), key.to_owned());
        tokio::task::spawn_blocking(move || {
            // Reopened by path: a store may have replaced the file rather
            // than written into the handle `sealed` holds.
            let file = File::open(sealed.path()).map_err(|e| SyncError::io(sealed.path(), e))?;
            open_sealed(&keys, schema, &bound, &id, &key, &file)
        })
        .await?
    }

    /// Reads the first [`HEADER_LEN`] bytes of a checkpoint object (one
    /// ranged GET) and checks them before anything else is downloaded: a
    /// sync object of kind `Checkpoint` at the HLC of its key, sealed under
    /// a key of this library. Anything else (garbage, another kind of
    /// object, one sealed under another key) is refused for the cost of a
    /// few bytes, not a download. [`open_sealed`] checks the whole object
    /// again, so an object replaced after this check gains nothing.
    async fn check_checkpoint_header(
        &self,
        id: &CheckpointId,
        key: &str,
    ) -> Result<[u8; 16], SyncError> {
        let object = |source| SyncError::Object {
            key: key.to_owned(),
            source,
        };
        let head = self.store.get_range(key, 0..HEADER_LEN as u64).await?;
        let header = ObjectHeader::parse(&head).map_err(object)?;
        let place = checkpoint_place(header.place.device, id.hlc());
        check_header(self.key_ring().as_ref(), &place, &header).map_err(object)?;
        Ok(header.place.device)
    }

    /// Reads and verifies the signature of checkpoint `id` written by
    /// device `writer`: an envelope signed by the device's author over the
    /// BLAKE3 of the sealed checkpoint object, who must be able to write at
    /// the checkpoint's HLC and still now (`members.rs`). Returns the
    /// signed hash, which the downloaded object must match.
    async fn checkpoint_signature(
        &self,
        id: &CheckpointId,
        key: &str,
        writer: [u8; 16],
    ) -> Result<ContentHash, SyncError> {
        let signature_key = layout::checkpoint_signature_key(id);
        let sealed = match self
            .store
            .get(&signature_key, MAX_CHECKPOINT_SIGNATURE_BYTES)
            .await
        {
            Ok(sealed) => sealed,
            Err(e) if e.is_not_found() => {
                return Err(SyncError::Refused {
                    key: key.to_owned(),
                    reason: Box::new(Refusal::UnsignedCheckpoint),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let place = checkpoint_place(writer, id.hlc());
        let plain = self.open(&signature_key, &place, &sealed)?;
        let verified = self
            .verify_signed(
                &signature_key,
                SignedKind::Checkpoint,
                DeviceId::from_bytes(writer),
                id.hlc(),
                &sealed,
                plain,
            )
            .await?;
        let hash = <[u8; 32]>::try_from(verified.body()).map_err(|_| SyncError::Refused {
            key: signature_key.clone(),
            reason: Box::new(Refusal::Mismatch("checkpoint hash")),
        })?;
        Ok(ContentHash::from_bytes(hash))
    }
}

/// The most a checkpoint signature object may take: an envelope of a
/// 32-byte body, sealed, with room to spare.
const MAX_CHECKPOINT_SIGNATURE_BYTES: u64 = 4096;

/// At most this many devices a checkpoint names that this library does
/// not know are looked at by `checkpoint` (see
/// `behind_the_newest_checkpoint`).
const MAX_UNKNOWN_STREAMS: usize = 8;

/// Whether an error opening a checkpoint passes it over for an older one:
/// it did not open, verify or fit ([`SyncError::Object`],
/// [`SyncError::Invalid`], [`SyncError::Refused`], too large), or it is gone
/// since it was listed.
pub(crate) fn passed_over(e: &SyncError) -> bool {
    matches!(
        e,
        SyncError::Object { .. }
            | SyncError::Invalid { .. }
            | SyncError::Refused { .. }
            | SyncError::Store(StoreError::TooLarge { .. } | StoreError::NotFound { .. })
    )
}

/// BLAKE3 of a file, read in blocks.
fn hash_file(path: &std::path::Path) -> Result<ContentHash, SyncError> {
    let mut file = File::open(path).map_err(|e| SyncError::io(path, e))?;
    let mut hasher = ContentHasher::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut block).map_err(|e| SyncError::io(path, e))?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&block[..n]);
    }
}

/// Decrypts a sealed checkpoint (a file) to a temp file and checks every
/// record frame.
fn open_sealed(
    keys: &bae_crypto::KeyRing,
    schema: &SyncSchema,
    bound: &bae_hlc::Clock,
    id: &CheckpointId,
    key: &str,
    mut sealed: &File,
) -> Result<OpenedCheckpoint, SyncError> {
    let object = |source| SyncError::Object {
        key: key.to_owned(),
        source,
    };
    let invalid = |e: CheckpointError| SyncError::invalid(key, e);
    // The writer is not known before reading: take it from the header (it is
    // authenticated with every chunk) and require the HLC from the key.
    let mut head = Vec::with_capacity(HEADER_LEN);
    sealed.seek(SeekFrom::Start(0)).map_err(io_err)?;
    Read::by_ref(&mut sealed)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    let object_header = ObjectHeader::parse(&head).map_err(object)?;
    let place = checkpoint_place(object_header.place.device, id.hlc());
    sealed.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut plain = temp_file()?;
    bae_crypto::open_object_stream(
        keys,
        &place,
        BufReader::new(sealed),
        BufWriter::new(&plain),
        u64::MAX,
    )
    .map_err(object)?;
    plain.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut reader = RecordReader::new(BufReader::new(&plain));
    let header = reader.header().map_err(invalid)?;
    if header.id != id.to_string() || header.writer != place.device || header.hlc != id.hlc() {
        return Err(invalid(CheckpointError::WrongPlace { found: header.id }));
    }
    bound
        .check_drift(bae_hlc::Timestamp::from_u64(header.hlc))
        .map_err(|e| invalid(CheckpointError::AheadOfClock(e)))?;
    check_body(&mut reader, &header, schema, |_| Ok(())).map_err(invalid)?;
    plain.seek(SeekFrom::Start(0)).map_err(io_err)?;
    Ok(OpenedCheckpoint {
        id: id.clone(),
        key: key.to_owned(),
        header,
        plaintext: plain,
    })
}

/// Checks a checkpoint's cursors and every body record after its header,
/// passing each record to `each`; returns the number of body records.
/// Every record is checked against the sync schema here, before any is
/// restored: a checkpoint that names a table or column outside it is
/// rejected as a whole, and the reader falls back to an older one.
pub(crate) fn check_body<R: Read>(
    reader: &mut RecordReader<R>,
    header: &CheckpointHeader,
    schema: &SyncSchema,
    mut each: impl FnMut(&Record) -> Result<(), CheckpointError>,
) -> Result<u64, CheckpointError> {
    // Cursor seqs are stored as SQLite integers: one above i64::MAX would
    // wrap and read back as another seq.
    if let Some(c) = header
        .cursors
        .iter()
        .find(|c| i64::try_from(c.seq).is_err())
    {
        return Err(CheckpointError::CursorOutOfRange {
            device: c.device_id(),
            seq: c.seq,
        });
    }
    let mut seen = 0u64;
    while let Some(record) = reader.body_record(seen)? {
        each(&record)?;
        if let Some(state) = record.into_state() {
            merge_snapshot::check_record(schema, &state, header.schema_version).map_err(
                |source| CheckpointError::Record {
                    index: seen,
                    source,
                },
            )?;
            if state.hlc().is_some_and(|h| h > header.hlc) {
                return Err(CheckpointError::StampAfterCheckpoint { index: seen });
            }
        }
        seen += 1;
    }
    if seen != header.records {
        return Err(CheckpointError::CountMismatch {
            counted: header.records,
            found: seen,
        });
    }
    Ok(seen)
}

/// Writes the snapshot (read in one transaction) to a temp file. Returns
/// the header, the file and its length.
fn write_snapshot(
    conn: &mut Connection,
    schema: &SyncSchema,
    device: DeviceId,
    hlc: bae_hlc::Timestamp,
    progress: Option<&Progress>,
) -> Result<(CheckpointHeader, File, u64, bool), SyncError> {
    let tx = conn.transaction()?;
    // In the same read transaction as the snapshot: exactly the local
    // batches whose writes it holds.
    let unpushed = any_unpushed(&tx)?;
    // Newer than every write the snapshot holds: a pull that folded a
    // remote batch after `hlc` was taken may have stamps above it.
    let hlc =
        merge_snapshot::newest_stamp(&tx)?.map_or(hlc.as_u64(), |newest| newest.max(hlc.as_u64()));
    let id = CheckpointId::generate(hlc);
    let header = CheckpointHeader {
        version: CHECKPOINT_FORMAT_VERSION,
        id: id.to_string(),
        writer: *device.as_bytes(),
        hlc,
        created_ms: crate::service::now_ms(),
        schema_version: schema.version(),
        records: merge_snapshot::snapshot_len(&tx, schema)?,
        cursors: snapshot_cursors(&tx, device)?,
    };
    let file = temp_file()?;
    let mut w = RecordWriter::new(BufWriter::new(file));
    let fail = SyncError::CheckpointWrite;
    w.write(&Record::Header(header.clone())).map_err(fail)?;
    let report = |done| {
        if let Some(p) = progress {
            p(Stage::Snapshot, done, header.records);
        }
    };
    let mut n = 0u64;
    let written = merge_snapshot::snapshot(&tx, schema, |record| {
        w.write(&Record::from(record))?;
        n += 1;
        if n.is_multiple_of(PROGRESS_EVERY) {
            report(n);
        }
        Ok::<(), CheckpointError>(())
    })
    .map_err(|e| match e {
        SnapshotError::Sink(e) => fail(e),
        SnapshotError::Merge(e) => SyncError::Merge(e),
    })?;
    report(written);
    if written != header.records {
        return Err(fail(CheckpointError::CountMismatch {
            counted: header.records,
            found: written,
        }));
    }
    w.write(&Record::End { records: written }).map_err(fail)?;
    let (out, bytes) = w.finish().map_err(fail)?;
    let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    tx.finish()?;
    Ok((header, file, bytes, unpushed))
}

/// Whether this device has recorded a batch it has not pushed.
fn any_unpushed(conn: &Connection) -> Result<bool, SyncError> {
    Ok(!bae_oplog::unpushed_batches_after(conn, bae_oplog::BatchSeq(0), 1)?.is_empty())
}

/// This device's last pushed batch whose ops are all folded into the
/// snapshot's stamps (a batch pushed while the snapshot was being taken,
/// by another task or process, is left to the batches after the
/// checkpoint), and every other device's applied cursor.
fn snapshot_cursors(
    conn: &Connection,
    device: DeviceId,
) -> Result<Vec<CheckpointCursor>, SyncError> {
    let mut out = Vec::new();
    let folded = merge_snapshot::folded_through(conn)?;
    let first_unfolded = bae_oplog::first_batch_after_op(conn, folded)?
        .map_or(i64::MAX, |b| i64::try_from(b.0).unwrap_or(i64::MAX));
    let own: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT batch_id, hash FROM bae_sync_batch_hashes WHERE batch_id < ?1
             ORDER BY batch_id DESC LIMIT 1",
            [first_unfolded],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let mut own = own.map(|(seq, hash)| (seq as u64, <[u8; 32]>::try_from(hash).ok()));
    // Re-taken own batches held here are not in this snapshot: it must not
    // claim them.
    if let Some((applied, hash)) = crate::rollback::own_cursor(conn, device)? {
        if own.is_some_and(|(seq, _)| seq > applied) {
            own = Some((applied, hash.map(|h| h.0)));
        }
    }
    // Nor are own batches a checkpoint restore left to replay (held, for
    // drift or a row not here yet): a reader that restored this one would
    // skip them, while this device replays them later (seed 23336).
    let replay_after: Option<i64> = conn.query_row(
        "SELECT checkpoint_replay_after FROM bae_sync_library WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    if let Some(after) = replay_after.and_then(|a| u64::try_from(a).ok()) {
        if own.is_some_and(|(seq, _)| seq > after) {
            let hash: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT hash FROM bae_sync_batch_hashes WHERE batch_id = ?1",
                    [after as i64],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            own = Some((after, hash.and_then(|h| <[u8; 32]>::try_from(h).ok())));
        }
    }
    if let Some((seq, hash)) = own.filter(|(seq, _)| *seq > 0) {
        out.push(CheckpointCursor {
            device: *device.as_bytes(),
            seq,
            hash,
        });
    }
    let mut stmt = conn.prepare(
        "SELECT device_id, applied_seq, applied_hash FROM bae_sync_cursors WHERE applied_seq > 0 ORDER BY device_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let Ok(d) = r.get::<_, String>(0)?.parse::<DeviceId>() else {
            continue;
        };
        if d == device {
            continue;
        }
        let hash: Option<Vec<u8>> = r.get(2)?;
        out.push(CheckpointCursor {
            device: *d.as_bytes(),
            seq: r.get::<_, i64>(1)? as u64,
            hash: hash.and_then(|h| <[u8; 32]>::try_from(h).ok()),
        });
    }
    Ok(out)
}

/// The applied cursor of a checkpoint entry, as pull stores it.
pub(crate) fn cursor_hash(c: &CheckpointCursor) -> Option<BatchHash> {
    c.hash.map(BatchHash)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Seed 23336: a checkpoint restore left this device's batches after
    /// its cursor to replay (held for drift: written while its clock ran
    /// ahead), and it wrote a checkpoint (a revoke's, without a pull) before
    /// they were replayed. That checkpoint claimed them without their
    /// writes, and a device that restored it never applied them. Its own
    /// cursor now stops where the replay starts.
    #[tokio::test]
    async fn a_checkpoint_claims_no_own_batch_a_restore_left_to_replay() {
        let bucket = crate::test_support::Bucket::new();
        let laptop = bucket.device("laptop", 2);
        assert_eq!(laptop.push().await.unwrap().head, Some(2));
        let own = |report: &CheckpointReport| {
            report
                .cursors
                .iter()
                .find(|(device, _)| *device == laptop.device())
                .map(|(_, seq)| *seq)
        };
        assert_eq!(own(&laptop.write_checkpoint().await.unwrap()), Some(2));
        crate::test_support::set_replay_after(&laptop, 1).await;
        assert_eq!(own(&laptop.write_checkpoint().await.unwrap()), Some(1));
    }

    /// A checkpoint a member signed, the newest, names a real device's
    /// cursor beyond that device's head: no head reaches the seq after
    /// this library's cursor, so it is no gap, and `checkpoint` is not
    /// refused (it was, for as long as that checkpoint stayed the newest).
    /// Of the made-up devices it names, at most [`MAX_UNKNOWN_STREAMS`]
    /// are looked at (each costs a LIST).
    #[tokio::test]
    async fn a_forged_cursor_beyond_a_real_head_refuses_no_checkpoint() {
        let bucket = crate::test_support::Bucket::new();
        let laptop = bucket.device("laptop", 2);
        let desktop = bucket.device("desktop", 1);
        laptop.push().await.unwrap();
        assert_eq!(desktop.push().await.unwrap().head, Some(1));
        laptop.pull().await.unwrap();
        let mut cursors = vec![CheckpointCursor {
            device: *desktop.device().as_bytes(),
            seq: 1000,
            hash: None,
        }];
        cursors.extend((1..=20u8).map(|i| CheckpointCursor {
            device: [i; 16],
            seq: 5,
            hash: None,
        }));
        bucket
            .forge_with_cursors(desktop.device(), 1000, cursors, Vec::new())
            .await;
        let behind = laptop.behind_the_newest_checkpoint().await.unwrap();
        assert_eq!(behind.first(), Some(&(desktop.device(), 2)), "{behind:?}");
        assert_eq!(behind.len(), 1 + MAX_UNKNOWN_STREAMS, "{behind:?}");
        let own = laptop.checkpoint().await.unwrap();
        assert!(own.cursors.contains(&(desktop.device(), 1)), "{own:?}");
    }

    /// The example frame of `docs/FORMAT-checkpoint.md`, section 4.
    #[test]
    fn tombstone_frame_matches_the_documented_bytes() {
        let mut device = [0u8; 16];
        device[15] = 1;
        let record = Record::Tombstone {
            table: "albums".into(),
            row_id: "a1".into(),
            hlc: 5,
            device,
        };
        let mut w = RecordWriter::new(Vec::new());
        w.write(&record).unwrap();
        let (bytes, n) = w.finish().unwrap();
        let mut expected = vec![0x1c, 0, 0, 0, 0x03, 0x06];
        expected.extend(b"albums");
        expected.extend([0x02, b'a', b'1', 0x05]);
        expected.extend(device);
        assert_eq!(bytes, expected);
        assert_eq!(n, 32);
        let mut r = RecordReader::new(bytes.as_slice());
        assert_eq!(r.next_record().unwrap(), Some(record));
        assert_eq!(r.next_record().unwrap(), None);
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Real),
            ".{0,12}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Blob),
        ]
    }

    fn body_record() -> impl Strategy<Value = Record> {
        let name = "[a-z_#]{1,10}";
        prop_oneof![
            (name, name, proptest::collection::vec(value(), 0..6))
                .prop_map(|(table, id, values)| Record::Row { table, id, values }),
            (name, name, name, any::<u64>(), any::<[u8; 16]>()).prop_map(
                |(table, row_id, column, hlc, device)| Record::Stamp {
                    table,
                    row_id,
                    column,
                    hlc,
                    device
                }
            ),
            (name, name, any::<u64>(), any::<[u8; 16]>()).prop_map(
                |(table, row_id, hlc, device)| Record::Tombstone {
                    table,
                    row_id,
                    hlc,
                    device
                }
            ),
            (name, name, name, value()).prop_map(|(table, row_id, column, value)| {
                Record::Parked {
                    table,
                    row_id,
                    column,
                    value,
                }
            }),
            (name, proptest::collection::vec(name, 0..4))
                .prop_map(|(table, columns)| Record::Columns { table, columns }),
            (
                any::<[u8; 16]>(),
                any::<u64>(),
                (any::<u32>(), name, name),
                (0u8..3, any::<bool>()),
                proptest::collection::vec((name, value()), 0..3)
            )
                .prop_map(
                    |(device, hlc, (schema_version, table, row_id), (kind, whole), fields)| {
                        Record::Kept {
                            device,
                            hlc,
                            schema_version,
                            table,
                            row_id,
                            kind,
                            whole,
                            fields,
                        }
                    }
                ),
        ]
    }

    fn header(records: u64) -> CheckpointHeader {
        CheckpointHeader {
            version: CHECKPOINT_FORMAT_VERSION,
            id: "0000000000000001-00".into(),
            writer: [3; 16],
            hlc: 1,
            created_ms: 2,
            schema_version: 3,
            records,
            cursors: vec![CheckpointCursor {
                device: [4; 16],
                seq: 5,
                hash: Some([6; 32]),
            }],
        }
    }

    /// A whole checkpoint plaintext: header, `body`, end marker.
    fn encode(body: &[Record]) -> Vec<u8> {
        let mut w = RecordWriter::new(Vec::new());
        w.write(&Record::Header(header(body.len() as u64))).unwrap();
        for r in body {
            w.write(r).unwrap();
        }
        w.write(&Record::End {
            records: body.len() as u64,
        })
        .unwrap();
        w.finish().unwrap().0
    }

    #[test]
    fn a_format_1_header_reads_with_schema_version_0() {
        let mut w = RecordWriter::new(Vec::new());
        let v1 = CheckpointHeader {
            version: CHECKPOINT_FORMAT_V1,
            ..header(0)
        };
        w.write(&Record::Header(v1.clone())).unwrap();
        w.write(&Record::End { records: 0 }).unwrap();
        let bytes = w.finish().unwrap().0;
        let (h, _) = decode(&bytes).unwrap();
        assert_eq!(
            h,
            CheckpointHeader {
                schema_version: 0,
                ..v1
            }
        );
    }

    /// Reads a whole checkpoint plaintext as a restore does.
    fn decode(bytes: &[u8]) -> Result<(CheckpointHeader, Vec<Record>), CheckpointError> {
        let mut r = RecordReader::new(bytes);
        let header = r.header()?;
        let mut body = Vec::new();
        while let Some(record) = r.body_record(body.len() as u64)? {
            body.push(record);
        }
        Ok((header, body))
    }

    proptest! {
        #[test]
        fn any_checkpoint_round_trips(body in proptest::collection::vec(body_record(), 0..20)) {
            let (h, decoded) = decode(&encode(&body)).unwrap();
            prop_assert_eq!(h, header(body.len() as u64));
            prop_assert_eq!(decoded, body);
        }

        #[test]
        fn every_truncation_is_rejected(
            body in proptest::collection::vec(body_record(), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(&body);
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn a_flipped_byte_never_panics(
            body in proptest::collection::vec(body_record(), 1..6),
            at in any::<prop::sample::Index>(),
            flip in 1u8..,
        ) {
            let mut bytes = encode(&body);
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            // Any result but a panic: the AEAD catches tampering before
            // records are read; this is about malformed plaintext.
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_allocating() {
        let mut bytes = (MAX_RECORD_BYTES + 1).to_le_bytes().to_vec();
        bytes.extend([0u8; 8]);
        let mut r = RecordReader::new(bytes.as_slice());
        assert!(matches!(
            r.next_record().unwrap_err(),
            CheckpointError::Oversized(n) if n == u64::from(MAX_RECORD_BYTES) + 1
        ));
    }

    #[test]
    fn a_frame_longer_than_its_input_allocates_only_what_arrives() {
        let mut bytes = MAX_RECORD_BYTES.to_le_bytes().to_vec();
        bytes.extend([0u8; 8]);
        let mut r = RecordReader::new(bytes.as_slice());
        assert!(matches!(
            r.next_record().unwrap_err(),
            CheckpointError::TruncatedRecord
        ));
        assert!(r.buf.capacity() < 1 << 16, "{}", r.buf.capacity());
    }

    #[test]
    fn a_missing_end_marker_is_truncation() {
        let mut w = RecordWriter::new(Vec::new());
        w.write(&Record::End { records: 1 }).unwrap();
        let (bytes, _) = w.finish().unwrap();
        let mut r = RecordReader::new(bytes.as_slice());
        assert!(r.body_record(0).is_err(), "count mismatch");
        let mut r = RecordReader::new(&bytes[..3]);
        assert!(r.body_record(0).is_err(), "cut inside a length");
        let mut r = RecordReader::new(&[][..]);
        assert!(matches!(
            r.body_record(0).unwrap_err(),
            CheckpointError::NoEndMarker { records: 0 }
        ));
    }
}
