//! The report format and timing helpers shared by every benchmark.

use serde::Serialize;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How much work a run does: `--quick` must finish the whole suite in under
/// three minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Quick,
    Full,
}

impl Size {
    /// Picks the quick or the full value.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Size::Quick => quick,
            Size::Full => full,
        }
    }
}

/// One line of `report.json`.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub name: String,
    pub ours: f64,
    pub baseline: f64,
    pub baseline_name: String,
    /// ours / baseline; lower is better for times.
    pub ratio: f64,
    pub unit: String,
    /// What a single ratio cannot say (a bench with two measurements).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Entry {
    pub fn new(name: &str, ours: f64, baseline: f64, baseline_name: &str, unit: &str) -> Self {
        let ratio = if baseline == 0.0 {
            f64::NAN
        } else {
            ours / baseline
        };
        Entry {
            name: name.into(),
            ours,
            baseline,
            baseline_name: baseline_name.into(),
            ratio,
            unit: unit.into(),
            details: None,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{}: ours {:.4} {} vs {} {:.4} {} -> ratio {:.3}",
            self.name,
            self.ours,
            self.unit,
            self.baseline_name,
            self.baseline,
            self.unit,
            self.ratio
        )
    }
}

/// Best-of-`runs` wall time in seconds: the minimum is the least disturbed by
/// other load on a shared machine. Baseline and ours should alternate runs.
pub fn best_of<F: FnMut() -> Result<(), String>>(runs: usize, mut f: F) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Times `ours` and `baseline` interleaved, `runs` times each, and returns the
/// best time of each, so drift in machine load hits both alike.
pub fn interleaved<A, B>(runs: usize, mut ours: A, mut baseline: B) -> Result<(f64, f64), String>
where
    A: FnMut() -> Result<(), String>,
    B: FnMut() -> Result<(), String>,
{
    let (mut best_ours, mut best_base) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..runs.max(1) {
        best_base = best_base.min(best_of(1, &mut baseline)?);
        best_ours = best_ours.min(best_of(1, &mut ours)?);
    }
    Ok((best_ours, best_base))
}

/// Writes the entries as a JSON list.
/// Names a new database file for each run in a directory (`{label}-{n}.db`),
/// so every run of `interleaved` starts from a database of its own.
pub struct FreshFiles<'d> {
    dir: &'d Path,
    runs: Cell<u32>,
}

impl<'d> FreshFiles<'d> {
    pub fn new(dir: &'d Path) -> Self {
        FreshFiles {
            dir,
            runs: Cell::new(0),
        }
    }

    /// The next unused path for `label`.
    pub fn path(&self, label: &str) -> PathBuf {
        self.runs.set(self.runs.get() + 1);
        self.dir.join(format!("{label}-{}.db", self.runs.get()))
    }

    /// A new, empty SQLite database for `label`.
    pub fn connection(&self, label: &str) -> Result<rusqlite::Connection, String> {
        rusqlite::Connection::open(self.path(label)).map_err(|e| e.to_string())
    }
}

pub fn write(path: &Path, entries: &[Entry]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(entries).map_err(|e| e.to_string())?;
    std::fs::write(path, json + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}
