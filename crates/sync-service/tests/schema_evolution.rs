//! Devices on sync schema versions 1 and 2 sharing a bucket: the version 1
//! device keeps syncing, reports the newer device in its status, and once
//! its host updates it converges without anything downloaded again
//! (docs/SCHEMA-EVOLUTION.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_oplog::fixture::BAE_SCHEMA_V2;
use bae_oplog::BAE_SCHEMA;
use bae_sync_service::{NewerSchemaStatus, SyncService};
use common::{album_row, dump_as, edit, field, sync_all, Bucket, World};

async fn add_note(s: &SyncService, note: &str, album: &str, body: &str) {
    let (note, album, body) = (note.to_owned(), album.to_owned(), body.to_owned());
    s.with_db(move |rec| {
        let mut tx = rec.transaction()?;
        tx.insert(
            "album_notes",
            &note,
            &[("album_id", album.into()), ("body", body.into())],
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_version_1_device_syncs_with_a_version_2_device_and_catches_up_when_updated() {
    let world = World::new(Bucket::Local, "schema-evolution");
    let a = world.first_device("a", 2).await;
    let c = world.device_v2("c");
    sync_all(&[&a, &c]).await;
    let album = album_row(0, "albums");

    // The same album edited on both at once: c writes the new column and
    // the new table, a what it knows.
    edit(&c, "albums", &album, "mood", "calm").await;
    add_note(&c, "n1", &album, "first pressing").await;
    edit(&a, "albums", &album, "title", "Retitled on a").await;
    sync_all(&[&a, &c]).await;

    assert_eq!(
        dump_as(&a, &BAE_SCHEMA).await,
        dump_as(&c, &BAE_SCHEMA).await,
        "a applied everything it knows"
    );
    assert_eq!(field(&c, "albums", &album, "title").await, "Retitled on a");
    let status = a.status().await.unwrap();
    assert_eq!(status.schema_version, 1);
    assert_eq!(
        status.newer_schema,
        [NewerSchemaStatus {
            device: c.device().to_string(),
            schema_version: 2
        }]
    );
    assert_eq!(status.kept_ops, 2, "the mood and the note");
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    assert!(c.status().await.unwrap().newer_schema.is_empty());

    // a's host updates: the same library, migrated, opened with version 2.
    let a_id = a.device();
    drop(a);
    let a = world.device_v2("a");
    assert_eq!(a.device(), a_id);
    let status = a.status().await.unwrap();
    assert_eq!((status.newer_schema.len(), status.kept_ops), (0, 0));
    assert_eq!(field(&a, "albums", &album, "mood").await, "calm");
    assert_eq!(
        field(&a, "album_notes", "n1", "body").await,
        "first pressing"
    );
    assert_eq!(
        dump_as(&a, &BAE_SCHEMA_V2).await,
        dump_as(&c, &BAE_SCHEMA_V2).await
    );

    // Both on version 2 now: edits of the new column flow both ways.
    edit(&a, "albums", &album, "mood", "stormy").await;
    sync_all(&[&a, &c]).await;
    assert_eq!(field(&c, "albums", &album, "mood").await, "stormy");
    assert_eq!(
        dump_as(&a, &BAE_SCHEMA_V2).await,
        dump_as(&c, &BAE_SCHEMA_V2).await
    );
}

/// A version 1 device `a` (albums 0 and 1) and a version 2 device `c`,
/// synced; then `c` sets album 0's mood to "calm" and adds note "n1" on it
/// (neither synced yet). Returns the world, `a`, `c` and album 0's id.
async fn mood_and_note_on_version_2(name: &str) -> (World, SyncService, SyncService, String) {
    let world = World::new(Bucket::Local, name);
    let a = world.first_device("a", 2).await;
    let c = world.device_v2("c");
    sync_all(&[&a, &c]).await;
    let album = album_row(0, "albums");
    edit(&c, "albums", &album, "mood", "calm").await;
    add_note(&c, "n1", &album, "first pressing").await;
    (world, a, c, album)
}

#[tokio::test]
async fn a_checkpoint_of_a_version_1_device_brings_what_it_kept_to_joining_devices() {
    let (world, a, c, album) = mood_and_note_on_version_2("schema-evolution-checkpoint").await;
    sync_all(&[&a, &c]).await;

    // a (version 1) writes the checkpoint, and the batches it covers go.
    a.checkpoint().await.unwrap();
    let gc = a
        .gc(i64::MAX / 2, std::time::Duration::ZERO, true)
        .await
        .unwrap();
    assert!(gc.checkpoint.is_some(), "{gc:?}");

    // A version 1 device joins from it: it keeps what a kept.
    let b = world.join("b").await;
    let status = b.status().await.unwrap();
    assert_eq!(status.kept_ops, 2, "{status:?}");
    assert_eq!(status.newer_schema.len(), 1);
    assert_eq!(
        dump_as(&b, &BAE_SCHEMA).await,
        dump_as(&c, &BAE_SCHEMA).await
    );

    // A version 2 device bootstraps from it: everything, nothing kept.
    let d = world.device_v2("d");
    assert!(d.bootstrap_from_checkpoint().await.unwrap().is_some());
    d.sync().await.unwrap();
    assert_eq!(field(&d, "albums", &album, "mood").await, "calm");
    assert_eq!(
        dump_as(&d, &BAE_SCHEMA_V2).await,
        dump_as(&c, &BAE_SCHEMA_V2).await
    );
    assert_eq!(d.status().await.unwrap().kept_ops, 0);
}

#[tokio::test]
async fn a_version_2_checkpoint_restores_on_a_joining_version_1_device_which_catches_up_when_updated(
) {
    let (world, a, c, album) =
        mood_and_note_on_version_2("schema-evolution-newer-checkpoint").await;
    edit(&a, "albums", &album, "title", "Retitled on a").await;
    sync_all(&[&a, &c]).await;

    // c (version 2) writes the checkpoint; the batches it covers go.
    c.checkpoint().await.unwrap();
    let gc = c
        .gc(i64::MAX / 2, std::time::Duration::ZERO, true)
        .await
        .unwrap();
    assert!(gc.checkpoint.is_some(), "{gc:?}");
    drop(a);

    // A version 1 device joins from it: what it knows, and the rest kept.
    let b = world.join("b").await;
    assert_eq!(
        dump_as(&b, &BAE_SCHEMA).await,
        dump_as(&c, &BAE_SCHEMA).await
    );
    let status = b.status().await.unwrap();
    assert_eq!(
        status.newer_schema,
        [NewerSchemaStatus {
            device: c.device().to_string(),
            schema_version: 2
        }]
    );
    // Each album's mood (the second album's as its insert left it) and
    // the note.
    assert_eq!(status.kept_ops, 3, "{status:?}");

    // Updated, it has everything, with nothing downloaded again.
    drop(b);
    let b = world.device_v2("b");
    assert_eq!(b.status().await.unwrap().kept_ops, 0);
    assert_eq!(
        field(&b, "album_notes", "n1", "body").await,
        "first pressing"
    );
    assert_eq!(
        dump_as(&b, &BAE_SCHEMA_V2).await,
        dump_as(&c, &BAE_SCHEMA_V2).await
    );
}

/// Review finding 3: `push --repair` rebuilds a lost batch from the op
/// log, but after the host updated it encoded the batch under the new
/// schema version: other bytes than those pushed, so every batch pushed
/// before the update was reported unrepairable.
#[tokio::test]
async fn review_a_batch_pushed_before_an_update_is_repaired_after_it() {
    let world = World::new(Bucket::Local, "schema-repair");
    let a = world.first_device("a", 1).await;
    let album = album_row(0, "albums");
    edit(&a, "albums", &album, "title", "Before the update").await;
    sync_all(&[&a]).await;
    let device = a.device();
    drop(a);
    let a = world.device_v2("a");
    let store = world.store();
    let keys = store
        .list(&bae_storage_s3::layout::ops_prefix(&device))
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        store.delete(key).await.unwrap();
    }
    let repair = a.repair().await.unwrap();
    assert!(repair.unrepairable.is_empty(), "{:?}", repair.unrepairable);
    assert_eq!(repair.repaired.len(), keys.len());
    let b = world.join("b").await;
    sync_all(&[&a, &b]).await;
    assert_eq!(
        field(&b, "albums", &album, "title").await,
        "Before the update"
    );
}

/// Review finding 5: a version 1 device that replaces its state by a
/// version 2 checkpoint (its batches gone to GC) kept what it does not
/// know, but the note of the newer writer stayed in the staging database:
/// status said nothing of a newer device while ops waited for an update.
#[tokio::test]
async fn review_a_version_1_device_recovering_from_a_version_2_checkpoint_names_its_writer() {
    let (world, a, c, album) = mood_and_note_on_version_2("schema-evolution-replace").await;
    c.sync().await.unwrap();
    c.checkpoint().await.unwrap();
    let gc = c
        .gc(i64::MAX / 2, std::time::Duration::ZERO, true)
        .await
        .unwrap();
    assert!(gc.checkpoint.is_some(), "{gc:?}");

    // a never saw c's edits: it recovers from the checkpoint (a replace).
    sync_all(&[&a]).await;
    let status = a.status().await.unwrap();
    assert!(status.kept_ops > 0, "{status:?}");
    assert_eq!(
        status.newer_schema,
        [NewerSchemaStatus {
            device: c.device().to_string(),
            schema_version: 2
        }]
    );
    drop(a);
    let a = world.device_v2("a");
    assert_eq!(field(&a, "albums", &album, "mood").await, "calm");
    assert_eq!(
        dump_as(&a, &BAE_SCHEMA_V2).await,
        dump_as(&c, &BAE_SCHEMA_V2).await
    );
}

/// Review finding 6: a version 2 device that lost batches to GC could not
/// recover from a version 1 device's checkpoint while it held rows of the
/// new table ("it lacks 1 rows of album_notes"): the checkpoint holds them
/// only as its writer's kept ops, which now explain them; the replace
/// takes them out and the kept ops bring them back, edits included.
#[tokio::test]
async fn review_a_version_2_device_recovering_from_a_version_1_checkpoint_keeps_the_new_column() {
    let (world, a, c, album) = mood_and_note_on_version_2("schema-evolution-replace-older").await;
    edit(&c, "album_notes", "n1", "body", "first pressing, 1959").await;
    sync_all(&[&c, &a]).await;
    edit(&a, "albums", &album, "title", "Retitled on a").await;
    a.sync().await.unwrap();
    a.checkpoint().await.unwrap();
    let gc = a
        .gc(i64::MAX / 2, std::time::Duration::ZERO, true)
        .await
        .unwrap();
    assert!(gc.checkpoint.is_some(), "{gc:?}");

    sync_all(&[&c]).await;
    assert_eq!(field(&c, "albums", &album, "title").await, "Retitled on a");
    assert_eq!(field(&c, "albums", &album, "mood").await, "calm");
    assert_eq!(
        field(&c, "album_notes", "n1", "body").await,
        "first pressing, 1959"
    );
    drop(a);
    let a = world.device_v2("a");
    sync_all(&[&a, &c]).await;
    assert_eq!(
        dump_as(&a, &BAE_SCHEMA_V2).await,
        dump_as(&c, &BAE_SCHEMA_V2).await
    );
}
