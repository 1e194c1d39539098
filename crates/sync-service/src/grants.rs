//! Share grants (phase 3): a member gives one release to someone outside
//! the library ([`SyncService::share_release`]), who fetches and decrypts
//! its files with nothing but the grant and their identity ([`redeem`]).
//!
//! - **Share** refuses a granter who is not a current member (checked
//!   against the chain just refreshed from the bucket) and a release with a
//!   file not uploaded yet, and checks each file's object (size and nonce)
//!   before signing, so a grant never names an object the recipient cannot
//!   fetch. The grant format is `bae_membership::grant`
//!   (`docs/FORMAT-grant.md`).
//! - **Redeem** verifies the signature, the recipient and the expiry, opens
//!   the payload, then fetches each file into a staging directory inside
//!   DIR, chunk windows at a time (bounded memory), every chunk
//!   authenticated under the release key. Only when every file decrypted
//!   are they renamed to their names in DIR; any failure before removes
//!   the staging directory, so DIR is as it was. A name already in DIR is
//!   refused before anything is fetched: a grant never replaces a file.

use crate::error::SyncError;
use crate::releases::{check_object, checked_size, fetch_into, StoredFile, SCHEME_CHUNKED_V1};
use crate::service::SyncService;
use bae_crypto::chunked::BaseNonce;
use bae_crypto::{IdentityPublicKey, IdentitySigningKey};
use bae_membership::grant::{Grant, GrantBucket, GrantError, GrantFile, GrantPayload, GrantTerms};
use bae_membership::InviteCredentials;
use bae_storage_s3::layout::{self, ObjectId};
use bae_storage_s3::{AddressingStyle, ObjectStore, S3Config, S3Credentials, StoreConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a release cannot be shared or a grant redeemed (beyond a release
/// file's own errors, [`crate::FileError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The grant does not parse, verify or open.
    #[error("grant: {0}")]
    Grant(#[from] GrantError),
    /// The identity sharing is not a current member of the library: the
    /// chain says so, or the other members hold a newer library key that
    /// was not sealed to it (a removal this member cannot read).
    #[error("{identity} is not a current member of this library{}: only its members can share its releases", newer_epoch.map_or(String::new(), |e| format!(" (the other members hold key epoch {e}, which was not sealed to you: you were removed)")))]
    NotAMember {
        /// The identity that tried.
        identity: Box<IdentityPublicKey>,
        /// The newer key epoch the other members hold, if that is how it
        /// was found.
        newer_epoch: Option<u32>,
    },
    /// The release has no files to share.
    #[error("release {release} has no files to share")]
    NoFiles {
        /// The release.
        release: String,
    },
    /// Some of the release's files are not in the bucket yet.
    #[error("release {release}: {} of its files are not uploaded yet ({}); run `bae-sync upload --release {release}` on the device that has them, then share again", files.len(), files.join(", "))]
    NotUploaded {
        /// The release.
        release: String,
        /// The files not uploaded.
        files: Vec<String>,
    },
    /// The library's bucket is one a recipient cannot reach (in memory).
    #[error("bucket {url} cannot be shared: a grant names a directory or an S3 bucket")]
    UnsharableBucket {
        /// The bucket URL.
        url: String,
    },
    /// A grant's file has an id that names no object, a scheme this build
    /// does not read, or a size beyond the format.
    #[error("grant file {file:?} is refused: {reason}")]
    BadGrantFile {
        /// The file's id.
        file: String,
        /// Why.
        reason: &'static str,
    },
    /// A file the grant would write is already in DIR.
    #[error(
        "{path} already exists: a grant never replaces a file; choose another --out directory"
    )]
    OutputExists {
        /// The file.
        path: PathBuf,
    },
}

impl From<ShareError> for SyncError {
    fn from(e: ShareError) -> Self {
        SyncError::Share(Box::new(e))
    }
}

impl From<GrantError> for SyncError {
    fn from(e: GrantError) -> Self {
        ShareError::Grant(e).into()
    }
}

/// What [`redeem`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedeemReport {
    /// The release.
    pub release: String,
    /// Who granted it.
    pub granter: IdentityPublicKey,
    /// The files written, in the grant's order.
    pub files: Vec<PathBuf>,
    /// Plaintext bytes written.
    pub bytes: u64,
}

/// The bucket coordinates a grant carries for a library's bucket URL.
pub fn grant_bucket(url: &str) -> Result<GrantBucket, SyncError> {
    let config = StoreConfig::parse(url).map_err(|e| SyncError::BucketUrl {
        url: url.to_owned(),
        source: e.into(),
    })?;
    Ok(match config {
        StoreConfig::Local(path) => GrantBucket::Local {
            path: path.to_string_lossy().into_owned(),
        },
        StoreConfig::S3(s3) => GrantBucket::S3 {
            bucket: s3.bucket,
            prefix: s3.prefix,
            endpoint: s3.endpoint,
            region: s3.region,
            path_style: s3.style == AddressingStyle::Path,
        },
        _ => {
            return Err(ShareError::UnsharableBucket {
                url: url.to_owned(),
            }
            .into())
        }
    })
}

