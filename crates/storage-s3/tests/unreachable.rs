//! An S3 endpoint that cannot be reached fails fast and says why: refused,
//! DNS, TLS, or timed out after the configured time (never a silent hang
//! multiplied by retries). Runs against listeners on 127.0.0.1; needs no
//! S3 server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bae_storage_s3::{
    AddressingStyle, ObjectStore, RetryPolicy, S3Config, S3Credentials, S3Store, StoreError,
    Unreachable,
};

fn store(endpoint: &str, retry: RetryPolicy) -> S3Store {
    let mut config = S3Config::new("bucket");
    config.endpoint = Some(endpoint.to_owned());
    config.region = Some("us-east-1".into());
    config.style = AddressingStyle::Path;
    config.credentials = Some(S3Credentials::new("AKID", "secret"));
    config.connect_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(1);
    config.retry = retry;
    S3Store::new(config).unwrap()
}

/// Fails a LIST and a GET on `endpoint`; returns the GET's error and the
/// longer of the two calls' times.
async fn fail(endpoint: &str, retry: RetryPolicy) -> (StoreError, Duration) {
    let s = store(endpoint, retry);
    let started = Instant::now();
    let list = s.list("heads/").await.unwrap_err();
    let list_took = started.elapsed();
    let started = Instant::now();
    let get = s.get("heads/x", 1024).await.unwrap_err();
    let get_took = started.elapsed();
    assert_eq!(
        std::mem::discriminant(&list),
        std::mem::discriminant(&get),
        "{list} / {get}"
    );
    (get, list_took.max(get_took))
}

fn cause(e: &StoreError) -> &Unreachable {
    match e {
        StoreError::Unreachable { cause, .. } => cause,
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endpoint_that_accepts_and_never_answers_times_out_once_not_per_retry() {
    // The kernel completes the handshake for the backlog; nothing answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (e, took) = fail(&endpoint, RetryPolicy::default()).await;
    assert_eq!(
        cause(&e),
        &Unreachable::TimedOut {
            after: Duration::from_secs(1)
        }
    );
    assert!(!e.is_retryable());
    assert!(e.may_pass_later());
    let text = e.to_string();
    assert!(
        text.contains(&endpoint)
            && text.contains("timed out after 1 s")
            && text.contains("heads/x"),
        "{text}"
    );
    // One timeout, not one per attempt of the retry policy (5).
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn a_port_with_nothing_listening_is_connection_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let (e, took) = fail(&endpoint, RetryPolicy::default()).await;
    assert_eq!(cause(&e), &Unreachable::Refused);
    // Retried (the server may be restarting), briefly.
    assert!(e.is_retryable());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        e.to_string().contains(&format!(
            "cannot reach {endpoint} (for heads/x): connection refused"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn a_host_that_does_not_resolve_is_a_dns_failure() {
    let (e, _) = fail("http://nonexistent.invalid:9000", RetryPolicy::no_retry()).await;
    assert_eq!(cause(&e), &Unreachable::Dns);
    assert!(
        e.to_string().contains("nonexistent.invalid") && e.to_string().contains("DNS"),
        "{e}"
    );
}

#[tokio::test]
async fn https_to_a_server_that_does_not_speak_tls_is_a_tls_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not TLS\r\n");
        }
    });
    let (e, _) = fail(&endpoint, RetryPolicy::default()).await;
    assert!(matches!(cause(&e), Unreachable::Tls { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("TLS failure"), "{e}");
}
