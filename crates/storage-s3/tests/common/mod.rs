//! The one place for test setup: the stores under test, and the conformance
//! suite every `ObjectStore` must pass.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bae_storage_s3::{
    AddressingStyle, LocalDirStore, MemoryStore, ObjectStore, RetryPolicy, S3Config, S3Credentials,
    S3Store, StoreError,
};
use tempfile::TempDir;

/// The limit the tests give reads that are not about limits: above every
/// object they write.
pub const TEST_LIMIT: u64 = 64 << 20;

/// A store plus whatever must outlive it (the temp dir of a local store).
pub struct TestStore {
    pub store: Arc<dyn ObjectStore>,
    _dir: Option<TempDir>,
}

pub fn memory() -> TestStore {
    TestStore {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

pub fn local() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    TestStore {
        store: Arc::new(LocalDirStore::create(dir.path().join("bucket")).unwrap()),
        _dir: Some(dir),
    }
}

/// Where `cargo xtask test` says the S3 server is. Panics (never skips) when
/// it did not: plain `cargo test` cannot run the S3 tests.
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

pub fn s3_env() -> S3Env {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the S3 conformance tests need the test S3 server; \
                 run them with `cargo xtask test` (it starts s3s-fs and sets BAE_TEST_S3_*)"
            )
        })
    };
    S3Env {
        endpoint: var("BAE_TEST_S3_ENDPOINT"),
        bucket: var("BAE_TEST_S3_BUCKET"),
        access_key: var("BAE_TEST_S3_ACCESS_KEY"),
        secret_key: var("BAE_TEST_S3_SECRET_KEY"),
    }
}

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-runs/{name}-{nanos:x}-{:08x}", rand::random::<u32>())
}

/// The test server's config for a store under `prefix`, fast retries.
pub fn s3_config(prefix: &str) -> S3Config {
    let env = s3_env();
    let mut config = S3Config::new(env.bucket);
    config.endpoint = Some(env.endpoint);
    config.region = Some("us-east-1".into());
    config.style = AddressingStyle::Path;
    config.prefix = prefix.into();
    config.credentials = Some(S3Credentials::new(env.access_key, env.secret_key));
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    config
}

pub fn s3(name: &str) -> TestStore {
    TestStore {
        store: Arc::new(S3Store::new(s3_config(&unique_prefix(name))).unwrap()),
        _dir: None,
    }
}

/// Deterministic, non-repeating-looking bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Pseudo-random bytes (xorshift64*), so a misplaced part cannot match by
/// coincidence the way a short repeating pattern could.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn assert_not_found(result: Result<impl std::fmt::Debug, StoreError>, key: &str) {
    match result {
        Err(StoreError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("expected NotFound for {key}, got {other:?}"),
    }
}

/// The conformance suite: what every `ObjectStore` must do alike.
pub mod suite {
    use super::*;

    pub async fn round_trip_small_empty_and_large(store: &dyn ObjectStore) {
        let big = pattern(5 * 1024 * 1024 + 3);
        for (key, bytes) in [
            ("rt/small", b"hello bucket".to_vec()),
            ("rt/empty", Vec::new()),
            ("rt/big", big),
        ] {
            store.put(key, &bytes).await.unwrap();
            assert_eq!(store.get(key, TEST_LIMIT).await.unwrap(), bytes, "{key}");
            assert_eq!(store.head(key).await.unwrap().size, bytes.len() as u64);
            assert!(store.exists(key).await.unwrap());
        }
    }

    pub async fn overwrite_replaces_the_whole_object(store: &dyn ObjectStore) {
        store.put("ow/k", &pattern(1000)).await.unwrap();
        store.put("ow/k", b"short").await.unwrap();
        assert_eq!(store.get("ow/k", TEST_LIMIT).await.unwrap(), b"short");
        assert_eq!(store.head("ow/k").await.unwrap().size, 5);
        assert_eq!(store.list("ow/").await.unwrap(), ["ow/k"]);
    }