/// The store a grant names, with the credentials it carries (or the
/// `AWS_*` environment's).
fn open_grant_store(
    bucket: &GrantBucket,
    credentials: Option<&InviteCredentials>,
) -> Result<Arc<dyn ObjectStore>, SyncError> {
    let (config, shown) = match bucket {
        GrantBucket::Local { path } => (StoreConfig::Local(PathBuf::from(path)), path.clone()),
        GrantBucket::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
        } => {
            let mut s3 = S3Config::new(bucket.clone());
            s3.prefix = prefix.clone();
            s3.endpoint = endpoint.clone();
            s3.region = region.clone();
            s3.style = match path_style {
                true => AddressingStyle::Path,
                false => AddressingStyle::VirtualHost,
            };
            s3.credentials = credentials.map(|c| {
                let s3 = S3Credentials::new(c.access_key.clone(), c.secret_key.as_str());
                match &c.session_token {
                    Some(token) => s3.with_session_token(token.as_str()),
                    None => s3,
                }
            });
            (
                StoreConfig::S3(Box::new(s3)),
                format!("s3://{bucket}/{prefix}"),
            )
        }
        _ => {
            return Err(ShareError::UnsharableBucket {
                url: format!("{bucket:?}"),
            }
            .into())
        }
    };
    config
        .open()
        .map_err(|source| SyncError::BucketUrl { url: shown, source })
}

impl SyncService {
    /// Makes a grant of `release` for `recipient`, valid until
    /// `expires_at` (unix seconds), naming `bucket` (see [`grant_bucket`])
    /// and carrying `credentials` sealed if given. Refused for a granter
    /// who is not a current member, and for a release with a file not
    /// uploaded yet ([`ShareError::NotUploaded`]).
    pub async fn share_release(
        &self,
        release: &str,
        recipient: IdentityPublicKey,
        expires_at: u64,
        bucket: GrantBucket,
        credentials: Option<InviteCredentials>,
    ) -> Result<Grant, SyncError> {
        self.require_current_member().await?;
        let listed = self.release_files(release).await?;
        if listed.is_empty() {
            return Err(ShareError::NoFiles {
                release: release.to_owned(),
            }
            .into());
        }
        let waiting: Vec<String> = listed
            .iter()
            .filter(|f| f.state != crate::releases::UploadState::Uploaded)
            .map(|f| f.id.clone())
            .collect();
        if !waiting.is_empty() {
            return Err(ShareError::NotUploaded {
                release: release.to_owned(),
                files: waiting,
            }
            .into());
        }
        let (_, release_key) = self.release_key(release, false).await?;
        let mut files = Vec::with_capacity(listed.len());
        for f in &listed {
            let stored = self.stored_file(&f.id).await?;
            // The recipient will fetch exactly this: refuse now rather
            // than hand out a grant that fails.
            check_object(&*self.store, &stored).await?;
            files.push(GrantFile {
                id: f.id.clone(),
                name: f.name.clone(),
                size: stored.size,
                nonce: stored.nonce,
                scheme: SCHEME_CHUNKED_V1.to_owned(),
            });
        }
        let terms = GrantTerms {
            library_id: self.library_id,
            release_id: release.to_owned(),
            recipient,
            expires_at,
            bucket,
        };
        let payload = GrantPayload {
            release_key,
            files,
            credentials,
        };
        Ok(Grant::issue(self.member.identity(), terms, &payload)?)
    }
}

impl SyncService {
    /// Refuses a granter who is not a current member. A removed member
    /// cannot read its own removal (it is sealed under the key epoch the
    /// removal started), so its chain still lists it; what it can see is
    /// that members of its chain hold key blobs of an epoch newer than any
    /// it holds (after the refresh adopted every epoch sealed to it).
    async fn require_current_member(&self) -> Result<(), SyncError> {
        let chain = self.refresh_members().await?;
        let me = self.member.public_key();
        let refuse = |newer_epoch| {
            Err(ShareError::NotAMember {
                identity: Box::new(me),
                newer_epoch,
            }
            .into())
        };
        if chain.current_role(&me).is_none() {
            return refuse(None);
        }
        let held = self.key_epoch().0;
        let newest = self
            .store
            .list(layout::KEYS_PREFIX)
            .await?
            .iter()
            .filter_map(|k| layout::parse_key_blob_key(k).ok())
            .filter(|(owner, epoch)| {
                *epoch > held
                    && IdentityPublicKey::from_hex(owner.as_str())
                        .is_ok_and(|k| k != me && chain.current_role(&k).is_some())
            })
            .map(|(_, epoch)| epoch)
            .max();
        match newest {
            Some(epoch) => refuse(Some(epoch)),
            None => Ok(()),
        }
    }
}

