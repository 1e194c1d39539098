//! Release files through the `bae-sync` binary: `demo-import` writes real
//! files, `upload` encrypts them into the bucket, `files` lists them with
//! their state, `fetch` on another device decrypts them whole or by range,
//! byte-exact, also after a key rotation; damaged or missing objects and
//! bad ranges fail with one line naming the file and write nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bae_oplog::fixture::{demo_album, demo_file_bytes};
use bae_storage_s3::layout::{self, ObjectId};
use bin::*;
use common::*;

/// Album `i` of the demo (seed 1, 12 tracks, as `demo-import` writes it).
fn album_row_12(i: u64, table: &str) -> Vec<String> {
    demo_album(1, i, 12).ids(table).map(str::to_owned).collect()
}

/// laptop: demo-import, init, upload, push; desktop: join.
fn uploaded_on_laptop(w: &World, albums: &str) -> (String, String) {
    let (laptop, desktop) = (path(w.library("laptop")), path(w.library("desktop")));
    let key = path(w.key_file());
    ok(
        w,
        &["demo-import", "--library", &laptop, "--albums", albums],
    );
    ok(w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    let said = ok(w, &["upload", "--library", &laptop]);
    let n: u64 = albums.parse::<u64>().unwrap() * 12;
    assert!(said.starts_with(&format!("uploaded {n} files (")), "{said}");
    ok(w, &["push", "--library", &laptop]);
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

fn fetched(w: &World, lib: &str, file: &str, range: Option<&str>) -> Vec<u8> {
    let out = w.dir.path().join("fetched");
    let out_s = path(out.clone());
    let mut args = vec!["fetch", "--library", lib, "--file", file, "--out", &out_s];
    if let Some(r) = range {
        args.extend(["--range", r]);
    }
    let said = ok(w, &args);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        said,
        format!("wrote {} bytes to {out_s}\n", bytes.len())
            .replace("wrote 1 bytes", "wrote 1 byte")
    );
    bytes
}

fn cli_upload_list_and_fetch_byte_exact(bucket: Bucket) {
    let w = World::new(bucket, "cli-files");
    let (laptop, desktop) = uploaded_on_laptop(&w, "1");
    let release = &album_row_12(0, "releases")[0];
    let files = album_row_12(0, "files");

    let listed = ok(&w, &["files", "--library", &desktop, "--release", release]);
    assert_eq!(listed.lines().count(), 12, "{listed}");
    for id in &files {
        let line = listed.lines().find(|l| l.starts_with(id.as_str())).unwrap();
        let size = demo_file_bytes(id).len().to_string();
        assert!(line.contains("uploaded") && line.contains(&size), "{line}");
    }
    // Running upload again finds nothing to do.
    let again = ok(&w, &["upload", "--library", &laptop]);
    assert_eq!(
        again,
        "uploaded 0 files (0 bytes), 12 already in the bucket\n"
    );

    for id in files.iter().take(3) {
        let want = demo_file_bytes(id);
        assert!(fetched(&w, &desktop, id, None) == want, "{id} differs");
        let len = want.len();
        let c = 65_536;
        for (a, b) in [
            (0, 1),
            (len - 1, len),
            (c - 1, c + 1),
            (c, 2 * c),
            (3, len - 2),
        ] {
            let got = fetched(&w, &desktop, id, Some(&format!("{a}-{b}")));
            assert!(got == want[a..b], "{id} range {a}-{b} differs");
        }
        assert!(fetched(&w, &desktop, id, Some("5-5")).is_empty());
    }
}

#[test]
fn cli_upload_list_and_fetch_byte_exact_local() {
    cli_upload_list_and_fetch_byte_exact(Bucket::Local);
}

#[test]
fn cli_upload_list_and_fetch_byte_exact_s3() {
    cli_upload_list_and_fetch_byte_exact(Bucket::S3);
}

/// Before upload a file is `waiting` on the device that has it and
/// `elsewhere` on another, and fetching it says it is not uploaded.
#[test]
fn cli_files_before_upload_are_waiting_or_elsewhere() {
    let w = World::new(Bucket::Local, "cli-files-waiting");
    let (laptop, desktop) = (path(w.library("laptop")), path(w.library("desktop")));
    let key = path(w.key_file());
    ok(&w, &["demo-import", "--library", &laptop, "--albums", "1"]);
    ok(&w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    ok(&w, &["key", "export", "--library", &laptop, "--out", &key]);
    ok(
        &w,
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
    let release = &album_row_12(0, "releases")[0];
    let file = &album_row_12(0, "files")[0];
    let on_laptop = ok(&w, &["files", "--library", &laptop, "--release", release]);
    assert_eq!(on_laptop.matches("waiting").count(), 12, "{on_laptop}");
    let on_desktop = ok(&w, &["files", "--library", &desktop, "--release", release]);
    assert_eq!(on_desktop.matches("elsewhere").count(), 12, "{on_desktop}");
    let out = path(w.dir.path().join("x"));
    let e = fails(
        &w,
        &[
            "fetch",
            "--library",
            &desktop,
            "--file",
            file,
            "--out",
            &out,
        ],
    );
    assert_eq!(
        e,
        format!("bae-sync: file {file} is not uploaded yet: the device that imported it runs `bae-sync upload` and pushes\n")
    );
    let e = fails(&w, &["files", "--library", &desktop, "--release", "nope"]);
    assert_eq!(e, "bae-sync: no release nope in this library\n");
    assert!(!w.dir.path().join("x").exists());
}

/// Files uploaded under key epoch 0 still fetch after `revoke` rotated
/// the library key; an album uploaded after it fetches too.
#[test]
fn cli_files_from_before_a_rotation_still_fetch() {
    let w = World::new(Bucket::Local, "cli-files-rotation");
    let (laptop, desktop) = uploaded_on_laptop(&w, "1");
    let bob_home = w.dir.path().join("bob-home");
    let bob = run_in(&bob_home, w.dir.path(), &["identity", "show"]);
    let bob = String::from_utf8(bob.stdout)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    ok(
        &w,
        &[
            "invite",
            "--library",
            &laptop,
            "--member",
            &bob,
            "--role",
            "member",
        ],
    );
    let said = ok(&w, &["revoke", "--library", &laptop, "--member", &bob]);
    assert!(said.contains("epoch 1"), "{said}");
    ok(
        &w,
        &[
            "demo-import",
            "--library",
            &laptop,
            "--albums",
            "1",
            "--first",
            "1",
        ],
    );
    ok(&w, &["upload", "--library", &laptop]);
    ok(&w, &["push", "--library", &laptop]);
    ok(&w, &["pull", "--library", &desktop]);
    let dump = ok(&w, &["dump", "--library", &desktop]);
    for (i, epoch) in [(0, "key_epoch=0"), (1, "key_epoch=1")] {
        let release = &album_row_12(i, "releases")[0];
        let line = dump
            .lines()
            .find(|l| l.contains(&format!("releases \"{release}\"")))
            .unwrap();
        assert!(line.ends_with(epoch), "{line}");
        let file = &album_row_12(i, "files")[5];
        assert!(fetched(&w, &desktop, file, None) == demo_file_bytes(file));
    }
}

/// A tampered, truncated or missing object, and a range past the end,
/// fail with one line naming the file; `--out` is never created.
#[test]
fn cli_damaged_objects_and_bad_ranges_write_nothing() {
    let w = World::new(Bucket::Local, "cli-files-damage");
    let (_, desktop) = uploaded_on_laptop(&w, "1");
    let file = &album_row_12(0, "files")[0];
    let len = demo_file_bytes(file).len();
    let object = w
        .dir
        .path()
        .join("bucket")
        .join(layout::storage_key(&ObjectId::parse(file).unwrap()));
    let original = std::fs::read(&object).unwrap();
    let out = w.dir.path().join("out.flac");
    let out_s = path(out.clone());
    let fetch = |range: Option<&str>| {
        let mut args = vec![
            "fetch",
            "--library",
            &desktop,
            "--file",
            file,
            "--out",
            &out_s,
        ];
        if let Some(r) = range {
            args.extend(["--range", r]);
        }
        let e = fails(&w, &args);
        assert!(!out.exists(), "{e}");
        e
    };

    let past = format!("{}-{}", len - 1, len + 1);
    assert_eq!(
        fetch(Some(&past)),
        format!("bae-sync: file {file}: range {past} is outside its {len} bytes\n")
    );

    let mut flipped = original.clone();
    flipped[1000] ^= 0x40;
    std::fs::write(&object, &flipped).unwrap();
    let e = fetch(None);
    assert!(
        e.contains(&format!("file {file}: its object storage/"))
            && e.contains("failed authentication"),
        "{e}"
    );
    let e = fetch(Some("0-10"));
    assert!(e.contains("failed authentication"), "{e}");

    std::fs::write(&object, &original[..original.len() - 100]).unwrap();
    let e = fetch(None);
    assert!(e.contains("truncated or extended"), "{e}");
    let last = format!("{}-{}", len - 1, len);
    let e = fetch(Some(&last));
    assert!(
        e.contains(&format!("file {file}")) && e.contains("truncated"),
        "{e}"
    );

    std::fs::remove_file(&object).unwrap();
    let e = fetch(None);
    assert!(e.contains("is missing from the bucket"), "{e}");

    // Put back, it fetches; an existing --out is replaced only on success.
    std::fs::write(&object, &original).unwrap();
    std::fs::write(&out, b"keep me").unwrap();
    std::fs::write(&object, &flipped).unwrap();
    let args = [
        "fetch",
        "--library",
        &desktop,
        "--file",
        file,
        "--out",
        &out_s,
    ];
    fails(&w, &args);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    std::fs::write(&object, &original).unwrap();
    assert!(fetched(&w, &desktop, file, None) == demo_file_bytes(file));

    // A range that does not parse is a usage error (exit 2).
    let bad = run(
        &w,
        &[
            "fetch",
            "--library",
            &desktop,
            "--file",
            file,
            "--out",
            &out_s,
            "--range",
            "9-3",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("after its end"));
}
