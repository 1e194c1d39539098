//! Deterministic simulation (in the spirit of FoundationDB's and
//! TigerBeetle's): a seed drives several devices sharing one in-process
//! bucket through edits, pushes, pulls, checkpoints, GC, late joins and
//! restarts, while the bucket injects faults. When the faults stop and every
//! device has synced, every device must hold the same synced tables, and
//! every acknowledged write must be there (see [`Sim::check`]).
//!
//! Faults, each decided by a hash of (seed, device, request, its count) so
//! a seed replays the same faults whatever order concurrent requests take:
//! - a **crash** of a device at a request boundary: that request and every
//!   later one of the device fail until the harness restarts it (drops its
//!   service and reopens its database from the file);
//! - requests that **fail** transiently, and **puts that land but report
//!   failure** (the response was lost);
//! - **truncated** bodies and **stale or reordered LISTs** (the newest
//!   objects missing, keys out of order);
//! - **clock skew** within the drift bound, and a device beyond it (its
//!   batches are held by the others until their clocks catch up);
//! - a **slow device** that stays away while others checkpoint and GC
//!   (it recovers from the checkpoint), and a **late joiner** that
//!   bootstraps from one.
//!
//! Half the seeds have **two users**: the founder invites a member before
//! the faults start, and the member's devices (the odd ones) read the
//! membership, as `join` does, before they write; every device then checks
//! every batch against the membership chain under the same faults.
//!
//! Two in three of those seeds **remove the member** while the faults are
//! on: from a drawn step the member's devices stop pushing, and a founder
//! device that has applied all they pushed runs `revoke` (a new key
//! epoch, then the removal entry), again at later steps after any failure
//! (a crash half way, a lost reply), from whichever founder device is at
//! hand, until the entry is in the bucket; founder devices may later go
//! back to backups taken before it. The check then follows the chain as
//! the engine does (see [`Removal`]). `BAE_SIM_REVOKE_RACE=1` lets the
//! member push on during the revoke, which the engine does not survive
//! yet (`docs/RELIABILITY.md`).
//!
//! A failing seed prints the line that replays it:
//! `BAE_SIM_SEED=N cargo test -p bae-sync-service --test simulation replay -- --nocapture`.
//! `cargo xtask soak --seconds N` runs seeds for as long as asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_trait::async_trait;
use bae_crypto::IdentitySigningKey;
use bae_crypto::LibraryKey;
use bae_hlc::{DeviceId, Stamp, WallClock};
use bae_membership::Role;
use bae_oplog::fixture::{demo_album, library_as};
use bae_oplog::{
    batch_ops, canonical_dump, BatchSeq, OpKind as Kind, OpRecorder, Value, BAE_SCHEMA,
};
use bae_storage_s3::{MemoryStore, ObjectMeta, ObjectStore, StoreError};
use bae_sync_service::{Member, SyncError, SyncService, GC_GRACE};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Simulated wall time at the start (2027-01-15).
const EPOCH_MS: i64 = 1_800_000_000_000;
/// The drift bound every device applies.
const DRIFT_MS: i64 = bae_hlc::DEFAULT_MAX_DRIFT_MS as i64;

/// Faults injected, by kind.
#[derive(Default, Debug, Clone)]
struct FaultCounts(BTreeMap<&'static str, u64>);

impl FaultCounts {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }
    fn merge(&mut self, other: &FaultCounts) {
        for (k, n) in &other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }
    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// SplitMix64: a deterministic stream from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The library key of a run, from its seed: the founder's identity (and
/// so the member keys in `keys/{member}/…` paths, which fault rolls hash)
/// derives from it, so a random key would change which requests fail.
fn seeded_key(seed: u64) -> LibraryKey {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(seed ^ 0x4B45_5900 ^ i as u64).to_le_bytes());
    }
    LibraryKey::from_bytes(bytes)
}

/// Fault probabilities per request while faults are on.
#[derive(Clone, Copy)]
struct FaultRates {
    crash: f64,
    fail: f64,
    lost_ack: f64,
    truncate: f64,
    stale_list: f64,
    shuffle_list: f64,
}

const RATES: FaultRates = FaultRates {
    crash: 0.004,
    fail: 0.02,
    lost_ack: 0.02,
    truncate: 0.01,
    stale_list: 0.05,
    shuffle_list: 0.05,
};

/// One device's view of the shared bucket, injecting its faults.
#[derive(Debug)]
struct SimStore {
    inner: Arc<MemoryStore>,
    /// Keys in the order they were written, by every device.
    written: Arc<Mutex<Vec<String>>>,
    seed: u64,
    device: u64,
    state: Mutex<StoreState>,
    /// The last bytes put at each `ops/` key, by every device (GC may have
    /// deleted them since): what the removal check reads batches from.
    batches: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// This device's database, read when it puts one of its batches.
    db: PathBuf,
    /// Every field write this device put in a batch, as it read in its
    /// database when put (see [`Sim::roll_back`]).
    published: Mutex<BTreeSet<PublishedField>>,
}

/// A field write as (HLC, table, row, column, value as debug text).
type PublishedField = (bae_hlc::Timestamp, String, String, String, String);

impl SimStore {
    /// Records the field writes of this device's batch `seq`, which it is
    /// putting now (its database holds it under that seq while it pushes).
    fn publish(&self, seq: u64) {
        let Ok(conn) = rusqlite::Connection::open(&self.db) else {
            return;
        };
        let Ok(ops) = batch_ops(&conn, &BAE_SCHEMA, BatchSeq(seq)) else {
            return;
        };
        let mut published = self.published.lock().unwrap();
        for op in ops {
            for (col, value) in op.fields {
                published.insert((
                    op.hlc,
                    op.table.clone(),
                    op.row_id.clone(),
                    col,
                    format!("{value:?}"),
                ));
            }
        }
    }
}

#[derive(Debug, Default)]
struct StoreState {
    faults_on: bool,
    crashed: bool,
    calls: HashMap<(u8, String), u64>,
    injected: FaultCounts,
}

/// What the store decided for one request.
struct Roll {
    fault: f64,
    param: u64,
}

impl SimStore {
    fn roll(&self, kind: u8, key: &str) -> Option<Roll> {
        let mut st = self.state.lock().unwrap();
        let n = st.calls.entry((kind, key.to_owned())).or_default();
        *n += 1;
        let n = *n;
        if !st.faults_on {
            return None;
        }
        // A checkpoint's key ends in a random suffix: the roll leaves it out.
        let stable = match key
            .strip_prefix("checkpoints/")
            .or_else(|| key.strip_prefix("checkpoint-signatures/"))
        {
            Some(rest) => rest.split('-').next().unwrap_or(rest),
            None => key,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, self.device, kind, stable, n).hash(&mut h);
        let mut rng = Rng(h.finish());
        Some(Roll {
            fault: (rng.next() >> 11) as f64 / (1u64 << 53) as f64,
            param: rng.next(),
        })
    }

    fn count(&self, kind: &'static str) {
        self.state.lock().unwrap().injected.add(kind);
    }

    /// Fails if the device has crashed; may crash it now or fail this
    /// request. Returns the roll for the request's own faults.
    fn before(&self, kind: u8, key: &str) -> Result<Option<Roll>, StoreError> {
        if self.state.lock().unwrap().crashed {
            return Err(crashed());
        }
        let Some(roll) = self.roll(kind, key) else {
            return Ok(None);
        };
        let mut p = roll.fault;
        if p < RATES.crash {
            self.state.lock().unwrap().crashed = true;
            self.count("crash");
            return Err(crashed());
        }
        p -= RATES.crash;
        if p < RATES.fail {
            self.count("request failed");
            return Err(StoreError::Transient {
                detail: format!("simulated failure of {key}"),
            });
        }
        Ok(Some(Roll {
            fault: p - RATES.fail,
            param: roll.param,
        }))
    }

    fn crashed(&self) -> bool {
        self.state.lock().unwrap().crashed
    }
}

