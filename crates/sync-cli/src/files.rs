//! `files`, `upload` and `fetch`: a release's files in the bucket (phase 3).

use crate::error::CliError;
use crate::{count, out};
use bae_oplog::fixture::open_library;
use bae_sync_service::{library, KeyStore};
use std::ops::Range;
use std::path::Path;

/// `files --release ID`: one line per file: id, state, size, name.
pub(crate) async fn files(library: &Path, release: &str, keys: &KeyStore) -> Result<(), CliError> {
    let s = library::open(open_library(library)?, keys)?;
    for f in s.release_files(release).await? {
        outln!(
            "{}  {:<9}  {:>10}  {}",
            f.id,
            f.state.as_str(),
            f.size,
            f.name
        )?;
    }
    Ok(())
}

/// `upload [--release ID]`: encrypts and uploads the files this device has
/// and the bucket lacks; their nonces go out with the next push.
pub(crate) async fn upload(
    library: &Path,
    release: Option<&str>,
    keys: &KeyStore,
) -> Result<(), CliError> {
    let s = library::open(open_library(library)?, keys)?;
    let r = s.upload_release_files(release).await?;
    outln!(
        "uploaded {} ({}), {} already in the bucket",
        count(r.uploaded.len() as u64, "file", "files"),
        count(r.bytes, "byte", "bytes"),
        r.already
    )?;
    if !r.elsewhere.is_empty() {
        eprintln!(
            "bae-sync: {} not uploaded and not on this device (the device that imported them uploads them)",
            count(r.elsewhere.len() as u64, "file is", "files are")
        );
    }
    if !r.uploaded.is_empty() {
        outln!("run `bae-sync push` to publish them to the other devices")?;
    }
    Ok(())
}

/// `fetch --file ID --out PATH [--range START-END]`.
pub(crate) async fn fetch(
    library: &Path,
    file: &str,
    dest: &Path,
    range: Option<Range<u64>>,
    keys: &KeyStore,
) -> Result<(), CliError> {
    let s = library::open(open_library(library)?, keys)?;
    let n = s.fetch_file(file, dest, range).await?;
    outln!("wrote {} to {}", count(n, "byte", "bytes"), dest.display())
}

/// `START-END`: plaintext bytes START up to END, END not included (so
/// `0-0` is empty and `0-1` is the first byte).
pub(crate) fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("expected START-END (e.g. 0-65536), got {text:?}"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a byte offset (a whole number)"))
    };
    let (start, end) = (number(start)?, number(end)?);
    if start > end {
        return Err(format!("the range starts at {start}, after its end {end}"));
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_with_an_exclusive_end() {
        assert_eq!(parse_range("0-1"), Ok(0..1));
        assert_eq!(parse_range("5-5"), Ok(5..5));
        assert!(parse_range("5").is_err());
        assert!(parse_range("9-3").is_err());
        assert!(parse_range("-3").is_err());
        assert!(parse_range("a-3").is_err());
    }
}