    pub async fn missing_objects_are_not_found(store: &dyn ObjectStore) {
        assert_not_found(store.get("missing/k", TEST_LIMIT).await, "missing/k");
        assert_not_found(store.head("missing/k").await, "missing/k");
        assert_not_found(store.get_range("missing/k", 0..10).await, "missing/k");
        assert_not_found(store.get_range("missing/k", 3..3).await, "missing/k");
        assert!(!store.exists("missing/k").await.unwrap());
    }

    pub async fn range_reads_clamp_to_the_object(store: &dyn ObjectStore) {
        let data = pattern(100);
        store.put("rg/k", &data).await.unwrap();
        let read = |r: std::ops::Range<u64>| store.get_range("rg/k", r);
        assert_eq!(read(0..10).await.unwrap(), &data[0..10]);
        assert_eq!(read(45..55).await.unwrap(), &data[45..55]);
        assert_eq!(read(90..100).await.unwrap(), &data[90..100]);
        assert_eq!(read(0..100).await.unwrap(), data);
        assert_eq!(read(95..200).await.unwrap(), &data[95..]);
        assert_eq!(read(100..120).await.unwrap(), b"");
        assert_eq!(read(150..200).await.unwrap(), b"");
        assert_eq!(read(10..10).await.unwrap(), b"");
        assert!(matches!(
            read(std::ops::Range { start: 20, end: 10 }).await,
            Err(StoreError::InvalidRange { start: 20, end: 10 })
        ));
        store.put("rg/empty", b"").await.unwrap();
        assert_eq!(store.get_range("rg/empty", 0..10).await.unwrap(), b"");
    }

    pub async fn list_is_complete_and_sorted_past_1000_keys(store: Arc<dyn ObjectStore>) {
        const N: usize = 1100;
        let mut tasks = tokio::task::JoinSet::new();
        // Written in reverse so sorting is the store's job, not insertion order.
        let keys: Vec<String> = (0..N).rev().map(|i| format!("many/{i:05}")).collect();
        for chunk in keys.chunks(N.div_ceil(32)) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for key in chunk {
                    store.put(&key, key.as_bytes()).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        store.put("many0/sibling", b"x").await.unwrap();
        store.put("man/sibling", b"x").await.unwrap();

        let listed = store.list("many/").await.unwrap();
        let mut expected = keys;
        expected.sort();
        assert_eq!(listed.len(), N);
        assert_eq!(listed, expected);
        assert_eq!(store.list("many/010").await.unwrap().len(), 100);
        assert_eq!(store.list("many").await.unwrap().len(), N + 1);
    }

    pub async fn list_prefix_does_not_match_siblings(store: &dyn ObjectStore) {
        for key in ["ls/a/1", "ls/a/2/deep", "ls/ab/1", "ls/b", "lsx"] {
            store.put(key, b"x").await.unwrap();
        }
        assert_eq!(
            store.list("ls/a/").await.unwrap(),
            ["ls/a/1", "ls/a/2/deep"]
        );
        assert_eq!(
            store.list("ls/a").await.unwrap(),
            ["ls/a/1", "ls/a/2/deep", "ls/ab/1"]
        );
        assert_eq!(store.list("ls/").await.unwrap().len(), 4);
        assert_eq!(store.list("ls/b").await.unwrap(), ["ls/b"]);
        assert!(store.list("ls/zzz/").await.unwrap().is_empty());
        assert!(store.list("nothing-here/").await.unwrap().is_empty());
        let all = store.list("").await.unwrap();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "unsorted: {all:?}");
        assert!(all.contains(&"lsx".to_owned()));
    }