/// `BAE_SIM_WATCH=SUBSTRING` prints every put and delete of a matching key
/// (to follow one object through a failing seed).
fn watch(device: u64, what: &str, key: &str) {
    if let Some(w) = std::env::var_os("BAE_SIM_WATCH") {
        if key.contains(w.to_string_lossy().as_ref()) {
            eprintln!("  d{device} {what} {key}");
        }
    }
}

fn crashed() -> StoreError {
    StoreError::Transient {
        detail: "simulated crash: the device is down".into(),
    }
}

#[async_trait]
impl ObjectStore for SimStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        watch(self.device, "put", key);
        let roll = self.before(0, key)?;
        self.inner.put(key, bytes).await?;
        self.written.lock().unwrap().push(key.to_owned());
        if key.starts_with("ops/") {
            let mut batches = self.batches.lock().unwrap();
            batches.insert(key.to_owned(), bytes.to_vec());
        }
        if let Ok((device, seq)) = bae_storage_s3::layout::parse_ops_key(key) {
            if device == device_id(self.seed, self.device as usize) {
                self.publish(seq);
            }
        }
        if roll.is_some_and(|r| r.fault < RATES.lost_ack) {
            self.count("put landed, reply lost");
            return Err(StoreError::Transient {
                detail: format!("simulated lost reply for {key}"),
            });
        }
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        let roll = self.before(1, key)?;
        let mut body = self.inner.get(key, max_bytes).await?;
        if let Some(r) = roll.filter(|r| r.fault < RATES.truncate) {
            if !body.is_empty() {
                self.count("truncated body");
                body.truncate((r.param % body.len() as u64) as usize);
            }
        }
        Ok(body)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        self.before(2, key)?;
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.before(3, key)?;
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let roll = self.before(4, prefix)?;
        let mut keys = self.inner.list(prefix).await?;
        if let Some(r) = roll {
            if r.fault < RATES.stale_list {
                // An eventually consistent LIST: the newest few writes under
                // the prefix are not listed yet.
                let hide = 1 + r.param % 3;
                let recent: Vec<String> = self
                    .written
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .filter(|k| k.starts_with(prefix))
                    .take(hide as usize)
                    .cloned()
                    .collect();
                keys.retain(|k| !recent.contains(k));
                if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
                    eprintln!("  d{} stale list of {prefix} hid {recent:?}", self.device);
                }
                self.count("stale list");
            } else if r.fault < RATES.stale_list + RATES.shuffle_list && keys.len() > 1 {
                let mut rng = Rng(r.param);
                for i in (1..keys.len()).rev() {
                    keys.swap(i, rng.below(i as u64 + 1) as usize);
                }
                self.count("list out of order");
            }
        }
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        watch(self.device, "delete", key);
        let roll = self.before(5, key)?;
        self.inner.delete(key).await?;
        if roll.is_some_and(|r| r.fault < RATES.lost_ack) {
            self.count("delete landed, reply lost");
            return Err(StoreError::Transient {
                detail: format!("simulated lost reply for delete of {key}"),
            });
        }
        Ok(())
    }
}

/// One simulated device.
struct Device {
    name: String,
    path: PathBuf,
    /// Its wall clock's offset from simulated time.
    skew_ms: i64,
    store: Arc<SimStore>,
    /// `None` while down (crashed and not restarted, or not joined yet).
    service: Option<SyncService>,
    /// Steps during which the device stays away (no sync).
    away_until: u64,
    /// The step its backup (`{db}.backup`) was taken at, if any.
    backup: Option<u64>,
    /// How many puts the bucket had seen when it last went back to its
    /// backup: only a put after that can hold one of its batches since.
    rolled_back_at: usize,
}

/// One acknowledged field write.
struct FieldWrite {
    field: (String, String, String),
    stamp: Stamp,
    value: Value,
    /// The device that wrote it, and at which step.
    device: usize,
    step: u64,
    /// Lost with a rollback of its device before it was pushed (the
    /// device went back to a state before the write, which no other device
    /// had seen).
    lost: bool,
}

/// What a run did, for the soak summary.
#[derive(Default)]
struct RunStats {
    steps: u64,
    devices: usize,
    users: usize,
    writes: u64,
    faults: FaultCounts,
    restarts: u64,
    errors: u64,
    /// Whether the founder removed the second user.
    revoked: bool,
}

struct Sim {
    seed: u64,
    rng: Rng,
    dir: tempfile::TempDir,
    bucket: Arc<MemoryStore>,
    written: Arc<Mutex<Vec<String>>>,
    batches: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    key: LibraryKey,
    /// The second user's identity, when the seed has two: a member the
    /// founder invites before faults start, who owns the odd devices.
    second_user: Option<IdentitySigningKey>,
    devices: Vec<Device>,
    /// The founder's removal of the second user, when the seed draws one.
    revoke: Option<Revoke>,
    now_ms: i64,
    step: u64,
    next_album: u64,
    /// Every acknowledged field write.
    writes: Vec<FieldWrite>,
    /// Rows some device deleted (directly or by cascade): their fate is
    /// only checked for agreement between devices.
    deleted: BTreeSet<(String, String)>,
    stats: RunStats,
    faults: FaultCounts,
}

impl Sim {
    fn new(seed: u64, devices: usize) -> Sim {
        let mut sim = Sim {
            seed,
            rng: Rng(mix(seed ^ 0x5EED)),
            dir: tempfile::tempdir().unwrap(),
            bucket: Arc::new(MemoryStore::new()),
            written: Arc::new(Mutex::new(Vec::new())),
            batches: Arc::new(Mutex::new(HashMap::new())),
            key: seeded_key(seed),
            second_user: (mix(seed ^ 0x5553_4552) % 2 == 1).then(|| {
                IdentitySigningKey::from_seed(
                    &seeded_key(seed ^ 0x5553_4552).expose_secret().clone(),
                )
            }),
            devices: Vec::new(),
            revoke: None,
            now_ms: EPOCH_MS,
            step: 0,
            next_album: 0,
            writes: Vec::new(),
            deleted: BTreeSet::new(),
            stats: RunStats::default(),
            faults: FaultCounts::default(),
        };
        for i in 0..devices {
            let skew = sim.rng.below(60_000) as i64 - 30_000;
            sim.add_device(i, skew);
        }
        sim.stats.devices = devices;
        sim.stats.users = if sim.second_user.is_some() { 2 } else { 1 };
        sim
    }

    fn add_device(&mut self, i: usize, skew_ms: i64) {
        let name = format!("d{i}");
        let store = Arc::new(SimStore {
            inner: self.bucket.clone(),
            written: self.written.clone(),
            seed: self.seed,
            device: i as u64,
            state: Mutex::new(StoreState::default()),
            batches: self.batches.clone(),
            db: self.dir.path().join(format!("{name}.db")),
            published: Mutex::new(BTreeSet::new()),
        });
        self.devices.push(Device {
            path: self.dir.path().join(format!("{name}.db")),
            name,
            skew_ms,
            store,
            service: None,
            away_until: 0,
            backup: None,
            rolled_back_at: 0,
        });
    }

    fn set_faults(&mut self, on: bool) {
        for d in &self.devices {
            d.store.state.lock().unwrap().faults_on = on;
        }
    }

    /// Opens (or reopens, after a crash) a device's database and service.
    fn start(&mut self, i: usize) {
        let wall = self.now_ms + self.devices[i].skew_ms;
        let d = &mut self.devices[i];
        d.store.state.lock().unwrap().crashed = false;
        let conn = rusqlite::Connection::open(&d.path).unwrap();
        let id = device_id(self.seed, i);
        let rec = library_as(conn, WallClock::Manual(wall), id).unwrap();
        let store: Arc<dyn ObjectStore> = d.store.clone();
        let bucket: Arc<dyn ObjectStore> = self.bucket.clone();
        let founder = common::founder_of(&bucket, &self.key);
        let member = match &self.second_user {
            Some(identity) if i % 2 == 1 => Member::new(identity.clone(), founder.public_key()),
            _ => founder,
        };
        d.service = Some(SyncService::new(rec, store, self.key.clone(), member).unwrap());
    }

