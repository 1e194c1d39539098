//! A bad object in the bucket (tampered, truncated, swapped, wrongly keyed,
//! missing, oversized) is rejected with a message naming it; nothing from it
//! applies; other devices' batches still apply; the device's stream resumes
//! after `push --repair` on the device that owns it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_crypto::{seal_object, KeyEpoch, LibraryKey, ObjectKind, ObjectPlace};
use bae_membership::SignedKind;
use bae_storage_s3::testing::CountingStore;
use bae_sync_service::{ProblemKind, MAX_BATCH_OBJECT_BYTES, MAX_HEAD_OBJECT_BYTES};
use common::*;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
enum Damage {
    FlipByte,
    Truncate,
    SwapWithNext,
    WrongKey,
    Delete,
    /// Replaced by garbage one byte larger than a pull reads.
    Oversize,
    /// Replaced by another device's batch (sealed and signed for its place).
    CopiedFromAnotherDevice,
}

/// Damages batch `seq` of `a`; `other` is another device that has pushed.
async fn damage(
    w: &World,
    a: &bae_sync_service::SyncService,
    other: &bae_sync_service::SyncService,
    seq: u64,
    how: Damage,
) {
    let store = w.store();
    let (key, next) = (ops_key(a, seq), ops_key(a, seq + 1));
    let bytes = store
        .get(&key, bae_sync_service::MAX_BATCH_OBJECT_BYTES)
        .await
        .unwrap();
    match how {
        Damage::FlipByte => {
            let mut b = bytes;
            let i = b.len() - 20;
            b[i] ^= 0x40;
            store.put(&key, &b).await.unwrap();
        }
        Damage::Truncate => store.put(&key, &bytes[..bytes.len() / 2]).await.unwrap(),
        Damage::SwapWithNext => {
            let other = store
                .get(&next, bae_sync_service::MAX_BATCH_OBJECT_BYTES)
                .await
                .unwrap();
            store.put(&key, &other).await.unwrap();
            store.put(&next, &bytes).await.unwrap();
        }
        Damage::WrongKey => {
            let place = ObjectPlace {
                kind: ObjectKind::OpBatch,
                device: *a.device().as_bytes(),
                seq,
            };
            let forged = seal_object(&LibraryKey::generate(), KeyEpoch(0), &place, b"forged");
            store.put(&key, &forged).await.unwrap();
        }
        Damage::Delete => store.delete(&key).await.unwrap(),
        Damage::Oversize => {
            let garbage = vec![0x5a; MAX_BATCH_OBJECT_BYTES as usize + 1];
            store.put(&key, &garbage).await.unwrap();
        }
        Damage::CopiedFromAnotherDevice => {
            let source = ops_key(other, last_batch(other).await);
            let copied = store.get(&source, MAX_BATCH_OBJECT_BYTES).await.unwrap();
            store.put(&key, &copied).await.unwrap();
        }
    }
}

async fn bad_object_is_rejected_then_repaired(bucket: Bucket, how: Damage) {
    let w = World::new(bucket, &format!("tamper-{how:?}").to_lowercase());
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    let c = w.join("c").await;
    let album = album_row(0, "albums");
    edit(&a, "albums", &album, "title", "first edit").await;
    edit(&a, "albums", &album, "title", "second edit").await;
    a.push().await.unwrap();
    edit(&c, "albums", &album, "bandcamp_album_id", "from c").await;
    c.push().await.unwrap();
    let bad = last_batch(&a).await - 1;
    damage(&w, &a, &c, bad, how).await;

    let pulled = b.pull().await.unwrap();
    let key = ops_key(&a, bad);
    assert_eq!(pulled.problems.len(), 1, "{:?}", pulled.problems);
    let problem = &pulled.problems[0];
    assert_eq!(
        (problem.device, problem.seq, problem.kind),
        (a.device(), bad, ProblemKind::Rejected)
    );
    assert!(problem.reason.contains(&key), "{how:?}: {}", problem.reason);
    let status = b.status().await.unwrap();
    assert!(status.problems[0].reason.contains(&key));
    assert_eq!(status.problems[0].kind, "rejected");
    // Nothing of a's stream from the bad batch on; c's edit applied.
    assert_ne!(field(&b, "albums", &album, "title").await, "first edit");
    assert_ne!(field(&b, "albums", &album, "title").await, "second edit");
    assert_eq!(
        field(&b, "albums", &album, "bandcamp_album_id").await,
        "from c"
    );
    // Pulling again does not get past it.
    assert_eq!(b.pull().await.unwrap().problems.len(), 1);

    let repair = a.repair().await.unwrap();
    let expected: Vec<u64> = match how {
        Damage::SwapWithNext => vec![bad, bad + 1],
        _ => vec![bad],
    };
    assert_eq!(repair.repaired, expected, "{repair:?}");
    assert!(repair.unrepairable.is_empty());
    assert_eq!(
        a.repair().await.unwrap().repaired,
        Vec::<u64>::new(),
        "repair is idempotent"
    );

    let pulled = b.pull().await.unwrap();
    assert!(pulled.problems.is_empty(), "{:?}", pulled.problems);
    assert_eq!(pulled.applied, 2);
    assert_eq!(field(&b, "albums", &album, "title").await, "second edit");
    assert!(b.status().await.unwrap().problems.is_empty());
    sync_all(&[&a, &b, &c]).await;
    assert_converged(&[&a, &b, &c]).await;
}

