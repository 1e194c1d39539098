//! `bae-sync` (bae's schema, version 1) sharing a bucket with a device on
//! version 2: it keeps syncing, keeps what it cannot show, and says so in
//! `status` (docs/SCHEMA-EVOLUTION.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bin;
#[path = "../../sync-service/tests/common/mod.rs"]
mod common;

use bin::*;
use common::*;

#[test]
fn status_names_a_device_on_a_newer_schema_and_nothing_it_wrote_is_lost() {
    let w = World::new(Bucket::Local, "cli-schema");
    let laptop = path(w.library("laptop"));
    ok(&w, &["demo-import", "--library", &laptop, "--albums", "2"]);
    ok(&w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    ok(
        &w,
        &[
            "key",
            "export",
            "--library",
            &laptop,
            "--out",
            &path(w.key_file()),
        ],
    );
    let album = bae_oplog::fixture::demo_album(1, 0, 12)
        .album_id()
        .unwrap()
        .to_owned();

    // A tablet whose bae is newer: it writes the new column of albums.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tablet = w.device_v2("tablet");
    runtime.block_on(async {
        tablet.sync().await.unwrap();
        edit(&tablet, "albums", &album, "mood", "calm").await;
        edit(&tablet, "albums", &album, "title", "Titled on the tablet").await;
        tablet.sync().await.unwrap();
    });

    let out = ok(&w, &["sync", "--library", &laptop]);
    assert!(!out.contains("rejected"), "{out}");
    let status = ok(&w, &["status", "--library", &laptop]);
    assert!(
        status.contains(&format!(
            "device {} writes schema 2, this device has 1: update to see everything",
            tablet.device()
        )),
        "{status}"
    );
    assert!(
        status.contains("kept for after the update: 1 op"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&w, &["status", "--library", &laptop, "--json"])).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["newer_schema"][0]["schema_version"], 2);
    assert_eq!(json["kept_ops"], 1);
    assert_eq!(json["problems"].as_array().unwrap().len(), 0);

    // What the laptop knows applied; the rest waits, not lost: once the
    // laptop's host updates, it is there.
    let dump = ok(&w, &["dump", "--library", &laptop]);
    assert!(dump.contains("Titled on the tablet"), "{dump}");
    assert_eq!(
        dump,
        runtime.block_on(dump_as(&tablet, &bae_oplog::BAE_SCHEMA))
    );
    let upgraded = w.device_v2("laptop");
    assert_eq!(
        runtime.block_on(field(&upgraded, "albums", &album, "mood")),
        "calm"
    );
    assert_eq!(
        runtime.block_on(dump_as(&upgraded, &bae_oplog::fixture::BAE_SCHEMA_V2)),
        runtime.block_on(dump_as(&tablet, &bae_oplog::fixture::BAE_SCHEMA_V2))
    );
}

#[test]
fn a_library_a_newer_bae_opened_is_refused_by_an_older_one_by_name() {
    let w = World::new(Bucket::Local, "cli-schema-downgrade");
    let laptop = path(w.library("laptop"));
    ok(&w, &["demo-import", "--library", &laptop, "--albums", "1"]);
    ok(&w, &["init", "--library", &laptop, "--bucket", &w.bucket]);
    ok(
        &w,
        &[
            "key",
            "export",
            "--library",
            &laptop,
            "--out",
            &path(w.key_file()),
        ],
    );
    let before = ok(&w, &["dump", "--library", &laptop]);
    drop(w.device_v2("laptop"));
    let out = run(&w, &["status", "--library", &laptop]);
    let err = failed(out, &["status"]);
    assert!(
        err.contains("this library last ran with sync schema version 2, newer than this build's 1; update bae"),
        "{err}"
    );
    // Nothing was changed by the refusal: the newer bae still opens it,
    // with every row.
    let again = w.device_v2("laptop");
    let rows = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dump_as(&again, &bae_oplog::BAE_SCHEMA));
    assert_eq!(rows, before);
}