    /// A late joiner's first run, as `join` does: the newest checkpoint,
    /// then a pull (which reads the membership first and moves the clock
    /// past its entries). A join that fails leaves nothing, and the next
    /// step that picks the device joins again: before, a member's joiner
    /// whose bootstrap found no checkpoint wrote at once, before it had
    /// read the membership, and its lagging clock stamped its writes
    /// before its invite, so every device refused them (seed 9030).
    ///
    /// A member's joiner first reads the membership and goes on only if
    /// it lists its user, as `join --invite` does (`NotInvited`): before,
    /// a LIST of `membership/` that missed the invite left the joiner on
    /// a chain without its user, and it wrote with a clock never moved
    /// past the invite, so every device refused its batches as not a
    /// member's (seed 12144).
    async fn join(&mut self, i: usize) {
        let r = match self.admitted(i).await {
            Ok(()) => match self.service(i).bootstrap_from_checkpoint().await {
                Ok(_) => self.service(i).pull().await.map(|_| ()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.devices[i].service = None;
            let path = &self.devices[i].path;
            for file in [path.clone(), wal_path(path), path.with_extension("db-shm")] {
                if file.exists() {
                    std::fs::remove_file(&file).unwrap();
                }
            }
        }
        self.note(i, r);
    }

    /// Copies a running device's database aside (between operations, so no
    /// transaction is open): a backup it may go back to later.
    /// For a member's device: whether the membership it reads now lists
    /// its user (a founder's device always is one).
    async fn admitted(&self, i: usize) -> Result<(), SyncError> {
        if self.second_user.is_none() || i.is_multiple_of(2) {
            return Ok(());
        }
        let service = self.service(i);
        let me = service.member_key();
        if service.members().await?.iter().any(|m| m.key == me) {
            Ok(())
        } else {
            Err(SyncError::NotInvited {
                member: Box::new(me),
            })
        }
    }

    fn take_backup(&mut self, i: usize) {
        let d = &mut self.devices[i];
        let backup = backup_path(&d.path);
        std::fs::copy(&d.path, &backup).unwrap();
        let (wal, backup_wal) = (wal_path(&d.path), wal_path(&backup));
        if wal.exists() {
            std::fs::copy(&wal, &backup_wal).unwrap();
        } else if backup_wal.exists() {
            std::fs::remove_file(&backup_wal).unwrap();
        }
        d.backup = Some(self.step);
    }

    /// The device dies and comes back with its backup (a restored backup,
    /// or a power loss that took its newest commits): writes it made since
    /// and had not published are gone; the ones it had published must come
    /// back.
    async fn roll_back(&mut self, i: usize) {
        let Some(since) = self.devices[i].backup else {
            return;
        };
        self.devices[i].service = None;
        let path = self.devices[i].path.clone();
        let device = device_id(self.seed, i);
        let since_put = self.devices[i].rolled_back_at;
        let unpublished = {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut ops = BTreeSet::new();
            for seq in bae_oplog::unpushed_batches(&conn).unwrap() {
                let key = bae_storage_s3::layout::ops_key(&device, seq.0);
                // An upload whose reply was lost is published all the same,
                // and so is one GC has removed since (under a checkpoint:
                // seed 17066, a removed member's batch still unpushed in
                // its database, GC'd under the revoke's checkpoint, taken for
                // unpublished though every founder device had applied it).
                // An object put at the key before the device last went
                // back is an older batch under the same seq (its writes
                // since then number on from the copy until a push re-takes
                // them), not this one (seed 7206).
                if self.written.lock().unwrap()[since_put..].contains(&key) {
                    continue;
                }
                // By row as well as stamp: a device that went back stamps
                // its new writes from the copy's clock, and one running
                // ahead of its wall clock (on its logical counter) gives
                // them the very stamps of the writes it lost, published
                // ones included (seed 8150).
                for op in batch_ops(&conn, &BAE_SCHEMA, seq).unwrap() {
                    ops.insert((op.hlc, op.table, op.row_id));
                }
            }
            ops
        };
        // A write put in a batch is published whatever the seq its
        // database holds it under now: a push that put its batches and
        // failed before recording it looked like a rollback to the next
        // one, whose re-take renumbered the same batches above the
        // bucket's head, unpushed (seed 22878, the harness's: those
        // writes, on every device, were taken for lost).
        let published = self.devices[i].store.published.lock().unwrap().clone();
        for w in &mut self.writes {
            let (table, row, col) = &w.field;
            let put = (
                w.stamp.hlc,
                table.clone(),
                row.clone(),
                col.clone(),
                format!("{:?}", w.value),
            );
            if w.device == i
                && w.step > since
                && unpublished.contains(&(w.stamp.hlc, table.clone(), row.clone()))
                && !published.contains(&put)
            {
                w.lost = true;
            }
        }
        let backup = backup_path(&path);
        std::fs::copy(&backup, &path).unwrap();
        let (wal, backup_wal) = (wal_path(&path), wal_path(&backup));
        if backup_wal.exists() {
            std::fs::copy(&backup_wal, &wal).unwrap();
        } else if wal.exists() {
            std::fs::remove_file(&wal).unwrap();
        }
        let shm = path.with_extension("db-shm");
        if shm.exists() {
            std::fs::remove_file(&shm).unwrap();
        }
        self.devices[i].rolled_back_at = self.written.lock().unwrap().len();
        self.faults.add("went back to a backup");
        if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
            eprintln!(
                "step {} d{i}: went back to its copy of step {since}",
                self.step
            );
        }
        self.start(i);
    }

    /// Moves simulated time on and every running device's wall clock with it.
    async fn tick(&mut self, ms: i64) {
        self.now_ms += ms;
        for d in &self.devices {
            if let Some(s) = &d.service {
                let wall = self.now_ms + d.skew_ms;
                s.with_db(move |rec| {
                    rec.clock().set_wall_millis(wall);
                    Ok(())
                })
                .await
                .unwrap();
            }
        }
    }

    /// One random step.
    async fn step(&mut self) {
        self.step += 1;
        self.stats.steps += 1;
        let ms = self.rng.below(3_000) as i64;
        self.tick(ms).await;
        let i = self.rng.below(self.devices.len() as u64) as usize;
        if self.devices[i].service.is_none() {
            // Down: the next step that picks it restarts it (a late joiner
            // starts from the newest checkpoint).
            let joining = !self.devices[i].path.exists();
            self.start(i);
            self.stats.restarts += 1;
            if joining {
                self.join(i).await;
            }
            return;
        }
        let roll = self.rng.below(100);
        let away = self.step < self.devices[i].away_until;
        if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
            eprintln!(
                "step {} d{i}: roll {roll}{}",
                self.step,
                if away { " (away)" } else { "" }
            );
        }
        match roll {
            0..=44 => self.write(i).await,
            45..=69 if !away && !self.quiet(i) => {
                let r = self.service(i).sync().await.map(|_| ());
                self.note(i, r);
            }
            70..=77 if !away && !self.quiet(i) => {
                let r = self.service(i).push().await.map(|_| ());
                self.note(i, r);
            }
            78..=85 if !away => {
                let r = self.service(i).pull().await.map(|_| ());
                self.note(i, r);
            }
            // A checkpoint pushes first: a member's device that had
            // stopped pushing pushed all the same through it (seed 13171).
            86..=89 if !away && !self.quiet(i) => {
                let r = self.service(i).checkpoint().await.map(|_| ());
                self.note(i, r);
            }
            90..=92 if !away => {
                let now = self.now_ms;
                let r = self.service(i).gc(now, GC_GRACE, true).await.map(|_| ());
                self.note(i, r);
            }
            93..=94 => {
                // The device goes away for a while (others may GC past it).
                self.devices[i].away_until = self.step + 20 + self.rng.below(60);
            }
            95 => {
                // A clock beyond the drift bound for a while.
                self.devices[i].skew_ms = DRIFT_MS + 60_000;
                self.tick(0).await;
            }
            96..=97 if backups_on() => self.take_backup(i),
            98 if backups_on() => self.roll_back(i).await,
            _ => {
                self.devices[i].skew_ms = self.rng.below(60_000) as i64 - 30_000;
                self.tick(0).await;
            }
        }
        if self.devices[i].store.crashed() {
            // The process died at that request: nothing in memory survives.
            self.devices[i].service = None;
        }
    }

