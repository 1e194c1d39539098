//! The S3 store's [`RetryPolicy`] is its only retry layer: each attempt is
//! exactly one HTTP request, whatever rust-s3's process-wide retry count
//! (`s3::get_retries`, left at its default here) says. Runs against a
//! scripted HTTP server on 127.0.0.1 that drops the connections it is told
//! to, so it needs no S3 server.
// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bae_storage_s3::{
    AddressingStyle, ObjectStore, RetryPolicy, S3Config, S3Credentials, S3Store, StoreError,
};

/// Attempts the store's policy makes; every failure below is transient.
const ATTEMPTS: usize = 2;

/// What the scripted server does with one request, by its kind.
enum Reply {
    /// Close the connection without answering: a transport failure, which
    /// rust-s3 replays for the requests it deems safe.
    Drop,
    /// Answer with this status, extra headers and body.
    Answer(u16, Vec<(&'static str, &'static str)>, &'static str),
}

/// A one-request-per-connection HTTP server that records the kind of every
/// request it reads ("get", "part", "complete", ...).
struct ScriptedServer {
    endpoint: String,
    seen: Arc<Mutex<Vec<&'static str>>>,
}

impl ScriptedServer {
    fn start(script: fn(&'static str) -> Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let log = log.clone();
                std::thread::spawn(move || serve(stream.unwrap(), script, &log));
            }
        });
        Self { endpoint, seen }
    }

    /// The kinds of the requests read since the last call.
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// A store on this server whose policy makes [`ATTEMPTS`] quick tries.
    fn store(&self) -> S3Store {
        let mut config = S3Config::new("bucket");
        config.endpoint = Some(self.endpoint.clone());
        config.region = Some("us-east-1".into());
        config.style = AddressingStyle::Path;
        config.credentials = Some(S3Credentials::new("test-access", "test-secret"));
        config.request_timeout = Duration::from_secs(10);
        config.retry = RetryPolicy {
            max_attempts: ATTEMPTS as u32,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        S3Store::new(config).unwrap()
    }
}

fn serve(stream: TcpStream, script: fn(&'static str) -> Reply, log: &Mutex<Vec<&'static str>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return; // a connection opened and closed without a request
    }
    let (mut length, mut ranged) = (0, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        ranged |= line.starts_with("range:");
    }
    let kind = kind_of(&request_line, ranged);
    log.lock().unwrap().push(kind);
    let Reply::Answer(status, headers, body) = script(kind) else {
        return; // dropped unanswered
    };
    std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).unwrap();
    let mut answer = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(body);
    let _ = reader.get_mut().write_all(answer.as_bytes());
}

/// Which S3 operation a request line (`PUT /bucket/k?partNumber=1&... HTTP/1.1`) is.
fn kind_of(request_line: &str, ranged: bool) -> &'static str {
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap(), words.next().unwrap());
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let has = |param: &str| query.split('&').any(|p| p.split('=').next() == Some(param));
    match method {
        "GET" if has("list-type") => "list",
        "GET" if ranged => "get range",
        "GET" => "get",
        "HEAD" => "head",
        "PUT" if has("partNumber") => "part",
        "PUT" => "put",
        "DELETE" if has("uploadId") => "abort",
        "DELETE" => "delete",
        "POST" if has("uploads") => "initiate",
        "POST" if has("uploadId") => "complete",
        other => panic!("unexpected request {other} {target}"),
    }
}

/// A multipart upload that starts and can be aborted; everything else is
/// dropped.
fn multipart_parts_fail(kind: &'static str) -> Reply {
    match kind {
        "initiate" => Reply::Answer(
            200,
            vec![],
            "<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key>\
             <UploadId>upload-1</UploadId></InitiateMultipartUploadResult>",
        ),
        "abort" => Reply::Answer(204, vec![], ""),
        _ => Reply::Drop,
    }
}

/// As [`multipart_parts_fail`], but every part is stored: only the
/// completion fails.
fn multipart_completion_fails(kind: &'static str) -> Reply {
    match kind {
        "part" => Reply::Answer(200, vec![("ETag", "\"part-etag\"")], ""),
        other => multipart_parts_fail(other),
    }
}

/// `result` failed transiently and the server read exactly `expected`.
fn assert_requests<T: std::fmt::Debug>(
    server: &ScriptedServer,
    result: Result<T, StoreError>,
    expected: &[&str],
) {
    match result {
        Err(e) if e.is_retryable() => {}
        other => panic!("expected a transient failure for {expected:?}, got {other:?}"),
    }
    assert_eq!(server.take(), expected);
}

#[tokio::test]
async fn each_attempt_of_the_policy_is_one_request_for_every_operation() {
    assert!(
        s3::get_retries() > 0,
        "rust-s3's own retries are on by default; this test shows the store ignores them"
    );
    let server = ScriptedServer::start(|_| Reply::Drop);
    let store = server.store();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, b"small").unwrap();
    let twice = |kind| [kind; ATTEMPTS];

    assert_requests(&server, store.put("k", b"v").await, &twice("put"));
    assert_requests(&server, store.get("k").await, &twice("get"));
    assert_requests(
        &server,
        store.get_range("k", 0..4).await,
        &twice("get range"),
    );
    assert_requests(&server, store.head("k").await, &twice("head"));
    assert_requests(&server, store.list("").await, &twice("list"));
    assert_requests(&server, store.delete("k").await, &twice("delete"));
    assert_requests(&server, store.put_file("k", &small).await, &twice("put"));
    let dest = dir.path().join("dest");
    assert_requests(
        &server,
        store.get_to_file("k", &dest).await,
        &twice("get range"),
    );
}

#[tokio::test]
async fn each_attempt_of_the_policy_is_one_request_in_a_multipart_upload() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, common::pattern(S3Store::PART_SIZE as usize + 1)).unwrap();

    let server = ScriptedServer::start(multipart_parts_fail);
    let mut expected = vec!["initiate"];
    expected.extend(["part"; ATTEMPTS]);
    expected.push("abort");
    assert_requests(&server, server.store().put_file("k", &big).await, &expected);

    let server = ScriptedServer::start(multipart_completion_fails);
    let mut expected = vec!["initiate", "part", "part"];
    expected.extend(["complete"; ATTEMPTS]);
    expected.push("abort");
    assert_requests(&server, server.store().put_file("k", &big).await, &expected);
}

/// The control: the same dropped GET through rust-s3's own `get_object` is
/// sent `1 + s3::get_retries()` times (after a one-second sleep), which is
/// why the store does not use it.
#[tokio::test]
async fn rust_s3s_own_get_object_replays_a_dropped_request() {
    let server = ScriptedServer::start(|_| Reply::Drop);
    let region = s3::Region::Custom {
        region: "us-east-1".into(),
        endpoint: server.endpoint.clone(),
    };
    let creds =
        s3::creds::Credentials::new(Some("test-access"), Some("test-secret"), None, None, None)
            .unwrap();
    let bucket = s3::Bucket::new("bucket", region, creds)
        .unwrap()
        .with_path_style();
    assert!(bucket.get_object("/k").await.is_err());
    assert_eq!(server.take().len(), 1 + usize::from(s3::get_retries()));
}
