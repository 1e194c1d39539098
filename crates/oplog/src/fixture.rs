//! Test and demo fixtures (feature `fixture`; not for hosts): bae's
//! reference library schema (`fixtures/bae-library.sql`, the DDL bae's own
//! migrations create, which the engine never runs itself), a bae-shaped
//! write API over the recorder like bae's LibraryManager (import an album
//! with its release, tracks, files and audio formats in one transaction;
//! edit fields; delete a release or an album with its cascade), and
//! deterministic demo albums.

use crate::error::OplogError;
use crate::op::{BatchSeq, Value};
use crate::recorder::{OpRecorder, Recording};
use crate::schema::{SyncSchema, TableSchema, BAE_SCHEMA};
use bae_hlc::WallClock;
use rusqlite::Connection;
use std::path::Path;
use std::sync::LazyLock;

mod edit;
pub use edit::EditError;

/// bae's library schema at the time of the sync roadmap, as bae's own
/// migrations create it (the synced tables of [`BAE_SCHEMA`] and bae's
/// local-only ones).
pub const BAE_LIBRARY_SQL: &str = include_str!("../../../fixtures/bae-library.sql");

/// Creates bae's library tables unless the database already has them, and
/// adds the columns added since to a library made before them (as bae's
/// migrations would have).
pub fn create_bae_library(conn: &Connection) -> Result<(), OplogError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'albums')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(BAE_LIBRARY_SQL)?;
        tx.commit()?;
    } else if !has_column(conn, "releases", "key_epoch")? {
        // Phase 3: the key epoch a release's key was derived under. Checked
        // again inside a write transaction: another connection may be
        // adding it at the same moment.
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        if !has_column(&tx, "releases", "key_epoch")? {
            tx.execute_batch("ALTER TABLE releases ADD COLUMN key_epoch INTEGER")?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Whether `table` has a column called `column`.
fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, OplogError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
        [table, column],
        |r| r.get(0),
    )?)
}

/// Opens (creating if needed) a bae library at `path` with bae's schema
/// and the system clock: what bae's startup plus
/// [`OpRecorder::open`] do.
pub fn open_library(path: &Path) -> Result<OpRecorder, OplogError> {
    let conn = Connection::open(path)?;
    create_bae_library(&conn)?;
    OpRecorder::with_connection(conn, WallClock::System, &BAE_SCHEMA)
}

/// A bae library on `conn` (created if needed) with the given clock.
pub fn library_on(conn: Connection, wall: WallClock) -> Result<OpRecorder, OplogError> {
    create_bae_library(&conn)?;
    OpRecorder::with_connection(conn, wall, &BAE_SCHEMA)
}

/// [`library_on`] for a library whose device id, if it has none yet, is
/// `device`: a deterministic simulation replays a seed with the same ids.
pub fn library_as(
    conn: Connection,
    wall: WallClock,
    device: bae_hlc::DeviceId,
) -> Result<OpRecorder, OplogError> {
    create_bae_library(&conn)?;
    OpRecorder::with_connection_as(conn, wall, &BAE_SCHEMA, || device)
}

/// A version 2 of [`BAE_SCHEMA`] for the schema-evolution tests: the same
/// tables, `albums.mood` appended, and a new table `album_notes` (a child of
/// `albums`). [`upgrade_to_v2`] is the host migration that goes with it.
pub static BAE_SCHEMA_V2: LazyLock<SyncSchema> = LazyLock::new(|| {
    let mut tables = BAE_SCHEMA.tables().to_vec();
    for t in &mut tables {
        if t.name == "albums" {
            t.columns = ALBUMS_V2_COLUMNS;
        }
    }
    tables.push(TableSchema {
        name: "album_notes",
        columns: &["album_id", "body", "created_at"],
        parents: &[("album_id", "albums")],
        unique: &[],
    });
    // Once per process: a schema borrows its tables for the program's life.
    SyncSchema::new(Box::leak(tables.into_boxed_slice()), Some("images")).with_version(2)
});

/// `albums` under [`BAE_SCHEMA_V2`]: version 1's columns, `mood` appended.
const ALBUMS_V2_COLUMNS: &[&str] = &[
    "title",
    "year",
    "bandcamp_album_id",
    "cover_image_id",
    "is_compilation",
    "created_at",
    "updated_at",
    "mood",
];