    fn service(&self, i: usize) -> &SyncService {
        self.devices[i].service.as_ref().unwrap()
    }

    /// An operation's outcome: errors are expected while faults are on
    /// (the next attempt retries); anything but a store or cancellation
    /// error is a bug the check would also catch, so it is logged.
    fn note(&mut self, i: usize, r: Result<(), SyncError>) {
        if let Err(e) = r {
            self.stats.errors += 1;
            if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
                eprintln!("step {} {}: {e}", self.step, self.devices[i].name);
            }
        }
    }

    /// A recorded edit on device `i`: import an album, retitle one, change
    /// a track, or (rarely) delete an album. Remembers every field write it
    /// acknowledged (committed).
    async fn write(&mut self, i: usize) {
        let choice = self.rng.below(100);
        let pick = self.rng.next();
        let index = self.next_album;
        let seed = self.seed;
        let label = format!("{}-{}", self.devices[i].name, self.step);
        let result = self
            .service(i)
            .with_db(move |rec| {
                let ids = |rec: &mut OpRecorder, table: &str| -> Vec<String> {
                    let mut stmt = rec
                        .sync_parts()
                        .0
                        .prepare(&format!("SELECT id FROM {table} ORDER BY id"))
                        .unwrap();
                    let ids = stmt
                        .query_map([], |r| r.get::<_, String>(0))
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap();
                    ids
                };
                let albums = ids(rec, "albums");
                let mut tx = rec.transaction()?;
                let imported = if albums.len() < 4 || choice < 15 {
                    demo_album(seed, index, 2).write(&mut tx)?;
                    true
                } else if choice < 55 {
                    let a = &albums[(pick % albums.len() as u64) as usize];
                    tx.update("albums", a, &[("title", Value::from(label.as_str()))])?;
                    false
                } else if choice < 95 {
                    drop(tx);
                    let tracks = ids(rec, "tracks");
                    let mut tx = rec.transaction()?;
                    let t = &tracks[(pick % tracks.len() as u64) as usize];
                    tx.update(
                        "tracks",
                        t,
                        &[
                            ("title", Value::from(label.as_str())),
                            ("duration_ms", Value::Integer((pick % 600_000) as i64)),
                        ],
                    )?;
                    let seq = tx.commit()?;
                    return Ok((false, written(rec, seq)?));
                } else {
                    let a = &albums[(pick % albums.len() as u64) as usize];
                    tx.delete("albums", a)?;
                    false
                };
                let seq = tx.commit()?;
                Ok((imported, written(rec, seq)?))
            })
            .await;
        match result {
            Ok((imported, ops)) => {
                if imported {
                    self.next_album += 1;
                }
                self.stats.writes += 1;
                let device = self.service(i).device();
                for op in ops {
                    if let Some(w) = std::env::var_os("BAE_SIM_WATCH") {
                        if op.row_id.contains(w.to_string_lossy().as_ref()) {
                            eprintln!(
                                "  step {} d{i} {:?} {} {} at {}",
                                self.step, op.kind, op.table, op.row_id, op.hlc
                            );
                        }
                    }
                    let stamp = Stamp::new(op.hlc, device);
                    if op.kind == Kind::Delete {
                        self.deleted.insert((op.table.clone(), op.row_id.clone()));
                    }
                    for (col, value) in op.fields {
                        self.writes.push(FieldWrite {
                            field: (op.table.clone(), op.row_id.clone(), col),
                            stamp,
                            value,
                            device: i,
                            step: self.step,
                            lost: false,
                        });
                    }
                }
            }
            Err(e) => panic!("seed {}: a local write failed: {e}", self.seed),
        }
    }

    /// Faults stop, clocks settle and move past the drift bound, every
    /// device comes back and syncs until nothing moves.
    async fn settle(&mut self) -> Result<(), String> {
        for d in &self.devices {
            self.faults.merge(&d.store.state.lock().unwrap().injected);
        }
        self.set_faults(false);
        for i in 0..self.devices.len() {
            self.devices[i].skew_ms = 0;
            self.devices[i].away_until = 0;
            if self.devices[i].service.is_none() {
                let joining = !self.devices[i].path.exists();
                self.start(i);
                if joining {
                    self.service(i).bootstrap_from_checkpoint().await.unwrap();
                }
            }
        }
        self.tick(DRIFT_MS + 120_000).await;
        self.finish_revoke().await?;
        for round in 0..3 {
            for i in 0..self.devices.len() {
                let r = self.service(i).sync().await;
                if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
                    eprintln!(
                        "settle {round} d{i}: {:?}",
                        r.as_ref()
                            .map(|(p, l)| (p.batches, l.applied, l.problems.len()))
                    );
                }
                if let Err(e) = r {
                    return Err(format!(
                        "{} did not sync after the faults stopped (round {round}): {e}",
                        self.devices[i].name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every device holds the same synced tables, no batch is reported as a
    /// problem, and every acknowledged write to a row nobody deleted is
    /// there with the newest value written to its field. After a removal,
    /// the removed member's devices are left out of that (they must hold an
    /// older key epoch than the founder's), their refused batches are the
    /// only problems allowed, and their writes in batches the chain refuses
    /// must be on no device (see [`Removal`]).
    async fn check(&mut self) -> Result<(), String> {
        let removal = self.removal().await?;
        let removed = |i: usize| removal.as_ref().is_some_and(|r| r.removed(i));
        let mut dumps = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let s = d.service.as_ref().unwrap();
            if removed(i) {
                let (held, founders) = (s.key_epoch(), self.service(0).key_epoch());
                if held >= founders {
                    return Err(format!(
                        "{}, removed, holds key epoch {held:?}, the founder's d0 {founders:?}",
                        d.name
                    ));
                }
                continue;
            }
            let dump = s
                .with_db(|rec| Ok(canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?))
                .await
                .unwrap();
            let status = s.status().await.unwrap();
            if !status.problems.is_empty() && std::env::var_os("BAE_SIM_VERBOSE").is_some() {
                eprintln!(
                    "heads in the bucket: {:?}",
                    self.bucket.list("heads/").await
                );
            }
            let problems: Vec<_> = status
                .problems
                .iter()
                .filter(|p| !self.refused_as_removed(p))
                .collect();
            if !problems.is_empty() {
                return Err(format!(
                    "{} still reports problems after settling: {:?}; its cursors: {:?}",
                    d.name, problems, status.devices
                ));
            }
            dumps.push((d.name.clone(), dump));
        }
        for (name, dump) in &dumps[1..] {
            if *dump != dumps[0].1 {
                return Err(format!(
                    "{name} diverged from {}:\n{}",
                    dumps[0].0,
                    first_difference(&dumps[0].1, dump)
                ));
            }
        }
        let s = self.devices[0].service.as_ref().unwrap();
        // The newest surviving write of each field of a row nobody deleted.
        let mut newest: BTreeMap<&(String, String, String), &FieldWrite> = BTreeMap::new();
        let counts = |w: &FieldWrite| removal.as_ref().is_none_or(|r| r.counts(w));
        for w in self.writes.iter().filter(|w| !w.lost && counts(w)) {
            let (t, r, _) = &w.field;
            if self.deleted.contains(&(t.clone(), r.clone())) {
                continue;
            }
            match newest.get(&w.field) {
                // One device can stamp two writes alike (it went back to a
                // backup and its clock ran on its logical counter): merge
                // keeps the greater value.
                Some(n)
                    if n.stamp > w.stamp
                        || (n.stamp == w.stamp
                            && bae_merge::value_order(&n.value, &w.value)
                                != std::cmp::Ordering::Less) => {}
                _ => {
                    newest.insert(&w.field, w);
                }
            }
        }
        let writes: Vec<_> = newest
            .into_iter()
            .map(|((t, r, c), w)| {
                let by = format!("d{} at step {}, {:?}", w.device, w.step, w.stamp);
                (t.clone(), r.clone(), c.clone(), w.value.clone(), by)
            })
            .collect();
        let lost = s
            .with_db(move |rec| {
                let mut lost = String::new();
                for (t, r, c, v, by) in writes {
                    let have: Option<Value> = rec
                        .sync_parts()
                        .0
                        .query_row(&format!("SELECT {c} FROM {t} WHERE id = ?1"), [&r], |row| {
                            Ok(Value::from(row.get_ref(0)?))
                        })
                        .ok();
                    if have.as_ref() != Some(&v) {
                        let _ = writeln!(lost, "{t} {r} {c}: wrote {v:?} ({by}), found {have:?}");
                    }
                }
                Ok(lost)
            })
            .await
            .unwrap();
        if !lost.is_empty() {
            return Err(format!("acknowledged writes lost:\n{lost}"));
        }
        match &removal {
            Some(removal) => self.check_refused(removal).await,
            None => Ok(()),
        }
    }

    /// A problem a founder device reports for good reason: a batch or head
    /// of a removed member's device that the chain refuses.
    fn refused_as_removed(&self, p: &bae_sync_service::ProblemStatus) -> bool {
        let Some(r) = &self.revoke else {
            return false;
        };
        let removed = r.done
            && (1..self.devices.len())
                .step_by(2)
                .any(|i| device_id(self.seed, i).to_string() == p.device);
        removed
            && p.kind == "rejected"
            && ["who is not a member", "past cutoff", "did not list"]
                .iter()
                .any(|why| p.reason.contains(why))
    }

    /// No write of the removed member that the chain refuses is on the
    /// first device (the founder's devices hold the same tables): its field
    /// never holds the refused value, unless a write that counts wrote the
    /// same value.
    async fn check_refused(&self, removal: &Removal) -> Result<(), String> {
        if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
            let member = self.writes.iter().filter(|w| w.device % 2 == 1);
            let refused = member.clone().filter(|w| !removal.counts(w)).count();
            eprintln!(
                "removal: {} field writes of the member, {refused} refused",
                member.count()
            );
        }
        let counted: Vec<(&(String, String, String), &Value)> = self
            .writes
            .iter()
            .filter(|w| !w.lost && removal.counts(w))
            .map(|w| (&w.field, &w.value))
            .collect();
        let refused: Vec<_> = self
            .writes
            .iter()
            .filter(|w| !removal.counts(w) && !counted.contains(&(&w.field, &w.value)))
            .map(|w| (w.field.clone(), w.value.clone(), w.device, w.step))
            .collect();
        let found = self
            .service(0)
            .with_db(move |rec| {
                let mut found = String::new();
                for ((t, r, c), v, device, step) in refused {
                    let have: Option<Value> = rec
                        .sync_parts()
                        .0
                        .query_row(&format!("SELECT {c} FROM {t} WHERE id = ?1"), [&r], |row| {
                            Ok(Value::from(row.get_ref(0)?))
                        })
                        .ok();
                    if have.as_ref() == Some(&v) {
                        let _ = writeln!(found, "{t} {r} {c} = {v:?} (d{device}, step {step})");
                    }
                }
                Ok(found)
            })
            .await
            .unwrap();
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "writes of the removed member that the chain refuses are on d0:\n{found}"
            ))
        }
    }
}