#[tokio::test]
async fn tampered_batch_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::FlipByte).await;
}

#[tokio::test]
async fn truncated_batch_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::Truncate).await;
}

#[tokio::test]
async fn swapped_batches_are_rejected_and_resume_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::SwapWithNext).await;
}

#[tokio::test]
async fn wrongly_keyed_batch_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::WrongKey).await;
}

#[tokio::test]
async fn missing_batch_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::Delete).await;
}

/// Someone with write access to the bucket (no key needed) copies a batch
/// of another device over one of a's.
#[tokio::test]
async fn batch_copied_from_another_device_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::CopiedFromAnotherDevice).await;
}

#[tokio::test]
async fn oversized_batch_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::Local, Damage::Oversize).await;
}

#[tokio::test]
async fn tampered_batch_on_s3_is_rejected_and_resumes_after_repair() {
    bad_object_is_rejected_then_repaired(Bucket::S3, Damage::FlipByte).await;
}

/// Anyone who can write to the bucket (no key needed) puts 20 MiB of
/// garbage where a head of a made-up device would be. A pull reads no more
/// of it than a head may be, reports it by name with the limit, and still
/// applies the honest device's batches; so does the next pull.
#[tokio::test]
async fn an_oversized_head_is_reported_by_name_and_never_read_whole() {
    const GARBAGE: u64 = 20 << 20;
    let w = World::new(Bucket::Local, "oversized-head");
    let a = w.first_device("a", 1).await;
    let album = album_row(0, "albums");
    edit(&a, "albums", &album, "title", "still syncing").await;
    a.push().await.unwrap();
    let forger = bae_hlc::DeviceId::from_bytes([9; 16]);
    let key = bae_storage_s3::layout::heads_key(&forger, 5);
    w.store()
        .put(&key, &vec![0x5a; GARBAGE as usize])
        .await
        .unwrap();

    let counting = Arc::new(CountingStore::new(w.store()));
    let b = w.device_over("b", counting.clone());
    for pull in 1..=2 {
        counting.reset();
        let report = b.pull().await.unwrap();
        let read = counting.snapshot().bytes_out;
        eprintln!("pull {pull}: at most {read} bytes read from the bucket");
        assert!(read < GARBAGE / 8, "pull {pull} read up to {read} bytes");
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(
            (problem.device, problem.seq, problem.kind),
            (forger, 5, ProblemKind::Rejected)
        );
        let limit = MAX_HEAD_OBJECT_BYTES.to_string();
        assert!(
            problem.reason.contains(&key) && problem.reason.contains(&limit),
            "{}",
            problem.reason
        );
    }
    assert_eq!(field(&b, "albums", &album, "title").await, "still syncing");
    assert!(b.status().await.unwrap().problems[0].reason.contains(&key));
    assert_converged(&[&a, &b]).await;
}

/// A key holder's head at seq `u64::MAX` (sealed at its place, so it
/// verifies) used to overflow `seq + 1`. It is rejected by name, and the
/// honest devices still sync.
#[tokio::test]
async fn a_head_with_a_seq_out_of_range_is_rejected_by_name() {
    let w = World::new(Bucket::Local, "head-seq-max");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    let forger = bae_hlc::DeviceId::from_bytes([7; 16]);
    let head = bae_sync_service::Head {
        version: 1,
        device: forger,
        seq: u64::MAX,
        hash: None,
        hlc: bae_hlc::Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
        pushed_at_ms: 0,
        cursors: vec![],
        schema_version: 0,
    };
    let key = bae_storage_s3::layout::heads_key(&forger, u64::MAX);
    // A key holder (the member itself) signs it: only its range is wrong.
    let file = bae_sync_service::keystore::read_key_file(&w.key_file()).unwrap();
    let header = envelope(
        &file.key,
        SignedKind::Head,
        forger,
        u64::MAX,
        head.hlc,
        None,
    );
    let sealed = sign_and_seal(&file.key, &file.identity, header, head.encode());
    w.store().put(&key, &sealed).await.unwrap();
    edit(
        &a,
        "albums",
        &album_row(0, "albums"),
        "title",
        "still syncing",
    )
    .await;
    a.push().await.unwrap();
    let report = b.pull().await.unwrap();
    assert_eq!(report.applied, 1);
    let problem = &report.problems[0];
    assert_eq!(problem.kind, ProblemKind::Rejected);
    assert!(problem.reason.contains(&key), "{}", problem.reason);
    assert!(
        problem.reason.contains("out of range"),
        "{}",
        problem.reason
    );
    assert_converged(&[&a, &b]).await;
}

