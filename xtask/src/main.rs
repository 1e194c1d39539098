//! `cargo xtask`: the project's tasks.
//!
//! - `test [--phase N]`: every test, phase by phase; starts what the tests need
//!   (an S3 server on 127.0.0.1, installed when missing). A full run (no
//!   `--phase`) then builds the documentation site (`docs`) and checks the
//!   supply chain (`deny`).
//! - `docs`: the documentation site (`target/doc`), with `docs/*.md` in
//!   it; fails on any rustdoc warning or undocumented public item.
//! - `deny`: `cargo deny` (installed when missing): licences, bans and
//!   sources must pass; advisories when the RustSec database is reachable.
//! - `layers`: fails when a crate depends on a crate of its own or a higher
//!   layer, or names an engine table another crate owns.
//! - `bench [--quick]`: runs the benchmarks, writes `target/bench/report.json`.
//!   `bench --scale`: the 10,000-album scale scenario instead (minutes;
//!   not part of `ci`).
//! - `sqlx-compat`: proves the engine resolves in one build with sqlx 0.8
//!   and 0.9 (one `libsqlite3-sys`), as bae-core needs.
//! - `soak [--seconds N] [--first-seed S]`: the deterministic simulation
//!   (`crates/sync-service/tests/simulation.rs`) over fresh seeds for N
//!   seconds (default 300), in release mode; prints seeds run, simulated
//!   devices, faults by kind and divergences, and fails with each diverging
//!   seed's replay line.
//! - `fuzz [--seconds N] [--seed-corpus] [--minimize] [TARGET...]`: every
//!   cargo-fuzz target of `fuzz/` (nightly) for N seconds each (default
//!   60); prints runs, new coverage and crashes per target, and fails if
//!   any crashed (`fuzz.rs`).
//! - `ci`: fmt, clippy, layers, sqlx-compat, then `test`.

mod docs;
mod fuzz;
mod layers;
mod s3server;
mod sqlx_compat;
mod tables;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T> = std::result::Result<T, String>;

