//! Setting a library up safely, end to end through the `bae-sync` binary:
//! key export never replaces what it should not, a mistyped or wrong key
//! is refused before anything is written, a bucket is named by its
//! absolute path and never re-created, a failed init or join saves
//! nothing, and `leave` lets a device join again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bin::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir`, relative, sorted (empty when `dir` is missing).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The laptop imports three albums and runs `init`; returns its library.
fn laptop(w: &World) -> String {
    let laptop = path(w.library("laptop"));
    ok(w, &["demo-import", "--library", &laptop, "--albums", "3"]);
    ok(w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    laptop
}

fn export(w: &World, lib: &str, out: &Path) {
    ok(
        w,
        &[
            "key",
            "export",
            "--library",
            lib,
            "--out",
            &path(out.into()),
        ],
    );
}

fn join_args<'a>(lib: &'a str, bucket: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "join",
        "--library",
        lib,
        "--bucket",
        bucket,
        "--key-file",
        key,
    ]
}

#[test]
fn key_export_never_replaces_a_file_unless_forced_and_never_a_database() {
    let w = World::new(Bucket::Local, "setup-export");
    let laptop = laptop(&w);
    let library_bytes = std::fs::read(&laptop).unwrap();

    // A new file: created 0600 whatever the umask.
    let fresh = w.dir.path().join("fresh.key");
    export(&w, &laptop, &fresh);
    assert_eq!(mode(&fresh), 0o600);
    assert!(std::fs::read_to_string(&fresh)
        .unwrap()
        .starts_with("bae-library-key-v2:"));

    // An existing file is refused, its bytes and mode unchanged.
    let notes = w.dir.path().join("notes.txt");
    std::fs::write(&notes, b"my notes").unwrap();
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = [
        "key",
        "export",
        "--library",
        &laptop,
        "--out",
        &path(notes.clone()),
    ];
    let err = fails(&w, &args);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");

    // The library itself, even with --force.
    for force in [false, true] {
        let mut args = vec!["key", "export", "--library", &laptop, "--out", &laptop];
        if force {
            args.push("--force");
        }
        let err = fails(&w, &args);
        let expected = if force {
            "is a database"
        } else {
            "already exists"
        };
        assert!(err.contains(expected), "{err}");
        assert_eq!(std::fs::read(&laptop).unwrap(), library_bytes);
    }
    // Another SQLite database, reached through a symlink, with --force.
    let other = path(w.library("other"));
    ok(&w, &["demo-import", "--library", &other, "--albums", "1"]);
    let other_bytes = std::fs::read(&other).unwrap();
    let link = w.dir.path().join("link.key");
    std::os::unix::fs::symlink(&other, &link).unwrap();
    let err = fails(
        &w,
        &[
            "key",
            "export",
            "--library",
            &laptop,
            "--out",
            &path(link),
            "--force",
        ],
    );
    assert!(err.contains("is a database"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), other_bytes);

    // --force replaces an ordinary file, and the result is private.
    let forced = [
        "key",
        "export",
        "--library",
        &laptop,
        "--out",
        &path(notes.clone()),
        "--force",
    ];
    ok(&w, &forced);
    assert_eq!(mode(&notes), 0o600);
    assert_eq!(
        std::fs::read(&notes).unwrap(),
        std::fs::read(&fresh).unwrap()
    );
}

