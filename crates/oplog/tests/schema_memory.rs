//! The engine remembers the sync schema a library last ran with and refuses
//! at open what batches cannot survive (docs/SCHEMA-EVOLUTION.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bae_hlc::WallClock;
use bae_oplog::fixture::{create_bae_library, upgrade_to_v2, BAE_SCHEMA_V2};
use bae_oplog::{OpRecorder, OplogError, SchemaError, SyncSchema, TableSchema, BAE_SCHEMA};
use rusqlite::Connection;
use std::path::Path;
use std::sync::LazyLock;

fn open(path: &Path, schema: &'static SyncSchema) -> Result<OpRecorder, OplogError> {
    OpRecorder::with_connection(Connection::open(path).unwrap(), WallClock::System, schema)
}

fn schema_error(r: Result<OpRecorder, OplogError>) -> SchemaError {
    match r {
        Err(OplogError::Schema(e)) => e,
        Err(e) => panic!("not a schema error: {e}"),
        Ok(_) => panic!("opened"),
    }
}

fn bae_library(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("library.db");
    create_bae_library(&Connection::open(&path).unwrap()).unwrap();
    path
}

#[test]
fn an_upgrade_with_a_newer_version_opens_and_a_downgrade_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = bae_library(&dir);
    drop(open(&path, &BAE_SCHEMA).unwrap());
    drop(open(&path, &BAE_SCHEMA).unwrap());
    upgrade_to_v2(&Connection::open(&path).unwrap()).unwrap();
    drop(open(&path, &BAE_SCHEMA_V2).unwrap());
    let err = schema_error(open(&path, &BAE_SCHEMA));
    assert_eq!(
        err,
        SchemaError::Downgraded {
            library: 2,
            schema: 1
        }
    );
    assert!(err.to_string().contains("update bae"), "{err}");
}

/// [`BAE_SCHEMA_V2`]'s tables at version 1.
static V2_UNBUMPED: LazyLock<SyncSchema> =
    LazyLock::new(|| SyncSchema::new(BAE_SCHEMA_V2.tables(), Some("images")));

#[test]
fn a_schema_that_grew_without_a_new_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = bae_library(&dir);
    drop(open(&path, &BAE_SCHEMA).unwrap());
    upgrade_to_v2(&Connection::open(&path).unwrap()).unwrap();
    let err = schema_error(open(&path, &V2_UNBUMPED));
    assert_eq!(
        err,
        SchemaError::VersionNotBumped {
            table: "albums".into(),
            column: ".mood".into(),
            version: 1
        }
    );
}

static NOTES_V1: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "notes",
        columns: &["title", "body"],
        parents: &[],
        unique: &[],
    }],
    None,
);
static NOTES_SWAPPED: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "notes",
        columns: &["body", "title"],
        parents: &[],
        unique: &[],
    }],
    None,
)
.with_version(2);
static NOTES_REMOVED: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "notes",
        columns: &["title"],
        parents: &[],
        unique: &[],
    }],
    None,
)
.with_version(2);
static NOTES_GONE: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "tags",
        columns: &[],
        parents: &[],
        unique: &[],
    }],
    None,
)
.with_version(2);

fn notes_library(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("notes.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, body TEXT);
             CREATE TABLE tags (id TEXT PRIMARY KEY);",
        )
        .unwrap();
    drop(open(&path, &NOTES_V1).unwrap());
    path
}

#[test]
fn a_reordered_or_removed_column_is_refused_and_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = notes_library(&dir);
    let err = schema_error(open(&path, &NOTES_SWAPPED));
    assert_eq!(
        err,
        SchemaError::ColumnChanged {
            table: "notes".into(),
            position: 0,
            was: "title".into(),
            now: "body".into()
        }
    );
    assert!(err
        .to_string()
        .contains("never renamed, removed or reordered"));
    let err = schema_error(open(&path, &NOTES_REMOVED));
    assert!(
        matches!(&err, SchemaError::ColumnChanged { position: 1, was, now, .. } if was == "body" && now == "(none)"),
        "{err}"
    );
    let err = schema_error(open(&path, &NOTES_GONE));
    assert_eq!(
        err,
        SchemaError::TableRemoved {
            table: "notes".into()
        }
    );
    // Nothing was recorded by the refused opens.
    drop(open(&path, &NOTES_V1).unwrap());
}

#[test]
fn a_type_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = notes_library(&dir);
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE notes RENAME TO old_notes;
             CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, body BLOB);
             INSERT INTO notes SELECT * FROM old_notes; DROP TABLE old_notes;",
        )
        .unwrap();
    let err = schema_error(open(&path, &NOTES_V1));
    assert_eq!(
        err,
        SchemaError::ColumnTypeChanged {
            table: "notes".into(),
            column: "body".into(),
            was: "TEXT".into(),
            now: "BLOB".into()
        }
    );
}

#[test]
fn a_schema_of_version_0_is_inconsistent() {
    static ZERO: SyncSchema = SyncSchema::new(&[], None).with_version(0);
    let dir = tempfile::tempdir().unwrap();
    let path = bae_library(&dir);
    assert!(matches!(
        schema_error(open(&path, &ZERO)),
        SchemaError::Inconsistent { .. }
    ));
}

static TAGS_BARE: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "tags",
        columns: &[],
        parents: &[],
        unique: &[],
    }],
    None,
);
static TAGS_LABELLED: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "tags",
        columns: &["label"],
        parents: &[],
        unique: &[],
    }],
    None,
);

/// Review finding 2: a table that synced no column yet grew one without a
/// new version and opened: a peer on the same version refuses its batches
/// naming the column (unknown names from a writer not newer) and stalls.
#[test]
fn review_a_table_without_synced_columns_that_grew_one_needs_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tags.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE tags (id TEXT PRIMARY KEY, label TEXT);")
        .unwrap();
    drop(open(&path, &TAGS_BARE).unwrap());
    let err = schema_error(open(&path, &TAGS_LABELLED));
    assert_eq!(
        err,
        SchemaError::VersionNotBumped {
            table: "tags".into(),
            column: ".label".into(),
            version: 1
        }
    );
}

static NOTES_UNIQUE_TITLE: SyncSchema = SyncSchema::new(
    &[TableSchema {
        name: "notes",
        columns: &["title", "body"],
        parents: &[],
        unique: &[&["title"]],
    }],
    None,
)
.with_version(2);

/// Review finding 4: a `UNIQUE` group (or foreign key) added to a table
/// that already synced opened: devices on the new version hide one of two
/// rows sharing the values, older ones show both, and an older device's
/// rows are never settled again when it updates.
#[test]
fn review_a_unique_group_added_to_a_table_that_synced_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = notes_library(&dir);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE UNIQUE INDEX notes_title ON notes (title);")
        .unwrap();
    let err = schema_error(open(&path, &NOTES_UNIQUE_TITLE));
    assert!(
        matches!(&err, SchemaError::ConstraintsChanged { table, .. } if table == "notes"),
        "{err}"
    );
    assert!(err.to_string().contains("unique (title)"), "{err}");
}