/// What a host's migration to [`BAE_SCHEMA_V2`] runs: a column with a
/// constant default, and a table after its parent.
pub const BAE_V2_MIGRATION_SQL: &str = "
    ALTER TABLE albums ADD COLUMN mood TEXT;
    CREATE TABLE album_notes (
        id TEXT PRIMARY KEY,
        album_id TEXT NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
        body TEXT,
        created_at INTEGER NOT NULL DEFAULT 0
    );";

/// Runs [`BAE_V2_MIGRATION_SQL`] on a bae library unless it ran already.
pub fn upgrade_to_v2(conn: &Connection) -> Result<(), OplogError> {
    if !has_column(conn, "albums", "mood")? {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(BAE_V2_MIGRATION_SQL)?;
        tx.commit()?;
    }
    Ok(())
}

/// [`library_as`] on version 2: the library is created, migrated to
/// version 2 and opened with [`BAE_SCHEMA_V2`].
pub fn library_v2_as(
    conn: Connection,
    wall: WallClock,
    device: bae_hlc::DeviceId,
) -> Result<OpRecorder, OplogError> {
    create_bae_library(&conn)?;
    upgrade_to_v2(&conn)?;
    OpRecorder::with_connection_as(conn, wall, &BAE_SCHEMA_V2, || device)
}

/// A row to insert: table, id, fields (synced and local-only alike).
#[derive(Clone, Debug, PartialEq)]
pub struct NewRow {
    /// Table.
    pub table: &'static str,
    /// Row id.
    pub id: String,
    /// Fields.
    pub fields: Vec<(&'static str, Value)>,
}

/// One album as bae imports it: shared artists (inserted when absent) and the
/// album's own rows in bae's write order (album, album_discogs /
/// album_musicbrainz, album_artists, release, tracks, track_artists, files,
/// audio_formats, images), which respects foreign keys.
#[derive(Clone, Debug, PartialEq)]
pub struct AlbumImport {
    /// Artists the album credits.
    pub artists: Vec<NewRow>,
    /// The album's rows.
    pub rows: Vec<NewRow>,
}

impl AlbumImport {
    /// The album's id.
    pub fn album_id(&self) -> Option<&str> {
        self.rows
            .iter()
            .find(|r| r.table == "albums")
            .map(|r| r.id.as_str())
    }

    /// Writes the album into a recorded transaction: its artists where
    /// absent, then its rows in order.
    pub fn write(&self, tx: &mut Recording<'_>) -> Result<(), OplogError> {
        for artist in &self.artists {
            let exists = tx
                .query_row("SELECT 1 FROM artists WHERE id = ?1", [&artist.id], |_| {
                    Ok(())
                })?
                .is_some();
            if !exists {
                tx.insert(artist.table, &artist.id, &artist.fields)?;
            }
        }
        for row in &self.rows {
            tx.insert(row.table, &row.id, &row.fields)?;
        }
        Ok(())
    }

    /// The ids of rows in `table`.
    pub fn ids<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rows
            .iter()
            .filter(move |r| r.table == table)
            .map(|r| r.id.as_str())
    }
}

impl AlbumImport {
    /// The album with a real file behind each of its `files` rows: writes
    /// [`demo_file_bytes`] for each to `dir/{file_id}` and makes the row
    /// say so (its size, `source_path` there, no nonce or scheme: not
    /// uploaded yet), so the engine can upload and fetch release files.
    pub fn with_files_in(mut self, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for row in self.rows.iter_mut().filter(|r| r.table == "files") {
            let bytes = demo_file_bytes(&row.id);
            let path = dir.join(&row.id);
            std::fs::write(&path, &bytes)?;
            for (column, value) in row.fields.iter_mut() {
                match *column {
                    "file_size" => *value = Value::Integer(bytes.len() as i64),
                    "encryption_nonce" | "encryption_scheme" => *value = Value::Null,
                    "source_path" => *value = Value::Text(path.display().to_string()),
                    _ => {}
                }
            }
        }
        Ok(self)
    }
}

/// The content of a demo file: 100,000 to 350,000 bytes (a few 64 KiB
/// chunks, rarely a multiple of one), deterministic from its id (and so
/// from the demo seed).
pub fn demo_file_bytes(file_id: &str) -> Vec<u8> {
    let mut xof = blake3::Hasher::new()
        .update(b"bae demo file\0")
        .update(file_id.as_bytes())
        .finalize_xof();
    let mut len = [0u8; 8];
    xof.fill(&mut len);
    let len = 100_000 + (u64::from_le_bytes(len) % 250_000) as usize;
    let mut bytes = vec![0u8; len];
    xof.fill(&mut bytes);
    bytes
}