#[test]
fn a_key_with_one_digit_changed_is_refused_before_any_io() {
    let w = World::new(Bucket::Local, "setup-typo");
    let laptop = laptop(&w);
    let key = w.key_file();
    export(&w, &laptop, &key);
    let text = std::fs::read_to_string(&key).unwrap();
    let i = "bae-library-key-v2:".len() + 10;
    let mut typo = text.into_bytes();
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo_file = w.dir.path().join("typo.key");
    std::fs::write(&typo_file, &typo).unwrap();
    std::fs::set_permissions(&typo_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let bucket_before = files(Path::new(&w.bucket));
    let desktop = w.library("desktop");
    let err = fails(
        &w,
        &join_args(&path(desktop.clone()), &w.bucket, &path(typo_file)),
    );
    assert!(err.contains("checksum does not match"), "{err}");
    // Nothing was opened or written: no library file, no key, same bucket.
    assert!(!desktop.exists());
    assert_eq!(files(Path::new(&w.bucket)), bucket_before);
    assert_eq!(
        files(&w.home().join("keys")).len(),
        1,
        "only the laptop's key"
    );
}

#[test]
fn a_wrong_key_is_refused_by_join_and_the_right_one_then_works() {
    let w = World::new(Bucket::Local, "setup-wrong-key");
    let laptop = laptop(&w);
    let key = w.key_file();
    export(&w, &laptop, &key);
    // A valid key of another library (another bucket).
    let elsewhere = World::new(Bucket::Local, "setup-elsewhere");
    let stranger = laptop_of(&elsewhere);
    let wrong = elsewhere.key_file();
    export(&elsewhere, &stranger, &wrong);

    let desktop = path(w.library("desktop"));
    let home = w.dir.path().join("desktop-home");
    let wrong = path(wrong);
    let args = join_args(&desktop, &w.bucket, &wrong);
    let err = failed(run_in(&home, w.dir.path(), &args), &args);
    let laptop_id = only_key_id(&w.home());
    assert!(
        err.contains("does not open the library") && err.contains(&laptop_id),
        "{err}"
    );
    // Nothing written locally: no key saved, not set up, no rows.
    assert!(files(&home).is_empty(), "{:?}", files(&home));
    let status = run_in(&home, w.dir.path(), &["status", "--library", &desktop]);
    assert!(failed(status, &[]).contains("not set up"));
    assert_eq!(ok(&w, &["dump", "--library", &desktop]), "");

    let key = path(key);
    let args = join_args(&desktop, &w.bucket, &key);
    succeeded(run_in(&home, w.dir.path(), &args), &args);
    assert_eq!(
        ok(&w, &["dump", "--library", &desktop]),
        ok(&w, &["dump", "--library", &laptop])
    );
}

/// `laptop`, for a second world.
fn laptop_of(w: &World) -> String {
    laptop(w)
}

/// The library id of the one key under `home`.
fn only_key_id(home: &Path) -> String {
    let keys = files(&home.join("keys"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].trim_end_matches(".key").to_owned()
}

#[test]
fn init_refuses_a_bucket_that_holds_a_library() {
    let w = World::new(Bucket::Local, "setup-init-twice");
    let laptop = laptop(&w);
    let laptop_id = only_key_id(&w.home());
    let bucket_before = files(Path::new(&w.bucket));

    let other = path(w.library("other"));
    ok(&w, &["demo-import", "--library", &other, "--albums", "1"]);
    let home = w.dir.path().join("other-home");
    let args = ["init", "--library", &other, "--bucket", &w.bucket];
    let err = failed(run_in(&home, w.dir.path(), &args), &args);
    assert!(
        err.contains("already holds a library") && err.contains(&laptop_id),
        "{err}"
    );
    // Even with the laptop's key at hand (same home): another device's
    // heads are there.
    let err = fails(&w, &args);
    assert!(err.contains("already holds a library"), "{err}");
    assert_eq!(files(Path::new(&w.bucket)), bucket_before);
    assert!(files(&home).is_empty());

    // A bucket made before markers (objects, no marker) is refused too.
    // Joining it proves the key on a head, then refuses it by name: no
    // marker names the founder its membership chain starts from.
    std::fs::remove_file(Path::new(&w.bucket).join("library")).unwrap();
    let err = failed(run_in(&home, w.dir.path(), &args), &args);
    assert!(err.contains("already holds a library"), "{err}");
    let key = w.key_file();
    export(&w, &laptop, &key);
    let desktop = path(w.library("desktop"));
    let err = fails(&w, &join_args(&desktop, &w.bucket, &path(key)));
    assert!(err.contains("made before signed objects"), "{err}");
    assert!(fails(&w, &["status", "--library", &desktop]).contains("not set up"));
    let wrong = World::new(Bucket::Local, "setup-init-wrong");
    let stranger = laptop_of(&wrong);
    export(&wrong, &stranger, &wrong.key_file());
    let third = path(w.library("third"));
    let err = fails(&w, &join_args(&third, &w.bucket, &path(wrong.key_file())));
    assert!(err.contains("does not open the library"), "{err}");
}

#[test]
fn join_refuses_an_empty_bucket() {
    let w = World::new(Bucket::Local, "setup-empty");
    let laptop = laptop(&w);
    export(&w, &laptop, &w.key_file());
    let empty = w.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let desktop = path(w.library("desktop"));
    let err = fails(
        &w,
        &join_args(&desktop, &path(empty.clone()), &path(w.key_file())),
    );
    assert!(err.contains("is empty, not a library"), "{err}");
    assert!(files(&empty).is_empty());
}

#[test]
fn a_relative_bucket_path_is_saved_absolute_and_works_from_another_directory() {
    let w = World::new(Bucket::Local, "setup-relative");
    let laptop = path(w.library("laptop"));
    ok(&w, &["demo-import", "--library", &laptop, "--albums", "2"]);
    ok(
        &w,
        &["init", "--library", &laptop, "--bucket", "rel-bucket"],
    );
    let bucket = w.dir.path().join("rel-bucket");
    assert!(bucket.join("library").is_file());

    let elsewhere = tempfile::tempdir().unwrap();
    ok(
        &w,
        &[
            "set",
            "--library",
            &laptop,
            "albums",
            &album(),
            "title=moved",
        ],
    );
    let args = ["sync", "--library", &laptop];
    succeeded(run_in(&w.home(), elsewhere.path(), &args), &args);
    assert!(files(elsewhere.path()).is_empty(), "no bucket made here");
    let status = ok(&w, &["status", "--library", &laptop]);
    assert!(status.contains(&path(bucket.clone())), "{status}");
    assert_eq!(status_pending(&w, &laptop), 0);
}

fn album() -> String {
    bae_oplog::fixture::demo_album(1, 0, 12)
        .album_id()
        .unwrap()
        .to_owned()
}

fn status_pending(w: &World, lib: &str) -> i64 {
    let json: serde_json::Value =
        serde_json::from_str(&ok(w, &["status", "--library", lib, "--json"])).unwrap();
    json["pending_batches"].as_i64().unwrap()
}

#[test]
fn a_vanished_bucket_directory_is_an_error_and_is_not_recreated() {
    let w = World::new(Bucket::Local, "setup-vanished");
    let laptop = laptop(&w);
    let moved = w.dir.path().join("moved-bucket");
    std::fs::rename(&w.bucket, &moved).unwrap();
    ok(
        &w,
        &["set", "--library", &laptop, "albums", &album(), "title=x"],
    );
    for cmd in ["push", "pull", "sync"] {
        let err = fails(&w, &[cmd, "--library", &laptop]);
        assert!(err.contains("does not exist"), "{cmd}: {err}");
        assert!(
            !Path::new(&w.bucket).exists(),
            "{cmd} re-created the bucket"
        );
    }
    std::fs::rename(&moved, &w.bucket).unwrap();
    assert_eq!(status_pending(&w, &laptop), 1, "the edit is still pending");
    ok(&w, &["sync", "--library", &laptop]);
    assert_eq!(status_pending(&w, &laptop), 0);
}

#[test]
fn a_failed_init_saves_nothing_and_a_retry_works() {
    let w = World::new(Bucket::Local, "setup-failed-init");
    let laptop = path(w.library("laptop"));
    ok(&w, &["demo-import", "--library", &laptop, "--albums", "1"]);
    let dead = "s3://b?endpoint=http://127.0.0.1:1&region=us-east-1";
    let args = ["init", "--library", &laptop, "--bucket", dead];
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_bae-sync"))
        .arg("--home")
        .arg(w.home())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = failed(out, &args);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("bucket"), "{err}");
    assert!(
        files(&w.home()).is_empty(),
        "no key saved: {:?}",
        files(&w.home())
    );
    assert!(fails(&w, &["status", "--library", &laptop]).contains("not set up"));

    // The retry, onto a reachable bucket.
    ok(&w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    let status = ok(&w, &["status", "--library", &laptop]);
    assert!(status.contains(&w.bucket), "{status}");
}

#[test]
fn leave_forgets_the_library_and_the_device_can_join_again() {
    let w = World::new(Bucket::Local, "setup-leave");
    let laptop = laptop(&w);
    let key = path(w.key_file());
    export(&w, &laptop, &w.key_file());
    let desktop = path(w.library("desktop"));
    let home = w.dir.path().join("desktop-home");
    let d = |args: &[&str]| succeeded(run_in(&home, w.dir.path(), args), args);
    let d_fails = |args: &[&str]| failed(run_in(&home, w.dir.path(), args), args);
    d(&join_args(&desktop, &w.bucket, &key));
    d(&[
        "set",
        "--library",
        &desktop,
        "albums",
        &album(),
        "title=from the desktop",
    ]);

    // Unpushed edits would be lost: refused.
    let err = d_fails(&["leave", "--library", &desktop]);
    assert!(err.contains("not pushed yet"), "{err}");
    d(&["push", "--library", &desktop]);
    let rows = ok(&w, &["dump", "--library", &desktop]);
    let out = d(&["leave", "--library", &desktop]);
    assert!(out.contains("left library"), "{out}");
    assert!(files(&home.join("keys")).is_empty(), "key deleted");
    assert_eq!(ok(&w, &["dump", "--library", &desktop]), rows, "rows kept");
    assert!(d_fails(&["status", "--library", &desktop]).contains("not set up"));
    assert!(d_fails(&["leave", "--library", &desktop]).contains("not set up"));

    // Join again: a new device stream; nothing old is pushed again.
    d(&join_args(&desktop, &w.bucket, &key));
    assert_eq!(status_pending_in(&home, &w, &desktop), 0);
    d(&[
        "set",
        "--library",
        &desktop,
        "albums",
        &album(),
        "year=2001",
    ]);
    d(&["sync", "--library", &desktop]);
    ok(&w, &["sync", "--library", &laptop]);
    let laptop_rows = ok(&w, &["dump", "--library", &laptop]);
    assert!(laptop_rows.contains("from the desktop") && laptop_rows.contains("2001"));
    assert_eq!(ok(&w, &["dump", "--library", &desktop]), laptop_rows);
    let devices = files(&Path::new(&w.bucket).join("heads"))
        .iter()
        .map(|k| k.split('/').next().unwrap().to_owned())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(devices.len(), 3, "laptop, desktop before and after leave");
}

fn status_pending_in(home: &Path, w: &World, lib: &str) -> i64 {
    let args = ["status", "--library", lib, "--json"];
    let json: serde_json::Value =
        serde_json::from_str(&succeeded(run_in(home, w.dir.path(), &args), &args)).unwrap();
    json["pending_batches"].as_i64().unwrap()
}