/// The founder's removal of the second user while faults are on. From
/// step `at`, a founder device (whichever is at hand) runs `revoke`, and
/// runs it again at later steps, as a user would after an error, until
/// the removal entry is in the bucket: a run can crash half way (after
/// the new epoch, before the entry), lose the entry's reply, or race the
/// member's pushes and pulls.
struct Revoke {
    /// Its own stream, so a seed without a revoke replays the run it had
    /// before revokes were simulated.
    rng: Rng,
    at: u64,
    done: bool,
}

/// What the removal let count, as the engine decides it: per device of
/// the removed member, the field writes (HLC, table, row, column: the
/// values written) of its batches that the chain accepts (`members.rs`: a
/// writer at the batch's HLC, within the device's cutoff, not an unlisted
/// device claiming an earlier HLC).
struct Removal {
    counted: HashMap<usize, AcceptedFields>,
}

/// Field writes by (HLC, table, row, column), with every value written
/// there: a device that went back to a copy can stamp a later write of a
/// field just as an earlier one (its clock ran on its logical counter),
/// and only the one in an accepted batch counts (seed 100758).
type AcceptedFields = BTreeMap<(bae_hlc::Timestamp, String, String, String), Vec<Value>>;

impl Removal {
    /// Whether `w` counts: a founder's always; a removed member's only in
    /// a batch the chain accepts.
    fn counts(&self, w: &FieldWrite) -> bool {
        let (table, row, column) = &w.field;
        self.counted.get(&w.device).is_none_or(|fields| {
            fields
                .get(&(w.stamp.hlc, table.clone(), row.clone(), column.clone()))
                .is_some_and(|values| values.contains(&w.value))
        })
    }

    fn removed(&self, device: usize) -> bool {
        self.counted.contains_key(&device)
    }
}

impl Sim {
    /// Whether and when this seed revokes: two of three seeds with two
    /// users, at a step in the first three quarters of the run.
    fn plan_revoke(&mut self, steps: u64) {
        if self.second_user.is_none() {
            return;
        }
        let mut rng = Rng(mix(self.seed ^ 0x5245_564F_4B45));
        if rng.below(3) == 0 {
            return;
        }
        let at = 1 + rng.below((steps * 3 / 4).max(1));
        self.revoke = Some(Revoke {
            rng,
            at,
            done: false,
        });
    }

    /// After a step: the pending revoke runs at its step, then again on
    /// one later step in four from a founder device that is up.
    async fn revoke_step(&mut self) {
        let founders = self.devices.len().div_ceil(2) as u64;
        let Some(r) = &mut self.revoke else {
            return;
        };
        if r.done || self.step < r.at || (self.step > r.at && r.rng.below(4) != 0) {
            return;
        }
        let i = 2 * r.rng.below(founders) as usize;
        if self.devices[i].service.is_none() {
            return;
        }
        if !race_revokes() && !self.applied_all_of_the_member(i).await {
            // As a user would before revoking: this device syncs first.
            let r = self.service(i).pull().await.map(|_| ());
            self.note(i, r);
        } else {
            self.run_revoke(i).await;
        }
        if self.devices[i].store.crashed() {
            self.devices[i].service = None;
        }
    }

    /// Whether the member's devices have stopped pushing: from the revoke's
    /// step on, unless `BAE_SIM_REVOKE_RACE=1` (see [`race_revokes`]).
    fn quiet(&self, i: usize) -> bool {
        i % 2 == 1 && !race_revokes() && self.revoke.as_ref().is_some_and(|r| self.step >= r.at)
    }

    /// Whether founder device `i` has applied every batch the member's
    /// devices published (up to the newest head of each in the bucket):
    /// then no other device can have applied one beyond the cutoffs its
    /// revoke records.
    async fn applied_all_of_the_member(&self, i: usize) -> bool {
        let mut heads: HashMap<String, u64> = HashMap::new();
        for key in self.bucket.list("heads/").await.unwrap() {
            let (device, seq) = bae_storage_s3::layout::parse_heads_key(&key).unwrap();
            let member = (1..self.devices.len())
                .step_by(2)
                .any(|j| device_id(self.seed, j) == device);
            if member {
                let newest = heads.entry(device.to_string()).or_default();
                *newest = (*newest).max(seq);
            }
        }
        let cursors = self
            .service(i)
            .with_db(|rec| {
                let conn = rec.sync_parts().0;
                let mut stmt =
                    conn.prepare("SELECT device_id, applied_seq FROM bae_sync_cursors")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
                Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
            })
            .await
            .unwrap();
        heads
            .iter()
            .all(|(device, head)| cursors.get(device).is_some_and(|c| c >= head))
    }

