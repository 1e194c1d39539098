//! The S3 store's [`RetryPolicy`] is its only retry layer: each attempt is
//! exactly one HTTP request, whatever rust-s3's process-wide retry count
//! (`s3::get_retries`, left at its default here) says; and a server that
//! ignores the `Range` header cannot make a bounded read take more than its
//! limit. Runs against a scripted HTTP server on 127.0.0.1 that drops the
//! connections it is told to, so it needs no S3 server.
// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Answer 200 with a body of this many zero bytes, whatever was asked
    /// (a server that ignores `Range`), until the client hangs up.
    Huge(u64),
}

/// A one-request-per-connection HTTP server that records the kind of every
/// request it reads ("get", "part", "complete", ...).
struct ScriptedServer {
    endpoint: String,
    seen: Arc<Mutex<Vec<&'static str>>>,
    /// For each [`Reply::Huge`] answer, once it ended: the body bytes the
    /// server wrote before the client hung up.
    sent: Arc<Mutex<Vec<u64>>>,
}

impl ScriptedServer {
    fn start(script: fn(&'static str) -> Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (log, sent_log) = (seen.clone(), sent.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (log, sent_log) = (log.clone(), sent_log.clone());
                std::thread::spawn(move || serve(stream.unwrap(), script, &log, &sent_log));
            }
        });
        Self {
            endpoint,
            seen,
            sent,
        }
    }

    /// Waits (up to 30 s) until `n` [`Reply::Huge`] answers have ended;
    /// the body bytes each wrote. Async, so the client's connection tasks
    /// run meanwhile (and hang up).
    async fn huge_answers_sent(&self, n: usize) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = self.sent.lock().unwrap().clone();
            if sent.len() >= n {
                return sent;
            }
            assert!(
                Instant::now() < deadline,
                "only {sent:?} of {n} answers ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

fn serve(
    stream: TcpStream,
    script: fn(&'static str) -> Reply,
    log: &Mutex<Vec<&'static str>>,
    sent: &Mutex<Vec<u64>>,
) {
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
    let (status, headers, body) = match script(kind) {
        Reply::Drop => return, // dropped unanswered
        Reply::Huge(len) => {
            let written = send_huge(reader.get_mut(), len);
            sent.lock().unwrap().push(written);
            return;
        }
        Reply::Answer(status, headers, body) => (status, headers, body),
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

/// Answers 200 with `len` zero bytes; returns how many body bytes were
/// written before the client hung up (all of them if it never did).
fn send_huge(stream: &mut TcpStream, len: u64) -> u64 {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    while written < len {
        let n = chunk.len().min((len - written) as usize);
        if stream.write_all(&chunk[..n]).is_err() {
            break;
        }
        written += n as u64;
    }
    written
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
    assert_requests(&server, store.get("k", 100).await, &twice("get range"));
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
        store.get_to_file("k", &dest, 100).await,
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

/// A server that ignores the `Range` header and answers with the whole of a
/// 256 MiB object: `get` and `get_to_file` with a 1 KiB limit refuse it as
/// too large after reading about the limit, and hang up, so the server gets
/// to send only what the socket buffers hold, not the object.
#[tokio::test]
async fn a_server_ignoring_range_cannot_make_a_bounded_read_take_the_whole_object() {
    const OBJECT: u64 = 256 << 20;
    const LIMIT: u64 = 1024;
    let server = ScriptedServer::start(|_| Reply::Huge(OBJECT));
    let store = server.store();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    for (what, result) in [
        ("get", store.get("k", LIMIT).await.map(|b| b.len() as u64)),
        ("get_to_file", store.get_to_file("k", &dest, LIMIT).await),
    ] {
        match result {
            Err(StoreError::TooLarge { limit, size, .. }) => {
                assert_eq!((limit, size), (LIMIT, Some(OBJECT)), "{what}")
            }
            other => panic!("{what}: expected TooLarge, got {other:?}"),
        }
    }
    assert!(std::fs::metadata(&dest).is_err(), "a file was written");
    let sent = server.huge_answers_sent(2).await;
    eprintln!("body bytes the server sent before the store hung up: {sent:?}");
    for bytes in sent {
        assert!(bytes < OBJECT / 8, "{bytes} of {OBJECT} bytes sent");
    }
}
