//! The host's write layer, as bae-core's `LibraryManager` becomes with sync:
//! `LibraryManager -> OpRecorder -> Database`. Every write is one recorded
//! transaction: the rows and the ops that describe them commit together,
//! so a crash keeps both or neither. Reads stay on the host's sqlx pool
//! (`database.rs`); writes to synced tables must not, or they would never
//! reach another device. (Code that holds the recorder can also read on its
//! connection with `OpRecorder::database()`, which refuses any statement
//! that writes.)

use crate::BoxError;
use bae_oplog::{OpRecorder, OplogError, Recording, Value, BAE_SCHEMA};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A track to import.
#[derive(Clone, Debug)]
pub struct NewTrack {
    /// Title.
    pub title: String,
    /// Track number on disc 1.
    pub number: i64,
    /// Length in milliseconds.
    pub duration_ms: i64,
}

/// An album as an import hands it over: one artist, one release, its
/// tracks (one FLAC file each) and a cover image.
#[derive(Clone, Debug)]
pub struct NewAlbum {
    /// The album's title.
    pub title: String,
    /// The year it came out.
    pub year: i64,
    /// The credited artist's name.
    pub artist: String,
    /// The tracks, in order.
    pub tracks: Vec<NewTrack>,
    /// The cover's image id: the name of its file in the images directory
    /// (the sync service moves the bytes under this id).
    pub cover_image_id: String,
    /// The cover's size in bytes.
    pub cover_size: i64,
    /// Where the audio came from on this device (local-only).
    pub source_dir: String,
}

/// The ids of what [`LibraryManager::insert_album_with_release_and_tracks`]
/// wrote.
#[derive(Clone, Debug)]
pub struct ImportedAlbum {
    /// The album.
    pub album_id: String,
    /// Its release.
    pub release_id: String,
    /// Its tracks, in order.
    pub track_ids: Vec<String>,
    /// The track files, in track order.
    pub file_ids: Vec<String>,
    /// The cover image.
    pub cover_image_id: String,
}

/// bae-core's write API over an [`OpRecorder`]. The recorder is blocking
/// (rusqlite) and bae-core is async, so every write runs on a blocking
/// thread; the mutex orders this host's writes, as one sqlx write
/// connection would.
#[derive(Clone)]
pub struct LibraryManager {
    recorder: Arc<Mutex<OpRecorder>>,
}

impl LibraryManager {
    /// Opens the host's recorder on its library. The host's migrations must
    /// have run: `OpRecorder::open` checks bae's tables against
    /// [`BAE_SCHEMA`] and fails, naming the first missing table or column,
    /// if they disagree. It creates the engine's own tables, never the
    /// host's.
    pub fn open(library: &Path) -> Result<Self, BoxError> {
        let recorder = OpRecorder::open(library, &BAE_SCHEMA)?;
        Ok(LibraryManager {
            recorder: Arc::new(Mutex::new(recorder)),
        })
    }

