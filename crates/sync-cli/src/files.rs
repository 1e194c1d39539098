//! `files`, `upload`, `fetch`, `share` and `redeem`: a release's files in
//! the bucket, and grants of a release to someone outside the library
//! (phase 3).

use crate::error::CliError;
use crate::{count, out};
use bae_crypto::IdentityPublicKey;
use bae_membership::grant::MAX_GRANT_BYTES;
use bae_membership::InviteCredentials;
use bae_oplog::fixture::open_library;
use bae_sync_service::grants::{grant_bucket, redeem as redeem_grant};
use bae_sync_service::{library, KeyStore, SyncError};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400;

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

/// `share --release ID --to PUBKEY [--with-credentials] [--expires DAYS]
/// --out FILE`: writes a grant file (a new file; never replaces one).
pub(crate) async fn share(
    library: &Path,
    release: &str,
    to: IdentityPublicKey,
    credentials: Option<InviteCredentials>,
    days: u64,
    dest: &Path,
    keys: &KeyStore,
) -> Result<(), CliError> {
    let bucket = grant_bucket(&library::saved_bucket(open_library(library)?)?)?;
    let s = library::open(open_library(library)?, keys)?;
    let with_credentials = credentials.is_some();
    let expires_at = now().saturating_add(days.saturating_mul(DAY));
    let grant = s
        .share_release(release, to, expires_at, bucket, credentials)
        .await?;
    write_new(dest, grant.as_bytes())?;
    outln!(
        "shared release {release} with {to} for {}; grant written to {}",
        count(days, "day", "days"),
        dest.display()
    )?;
    outln!("send them the file; they run `bae-sync redeem --grant FILE --out DIR`")?;
    if with_credentials {
        eprintln!("bae-sync: the grant carries your S3 credentials (sealed to them): once they have them, only revoking them at your storage provider takes them back");
    }
    Ok(())
}

/// `redeem --grant FILE --out DIR`, as this user's identity.
pub(crate) async fn redeem(grant: &Path, dest: &Path, keys: &KeyStore) -> Result<(), CliError> {
    let identity = keys.identity_store().load().map_err(SyncError::from)?;
    let bytes = read_bounded(grant, MAX_GRANT_BYTES)?;
    let r = redeem_grant(&bytes, &identity, dest, now()).await?;
    for path in &r.files {
        outln!("{}", path.display())?;
    }
    outln!(
        "wrote {} ({}) of release {} granted by {}",
        count(r.files.len() as u64, "file", "files"),
        count(r.bytes, "byte", "bytes"),
        r.release,
        r.granter
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A file of at most `max` bytes (one more is read to tell a larger one,
/// which the grant decoder then refuses by size).
fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, CliError> {
    let file = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io(path, e))?;
    Ok(bytes)
}

/// Writes a new file through a temp file next to it, refusing to replace
/// one.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".bae-grant-")
        .tempfile_in(dir)
        .map_err(|e| CliError::io(dir, e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| CliError::io(path, e))?;
    temp.persist_noclobber(path)
        .map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::OutputExists {
                path: path.display().to_string(),
            },
            _ => CliError::io(path, e.error),
        })?;
    Ok(())
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