/// bae's library writes, each recorded as one batch.
pub struct Library {
    recorder: OpRecorder,
}

impl Library {
    /// The library over a recorder.
    pub fn new(recorder: OpRecorder) -> Self {
        Library { recorder }
    }

    /// The recorder (for reads and the sync layers).
    pub fn recorder(&mut self) -> &mut OpRecorder {
        &mut self.recorder
    }

    /// Imports an album in one transaction.
    pub fn import_album(&mut self, album: &AlbumImport) -> Result<Option<BatchSeq>, OplogError> {
        let mut tx = self.recorder.transaction()?;
        album.write(&mut tx)?;
        tx.commit()
    }

    /// Edits fields of one row.
    pub fn edit(
        &mut self,
        table: &str,
        row_id: &str,
        fields: &[(&str, Value)],
    ) -> Result<Option<BatchSeq>, OplogError> {
        let mut tx = self.recorder.transaction()?;
        tx.update(table, row_id, fields)?;
        tx.commit()
    }

    /// Deletes a row with everything depending on it.
    pub fn delete(&mut self, table: &str, row_id: &str) -> Result<Option<BatchSeq>, OplogError> {
        let mut tx = self.recorder.transaction()?;
        tx.delete(table, row_id)?;
        tx.commit()
    }

    /// Deletes a release with its tracks, files, audio formats and images.
    pub fn delete_release(&mut self, release_id: &str) -> Result<Option<BatchSeq>, OplogError> {
        self.delete("releases", release_id)
    }

    /// Deletes an album with its releases and everything under them.
    pub fn delete_album(&mut self, album_id: &str) -> Result<Option<BatchSeq>, OplogError> {
        self.delete("albums", album_id)
    }
}