    pub async fn delete_is_idempotent(store: &dyn ObjectStore) {
        store.put("del/k", b"x").await.unwrap();
        store.put("del/keep", b"y").await.unwrap();
        store.delete("del/k").await.unwrap();
        store.delete("del/k").await.unwrap();
        store.delete("del/never-existed").await.unwrap();
        assert_not_found(store.get("del/k", TEST_LIMIT).await, "del/k");
        assert_eq!(store.list("del/").await.unwrap(), ["del/keep"]);
    }

    pub async fn a_file_larger_than_two_parts_round_trips(store: &dyn ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("source"), dir.path().join("dest"));
        // Two full S3 parts and a short last one, of odd length.
        let part = S3Store::PART_SIZE as usize;
        let bytes = random_bytes(2 * part + part / 2 + 7, 0xbae);
        std::fs::write(&source, &bytes).unwrap();
        store.put_file("file/big", &source).await.unwrap();
        assert_eq!(
            store.head("file/big").await.unwrap().size,
            bytes.len() as u64
        );
        let size = store
            .get_to_file("file/big", &dest, TEST_LIMIT)
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert!(
            std::fs::read(&dest).unwrap() == bytes,
            "downloaded file differs"
        );
        // Same bytes as the in-memory calls move.
        assert!(
            store.get("file/big", TEST_LIMIT).await.unwrap() == bytes,
            "get differs"
        );
        store.put("file/exact", &bytes[..2 * part]).await.unwrap();
        assert_eq!(
            store
                .get_to_file("file/exact", &dest, TEST_LIMIT)
                .await
                .unwrap(),
            2 * part as u64
        );
        assert!(
            std::fs::read(&dest).unwrap() == bytes[..2 * part],
            "exact parts differ"
        );
    }

    pub async fn an_empty_file_round_trips(store: &dyn ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("source"), dir.path().join("dest"));
        std::fs::write(&source, b"").unwrap();
        store.put_file("file/empty", &source).await.unwrap();
        assert_eq!(store.head("file/empty").await.unwrap().size, 0);
        assert_eq!(store.get("file/empty", TEST_LIMIT).await.unwrap(), b"");
        assert_eq!(
            store
                .get_to_file("file/empty", &dest, TEST_LIMIT)
                .await
                .unwrap(),
            0
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"");
    }

    pub async fn get_to_file_of_a_missing_object_is_not_found_and_writes_nothing(
        store: &dyn ObjectStore,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        assert_not_found(
            store.get_to_file("missing/k", &dest, TEST_LIMIT).await,
            "missing/k",
        );
        let left = std::fs::read(&dest).unwrap_or_default();
        assert!(left.is_empty(), "{} bytes written", left.len());
    }

    pub async fn put_file_of_a_missing_file_is_a_local_error_and_stores_nothing(
        store: &dyn ObjectStore,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("no-such-file");
        match store.put_file("file/k", &source).await {
            Err(StoreError::LocalFile { path, .. }) => {
                assert_eq!(path, source.display().to_string())
            }
            other => panic!("expected LocalFile, got {other:?}"),
        }
        assert!(!store.exists("file/k").await.unwrap());
        assert!(store.list("file/").await.unwrap().is_empty());
    }

    pub async fn put_writer_stores_what_it_writes_and_a_failed_writer_stores_nothing(
        store: &dyn ObjectStore,
    ) {
        let spool = tempfile::tempdir().unwrap();
        let data = random_bytes((3 << 20) + 17, 7);
        let bytes = data.clone();
        // Many small writes, as a stream encryption makes.
        let write: bae_storage_s3::WriteObject =
            Box::new(move |out| bytes.chunks(1000).try_for_each(|c| out.write_all(c)));
        store
            .put_writer("w/obj", spool.path(), write)
            .await
            .unwrap();
        assert!(store.get("w/obj", TEST_LIMIT).await.unwrap() == data);
        let failing: bae_storage_s3::WriteObject = Box::new(|out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("the source failed"))
        });
        assert!(store
            .put_writer("w/obj", spool.path(), failing)
            .await
            .is_err());
        assert!(
            store.get("w/obj", TEST_LIMIT).await.unwrap() == data,
            "old object kept"
        );
        let failing: bae_storage_s3::WriteObject =
            Box::new(|_| Err(std::io::Error::other("the source failed")));
        assert!(store
            .put_writer("w/new", spool.path(), failing)
            .await
            .is_err());
        assert_not_found(store.get("w/new", TEST_LIMIT).await, "w/new");
        assert_eq!(
            std::fs::read_dir(spool.path()).unwrap().count(),
            0,
            "spool cleaned"
        );
    }

    pub async fn put_file_replaces_an_existing_object(store: &dyn ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        store.put("file/k", &pattern(1000)).await.unwrap();
        std::fs::write(&source, b"short").unwrap();
        store.put_file("file/k", &source).await.unwrap();
        assert_eq!(store.get("file/k", TEST_LIMIT).await.unwrap(), b"short");
        assert_eq!(store.list("file/").await.unwrap(), ["file/k"]);
    }

    pub async fn get_to_file_truncates_a_longer_existing_file(store: &dyn ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::write(&dest, pattern(1000)).unwrap();
        store.put("file/k", b"short").await.unwrap();
        assert_eq!(
            store
                .get_to_file("file/k", &dest, TEST_LIMIT)
                .await
                .unwrap(),
            5
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"short");
    }

    /// `get` and `get_to_file` of an object of `len` bytes with `limit`:
    /// the whole object when it fits, else `TooLarge` naming the key and
    /// the limit, with at most `limit + 1` bytes left in the file.
    async fn read_with_limit(store: &dyn ObjectStore, key: &str, bytes: &[u8], limit: u64) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let len = bytes.len() as u64;
        let too_large = |result: Result<u64, StoreError>| match result {
            Err(StoreError::TooLarge {
                key: k,
                limit: l,
                size,
            }) => {
                assert_eq!((k.as_str(), l), (key, limit));
                assert!(
                    size.is_none_or(|s| s == len),
                    "{key}: size {size:?}, not {len}"
                );
            }
            other => {
                panic!("{key} ({len} bytes) with limit {limit}: expected TooLarge, got {other:?}")
            }
        };
        if len <= limit {
            assert!(
                store.get(key, limit).await.unwrap() == bytes,
                "{key}: get differs"
            );
            assert_eq!(store.get_to_file(key, &dest, limit).await.unwrap(), len);
            assert!(
                std::fs::read(&dest).unwrap() == bytes,
                "{key}: file differs"
            );
        } else {
            too_large(store.get(key, limit).await.map(|b| b.len() as u64));
            too_large(store.get_to_file(key, &dest, limit).await);
            let written = std::fs::metadata(&dest).map_or(0, |m| m.len());
            assert!(
                written <= limit + 1,
                "{key}: {written} bytes written with limit {limit}"
            );
        }
    }

    pub async fn reads_take_objects_up_to_their_limit_and_refuse_larger_ones(
        store: &dyn ObjectStore,
    ) {
        let part = S3Store::PART_SIZE;
        let big = random_bytes(2 * part as usize + 7, 0x11);
        for (key, bytes) in [
            ("limit/empty", &[][..]),
            ("limit/one", &b"x"[..]),
            ("limit/small", &pattern(1000)[..]),
            ("limit/big", &big[..]),
        ] {
            store.put(key, bytes).await.unwrap();
            let len = bytes.len() as u64;
            // Exactly at the limit passes; one byte over is refused.
            read_with_limit(store, key, bytes, len).await;
            read_with_limit(store, key, bytes, len + 1).await;
            if len > 0 {
                read_with_limit(store, key, bytes, len - 1).await;
            }
        }
        // Far over the limit, and over at every part boundary of a
        // multi-part download: refused before the rest is read.
        for limit in [0, 10, part - 1, part, part + 1, 2 * part] {
            read_with_limit(store, "limit/big", &big, limit).await;
        }
    }

    pub async fn get_many_answers_each_key_in_order(store: &dyn ObjectStore) {
        store.put("many/a", b"first").await.unwrap();
        store.put("many/big", &pattern(100)).await.unwrap();
        store.put("many/c", b"").await.unwrap();
        let keys: Vec<String> = ["many/c", "many/missing", "many/a", "../up", "many/big"]
            .map(str::to_owned)
            .into();
        let reads = store.get_many(&keys, 10).await;
        assert_eq!(reads.len(), keys.len());
        // Each read stands alone: a bad key fails only its own, and every
        // object is held to the limit as `get` holds it.
        assert_eq!(reads[0], Ok(Vec::new()));
        assert!(
            matches!(&reads[1], Err(StoreError::NotFound { key }) if key == "many/missing"),
            "{:?}",
            reads[1]
        );
        assert_eq!(reads[2], Ok(b"first".to_vec()));
        assert!(
            matches!(reads[3], Err(StoreError::InvalidKey { .. })),
            "{:?}",
            reads[3]
        );
        assert!(
            matches!(reads[4], Err(StoreError::TooLarge { limit: 10, .. })),
            "{:?}",
            reads[4]
        );
        assert!(store.get_many(&[], 10).await.is_empty());
    }

    pub async fn invalid_keys_are_rejected(store: &dyn ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("source"), dir.path().join("dest"));
        std::fs::write(&source, b"x").unwrap();
        for key in [
            "",
            "/abs",
            "../up",
            "a/../../up",
            "a//b",
            "a/",
            "a\\b",
            "./a",
            "a/.bae-tmp-1",
        ] {
            let invalid = |r: Result<(), StoreError>| {
                assert!(
                    matches!(r, Err(StoreError::InvalidKey { .. })),
                    "{key:?}: {r:?}"
                )
            };
            invalid(store.put(key, b"x").await);
            invalid(store.get(key, TEST_LIMIT).await.map(drop));
            invalid(store.get_range(key, 0..1).await.map(drop));
            invalid(store.head(key).await.map(drop));
            invalid(store.delete(key).await);
            invalid(store.put_file(key, &source).await);
            invalid(store.get_to_file(key, &dest, TEST_LIMIT).await.map(drop));
        }
        for prefix in ["/", "../", "a//"] {
            assert!(matches!(
                store.list(prefix).await,
                Err(StoreError::InvalidKey { .. })
            ));
        }
    }
}

