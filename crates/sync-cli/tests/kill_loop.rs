//! The kill loop: the real `bae-sync` binary is killed with SIGKILL at random
//! moments during push, pull, sync, checkpoint and `gc --now`, round after
//! round. After each kill the library passes `PRAGMA integrity_check` and the
//! same command, run again, completes; after the last, every device syncs
//! until quiet and they hold the same rows, every edit included.
//!
//! The delays come from a seeded RNG: the seed is printed, and
//! `BAE_KILL_SEED=N` replays it. `BAE_KILL_ROUNDS=N` runs longer than the
//! CI budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Albums the first device imports before `init`: enough that a checkpoint
/// or a GC takes a second, so a kill can land inside it.
const START_ALBUMS: u64 = 150;
/// Kills in CI on a local-directory bucket (`BAE_KILL_ROUNDS` for more).
const CI_ROUNDS: usize = 25;
/// Kills in CI on the test S3 server: each round costs about twice as much
/// there, and the local test already covers every command.
const CI_ROUNDS_S3: usize = 10;
const DEVICES: [&str; 3] = ["laptop", "desktop", "phone"];
/// The tracks per album `bae-sync demo-import` writes (album ids do not
/// depend on it, but the rows it makes do).
const DEMO_TRACKS: usize = 12;

/// A command the loop kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Push,
    Pull,
    Sync,
    Checkpoint,
    Gc,
}

impl Op {
    const ALL: [Op; 5] = [Op::Push, Op::Pull, Op::Sync, Op::Checkpoint, Op::Gc];

    fn args(self) -> &'static [&'static str] {
        match self {
            Op::Push => &["push"],
            Op::Pull => &["pull"],
            Op::Sync => &["sync"],
            Op::Checkpoint => &["checkpoint"],
            Op::Gc => &["gc", "--now"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Gc => "gc --now",
            other => other.args()[0],
        }
    }
}

/// splitmix64: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

/// Kills and how many of them found the process still running.
#[derive(Default)]
struct Tally {
    kills: usize,
    mid: usize,
}

struct KillLoop<'w> {
    w: &'w World,
    label: &'static str,
    seed: u64,
    rng: Rng,
    libs: Vec<String>,
    /// Albums `0..next_album` of seed 1 are in the library.
    next_album: u64,
    /// The last title set on each album, by album id.
    titles: BTreeMap<String, String>,
    /// How long each command last took when it finished before its kill:
    /// kills are drawn from zero to that.
    full_run: BTreeMap<Op, Duration>,
    tally: BTreeMap<Op, Tally>,
}

impl<'w> KillLoop<'w> {
    fn new(w: &'w World, label: &'static str) -> Self {
        let seed = env_number("BAE_KILL_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        eprintln!("kill loop ({label}): seed {seed} (BAE_KILL_SEED={seed} replays it)");
        let libs = DEVICES
            .iter()
            .map(|d| w.library(d).to_string_lossy().into_owned())
            .collect();
        KillLoop {
            w,
            label,
            seed,
            rng: Rng(seed),
            libs,
            next_album: START_ALBUMS,
            titles: BTreeMap::new(),
            full_run: BTreeMap::new(),
            tally: BTreeMap::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = bin::bae_sync(self.w);
        cmd.args(args)
            // A lock left behind by a killed process must not be waited
            // out: it is a failure of its own.
            .env("BAE_SYNC_LOCK_WAIT", "0");
        cmd
    }

    /// Runs a command that must complete with status 0; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        self.check_completed(args, &out);
        String::from_utf8(out.stdout).unwrap()
    }

    fn check_completed(&self, args: &[&str], out: &Output) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = match out.status.code() {
            Some(0) => return,
            Some(3) => "rejected batches",
            Some(4) => "the library is still locked (stale lock)",
            _ => "failed",
        };
        panic!(
            "{}: bae-sync {args:?} {why} ({}): {stderr}",
            self.context(),
            out.status
        );
    }

    fn context(&self) -> String {
        format!("kill loop ({}), BAE_KILL_SEED={}", self.label, self.seed)
    }