/// A deterministic UUID-shaped id from a seed and labels.
pub fn demo_id(seed: u64, labels: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    for l in labels {
        h.update(l.as_bytes());
        h.update(&[0]);
    }
    let b = h.finalize();
    let x = hex::encode(&b.as_bytes()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// How many artists the demo generator draws from per seed.
const DEMO_ARTISTS: u64 = 64;

/// A deterministic bae-shaped album: `tracks` tracks, each with a FLAC file
/// and an audio format, credited artists from a shared pool, a cover image.
pub fn demo_album(seed: u64, index: u64, tracks: usize) -> AlbumImport {
    let n = index.to_string();
    let id = |labels: &[&str]| demo_id(seed, labels);
    let now = Value::from("2026-11-26T00:00:00Z");
    let artist_k = (index.wrapping_mul(2_654_435_761) ^ seed) % DEMO_ARTISTS;
    let artist_id = demo_id(seed, &["artist", &artist_k.to_string()]);
    let artists = vec![NewRow {
        table: "artists",
        id: artist_id.clone(),
        fields: vec![
            ("name", format!("Artist {artist_k}").into()),
            ("sort_name", format!("{artist_k:03}, Artist").into()),
            ("discogs_artist_id", Value::Null),
            (
                "musicbrainz_artist_id",
                id(&["mb-artist", &artist_k.to_string()]).into(),
            ),
            ("created_at", now.clone()),
            ("updated_at", now.clone()),
        ],
    }];
    let album = id(&["album", &n]);
    let release = id(&["release", &n]);
    let mut rows = vec![
        NewRow {
            table: "albums",
            id: album.clone(),
            fields: vec![
                ("title", format!("Album {index}").into()),
                ("year", Value::Integer(1950 + (index % 75) as i64)),
                ("bandcamp_album_id", Value::Null),
                ("cover_image_id", id(&["image", &n]).into()),
                ("is_compilation", Value::Integer(0)),
                ("created_at", now.clone()),
                ("updated_at", now.clone()),
            ],
        },
        NewRow {
            table: "album_discogs",
            id: id(&["album_discogs", &n]),
            fields: vec![
                ("album_id", album.clone().into()),
                ("discogs_master_id", format!("{}", 10_000 + index).into()),
                ("discogs_release_id", format!("{}", 90_000 + index).into()),
            ],
        },
        NewRow {
            table: "album_artists",
            // Join rows get ids derived from what they join, so two devices
            // crediting the same artist make the same row.
            id: format!("{album}:{artist_id}"),
            fields: vec![
                ("album_id", album.clone().into()),
                ("artist_id", artist_id.clone().into()),
                ("position", Value::Integer(0)),
            ],
        },
        NewRow {
            table: "releases",
            id: release.clone(),
            fields: vec![
                ("album_id", album.clone().into()),
                ("release_name", Value::Null),
                ("year", Value::Integer(1950 + (index % 75) as i64)),
                ("discogs_release_id", format!("{}", 90_000 + index).into()),
                ("bandcamp_release_id", Value::Null),
                ("format", "CD".into()),
                ("label", format!("Label {}", index % 17).into()),
                ("catalog_number", format!("CAT-{index:05}").into()),
                ("country", "US".into()),
                ("barcode", Value::Null),
                ("import_status", "complete".into()),
                ("private", Value::Integer(0)),
                ("created_at", now.clone()),
                ("updated_at", now.clone()),
            ],
        },
    ];
    let track_ids: Vec<String> = (0..tracks)
        .map(|t| id(&["track", &n, &t.to_string()]))
        .collect();
    let file_ids: Vec<String> = (0..tracks)
        .map(|t| id(&["file", &n, &t.to_string()]))
        .collect();
    for (t, track) in track_ids.iter().enumerate() {
        rows.push(NewRow {
            table: "tracks",
            id: track.clone(),
            fields: vec![
                ("release_id", release.clone().into()),
                ("title", format!("Track {} of album {index}", t + 1).into()),
                ("disc_number", Value::Integer(1)),
                ("track_number", Value::Integer(t as i64 + 1)),
                (
                    "duration_ms",
                    Value::Integer(180_000 + (t as i64 * 7_919) % 120_000),
                ),
                ("discogs_position", format!("{}", t + 1).into()),
                ("import_status", "complete".into()),
                ("created_at", now.clone()),
                ("updated_at", now.clone()),
            ],
        });
        rows.push(NewRow {
            table: "track_artists",
            id: format!("{track}:{artist_id}"),
            fields: vec![
                ("track_id", track.clone().into()),
                ("artist_id", artist_id.clone().into()),
                ("position", Value::Integer(0)),
                ("role", "main".into()),
            ],
        });
    }
    for (t, file) in file_ids.iter().enumerate() {
        rows.push(NewRow {
            table: "files",
            id: file.clone(),
            fields: vec![
                ("release_id", release.clone().into()),
                (
                    "original_filename",
                    format!("{:02} Track {}.flac", t + 1, t + 1).into(),
                ),
                ("file_size", Value::Integer(20_000_000 + t as i64 * 1_000)),
                ("content_type", "audio/flac".into()),
                (
                    "encryption_nonce",
                    Value::Blob(blake3::hash(file.as_bytes()).as_bytes()[..24].to_vec()),
                ),
                ("encryption_scheme", "bae-chunked-v1".into()),
                (
                    "source_path",
                    format!("/home/user/Music/{album}/{t:02}.flac").into(),
                ),
                ("created_at", now.clone()),
            ],
        });
    }
    for (t, track) in track_ids.iter().enumerate() {
        rows.push(NewRow {
            table: "audio_formats",
            id: format!("af:{track}"),
            fields: vec![
                ("track_id", track.clone().into()),
                ("file_id", file_ids[t].clone().into()),
                ("content_type", "audio/flac".into()),
                (
                    "flac_headers",
                    Value::Blob(vec![0x66, 0x4c, 0x61, 0x43, t as u8]),
                ),
                ("needs_headers", Value::Integer(0)),
                ("start_byte_offset", Value::Null),
                ("end_byte_offset", Value::Null),
                ("pregap_ms", Value::Null),
                ("frame_offset_samples", Value::Null),
                ("exact_sample_count", Value::Integer(7_938_000 + t as i64)),
                ("sample_rate", Value::Integer(44_100)),
                ("bits_per_sample", Value::Integer(16)),
                ("seektable_json", "[]".into()),
                ("audio_data_start", Value::Integer(8_192)),
                ("created_at", now.clone()),
            ],
        });
    }
    rows.push(NewRow {
        table: "images",
        id: id(&["image", &n]),
        fields: vec![
            ("release_id", release.into()),
            ("filename", "cover.jpg".into()),
            ("content_type", "image/jpeg".into()),
            ("file_size", Value::Integer(150_000)),
            ("width", Value::Integer(1200)),
            ("height", Value::Integer(1200)),
            ("is_cover", Value::Integer(1)),
            ("source", "discogs".into()),
            ("created_at", now),
        ],
    });
    AlbumImport { artists, rows }
}
