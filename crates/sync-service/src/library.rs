//! Library-level commands: set a library up for sync, join one, open one.

use crate::error::SyncError;
use crate::images::images_dir_for;
use crate::keystore::{read_key_file, write_new_private, write_private, KeyFile, KeyStore};
use crate::marker;
use crate::members::{write_genesis, Member};
use crate::progress::Progress;
use crate::service::SyncService;
use bae_crypto::{IdentityPublicKey, IdentitySigningKey};
use bae_crypto::{KeyEpoch, KeyRing, LibraryKey};
use bae_membership::IdentityError;
use bae_membership::{LibraryId, Role};
use bae_oplog::OpRecorder;
use bae_storage_s3::layout::LIBRARY_MARKER_KEY;
use rusqlite::params;
use std::path::Path;

pub use crate::lock::LibraryLock;

/// A library's id: the fingerprint of its key (so a device joining with the
/// key knows the id without being told).
pub fn library_id(key: &LibraryKey) -> String {
    key.fingerprint().to_string()
}

/// The library id and bucket URL `init` or `join` saved, if any.
fn sync_setup(rec: &mut OpRecorder) -> Result<Option<(String, String)>, SyncError> {
    crate::service::migrate(rec)?;
    let (id, url): (Option<String>, Option<String>) = rec.sync_parts().0.query_row(
        "SELECT library_id, bucket_url FROM bae_sync_library WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(id.zip(url))
}

fn open_store(url: &str) -> Result<std::sync::Arc<dyn bae_storage_s3::ObjectStore>, SyncError> {
    bae_storage_s3::open_store(url).map_err(|source| SyncError::BucketUrl {
        url: url.to_owned(),
        source,
    })
}

/// Opens the bucket of library `id`: an S3 bucket with the credentials an
/// invite carried for it (stored in `keys`), if any; the `AWS_*`
/// environment otherwise.
fn open_library_store(
    url: &str,
    keys: &KeyStore,
    id: &str,
) -> Result<std::sync::Arc<dyn bae_storage_s3::ObjectStore>, SyncError> {
    let bad_url = |source| SyncError::BucketUrl {
        url: url.to_owned(),
        source,
    };
    let config = bae_storage_s3::StoreConfig::parse(url).map_err(|e| bad_url(e.into()))?;
    let config = match (config, keys.load_s3_credentials(id)?) {
        (bae_storage_s3::StoreConfig::S3(mut s3), Some(text)) => {
            let mut lines = text.lines();
            let (Some(access), Some(secret)) = (lines.next(), lines.next()) else {
                return Err(SyncError::DamagedCredentials {
                    library_id: id.to_owned(),
                });
            };
            let mut credentials = bae_storage_s3::S3Credentials::new(access, secret);
            if let Some(token) = lines.next().filter(|t| !t.is_empty()) {
                credentials = credentials.with_session_token(token);
            }
            s3.credentials = Some(credentials);
            bae_storage_s3::StoreConfig::S3(s3)
        }
        (config, _) => config,
    };
    config.open().map_err(bad_url)
}

/// Stores S3 credentials an invite carried for library `library`, so its
/// bucket opens with them (`join --invite`, then every later command).
pub fn save_s3_credentials(
    keys: &KeyStore,
    library: LibraryId,
    credentials: &bae_membership::InviteCredentials,
) -> Result<(), SyncError> {
    let mut text = zeroize::Zeroizing::new(String::new());
    for part in [
        Some(credentials.access_key.as_str()),
        Some(credentials.secret_key.as_str()),
        credentials.session_token.as_deref().map(String::as_str),
    ]
    .into_iter()
    .flatten()
    {
        if part.contains(['\n', '\r']) {
            return Err(SyncError::DamagedCredentials {
                library_id: library.to_string(),
            });
        }
        text.push_str(part);
        text.push('\n');
    }
    keys.save_s3_credentials(&library.to_string(), &text)
}

/// The bucket URL as it is saved: a relative directory made absolute, so
/// later commands from any directory name the same bucket.
fn absolute_url(url: &str) -> Result<String, SyncError> {
    bae_storage_s3::absolute_bucket_url(url).map_err(|e| SyncError::BucketUrl {
        url: url.to_owned(),
        source: e.into(),
    })
}

/// Saves the library id, bucket and founder: the last step of a
/// successful `init` or `join`, so a failed one leaves nothing that makes a
/// retry refuse.
fn remember(
    rec: &mut OpRecorder,
    id: &str,
    url: &str,
    founder: &IdentityPublicKey,
) -> Result<(), SyncError> {
    rec.sync_parts().0.execute(
        "UPDATE bae_sync_library SET library_id = ?1, bucket_url = ?2, founder = ?3 WHERE id = 1",
        params![id, url, founder.to_bytes().as_slice()],
    )?;
    Ok(())
}

/// The founder `init` or `join` saved.
fn saved_founder(rec: &mut OpRecorder) -> Result<IdentityPublicKey, SyncError> {
    let bytes: Option<Vec<u8>> = rec.sync_parts().0.query_row(
        "SELECT founder FROM bae_sync_library WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| IdentityPublicKey::from_bytes(&b).ok())
        .ok_or(SyncError::NoFounder)
}

/// Forgets what this device knew of a library's bucket: its id, URL and
/// founder, the cached membership entries and device bindings, the
/// cursors, problems, wanted images, checkpoints written and replay mark. `own_stream` also drops this device's pushed-batch hashes and
/// image queue (when it starts a new stream).
fn forget_bucket_state(rec: &mut OpRecorder, own_stream: bool) -> Result<(), SyncError> {
    let tx = rec.sync_parts().0.transaction()?;
    tx.execute_batch(
        "UPDATE bae_sync_library SET library_id = NULL, bucket_url = NULL, key_epoch = 0,
             last_error = NULL, checkpoint_replay_after = NULL, founder = NULL WHERE id = 1;
         DELETE FROM bae_sync_membership;
         DELETE FROM bae_sync_device_authors;
         DELETE FROM bae_sync_cursors;
         DELETE FROM bae_sync_problems;
         DELETE FROM bae_sync_wanted_images;
         DELETE FROM bae_sync_checkpoints_written;",
    )?;
    if own_stream {
        tx.execute_batch(
            "DELETE FROM bae_sync_batch_hashes;
             DELETE FROM bae_sync_image_queue;",
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The service over `rec`, keeping image bytes next to the library file.
fn service(
    rec: OpRecorder,
    store: std::sync::Arc<dyn bae_storage_s3::ObjectStore>,
    keys: impl Into<KeyRing>,
    member: Member,
) -> Result<SyncService, SyncError> {
    let images = rec.path().map(images_dir_for);
    let service = SyncService::new(rec, store, keys, member)?;
    Ok(match images {
        Some(dir) => service.with_images_dir(dir),
        None => service,
    })
}

/// `init`: loads (or makes, and saves with the key) the user's identity,
/// makes a library key,
/// writes the library marker (naming this user as founder), then the
/// genesis membership entry (the founder adds itself as owner), pushes what
/// the library already holds, and only then saves the bucket, so a failed
/// `init` leaves the library as it was and can be retried. `rec` is a
/// recorder on the library (the host's tables exist; the engine's are
/// created if needed).
///
/// A bucket that already holds a library (a marker, or any object) is
/// refused ([`SyncError::BucketHoldsLibrary`]), with one exception that
/// makes a retry work: a marker whose key is in `keys`, that names this
/// user as founder and this device as founding device, in a bucket with
/// no other device's head, is the marker of an earlier `init` of this
/// device that failed after writing it, and is taken up again.
pub async fn init(
    mut rec: OpRecorder,
    bucket_url: &str,
    keys: &KeyStore,
) -> Result<SyncService, SyncError> {
    if let Some((_, url)) = sync_setup(&mut rec)? {
        return Err(SyncError::AlreadyInitialized(url));
    }
    // The user's identity, or a new one saved only once this init writes
    // something signed by it (a failed init leaves nothing behind).
    let identities = keys.identity_store();
    let identity = match identities.load() {
        Err(IdentityError::NotFound { .. }) => IdentitySigningKey::generate(),
        other => other?,
    };
    let founder = identity.public_key();
    let url = absolute_url(bucket_url)?;
    let store = bae_storage_s3::create_store(&url).map_err(|source| SyncError::BucketUrl {
        url: url.clone(),
        source,
    })?;
    let held = |library_id| SyncError::BucketHoldsLibrary {
        bucket: url.clone(),
        library_id,
    };
    let key = match marker::probe(store.as_ref()).await? {
        marker::Found::Empty => {
            let key = LibraryKey::generate();
            let id = library_id(&key);
            // The key is saved before anything sealed with it reaches the
            // bucket, and the marker before any batch (what is referenced
            // before what references it).
            identities.adopt(&identity)?;
            keys.save(&id, &KeyRing::from(key.clone()))?;
            if let Err(e) = store
                .put(
                    LIBRARY_MARKER_KEY,
                    &marker::seal(&key, &founder, rec.device()),
                )
                .await
            {
                // Nothing of this library exists anywhere: drop its key.
                let _ = keys.delete(&id);
                return Err(e.into());
            }
            key
        }
        marker::Found::Marker { bytes, library_id } => {
            let own = keys
                .load(&library_id)
                .ok()
                .and_then(|ring| ring.get(KeyEpoch::FIRST).cloned());
            let device = rec.device();
            let heads = store.list(bae_storage_s3::layout::HEADS_PREFIX).await?;
            let others = heads.iter().any(|k| {
                bae_storage_s3::layout::parse_heads_key(k).map_or(true, |(d, _)| d != device)
            });
            let founded_here = |key: &LibraryKey| {
                marker::open(&bytes, key).is_ok_and(|m| m.founding_device == *device.as_bytes())
            };
            match own {
                Some(key)
                    if !others
                        && library_id == self::library_id(&key)
                        && founded_here(&key)
                        && marker::prove_key(store.as_ref(), &url, &key).await? == founder =>
                {
                    key
                }
                _ => return Err(held(Some(library_id))),
            }
        }
        marker::Found::Objects(_) => return Err(held(None)),
    };
    // The genesis before any batch: a batch is accepted only from a member.
    write_genesis(store.as_ref(), &key, &identity).await?;
    let id = library_id(&key);
    let service = service(rec, store, key, Member::founder_of_library(identity))?
        .with_key_store(keys.clone(), id.clone());
    service.push().await?;
    service
        .with_db(move |rec| remember(rec, &id, &url, &founder))
        .await?;
    Ok(service)
}

/// `join`: a new device of the same user, with the key file from `key
/// export` (the library key and the user's identity, so this device signs
/// as the same member). The key file is read (and its checksum checked)
/// before any I/O, and the key is proven to open the bucket's library
/// before anything is written locally; the founder is the one the marker
/// names. The bucket, key and identity are saved only once the first pull
/// is done; a failed join leaves at most the rows it pulled (merged, so a
/// retry applies them again harmlessly) and can be retried.
pub async fn join(
    mut rec: OpRecorder,
    bucket_url: &str,
    key_file: &Path,
    keys: &KeyStore,
    progress: Option<Progress>,
) -> Result<SyncService, SyncError> {
    let KeyFile {
        key,
        identity,
        founder: pinned,
    } = read_key_file(key_file)?;
    if let Some((_, url)) = sync_setup(&mut rec)? {
        return Err(SyncError::AlreadyInitialized(url));
    }
    let url = absolute_url(bucket_url)?;
    let store = open_store(&url)?;
    let founder = marker::prove_key(store.as_ref(), &url, &key).await?;
    check_founder(founder, pinned)?;
    // Another identity on this machine is found before anything is written:
    // it is never replaced.
    let identities = keys.identity_store();
    match identities.load() {
        Ok(stored) if stored.public_key() != identity.public_key() => {
            return Err(IdentityError::AnotherIdentity {
                stored: Box::new(stored.public_key()),
                given: Box::new(identity.public_key()),
            }
            .into())
        }
        Ok(_) | Err(IdentityError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Cursors and problems of an earlier failed join (maybe of another
    // bucket) must not steer this one.
    forget_bucket_state(&mut rec, false)?;
    let service = service(rec, store, key, Member::new(identity, founder))?;
    bootstrap_and_remember(service, progress, &url, founder, keys).await
}

/// The end of every join: the keys of later epochs (a rotated library),
/// the newest checkpoint (if any), the batches after it; then the
/// identity, keys, bucket and founder are saved, so a join that failed
/// before leaves nothing that makes a retry refuse.
async fn bootstrap_and_remember(
    mut service: SyncService,
    progress: Option<Progress>,
    url: &str,
    founder: IdentityPublicKey,
    keys: &KeyStore,
) -> Result<SyncService, SyncError> {
    if let Some(p) = progress {
        service = service.with_progress(p);
    }
    // Entries sealed under later epochs lead to this member's newest key
    // blob before the checkpoint (sealed under the newest) is read.
    service.refresh_members().await?;
    service.bootstrap_from_checkpoint().await?;
    service.pull().await?;
    let ring = service.key_ring();
    let id = library_id(ring.get(KeyEpoch::FIRST).ok_or(SyncError::NoCurrentKey)?);
    keys.identity_store().adopt(service.member.identity())?;
    keys.save(&id, &ring)?;
    let url = url.to_owned();
    let saved = id.clone();
    service
        .with_db(move |rec| remember(rec, &saved, &url, &founder))
        .await?;
    Ok(service.with_key_store(keys.clone(), id))
}

/// `join --invite`: joins as a member someone invited. The identity is
/// this user's, already in `keys`' identity store (`identity show` made
/// it); `library`, `founder` and `inviter` come from the invite code, which
/// the user got out of band and trusts. A library marker naming another
/// founder is refused ([`SyncError::FounderMismatch`]).
///
/// The newest key blob sealed to this identity is opened (its keys must
/// open the library marker, whose library id must be the invite's), the
/// chain is validated from the founder the marker names, and the join goes
/// on only if this identity is a current member and the inviter and the
/// blob's author can manage membership. Then it bootstraps like [`join`].
/// Nothing is saved locally before that all worked.
pub async fn join_invited(
    mut rec: OpRecorder,
    bucket_url: &str,
    library: LibraryId,
    founder: &IdentityPublicKey,
    inviter: &IdentityPublicKey,
    keys: &KeyStore,
    progress: Option<Progress>,
) -> Result<SyncService, SyncError> {
    if let Some((_, url)) = sync_setup(&mut rec)? {
        return Err(SyncError::AlreadyInitialized(url));
    }
    let identity = keys.identity_store().load()?;
    let url = absolute_url(bucket_url)?;
    let store = open_library_store(&url, keys, &library.to_string())?;
    // Oldest first, as a refresh does: garbage at higher epochs cannot hide
    // the blob of the invite; later epochs are adopted by the refresh
    // below, each checked against the chain.
    let epochs = crate::epochs::key_blob_epochs(store.as_ref(), &identity.public_key()).await?;
    let mut read = Err(SyncError::NoKeySealedToYou {
        bucket: url.clone(),
        member: Box::new(identity.public_key()),
    });
    for epoch in epochs.into_iter().take(crate::epochs::MAX_BLOBS_TRIED) {
        match crate::epochs::read_key_blob(store.as_ref(), &identity, library, epoch).await {
            // A failed read is the bucket's, not this blob's: give up.
            Err(e @ SyncError::Store(_)) => return Err(e),
            Ok(found) => {
                read = Ok(found);
                break;
            }
            refused => read = refused,
        }
    }
    let (blob_key, opened) = read?;
    let author = *opened.author();
    let ring = opened.into_ring();
    let first = ring.get(KeyEpoch::FIRST).ok_or(SyncError::NoCurrentKey)?;
    if LibraryId::from(first.fingerprint()) != library {
        return Err(SyncError::invalid(
            &blob_key,
            bae_membership::KeyBlobError::WrongLibrary {
                expected: library,
                found: LibraryId::from(first.fingerprint()),
            },
        ));
    }
    // The founder comes from the code: any key holder, a removed member
    // too, can rewrite the marker to root the chain at themselves.
    let marker_founder = marker::prove_key(store.as_ref(), &url, first).await?;
    check_founder(marker_founder, Some(*founder))?;
    let founder = *founder;
    forget_bucket_state(&mut rec, false)?;
    let service = service(rec, store, ring, Member::new(identity, founder))?;
    service.look_for_newer_keys();
    let chain = service.refresh_members().await?;
    if chain.current_role(&service.member_key()).is_none() {
        return Err(SyncError::NotInvited {
            member: Box::new(service.member_key()),
        });
    }
    for signer in [inviter, &author] {
        if !chain
            .current_role(signer)
            .is_some_and(bae_membership::Role::can_manage)
        {
            return Err(SyncError::InviterCannotManage {
                inviter: Box::new(*signer),
            });
        }
    }
    bootstrap_and_remember(service, progress, &url, founder, keys).await
}

/// Refuses a marker naming another founder than the one pinned out of
/// band (an invite code, a key file); `None` pins nothing (a key file
/// written before founders were in it).
pub(crate) fn check_founder(
    marker: IdentityPublicKey,
    pinned: Option<IdentityPublicKey>,
) -> Result<(), SyncError> {
    match pinned {
        Some(expected) if expected != marker => Err(SyncError::FounderMismatch {
            marker: Box::new(marker),
            expected: Box::new(expected),
        }),
        _ => Ok(()),
    }
}

/// What `leave` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaveReport {
    /// The library left.
    pub library_id: String,
    /// The bucket it synced with.
    pub bucket_url: String,
    /// The device id this library has from now on (a new stream).
    pub new_device: bae_hlc::DeviceId,
}

/// `leave`: undoes `init` or `join` on this device so it can join again
/// (this library or another). The library's rows stay, and so does the
/// merge state (stamps, tombstones: they describe those rows). The sync
/// service forgets the bucket, cursors, problems and its own stream's
/// hashes; the op log starts a new device stream under a new device id
/// (`bae_oplog::start_new_stream`), so nothing recorded before is ever
/// pushed again and a later join starts a clean stream; the key is
/// deleted from `keys`. Refused while a batch is unpushed
/// (`OplogError::UnpushedBatches`): push first, or those edits are lost.
pub fn leave(mut rec: OpRecorder, keys: &KeyStore) -> Result<LeaveReport, SyncError> {
    let (library_id, bucket_url) = sync_setup(&mut rec)?.ok_or(SyncError::NotInitialized)?;
    // Local writes not yet folded into the stamps are folded first: the op
    // log they live in is about to be emptied.
    bae_merge::fold_local(&mut rec)?;
    let new_device = bae_oplog::start_new_stream(rec.sync_parts().0)?;
    forget_bucket_state(&mut rec, true)?;
    keys.delete(&library_id)?;
    Ok(LeaveReport {
        library_id,
        bucket_url,
        new_device,
    })
}

/// Opens a library set up by `init` or `join`.
pub fn open(mut rec: OpRecorder, keys: &KeyStore) -> Result<SyncService, SyncError> {
    let (id, url) = sync_setup(&mut rec)?.ok_or(SyncError::NotInitialized)?;
    let founder = saved_founder(&mut rec)?;
    let ring = keys.load(&id)?;
    let identity = keys.identity_store().load()?;
    let store = open_library_store(&url, keys, &id)?;
    Ok(service(rec, store, ring, Member::new(identity, founder))?.with_key_store(keys.clone(), id))
}

/// The bucket URL `init` or `join` saved for the library.
pub fn saved_bucket(mut rec: OpRecorder) -> Result<String, SyncError> {
    Ok(sync_setup(&mut rec)?.ok_or(SyncError::NotInitialized)?.1)
}

/// This user's role in the library as of its last pull, from the cached
/// membership chain (no network, no bucket credentials needed): what a host
/// checks before recording an edit, since a reader's edits are refused by
/// every other member. `None` for a library not set up for sync (edits are
/// its own) or a user who is not a member.
pub fn cached_role(mut rec: OpRecorder, keys: &KeyStore) -> Result<Option<Role>, SyncError> {
    let Some((id, _)) = sync_setup(&mut rec)? else {
        return Ok(None);
    };
    let founder = saved_founder(&mut rec)?;
    let ring = keys.load(&id)?;
    let first = ring.get(KeyEpoch::FIRST).ok_or(SyncError::NoCurrentKey)?;
    let me = keys.identity_store().load()?.public_key();
    crate::members::cached_role(
        rec.sync_parts().0,
        LibraryId::from(first.fingerprint()),
        founder,
        &me,
    )
}

/// `key export`: writes the library key and the user's identity (a
/// [`KeyFile`]) to a new file only its owner can read (0600). An existing `out` is refused
/// ([`SyncError::ExportTargetExists`]) unless `force`, which replaces it
/// atomically; the library file itself, or any SQLite database, is never
/// replaced ([`SyncError::ExportOntoDatabase`]).
pub fn export_key(
    mut rec: OpRecorder,
    keys: &KeyStore,
    out: &Path,
    force: bool,
) -> Result<(), SyncError> {
    let (id, _) = sync_setup(&mut rec)?.ok_or(SyncError::NotInitialized)?;
    if force && std::fs::symlink_metadata(out).is_ok() {
        refuse_database(out, rec.path())?;
    }
    let founder = saved_founder(&mut rec)?;
    let text = KeyFile {
        key: keys
            .load(&id)?
            .get(KeyEpoch::FIRST)
            .cloned()
            .ok_or(SyncError::NoCurrentKey)?,
        identity: keys.identity_store().load()?,
        founder: Some(founder),
    }
    .to_text();
    if force {
        write_private(out, text.as_bytes())
    } else {
        write_new_private(out, text.as_bytes())
    }
}

/// Refuses `out` when it is the library file or starts like an SQLite
/// database or write-ahead log (another library, a backup).
fn refuse_database(out: &Path, library: Option<&Path>) -> Result<(), SyncError> {
    use std::io::Read;
    let refused = || SyncError::ExportOntoDatabase {
        path: out.display().to_string(),
    };
    if let (Some(lib), Ok(target)) = (library, out.canonicalize()) {
        if lib.canonicalize().is_ok_and(|lib| lib == target) {
            return Err(refused());
        }
    }
    let mut magic = [0u8; 16];
    let mut read = 0;
    if let Ok(mut file) = std::fs::File::open(out) {
        while read < magic.len() {
            match file.read(&mut magic[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    }
    const SQLITE: &[u8; 16] = b"SQLite format 3\0";
    const WAL: [[u8; 4]; 2] = [[0x37, 0x7f, 0x06, 0x82], [0x37, 0x7f, 0x06, 0x83]];
    if magic == *SQLITE || WAL.iter().any(|w| magic[..4] == *w && read >= 4) {
        return Err(refused());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bae_oplog::fixture::{demo_album, open_library, Library};

    struct Setup {
        dir: tempfile::TempDir,
        bucket: String,
    }

    impl Setup {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let bucket = dir.path().join("bucket").to_string_lossy().into_owned();
            Setup { dir, bucket }
        }

        fn keys(&self, name: &str) -> KeyStore {
            KeyStore::Files(self.dir.path().join(name))
        }

        fn rec(&self, name: &str) -> OpRecorder {
            open_library(&self.dir.path().join(format!("{name}.db"))).unwrap()
        }

        fn library_with(&self, name: &str, albums: u64) -> OpRecorder {
            let mut lib = Library::new(self.rec(name));
            for i in 0..albums {
                lib.import_album(&demo_album(1, i, 2)).unwrap();
            }
            self.rec(name)
        }

        fn export(&self, name: &str, keys: &KeyStore) -> std::path::PathBuf {
            let out = self.dir.path().join(format!("{name}.key"));
            export_key(self.rec(name), keys, &out, false).unwrap();
            out
        }
    }

    fn setup_of(rec: &mut OpRecorder) -> Option<(String, String)> {
        sync_setup(rec).unwrap()
    }

    #[tokio::test]
    async fn init_writes_the_marker_first_and_refuses_a_bucket_with_a_library() {
        let s = Setup::new();
        let keys = s.keys("home");
        let laptop = init(s.library_with("laptop", 1), &s.bucket, &keys)
            .await
            .unwrap();
        let key = keys
            .load(&library_id(&laptop.key_ring().current().unwrap().1.clone()))
            .unwrap()
            .get(KeyEpoch::FIRST)
            .cloned()
            .unwrap();
        marker::prove_key(laptop.store.as_ref(), &s.bucket, &key)
            .await
            .unwrap();
        let err = init(s.library_with("other", 1), &s.bucket, &s.keys("other"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, SyncError::BucketHoldsLibrary { library_id: Some(id), .. } if *id == library_id(&key)),
            "{err}"
        );
        assert_eq!(setup_of(&mut s.rec("other")), None);
    }

    #[tokio::test]
    async fn an_init_that_failed_after_its_marker_is_taken_up_again() {
        let s = Setup::new();
        let keys = s.keys("home");
        // What a failed init leaves: the key saved and the marker written,
        // nothing recorded in the library.
        let key = LibraryKey::generate();
        keys.save(&library_id(&key), &KeyRing::from(key.clone()))
            .unwrap();
        let store = bae_storage_s3::create_store(&s.bucket).unwrap();
        let founder = keys.identity_store().load_or_create().unwrap();
        let rec = s.library_with("laptop", 1);
        store
            .put(
                LIBRARY_MARKER_KEY,
                &marker::seal(&key, &founder.public_key(), rec.device()),
            )
            .await
            .unwrap();
        let laptop = init(rec, &s.bucket, &keys).await.unwrap();
        assert_eq!(laptop.key_ring().current().unwrap().1, &key);
        assert!(setup_of(&mut s.rec("laptop")).is_some());
    }

    #[tokio::test]
    async fn join_with_a_wrong_key_writes_nothing_and_the_right_key_then_works() {
        let s = Setup::new();
        let home = s.keys("home");
        init(s.library_with("laptop", 2), &s.bucket, &home)
            .await
            .unwrap();
        let right = s.export("laptop", &home);
        let wrong = s.dir.path().join("wrong.key");
        let other_library = KeyFile {
            key: LibraryKey::generate(),
            identity: bae_crypto::IdentitySigningKey::generate(),
            founder: None,
        };
        write_new_private(&wrong, other_library.to_text().as_bytes()).unwrap();

        let desktop_keys = s.keys("desktop-home");
        let err = join(s.rec("desktop"), &s.bucket, &wrong, &desktop_keys, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, SyncError::KeyDoesNotOpenLibrary { .. }),
            "{err}"
        );
        let mut desktop = s.rec("desktop");
        assert_eq!(setup_of(&mut desktop), None);
        let rows =
            bae_oplog::canonical_dump(desktop.sync_parts().0, &bae_oplog::BAE_SCHEMA).unwrap();
        assert_eq!(rows, "");
        assert!(!s.dir.path().join("desktop-home").exists());

        join(s.rec("desktop"), &s.bucket, &right, &desktop_keys, None)
            .await
            .unwrap();
        assert!(setup_of(&mut s.rec("desktop")).is_some());
    }

    #[tokio::test]
    async fn join_refuses_an_empty_bucket_and_a_missing_one() {
        let s = Setup::new();
        let home = s.keys("home");
        init(s.library_with("laptop", 1), &s.bucket, &home)
            .await
            .unwrap();
        let key = s.export("laptop", &home);
        let empty = s.dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = join(s.rec("d"), empty.to_str().unwrap(), &key, &home, None)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SyncError::NotALibrary(_)), "{err}");
        let missing = s.dir.path().join("missing");
        let err = join(s.rec("d"), missing.to_str().unwrap(), &key, &home, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                &err,
                SyncError::BucketUrl {
                    source: bae_storage_s3::StoreError::MissingDirectory { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn leave_keeps_rows_drops_sync_state_and_key_and_starts_a_new_stream() {
        let s = Setup::new();
        let home = s.keys("home");
        let laptop = init(s.library_with("laptop", 2), &s.bucket, &home)
            .await
            .unwrap();
        let id = library_id(laptop.key_ring().current().unwrap().1);
        let old_device = laptop.device();
        drop(laptop);
        let mut rec = s.rec("laptop");
        let rows = bae_oplog::canonical_dump(rec.sync_parts().0, &bae_oplog::BAE_SCHEMA).unwrap();
        home.save_s3_credentials(&id, "access\nsecret\n").unwrap();
        let report = leave(rec, &home).unwrap();
        assert_eq!(report.library_id, id);
        assert_ne!(report.new_device, old_device);
        assert!(home.load(&id).is_err(), "key deleted");
        assert!(
            home.load_s3_credentials(&id).unwrap().is_none(),
            "credentials deleted"
        );
        let mut rec = s.rec("laptop");
        assert_eq!(rec.device(), report.new_device);
        assert_eq!(setup_of(&mut rec), None);
        assert_eq!(
            bae_oplog::canonical_dump(rec.sync_parts().0, &bae_oplog::BAE_SCHEMA).unwrap(),
            rows
        );
        assert!(bae_oplog::unpushed_batches(rec.sync_parts().0)
            .unwrap()
            .is_empty());
        assert_eq!(bae_oplog::last_batch(rec.sync_parts().0).unwrap().0, 0);
        assert!(matches!(leave(rec, &home), Err(SyncError::NotInitialized)));
    }

    /// Review finding 4: `init` of an EMPTY library writes the marker and
    /// no head (there is nothing to push). A second, different library
    /// on the same machine (same key store) `init`ed with the same bucket
    /// then passes for "this device's earlier failed init" (marker whose key
    /// is here, no other device's head) and takes the first library's
    /// bucket and key: the two libraries silently become one.
    #[tokio::test]
    async fn init_refuses_the_bucket_of_another_empty_library_of_the_same_home() {
        let s = Setup::new();
        let keys = s.keys("home");
        let first = init(s.library_with("music", 0), &s.bucket, &keys)
            .await
            .unwrap();
        assert!(setup_of(&mut s.rec("music")).is_some());
        drop(first);
        let second = init(s.library_with("other", 1), &s.bucket, &keys).await;
        assert!(
            matches!(&second, Err(SyncError::BucketHoldsLibrary { .. })),
            "a second library took over the first one's bucket: {:?}",
            second.as_ref().err().map(ToString::to_string)
        );
        assert_eq!(setup_of(&mut s.rec("other")), None);
    }
}