    /// laptop imports and inits; desktop and phone join.
    fn set_up(&self) {
        let key = self.w.key_file().to_string_lossy().into_owned();
        let albums = START_ALBUMS.to_string();
        let laptop = self.libs[0].as_str();
        self.ok(&["demo-import", "--library", laptop, "--albums", &albums]);
        self.ok(&["init", "--library", laptop, "--bucket", &self.w.bucket]);
        self.ok(&["key", "export", "--library", laptop, "--out", &key]);
        for lib in &self.libs[1..] {
            let join = ["join", "--library", lib, "--bucket", &self.w.bucket];
            self.ok(&[&join[..], &["--key-file", &key]].concat());
        }
    }

    /// New albums and a retitled one on `device`, recorded for the final
    /// check.
    fn edit(&mut self, device: usize, round: usize) {
        let lib = self.libs[device].clone();
        let n = 3 + self.rng.below(20);
        let (first, count) = (self.next_album.to_string(), n.to_string());
        self.ok(&[
            "demo-import",
            "--library",
            &lib,
            "--albums",
            &count,
            "--first",
            &first,
        ]);
        self.next_album += n;
        // An album every device has had since it joined.
        let album = album_id(self.rng.below(START_ALBUMS));
        let title = format!("round {round} on {}", DEVICES[device]);
        let assignment = format!("title={title}");
        self.ok(&["set", "--library", &lib, "albums", &album, &assignment]);
        self.titles.insert(album, title);
    }

    fn round(&mut self, round: usize) {
        let op = Op::ALL[self.rng.below(Op::ALL.len() as u64) as usize];
        let device = self.rng.below(DEVICES.len() as u64) as usize;
        let lib = self.libs[device].clone();
        match op {
            // Something to pull: another device's edits, pushed.
            Op::Pull => {
                let other = (device + 1 + self.rng.below(2) as usize) % DEVICES.len();
                self.edit(other, round);
                self.ok(&["push", "--library", &self.libs[other].clone()]);
            }
            // A fresh checkpoint, so GC has batches to delete.
            Op::Gc => {
                self.edit(device, round);
                self.ok(&["checkpoint", "--library", &lib]);
            }
            _ => self.edit(device, round),
        }
        let args = [op.args(), &["--library", lib.as_str()]].concat();
        let full_run = self
            .full_run
            .get(&op)
            .copied()
            .unwrap_or(Duration::from_secs(1));
        let delay = Duration::from_millis(self.rng.below(full_run.as_millis() as u64 + 1));

        let started = Instant::now();
        let mut child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut finished = None;
        while started.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some((status, started.elapsed()));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if finished.is_none() {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let tally = self.tally.entry(op).or_default();
        tally.kills += 1;
        let mid = out.status.signal() == Some(9);
        eprintln!(
            "round {round}: {} on {}, kill at {delay:?}: {}",
            op.name(),
            DEVICES[device],
            if mid { "mid-operation" } else { "had finished" }
        );
        match mid {
            true => tally.mid += 1,
            false => {
                // It finished before the kill: it must have succeeded.
                self.check_completed(&args, &out);
                let took = finished.map_or(started.elapsed(), |(_, t)| t);
                self.full_run.insert(op, took);
            }
        }

        let integrity = integrity_check(&lib);
        assert_eq!(
            integrity,
            "ok",
            "{}: round {round}, {} on {} killed after {delay:?}: integrity_check",
            self.context(),
            op.name(),
            DEVICES[device]
        );
        self.ok(&args);
    }

    /// Syncs every device in turn until a whole pass moves nothing.
    fn sync_until_quiet(&self) {
        for _ in 0..6 {
            let mut quiet = true;
            for lib in &self.libs {
                let out = self.ok(&["sync", "--library", lib]);
                quiet &= out.trim() == "pushed 0 batches, applied 0 batches";
            }
            if quiet {
                return;
            }
        }
        panic!("{}: sync never went quiet", self.context());
    }

    fn assert_converged_with_every_edit(&self) {
        let first = self.ok(&["dump", "--library", &self.libs[0]]);
        for (lib, device) in self.libs.iter().zip(DEVICES).skip(1) {
            let dump = self.ok(&["dump", "--library", lib]);
            assert!(
                dump == first,
                "{}: {device} differs from {} after syncing",
                self.context(),
                DEVICES[0]
            );
        }
        let first_images = images(&self.libs[0]);
        for (lib, device) in self.libs.iter().zip(DEVICES) {
            // Every image row's bytes are there, the same on every device.
            let found = images(lib);
            let differ: Vec<&String> = found
                .keys()
                .chain(first_images.keys())
                .filter(|name| found.get(*name) != first_images.get(*name))
                .collect();
            assert!(
                differ.is_empty(),
                "{}: images on {device} differ from {}'s: {differ:?} (here: {}, there: {})",
                self.context(),
                DEVICES[0],
                found.len(),
                first_images.len()
            );
            let db = rusqlite::Connection::open_with_flags(
                lib,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let albums: u64 = db
                .query_row("SELECT COUNT(*) FROM albums", [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                albums,
                self.next_album,
                "{}: albums on {device}",
                self.context()
            );
            let mut stmt = db.prepare("SELECT id FROM images").unwrap();
            let rows: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                rows.len(),
                found.len(),
                "{}: image files on {device}",
                self.context()
            );
            assert!(rows.iter().all(|id| found.contains_key(id)));
            for (album, title) in &self.titles {
                let found: String = db
                    .query_row("SELECT title FROM albums WHERE id = ?1", [album], |r| {
                        r.get(0)
                    })
                    .unwrap();
                assert_eq!(
                    &found,
                    title,
                    "{}: title of {album} on {device}",
                    self.context()
                );
            }
        }
    }

    fn summary(&self, rounds: usize, took: Duration) -> String {
        let by_command: Vec<String> = self
            .tally
            .iter()
            .map(|(op, t)| format!("{} {} ({} mid)", op.name(), t.kills, t.mid))
            .collect();
        let mid: usize = self.tally.values().map(|t| t.mid).sum();
        format!(
            "kill loop ({}): seed {}, {rounds} rounds, {mid} landed mid-operation; \
             kills by command: {}; {} albums retitled; temp files left by kills: {}; {:.0} s",
            self.label,
            self.seed,
            by_command.join(", "),
            self.titles.len(),
            temp_files(self.w.dir.path()),
            took.as_secs_f64()
        )
    }
}

fn album_id(i: u64) -> String {
    bae_oplog::fixture::demo_album(1, i, DEMO_TRACKS)
        .album_id()
        .unwrap()
        .to_owned()
}

/// The image files next to a library (temp files left by a kill aside),
/// each with the hash of its bytes.
fn images(lib: &str) -> BTreeMap<String, blake3::Hash> {
    let dir = bae_sync_service::images_dir_for(std::path::Path::new(lib));
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".tmp"))
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                blake3::hash(&bytes),
            )
        })
        .collect()
}