    /// Runs `write` in one recorded transaction on a blocking thread and
    /// commits it. Returning an error (or panicking) rolls back the rows and
    /// their ops together.
    async fn write<T, F>(&self, write: F) -> Result<T, BoxError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Recording<'_>) -> Result<T, OplogError> + Send + 'static,
    {
        let recorder = Arc::clone(&self.recorder);
        tokio::task::spawn_blocking(move || {
            let mut recorder = recorder
                .lock()
                .map_err(|_| "the recorder's lock is poisoned")?;
            let mut tx = recorder.transaction()?;
            let out = write(&mut tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await?
    }

    /// bae's import: the artist, album, release, tracks with their credits,
    /// files and audio formats, and the cover, in one transaction (one
    /// batch for the other devices). Local-only columns (`import_status`,
    /// `source_path`) are written like any other; the recorder leaves them
    /// out of the ops.
    pub async fn insert_album_with_release_and_tracks(
        &self,
        album: NewAlbum,
    ) -> Result<ImportedAlbum, BoxError> {
        self.write(move |tx| {
            let now = Value::from(now());
            let artist_id = new_id();
            let album_id = new_id();
            let release_id = new_id();
            tx.insert(
                "artists",
                &artist_id,
                &[
                    ("name", album.artist.as_str().into()),
                    ("created_at", now.clone()),
                    ("updated_at", now.clone()),
                ],
            )?;
            tx.insert(
                "albums",
                &album_id,
                &[
                    ("title", album.title.as_str().into()),
                    ("year", album.year.into()),
                    ("cover_image_id", album.cover_image_id.as_str().into()),
                    ("created_at", now.clone()),
                    ("updated_at", now.clone()),
                ],
            )?;
            tx.insert(
                "album_artists",
                &new_id(),
                &[
                    ("album_id", album_id.as_str().into()),
                    ("artist_id", artist_id.as_str().into()),
                    ("position", Value::Integer(0)),
                ],
            )?;
            tx.insert(
                "releases",
                &release_id,
                &[
                    ("album_id", album_id.as_str().into()),
                    ("year", album.year.into()),
                    ("format", "Digital".into()),
                    // Local: this device is still importing the release.
                    ("import_status", "importing".into()),
                    ("created_at", now.clone()),
                    ("updated_at", now.clone()),
                ],
            )?;
            let mut imported = ImportedAlbum {
                album_id,
                release_id,
                track_ids: Vec::new(),
                file_ids: Vec::new(),
                cover_image_id: album.cover_image_id.clone(),
            };
            for track in &album.tracks {
                let (track_id, file_id) =
                    insert_track(tx, &imported.release_id, &artist_id, track, &album, &now)?;
                imported.track_ids.push(track_id);
                imported.file_ids.push(file_id);
            }
            tx.insert(
                "images",
                &album.cover_image_id,
                &[
                    ("release_id", imported.release_id.as_str().into()),
                    ("filename", "cover.jpg".into()),
                    ("content_type", "image/jpeg".into()),
                    ("file_size", album.cover_size.into()),
                    ("is_cover", Value::Integer(1)),
                    ("source", "local".into()),
                    ("created_at", now.clone()),
                ],
            )?;
            Ok(imported)
        })
        .await
    }

    /// bae's `mark_release_complete`: an update of a local-only column.
    /// It goes through the recorder like every write, which records no op
    /// for it (other devices keep their own import status).
    pub async fn mark_release_complete(&self, release_id: &str) -> Result<(), BoxError> {
        let release_id = release_id.to_owned();
        self.write(move |tx| {
            tx.update(
                "releases",
                &release_id,
                &[("import_status", "complete".into())],
            )
        })
        .await
    }

    /// Renames an album (an update op of `title` and `updated_at`).
    pub async fn rename_album(&self, album_id: &str, title: &str) -> Result<(), BoxError> {
        let (album_id, title) = (album_id.to_owned(), title.to_owned());
        self.write(move |tx| {
            tx.update(
                "albums",
                &album_id,
                &[("title", title.into()), ("updated_at", now().into())],
            )
        })
        .await
    }

    /// Renames a track.
    pub async fn rename_track(&self, track_id: &str, title: &str) -> Result<(), BoxError> {
        let (track_id, title) = (track_id.to_owned(), title.to_owned());
        self.write(move |tx| {
            tx.update(
                "tracks",
                &track_id,
                &[("title", title.into()), ("updated_at", now().into())],
            )
        })
        .await
    }

    /// Deletes a track. The recorder records a delete op for the track and
    /// for every synced row that `ON DELETE CASCADE` removes with it (its
    /// audio format and artist credits), so other devices remove the same
    /// rows.
    pub async fn delete_track(&self, track_id: &str) -> Result<(), BoxError> {
        let track_id = track_id.to_owned();
        self.write(move |tx| tx.delete("tracks", &track_id)).await
    }
}

/// One track of an import: the track, its artist credit, its file and its
/// audio format. Returns the track's and the file's ids.
fn insert_track(
    tx: &mut Recording<'_>,
    release_id: &str,
    artist_id: &str,
    track: &NewTrack,
    album: &NewAlbum,
    now: &Value,
) -> Result<(String, String), OplogError> {
    let track_id = new_id();
    let file_id = new_id();
    let filename = format!("{:02} {}.flac", track.number, track.title);
    tx.insert(
        "tracks",
        &track_id,
        &[
            ("release_id", release_id.into()),
            ("title", track.title.as_str().into()),
            ("disc_number", Value::Integer(1)),
            ("track_number", track.number.into()),
            ("duration_ms", track.duration_ms.into()),
            ("import_status", "complete".into()),
            ("created_at", now.clone()),
            ("updated_at", now.clone()),
        ],
    )?;
    tx.insert(
        "track_artists",
        &new_id(),
        &[
            ("track_id", track_id.as_str().into()),
            ("artist_id", artist_id.into()),
            ("position", Value::Integer(0)),
        ],
    )?;
    tx.insert(
        "files",
        &file_id,
        &[
            ("release_id", release_id.into()),
            ("original_filename", filename.as_str().into()),
            ("file_size", (track.duration_ms * 100).into()),
            ("content_type", "audio/flac".into()),
            // Local: where the file is on this machine; never synced.
            (
                "source_path",
                format!("{}/{filename}", album.source_dir).into(),
            ),
            ("created_at", now.clone()),
        ],
    )?;
    tx.insert(
        "audio_formats",
        &new_id(),
        &[
            ("track_id", track_id.as_str().into()),
            ("file_id", file_id.as_str().into()),
            ("content_type", "audio/flac".into()),
            ("flac_headers", b"fLaC\0\0\0\x22".to_vec().into()),
            ("sample_rate", Value::Integer(44_100)),
            ("bits_per_sample", Value::Integer(16)),
            ("created_at", now.clone()),
        ],
    )?;
    Ok((track_id, file_id))
}

/// A new row id, as bae makes them (a random UUID).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The time now as RFC 3339 text, as bae stores `created_at`/`updated_at`.
fn now() -> String {
    use time::format_description::well_known::Rfc3339;
    // Formatting the current UTC time as RFC 3339 cannot fail for years
    // 0..=9999; an empty string would only mean a wrong `updated_at`.
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
