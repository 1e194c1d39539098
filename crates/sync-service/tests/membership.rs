#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Signed batches and heads against the membership chain, through the
//! library API: what a key holder who is not (or not that) member writes is
//! refused by name, never applied, and the honest devices still converge.

mod common;

use bae_crypto::{IdentitySigningKey, KeyEpoch, ObjectKind, ObjectPlace};
use bae_hlc::{DeviceId, Timestamp};
use bae_membership::{Action, Entry, LibraryId, Role, SignedEntry, SignedKind, SignedObject};
use bae_storage_s3::layout::{self, PublicKeyHex};
use bae_sync_service::keystore::{read_key_file, KeyFile};
use bae_sync_service::{Member, ProblemKind, PullReport, SyncService, MAX_BATCH_OBJECT_BYTES};
use common::*;

/// Founder's laptop (one album) and desktop (joined with the key file).
async fn two_devices(name: &str) -> (World, SyncService, SyncService, KeyFile) {
    let w = World::new(Bucket::Local, name);
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    let file = read_key_file(&w.key_file()).unwrap();
    (w, a, b, file)
}

/// A device of another user `signer`, on the library's key: what a key
/// holder who is not the founder writes with.
fn device_of(w: &World, name: &str, file: &KeyFile, signer: &IdentitySigningKey) -> SyncService {
    import_albums(&w.library(name), 20, 1);
    let rec = bae_oplog::fixture::open_library(&w.library(name)).unwrap();
    let member = Member::new(signer.clone(), file.identity.public_key());
    SyncService::new(rec, w.store(), file.key.clone(), member).unwrap()
}

/// The founder adds `subject` with `role` as its entry `seq` (1 after the
/// genesis, then 2, ...).
async fn add_member(w: &World, file: &KeyFile, seq: u64, subject: &IdentitySigningKey, role: Role) {
    let founder = file.identity.public_key();
    let hex = PublicKeyHex::from_bytes(&founder.to_bytes());
    let place = |seq| ObjectPlace::hashed_owner(ObjectKind::Membership, &founder.to_bytes(), seq);
    let store = w.store();
    let prev = store
        .get(&layout::membership_key(&hex, seq - 1), 1 << 20)
        .await
        .unwrap();
    let prev = bae_crypto::open_object(&(KeyEpoch(0), &file.key), &place(seq - 1), &prev).unwrap();
    let prev = SignedEntry::from_bytes(&prev).unwrap();
    let entry = Entry {
        library_id: LibraryId::from(file.key.fingerprint()),
        author: founder,
        seq,
        prev: Some(prev.hash()),
        // A day ago (hlc-gen's range starts recently): before every batch.
        hlc: Timestamp::from_unix_millis(day_ago_ms() + seq as i64).unwrap(),
        action: Action::Add {
            subject: subject.public_key(),
            role,
        },
    };
    let signed = SignedEntry::sign(&file.identity, entry).unwrap();
    let sealed = bae_crypto::seal_object(&file.key, KeyEpoch(0), &place(seq), &signed.to_bytes());
    store
        .put(&layout::membership_key(&hex, seq), &sealed)
        .await
        .unwrap();
}

fn day_ago_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - 24 * 60 * 60 * 1000
}

/// The signed object at `key` (a batch or head of `device`/`seq`), opened.
async fn read_signed(
    w: &World,
    file: &KeyFile,
    kind: SignedKind,
    device: DeviceId,
    seq: u64,
) -> bae_membership::VerifiedObject {
    let (object_kind, key) = match kind {
        SignedKind::Batch => (ObjectKind::OpBatch, layout::ops_key(&device, seq)),
        _ => (ObjectKind::Head, layout::heads_key(&device, seq)),
    };
    let place = ObjectPlace {
        kind: object_kind,
        device: *device.as_bytes(),
        seq,
    };
    let sealed = w.store().get(&key, MAX_BATCH_OBJECT_BYTES).await.unwrap();
    let plain = bae_crypto::open_object(&(KeyEpoch(0), &file.key), &place, &sealed).unwrap();
    SignedObject::from_bytes(&plain)
        .unwrap()
        .verify(
            LibraryId::from(file.key.fingerprint()),
            (kind, device, seq),
            KeyEpoch(0),
        )
        .unwrap()
}

/// The one rejected problem of a pull, whose reason names `key` and `why`.
fn rejected_by_name(report: &PullReport, key: &str, why: &str) {
    let problem = report
        .problems
        .iter()
        .find(|p| p.reason.contains(key))
        .unwrap_or_else(|| panic!("no problem names {key}: {:?}", report.problems));
    assert_eq!(problem.kind, ProblemKind::Rejected);
    assert!(problem.reason.contains(why), "{}", problem.reason);
}