/// Temp files under `dir` that a killed process never renamed (the local
/// bucket's `.bae-tmp-*`, the images directories' `.tmp*`): harmless, as
/// listings and image lookups skip them, but never cleaned up.
fn temp_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type().unwrap().is_dir() {
                true => temp_files(&e.path()),
                false => usize::from(name.starts_with(".tmp") || name.starts_with(".bae-tmp")),
            }
        })
        .sum()
}

/// `PRAGMA integrity_check` on a read-only connection, its rows joined.
fn integrity_check(lib: &str) -> String {
    let db = rusqlite::Connection::open_with_flags(lib, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut stmt = db.prepare("PRAGMA integrity_check").unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.join("\n")
}

fn kill_loop(bucket: Bucket, label: &'static str, ci_rounds: usize) {
    let started = Instant::now();
    let w = World::new(bucket, "kill-loop");
    let mut kl = KillLoop::new(&w, label);
    kl.set_up();
    let rounds = env_number("BAE_KILL_ROUNDS").map_or(ci_rounds, |n| n as usize);
    for round in 0..rounds {
        kl.round(round);
    }
    kl.sync_until_quiet();
    kl.assert_converged_with_every_edit();
    let mid: usize = kl.tally.values().map(|t| t.mid).sum();
    eprintln!("{}", kl.summary(rounds, started.elapsed()));
    // A loop whose kills all come too late tests nothing.
    assert!(
        rounds < 8 || mid * 4 >= rounds,
        "{}: only {mid} of {rounds} kills landed mid-operation",
        kl.context()
    );
}

#[test]
fn killed_at_random_moments_on_a_local_bucket_the_devices_recover_and_converge() {
    kill_loop(Bucket::Local, "local", CI_ROUNDS);
}

#[test]
fn killed_at_random_moments_on_s3_the_devices_recover_and_converge() {
    kill_loop(Bucket::S3, "s3", CI_ROUNDS_S3);
}
