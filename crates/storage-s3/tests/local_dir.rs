//! What only the local-directory store has to get right: atomic writes that
//! never leave a half object under a real name, temp files that never show,
//! and keys that never leave the root.
// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use bae_storage_s3::{LocalDirStore, ObjectStore, StoreError};
use common::{assert_not_found, pattern, TEST_LIMIT};

fn store() -> (tempfile::TempDir, LocalDirStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::create(dir.path().join("bucket")).unwrap();
    (dir, store)
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn a_key_is_a_file_under_the_root_and_no_temp_file_remains() {
    let (_dir, store) = store();
    store
        .put("ops/dev/00000000000000000001", b"batch")
        .await
        .unwrap();
    let path = store.root().join("ops/dev/00000000000000000001");
    assert_eq!(fs::read(path).unwrap(), b"batch");
    assert_eq!(files_under(store.root()), ["00000000000000000001"]);
}

#[tokio::test]
async fn temp_files_left_by_a_crash_never_show_in_list_or_get() {
    let (_dir, store) = store();
    store.put("heads/dev", b"complete").await.unwrap();
    // What a crash between write and rename leaves behind.
    fs::write(store.root().join("heads/.bae-tmp-deadbeef"), b"half").unwrap();
    assert_eq!(store.list("").await.unwrap(), ["heads/dev"]);
    assert_eq!(store.list("heads/").await.unwrap(), ["heads/dev"]);
    assert_eq!(
        store.get("heads/dev", TEST_LIMIT).await.unwrap(),
        b"complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_key_leave_one_whole_object() {
    let (_dir, store) = store();
    let store = std::sync::Arc::new(store);
    let versions: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 256 * 1024]).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for v in versions.clone() {
        let store = store.clone();
        tasks.spawn(async move { store.put("race/k", &v).await.unwrap() });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let got = store.get("race/k", TEST_LIMIT).await.unwrap();
    assert!(versions.contains(&got), "a torn object was read");
    assert_eq!(files_under(store.root()), ["k"]);
}

#[tokio::test]
async fn a_directory_of_other_keys_is_not_an_object() {
    let (_dir, store) = store();
    store.put("dir/child", b"x").await.unwrap();
    assert_not_found(store.get("dir", TEST_LIMIT).await, "dir");
    assert_not_found(store.get_range("dir", 0..1).await, "dir");
    assert!(!store.exists("dir").await.unwrap());
    store.delete("dir").await.unwrap();
    assert_eq!(store.get("dir/child", TEST_LIMIT).await.unwrap(), b"x");
}

#[tokio::test]
async fn a_key_that_would_need_an_object_as_directory_is_rejected() {
    let (_dir, store) = store();
    store.put("a", b"object").await.unwrap();
    assert!(matches!(
        store.put("a/b", b"x").await,
        Err(StoreError::InvalidKey { .. })
    ));
    store.put("d/e", b"x").await.unwrap();
    assert!(matches!(
        store.put("d", b"x").await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert_eq!(store.get("a", TEST_LIMIT).await.unwrap(), b"object");
}

#[tokio::test]
async fn keys_cannot_reach_outside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::create(dir.path().join("bucket")).unwrap();
    fs::write(dir.path().join("secret"), b"outside").unwrap();
    for key in ["../secret", "/etc/passwd", "x/../../secret"] {
        assert!(matches!(
            store.get(key, TEST_LIMIT).await,
            Err(StoreError::InvalidKey { .. })
        ));
    }
    assert!(store.put("../escape", b"x").await.is_err());
    assert!(!dir.path().join("escape").exists());
}

#[tokio::test]
async fn reopening_the_directory_sees_the_same_objects() {
    let (dir, store) = store();
    let big = pattern(300_000);
    store.put("storage/ab/cd/abcd1234", &big).await.unwrap();
    drop(store);
    let again = LocalDirStore::new(dir.path().join("bucket")).unwrap();
    assert_eq!(
        again
            .get("storage/ab/cd/abcd1234", TEST_LIMIT)
            .await
            .unwrap(),
        big
    );
    assert_eq!(
        again
            .get_range("storage/ab/cd/abcd1234", 65_536..65_600)
            .await
            .unwrap(),
        &big[65_536..65_600]
    );
}
