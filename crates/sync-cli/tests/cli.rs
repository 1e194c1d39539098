//! End to end through the `bae-sync` binary, keys in files under `--home`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bin::*;
use common::*;

fn status_json(w: &World, lib: &str) -> serde_json::Value {
    serde_json::from_str(&ok(w, &["status", "--library", lib, "--json"])).unwrap()
}

/// laptop: import and init; desktop: join with the exported key.
fn two_devices(w: &World) -> (String, String) {
    let (laptop, desktop) = (path(w.library("laptop")), path(w.library("desktop")));
    let key = path(w.key_file());
    ok(w, &["demo-import", "--library", &laptop, "--albums", "3"]);
    ok(w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    ok(w, &["key", "export", "--library", &laptop, "--out", &key]);
    ok(
        w,
        &[
            "join",
            "--library",
            &desktop,
            "--bucket",
            &w.bucket,
            "--key-file",
            &key,
        ],
    );
    (laptop, desktop)
}

fn album_id() -> String {
    bae_oplog::fixture::demo_album(1, 0, 12)
        .album_id()
        .unwrap()
        .to_owned()
}

fn cli_two_devices_converge(bucket: Bucket) {
    let w = World::new(bucket, "cli-two");
    let (laptop, desktop) = two_devices(&w);
    let album = album_id();
    ok(
        &w,
        &[
            "set",
            "--library",
            &laptop,
            "albums",
            &album,
            "title=On the laptop",
        ],
    );
    ok(
        &w,
        &["set", "--library", &desktop, "albums", &album, "year=1999"],
    );
    let pending = status_json(&w, &laptop);
    assert_eq!(pending["pending_batches"], 1);
    for lib in [&laptop, &desktop, &laptop] {
        ok(&w, &["sync", "--library", lib]);
    }
    assert_eq!(
        ok(&w, &["dump", "--library", &laptop]),
        ok(&w, &["dump", "--library", &desktop])
    );
    let dump = ok(&w, &["dump", "--library", &desktop]);
    assert!(dump.contains("On the laptop") && dump.contains("1999"));
    // The desktop's images came through the bucket.
    let images = bae_sync_service::images_dir_for(&w.library("desktop"));
    assert_eq!(std::fs::read_dir(images).unwrap().count(), 3);

    let laptop_status = status_json(&w, &laptop);
    let desktop_status = status_json(&w, &desktop);
    assert_eq!(laptop_status["pending_batches"], 0);
    let seen = &desktop_status["devices"][0];
    assert_eq!(seen["device"], laptop_status["device"]);
    assert_eq!(seen["applied_seq"], seen["head_seq"]);
    assert!(seen["last_synced_ms"].as_i64().unwrap() > 0);
    let text = ok(&w, &["status", "--library", &desktop]);
    assert!(
        text.contains("last synced 20") && text.contains(" UTC"),
        "{text}"
    );
}

#[test]
fn cli_two_devices_converge_on_a_local_bucket() {
    cli_two_devices_converge(Bucket::Local);
}

#[test]
fn cli_two_devices_converge_on_s3() {
    cli_two_devices_converge(Bucket::S3);
}

/// Checkpoint, compact, then a new device and a read-only server start from
/// the checkpoint and replay only what came after it.
fn cli_checkpoint_gc_and_bootstrap(bucket: Bucket) {
    let w = World::new(bucket, "cli-checkpoint");
    let (laptop, desktop) = two_devices(&w);
    let album = album_id();
    ok(
        &w,
        &["set", "--library", &desktop, "albums", &album, "year=1959"],
    );
    ok(&w, &["sync", "--library", &desktop]);
    let written = ok(&w, &["checkpoint", "--library", &laptop]);
    assert!(written.starts_with("checkpoint checkpoints/"), "{written}");
    let gc = ok(&w, &["gc", "--library", &laptop]);
    assert!(gc.contains("inside the grace period"), "{gc}");
    let gc = ok(&w, &["gc", "--library", &laptop, "--now"]);
    assert!(gc.contains("deleted"), "{gc}");
    ok(
        &w,
        &[
            "set",
            "--library",
            &laptop,
            "albums",
            &album,
            "title=After the checkpoint",
        ],
    );
    ok(&w, &["push", "--library", &laptop]);

    let phone = path(w.library("phone"));
    let key = path(w.key_file());
    let joined = ok(
        &w,
        &[
            "join",
            "--library",
            &phone,
            "--bucket",
            &w.bucket,
            "--key-file",
            &key,
        ],
    );
    assert!(joined.starts_with("joined as device"), "{joined}");
    let server = path(w.dir.path().join("server.db"));
    let served = ok(
        &w,
        &[
            "server-bootstrap",
            "--bucket",
            &w.bucket,
            "--key-file",
            &key,
            "--out",
            &server,
            "--refresh",
        ],
    );
    assert!(served.contains("restored checkpoints/"), "{served}");
    ok(&w, &["sync", "--library", &desktop]);
    let expected = ok(&w, &["dump", "--library", &laptop]);
    assert!(expected.contains("After the checkpoint") && expected.contains("1959"));
    for lib in [&desktop, &phone, &server] {
        assert_eq!(ok(&w, &["dump", "--library", lib]), expected, "{lib}");
    }
    let images = bae_sync_service::images_dir_for(&w.library("phone"));
    assert_eq!(std::fs::read_dir(images).unwrap().count(), 3);
}

#[test]
fn cli_checkpoint_gc_and_bootstrap_on_a_local_bucket() {
    cli_checkpoint_gc_and_bootstrap(Bucket::Local);
}

#[test]
fn cli_checkpoint_gc_and_bootstrap_on_s3() {
    cli_checkpoint_gc_and_bootstrap(Bucket::S3);
}

#[test]
fn cli_names_a_tampered_batch_and_push_repair_resumes_the_stream() {
    let w = World::new(Bucket::Local, "cli-tamper");
    let (laptop, desktop) = two_devices(&w);
    let album = album_id();
    ok(
        &w,
        &["set", "--library", &laptop, "albums", &album, "title=first"],
    );
    ok(
        &w,
        &[
            "set",
            "--library",
            &laptop,
            "albums",
            &album,
            "title=second",
        ],
    );
    ok(&w, &["push", "--library", &laptop]);
    let status = status_json(&w, &laptop);
    let device = status["device"].as_str().unwrap();
    let dev: bae_hlc::DeviceId = device.parse().unwrap();
    let heads = std::path::Path::new(&w.bucket).join(bae_storage_s3::layout::heads_prefix(&dev));
    let head = std::fs::read_dir(heads).unwrap().next().unwrap().unwrap();
    let head: u64 = head.file_name().to_str().unwrap().parse().unwrap();
    let bad = head - 1;
    let key = bae_storage_s3::layout::ops_key(&dev, bad);
    let object = std::path::Path::new(&w.bucket).join(&key);
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&object, bytes).unwrap();

    let out = run(&w, &["pull", "--library", &desktop]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&key), "{stderr}");
    assert_eq!(out.status.code(), Some(3), "rejected batches: {stderr}");
    assert!(stderr.contains("push --repair"), "{stderr}");
    let status = ok(&w, &["status", "--library", &desktop]);
    assert!(
        status.contains(&key) && status.contains("rejected"),
        "{status}"
    );
    assert!(!ok(&w, &["dump", "--library", &desktop]).contains("first"));

    let repaired = ok(&w, &["push", "--library", &laptop, "--repair"]);
    assert!(
        repaired.contains(&format!("repaired batch {bad}")),
        "{repaired}"
    );
    let out = run(&w, &["pull", "--library", &desktop]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        ok(&w, &["dump", "--library", &laptop]),
        ok(&w, &["dump", "--library", &desktop])
    );
}

