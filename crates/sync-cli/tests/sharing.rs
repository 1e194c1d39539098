//! Sharing a library through the `bae-sync` binary: `identity show`,
//! `invite`, `join --invite`, a reader's edits refused, `revoke` with a new
//! key epoch, and invite codes with S3 credentials sealed inside, on the
//! local and the S3 bucket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bin::*;
use common::*;
use std::path::Path;

/// The last line of a command's output (a public key, an invite code).
fn last_line(out: &str) -> String {
    out.lines().last().unwrap().trim().to_owned()
}

/// `identity show` under `home`: the user's public key.
fn identity(w: &World, home: &Path) -> String {
    last_line(&succeeded(
        run_in(home, w.dir.path(), &["identity", "show"]),
        &["identity", "show"],
    ))
}

fn as_user(w: &World, home: &Path, args: &[&str]) -> String {
    succeeded(run_in(home, w.dir.path(), args), args)
}

fn title_of(dump: &str) -> bool {
    dump.contains("shared title")
}

fn shares_a_library(bucket: Bucket) {
    let w = World::new(bucket, "cli-sharing");
    let owner_lib = path(w.library("owner"));
    let (bob_home, carol_home) = (w.dir.path().join("bob"), w.dir.path().join("carol"));
    let (bob_lib, carol_lib) = (path(w.library("bob")), path(w.library("carol")));
    ok(
        &w,
        &["demo-import", "--library", &owner_lib, "--albums", "2"],
    );
    ok(
        &w,
        &["init", "--library", &owner_lib, "--bucket", &w.bucket],
    );
    let (bob, carol) = (identity(&w, &bob_home), identity(&w, &carol_home));
    assert_eq!(bob.len(), 64);

    let invite = |member: &str, role: &str| {
        last_line(&ok(
            &w,
            &[
                "invite",
                "--library",
                &owner_lib,
                "--member",
                member,
                "--role",
                role,
            ],
        ))
    };
    let bob_code = last_line(&ok(
        &w,
        &[
            "invite",
            "--library",
            &owner_lib,
            "--member",
            &bob,
            "--role",
            "member",
            "--name",
            "Bob",
        ],
    ));
    let carol_code = invite(&carol, "reader");
    assert!(bob_code.starts_with("bae-invite-v1:"), "{bob_code}");

    // A code is for the identity it names: carol cannot use bob's.
    let err = failed(
        run_in(
            &carol_home,
            w.dir.path(),
            &["join", "--library", &carol_lib, "--invite", &bob_code],
        ),
        &["join"],
    );
    assert!(err.contains("invite"), "{err}");
    assert!(!w.library("carol").exists(), "nothing created");
    // A mistyped code is refused before any I/O.
    let mut typo = bob_code.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    failed(
        run_in(
            &bob_home,
            w.dir.path(),
            &["join", "--library", &bob_lib, "--invite", &typo],
        ),
        &["join"],
    );

    as_user(
        &w,
        &bob_home,
        &["join", "--library", &bob_lib, "--invite", &bob_code],
    );
    as_user(
        &w,
        &carol_home,
        &["join", "--library", &carol_lib, "--invite", &carol_code],
    );
    as_user(&w, &carol_home, &["name", "--library", &carol_lib, "Carol"]);
    let members = ok(&w, &["members", "--library", &owner_lib]);
    assert!(
        members.contains(&bob) && members.contains(&carol),
        "{members}"
    );
    assert!(
        members.contains("\"Bob\"") && members.contains("\"Carol\""),
        "{members}"
    );
    // A reader cannot name someone else; nobody gets an empty name.
    let args = [
        "name",
        "--library",
        carol_lib.as_str(),
        "--member",
        bob.as_str(),
        "Robert",
    ];
    let err = failed(run_in(&carol_home, w.dir.path(), &args), &args);
    assert!(err.contains("would not count"), "{err}");
    let err = fails(&w, &["name", "--library", &owner_lib, ""]);
    assert!(err.contains("display name"), "{err}");

    // Bob (a member) edits; everyone sees it.
    let album = album_id(&ok(&w, &["dump", "--library", &owner_lib]));
    as_user(
        &w,
        &bob_home,
        &[
            "set",
            "--library",
            &bob_lib,
            "albums",
            &album,
            "title=shared title",
        ],
    );
    as_user(&w, &bob_home, &["sync", "--library", &bob_lib]);
    ok(&w, &["sync", "--library", &owner_lib]);
    as_user(&w, &carol_home, &["sync", "--library", &carol_lib]);
    assert!(title_of(&as_user(
        &w,
        &carol_home,
        &["dump", "--library", &carol_lib]
    )));

    // Carol (a reader) is refused locally, by name, and nothing is recorded.
    let before = as_user(&w, &carol_home, &["dump", "--library", &carol_lib]);
    let err = failed(
        run_in(
            &carol_home,
            w.dir.path(),
            &[
                "set",
                "--library",
                &carol_lib,
                "albums",
                &album,
                "title=mine",
            ],
        ),
        &["set"],
    );
    assert!(err.contains("reader"), "{err}");
    assert_eq!(
        as_user(&w, &carol_home, &["dump", "--library", &carol_lib]),
        before
    );

    // Bob is revoked: a new key for the owner and carol.
    let out = ok(&w, &["revoke", "--library", &owner_lib, "--member", &bob]);
    assert!(out.contains("removed") && out.contains("epoch 1"), "{out}");
    assert!(out.contains("storage provider"), "{out}");
    // The checkpoint written before the removal: it holds bob's batches,
    // which his own checkpoints no longer do once he is removed.
    assert!(
        out.contains("checkpoint checkpoints/") && out.contains("holds their batches"),
        "{out}"
    );
    let members = ok(&w, &["members", "--library", &owner_lib]);
    assert!(!members.contains(&bob), "{members}");
    ok(
        &w,
        &[
            "set",
            "--library",
            &owner_lib,
            "albums",
            &album,
            "title=after revoke",
        ],
    );
    ok(&w, &["sync", "--library", &owner_lib]);
    as_user(&w, &carol_home, &["sync", "--library", &carol_lib]);
    assert!(as_user(&w, &carol_home, &["dump", "--library", &carol_lib]).contains("after revoke"));
    // Bob's pull cannot read the new epoch.
    let out = run_in(&bob_home, w.dir.path(), &["pull", "--library", &bob_lib]);
    assert!(!out.status.success());
    assert!(!as_user(&w, &bob_home, &["dump", "--library", &bob_lib]).contains("after revoke"));
    // A member cannot invite; revoking again says so.
    let err = failed(
        run_in(
            &bob_home,
            w.dir.path(),
            &[
                "invite",
                "--library",
                &bob_lib,
                "--member",
                &carol,
                "--role",
                "member",
            ],
        ),
        &["invite"],
    );
    assert!(err.contains("owner or admin"), "{err}");
    let stranger = identity(&w, &w.dir.path().join("stranger"));
    let err = fails(
        &w,
        &["revoke", "--library", &owner_lib, "--member", &stranger],
    );
    assert!(err.contains("not a member"), "{err}");
    let err = fails(
        &w,
        &[
            "revoke",
            "--library",
            &owner_lib,
            "--member",
            &"ab".repeat(32),
        ],
    );
    assert!(err.contains("--member"), "{err}");
}

