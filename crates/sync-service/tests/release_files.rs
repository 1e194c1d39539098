#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Phase 3 release files through the library API: one device uploads a
//! release's files (encrypted with the release key of the release's
//! epoch), another fetches them whole and by range, byte-exact; files
//! encrypted before a key rotation still fetch after it; damaged, swapped
//! and missing objects are typed errors that write nothing.

mod common;

use bae_crypto::{KeyEpoch, ReleaseKey};
use bae_membership::Role;
use bae_oplog::fixture::{demo_file_bytes, open_library};
use bae_storage_s3::layout::{self, ObjectId};
use bae_sync_service::{
    files_dir_for, library, FileError, KeyStore, SyncError, SyncService, UploadState,
};
use common::*;
use std::path::{Path, PathBuf};

/// The first device with album 0's files, initialized.
async fn laptop(w: &World) -> SyncService {
    let lib = w.library("laptop");
    import_with_files(&lib, 0);
    let s = library::init(open_library(&lib).unwrap(), &w.bucket, &w.keys)
        .await
        .unwrap();
    library::export_key(open_library(&lib).unwrap(), &w.keys, &w.key_file(), false).unwrap();
    s
}

fn file_error(e: SyncError) -> FileError {
    match e {
        SyncError::File(e) => *e,
        other => panic!("expected a file error, got {other:?}"),
    }
}

async fn fetch(
    s: &SyncService,
    file: &str,
    out: &Path,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let n = s.fetch_file(file, out, range).await.unwrap();
    let bytes = std::fs::read(out).unwrap();
    assert_eq!(n, bytes.len() as u64);
    bytes
}

fn out(w: &World, name: &str) -> PathBuf {
    w.dir.path().join(name)
}

async fn upload_on_one_device_fetch_on_another(bucket: Bucket) {
    let w = World::new(bucket, "release-files");
    let laptop = laptop(&w).await;
    let release = album_row(0, "releases");
    let files = laptop.release_files(&release).await.unwrap();
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| f.state == UploadState::Waiting));

    let report = laptop.upload_release_files(Some(&release)).await.unwrap();
    assert_eq!(report.uploaded.len(), 3);
    assert_eq!(field(&laptop, "releases", &release, "key_epoch").await, "0");
    let again = laptop.upload_release_files(None).await.unwrap();
    assert!(
        again.uploaded.is_empty(),
        "uploaded files are not uploaded again"
    );
    assert_eq!(again.already, 3);
    laptop.push().await.unwrap();

    let phone = w.join("phone").await;
    phone.pull().await.unwrap();
    let listed = phone.release_files(&release).await.unwrap();
    assert!(listed.iter().all(|f| f.state == UploadState::Uploaded));
    for id in file_ids(0) {
        let want = demo_file_bytes(&id);
        let got = fetch(&phone, &id, &out(&w, "whole"), None).await;
        assert!(got == want, "file {id} differs");
        let len = want.len() as u64;
        let chunk = 65_536u64;
        for range in [
            0..1,
            len - 1..len,
            chunk - 1..chunk + 1,
            chunk..2 * chunk,
            0..chunk,
            7..len - 3,
            9..9,
            len..len,
        ] {
            let got = fetch(&phone, &id, &out(&w, "part"), Some(range.clone())).await;
            assert!(
                got == want[range.start as usize..range.end as usize],
                "range {range:?} of {id} differs"
            );
        }
        let past = out(&w, "past");
        let e = file_error(
            phone
                .fetch_file(&id, &past, Some(len - 1..len + 1))
                .await
                .unwrap_err(),
        );
        assert!(
            matches!(e, FileError::RangeOutOfBounds { end, size, .. } if end == len + 1 && size == len),
            "{e:?}"
        );
        assert!(!past.exists(), "a refused range writes nothing");
    }
}

#[tokio::test]
async fn upload_on_one_device_fetch_on_another_local() {
    upload_on_one_device_fetch_on_another(Bucket::Local).await;
}

#[tokio::test]
async fn upload_on_one_device_fetch_on_another_s3() {
    upload_on_one_device_fetch_on_another(Bucket::S3).await;
}

/// The release key is the documented derivation from the library key of
/// the release's epoch: the object decrypts with it directly.
#[tokio::test]
async fn objects_are_bae_chunked_under_the_release_key_of_the_epoch() {
    let w = World::new(Bucket::Local, "release-key");
    let laptop = laptop(&w).await;
    laptop.upload_release_files(None).await.unwrap();
    let id = &file_ids(0)[0];
    let key_file = bae_sync_service::keystore::read_key_file(&w.key_file()).unwrap();
    let release_key: ReleaseKey =
        bae_crypto::derive_release_key(&key_file.key, &album_row(0, "releases"));
    let object = w
        .store()
        .get(&layout::storage_key(&ObjectId::parse(id).unwrap()), 1 << 20)
        .await
        .unwrap();
    let plain = bae_crypto::chunked::decrypt(&release_key, &object).unwrap();
    assert!(plain == demo_file_bytes(id));
    assert!(
        bae_crypto::chunked::decrypt(&key_file.key, &object).is_err(),
        "not the library key"
    );
}

