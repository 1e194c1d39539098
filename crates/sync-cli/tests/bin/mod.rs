//! Running the `bae-sync` binary in the CLI's end-to-end tests, shared by
//! every file in `tests/`: keys under a home directory, `RUST_LOG` unset,
//! and the checks each test makes of a command's outcome.
#![allow(dead_code)]

use super::common::World;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `bae-sync` with keys under `home`, run in `cwd`, without `RUST_LOG`.
pub fn bae_sync_in(home: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bae-sync"));
    cmd.arg("--home")
        .arg(home)
        .current_dir(cwd)
        .env_remove("RUST_LOG");
    cmd
}

/// `bae-sync` with the world's home, run in its directory.
pub fn bae_sync(w: &World) -> Command {
    bae_sync_in(&w.home(), w.dir.path())
}

/// Runs `bae-sync ARGS` with keys under `home`, in `cwd`.
pub fn run_in(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    bae_sync_in(home, cwd).args(args).output().unwrap()
}

/// Runs `bae-sync ARGS` in the world.
pub fn run(w: &World, args: &[&str]) -> Output {
    bae_sync(w).args(args).output().unwrap()
}

/// The outcome of a command that must have succeeded: its stdout.
pub fn succeeded(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bae-sync {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The outcome of a command that must have failed with exit status 1 and
/// one line on stderr starting `bae-sync: `: that line.
pub fn failed(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "bae-sync {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.starts_with("bae-sync: "), "{stderr}");
    stderr
}

/// Runs a command in the world that must succeed; returns its stdout.
pub fn ok(w: &World, args: &[&str]) -> String {
    succeeded(run(w, args), args)
}

/// Runs a command in the world that must fail (exit status 1, one line on
/// stderr); returns that line.
pub fn fails(w: &World, args: &[&str]) -> String {
    failed(run(w, args), args)
}

/// A path as the text a command line takes.
pub fn path(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}