/// An edit on `a`, pushed: its newest batch seq.
async fn edit_and_push(a: &SyncService, title: &str) -> u64 {
    edit(a, "albums", &album_row(0, "albums"), "title", title).await;
    a.push().await.unwrap().head.unwrap()
}

#[tokio::test]
async fn two_devices_of_one_user_sign_as_the_same_member() {
    let (_w, a, b, file) = two_devices("members-two").await;
    edit_and_push(&a, "from a").await;
    edit(&b, "albums", &album_row(0, "albums"), "title", "from b").await;
    sync_all(&[&a, &b]).await;
    assert_converged(&[&a, &b]).await;
    let members = a.members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].key, file.identity.public_key());
    assert_eq!(members[0].role, Role::Owner);
    let mut both = vec![a.device(), b.device()];
    both.sort();
    assert_eq!(members[0].devices, both);
}

#[tokio::test]
async fn a_batch_signed_by_a_non_member_is_rejected_by_name_and_never_applied() {
    let (w, a, b, file) = two_devices("members-stranger").await;
    let stranger = IdentitySigningKey::generate();
    let c = device_of(&w, "c", &file, &stranger);
    c.push().await.unwrap();
    let before = dump(&b).await;
    let report = b.pull().await.unwrap();
    assert_eq!(report.applied, 0);
    // Its head is refused first: the stream never opens.
    rejected_by_name(
        &report,
        &layout::heads_key(&c.device(), 1),
        "not a member of the library",
    );
    assert_eq!(dump(&b).await, before, "nothing of the stranger applied");
    // With an honest head, the batch itself is refused by the same rule.
    let head = read_signed(&w, &file, SignedKind::Head, c.device(), 1).await;
    let sealed = sign_and_seal(
        &file.key,
        &file.identity,
        *head.header(),
        head.body().to_vec(),
    );
    w.store()
        .put(&layout::heads_key(&c.device(), 1), &sealed)
        .await
        .unwrap();
    let report = b.pull().await.unwrap();
    rejected_by_name(
        &report,
        &layout::ops_key(&c.device(), 1),
        &format!("signed by {}, who is not a member", stranger.public_key()),
    );
    assert_eq!(dump(&b).await, before);
    edit_and_push(&a, "honest").await;
    b.pull().await.unwrap();
    assert_eq!(dump(&a).await, dump(&b).await);
}

#[tokio::test]
async fn a_readers_batch_is_rejected_but_a_members_applies() {
    let (w, _a, b, file) = two_devices("members-reader").await;
    let reader = IdentitySigningKey::generate();
    let writer = IdentitySigningKey::generate();
    add_member(&w, &file, 1, &reader, Role::Reader).await;
    add_member(&w, &file, 2, &writer, Role::Member).await;
    let r = device_of(&w, "r", &file, &reader);
    r.push().await.unwrap();
    let m = device_of(&w, "m", &file, &writer);
    m.push().await.unwrap();
    let report = b.pull().await.unwrap();
    rejected_by_name(
        &report,
        &layout::ops_key(&r.device(), 1),
        "a Reader who may not write",
    );
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.applied, 1, "the member's batch");
    let members = b.members().await.unwrap();
    let role_of = |k: &IdentitySigningKey| {
        members
            .iter()
            .find(|m| m.key == k.public_key())
            .map(|m| m.role)
    };
    assert_eq!(role_of(&reader), Some(Role::Reader));
    assert_eq!(role_of(&writer), Some(Role::Member));
    assert_eq!(role_of(&file.identity), Some(Role::Owner));
}

#[tokio::test]
async fn a_forged_signature_is_rejected_and_push_repair_resigns() {
    let (w, a, b, file) = two_devices("members-forged").await;
    let seq = edit_and_push(&a, "forged?").await;
    // Byte 40 is inside the signature (bytes 33..97 of the envelope).
    let key = tamper_batch(&w, &file, a.device(), seq, |plain| plain[40] ^= 0x01).await;
    let before = dump(&b).await;
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &key, "signature does not verify");
    assert_eq!(dump(&b).await, before);
    let repair = a.repair().await.unwrap();
    assert_eq!(repair.repaired, vec![seq]);
    let report = b.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(dump(&a).await, dump(&b).await);
}

