#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Share grants through the library API: a member shares a release, a
//! stranger redeems it byte-exact with nothing but the grant and their
//! identity; the key it gives opens no other release; a grant for someone
//! else, expired, altered or naming a file that does not decrypt writes
//! nothing; a non-member cannot share.

mod common;

use bae_crypto::IdentitySigningKey;
use bae_membership::grant::{Grant, GrantError, GrantFile, GrantPayload, GrantTerms};
use bae_oplog::fixture::{demo_file_bytes, open_library};
use bae_storage_s3::layout::{self, ObjectId};
use bae_sync_service::grants::{grant_bucket, redeem, ShareError};
use bae_sync_service::{library, FileError, Member, SyncError, SyncService};
use common::*;
use std::path::Path;

const NOW: u64 = 1_800_000_000;
const LATER: u64 = NOW + 86_400;

/// The first device with albums 0 and 1 and their files, uploaded.
async fn laptop(w: &World) -> SyncService {
    let lib = w.library("laptop");
    import_with_files(&lib, 0);
    import_with_files(&lib, 1);
    let s = library::init(open_library(&lib).unwrap(), &w.bucket, &w.keys)
        .await
        .unwrap();
    library::export_key(open_library(&lib).unwrap(), &w.keys, &w.key_file(), false).unwrap();
    s.upload_release_files(None).await.unwrap();
    s
}

fn stranger() -> IdentitySigningKey {
    IdentitySigningKey::from_seed(&[0x5a; 32])
}

async fn share(w: &World, s: &SyncService, album: u64) -> Grant {
    s.share_release(
        &album_row(album, "releases"),
        stranger().public_key(),
        LATER,
        grant_bucket(&w.bucket).unwrap(),
        None,
    )
    .await
    .unwrap()
}

fn share_error(e: SyncError) -> ShareError {
    match e {
        SyncError::Share(e) => *e,
        other => panic!("expected a share error, got {other:?}"),
    }
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

async fn share_then_redeem_byte_exact(bucket: Bucket) {
    let w = World::new(bucket, "grant-redeem");
    let laptop = laptop(&w).await;
    let grant = share(&w, &laptop, 0).await;
    let out = w.dir.path().join("received");
    let report = redeem(grant.as_bytes(), &stranger(), &out, NOW)
        .await
        .unwrap();
    assert_eq!(report.files.len(), 3);
    assert_eq!(report.granter, laptop.member_key());
    let names = laptop
        .release_files(&album_row(0, "releases"))
        .await
        .unwrap();
    for f in names {
        let got = std::fs::read(out.join(&f.name)).unwrap();
        assert!(got == demo_file_bytes(&f.id), "{} differs", f.name);
    }
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        3,
        "no staging left"
    );
    // A second redeem into the same directory replaces nothing.
    let err = share_error(
        redeem(grant.as_bytes(), &stranger(), &out, NOW)
            .await
            .unwrap_err(),
    );
    assert!(matches!(err, ShareError::OutputExists { .. }), "{err:?}");
}

#[tokio::test]
async fn a_shared_release_redeems_byte_exact_from_a_local_bucket() {
    share_then_redeem_byte_exact(Bucket::Local).await;
}

#[tokio::test]
async fn a_shared_release_redeems_byte_exact_from_s3() {
    share_then_redeem_byte_exact(Bucket::S3).await;
}

/// The release key a grant gives does not open another release's
/// objects: decrypting one directly fails, and a grant whose manifest
/// names another release's file (signed by a real member) writes nothing.
#[tokio::test]
async fn the_grant_key_opens_no_other_release() {
    let w = World::new(Bucket::Local, "grant-other-release");
    let laptop = laptop(&w).await;
    let grant = share(&w, &laptop, 0).await;
    let payload = grant.open(&stranger(), NOW).unwrap();
    let other = &file_ids(1)[0];
    let object = w
        .store()
        .get(
            &layout::storage_key(&ObjectId::parse(other).unwrap()),
            1 << 20,
        )
        .await
        .unwrap();
    assert!(matches!(
        bae_crypto::chunked::decrypt(&payload.release_key, &object),
        Err(bae_crypto::ChunkedError::Tampered { .. })
    ));

    // The granter's own identity signs a grant with release 0's key and
    // release 1's manifest.
    let other_grant = share(&w, &laptop, 1).await;
    let other_files = other_grant.open(&stranger(), NOW).unwrap().files;
    let identity = bae_sync_service::keystore::read_key_file(&w.key_file())
        .unwrap()
        .identity;
    let forged = Grant::issue(
        &identity,
        grant.terms().clone(),
        &GrantPayload {
            files: other_files,
            ..payload
        },
    )
    .unwrap();
    let out = w.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = redeem(forged.as_bytes(), &stranger(), &out, NOW)
        .await
        .unwrap_err();
    match err {
        SyncError::File(e) => assert!(matches!(*e, FileError::Corrupt { .. }), "{e:?}"),
        other => panic!("expected a corrupt file, got {other:?}"),
    }
    assert!(is_empty(&out), "nothing written");
}