    /// One run of `revoke` on founder device `i`. It is done when the
    /// removal entry is in the bucket (the founder's entry 2: genesis,
    /// invite, removal), whatever the run answered: its reply may be lost.
    async fn run_revoke(&mut self, i: usize) {
        let member = self.second_user.as_ref().unwrap().public_key();
        let r = self.service(i).revoke(member).await;
        let founder = self.service(i).founder_key();
        let removal = bae_storage_s3::layout::membership_key(
            &bae_storage_s3::layout::PublicKeyHex::from_bytes(&founder.to_bytes()),
            2,
        );
        let landed = self.bucket.exists(&removal).await.unwrap();
        if std::env::var_os("BAE_SIM_VERBOSE").is_some() {
            eprintln!(
                "step {} d{i}: revoke {r:?}, removal landed: {landed}",
                self.step
            );
        }
        if landed {
            self.revoke.as_mut().unwrap().done = true;
            self.faults.add("revoke");
            self.stats.revoked = true;
        } else {
            self.faults.add("revoke failed, run again");
        }
        self.note(i, r.map(|_| ()));
    }

    /// The pending revoke, once faults stopped: the user syncs the first
    /// device until it has applied everything the member pushed (as before
    /// any revoke, see [`Self::revoke_step`]), runs it again there, and it
    /// must finish. Run without syncing first, the revoke cut the member's
    /// batches that device's own, from before it went back to a backup,
    /// had built on (seed 81512: its edits of the member's rows waited for
    /// good, and held its later batches with them; the race
    /// `BAE_SIM_REVOKE_RACE` leaves out).
    async fn finish_revoke(&mut self) -> Result<(), String> {
        if self.revoke.as_ref().is_some_and(|r| !r.done) {
            for _ in 0..3 {
                if race_revokes() || self.applied_all_of_the_member(0).await {
                    break;
                }
                let r = self.service(0).sync().await.map(|_| ());
                self.note(0, r);
            }
            if !race_revokes() && !self.applied_all_of_the_member(0).await {
                return Err(
                    "d0 did not apply everything the member pushed in three syncs after the faults stopped, so it cannot revoke".into(),
                );
            }
            self.run_revoke(0).await;
            if !self.revoke.as_ref().unwrap().done {
                return Err("the revoke did not finish after the faults stopped".into());
            }
        }
        Ok(())
    }

