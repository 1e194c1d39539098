//! Test helpers: simulated devices, each with its own in-memory library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use bae_hlc::{DeviceId, Stamp, Timestamp, WallClock};
use bae_merge::{apply_batch, apply_pull, ApplyStats, MergeError, PullReport};
use bae_oplog::fixture::{library_on, AlbumImport, Library};
use bae_oplog::{
    batch_ops, canonical_dump, last_batch, Batch, BatchSeq, Op, OpKind, Value, BAE_SCHEMA,
};
use rusqlite::{Connection, OptionalExtension};

/// Wall time every device starts at.
pub const T0: i64 = 1_800_000_000_000;

/// One device: a library and the wall clock it runs on.
pub struct Device {
    pub lib: Library,
    pub wall: i64,
}

impl Device {
    /// A fresh device at wall time `T0`.
    pub fn new() -> Self {
        Self::at(T0)
    }

    /// A fresh device at wall time `wall`.
    pub fn at(wall: i64) -> Self {
        let mut rec = library_on(
            Connection::open_in_memory().unwrap(),
            WallClock::Manual(wall),
        )
        .unwrap();
        bae_merge::migrate(&mut rec).unwrap();
        Device {
            lib: Library::new(rec),
            wall,
        }
    }

    pub fn id(&mut self) -> DeviceId {
        self.lib.recorder().device()
    }

    /// Moves this device's wall clock.
    pub fn tick(&mut self, ms: i64) {
        self.wall += ms;
        self.lib.recorder().clock().set_wall_millis(self.wall);
    }

    /// One of this device's recorded batches, as it would be sent.
    pub fn batch(&mut self, seq: BatchSeq) -> Batch {
        let (conn, _, device) = self.lib.recorder().sync_parts();
        Batch {
            schema_version: BAE_SCHEMA.version(),
            device,
            seq,
            prev: None,
            ops: batch_ops(conn, &BAE_SCHEMA, seq).unwrap(),
        }
    }

    /// Every batch this device has recorded, oldest first.
    pub fn batches(&mut self) -> Vec<Batch> {
        let last = {
            let (conn, _, _) = self.lib.recorder().sync_parts();
            last_batch(conn).unwrap()
        };
        (1..=last.0).map(|s| self.batch(BatchSeq(s))).collect()
    }

    /// The newest batch this device recorded.
    pub fn last(&mut self) -> Batch {
        let last = {
            let (conn, _, _) = self.lib.recorder().sync_parts();
            last_batch(conn).unwrap()
        };
        self.batch(last)
    }

    pub fn apply(&mut self, batch: &Batch) -> Result<ApplyStats, MergeError> {
        apply_batch(self.lib.recorder(), batch)
    }

    pub fn pull(&mut self, batches: Vec<Batch>) -> PullReport {
        apply_pull(self.lib.recorder(), batches).unwrap()
    }

    /// Pulls every batch of `other`, expecting all to apply.
    pub fn pull_all_from(&mut self, other: &mut Device) {
        let report = self.pull(other.batches());
        assert!(report.held.is_empty(), "held: {:?}", report.held);
    }

    pub fn import(&mut self, album: &AlbumImport) -> Batch {
        self.lib.import_album(album).unwrap().unwrap();
        self.last()
    }

    pub fn edit(&mut self, table: &str, id: &str, fields: &[(&str, Value)]) -> Batch {
        self.lib.edit(table, id, fields).unwrap().unwrap();
        self.last()
    }

    pub fn delete(&mut self, table: &str, id: &str) -> Batch {
        self.lib.delete(table, id).unwrap().unwrap();
        self.last()
    }

    pub fn dump(&mut self) -> String {
        let (conn, _, _) = self.lib.recorder().sync_parts();
        canonical_dump(conn, &BAE_SCHEMA).unwrap()
    }

    pub fn conn(&mut self) -> &Connection {
        self.lib.recorder().sync_parts().0
    }