#[tokio::test]
async fn refused_grants_write_nothing() {
    let w = World::new(Bucket::Local, "grant-refused");
    let laptop = laptop(&w).await;
    let grant = share(&w, &laptop, 0).await;
    let out = w.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let grant_error = |e: SyncError| match share_error(e) {
        ShareError::Grant(e) => e,
        other => panic!("expected a grant error, got {other:?}"),
    };
    // Another identity.
    let other = IdentitySigningKey::from_seed(&[0x6b; 32]);
    let e = grant_error(
        redeem(grant.as_bytes(), &other, &out, NOW)
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, GrantError::NotForYou { .. }), "{e:?}");
    // Expired.
    let e = grant_error(
        redeem(grant.as_bytes(), &stranger(), &out, LATER)
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, GrantError::Expired { .. }), "{e:?}");
    // Altered, truncated, another version.
    let mut altered = grant.as_bytes().to_vec();
    let mid = altered.len() / 2;
    altered[mid] ^= 1;
    let e = grant_error(redeem(&altered, &stranger(), &out, NOW).await.unwrap_err());
    assert_eq!(e, GrantError::BadSignature);
    let cut = &grant.as_bytes()[..grant.as_bytes().len() - 1];
    let e = grant_error(redeem(cut, &stranger(), &out, NOW).await.unwrap_err());
    assert!(matches!(e, GrantError::Truncated { .. }), "{e:?}");
    let mut v2 = grant.as_bytes().to_vec();
    v2[8] = 2;
    let e = grant_error(redeem(&v2, &stranger(), &out, NOW).await.unwrap_err());
    assert_eq!(e, GrantError::UnsupportedVersion { version: 2 });
    assert!(is_empty(&out));

    // A damaged object (the third file): the first two decrypted, but
    // nothing reaches the directory.
    let files = grant.open(&stranger(), NOW).unwrap().files;
    let last = layout::storage_key(&ObjectId::parse(&files[2].id).unwrap());
    let store = w.store();
    let mut bytes = store.get(&last, 1 << 20).await.unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    store.put(&last, &bytes).await.unwrap();
    let err = redeem(grant.as_bytes(), &stranger(), &out, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::File(_)), "{err:?}");
    assert!(is_empty(&out), "nothing written after a failure part way");
}

#[tokio::test]
async fn a_non_member_cannot_share_and_unuploaded_files_are_named() {
    let w = World::new(Bucket::Local, "grant-non-member");
    let laptop = laptop(&w).await;
    let key = bae_sync_service::keystore::read_key_file(&w.key_file()).unwrap();
    let outsider = SyncService::new(
        open_library(&w.library("laptop")).unwrap(),
        w.store(),
        key.key,
        Member::new(stranger(), laptop.founder_key()),
    )
    .unwrap();
    let err = share_error(
        outsider
            .share_release(
                &album_row(0, "releases"),
                stranger().public_key(),
                LATER,
                grant_bucket(&w.bucket).unwrap(),
                None,
            )
            .await
            .unwrap_err(),
    );
    assert!(matches!(err, ShareError::NotAMember { .. }), "{err:?}");

    import_with_files(&w.library("laptop"), 2);
    let release = album_row(2, "releases");
    let err = share_error(
        laptop
            .share_release(
                &release,
                stranger().public_key(),
                LATER,
                grant_bucket(&w.bucket).unwrap(),
                None,
            )
            .await
            .unwrap_err(),
    );
    match err {
        ShareError::NotUploaded { files, .. } => assert_eq!(files.len(), 3),
        other => panic!("{other:?}"),
    }
}

/// What the grant lists is what the library records (names, sizes).
#[tokio::test]
async fn the_manifest_is_the_release_s_files() {
    let w = World::new(Bucket::Local, "grant-manifest");
    let laptop = laptop(&w).await;
    let grant = share(&w, &laptop, 0).await;
    let files: Vec<GrantFile> = grant.open(&stranger(), NOW).unwrap().files;
    let listed = laptop
        .release_files(&album_row(0, "releases"))
        .await
        .unwrap();
    assert_eq!(files.len(), listed.len());
    for (g, l) in files.iter().zip(&listed) {
        assert_eq!((&g.id, &g.name, g.size), (&l.id, &l.name, l.size));
    }
    let terms: &GrantTerms = grant.terms();
    assert_eq!(terms.library_id, laptop.library_id());
    assert_eq!(terms.expires_at, LATER);
}