/// One test per suite case for a store made by `$make` (an expression of
/// type `TestStore`; it may use `$name`, the case name, for a unique prefix).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@case $make;
            round_trip_small_empty_and_large,
            overwrite_replaces_the_whole_object,
            missing_objects_are_not_found,
            range_reads_clamp_to_the_object,
            list_prefix_does_not_match_siblings,
            delete_is_idempotent,
            invalid_keys_are_rejected,
            a_file_larger_than_two_parts_round_trips,
            an_empty_file_round_trips,
            get_to_file_of_a_missing_object_is_not_found_and_writes_nothing,
            put_file_of_a_missing_file_is_a_local_error_and_stores_nothing,
            put_file_replaces_an_existing_object,
            put_writer_stores_what_it_writes_and_a_failed_writer_stores_nothing,
            get_to_file_truncates_a_longer_existing_file,
            reads_take_objects_up_to_their_limit_and_refuse_larger_ones,
            get_many_answers_each_key_in_order
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn list_is_complete_and_sorted_past_1000_keys() {
            let t: $crate::common::TestStore = ($make)("list_many");
            $crate::common::suite::list_is_complete_and_sorted_past_1000_keys(t.store.clone()).await;
        }
    };
    (@case $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let t: $crate::common::TestStore = ($make)(stringify!($case));
                $crate::common::suite::$case(t.store.as_ref()).await;
            }
        )*
    };
}