/// Redeems a grant file's bytes as `identity` at `now` (unix seconds):
/// verifies, opens, fetches and decrypts every file into `out_dir`
/// (created if missing) under its original name. On any error nothing is
/// left in `out_dir`.
pub async fn redeem(
    grant: &[u8],
    identity: &IdentitySigningKey,
    out_dir: &Path,
    now: u64,
) -> Result<RedeemReport, SyncError> {
    let grant = Grant::from_bytes(grant)?;
    let payload = grant.open(identity, now)?;
    let release = grant.terms().release_id.clone();
    let files = payload
        .files
        .iter()
        .map(|f| stored_from_grant(f, &release))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(out_dir).map_err(|e| SyncError::io(out_dir, e))?;
    for f in &payload.files {
        let path = out_dir.join(&f.name);
        if path.symlink_metadata().is_ok() {
            return Err(ShareError::OutputExists { path }.into());
        }
    }
    let store = open_grant_store(&grant.terms().bucket, payload.credentials.as_ref())?;
    let staging = tempfile::Builder::new()
        .prefix(".bae-redeem-")
        .tempdir_in(out_dir)
        .map_err(|e| SyncError::io(out_dir, e))?;
    let mut bytes = 0;
    for (f, stored) in payload.files.iter().zip(&files) {
        check_object(&*store, stored).await?;
        let path = staging.path().join(&f.name);
        let file = std::fs::File::create(&path).map_err(|e| SyncError::io(&path, e))?;
        fetch_into(
            &*store,
            stored,
            &payload.release_key,
            0..stored.size,
            &file,
            &path,
        )
        .await?;
        bytes += stored.size;
    }
    let written = move_into_place(staging.path(), out_dir, &payload.files)?;
    drop(staging);
    Ok(RedeemReport {
        release,
        granter: *grant.granter(),
        files: written,
        bytes,
    })
}

/// Renames every staged file to its name in `out_dir`; if one fails, the
/// ones already moved are removed again, so `out_dir` is as it was.
fn move_into_place(
    staging: &Path,
    out_dir: &Path,
    files: &[GrantFile],
) -> Result<Vec<PathBuf>, SyncError> {
    let mut moved = Vec::with_capacity(files.len());
    for f in files {
        let (from, to) = (staging.join(&f.name), out_dir.join(&f.name));
        let result = if to.symlink_metadata().is_ok() {
            Err(ShareError::OutputExists { path: to.clone() }.into())
        } else {
            std::fs::rename(&from, &to).map_err(|e| SyncError::io(&to, e))
        };
        if let Err(e) = result {
            for path in &moved {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        moved.push(to);
    }
    // The renames survive a crash only once the directory is synced.
    if let Ok(dir) = std::fs::File::open(out_dir) {
        let _ = dir.sync_all();
    }
    Ok(moved)
}

/// A grant's manifest entry, checked as a file row is for a fetch.
fn stored_from_grant(f: &GrantFile, release: &str) -> Result<StoredFile, SyncError> {
    let bad = |reason| ShareError::BadGrantFile {
        file: f.id.clone(),
        reason,
    };
    let id = ObjectId::parse(&f.id).map_err(|_| bad("its id names no object"))?;
    if f.scheme != SCHEME_CHUNKED_V1 {
        return Err(bad("its encryption scheme is not one this build reads").into());
    }
    let size = i64::try_from(f.size).map_err(|_| bad("its size is beyond the format's"))?;
    Ok(StoredFile {
        id,
        release: release.to_owned(),
        size: checked_size(&f.id, size)?,
        nonce: BaseNonce::from_bytes(*f.nonce.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bae_crypto::chunked::NONCE_LEN;

    #[test]
    fn bucket_urls_become_grant_coordinates() {
        assert_eq!(
            grant_bucket("/mnt/nas/bae").unwrap(),
            GrantBucket::Local {
                path: "/mnt/nas/bae".into()
            }
        );
        assert_eq!(
            grant_bucket("s3://lib/alice?endpoint=http://127.0.0.1:9000&region=auto").unwrap(),
            GrantBucket::S3 {
                bucket: "lib".into(),
                prefix: "alice".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("auto".into()),
                path_style: true,
            }
        );
        assert!(matches!(
            grant_bucket("memory://"),
            Err(SyncError::Share(e)) if matches!(*e, ShareError::UnsharableBucket { .. })
        ));
    }

    #[test]
    fn manifest_entries_are_checked_like_file_rows() {
        let f = GrantFile {
            id: "not an id/..".into(),
            name: "a.flac".into(),
            size: 10,
            nonce: BaseNonce::from_bytes([1; NONCE_LEN]),
            scheme: SCHEME_CHUNKED_V1.into(),
        };
        assert!(stored_from_grant(&f, "r").is_err());
        let f = GrantFile {
            id: "0a0b0c0d-0000-4000-8000-000000000000".into(),
            scheme: "other".into(),
            ..f
        };
        assert!(stored_from_grant(&f, "r").is_err());
        let f = GrantFile {
            scheme: SCHEME_CHUNKED_V1.into(),
            ..f
        };
        stored_from_grant(&f, "r").unwrap();
    }
}