#[tokio::test]
async fn a_head_re_signed_by_another_author_is_rejected() {
    let (w, a, b, file) = two_devices("members-resigned-head").await;
    let seq = edit_and_push(&a, "head").await;
    let head = read_signed(&w, &file, SignedKind::Head, a.device(), seq).await;
    let stranger = IdentitySigningKey::generate();
    let key = layout::heads_key(&a.device(), seq);
    let sealed = sign_and_seal(&file.key, &stranger, *head.header(), head.body().to_vec());
    w.store().put(&key, &sealed).await.unwrap();
    let before = dump(&b).await;
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &key, "not a member");
    assert_eq!(dump(&b).await, before);
    // Re-signed by a member: the device is bound to the founder.
    let member = IdentitySigningKey::generate();
    add_member(&w, &file, 1, &member, Role::Member).await;
    let sealed = sign_and_seal(&file.key, &member, *head.header(), head.body().to_vec());
    w.store().put(&key, &sealed).await.unwrap();
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &key, &format!("device {} belongs to", a.device()));
    assert_eq!(dump(&b).await, before);
}

#[tokio::test]
async fn a_device_taken_over_by_another_member_is_rejected_and_the_binding_persists() {
    let (w, a, b, file) = two_devices("members-takeover").await;
    let member = IdentitySigningKey::generate();
    add_member(&w, &file, 1, &member, Role::Member).await;
    let seq = edit_and_push(&a, "taken over?").await;
    let batch = read_signed(&w, &file, SignedKind::Batch, a.device(), seq).await;
    let key = layout::ops_key(&a.device(), seq);
    let sealed = sign_and_seal(&file.key, &member, *batch.header(), batch.body().to_vec());
    w.store().put(&key, &sealed).await.unwrap();
    // Its head too: signed by the member, nothing in this pull binds the
    // device to the founder first.
    let head = read_signed(&w, &file, SignedKind::Head, a.device(), seq).await;
    let head_key = layout::heads_key(&a.device(), seq);
    let sealed = sign_and_seal(&file.key, &member, *head.header(), head.body().to_vec());
    w.store().put(&head_key, &sealed).await.unwrap();
    let before = dump(&b).await;
    // A new service on b's library: the binding of a's device to the
    // founder was saved by the join's pull, not only held in memory.
    drop(b);
    let b = w.device_over("b", w.store());
    let report = b.pull().await.unwrap();
    assert_eq!(report.applied, 0);
    rejected_by_name(
        &report,
        &head_key,
        &format!(
            "device {} belongs to {}, but this object is signed by {}",
            a.device(),
            file.identity.public_key(),
            member.public_key()
        ),
    );
    assert_eq!(dump(&b).await, before);
}

/// A member re-signs `a`'s first batch in place, the first object of its
/// own that `a`'s repair reads. The repair uploads `a`'s own again and
/// finds every later batch sound: the forgery never binds `a`'s device to
/// that member (its own batches would be refused from then on, and a
/// restore would take the forger's chain link for its own).
#[tokio::test]
async fn an_own_batch_re_signed_by_another_member_never_binds_this_device_to_them() {
    let (w, a, b, file) = two_devices("members-own-resigned").await;
    let member = IdentitySigningKey::generate();
    add_member(&w, &file, 1, &member, Role::Member).await;
    let newest = edit_and_push(&a, "mine").await;
    assert!(newest > 1);
    let batch = read_signed(&w, &file, SignedKind::Batch, a.device(), 1).await;
    let key = layout::ops_key(&a.device(), 1);
    let sealed = sign_and_seal(&file.key, &member, *batch.header(), batch.body().to_vec());
    w.store().put(&key, &sealed).await.unwrap();
    // A service opened anew: nothing it verified has bound its device.
    drop(a);
    let a = w.device_over("a", w.store());
    let repair = a.repair().await.unwrap();
    assert_eq!(repair.repaired, vec![1]);
    let members = a.members().await.unwrap();
    let devices_of = |key| {
        members
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.devices.clone())
            .unwrap()
    };
    assert_eq!(devices_of(member.public_key()), Vec::<DeviceId>::new());
    assert!(devices_of(file.identity.public_key()).contains(&a.device()));
    // Its own stream goes on: the next push verifies, b applies it.
    edit_and_push(&a, "mine, after").await;
    sync_all(&[&a, &b]).await;
    assert_converged(&[&a, &b]).await;
    assert_eq!(a.repair().await.unwrap().repaired, Vec::<u64>::new());
}

