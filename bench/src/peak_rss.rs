//! `peak_rss_push`, `peak_rss_pull`, `peak_rss_checkpoint`: peak resident
//! memory of the real operations, each a `bae-sync` command in a child
//! process of its own, on a library of 1,000 albums and of 10,000 (`--quick`:
//! 100 and 1,000). Memory must not grow with the library: the entry's
//! ratio is the larger library's peak ÷ the smaller's (target: under 2 for
//! a library 10 times larger). Not a timing; one run of each size.
//!
//! The peak is the child's `ru_maxrss` as `wait4` reports it when the
//! child is reaped: exact for that one process (its high-water mark of
//! resident pages), unlike sampling `/proc` while it runs. Linux starts a
//! child's `ru_maxrss` at the resident size of the process it was forked
//! from (the high-water mark of the old address space is kept across
//! `exec`), and this bench process holds hundreds of MB by the time these
//! entries run: every command is therefore started by a fresh, small
//! launcher (`bae-bench --peak-of`, [`launch`]), which spawns `bae-sync`,
//! reaps it and writes its peak to a file. The launcher's own few MB are
//! the floor of every figure, the same at both sizes.
//!
//! One scenario gives all three (it is run once for both sizes and shared):
//! device A `init`s an empty library; device B `join`s it empty; the demo
//! albums are imported into A (in this process, without images or files);
//! then, each measured: A `push`es them (one batch per album), B `pull`s
//! the backlog, A writes a `checkpoint`, A runs `gc --now`, and a new
//! device C `join`s from the checkpoint. The three devices' dumps must be
//! equal. `--scale` runs the same scenario at 10,000 albums, with an edit
//! B makes and syncs back first, and prints every step's time and peak and
//! the sizes it saw.

use crate::report::{Entry, Size};
use bae_oplog::fixture::{demo_album, open_library, Library};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

const MB: f64 = 1024.0 * 1024.0;

/// The most the larger library's peak may be, as a multiple of the
/// smaller's.
const TARGET_RATIO: f64 = 2.0;

/// One measured `bae-sync` command.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: &'static str,
    pub peak_mb: f64,
    pub secs: f64,
}

/// What one scenario saw.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub albums: u64,
    pub import_secs: f64,
    pub steps: Vec<Step>,
    /// Bytes: the bucket, A's database, C's database, the checkpoint.
    pub sizes: Vec<(&'static str, u64)>,
}

impl Scenario {
    fn step(&self, name: &str) -> Result<&Step, String> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("no step {name}"))
    }

    /// Prints every step, one line each.
    pub fn print(&self) {
        eprintln!(
            "scale: {} albums: import {:.1} s (in process)",
            self.albums, self.import_secs
        );
        for s in &self.steps {
            eprintln!(
                "scale: {:>10}: {:8.1} s, peak {:7.1} MB",
                s.name, s.secs, s.peak_mb
            );
        }
        for (what, bytes) in &self.sizes {
            eprintln!("scale: {what}: {:.1} MB", *bytes as f64 / MB);
        }
    }
}

/// The scenario at both sizes, run once for the three entries.
type Pair = Result<(Scenario, Scenario), String>;
static PAIR: OnceLock<Pair> = OnceLock::new();

fn pair(size: Size) -> Result<&'static (Scenario, Scenario), String> {
    PAIR.get_or_init(|| {
        let (small, large) = size.pick((100, 1_000), (1_000, 10_000));
        let small = scenario(small, false)?;
        small.print();
        let large = scenario(large, false)?;
        large.print();
        Ok((small, large))
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn entry(size: Size, name: &str, steps: &[&str]) -> Result<Entry, String> {
    let (small, large) = pair(size)?;
    // The entry's figure is the step with the largest peak among `steps`;
    // details list each.
    let peak = |s: &Scenario| -> Result<f64, String> {
        steps
            .iter()
            .map(|n| s.step(n).map(|st| st.peak_mb))
            .try_fold(0.0f64, |m, p| p.map(|p| m.max(p)))
    };
    let mut e = Entry::new(
        name,
        peak(large)?,
        peak(small)?,
        &format!("the same at {} albums", small.albums),
        "MB",
    );
    let mut details = serde_json::Map::new();
    details.insert("target_ratio".into(), TARGET_RATIO.into());
    details.insert("albums".into(), vec![small.albums, large.albums].into());
    if size == Size::Quick {
        details.insert("quick".into(), "smaller sizes than the full run".into());
    }
    for n in steps {
        let (a, b) = (small.step(n)?, large.step(n)?);
        details.insert(
            format!("{n}_mb"),
            serde_json::json!([round(a.peak_mb), round(b.peak_mb)]),
        );
        details.insert(
            format!("{n}_s"),
            serde_json::json!([round(a.secs), round(b.secs)]),
        );
    }
    e.details = Some(details.into());
    Ok(e)
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn peak_rss_push(size: Size) -> Result<Entry, String> {
    entry(size, "peak_rss_push", &["push"])
}

pub fn peak_rss_pull(size: Size) -> Result<Entry, String> {
    entry(size, "peak_rss_pull", &["pull", "join"])
}

pub fn peak_rss_checkpoint(size: Size) -> Result<Entry, String> {
    entry(size, "peak_rss_checkpoint", &["checkpoint"])
}

/// `bae-bench --scale`: the scenario at 10,000 albums with a round trip of
/// edits, printed.
pub fn scale(albums: u64) -> Result<(), String> {
    let s = scenario(albums, true)?;
    s.print();
    eprintln!("scale: the three devices converged");
    Ok(())
}

/// The `bae-sync` built beside this binary (`cargo build --release -p
/// bae-sync-cli`; `cargo xtask bench` builds both).
fn bae_sync_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("bae-sync");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build it with cargo build --release -p bae-sync-cli",
            bin.display()
        ))
    }
}