#[test]
fn cli_errors_are_one_line_and_exit_non_zero() {
    let w = World::new(Bucket::Local, "cli-errors");
    let lib = path(w.library("fresh"));
    ok(&w, &["demo-import", "--library", &lib, "--albums", "1"]);
    let e = fails(&w, &["pull", "--library", &lib]);
    assert!(e.contains("not set up for sync"), "{e}");
    let e = fails(
        &w,
        &["init", "--library", &lib, "--bucket", "ftp://example.com/x"],
    );
    assert!(e.contains("bucket URL"), "{e}");
    let missing = path(w.dir.path().join("no-such.key"));
    let e = fails(
        &w,
        &[
            "join",
            "--library",
            &lib,
            "--bucket",
            &w.bucket,
            "--key-file",
            &missing,
        ],
    );
    assert!(e.contains("no-such.key"), "{e}");
    let e = fails(&w, &["set", "--library", &lib, "albums", "x", "title"]);
    assert!(
        e.contains("bad argument") && e.contains("COLUMN=VALUE"),
        "{e}"
    );
}

/// A library put back from a copy (a backup, a power loss): `sync` names
/// the rollback, exits 0, replaces none of the batches the other device
/// read, and both devices end equal.
#[test]
fn cli_sync_after_a_restored_backup_replaces_nothing_and_converges() {
    let w = World::new(Bucket::Local, "cli-rollback");
    let (laptop, desktop) = two_devices(&w);
    let album = album_id();
    let backup = w.dir.path().join("backup.db");
    std::fs::copy(&laptop, &backup).unwrap();
    ok(
        &w,
        &[
            "set",
            "--library",
            &laptop,
            "albums",
            &album,
            "title=before",
        ],
    );
    ok(&w, &["sync", "--library", &laptop]);
    ok(&w, &["sync", "--library", &desktop]);
    let ops = std::path::Path::new(&w.bucket).join("ops");
    let objects: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&ops)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| {
            let p = f.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();

    std::fs::copy(&backup, &laptop).unwrap();
    assert!(!ok(&w, &["dump", "--library", &laptop]).contains("before"));
    ok(
        &w,
        &["set", "--library", &laptop, "albums", &album, "title=after"],
    );
    let out = run(&w, &["sync", "--library", &laptop]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("went back in time"), "{stderr}");
    for (p, bytes) in &objects {
        assert_eq!(
            &std::fs::read(p).unwrap(),
            bytes,
            "{} replaced",
            p.display()
        );
    }
    let out = run(&w, &["sync", "--library", &desktop]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    ok(&w, &["sync", "--library", &laptop]);
    let dump = ok(&w, &["dump", "--library", &laptop]);
    assert!(dump.contains("after"), "{dump}");
    assert_eq!(dump, ok(&w, &["dump", "--library", &desktop]));
}

/// The batch files under a local bucket's `ops/`.
fn batch_files(w: &World) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(std::path::Path::new(&w.bucket).join("ops")).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.insert(file.unwrap().path());
        }
    }
    out
}