    pub fn exists(&mut self, table: &str, id: &str) -> bool {
        self.conn()
            .query_row(
                &format!("SELECT 1 FROM {table} WHERE id = ?1"),
                [id],
                |_| Ok(()),
            )
            .optional()
            .unwrap()
            .is_some()
    }

    /// One column of a row, if the row is present.
    pub fn get(&mut self, table: &str, id: &str, column: &str) -> Option<Value> {
        self.conn()
            .query_row(
                &format!("SELECT {column} FROM {table} WHERE id = ?1"),
                [id],
                |r| Ok(Value::from(r.get_ref(0)?)),
            )
            .optional()
            .unwrap()
    }

    pub fn count(&mut self, table: &str) -> i64 {
        self.conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

/// A hand-made op at a given wall millisecond.
pub fn op(ms: i64, table: &str, row_id: &str, kind: OpKind, fields: &[(&str, Value)]) -> Op {
    Op {
        hlc: Timestamp::from_unix_millis(ms).unwrap(),
        table: table.into(),
        row_id: row_id.into(),
        kind,
        fields: fields
            .iter()
            .map(|(c, v)| ((*c).to_owned(), v.clone()))
            .collect(),
    }
}

/// A hand-made batch.
pub fn batch(device: DeviceId, seq: u64, ops: Vec<Op>) -> Batch {
    Batch {
        schema_version: BAE_SCHEMA.version(),
        device,
        seq: BatchSeq(seq),
        prev: None,
        ops,
    }
}

pub fn album_fields(title: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("title", title.into()),
        ("year", Value::Integer(1999)),
        ("bandcamp_album_id", Value::Null),
        ("cover_image_id", Value::Null),
        ("is_compilation", Value::Integer(0)),
        ("created_at", "c".into()),
        ("updated_at", "u".into()),
    ]
}

pub fn release_fields(album_id: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("album_id", album_id.into()),
        ("release_name", Value::Null),
        ("year", Value::Integer(1999)),
        ("discogs_release_id", Value::Null),
        ("bandcamp_release_id", Value::Null),
        ("format", "CD".into()),
        ("label", Value::Null),
        ("catalog_number", Value::Null),
        ("country", Value::Null),
        ("barcode", Value::Null),
        ("private", Value::Integer(0)),
        ("created_at", "c".into()),
        ("updated_at", "u".into()),
    ]
}

pub fn track_fields(release_id: &str, title: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("release_id", release_id.into()),
        ("title", title.into()),
        ("disc_number", Value::Integer(1)),
        ("track_number", Value::Integer(1)),
        ("duration_ms", Value::Integer(1000)),
        ("discogs_position", Value::Null),
        ("created_at", "c".into()),
        ("updated_at", "u".into()),
    ]
}

pub fn file_fields(release_id: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("release_id", release_id.into()),
        ("original_filename", "a.flac".into()),
        ("file_size", Value::Integer(10)),
        ("content_type", "audio/flac".into()),
        ("encryption_nonce", Value::Null),
        ("encryption_scheme", Value::Null),
        ("created_at", "c".into()),
    ]
}

pub fn audio_format_fields(track_id: &str, file_id: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("track_id", track_id.into()),
        ("file_id", file_id.into()),
        ("content_type", "audio/flac".into()),
        ("flac_headers", Value::Null),
        ("needs_headers", Value::Integer(0)),
        ("start_byte_offset", Value::Null),
        ("end_byte_offset", Value::Null),
        ("pregap_ms", Value::Null),
        ("frame_offset_samples", Value::Null),
        ("exact_sample_count", Value::Null),
        ("sample_rate", Value::Integer(44_100)),
        ("bits_per_sample", Value::Integer(16)),
        ("seektable_json", Value::Null),
        ("audio_data_start", Value::Null),
        ("created_at", "c".into()),
    ]
}

/// A stamp for assertions.
pub fn stamp(ms: i64, device: DeviceId) -> Stamp {
    Stamp::new(Timestamp::from_unix_millis(ms).unwrap(), device)
}