/// Runs the scenario (module docs) on `albums` demo albums.
pub fn scenario(albums: u64, edits: bool) -> Result<Scenario, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let cli = Cli {
        bin: bae_sync_binary()?,
        dir: dir.path().to_path_buf(),
    };
    let lib = |n: &str| dir.path().join(format!("{n}.db")).display().to_string();
    let (a, b, c) = (lib("a"), lib("b"), lib("c"));
    let bucket = dir.path().join("bucket").display().to_string();
    let key = dir.path().join("library.key").display().to_string();
    let mut steps = Vec::new();
    cli.run(&["init", "--library", &a, "--bucket", &bucket])?;
    cli.run(&["key", "export", "--library", &a, "--out", &key])?;
    let join = |lib| join_args(lib, &bucket, &key);
    cli.run(&join(&b))?;

    let start = Instant::now();
    let mut library = Library::new(open_library(Path::new(&a)).map_err(|e| err(&e))?);
    for i in 0..albums {
        library
            .import_album(&demo_album(1, i, 12))
            .map_err(|e| err(&e))?;
    }
    drop(library);
    let import_secs = start.elapsed().as_secs_f64();

    steps.push(cli.measure("push", &["push", "--library", &a])?);
    steps.push(cli.measure("pull", &["pull", "--library", &b])?);
    if edits {
        let album = demo_album(1, 0, 12);
        let id = album.album_id().unwrap_or_default().to_owned();
        cli.run(&["set", "--library", &b, "albums", &id, "title=Edited on B"])?;
        steps.push(cli.measure("sync B", &["sync", "--library", &b])?);
        steps.push(cli.measure("sync A", &["sync", "--library", &a])?);
    }
    steps.push(cli.measure("checkpoint", &["checkpoint", "--library", &a])?);
    steps.push(cli.measure("gc", &["gc", "--library", &a, "--now"])?);
    steps.push(cli.measure("join", &join(&c))?);
    if edits {
        steps.push(cli.measure("sync B", &["sync", "--library", &b])?);
    }
    let mut dumps = Vec::new();
    for l in [&a, &b, &c] {
        cli.run(&["dump", "--library", l])?;
        dumps.push(cli.out_hash()?);
    }
    if dumps.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("{albums} albums: the devices' dumps differ"));
    }
    if edits {
        let dump = std::fs::read_to_string(dir.path().join("stdout")).map_err(|e| err(&e))?;
        if !dump.contains("Edited on B") {
            return Err("the third device does not have B's edit".into());
        }
    }
    let size_of = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let checkpoint = newest_checkpoint_bytes(&dir.path().join("bucket"));
    Ok(Scenario {
        albums,
        import_secs,
        steps,
        sizes: vec![
            ("bucket after gc", dir_bytes(&dir.path().join("bucket"))),
            ("checkpoint", checkpoint),
            ("database A", size_of(&a)),
            ("database C", size_of(&c)),
        ],
    })
}

/// `join --library LIB --bucket BUCKET --key-file KEY`.
fn join_args<'a>(lib: &'a str, bucket: &'a str, key: &'a str) -> [&'a str; 7] {
    [
        "join",
        "--library",
        lib,
        "--bucket",
        bucket,
        "--key-file",
        key,
    ]
}

