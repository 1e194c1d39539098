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
    /// Timed entries: how many interleaved runs gave `ratio` (their
    /// median) and the lowest and highest of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
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
            spread: None,
            details: None,
        }
    }

    pub fn summary(&self) -> String {
        let spread = self.spread.as_ref().map_or(String::new(), |s| {
            format!(
                " (median of {} runs, {:.3}-{:.3})",
                s.runs, s.ratio_min, s.ratio_max
            )
        });
        format!(
            "{}: ours {:.4} {} vs {} {:.4} {} -> ratio {:.3}{spread}",
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

/// The wall time of one run of `f`, in seconds.
fn time_once<F: FnMut() -> Result<(), String>>(mut f: F) -> Result<f64, String> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Times `ours` and `baseline` interleaved, `runs` times each, so drift in
/// machine load hits both alike; [`Timed::entry`] reports the medians.
pub fn interleaved<A, B>(runs: usize, mut ours: A, mut baseline: B) -> Result<Timed, String>
where
    A: FnMut() -> Result<(), String>,
    B: FnMut() -> Result<(), String>,
{
    let mut timed = Timed::default();
    for _ in 0..runs.max(1) {
        timed.base.push(time_once(&mut baseline)?);
        timed.ours.push(time_once(&mut ours)?);
    }
    Ok(timed)
}

/// The wall times of interleaved runs, in seconds, in run order.
#[derive(Debug, Default)]
pub struct Timed {
    pub ours: Vec<f64>,
    pub base: Vec<f64>,
}

impl Timed {
    /// The entry: the median time of each side, and as its ratio the
    /// median of the runs' ratios (each run of ours over the baseline run
    /// beside it), with their spread, so one noisy run can neither pass
    /// nor fail it.
    pub fn entry(&self, name: &str, baseline_name: &str, unit: &str) -> Entry {
        let mut e = Entry::new(
            name,
            median(&self.ours),
            median(&self.base),
            baseline_name,
            unit,
        );
        let ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.base)
            .map(|(o, b)| o / b)
            .collect();
        e.ratio = median(&ratios);
        e.spread = Some(Spread {
            runs: ratios.len(),
            ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        });
        e
    }
}

/// The median of `xs` (the mean of the middle two for an even count; NaN
/// for none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The spread of an entry's per-run ratios.
#[derive(Debug, Serialize)]
pub struct Spread {
    pub runs: usize,
    pub ratio_min: f64,
    pub ratio_max: f64,
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
