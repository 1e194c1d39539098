//! Identities and members through the `bae-sync` binary: `identity show`,
//! `members`, the identity carried by `key export` / `join --key-file`, and
//! a key file from before identities refused by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bin::*;
use common::*;
use std::path::Path;

fn ok_in(home: &Path, w: &World, args: &[&str]) -> String {
    succeeded(run_in(home, w.dir.path(), args), args)
}

fn fails_in(home: &Path, w: &World, args: &[&str]) -> String {
    failed(run_in(home, w.dir.path(), args), args)
}

/// `identity show`'s last line: 64 lowercase hex digits.
fn identity(home: &Path, w: &World) -> String {
    let out = ok_in(home, w, &["identity", "show"]);
    let key = out.lines().last().unwrap().to_owned();
    assert_eq!(key.len(), 64, "{out}");
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    key
}

fn members_json(home: &Path, w: &World, lib: &str) -> serde_json::Value {
    let out = ok_in(home, w, &["members", "--library", lib, "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn device_id(home: &Path, w: &World, lib: &str) -> String {
    let out = ok_in(home, w, &["status", "--library", lib, "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    status["device"].as_str().unwrap().to_owned()
}

/// The first device, keys under `home`: imports `albums` albums, inits,
/// exports the key; returns the library's and the key file's paths.
fn first_device(home: &Path, w: &World, albums: &str) -> (String, String) {
    let laptop = path(w.library("laptop"));
    let key = path(w.key_file());
    for args in [
        &["demo-import", "--library", &laptop, "--albums", albums][..],
        &["init", "--library", &laptop, "--bucket", &w.bucket],
        &["key", "export", "--library", &laptop, "--out", &key],
    ] {
        ok_in(home, w, args);
    }
    (laptop, key)
}

#[test]
fn two_devices_of_one_user_are_one_owner_signing_for_both() {
    let w = World::new(Bucket::Local, "cli-members");
    let (laptop_home, desktop_home) = (w.home(), w.dir.path().join("desktop-home"));
    let me = identity(&laptop_home, &w);
    assert_eq!(identity(&laptop_home, &w), me, "made once, then kept");

    let (laptop, key) = first_device(&laptop_home, &w, "2");
    // The key file carries the identity and the founder: the library key
    // line, then the identity's, then the founder's (this user).
    let text = std::fs::read_to_string(w.key_file()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", text.len());
    assert!(lines[1].starts_with("bae-identity-key-v1:"));
    assert_eq!(lines[2], format!("bae-founder-v1:{me}"));

    let desktop = path(w.library("desktop"));
    ok_in(
        &desktop_home,
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
    assert_eq!(
        identity(&desktop_home, &w),
        me,
        "the joiner signs as the same member"
    );
    ok_in(
        &desktop_home,
        &w,
        &[
            "set",
            "--library",
            &desktop,
            "albums",
            &album_row(0, "albums"),
            "title=from the desktop",
        ],
    );
    ok_in(&desktop_home, &w, &["sync", "--library", &desktop]);
    ok_in(&laptop_home, &w, &["sync", "--library", &laptop]);
    let dump = |home: &Path, lib: &str| ok_in(home, &w, &["dump", "--library", lib]);
    assert_eq!(dump(&laptop_home, &laptop), dump(&desktop_home, &desktop));
    assert!(dump(&laptop_home, &laptop).contains("from the desktop"));

    let members = members_json(&laptop_home, &w, &laptop);
    let list = members.as_array().unwrap();
    assert_eq!(list.len(), 1, "{members}");
    assert_eq!(list[0]["key"], me.as_str());
    assert_eq!(list[0]["role"], "owner");
    let mut devices = vec![
        device_id(&laptop_home, &w, &laptop),
        device_id(&desktop_home, &w, &desktop),
    ];
    devices.sort();
    let listed: Vec<String> = list[0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, devices);
    let text = ok_in(&desktop_home, &w, &["members", "--library", &desktop]);
    assert!(text.starts_with(&format!("{me}  owner")), "{text}");
}

#[test]
fn a_key_file_without_an_identity_is_refused_and_nothing_is_written() {
    let w = World::new(Bucket::Local, "cli-old-key");
    let home = w.home();
    let (_, key) = first_device(&home, &w, "1");
    // What a key export wrote before identities: the key line alone.
    let text = std::fs::read_to_string(w.key_file()).unwrap();
    let old = w.dir.path().join("old.key");
    bae_sync_service::keystore::write_new_private(
        &old,
        format!("{}\n", text.lines().next().unwrap()).as_bytes(),
    )
    .unwrap();
    let desktop_home = w.dir.path().join("desktop-home");
    let desktop = path(w.library("desktop"));
    let err = fails_in(
        &desktop_home,
        &w,
        &[
            "join",
            "--library",
            &desktop,
            "--bucket",
            &w.bucket,
            "--key-file",
            &path(old.clone()),
        ],
    );
    assert!(err.contains("holds no identity"), "{err}");
    assert!(err.contains("key export"), "{err}");
    assert!(!desktop_home.exists(), "no key or identity saved");
    // Nothing was set up: the desktop library is not synced, and a new
    // key export joins.
    assert!(!w.library("desktop").exists(), "no library file made");
    let fresh = path(w.library("fresh"));
    ok_in(
        &desktop_home,
        &w,
        &["demo-import", "--library", &fresh, "--albums", "1"],
    );
    let err = fails_in(&desktop_home, &w, &["members", "--library", &fresh]);
    assert!(err.contains("not set up for sync"), "{err}");
    ok_in(
        &desktop_home,
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
    assert_eq!(identity(&desktop_home, &w), identity(&home, &w));
}