/// A release uploaded under epoch 0 still fetches after a revocation
/// rotated the library key; a release first uploaded after it uses the
/// new epoch.
#[tokio::test]
async fn a_file_encrypted_under_epoch_0_fetches_after_a_rotation() {
    let w = World::new(Bucket::Local, "release-rotation");
    let laptop = laptop(&w).await;
    laptop.upload_release_files(None).await.unwrap();
    laptop.push().await.unwrap();
    let phone = w.join("phone").await;

    let bob = KeyStore::Files(w.dir.path().join("bob-home"))
        .identity_store()
        .load_or_create()
        .unwrap()
        .public_key();
    laptop.invite(bob, Role::Member).await.unwrap();
    let revoked = laptop.revoke(bob).await.unwrap();
    assert_eq!(revoked.new_epoch, Some(KeyEpoch(1)));
    assert_eq!(laptop.key_epoch(), KeyEpoch(1));

    import_with_files(&w.library("laptop"), 1);
    laptop.upload_release_files(None).await.unwrap();
    assert_eq!(
        field(&laptop, "releases", &album_row(0, "releases"), "key_epoch").await,
        "0"
    );
    assert_eq!(
        field(&laptop, "releases", &album_row(1, "releases"), "key_epoch").await,
        "1"
    );
    laptop.push().await.unwrap();

    phone.pull().await.unwrap();
    assert_eq!(phone.key_epoch(), KeyEpoch(1));
    for i in [0, 1] {
        for id in file_ids(i) {
            let got = fetch(&phone, &id, &out(&w, "f"), None).await;
            assert!(got == demo_file_bytes(&id), "album {i} file {id}");
        }
    }
}

/// Every way a bucket object can be wrong is a typed error naming the
/// file, and nothing is written to the output path.
#[tokio::test]
async fn damaged_swapped_and_missing_objects_are_refused_and_write_nothing() {
    let w = World::new(Bucket::Local, "release-damage");
    let laptop = laptop(&w).await;
    laptop.upload_release_files(None).await.unwrap();
    let store = w.store();
    let ids = file_ids(0);
    let key = |id: &str| layout::storage_key(&ObjectId::parse(id).unwrap());
    let original = store.get(&key(&ids[0]), 1 << 20).await.unwrap();
    let other = store.get(&key(&ids[1]), 1 << 20).await.unwrap();
    let dest = out(&w, "never");
    let len = demo_file_bytes(&ids[0]).len() as u64;

    let cases: Vec<DamageCase> = vec![
        ("flipped", Some(flip(&original, 30_000)), None),
        (
            "flipped, read by range",
            Some(flip(&original, 30_000)),
            Some(0..10),
        ),
        (
            "truncated",
            Some(original[..original.len() - 5].to_vec()),
            None,
        ),
        (
            "truncated, read by range",
            Some(original[..original.len() - 5].to_vec()),
            Some(len - 1..len),
        ),
        ("extended", Some([original.as_slice(), b"x"].concat()), None),
        ("swapped", Some(other.clone()), None),
        ("swapped, read by range", Some(other.clone()), Some(0..10)),
        ("missing", None, None),
        ("missing, read by range", None, Some(0..10)),
    ];
    for (what, object, range) in cases {
        match &object {
            Some(bytes) => store.put(&key(&ids[0]), bytes).await.unwrap(),
            None => store.delete(&key(&ids[0])).await.unwrap(),
        }
        let e = file_error(laptop.fetch_file(&ids[0], &dest, range).await.unwrap_err());
        let named = match &e {
            FileError::Corrupt { file, .. }
            | FileError::WrongSize { file, .. }
            | FileError::NonceMismatch { file, .. }
            | FileError::Missing { file, .. } => file.clone(),
            other => panic!("{what}: unexpected {other:?}"),
        };
        assert_eq!(named, ids[0], "{what}");
        assert!(e.to_string().contains(&ids[0]), "{what}: {e}");
        match what {
            "truncated" | "extended" => {
                assert!(matches!(e, FileError::WrongSize { .. }), "{what}: {e:?}")
            }
            "swapped" => assert!(
                matches!(e, FileError::NonceMismatch { .. })
                    || matches!(e, FileError::WrongSize { .. }),
                "{what}: {e:?}"
            ),
            m if m.starts_with("missing") => {
                assert!(matches!(e, FileError::Missing { .. }), "{what}: {e:?}")
            }
            _ => assert!(matches!(e, FileError::Corrupt { .. }), "{what}: {e:?}"),
        }
        assert!(!dest.exists(), "{what}: nothing is written");
    }
    let leftovers: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".bae-fetch-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    store.put(&key(&ids[0]), &original).await.unwrap();
    assert!(fetch(&laptop, &ids[0], &dest, None).await == demo_file_bytes(&ids[0]));
}