/// The checkpoint objects in a local bucket.
fn checkpoint_files(w: &World) -> Vec<String> {
    let mut out: Vec<String> =
        std::fs::read_dir(std::path::Path::new(&w.bucket).join("checkpoints"))
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    out.sort();
    out
}

/// Runs `bae-sync ARGS` and deletes the batches it uploaded, as a GC
/// would (the bucket is a local directory).
fn and_lose_its_batches(w: &World, args: &[&str]) {
    let before = batch_files(w);
    ok(w, args);
    let new: Vec<_> = batch_files(w).difference(&before).cloned().collect();
    assert!(!new.is_empty(), "{args:?} pushed nothing");
    for file in new {
        std::fs::remove_file(file).unwrap();
    }
}

/// `checkpoint` on a device whose pull left a gap that an older
/// checkpoint holds (one it cannot recover from: it is behind this device
/// on another stream whose batches are gone) fails with exit status 1,
/// names the stream and seq, and writes nothing: its checkpoint would be
/// the newest and lack the range. A gap no checkpoint holds does not stop
/// one (the desktop's, below).
#[test]
fn checkpoint_refuses_to_hide_a_gap_an_older_checkpoint_holds() {
    let w = World::new(Bucket::Local, "cli-gap");
    let (laptop, desktop) = two_devices(&w);
    let phone = path(w.library("phone"));
    let key = path(w.key_file());
    let import = |lib: &str, first: &str| {
        ok(
            &w,
            &[
                "demo-import",
                "--library",
                lib,
                "--albums",
                "1",
                "--first",
                first,
            ],
        );
    };
    ok(
        &w,
        &[
            "join",
            "--library",
            &phone,
            "--bucket",
            &w.bucket,
            "--key-file",
            &key,
        ],
    );
    import(&desktop, "20");
    ok(&w, &["push", "--library", &desktop]);
    ok(&w, &["pull", "--library", &phone]);
    // The phone applies the laptop's next batch, which is then gone before
    // the desktop reads it: a gap no checkpoint holds.
    import(&laptop, "10");
    let before = batch_files(&w);
    ok(&w, &["push", "--library", &laptop]);
    ok(&w, &["pull", "--library", &phone]);
    for file in batch_files(&w).difference(&before) {
        std::fs::remove_file(file).unwrap();
    }
    // The desktop's checkpoint (written all the same) holds the batch its
    // push made, which is then gone too.
    import(&desktop, "21");
    and_lose_its_batches(&w, &["checkpoint", "--library", &desktop]);
    let checkpoints = checkpoint_files(&w);
    let dump = ok(&w, &["dump", "--library", &phone]);
    let args = ["checkpoint", "--library", &phone];
    let err = failed(run(&w, &args), &args);
    assert!(err.contains("no checkpoint written"), "{err}");
    assert!(err.contains("is gone from the bucket"), "{err}");
    assert_eq!(checkpoint_files(&w), checkpoints);
    assert_eq!(ok(&w, &["dump", "--library", &phone]), dump);
}