#[tokio::test]
async fn phase_one_unsigned_objects_are_refused_by_name() {
    let (w, a, b, file) = two_devices("members-phase1").await;
    let seq = edit_and_push(&a, "unsigned").await;
    let batch = read_signed(&w, &file, SignedKind::Batch, a.device(), seq).await;
    let place = ObjectPlace {
        kind: ObjectKind::OpBatch,
        device: *a.device().as_bytes(),
        seq,
    };
    let key = layout::ops_key(&a.device(), seq);
    let unsigned = bae_crypto::seal_object(&file.key, KeyEpoch(0), &place, batch.body());
    w.store().put(&key, &unsigned).await.unwrap();
    let before = dump(&b).await;
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &key, "unsigned batch in the phase-1 format");
    assert_eq!(dump(&b).await, before);
    // A bare (phase-1) head is refused the same way.
    let head = read_signed(&w, &file, SignedKind::Head, a.device(), seq).await;
    let head_key = layout::heads_key(&a.device(), seq);
    let head_place = ObjectPlace {
        kind: ObjectKind::Head,
        ..place
    };
    let unsigned = bae_crypto::seal_object(&file.key, KeyEpoch(0), &head_place, head.body());
    w.store().put(&head_key, &unsigned).await.unwrap();
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &head_key, "unsigned head in the phase-1 format");
    assert_eq!(dump(&b).await, before);
}

/// A membership entry that could not be read once (damaged in transfer, or
/// listed before it was readable) is read again by the next pull, not
/// skipped for the service's life. (Found by the simulation, seed 4: a
/// device whose first read of the genesis failed refused every head until
/// restarted.)
#[tokio::test]
async fn an_entry_that_failed_to_read_is_read_again_by_the_next_pull() {
    let (w, a, _b, file) = two_devices("members-reread").await;
    let genesis = layout::membership_key(
        &PublicKeyHex::from_bytes(&file.identity.public_key().to_bytes()),
        0,
    );
    let store = w.store();
    let good = store.get(&genesis, 1 << 20).await.unwrap();
    store.put(&genesis, b"damaged").await.unwrap();
    let c = w.device_over("c", w.store());
    let report = c.pull().await.unwrap();
    assert_eq!(report.applied, 0);
    rejected_by_name(&report, &layout::heads_key(&a.device(), 1), "not a member");
    store.put(&genesis, &good).await.unwrap();
    let report = c.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(dump(&a).await, dump(&c).await);
}

/// Opens `device`'s batch `seq`, changes its envelope bytes and seals them
/// again under the library key (what any key holder can do); its key.
async fn tamper_batch(
    w: &World,
    file: &KeyFile,
    device: DeviceId,
    seq: u64,
    change: impl FnOnce(&mut Vec<u8>),
) -> String {
    let key = layout::ops_key(&device, seq);
    let place = ObjectPlace {
        kind: ObjectKind::OpBatch,
        device: *device.as_bytes(),
        seq,
    };
    let sealed = w.store().get(&key, MAX_BATCH_OBJECT_BYTES).await.unwrap();
    let mut plain = bae_crypto::open_object(&(KeyEpoch(0), &file.key), &place, &sealed).unwrap();
    change(&mut plain);
    let forged = bae_crypto::seal_object(&file.key, KeyEpoch(0), &place, &plain);
    w.store().put(&key, &forged).await.unwrap();
    key
}

/// A pull verifies one signature per device and window, the run's last;
/// the hash chain carries it to the batches before. A forged body in the
/// middle of the run, or a forged last signature, is still refused by
/// name, and only the batches before it apply.
#[tokio::test]
async fn a_forged_batch_in_the_middle_of_a_window_is_refused_and_those_before_it_apply() {
    let (w, a, b, file) = two_devices("members-forged-window").await;
    edit_and_push(&a, "window one").await;
    let middle = edit_and_push(&a, "window two").await;
    let last = edit_and_push(&a, "window three").await;
    // The middle body changed, its signature left as it was: the honest
    // last batch still names the true middle's hash.
    let key = tamper_batch(&w, &file, a.device(), middle, |plain| {
        let n = plain.len();
        plain[n - 1] ^= 0x01;
    })
    .await;
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &key, "signature does not verify");
    assert_eq!(report.applied, 1);
    let seen = dump(&b).await;
    assert!(seen.contains("window one") && !seen.contains("window two"));
    // Repaired, and now the last batch's signature forged: the middle
    // applies, the last does not.
    assert_eq!(a.repair().await.unwrap().repaired, vec![middle]);
    let key = tamper_batch(&w, &file, a.device(), last, |plain| plain[40] ^= 0x01).await;
    let report = b.pull().await.unwrap();
    rejected_by_name(&report, &key, "signature does not verify");
    assert_eq!(report.applied, 1);
    let seen = dump(&b).await;
    assert!(seen.contains("window two") && !seen.contains("window three"));
    assert_eq!(a.repair().await.unwrap().repaired, vec![last]);
    let report = b.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(dump(&a).await, dump(&b).await);
}