/// Running `bae-sync` with keys under the scenario's directory; stdout and
/// stderr go to files there.
struct Cli {
    bin: PathBuf,
    dir: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Result<Command, String> {
        let mut cmd = Command::new(&self.bin);
        self.with_args(&mut cmd, args)?;
        Ok(cmd)
    }

    /// `--home` and `args`, stdio to the scenario's files.
    fn with_args(&self, cmd: &mut Command, args: &[&str]) -> Result<(), String> {
        cmd.arg("--home")
            .arg(self.dir.join("home"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(self.out_file("stdout")?)
            .stderr(self.out_file("stderr")?);
        Ok(())
    }

    fn out_file(&self, name: &str) -> Result<File, String> {
        File::create(self.dir.join(name)).map_err(|e| format!("{name}: {e}"))
    }

    /// Runs a command that must succeed, unmeasured.
    fn run(&self, args: &[&str]) -> Result<(), String> {
        let status = self
            .command(args)?
            .status()
            .map_err(|e| format!("bae-sync {args:?}: {e}"))?;
        self.check(args, status)
    }

    /// Runs a command that must succeed, through the launcher; its time
    /// and peak memory.
    fn measure(&self, name: &'static str, args: &[&str]) -> Result<Step, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let report = self.dir.join("peak");
        match std::fs::remove_file(&report) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
            _ => {}
        }
        let mut cmd = Command::new(exe);
        cmd.arg(PEAK_OF).arg(&report).arg(&self.bin);
        self.with_args(&mut cmd, args)?;
        let start = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("bae-sync {args:?}: {e}"))?;
        let secs = start.elapsed().as_secs_f64();
        self.check(args, status)?;
        let peak_bytes = std::fs::read_to_string(&report)
            .map_err(|e| format!("the launcher's report: {e}"))?
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("the launcher's report: {e}"))?;
        Ok(Step {
            name,
            peak_mb: peak_bytes as f64 / MB,
            secs,
        })
    }

    fn check(&self, args: &[&str], status: ExitStatus) -> Result<(), String> {
        if status.success() {
            return Ok(());
        }
        let stderr = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        Err(format!("bae-sync {args:?}: {status}: {stderr}"))
    }

    /// A hash of the last command's stdout (a dump of 10,000 albums is
    /// over 100 MB: hashed in pieces, never held).
    fn out_hash(&self) -> Result<u64, String> {
        use std::hash::Hasher;
        let mut f = File::open(self.dir.join("stdout")).map_err(|e| e.to_string())?;
        let mut hasher = std::hash::DefaultHasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf).map_err(|e| e.to_string())? {
                0 => return Ok(hasher.finish()),
                n => hasher.write(&buf[..n]),
            }
        }
    }
}

/// The launcher's flag: `bae-bench --peak-of REPORT PROGRAM ARGS...`.
pub const PEAK_OF: &str = "--peak-of";

/// The launcher (`bae-bench --peak-of REPORT PROGRAM ARGS...`): runs
/// PROGRAM with this process's stdio and environment, writes its peak
/// resident bytes to REPORT and exits with its status. A fresh process, so
/// the child's peak starts from a few MB, not from the bench's size.
pub fn launch(mut args: impl Iterator<Item = std::ffi::OsString>) -> Result<i32, String> {
    let (Some(report), Some(program)) = (args.next(), args.next()) else {
        return Err(format!("{PEAK_OF} needs REPORT PROGRAM [ARGS...]"));
    };
    let child = Command::new(&program)
        .args(args)
        .spawn()
        .map_err(|e| format!("{}: {e}", program.to_string_lossy()))?;
    let (status, peak) = wait_peak(child)?;
    std::fs::write(&report, peak.to_string()).map_err(|e| format!("{report:?}: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

/// Reaps `child` with `wait4`: its exit status and peak resident set in
/// bytes (`ru_maxrss`, which Linux gives in KiB).
#[allow(unsafe_code)]
fn wait_peak(child: std::process::Child) -> Result<(ExitStatus, u64), String> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    loop {
        // SAFETY: `status` and `usage` are valid for writes of their types
        // for the whole call; `pid` is our own unreaped child (std's
        // `Child` never reaps on drop, and nothing else waits for it).
        let r = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {e}"));
        }
    }
    // SAFETY: wait4 returned the child's pid, so it filled `usage` (and the
    // zeroed start is a valid `rusage` anyway: plain integers).
    let usage = unsafe { usage.assume_init() };
    drop(child);
    Ok((
        ExitStatus::from_raw(status),
        (usage.ru_maxrss.max(0) as u64) * 1024,
    ))
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Bytes of the largest object under the bucket's `checkpoints/`.
fn newest_checkpoint_bytes(bucket: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(bucket.join("checkpoints")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}
