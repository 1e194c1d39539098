-- The example host's own first migration: bae's library schema, as bae-core's
-- migrations create it (a copy of fixtures/bae-library.sql, bae's reference
-- DDL). The sync engine never runs this: the host does, with sqlx, before it
-- opens an OpRecorder, which checks the tables against bae_oplog::BAE_SCHEMA.
-- Synced tables: artists, albums, album_discogs, album_musicbrainz,
-- album_artists, releases, tracks, track_artists, files (partially),
-- audio_formats, images. Local-only: storage_profiles, release_storage,
-- torrents, imports.

CREATE TABLE artists (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    sort_name TEXT,
    discogs_artist_id TEXT,
    musicbrainz_artist_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE albums (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    year INTEGER,
    bandcamp_album_id TEXT,
    cover_image_id TEXT,
    is_compilation INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE album_discogs (
    id TEXT PRIMARY KEY NOT NULL,
    album_id TEXT NOT NULL UNIQUE REFERENCES albums(id) ON DELETE CASCADE,
    discogs_master_id TEXT,
    discogs_release_id TEXT NOT NULL
);

CREATE TABLE album_musicbrainz (
    id TEXT PRIMARY KEY NOT NULL,
    album_id TEXT NOT NULL UNIQUE REFERENCES albums(id) ON DELETE CASCADE,
    musicbrainz_release_group_id TEXT NOT NULL,
    musicbrainz_release_id TEXT
);

CREATE TABLE album_artists (
    id TEXT PRIMARY KEY NOT NULL,
    album_id TEXT NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
    artist_id TEXT NOT NULL REFERENCES artists(id) ON DELETE CASCADE,
    position INTEGER NOT NULL DEFAULT 0,
    UNIQUE (album_id, artist_id)
);
CREATE INDEX idx_album_artists_artist ON album_artists(artist_id);

CREATE TABLE releases (
    id TEXT PRIMARY KEY NOT NULL,
    album_id TEXT NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
    release_name TEXT,
    year INTEGER,
    discogs_release_id TEXT,
    bandcamp_release_id TEXT,
    format TEXT,
    label TEXT,
    catalog_number TEXT,
    country TEXT,
    barcode TEXT,
    -- Local: where this device is in importing the release.
    import_status TEXT NOT NULL DEFAULT 'complete',
    private INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_releases_album ON releases(album_id);

CREATE TABLE tracks (
    id TEXT PRIMARY KEY NOT NULL,
    release_id TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    disc_number INTEGER,
    track_number INTEGER,
    duration_ms INTEGER,
    discogs_position TEXT,
    -- Local: where this device is in importing the track.
    import_status TEXT NOT NULL DEFAULT 'complete',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_tracks_release ON tracks(release_id);

CREATE TABLE track_artists (
    id TEXT PRIMARY KEY NOT NULL,
    track_id TEXT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    artist_id TEXT NOT NULL REFERENCES artists(id) ON DELETE CASCADE,
    position INTEGER NOT NULL DEFAULT 0,
    role TEXT,
    UNIQUE (track_id, artist_id)
);
CREATE INDEX idx_track_artists_artist ON track_artists(artist_id);

CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    release_id TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    original_filename TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    -- Cached copy of the first 24 bytes of the encrypted object (its base
    -- nonce), so range reads need not fetch it first.
    encryption_nonce BLOB,
    encryption_scheme TEXT,
    -- Local: where the file came from on this machine.
    source_path TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_files_release ON files(release_id);

CREATE TABLE audio_formats (
    id TEXT PRIMARY KEY NOT NULL,
    track_id TEXT NOT NULL UNIQUE REFERENCES tracks(id) ON DELETE CASCADE,
    file_id TEXT REFERENCES files(id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    flac_headers BLOB,
    needs_headers INTEGER NOT NULL DEFAULT 0,
    start_byte_offset INTEGER,
    end_byte_offset INTEGER,
    pregap_ms INTEGER,
    frame_offset_samples INTEGER,
    exact_sample_count INTEGER,
    sample_rate INTEGER NOT NULL,
    bits_per_sample INTEGER NOT NULL,
    seektable_json TEXT,
    audio_data_start INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_audio_formats_file ON audio_formats(file_id);

CREATE TABLE images (
    id TEXT PRIMARY KEY NOT NULL,
    release_id TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    is_cover INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_images_release ON images(release_id);

-- Local-only tables: never synced.

CREATE TABLE storage_profiles (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    location_path TEXT,
    bucket TEXT,
    region TEXT,
    endpoint TEXT,
    access_key TEXT,
    secret_key TEXT,
    encrypted INTEGER NOT NULL DEFAULT 0,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE release_storage (
    id TEXT PRIMARY KEY NOT NULL,
    release_id TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    storage_profile_id TEXT NOT NULL REFERENCES storage_profiles(id),
    created_at TEXT NOT NULL
);

CREATE TABLE torrents (
    id TEXT PRIMARY KEY NOT NULL,
    release_id TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    info_hash TEXT NOT NULL,
    magnet_link TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE imports (
    id TEXT PRIMARY KEY NOT NULL,
    release_id TEXT REFERENCES releases(id) ON DELETE SET NULL,
    status TEXT NOT NULL,
    error_message TEXT,
    created_at TEXT NOT NULL
);
