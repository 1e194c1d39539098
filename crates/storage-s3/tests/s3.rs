//! What only the S3 store has to get right, against the server
//! `cargo xtask test` starts: prefixes isolate libraries sharing a bucket,
//! bucket URLs reach it, and failures are classified (and retried) right.
// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bae_storage_s3::{ObjectStore, RetryPolicy, S3Credentials, S3Store, StoreConfig, StoreError};
use common::{s3_config, s3_env, unique_prefix, TEST_LIMIT};

#[tokio::test]
async fn libraries_under_different_prefixes_do_not_see_each_other() {
    let base = unique_prefix("isolation");
    let alice = S3Store::new(s3_config(&format!("{base}/alice"))).unwrap();
    let bob = S3Store::new(s3_config(&format!("{base}/bob"))).unwrap();
    let whole = S3Store::new(s3_config(&base)).unwrap();
    alice.put("heads/dev", b"a").await.unwrap();
    bob.put("heads/dev", b"b").await.unwrap();
    assert_eq!(alice.list("").await.unwrap(), ["heads/dev"]);
    assert_eq!(alice.get("heads/dev", TEST_LIMIT).await.unwrap(), b"a");
    assert_eq!(bob.get("heads/dev", TEST_LIMIT).await.unwrap(), b"b");
    // The prefix is applied by the store: the bucket holds the full keys.
    assert_eq!(
        whole.list("").await.unwrap(),
        ["alice/heads/dev", "bob/heads/dev"]
    );
}

#[tokio::test]
async fn a_bucket_url_opens_the_server() {
    let env = s3_env();
    let prefix = unique_prefix("url");
    let url = format!(
        "s3://{}/{prefix}?endpoint={}&region=us-east-1&style=path",
        env.bucket, env.endpoint
    );
    let StoreConfig::S3(mut config) = StoreConfig::parse(&url).unwrap() else {
        panic!("{url} is not an S3 URL");
    };
    // Credentials never come from the URL; tests set them explicitly rather
    // than through the process-wide AWS_* variables.
    config.credentials = Some(S3Credentials::new(env.access_key, env.secret_key));
    let store = StoreConfig::S3(config).open().unwrap();
    store.put("k", b"via url").await.unwrap();
    assert_eq!(store.get("k", TEST_LIMIT).await.unwrap(), b"via url");
    let direct = S3Store::new(s3_config(&prefix)).unwrap();
    assert_eq!(direct.get("k", TEST_LIMIT).await.unwrap(), b"via url");
}

#[tokio::test]
async fn wrong_credentials_are_permission_denied_and_not_retried() {
    let mut config = s3_config(&unique_prefix("denied"));
    config.credentials = Some(S3Credentials::new("bae-test-access", "wrong-secret"));
    config.retry = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(2),
    };
    let store = S3Store::new(config).unwrap();
    let started = Instant::now();
    for result in [
        store.put("k", b"x").await.map(drop),
        store.get("k", TEST_LIMIT).await.map(drop),
        store.list("").await.map(drop),
    ] {
        assert!(
            matches!(result, Err(StoreError::PermissionDenied { .. })),
            "{result:?}"
        );
    }
    // One retry would have waited at least a second.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient_after_bounded_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens there now
    let mut config = s3_config("unreachable");
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(100),
    };
    let store = S3Store::new(config).unwrap();
    let started = Instant::now();
    let err = store.get("k", TEST_LIMIT).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // Two waits of at least 50 ms each, and not much more.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_missing_bucket_is_not_found_not_retried_forever() {
    let mut config = s3_config("nobucket");
    config.bucket = "no-such-bucket-bae".into();
    let store = S3Store::new(config).unwrap();
    let err = store.list("").await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn small_list_pages_are_followed_to_the_end() {
    let mut config = s3_config(&unique_prefix("pages"));
    config.list_page_size = Some(3);
    let store = S3Store::new(config).unwrap();
    for i in 0..10 {
        store.put(&format!("p/{i:02}"), b"x").await.unwrap();
    }
    let expected: Vec<String> = (0..10).map(|i| format!("p/{i:02}")).collect();
    assert_eq!(store.list("p/").await.unwrap(), expected);
}
