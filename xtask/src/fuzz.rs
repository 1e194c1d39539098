//! `fuzz`: builds and runs every target of `fuzz/` (cargo-fuzz, nightly) for
//! N seconds each, then prints what each did; fails if any crashed.
//!
//! - `--seconds N` (default 60): time per target.
//! - `--seed-corpus`: first writes real encodings into `fuzz/corpus/TARGET/`
//!   (the `seed_corpus` program of `fuzz/`).
//! - `--minimize`: after each run, merges what it found into the committed
//!   corpus and minimizes it (`cargo fuzz cmin`).
//! - any other argument: run only the targets named.
//!
//! New inputs a run finds go to a scratch corpus under the target directory,
//! so the committed corpora change only with `--minimize`. The targets are
//! the files of `fuzz/fuzz_targets/`: adding one is a file there and its
//! `[[bin]]` entry in `fuzz/Cargo.toml`.

use crate::{workspace_root, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// libFuzzer's limits: the malloc limit turns an allocation sized by an
/// untrusted length into a crash.
const LIMITS: [&str; 2] = ["-rss_limit_mb=2048", "-malloc_limit_mb=512"];

/// What one target's run did.
struct Outcome {
    target: String,
    runs: String,
    /// Inputs that reached new coverage during this run.
    new: usize,
    coverage: String,
    corpus: String,
    crash: Option<String>,
}

/// `cargo xtask fuzz [--seconds N] [--seed-corpus] [--minimize] [TARGET...]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let (mut seed, mut minimize, mut only) = (false, false, Vec::new());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("fuzz: --seconds needs a whole number")?;
            }
            "--seed-corpus" => seed = true,
            "--minimize" => minimize = true,
            flag if flag.starts_with('-') => return Err(format!("fuzz: unknown option {flag}")),
            target => only.push(target.to_owned()),
        }
    }
    let fuzz_dir = workspace_root().join("fuzz");
    let mut targets = targets(&fuzz_dir)?;
    if !only.is_empty() {
        if let Some(unknown) = only.iter().find(|t| !targets.contains(t)) {
            return Err(format!(
                "fuzz: no target {unknown} (have {})",
                targets.join(", ")
            ));
        }
        targets.retain(|t| only.contains(t));
    }
    check(nightly(&fuzz_dir).args(["fuzz", "build"]))?;
    if seed {
        write_seeds(&fuzz_dir)?;
    }
    let scratch = target_dir().join("fuzz-corpus");
    let mut outcomes = Vec::new();
    for target in &targets {
        let outcome = run_target(&fuzz_dir, &scratch, target, seconds)?;
        if minimize && outcome.crash.is_none() {
            merge_and_minimize(&fuzz_dir, &scratch, target)?;
        }
        outcomes.push(outcome);
    }
    print_summary(&outcomes, seconds);
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crash.is_some())
        .map(|o| o.target.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz: {} crashed", crashed.join(", ")))
    }
}

/// The target names: the files of `fuzz/fuzz_targets/`, sorted.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo +nightly` in `fuzz/`, without the variables the outer (stable)
/// cargo set for this process.
fn nightly(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").current_dir(fuzz_dir);
    for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN"] {
        cmd.env_remove(var);
    }
    cmd
}

fn check(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?} (is cargo-fuzz installed?): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Runs `fuzz/`'s `seed_corpus` program (built with the targets by
/// `cargo fuzz build`, under the host's target triple) into `fuzz/corpus/`.
fn write_seeds(fuzz_dir: &Path) -> Result<()> {
    let built = std::fs::read_dir(target_dir())
        .map_err(|e| format!("{}: {e}", target_dir().display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("release").join("seed_corpus"))
        .find(|p| p.is_file())
        .ok_or("fuzz: seed_corpus was not built")?;
    check(Command::new(built).arg(fuzz_dir.join("corpus")))
}

fn run_target(fuzz_dir: &Path, scratch: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let found = scratch.join(target);
    let committed = fuzz_dir.join("corpus").join(target);
    for dir in [&found, &committed] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut cmd = nightly(fuzz_dir);
    cmd.args(["fuzz", "run", target])
        .arg(&found)
        .arg(&committed)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIMITS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("xtask: fuzzing {target} for {seconds} s");
    let output = cmd
        .output()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    let crash = (!output.status.success()).then(|| crash_summary(&log));
    if let Some(why) = &crash {
        eprintln!("{log}");
        eprintln!("xtask: {target} crashed: {why}");
    }
    Ok(parse_stats(target, &log, crash))
}

/// The first line naming what went wrong, and the artifact written.
fn crash_summary(log: &str) -> String {
    let what = log
        .lines()
        .find(|l| l.contains("ERROR:") || l.contains("panicked at") || l.contains("==ERROR"))
        .unwrap_or("exited with an error");
    let artifact = log
        .lines()
        .find_map(|l| l.split("Test unit written to ").nth(1))
        .unwrap_or("no artifact");
    format!("{} ({artifact})", what.trim())
}

/// Runs, coverage and corpus size from libFuzzer's last status line
/// (`#N  DONE  cov: C ft: F corp: K/S ...`) and its `Done N runs` line.
fn parse_stats(target: &str, log: &str, crash: Option<String>) -> Outcome {
    let field = |line: &str, name: &str| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == name);
        words.next().unwrap_or("-").to_owned()
    };
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"))
        .unwrap_or("");
    let runs = log
        .lines()
        .find_map(|l| l.strip_prefix("Done "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            last.split_whitespace()
                .next()
                .unwrap_or("-")
                .trim_start_matches('#')
                .to_owned()
        });
    Outcome {
        target: target.to_owned(),
        runs,
        new: log.lines().filter(|l| l.contains("\tNEW ")).count(),
        coverage: field(last, "cov:"),
        corpus: field(last, "corp:"),
        crash,
    }
}

/// Moves what a run found into the committed corpus and minimizes it.
fn merge_and_minimize(fuzz_dir: &Path, scratch: &Path, target: &str) -> Result<()> {
    let found = scratch.join(target);
    let committed = fuzz_dir.join("corpus").join(target);
    let entries = std::fs::read_dir(&found).map_err(|e| format!("{}: {e}", found.display()))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let to = committed.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    check(
        nightly(fuzz_dir)
            .args(["fuzz", "cmin", target])
            .arg(&committed)
            .arg("--")
            .args(LIMITS),
    )
}

fn print_summary(outcomes: &[Outcome], seconds: u64) {
    println!("\nfuzz: {seconds} s per target");
    println!(
        "{:<20} {:>12} {:>6} {:>8} {:>12}  result",
        "target", "runs", "new", "cov", "corpus"
    );
    for o in outcomes {
        let result = o.crash.as_deref().unwrap_or("ok");
        println!(
            "{:<20} {:>12} {:>6} {:>8} {:>12}  {result}",
            o.target, o.runs, o.new, o.coverage, o.corpus
        );
    }
}
