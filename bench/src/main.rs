//! `cargo xtask bench [--quick]`: every benchmark, each measured as a ratio
//! against a baseline run in the same process (the machine is shared and
//! noisy, so absolute times mean little). Writes a JSON list of
//! `{"name", "ours", "baseline", "baseline_name", "ratio", "unit"}`.
//!
//! `--scale`: no report; the 10,000-album scenario of `peak_rss` (three
//! devices, a checkpoint, GC, convergence checked), printing every step's
//! time and peak memory and the sizes it saw. Minutes long: CI does not
//! run it.

mod crypto;
mod merge;
mod peak_rss;
mod record;
mod release_files;
mod report;
mod sync_bootstrap;
mod sync_metadata;
mod sync_pull;

use report::{Entry, Size};
use std::path::PathBuf;
use std::process::ExitCode;

/// One benchmark: its name and the function that measures it.
type Bench = (&'static str, fn(Size) -> Result<Entry, String>);

const BENCHES: &[Bench] = &[
    ("record_overhead", record::record_overhead),
    ("chunked_encrypt", crypto::chunked_encrypt),
    ("chunked_decrypt", crypto::chunked_decrypt),
    ("range_decrypt", crypto::range_decrypt),
    ("merge_apply", merge::merge_apply),
    ("bootstrap_checkpoint", sync_bootstrap::bootstrap_checkpoint),
    ("idle_poll_requests", sync_pull::idle_poll_requests),
    ("pull_10k_batches", sync_pull::pull_10k_batches),
    ("sync_metadata_ratio", sync_metadata::sync_metadata_ratio),
    ("range_read", release_files::range_read),
    ("release_upload", release_files::release_upload),
    ("peak_rss_push", peak_rss::peak_rss_push),
    ("peak_rss_pull", peak_rss::peak_rss_pull),
    ("peak_rss_checkpoint", peak_rss::peak_rss_checkpoint),
];

fn main() -> ExitCode {
    let mut size = Size::Full;
    let mut out = PathBuf::from("target/bench/report.json");
    let mut only: Option<String> = None;
    let mut scale = false;
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == peak_rss::PEAK_OF)
    {
        return match peak_rss::launch(std::env::args_os().skip(2)) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => fail(&e),
        };
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => size = Size::Quick,
            "--out" => match args.next() {
                Some(p) => out = PathBuf::from(p),
                None => return fail("--out needs a path"),
            },
            "--only" => only = args.next(),
            "--scale" => scale = true,
            other => return fail(&format!("unknown argument {other:?}")),
        }
    }
    if scale {
        return match peak_rss::scale(10_000) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("scale: {e}")),
        };
    }
    let mut entries = Vec::new();
    for (name, bench) in BENCHES {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        eprintln!("bench: {name} ...");
        match bench(size) {
            Ok(entry) => {
                eprintln!("bench: {}", entry.summary());
                entries.push(entry);
            }
            Err(e) => return fail(&format!("{name}: {e}")),
        }
    }
    match report::write(&out, &entries) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("bench: {msg}");
    ExitCode::FAILURE
}
