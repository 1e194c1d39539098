//! Share grants through the `bae-sync` binary: `share` writes a grant for
//! one release, `redeem` (as the recipient, with no library) writes its
//! files byte-exact under their names, from the local bucket and from S3
//! with credentials sealed in the grant; a grant for someone else, expired,
//! altered, truncated or of another version exits 5 and writes nothing; a
//! release not uploaded, or a granter who is not a member, is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bae_membership::grant::{Grant, GrantTerms};
use bae_oplog::fixture::{demo_album, demo_file_bytes};
use bae_sync_service::KeyStore;
use bin::*;
use common::*;
use std::path::{Path, PathBuf};

fn last_line(out: &str) -> String {
    out.lines().last().unwrap().trim().to_owned()
}

fn identity(w: &World, home: &Path) -> String {
    let args = ["identity", "show"];
    last_line(&succeeded(run_in(home, w.dir.path(), &args), &args))
}

/// Album 0's release (as `demo-import` writes it, 12 files).
fn release() -> String {
    demo_album(1, 0, 12)
        .ids("releases")
        .next()
        .unwrap()
        .to_owned()
}

/// (file id, name) of the release, as `files` lists them.
fn listed(w: &World, lib: &str) -> Vec<(String, String)> {
    let out = ok(w, &["files", "--library", lib, "--release", &release()]);
    // `{id}  {state}  {size}  {name}`, state and size padded.
    out.lines()
        .map(|l| {
            let (id, rest) = l.split_once(' ').unwrap();
            let rest = rest.trim_start();
            let (_state, rest) = rest.split_once(' ').unwrap();
            let (_size, name) = rest.trim_start().split_once("  ").unwrap();
            (id.to_owned(), name.to_owned())
        })
        .collect()
}

/// The owner's library with album 0 imported and uploaded; bob's identity.
fn owner_and_bob(w: &World) -> (String, PathBuf, String) {
    let lib = path(w.library("owner"));
    ok(w, &["demo-import", "--library", &lib, "--albums", "1"]);
    ok(w, &["init", "--library", &lib, "--bucket", &w.bucket]);
    let bob_home = w.dir.path().join("bob");
    let bob = identity(w, &bob_home);
    (lib, bob_home, bob)
}

fn share(w: &World, lib: &str, to: &str, grant: &Path, extra: &[&str]) -> String {
    let grant = path(grant.to_path_buf());
    let release = release();
    let mut args = vec![
        "share",
        "--library",
        lib,
        "--release",
        &release,
        "--to",
        to,
        "--out",
        &grant,
    ];
    args.extend_from_slice(extra);
    ok(w, &args)
}

/// Runs `redeem` as the user of `home` with no `AWS_*` variables (only
/// what the grant carries).
fn redeem(w: &World, home: &Path, grant: &Path, out: &Path) -> std::process::Output {
    bae_sync_in(home, w.dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["redeem", "--grant"])
        .arg(grant)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn share_and_redeem(bucket: Bucket) {
    let w = World::new(bucket, "cli-grants");
    let (lib, bob_home, bob) = owner_and_bob(&w);
    let grant = w.dir.path().join("album.grant");

    // Not uploaded yet: refused, naming what to run.
    let release = release();
    let grant_s = path(grant.clone());
    let err = fails(
        &w,
        &[
            "share",
            "--library",
            &lib,
            "--release",
            &release,
            "--to",
            &bob,
            "--out",
            &grant_s,
        ],
    );
    assert!(
        err.contains("12 of its files are not uploaded yet") && err.contains("bae-sync upload"),
        "{err}"
    );
    assert!(!grant.exists());
    ok(&w, &["upload", "--library", &lib]);

    let extra: &[&str] = match bucket {
        Bucket::S3 => &["--with-credentials", "--expires", "7"],
        Bucket::Local => &[],
    };
    let said = share(&w, &lib, &bob, &grant, extra);
    assert!(
        said.contains(&format!("shared release {release} with {bob}")),
        "{said}"
    );
    let bytes = std::fs::read(&grant).unwrap();
    if bucket == Bucket::S3 {
        for var in ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"] {
            let value = std::env::var(var).unwrap();
            assert!(
                !contains(&bytes, value.as_bytes()),
                "{var} in the grant file"
            );
        }
    }
    // A second share never replaces the grant file.
    let again = fails(
        &w,
        &[
            "share",
            "--library",
            &lib,
            "--release",
            &release,
            "--to",
            &bob,
            "--out",
            &grant_s,
        ],
    );
    assert!(again.contains("already exists"), "{again}");

    let out = w.dir.path().join("received");
    let said = succeeded(redeem(&w, &bob_home, &grant, &out), &["redeem"]);
    assert!(said.contains("wrote 12 files"), "{said}");
    let files = listed(&w, &lib);
    assert_eq!(files.len(), 12);
    for (id, name) in &files {
        let got = std::fs::read(out.join(name)).unwrap();
        assert!(got == demo_file_bytes(id), "{name} differs");
        assert!(!contains(&bytes, name.as_bytes()), "names are sealed");
    }
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        12,
        "only the files"
    );
}

#[test]
fn share_then_redeem_is_byte_exact_on_a_local_bucket() {
    share_and_redeem(Bucket::Local);
}