/// What a case calls itself, the object it puts in place (none: deleted),
/// and the range it reads (none: the whole file).
type DamageCase = (&'static str, Option<Vec<u8>>, Option<std::ops::Range<u64>>);

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 1;
    b
}

/// Files not uploaded yet, unknown ids and a local copy that changed are
/// refused by name.
#[tokio::test]
async fn not_uploaded_unknown_and_changed_files_are_refused() {
    let w = World::new(Bucket::Local, "release-refusals");
    let laptop = laptop(&w).await;
    let ids = file_ids(0);
    let dest = out(&w, "x");
    let e = file_error(laptop.fetch_file(&ids[0], &dest, None).await.unwrap_err());
    assert!(
        matches!(&e, FileError::NotUploaded { file } if *file == ids[0]),
        "{e:?}"
    );
    let e = file_error(
        laptop
            .fetch_file("ffff-nope", &dest, None)
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(&e, FileError::UnknownFile { file } if file == "ffff-nope"),
        "{e:?}"
    );
    let e = file_error(laptop.release_files("nope").await.unwrap_err());
    assert!(
        matches!(&e, FileError::UnknownRelease { release } if release == "nope"),
        "{e:?}"
    );
    assert!(!dest.exists());

    let source = files_dir_for(&w.library("laptop")).join(&ids[0]);
    std::fs::write(&source, b"changed").unwrap();
    let e = file_error(laptop.upload_release_files(None).await.unwrap_err());
    assert!(
        matches!(&e, FileError::SourceChanged { file, found: 7, .. } if *file == ids[0]),
        "{e:?}"
    );

    // A device without the bytes leaves the file to the one that has them.
    std::fs::remove_file(&source).unwrap();
    let r = laptop.upload_release_files(None).await.unwrap();
    assert_eq!(r.elsewhere, vec![ids[0].clone()]);
    // (The refused upload had uploaded the files before the changed one.)
    assert_eq!(r.uploaded.len() + r.already, 2);
    let listed = laptop
        .release_files(&album_row(0, "releases"))
        .await
        .unwrap();
    let state = |id: &str| listed.iter().find(|f| f.id == id).unwrap().state;
    assert_eq!(state(&ids[0]), UploadState::Elsewhere);
    assert_eq!(state(&ids[1]), UploadState::Uploaded);
}

/// An upload that fails part way (the bucket refuses the second object)
/// keeps the file it finished; running it again uploads only the rest, and
/// another device fetches every file byte-exact.
#[tokio::test]
async fn an_upload_cut_short_finishes_the_rest_when_run_again() {
    use bae_storage_s3::testing::{Fault, FaultyStore, OpKind, Trigger};
    let w = World::new(Bucket::Local, "release-files-resume");
    drop(laptop(&w).await);
    let faulty = std::sync::Arc::new(FaultyStore::new(w.store()));
    let laptop = w.device_over("laptop", faulty.clone());
    let release = album_row(0, "releases");
    let refused = bae_storage_s3::StoreError::Transient {
        detail: "the bucket refused the second object".into(),
    };
    faulty.inject(OpKind::Put, Trigger::Nth(2), Fault::Error(refused));
    let err = laptop
        .upload_release_files(Some(&release))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("second object"), "{err}");
    let states: Vec<UploadState> = laptop
        .release_files(&release)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.state)
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == UploadState::Uploaded)
            .count(),
        1,
        "{states:?}"
    );
    let first = laptop
        .release_files(&release)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.state == UploadState::Uploaded)
        .unwrap();
    let key = layout::storage_key(&ObjectId::parse(&first.id).unwrap());
    let first_object = w.store().get(&key, u64::MAX).await.unwrap();

    let again = laptop.upload_release_files(Some(&release)).await.unwrap();
    assert_eq!((again.uploaded.len(), again.already), (2, 1));
    assert_eq!(
        w.store().get(&key, u64::MAX).await.unwrap(),
        first_object,
        "an uploaded file is not uploaded again"
    );
    laptop.push().await.unwrap();
    let phone = w.join("phone").await;
    phone.pull().await.unwrap();
    for id in file_ids(0) {
        let got = fetch(&phone, &id, &out(&w, "whole"), None).await;
        assert!(got == demo_file_bytes(&id), "file {id} differs");
    }
}