/// The id of the first album in a dump.
fn album_id(dump: &str) -> String {
    dump.lines()
        .find_map(|l| l.strip_prefix("albums "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|id| id.trim_matches('"'))
        .unwrap_or_else(|| panic!("no album in {dump}"))
        .to_owned()
}

#[test]
fn shares_a_library_on_a_local_bucket() {
    shares_a_library(Bucket::Local);
}

#[test]
fn shares_a_library_on_an_s3_bucket() {
    shares_a_library(Bucket::S3);
}

#[test]
fn an_invite_with_credentials_seals_them_and_the_invitee_syncs_with_them() {
    let w = World::new(Bucket::S3, "cli-invite-credentials");
    let owner_lib = path(w.library("owner"));
    let bob_home = w.dir.path().join("bob");
    let bob_lib = path(w.library("bob"));
    ok(
        &w,
        &["demo-import", "--library", &owner_lib, "--albums", "1"],
    );
    ok(
        &w,
        &["init", "--library", &owner_lib, "--bucket", &w.bucket],
    );
    let bob = identity(&w, &bob_home);
    let out = ok(
        &w,
        &[
            "invite",
            "--library",
            &owner_lib,
            "--member",
            &bob,
            "--role",
            "member",
            "--with-credentials",
        ],
    );
    let code = last_line(&out);
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    let access = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    assert!(
        !out.contains(&secret) && !out.contains(&access),
        "credentials in clear"
    );
    // Bob has no AWS_* variables: the sealed ones are all he has.
    let args = [
        "join",
        "--library",
        bob_lib.as_str(),
        "--invite",
        code.as_str(),
    ];
    let joined = bae_sync_in(&bob_home, w.dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(args)
        .output()
        .unwrap();
    succeeded(joined, &args);
    let sync = ["sync", "--library", bob_lib.as_str()];
    let synced = bae_sync_in(&bob_home, w.dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(sync)
        .output()
        .unwrap();
    succeeded(synced, &sync);
    assert_eq!(
        as_user(&w, &bob_home, &["dump", "--library", &bob_lib]),
        ok(&w, &["dump", "--library", &owner_lib])
    );
    // A local bucket has no credentials to hand out.
    let local = World::new(Bucket::Local, "cli-invite-local");
    let lib = path(local.library("owner"));
    ok(
        &local,
        &["init", "--library", &lib, "--bucket", &local.bucket],
    );
    let err = fails(
        &local,
        &[
            "invite",
            "--library",
            &lib,
            "--member",
            &bob,
            "--role",
            "member",
            "--with-credentials",
        ],
    );
    assert!(err.contains("not on S3"), "{err}");
}

/// Someone who can write to the bucket plants an object under
/// `membership/`, by an author no one knows, sealed under an epoch no one
/// holds. It used to stop every device's GC for as long as it stayed
/// (review finding 1). `gc` now deletes what the checkpoint covers all the
/// same, names the object it did not wait for and why on stderr, exits 0,
/// and a device that joins afterwards holds everything.
#[test]
fn gc_goes_on_past_a_planted_membership_object_and_names_it() {
    use bae_crypto::{IdentitySigningKey, KeyEpoch, LibraryKey, ObjectKind, ObjectPlace};
    use bae_storage_s3::layout::{self, PublicKeyHex};
    let w = World::new(Bucket::Local, "cli-planted-membership");
    let (owner_lib, phone_lib) = (path(w.library("owner")), path(w.library("phone")));
    let key = path(w.key_file());
    ok(
        &w,
        &["demo-import", "--library", &owner_lib, "--albums", "3"],
    );
    ok(
        &w,
        &["init", "--library", &owner_lib, "--bucket", &w.bucket],
    );
    ok(
        &w,
        &["key", "export", "--library", &owner_lib, "--out", &key],
    );
    let planter = IdentitySigningKey::generate().public_key().to_bytes();
    let place = ObjectPlace::hashed_owner(ObjectKind::Membership, &planter, 1);
    let sealed = bae_crypto::seal_object(&LibraryKey::generate(), KeyEpoch(7), &place, b"x");
    let planted = layout::membership_key(&PublicKeyHex::from_bytes(&planter), 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(w.store().put(&planted, &sealed)).unwrap();
    ok(&w, &["sync", "--library", &owner_lib]);
    ok(&w, &["checkpoint", "--library", &owner_lib]);

    let args = ["gc", "--library", owner_lib.as_str(), "--now"];
    let out = run(&w, &args);
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let stdout = succeeded(out, &args);
    assert!(
        stdout.contains(": deleted ") && !stdout.contains("deleted 0 batches"),
        "{stdout}"
    );
    let named = format!(
        "bae-sync: membership object {planted} does not open and cannot remove this member (its author cannot manage membership): gc did not wait for it"
    );
    assert!(stderr.contains(&named), "{stderr}");
    let left = runtime
        .block_on(w.store().list(layout::OPS_PREFIX))
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

    ok(
        &w,
        &[
            "join",
            "--library",
            &phone_lib,
            "--bucket",
            &w.bucket,
            "--key-file",
            &key,
        ],
    );
    let expected = ok(&w, &["dump", "--library", &owner_lib]);
    assert_eq!(ok(&w, &["dump", "--library", &phone_lib]), expected);
}

/// Anyone who can write to the bucket puts garbage at the owner's next
/// membership entry (the path is public: their key and the next seq).
/// `invite` and `name` used to fail there ("already exists") until someone
/// deleted it by hand. Now each replaces what no device can have counted,
/// names it on stderr and exits 0; dave joins with the code, holds the
/// whole library and reads the owner's new name.
#[test]
fn invite_and_name_replace_a_planted_object_at_the_owners_next_entry_and_name_it() {
    use bae_storage_s3::layout::{self, PublicKeyHex};
    let w = World::new(Bucket::Local, "cli-planted-next-entry");
    let owner_lib = path(w.library("owner"));
    let dave_home = w.dir.path().join("dave");
    let dave_lib = path(w.library("dave"));
    ok(
        &w,
        &["demo-import", "--library", &owner_lib, "--albums", "2"],
    );
    ok(
        &w,
        &["init", "--library", &owner_lib, "--bucket", &w.bucket],
    );
    let (owner, dave) = (identity(&w, &w.home()), identity(&w, &dave_home));
    let owner_hex = PublicKeyHex::parse(&owner).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plant = |seq: u64| {
        let key = layout::membership_key(&owner_hex, seq);
        runtime
            .block_on(w.store().put(&key, b"not an entry"))
            .unwrap();
        key
    };
    let replaced = |stderr: &[u8], key: &str| {
        let stderr = String::from_utf8(stderr.to_vec()).unwrap();
        let line = format!("bae-sync: replaced a planted object at {key}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with(&line)).count(),
            1,
            "{stderr}"
        );
    };

    let planted = plant(1);
    let args = [
        "invite",
        "--library",
        &owner_lib,
        "--member",
        &dave,
        "--role",
        "member",
    ];
    let out = run(&w, &args);
    replaced(&out.stderr, &planted);
    let code = last_line(&succeeded(out, &args));
    as_user(
        &w,
        &dave_home,
        &["join", "--library", &dave_lib, "--invite", &code],
    );

    let planted = plant(2);
    let args = ["name", "--library", &owner_lib, "Olive"];
    let out = run(&w, &args);
    replaced(&out.stderr, &planted);
    succeeded(out, &args);

    as_user(&w, &dave_home, &["sync", "--library", &dave_lib]);
    let members = as_user(&w, &dave_home, &["members", "--library", &dave_lib]);
    assert!(
        members.contains(&dave) && members.contains("Olive"),
        "{members}"
    );
    let expected = ok(&w, &["dump", "--library", &owner_lib]);
    assert_eq!(
        as_user(&w, &dave_home, &["dump", "--library", &dave_lib]),
        expected
    );
}
