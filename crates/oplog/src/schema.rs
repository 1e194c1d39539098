//! The sync schema: which tables and columns sync, as data.
//!
//! Every synced table has a `TEXT` primary key `id`. Columns not listed here
//! (and tables not listed) stay on the device: a source path, import status,
//! storage profiles and their credentials never appear in an op.

/// One synced table.
#[derive(Debug)]
pub struct TableSchema {
    /// Table name.
    pub name: &'static str,
    /// Columns that sync, in the table's order (the `id` column excluded: it is
    /// the op's row id). `op_log` payloads name columns by their index here,
    /// so new columns are only ever appended.
    pub columns: &'static [&'static str],
    /// Foreign keys to other synced tables: (column, parent table). Deleting a
    /// parent deletes these children (`ON DELETE CASCADE`).
    pub parents: &'static [(&'static str, &'static str)],
    /// The table's `UNIQUE` constraints other than `id`, each a group of
    /// synced columns. Two devices can insert different rows with the same
    /// values there; merge keeps one present (see `bae_merge`).
    pub unique: &'static [&'static [&'static str]],
}

impl TableSchema {
    /// `SELECT id, {synced columns} FROM {table} ORDER BY id`: every row's
    /// synced state in a stable order (dumps, checkpoints).
    pub fn select_rows_sql(&self) -> String {
        format!(
            "SELECT id, {} FROM {} ORDER BY id",
            self.columns.join(", "),
            self.name
        )
    }

    /// Whether `column` syncs.
    pub fn syncs(&self, column: &str) -> bool {
        self.columns.contains(&column)
    }
}

/// The synced tables, parents before children (the order a whole library is
/// written in, which respects foreign keys).
#[derive(Debug)]
pub struct SyncSchema {
    tables: &'static [TableSchema],
}

impl SyncSchema {
    /// All synced tables, parents first.
    pub fn tables(&self) -> &'static [TableSchema] {
        self.tables
    }

    /// The synced table called `name`.
    pub fn table(&self, name: &str) -> Option<&'static TableSchema> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Position of a table in parents-first order.
    pub fn rank(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }

    /// Tables with a foreign key to `parent`: (child table, its FK column).
    pub fn children_of(
        &self,
        parent: &str,
    ) -> impl Iterator<Item = (&'static TableSchema, &'static str)> + '_ {
        let parent = parent.to_owned();
        self.tables.iter().flat_map(move |t| {
            let parent = parent.clone();
            t.parents
                .iter()
                .filter(move |(_, p)| *p == parent)
                .map(move |(col, _)| (t, *col))
        })
    }
}