    /// The removal as the chain a founder device holds after settling
    /// records it, and the batches the removed member's devices put.
    async fn removal(&self) -> Result<Option<Removal>, String> {
        let Some(second) = &self.second_user else {
            return Ok(None);
        };
        let member = second.public_key();
        let s = self.service(0);
        let (library, founder) = (s.library_id(), s.founder_key());
        let entries = s
            .with_db(|rec| {
                let conn = rec.sync_parts().0;
                let mut stmt = conn.prepare("SELECT entry FROM bae_sync_membership")?;
                let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        let chain = bae_membership::Chain::new(library, founder).validate(
            entries
                .iter()
                .filter_map(|b| bae_membership::SignedEntry::from_bytes(b).ok()),
        );
        let removed = chain.current_role(&member).is_none();
        let revoked = self.revoke.as_ref().is_some_and(|r| r.done);
        if removed != revoked {
            return Err(format!(
                "the harness revoked: {revoked}, d0's chain has the member removed: {removed}"
            ));
        }
        if !removed {
            return Ok(None);
        }
        let mut counted = HashMap::new();
        let batches = self.batches.lock().unwrap().clone();
        for i in (1..self.devices.len()).step_by(2) {
            let device = device_id(self.seed, i);
            let mut fields = AcceptedFields::new();
            for (key, sealed) in &batches {
                let Ok((d, seq)) = bae_storage_s3::layout::parse_ops_key(key) else {
                    continue;
                };
                if d != device {
                    continue;
                }
                let place = bae_crypto::ObjectPlace {
                    kind: bae_crypto::ObjectKind::OpBatch,
                    device: *device.as_bytes(),
                    seq,
                };
                let plain = bae_crypto::open_object(
                    &(bae_crypto::KeyEpoch::FIRST, &self.key),
                    &place,
                    sealed,
                )
                .map_err(|e| format!("{key} does not open: {e}"))?;
                let signed = bae_membership::SignedObject::from_bytes(&plain)
                    .and_then(|o| {
                        o.verify(
                            library,
                            (bae_membership::SignedKind::Batch, device, seq),
                            bae_crypto::KeyEpoch::FIRST,
                        )
                    })
                    .map_err(|e| format!("{key}: {e}"))?;
                let hlc = signed.header().hlc;
                let counts = chain.can_write(&member, hlc)
                    && chain.cutoff_for(device, &member).is_none_or(|c| seq <= c)
                    && !chain.unlisted_before_cut_off(device, &member, hlc);
                if counts {
                    let batch = bae_oplog::decode_batch(signed.body(), &BAE_SCHEMA)
                        .map_err(|e| format!("{key}: {e}"))?;
                    for op in batch.ops {
                        for (column, value) in op.fields {
                            fields
                                .entry((op.hlc, op.table.clone(), op.row_id.clone(), column))
                                .or_default()
                                .push(value);
                        }
                    }
                }
            }
            counted.insert(i, fields);
        }
        Ok(Some(Removal { counted }))
    }
}

/// Whether devices go back to backups: `BAE_SIM_BACKUPS=0` turns that
/// fault off (to tell its findings from the others').
fn backups_on() -> bool {
    std::env::var("BAE_SIM_BACKUPS").map_or(true, |v| v != "0")
}

/// `BAE_SIM_REVOKE_RACE=1`: the member's devices go on pushing while the
/// founder revokes, and the revoking device does not wait until it has
/// applied everything they pushed. The engine does not survive that yet:
/// a remaining device that applied a batch beyond the revoker's cutoff
/// keeps it while the others refuse it (`docs/RELIABILITY.md`, Open).
fn race_revokes() -> bool {
    std::env::var("BAE_SIM_REVOKE_RACE").is_ok_and(|v| v == "1")
}

/// Whether two-user seeds may remove the member: `BAE_SIM_REVOKES=0`
/// turns that off (the regression seeds found before removals were
/// simulated replay that way).
fn revokes_on() -> bool {
    std::env::var("BAE_SIM_REVOKES").map_or(true, |v| v != "0")
}

/// Device ids from the seed: bucket keys, and so the faults they draw, are
/// the same on every replay.
fn device_id(seed: u64, i: usize) -> DeviceId {
    DeviceId::from_bytes((u128::from(mix(seed)) << 64 | i as u128).to_be_bytes())
}

fn backup_path(db: &std::path::Path) -> PathBuf {
    db.with_extension("db.backup")
}

fn wal_path(db: &std::path::Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The ops a committed batch recorded (none for an empty transaction).
fn written(rec: &mut OpRecorder, seq: Option<BatchSeq>) -> Result<Vec<bae_oplog::Op>, SyncError> {
    let Some(seq) = seq else {
        return Ok(Vec::new());
    };
    let (conn, _, _) = rec.sync_parts();
    Ok(batch_ops(conn, &BAE_SCHEMA, seq)?)
}

fn first_difference(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..a.len().max(b.len()) {
        if a.get(i) != b.get(i) {
            return format!(
                "line {i}: {:?}\n   vs: {:?}",
                a.get(i).unwrap_or(&"<end>"),
                b.get(i).unwrap_or(&"<end>")
            );
        }
    }
    "no line differs".into()
}

/// Runs one seed to the end; returns its stats, or the failure with the
/// line that replays it.
/// `revokes`: whether the seed may draw a removal (regression seeds found
/// before removals were simulated replay their runs without).
async fn run_seed(seed: u64, steps: u64, revokes: bool) -> Result<RunStats, String> {
    let devices = 2 + (mix(seed) % 3) as usize;
    let mut sim = Sim::new(seed, devices);
    if revokes {
        sim.plan_revoke(steps);
    }
    sim.start(0);
    if let Some(second) = &sim.second_user {
        let key = second.public_key();
        sim.service(0).invite(key, Role::Member).await.unwrap();
    }
    // A late joiner: its database does not exist until it first runs.
    let late = devices - 1;
    for i in 1..late {
        sim.start(i);
        if sim.second_user.is_some() && i % 2 == 1 {
            // As `join` does: the new member's device reads the membership
            // that admits it before it writes.
            sim.service(i).pull().await.unwrap();
        }
    }
    sim.set_faults(true);
    for _ in 0..steps {
        sim.step().await;
        sim.revoke_step().await;
    }
    // A device stuck after the faults stopped fails its seed (so a soak
    // counts it and goes on) like a divergence.
    let settled = sim.settle().await;
    let faults = sim.faults.clone();
    let checked = match settled {
        Ok(()) => sim.check().await,
        Err(why) => Err(why),
    };
    match checked {
        Ok(()) => {
            sim.stats.faults = faults;
            Ok(std::mem::take(&mut sim.stats))
        }
        Err(why) => Err(format!(
            "seed {seed} diverged ({devices} devices, {steps} steps): {why}\n\
             replay: {}BAE_SIM_SEED={seed} BAE_SIM_STEPS={steps} cargo test -p bae-sync-service --test simulation replay -- --nocapture",
            if revokes { "" } else { "BAE_SIM_REVOKES=0 " }
        )),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // `RUST_LOG=warn` (or finer) shows what the engine did in a replay.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds that once diverged, with their steps, each fixed since:
/// - 4, 123: a device that missed a GC'd range but had applied batches the
///   checkpoint's writer had not refused to recover, and a checkpoint that
///   lacked rows inserted by those batches was refused as unexplained;
/// - 13, 54, 128: the newest checkpoint (written by a device whose clock ran
///   ahead) did not cover the GC'd range and recovery tried no older one.
/// - 5000, 5024, 5025: after going back to a backup, a push that read one
///   of its own batches damaged (a truncated body) took it for garbage and
///   overwrote it, though other devices had applied it.
/// - 6014: a device went back to a copy taken before batches its own GC
///   had since removed (a checkpoint covers them); the re-take recorded
///   its head without their writes, so it lacked them for good.
/// - 5003, 5023, 5026: a re-taken own batch held (its row's insert, by
///   another device, not here yet) stopped the re-take before renumbering,
///   so the push failed and the recovery that would bring the insert was
///   refused; the re-take now goes on and later pulls apply held ones.
/// - 5004, 5007, 5016, 6002, 6010: a recovery's replace refused every
///   checkpoint that lacked a row a re-taken own batch inserted (not in
///   the op log, so neither replayed nor counted as explained).
/// - 7206: the harness's fault, not the engine's: a write made after going
///   back to a backup, never pushed, counted as published because an older
///   batch of the device sat under its seq; it is now published only if
///   the key was put since the device last went back.
/// - 6014, 6019: a device that re-took its own batches after going back
///   recovered from a checkpoint older than them; they are not in its op
///   log, so the restore's replay did not bring their writes back.
/// - 7208: a push put a batch but not its head (the reply lost) and the
///   device went back to a copy from before a range its GC had removed;
///   the re-take read up to the gap only and renumbered the local batches
///   over the one above the head, losing its writes.
/// - 8015, 8079: a recovery restored a checkpoint behind this device's
///   re-taken own batches, and the read that applies them again after the
///   restore failed: nothing recorded they were still to apply, so their
///   writes stayed reverted on that device alone.
/// - 8150: the harness's fault, not the engine's: a device that went back
///   stamps new writes from the copy's clock, the very stamps (its clock
///   ran on its logical counter) of writes it had published; the harness
///   took those published writes for lost ones. Lost writes now match by
///   row as well as stamp.
/// - 9030: the harness's fault: a member's late joiner whose bootstrap
///   found no checkpoint wrote before it had read the membership (`join`
///   reads it first), and its lagging clock stamped its writes before its
///   invite.
/// - 10071: a device went back to the same copy twice and wrote a track
///   title after each; its clock, restored from the copy, stamped both
///   writes alike, and each device kept the value it saw first. Equal
///   stamps now go to the greater value (`bae_merge::value_order`).
/// - 11075: a re-take left the own cursor before own batches it held (for
///   drift); the device went back to a copy taken while they waited, and
///   the next re-take, holding a later batch, moved the cursor past them:
///   their writes were never applied on that device.
/// - 11214: a device went back to a copy, a pull's stale LIST of `heads/`
///   missed its newest head and GC had removed its batches above the
///   copy; the push after the pull trusted that one LIST and wrote new
///   batches at seqs the other device had applied (a fork). The first
///   push of a service now LISTs its own heads as well.
/// - 12144: the harness's fault: a member's late joiner whose LIST of
///   `membership/` missed its invite joined all the same (`join --invite`
///   refuses: `NotInvited`) and wrote before its clock had moved past the
///   invite; every device refused its batches. The joiner now checks the
///   membership lists its user first.
/// - 12251, 12140: a device GC'd under its own checkpoint while a newer
///   one, written by a device whose clock ran beyond the drift bound, did
///   not verify there yet; it covered less of one stream, and a device
///   that later recovered from it reported the batch only the older one
///   covered as a gap for good. GC now waits while a newer checkpoint is
///   held for drift.
const REGRESSIONS: &[(u64, u64)] = &[
    (4, 300),
    (13, 300),
    (54, 300),
    (123, 300),
    (128, 300),
    (5000, 300),
    (5003, 300),
    (5004, 300),
    (5007, 300),
    (5016, 300),
    (5023, 300),
    (5024, 300),
    (5025, 300),
    (5026, 300),
    (6002, 300),
    (6010, 300),
    (6014, 300),
    (6019, 300),
    (7206, 300),
    (7208, 300),
    (8015, 300),
    (8079, 300),
    (8150, 300),
    (9030, 300),
    (10071, 300),
    (11075, 300),
    (11214, 300),
    (12144, 300),
    (12140, 300),
    (12251, 300),
];

/// Seeds that once diverged with a removal of the member (run with
/// removals on), each fixed since:
/// - 12003: the founder's only device restarted after its revoke (no key
///   store) and sealed under the retired epoch: its cached chain named no
///   epoch it lacked, so it never looked for its new key blob;
/// - 12190, 12032: the same, when the first look read the blob damaged
///   or its LIST missed it;
/// - 12127, 12209: a founder device read a removed member's stream past
///   the cutoff and took a batch their GC removed for a gap to recover;
/// - 13171: the harness's fault: a member's device that had stopped
///   pushing (from the revoke's step) pushed through a checkpoint, past
///   the cutoff, and a founder device applied it before it saw the
///   removal (the race the harness leaves out on purpose).
/// - 15076, 14107: the member's device GC'd its batches under its own
///   checkpoint, the only one holding them; once it was removed that
///   checkpoint stopped counting, and a founder device that had not
///   applied them reported them as a gap (and held the revoker's updates
///   of rows they inserted) for good. The revoke now writes a checkpoint
///   first;
/// - 12038: the same, where the revoke's reply was lost after the removal
///   landed and the only founder device then went back to a copy from
///   before it had applied the member's batch: a checkpoint written after
///   the removal never was; the one written before it holds the batch;
/// - 14014, 13072: the removed member's device, which cannot open the
///   removal, checkpointed (newer than the revoke's, its clock ahead) and
///   GC'd under it, deleting the revoke's checkpoint and batches only that
///   one held for the founder devices. GC now waits while a membership
///   entry does not open;
/// - 14159 (no removal in its run, found with removals on): a device
///   with a gap wrote a checkpoint because the one LIST of its pull
///   missed the older checkpoint that held the gap, and its GC deleted
///   that one. `checkpoint` now pulls again (a second LIST) first.
/// - 16172 (no removal in its run, found with removals on): a push put
///   batches but lost the reply of the last (so no head named them), and
///   the device went back to a copy taken at its previous head; with no
///   head above its state and nothing unpushed, no push looked past it,
///   and those acknowledged writes were on no device. The first push of
///   a service now looks for its next batch too.
/// - 16122: a founder device's revoke failed writing the new epoch's key
///   blob after it had adopted the key; the revoke run again on the
///   other founder device made a second key for epoch 1, and the first
///   device sealed under its own (no one else could open its objects, and
///   it could not open the removal). A rotation now adopts its key only
///   once this member's blob of it is in the bucket.
/// - 14066: a founder device's revoke started epoch 1 (its blob landed)
///   and failed writing the removal; the revoke run again on the other
///   founder device looked for newer blobs with a LIST that missed it,
///   made a second key for epoch 1 and replaced the blob. A rotation now
///   looks for its epoch's blob by name and rotates past it.
/// - 17066: the harness's fault: a removed member's device went back to a
///   copy; a batch of it that it had put (still unpushed locally) and GC had
///   removed since, under the revoke's checkpoint, was taken for
///   unpublished because its object was gone, and its write, applied by
///   every founder device, for lost. A batch put since the device last
///   went back now counts as published whether or not GC removed it.
/// - 17277 (no removal in its run, found with removals on): after going
///   back, a re-take read the device's first batch above its copy damaged
///   twice, stopped there and found its head above: the head was recorded
///   and the batches up to it never applied on that device. A read that
///   stops below a valid head now leaves the own cursor there.
/// - 18289: the revoke's checkpoint (written without a push) held a track
///   write the founder's device had not pushed; the device then went back
///   to a copy from before it, so the write was in that checkpoint and in
///   no batch, and came back only through a recovery from it (the check
///   saw the step-89 value it overtook as lost). A checkpoint now pushes
///   the batches its snapshot holds before it is uploaded.
/// - 19343: the revoking founder device had the member's writes from a
///   checkpoint (a recovery after going back to a copy) and had never
///   verified a signed object of the member's device, so its removal
///   listed no cutoff for that device: every batch of it was refused,
///   though the other founder device (and the revoker) held their writes.
///   The revoke now binds every device it applied batches of first.
/// - 22878 (no removal in its run, found with removals on): the harness's
///   fault: a push put two batches and their head and failed before
///   recording them; the next push took the head for a rollback and its
///   re-take renumbered the same two batches above it, unpushed, and when
///   the device then went back to a copy the harness took their writes
///   (published, on every device) for lost. A write put in a batch now
///   counts as published whatever seq its database holds it under.
/// - 23336: a founder device restored a checkpoint while its own batches
///   after the checkpoint's cursor were held at replay (written while its
///   clock ran beyond the drift bound); its revoke's checkpoint, written
///   before they replayed, claimed them without their writes, and the
///   other founder device, which restored it, never applied them. A
///   checkpoint's own cursor now stops where a pending replay starts.
/// - 24347: a founder device went back to a copy from before the revoke
///   (without epoch 1's key); every LIST of its key blobs missed epoch 1's,
///   so its own head sealed under epoch 1 did not open twice, was passed
///   over, and the push rewrote batches the others had applied (a fork).
///   An own object naming an epoch whose key blob is there (looked up by
///   name) now fails the push instead.
/// - 30086: the founder device, back on an old copy, pulled without a
///   push (no re-take of its own import); the member's update of a track
///   of it waited and the member's later batches applied past it, beyond
///   the cursor the revoke took as the cutoff, so the revoker held writes
///   the chain refuses (titles that overtook counted ones). A device's
///   batches now apply in seq order.
/// - 93289 (no removal in its run): a device went back to a copy from
///   before a range GC had removed and recovered from a checkpoint whose
///   cursor for it is 22; it had no link for its batch 22, so its own
///   checkpoint, written while the restore's replay waited, named 22
///   with no hash, and a device that recovered from that one found batch
///   23's predecessor mismatched for good. The restore now records the
///   checkpoint's link where the device has none.
/// - 100758: the harness's: the removed member's device went back to a
///   copy and stamped a write past its cutoff exactly as one of its
///   counted writes to the same field (its clock on its logical counter);
///   the harness matched counted writes by stamp and row, took the
///   refused one for counted, and expected its value (the greater one on
///   an equal stamp). Counted writes are now matched by value too.
/// - 101031 (no removal in its run): every head of a device was missing
///   from the LIST of a pull, so a checkpoint written after it lacked
///   that device's range, which GC had removed under the older one; its
///   writer's GC then deleted the older, the range's only copy.
///   `checkpoint` now also looks at the streams the newest checkpoint
///   holds further than this library has applied.
const REVOKE_REGRESSIONS: &[(u64, u64)] = &[
    (12003, 300),
    (12032, 300),
    (12038, 300),
    (12127, 300),
    (12190, 300),
    (12209, 300),
    (13072, 300),
    (13171, 300),
    (14014, 300),
    (14066, 300),
    (14107, 300),
    (14159, 300),
    (15076, 300),
    (16122, 300),
    (17066, 300),
    (17277, 300),
    (16172, 300),
    (18289, 300),
    (19343, 300),
    (22878, 300),
    (23336, 300),
    (24347, 300),
    (30086, 300),
    (40816, 300),
    (51843, 300),
    (51796, 300),
    (50398, 300),
    (81512, 300),
    (93256, 300),
    (93289, 300),
    (100758, 300),
    (101031, 300),
];

/// The fixed seeds CI runs, and the regression seeds.
#[test]
fn fixed_seeds_converge_without_losing_a_write() {
    let rt = runtime();
    let mut faults = FaultCounts::default();
    let fixed = (1..=6).map(|seed| (seed, 150, true));
    let regressions = REGRESSIONS
        .iter()
        .map(|&(seed, steps)| (seed, steps, false));
    let removals = REVOKE_REGRESSIONS
        .iter()
        .map(|&(seed, steps)| (seed, steps, true));
    let mut revoked = 0;
    for (seed, steps, revokes) in fixed.chain(regressions).chain(removals) {
        match rt.block_on(run_seed(seed, steps, revokes)) {
            Ok(stats) => {
                faults.merge(&stats.faults);
                revoked += u64::from(stats.revoked);
            }
            Err(why) => panic!("{why}"),
        }
    }
    // The harness is only worth something if it injected faults.
    assert!(faults.total() > 0, "no fault injected");
    assert!(revoked > 0, "no seed removed a member");
}

/// Replays one seed: `BAE_SIM_SEED=N [BAE_SIM_STEPS=S]`.
#[test]
fn replay() {
    let Some(seed) = env_u64("BAE_SIM_SEED") else {
        return;
    };
    let steps = env_u64("BAE_SIM_STEPS").unwrap_or(150);
    match runtime().block_on(run_seed(seed, steps, revokes_on())) {
        Ok(s) => println!(
            "seed {seed}: converged; {} devices of {} users{}, {} steps, {} writes, {} restarts, {} failed operations; faults: {}",
            s.devices,
            s.users,
            if s.revoked { ", the second removed" } else { "" },
            s.steps,
            s.writes,
            s.restarts,
            s.errors,
            s.faults
        ),
        Err(why) => panic!("{why}"),
    }
}

/// `cargo xtask soak --seconds N`: seeds from `BAE_SOAK_FIRST_SEED`
/// (default 1000) for `BAE_SOAK_SECONDS`; prints a summary and fails with
/// every diverging seed's replay line.
#[test]
#[ignore = "long; run by `cargo xtask soak`"]
fn soak() {
    let seconds = env_u64("BAE_SOAK_SECONDS").unwrap_or(60);
    let first = env_u64("BAE_SOAK_FIRST_SEED").unwrap_or(1000);
    let steps = env_u64("BAE_SIM_STEPS").unwrap_or(300);
    let rt = runtime();
    let start = std::time::Instant::now();
    let (mut seeds, mut devices, mut writes) = (0u64, 0usize, 0u64);
    let (mut two_user_seeds, mut revoked) = (0u64, 0u64);
    let mut faults = FaultCounts::default();
    let mut failures = Vec::new();
    let mut seed = first;
    while start.elapsed().as_secs() < seconds {
        match rt.block_on(run_seed(seed, steps, revokes_on())) {
            Ok(s) => {
                devices += s.devices;
                two_user_seeds += u64::from(s.users == 2);
                revoked += u64::from(s.revoked);
                writes += s.writes;
                faults.merge(&s.faults);
            }
            Err(why) => {
                eprintln!("{why}");
                failures.push(seed);
            }
        }
        seeds += 1;
        seed += 1;
    }
    println!(
        "soak: {seeds} seeds ({first}..{seed}) in {} s ({two_user_seeds} of them with two users, {revoked} with a removal), {devices} simulated devices, {writes} acknowledged writes, {steps} steps each; faults injected: {} ({}); divergences: {}",
        start.elapsed().as_secs(),
        faults.total(),
        faults,
        failures.len()
    );
    assert!(failures.is_empty(), "diverging seeds: {failures:?}");
}