#[test]
fn share_then_redeem_is_byte_exact_on_s3_with_sealed_credentials() {
    share_and_redeem(Bucket::S3);
}

/// Exit status 5, one line naming what is wrong, and DIR untouched.
fn refused(w: &World, home: &Path, grant: &Path, out: &Path, says: &str) {
    let o = redeem(w, home, grant, out);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(5), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(says), "{says:?} not in {stderr}");
    assert_eq!(
        std::fs::read_dir(out).unwrap().count(),
        1,
        "only the marker"
    );
}

#[test]
fn refused_grants_exit_5_and_write_nothing() {
    let w = World::new(Bucket::Local, "cli-grants-refused");
    let (lib, bob_home, bob) = owner_and_bob(&w);
    ok(&w, &["upload", "--library", &lib]);
    let grant = w.dir.path().join("album.grant");
    share(&w, &lib, &bob, &grant, &[]);
    let bytes = std::fs::read(&grant).unwrap();
    let out = w.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("mine.txt"), b"kept").unwrap();
    let variant = |name: &str, bytes: &[u8]| {
        let p = w.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    // Someone else's identity.
    let carol_home = w.dir.path().join("carol");
    identity(&w, &carol_home);
    refused(
        &w,
        &carol_home,
        &grant,
        &out,
        &format!("this grant is for {bob}"),
    );
    // Altered: the release id (clear) and a byte of the sealed payload.
    let mut altered = bytes.clone();
    altered[30] ^= 1;
    refused(
        &w,
        &bob_home,
        &variant("a", &altered),
        &out,
        "signature does not verify",
    );
    let mut sealed = bytes.clone();
    let at = sealed.len() - 100;
    sealed[at] ^= 1;
    refused(
        &w,
        &bob_home,
        &variant("b", &sealed),
        &out,
        "signature does not verify",
    );
    // Truncated, another version.
    refused(
        &w,
        &bob_home,
        &variant("c", &bytes[..bytes.len() - 10]),
        &out,
        "truncated",
    );
    let mut v2 = bytes.clone();
    v2[8] = 2;
    refused(
        &w,
        &bob_home,
        &variant("d", &v2),
        &out,
        "grant version 2 is not supported",
    );
    refused(
        &w,
        &bob_home,
        &variant("e", b"hello"),
        &out,
        "not a grant file",
    );

    // Expired: the same grant, re-issued by the owner with a past expiry.
    let owner = KeyStore::Files(w.home()).identity_store().load().unwrap();
    let bob_key = KeyStore::Files(bob_home.clone())
        .identity_store()
        .load()
        .unwrap();
    let g = Grant::from_bytes(&bytes).unwrap();
    let payload = g.open(&bob_key, 0).unwrap();
    let past = GrantTerms {
        expires_at: 1_000_000,
        ..g.terms().clone()
    };
    let expired = Grant::issue(&owner, past, &payload).unwrap();
    refused(
        &w,
        &bob_home,
        &variant("f", expired.as_bytes()),
        &out,
        "this grant expired",
    );
    assert_eq!(std::fs::read(out.join("mine.txt")).unwrap(), b"kept");

    // A damaged object: exit 1, and still nothing in DIR.
    let (id, _) = listed(&w, &lib).pop().unwrap();
    let object = w
        .dir
        .path()
        .join("bucket/storage")
        .join(&id[..2])
        .join(&id[2..4])
        .join(&id);
    let mut obj = std::fs::read(&object).unwrap();
    let at = obj.len() - 30;
    obj[at] ^= 1;
    std::fs::write(&object, obj).unwrap();
    let o = redeem(&w, &bob_home, &grant, &out);
    let stderr = failed(o, &["redeem"]);
    assert!(
        stderr.contains(&id) && stderr.contains("rejected"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "nothing written"
    );

    let help = ok(&w, &["--help"]);
    assert!(help.contains("5  redeem refused the grant"), "{help}");
}

#[test]
fn a_revoked_member_cannot_share() {
    let w = World::new(Bucket::Local, "cli-grants-non-member");
    let (lib, bob_home, bob) = owner_and_bob(&w);
    ok(&w, &["upload", "--library", &lib]);
    ok(&w, &["push", "--library", &lib]);
    let code = last_line(&ok(
        &w,
        &[
            "invite",
            "--library",
            &lib,
            "--member",
            &bob,
            "--role",
            "member",
        ],
    ));
    let bob_lib = path(w.library("bob"));
    let join = [
        "join",
        "--library",
        bob_lib.as_str(),
        "--invite",
        code.as_str(),
    ];
    succeeded(run_in(&bob_home, w.dir.path(), &join), &join);
    ok(&w, &["revoke", "--library", &lib, "--member", &bob]);
    let carol_home = w.dir.path().join("carol");
    let carol = identity(&w, &carol_home);
    let grant = path(w.dir.path().join("bob.grant"));
    let release = release();
    let args = [
        "share",
        "--library",
        &bob_lib,
        "--release",
        &release,
        "--to",
        &carol,
        "--out",
        &grant,
    ];
    let err = failed(run_in(&bob_home, w.dir.path(), &args), &args);
    assert!(
        err.contains(&format!("{bob} is not a current member")),
        "{err}"
    );
    assert!(
        err.contains("key epoch 1, which was not sealed to you"),
        "{err}"
    );
    assert!(!Path::new(&grant).exists());
}