/// The bucket host puts an older head of device a back in place (deleting
/// the newest). Device b, which applied further, reports the rollback by
/// name; a new device c, which has applied nothing, learns it from b's
/// head (b says it applied more of a) and reports it too.
#[tokio::test]
async fn a_rolled_back_head_is_reported_by_those_who_applied_further() {
    let w = World::new(Bucket::Local, "rollback");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    let album = album_row(0, "albums");
    edit(&a, "albums", &album, "title", "second").await;
    a.push().await.unwrap();
    let store = w.store();
    let old_key = bae_storage_s3::layout::heads_key(&a.device(), 2);
    let old_head = store
        .get(&old_key, bae_sync_service::MAX_HEAD_OBJECT_BYTES)
        .await
        .unwrap();
    edit(&a, "albums", &album, "title", "third").await;
    a.push().await.unwrap();
    b.pull().await.unwrap();
    // b writes a head that records how far it applied a's stream.
    edit(&b, "albums", &album, "year", "2001").await;
    b.push().await.unwrap();
    // The host rolls a back to its second batch.
    store
        .delete(&bae_storage_s3::layout::heads_key(&a.device(), 3))
        .await
        .unwrap();
    store.put(&old_key, &old_head).await.unwrap();

    let report = b.pull().await.unwrap();
    let rollback = |problems: &[bae_sync_service::Problem]| {
        problems
            .iter()
            .find(|p| p.device == a.device())
            .cloned()
            .unwrap_or_else(|| panic!("no rollback reported: {problems:?}"))
    };
    let p = rollback(&report.problems);
    assert_eq!(p.kind, ProblemKind::Rejected);
    assert!(
        p.reason.contains("rolled back") && p.reason.contains(&old_key),
        "{}",
        p.reason
    );
    assert!(p.reason.contains("applied here"), "{}", p.reason);
    assert!(b
        .status()
        .await
        .unwrap()
        .problems
        .iter()
        .any(|s| s.reason.contains("rolled back")));

    let c = w.join("c").await;
    let report = c.pull().await.unwrap();
    let status = c.status().await.unwrap();
    let reason = status
        .problems
        .iter()
        .map(|s| s.reason.clone())
        .find(|r| r.contains("rolled back"))
        .unwrap_or_else(|| panic!("c did not report the rollback: {report:?} {status:?}"));
    assert!(
        reason.contains(&format!("by device {}", b.device())),
        "{reason}"
    );
}

/// Garbage (written without the key) under every prefix of the layout, and
/// outside it: pulls still apply the honest batches (a garbage head of a
/// made-up device is reported by name, nothing else), a new device still
/// joins (a garbage checkpoint is passed over), every device converges,
/// and no garbage object is deleted or replaced by the engine.
#[tokio::test]
async fn garbage_under_every_prefix_leaves_honest_data_syncing() {
    let w = World::new(Bucket::Local, "garbage-prefixes");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    let album = album_row(0, "albums");
    edit(&a, "albums", &album, "title", "honest").await;
    a.push().await.unwrap();
    let store = w.store();
    let member = "ab".repeat(32);
    let keys = [
        "junk".to_owned(),
        "heads/not-a-device".to_owned(),
        format!("heads/{}/not-a-seq", a.device()),
        format!(
            "heads/{}/00000000000000000099",
            bae_hlc::DeviceId::from_bytes([7; 16])
        ),
        "ops/garbage".to_owned(),
        format!("ops/{}/xyz", a.device()),
        "checkpoints/garbage".to_owned(),
        "checkpoints/00000000000000000001-deadbeef".to_owned(),
        "images/garbage".to_owned(),
        "membership/garbage".to_owned(),
        format!("membership/{member}/1"),
        "keys/garbage".to_owned(),
        "storage/garbage".to_owned(),
    ];
    for key in &keys {
        store
            .put(key, b"not an object of this library")
            .await
            .unwrap();
    }

    b.pull().await.unwrap();
    assert_eq!(field(&b, "albums", &album, "title").await, "honest");
    edit(&b, "albums", &album, "title", "still syncing").await;
    b.push().await.unwrap();
    a.pull().await.unwrap();
    assert_eq!(field(&a, "albums", &album, "title").await, "still syncing");
    let c = w.join("c").await;
    // The made-up device's head is reported by name on every pull (as
    // damage should be); nothing else is.
    for _ in 0..2 {
        for s in [&a, &b, &c] {
            let (_, pulled) = s.sync().await.unwrap();
            for p in &pulled.problems {
                assert!(keys.iter().any(|k| p.reason.contains(k.as_str())), "{p:?}");
            }
        }
    }
    assert_converged(&[&a, &b, &c]).await;
    for key in &keys {
        assert!(store.exists(key).await.unwrap(), "{key} was touched");
    }
}
