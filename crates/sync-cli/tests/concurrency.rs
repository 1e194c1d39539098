//! One bae-sync at a time per library, and a bucket that does not answer
//! fails within its timeout: through the `bae-sync` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bae_sync_service::library::LibraryLock;
use bin::{path, succeeded};
use common::*;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `bae-sync` as the world runs it, with the lock wait and S3 timeouts at
/// their defaults unless `env` sets them, and made-up S3 credentials.
fn bae_sync(w: &World, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = bin::bae_sync(w);
    cmd.args(args)
        .env_remove("BAE_SYNC_LOCK_WAIT")
        .env_remove("BAE_SYNC_S3_TIMEOUT")
        .env_remove("BAE_SYNC_S3_CONNECT_TIMEOUT")
        .env("AWS_ACCESS_KEY_ID", "AKID")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
        .envs(env.iter().copied());
    cmd
}

fn run(w: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    bae_sync(w, args, env).output().unwrap()
}

fn ok(w: &World, args: &[&str]) -> String {
    succeeded(run(w, args, &[]), args)
}

fn spawn(w: &World, args: &[&str], env: &[(&str, &str)]) -> Child {
    bae_sync(w, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// laptop imports and inits; desktop joins; laptop then records and pushes
/// `edits` more batches. Returns the two library paths.
fn desktop_behind(w: &World, edits: usize) -> (String, String) {
    let (laptop, desktop) = (path(w.library("laptop")), path(w.library("desktop")));
    let key = path(w.key_file());
    ok(w, &["demo-import", "--library", &laptop, "--albums", "2"]);
    ok(w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    ok(w, &["key", "export", "--library", &laptop, "--out", &key]);
    let join = [
        "join",
        "--library",
        &desktop,
        "--bucket",
        &w.bucket,
        "--key-file",
        &key,
    ];
    ok(w, &join);
    let album = album_row(0, "albums");
    for i in 0..edits {
        let title = format!("title={i}");
        ok(w, &["set", "--library", &laptop, "albums", &album, &title]);
    }
    let pushed = ok(w, &["push", "--library", &laptop]);
    assert!(pushed.starts_with(&format!("pushed {edits} ")), "{pushed}");
    (laptop, desktop)
}

fn dump(w: &World, lib: &str) -> String {
    ok(w, &["dump", "--library", lib])
}

/// The count in pull's `applied N batches`.
fn applied(stdout: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("applied "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'applied N' in {stdout:?}"))
}

#[test]
fn a_command_on_a_busy_library_waits_then_exits_4_naming_the_holder() {
    let w = World::new(Bucket::Local, "busy");
    let (laptop, desktop) = desktop_behind(&w, 3);
    let before = dump(&w, &desktop);
    let held = LibraryLock::acquire(std::path::Path::new(&desktop), Duration::ZERO).unwrap();

    let started = Instant::now();
    let out = run(
        &w,
        &["pull", "--library", &desktop],
        &[("BAE_SYNC_LOCK_WAIT", "1")],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "bae-sync: another bae-sync (pid {}) is working on {desktop}\n",
            std::process::id()
        )
    );
    assert!(took >= Duration::from_secs(1), "did not wait: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    drop(held);
    // Nothing was applied while it waited; once free, everything is.
    assert_eq!(dump(&w, &desktop), before);
    assert_eq!(applied(&ok(&w, &["pull", "--library", &desktop])), 3);
    assert_eq!(dump(&w, &desktop), dump(&w, &laptop));

    let bad = run(
        &w,
        &["status", "--library", &desktop],
        &[("BAE_SYNC_LOCK_WAIT", "soon")],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("BAE_SYNC_LOCK_WAIT"));
}

#[test]
fn two_pulls_at_once_apply_each_batch_once_without_lock_errors() {
    let w = World::new(Bucket::Local, "two-pulls");
    let (laptop, desktop) = desktop_behind(&w, 20);
    let pulls: Vec<Child> = (0..2)
        .map(|_| spawn(&w, &["pull", "--library", &desktop], &[]))
        .collect();
    let mut total = 0;
    for pull in pulls {
        let out = pull.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("locked"), "{stderr}");
        match out.status.code() {
            Some(0) => total += applied(&String::from_utf8_lossy(&out.stdout)),
            Some(4) => assert!(stderr.contains("is working on"), "{stderr}"),
            other => panic!("pull exited {other:?}: {stderr}"),
        }
    }
    assert_eq!(total, 20);
    assert_eq!(dump(&w, &desktop), dump(&w, &laptop));
}

#[test]
fn init_against_a_bucket_that_never_answers_fails_within_its_timeout() {
    let w = World::new(Bucket::Local, "black-hole");
    // Accepts connections (the kernel's backlog) and never answers.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hole.local_addr().unwrap());
    for (n, (bucket, env)) in [
        (format!("s3://b/lib?endpoint={endpoint}&timeout=1s"), vec![]),
        (
            format!("s3://b/lib?endpoint={endpoint}"),
            vec![("BAE_SYNC_S3_TIMEOUT", "1")],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let lib = path(w.library(&format!("lib{n}")));
        ok(&w, &["demo-import", "--library", &lib, "--albums", "1"]);
        let before = dump(&w, &lib);
        let started = Instant::now();
        let out = run(&w, &["init", "--library", &lib, "--bucket", &bucket], &env);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot reach {endpoint}"))
                && stderr.contains("timed out after 1 s"),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(dump(&w, &lib), before);
    }
}

#[test]
fn a_killed_bae_sync_leaves_no_lock_behind() {
    let w = World::new(Bucket::Local, "killed");
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let bucket = format!(
        "s3://b/lib?endpoint=http://{}&timeout=60s",
        hole.local_addr().unwrap()
    );
    let lib = path(w.library("lib"));
    ok(&w, &["demo-import", "--library", &lib, "--albums", "1"]);
    // Hangs on the silent bucket, holding the library's lock.
    let mut init = spawn(&w, &["init", "--library", &lib, "--bucket", &bucket], &[]);
    let lock_file = LibraryLock::path_for(std::path::Path::new(&lib));
    let pid = init.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock_file).map_or(true, |t| t.trim() != pid) {
        assert!(Instant::now() < deadline, "init never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = run(
        &w,
        &["status", "--library", &lib],
        &[("BAE_SYNC_LOCK_WAIT", "0")],
    );
    assert_eq!(busy.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&busy.stderr).contains(&format!("(pid {pid})")));

    init.kill().unwrap();
    init.wait().unwrap();
    let out = run(
        &w,
        &["dump", "--library", &lib],
        &[("BAE_SYNC_LOCK_WAIT", "0")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Review finding 5: the lock file was named after the path as typed, so
/// the same library reached through a symlink took another lock and ran
/// beside the holder.
#[test]
fn a_library_reached_through_a_symlink_takes_the_same_lock() {
    let w = World::new(Bucket::Local, "busy-link");
    let (_laptop, desktop) = desktop_behind(&w, 3);
    let before = dump(&w, &desktop);
    let link = w.dir.path().join("desktop-link.db");
    std::os::unix::fs::symlink(&desktop, &link).unwrap();
    let held = LibraryLock::acquire(std::path::Path::new(&desktop), Duration::ZERO).unwrap();
    let out = run(
        &w,
        &["pull", "--library", &path(link)],
        &[("BAE_SYNC_LOCK_WAIT", "0")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("is working on"), "{stderr}");
    drop(held);
    assert_eq!(dump(&w, &desktop), before, "nothing applied while held");
}