/// bae's sync schema (SPEC section 3).
pub static SCHEMA: SyncSchema = SyncSchema {
    tables: &[
        TableSchema {
            name: "artists",
            columns: &[
                "name",
                "sort_name",
                "discogs_artist_id",
                "musicbrainz_artist_id",
                "created_at",
                "updated_at",
            ],
            parents: &[],
            unique: &[],
        },
        TableSchema {
            name: "albums",
            columns: &[
                "title",
                "year",
                "bandcamp_album_id",
                "cover_image_id",
                "is_compilation",
                "created_at",
                "updated_at",
            ],
            parents: &[],
            unique: &[],
        },
        TableSchema {
            name: "album_discogs",
            columns: &["album_id", "discogs_master_id", "discogs_release_id"],
            parents: &[("album_id", "albums")],
            unique: &[&["album_id"]],
        },
        TableSchema {
            name: "album_musicbrainz",
            columns: &[
                "album_id",
                "musicbrainz_release_group_id",
                "musicbrainz_release_id",
            ],
            parents: &[("album_id", "albums")],
            unique: &[&["album_id"]],
        },
        TableSchema {
            name: "album_artists",
            columns: &["album_id", "artist_id", "position"],
            parents: &[("album_id", "albums"), ("artist_id", "artists")],
            unique: &[&["album_id", "artist_id"]],
        },
        TableSchema {
            name: "releases",
            columns: &[
                "album_id",
                "release_name",
                "year",
                "discogs_release_id",
                "bandcamp_release_id",
                "format",
                "label",
                "catalog_number",
                "country",
                "barcode",
                "private",
                "created_at",
                "updated_at",
            ],
            parents: &[("album_id", "albums")],
            unique: &[],
        },
        TableSchema {
            name: "tracks",
            columns: &[
                "release_id",
                "title",
                "disc_number",
                "track_number",
                "duration_ms",
                "discogs_position",
                "created_at",
                "updated_at",
            ],
            parents: &[("release_id", "releases")],
            unique: &[],
        },
        TableSchema {
            name: "track_artists",
            columns: &["track_id", "artist_id", "position", "role"],
            parents: &[("track_id", "tracks"), ("artist_id", "artists")],
            unique: &[&["track_id", "artist_id"]],
        },
        TableSchema {
            name: "files",
            columns: &[
                "release_id",
                "original_filename",
                "file_size",
                "content_type",
                "encryption_nonce",
                "encryption_scheme",
                "created_at",
            ],
            parents: &[("release_id", "releases")],
            unique: &[],
        },
        TableSchema {
            name: "audio_formats",
            columns: &[
                "track_id",
                "file_id",
                "content_type",
                "flac_headers",
                "needs_headers",
                "start_byte_offset",
                "end_byte_offset",
                "pregap_ms",
                "frame_offset_samples",
                "exact_sample_count",
                "sample_rate",
                "bits_per_sample",
                "seektable_json",
                "audio_data_start",
                "created_at",
            ],
            parents: &[("track_id", "tracks"), ("file_id", "files")],
            unique: &[&["track_id"]],
        },
        TableSchema {
            name: "images",
            columns: &[
                "release_id",
                "filename",
                "content_type",
                "file_size",
                "width",
                "height",
                "is_cover",
                "source",
                "created_at",
            ],
            parents: &[("release_id", "releases")],
            unique: &[],
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children() {
        for t in SCHEMA.tables() {
            for (_, parent) in t.parents {
                assert!(
                    SCHEMA.rank(parent) < SCHEMA.rank(t.name),
                    "{} before {}",
                    parent,
                    t.name
                );
            }
        }
    }

    #[test]
    fn local_only_columns_do_not_sync() {
        assert!(!SCHEMA.table("files").unwrap().syncs("source_path"));
        assert!(!SCHEMA.table("releases").unwrap().syncs("import_status"));
        assert!(!SCHEMA.table("tracks").unwrap().syncs("import_status"));
        assert!(SCHEMA.table("storage_profiles").is_none());
        assert!(SCHEMA.table("torrents").is_none());
    }

    /// The unique groups are exactly the migration's UNIQUE constraints.
    #[test]
    fn unique_groups_match_the_schema_constraints() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::migrate(&mut conn).unwrap();
        for t in SCHEMA.tables() {
            let mut found: Vec<Vec<String>> = Vec::new();
            let indexes: Vec<(String, bool, String)> = conn
                .prepare(&format!("PRAGMA index_list({})", t.name))
                .unwrap()
                .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for (index, unique, origin) in indexes {
                // "pk" is the id; "u" a UNIQUE constraint.
                if !unique || origin != "u" {
                    continue;
                }
                let columns: Vec<String> = conn
                    .prepare(&format!("PRAGMA index_info({index})"))
                    .unwrap()
                    .query_map([], |r| r.get(2))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                found.push(columns);
            }
            found.sort();
            let mut declared: Vec<Vec<String>> = t
                .unique
                .iter()
                .map(|g| g.iter().map(|c| (*c).to_owned()).collect())
                .collect();
            declared.sort();
            assert_eq!(found, declared, "{}", t.name);
            for group in t.unique {
                assert!(group.iter().all(|c| t.syncs(c)), "{}", t.name);
            }
        }
    }

    #[test]
    fn children_of_releases_are_its_dependents() {
        let mut kids: Vec<_> = SCHEMA
            .children_of("releases")
            .map(|(t, _)| t.name)
            .collect();
        kids.sort();
        assert_eq!(kids, ["files", "images", "tracks"]);
    }
}