/// Which crates' tests make up each phase. A phase also runs the end-to-end
/// scenarios of its crates (their `tests/` directories).
///
/// Phase 1 includes the example host (`examples/bae-core-host`): its test
/// runs the program, which fails unless its two instances converge. It is
/// built in the same cargo invocation as the engine's tests on purpose: a
/// separate `cargo run -p bae-core-host` resolves features on its own (no
/// dev-dependency features, no sqlx features on shared crates), so it
/// rebuilds libsqlite3-sys, the HTTP stack and the engine a second time
/// (over 3 minutes on 2 cores, measured), where here it adds only sqlx
/// (under a minute of CPU).
const PHASES: &[(u8, &[&str])] = &[
    (0, &["bae-hlc", "bae-oplog"]),
    (
        1,
        &[
            "bae-crypto",
            "bae-storage-s3",
            "bae-merge",
            "bae-sync-service",
            "bae-sync-cli",
            "bae-core-host",
        ],
    ),
    (2, &["bae-membership"]),
    (3, &[]),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("docs") => docs::build(&workspace_root()),
        Some("deny") => deny(),
        Some("layers") => layers::check(&workspace_root()).and(tables::check(&workspace_root())),
        Some("bench") => bench(&args[1..]),
        Some("sqlx-compat") => sqlx_compat::check(&workspace_root()),
        Some("ci") => ci(),
        Some("soak") => soak(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => Err(
            "usage: cargo xtask <test [--phase N] | docs | deny | layers | bench [--quick | --scale] | sqlx-compat | soak [--seconds N] [--first-seed S] | fuzz [--seconds N] [--seed-corpus] [--minimize] [TARGET...] | ci>"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `soak`: runs the simulation's ignored `soak` test in release mode.
fn soak(args: &[String]) -> Result<()> {
    let mut seconds = "300".to_owned();
    let mut first_seed = "1000".to_owned();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .filter(|v| v.parse::<u64>().is_ok())
            .ok_or_else(|| format!("soak: {flag} needs a whole number"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.clone(),
            "--first-seed" => first_seed = value.clone(),
            other => return Err(format!("soak: unknown option {other}")),
        }
    }
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "bae-sync-service",
        "--test",
        "simulation",
        "soak",
        "--",
        "--ignored",
        "--nocapture",
    ])
    .env("BAE_SOAK_SECONDS", seconds)
    .env("BAE_SOAK_FIRST_SEED", first_seed);
    run(cmd)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn test(args: &[String]) -> Result<()> {
    let phase = match args {
        [] => None,
        [flag, n] if flag == "--phase" => Some(
            n.parse::<u8>()
                .map_err(|_| format!("--phase takes 0..3, not {n:?}"))?,
        ),
        _ => return Err("usage: cargo xtask test [--phase N]".into()),
    };
    let phases: Vec<_> = PHASES
        .iter()
        .filter(|(p, _)| phase.is_none_or(|want| *p == want))
        .collect();
    if phases.is_empty() {
        return Err(format!("no phase {phase:?}; phases are 0..3"));
    }
    // One S3 server for the whole run; the tests that need it read its address
    // from the environment and fail (not skip) when it is absent.
    let server = if phases.iter().any(|(p, _)| *p >= 1) {
        Some(s3server::S3Server::start(&workspace_root())?)
    } else {
        None
    };
    for (p, crates) in phases {
        if crates.is_empty() {
            eprintln!("xtask: phase {p}: no crates yet");
            continue;
        }
        eprintln!("xtask: phase {p}: {}", crates.join(", "));
        let mut cmd = cargo();
        cmd.arg("test");
        for c in *crates {
            cmd.args(["--package", c]);
        }
        if let Some(server) = &server {
            server.export_env(&mut cmd);
        }
        run(cmd)?;
    }
    drop(server); // stopped: nothing after the tests needs it
    if phase.is_none() {
        docs::build(&workspace_root())?;
        deny()?;
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let out = root.join("target").join("bench").join("report.json");
    // The peak_rss benches and --scale run the release `bae-sync` beside
    // the bench binary.
    let mut build = cargo();
    build.args(["build", "--release", "--package", "bae-sync-cli"]);
    run(build)?;
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--package", "bae-bench", "--"]);
    cmd.args(args);
    cmd.arg("--out").arg(&out);
    run(cmd)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

fn ci() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    layers::check(&workspace_root())?;
    tables::check(&workspace_root())?;
    sqlx_compat::check(&workspace_root())?;
    test(&[])
}

/// cargo-deny, pinned to a version that builds on the project's toolchain.
const CARGO_DENY: tools::Tool = tools::Tool {
    krate: "cargo-deny",
    version: "0.20.2",
    bin: "cargo-deny",
    features: &[],
};

/// `cargo deny check` (installing cargo-deny when missing): licences, bans
/// and sources must pass; advisories need the RustSec database from the
/// network, so an unreachable database is reported (not hidden) and does
/// not fail an offline run.
fn deny() -> Result<()> {
    CARGO_DENY.ensure_installed()?;
    let mut offline_checks = cargo();
    offline_checks.args(["deny", "check", "bans", "licenses", "sources"]);
    run(offline_checks)?;
    let mut advisories = cargo();
    advisories.args(["deny", "check", "advisories"]);
    eprintln!("xtask: running {advisories:?}");
    let out = advisories
        .output()
        .map_err(|e| format!("cannot start {advisories:?}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if out.status.success() {
        Ok(())
    } else if stderr.contains("failed to fetch advisory database") {
        eprintln!("xtask: WARNING: advisories NOT checked: the RustSec advisory database is unreachable (offline?)");
        Ok(())
    } else {
        Err(format!("{advisories:?} failed with {}", out.status))
    }
}
