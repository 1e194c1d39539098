//! Tools the tasks run that are not part of the toolchain (`s3s-fs`,
//! `cargo-deny`): found in cargo's bin directory, or installed there with
//! `cargo install --locked` at a pinned version when missing.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// A cargo-installed tool at a pinned version.
pub struct Tool {
    /// The crate to install.
    pub krate: &'static str,
    /// Its pinned version (one that builds on the project's toolchain).
    pub version: &'static str,
    /// The binary it installs.
    pub bin: &'static str,
    /// Features to install with.
    pub features: &'static [&'static str],
}

impl Tool {
    /// The binary's path, installing the tool first when it is missing.
    pub fn ensure_installed(&self) -> super::Result<PathBuf> {
        let bin = cargo_bin_dir().join(self.bin);
        if bin.exists() {
            return Ok(bin);
        }
        let Tool { krate, version, .. } = self;
        eprintln!(
            "xtask: {} missing; installing {krate} {version} (minutes, once)",
            self.bin
        );
        let started = Instant::now();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["install", krate, "--version", version, "--locked"]);
        if !self.features.is_empty() {
            cmd.args(["--features", &self.features.join(",")]);
        }
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run cargo install: {e}"))?;
        if !status.success() || !bin.exists() {
            return Err(format!("cargo install {krate} {version} failed ({status})"));
        }
        eprintln!(
            "xtask: installed {krate} {version} in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(bin)
    }
}

/// Where `cargo install` puts binaries.
fn cargo_bin_dir() -> PathBuf {
    if let Ok(home) = std::env::var("CARGO_HOME") {
        return PathBuf::from(home).join("bin");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cargo").join("bin")
}
