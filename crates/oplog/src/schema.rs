//! The sync schema: which tables and columns sync, as data the host gives
//! the engine when it opens a database ([`crate::OpRecorder::open`]).
//!
//! Every synced table has a `TEXT` primary key `id`. Columns not listed
//! (and tables not listed) stay on the device: a source path, import
//! status, storage profiles and their credentials never appear in an op.
//! The schema is checked against the live database at open
//! ([`SyncSchema::check`]): every table and column it names exists, every
//! `UNIQUE` group and foreign key of a synced table is declared, and no
//! synced table references a local-only one. Table and column names that
//! reach SQL come from here, never from bytes read from a bucket.

use crate::error::{OplogError, SchemaError};
use rusqlite::Connection;

/// One synced table.
#[derive(Debug, Clone)]
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
/// written in, which respects foreign keys), which of them names image
/// files, and the schema's version.
#[derive(Debug)]
pub struct SyncSchema {
    tables: &'static [TableSchema],
    images: Option<&'static str>,
    version: u32,
}

/// The version a schema made by [`SyncSchema::new`] has.
const FIRST_SCHEMA_VERSION: u32 = 1;

impl SyncSchema {
    /// A schema of `tables`, parents first, at version 1. `images` names the
    /// table whose rows stand for image files (the sync service moves their
    /// bytes, stored under the row id, before the batches that insert the
    /// rows).
    pub const fn new(tables: &'static [TableSchema], images: Option<&'static str>) -> Self {
        SyncSchema {
            tables,
            images,
            version: FIRST_SCHEMA_VERSION,
        }
    }

    /// The same schema at `version`. The host bumps it whenever it appends
    /// a synced column or table (`docs/SCHEMA-EVOLUTION.md`): every batch
    /// records its writer's version, and a device reading a batch from a
    /// newer version keeps what it does not know instead of refusing it.
    pub const fn with_version(self, version: u32) -> Self {
        SyncSchema { version, ..self }
    }

    /// The schema's version (1 unless [`SyncSchema::with_version`] says
    /// otherwise).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The table whose rows stand for image files, if any.
    pub fn images_table(&self) -> Option<&'static TableSchema> {
        self.images.and_then(|name| self.table(name))
    }

    /// All synced tables, parents first.
    pub const fn tables(&self) -> &'static [TableSchema] {
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

impl SyncSchema {
    /// Checks the schema against itself, then against the live database:
    /// one [`SchemaError`] naming the first disagreement. Run by
    /// [`crate::OpRecorder::open`], so the engine never runs on a schema
    /// that does not describe its database.
    pub fn check(&self, conn: &Connection) -> Result<(), OplogError> {
        self.check_consistent()?;
        for table in self.tables {
            check_table(conn, self, table)?;
        }
        self.check_local_tables(conn)
    }

    /// Local-only tables referencing synced ones must let merge delete the
    /// referenced rows: ON DELETE CASCADE or SET NULL.
    fn check_local_tables(&self, conn: &Connection) -> Result<(), OplogError> {
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for table in tables {
            // Names from sqlite_master only reach a PRAGMA argument; the
            // engine's own tables reference nothing.
            if self.table(&table).is_some() || !is_identifier(&table) {
                continue;
            }
            for key in foreign_keys(conn, &table)? {
                let blocks = !matches!(key.on_delete.as_str(), "CASCADE" | "SET NULL");
                if self.table(&key.parent).is_some() && blocks {
                    return Err(SchemaError::LocalTableBlocksMerge {
                        table,
                        column: key.column,
                        parent: key.parent,
                        on_delete: key.on_delete,
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Names are identifiers, tables are listed once and parents first,
    /// unique groups and parent columns sync, the image table syncs.
    fn check_consistent(&self) -> Result<(), SchemaError> {
        let bad = |table: &str, problem| {
            Err(SchemaError::Inconsistent {
                table: table.into(),
                problem,
            })
        };
        // Version 0 is what a batch of format 1 (before versions) reads as:
        // older than every schema.
        if self.version == 0 {
            return bad("(schema)", "version 0; schemas start at version 1");
        }
        for (i, t) in self.tables.iter().enumerate() {
            if !is_identifier(t.name) || !t.columns.iter().all(|c| is_identifier(c)) {
                return bad(t.name, "a table or column name is not a plain identifier");
            }
            if self.rank(t.name) != Some(i) {
                return bad(t.name, "the table is listed twice");
            }
            if t.columns
                .iter()
                .enumerate()
                .any(|(k, c)| t.columns[..k].contains(c))
            {
                return bad(t.name, "a column is listed twice");
            }
            // Op-log payloads name a column by a one-byte index.
            if t.columns.len() > 256 {
                return bad(t.name, "more than 256 synced columns");
            }
            if t.columns.contains(&"id") {
                return bad(t.name, "id is the row id, not a synced column");
            }
            for (column, parent) in t.parents {
                if !t.syncs(column) {
                    return bad(t.name, "a parent's column does not sync");
                }
                if self.rank(parent).is_none_or(|p| p >= i) {
                    return bad(t.name, "a parent is not a synced table listed before it");
                }
            }
            if t.unique
                .iter()
                .any(|g| g.is_empty() || !g.iter().all(|c| t.syncs(c)))
            {
                return bad(
                    t.name,
                    "a unique group is empty or has a column that does not sync",
                );
            }
        }
        if let Some(images) = self.images {
            if self.table(images).is_none() {
                return bad(images, "the image table does not sync");
            }
        }
        Ok(())
    }
}

impl SyncSchema {
    /// Compares the schema with the one this library last ran with
    /// (`bae_sync_schema_columns`) and records it. Refuses what batches and
    /// op-log payloads cannot survive: an older version, a table dropped
    /// from the schema, a column renamed, removed, moved or retyped; and a
    /// schema that grew without a newer version. Runs inside the
    /// transaction that opens the library (after the op log's migrations).
    pub(crate) fn check_against_last(&self, conn: &Connection) -> Result<(), OplogError> {
        let last: u32 = conn.query_row(
            "SELECT schema_version FROM bae_sync_device WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        if last > self.version {
            return Err(SchemaError::Downgraded {
                library: last,
                schema: self.version,
            }
            .into());
        }
        // (table, position, name, type); position -1 marks the table itself.
        let seen: Vec<(String, i64, String, String)> = conn
            .prepare(
                "SELECT table_name, position, column_name, column_type
                 FROM bae_sync_schema_columns ORDER BY table_name, position",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let mut grew = None;
        for t in self.tables {
            let types = column_types(conn, t.name)?;
            let table_seen = seen.iter().any(|c| c.0 == t.name);
            if last > 0 && !table_seen {
                grew.get_or_insert((t.name.to_owned(), String::new()));
            }
            // The table's own entry (position -1) holds its constraints;
            // empty: recorded before they were.
            let constraints = constraints_of(t);
            if let Some(was) = seen
                .iter()
                .find(|c| c.0 == t.name && c.1 < 0 && !c.3.is_empty() && c.3 != constraints)
            {
                return Err(SchemaError::ConstraintsChanged {
                    table: t.name.to_owned(),
                    was: was.3.clone(),
                    now: constraints,
                }
                .into());
            }
            let old: Vec<_> = seen.iter().filter(|c| c.0 == t.name && c.1 >= 0).collect();
            for (table, position, was, was_type) in &old {
                let position = usize::try_from(*position).unwrap_or(usize::MAX);
                let Some(now) = t.columns.get(position) else {
                    return Err(SchemaError::ColumnChanged {
                        table: table.clone(),
                        position,
                        was: was.clone(),
                        now: "(none)".into(),
                    }
                    .into());
                };
                if now != was {
                    return Err(SchemaError::ColumnChanged {
                        table: table.clone(),
                        position,
                        was: was.clone(),
                        now: (*now).into(),
                    }
                    .into());
                }
                let now_type = types.get(*now).cloned().unwrap_or_default();
                if !now_type.eq_ignore_ascii_case(was_type) {
                    return Err(SchemaError::ColumnTypeChanged {
                        table: table.clone(),
                        column: was.clone(),
                        was: was_type.clone(),
                        now: now_type,
                    }
                    .into());
                }
            }
            // A seen table grew even when it had no synced column before.
            if last > 0 && table_seen && t.columns.len() > old.len() {
                grew.get_or_insert((t.name.to_owned(), format!(".{}", t.columns[old.len()])));
            }
        }
        if let Some((table, ..)) = seen.iter().find(|c| self.table(&c.0).is_none()) {
            return Err(SchemaError::TableRemoved {
                table: table.clone(),
            }
            .into());
        }
        if let Some((table, column)) = grew {
            if last == self.version {
                return Err(SchemaError::VersionNotBumped {
                    table,
                    column,
                    version: last,
                }
                .into());
            }
        }
        self.record(conn)
    }

    /// Stores this schema as the one the library last ran with.
    fn record(&self, conn: &Connection) -> Result<(), OplogError> {
        conn.execute("DELETE FROM bae_sync_schema_columns", [])?;
        let mut insert = conn.prepare(
            "INSERT INTO bae_sync_schema_columns (table_name, position, column_name, column_type)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for t in self.tables {
            // The table itself, so one without synced columns counts as
            // seen, with its constraints.
            insert.execute(rusqlite::params![t.name, -1, "", constraints_of(t)])?;
            let types = column_types(conn, t.name)?;
            for (position, column) in t.columns.iter().enumerate() {
                let ty = types.get(*column).cloned().unwrap_or_default();
                insert.execute(rusqlite::params![t.name, position, column, ty])?;
            }
        }
        conn.execute(
            "UPDATE bae_sync_device SET schema_version = ?1 WHERE id = 1",
            [self.version],
        )?;
        Ok(())
    }
}

/// A table's foreign keys and unique groups, as recorded with the table
/// (never empty, so an empty entry means none were recorded).
fn constraints_of(t: &TableSchema) -> String {
    let mut parts: Vec<String> = t
        .parents
        .iter()
        .map(|(column, parent)| format!("{column} -> {parent}"))
        .collect();
    parts.extend(
        t.unique
            .iter()
            .map(|g| format!("unique ({})", g.join(", "))),
    );
    parts.sort();
    format!("constraints: {}", parts.join("; "))
}

/// Each column of `table` and its declared type.
fn column_types(
    conn: &Connection,
    table: &str,
) -> Result<std::collections::HashMap<String, String>, rusqlite::Error> {
    conn.prepare(&format!("PRAGMA table_info({table})"))?
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))?
        .collect()
}

/// One table: it exists with a TEXT primary key `id` and every synced
/// column; its UNIQUE groups and foreign keys are exactly the declared ones.
fn check_table(conn: &Connection, schema: &SyncSchema, t: &TableSchema) -> Result<(), OplogError> {
    let name = t.name.to_owned();
    // (name, declared type, pk position)
    let columns: Vec<(String, String, i64)> = conn
        .prepare(&format!("PRAGMA table_info({})", t.name))?
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(5)?)))?
        .collect::<Result<_, _>>()?;
    if columns.is_empty() {
        return Err(SchemaError::MissingTable { table: name }.into());
    }
    let pk: Vec<_> = columns.iter().filter(|c| c.2 > 0).collect();
    if !matches!(pk.as_slice(), [(c, ty, _)] if c == "id" && ty.eq_ignore_ascii_case("TEXT")) {
        return Err(SchemaError::NoIdKey { table: name }.into());
    }
    for column in t.columns {
        if !columns.iter().any(|c| c.0 == *column) {
            return Err(SchemaError::MissingColumn {
                table: name,
                column: (*column).into(),
            }
            .into());
        }
    }
    let mut found = unique_groups(conn, t.name)?;
    found.sort();
    let mut declared: Vec<Vec<String>> = t
        .unique
        .iter()
        .map(|g| g.iter().map(|c| (*c).to_owned()).collect())
        .collect();
    declared.sort();
    if let Some(g) = found.iter().find(|g| !declared.contains(g)) {
        return Err(SchemaError::UndeclaredUnique {
            table: name,
            columns: g.join(", "),
        }
        .into());
    }
    if let Some(g) = declared.iter().find(|g| !found.contains(g)) {
        return Err(SchemaError::UniqueNotInDatabase {
            table: name,
            columns: g.join(", "),
        }
        .into());
    }
    let keys = foreign_keys(conn, t.name)?;
    for key in &keys {
        let column = key.column.clone();
        let parent = key.parent.clone();
        if !t.syncs(&key.column) {
            // A local-only column may reference anything, except that a
            // reference to a synced row must let merge delete that row
            // without touching this synced row: SET NULL only.
            if schema.table(&key.parent).is_some() && key.on_delete != "SET NULL" {
                return Err(SchemaError::LocalColumnBlocksMerge {
                    table: name,
                    column,
                    parent,
                    on_delete: key.on_delete.clone(),
                }
                .into());
            }
            continue;
        }
        if schema.table(&key.parent).is_none() {
            return Err(SchemaError::ForeignKeyToLocalTable {
                table: name,
                column,
                parent,
            }
            .into());
        }
        if !t.parents.iter().any(|(c, p)| *c == column && *p == parent) {
            return Err(SchemaError::UndeclaredForeignKey {
                table: name,
                column,
                parent,
            }
            .into());
        }
        // Merge's cascade and revival assume `parent.id` and ON DELETE
        // CASCADE, and one column per key.
        if key.target.as_deref().is_some_and(|c| c != "id")
            || key.on_delete != "CASCADE"
            || key.columns > 1
        {
            return Err(SchemaError::ParentNotCascadingId {
                table: name,
                column,
                parent,
            }
            .into());
        }
    }
    for (column, parent) in t.parents {
        if !keys
            .iter()
            .any(|k| k.column == *column && k.parent == *parent)
        {
            return Err(SchemaError::ParentNotInDatabase {
                table: name,
                column: (*column).into(),
                parent: (*parent).into(),
            }
            .into());
        }
    }
    for (column, default) in defaults(conn, t.name)? {
        if t.syncs(&column) && !is_constant(&default) {
            return Err(SchemaError::NonConstantDefault {
                table: name,
                column,
                default,
            }
            .into());
        }
    }
    Ok(())
}

/// One column of a foreign key.
struct ForeignKey {
    column: String,
    parent: String,
    /// The referenced column; `None` for the parent's primary key.
    target: Option<String>,
    on_delete: String,
    /// Columns in the key this column belongs to.
    columns: usize,
}

fn foreign_keys(conn: &Connection, table: &str) -> Result<Vec<ForeignKey>, rusqlite::Error> {
    // (key id, parent, from, to, on_delete)
    let rows: Vec<(i64, String, String, Option<String>, String)> = conn
        .prepare(&format!("PRAGMA foreign_key_list({table})"))?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .iter()
        .map(|(id, parent, from, to, on_delete)| ForeignKey {
            column: from.clone(),
            parent: parent.clone(),
            target: to.clone(),
            on_delete: on_delete.to_ascii_uppercase(),
            columns: rows.iter().filter(|r| r.0 == *id).count(),
        })
        .collect())
}

/// Each column of `table` with a declared default, and its expression.
fn defaults(conn: &Connection, table: &str) -> Result<Vec<(String, String)>, rusqlite::Error> {
    let rows: Vec<(String, Option<String>)> = conn
        .prepare(&format!("PRAGMA table_info({table})"))?
        .query_map([], |r| Ok((r.get(1)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(c, d)| d.map(|d| (c, d)))
        .collect())
}

/// Whether a default expression is a literal (a number, a string, a blob,
/// NULL, TRUE or FALSE, possibly in parentheses): merge fills a column an
/// insert omitted with its default on the receiving device, so only a
/// constant gives every device the same value.
fn is_constant(expr: &str) -> bool {
    let e = expr.trim();
    if let Some(inner) = e.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        return is_constant(inner);
    }
    let upper = e.to_ascii_uppercase();
    if matches!(upper.as_str(), "NULL" | "TRUE" | "FALSE") {
        return true;
    }
    // A string literal: quotes inside only as doubled quotes.
    let quoted = |s: &str| {
        s.len() >= 2
            && s.starts_with('\'')
            && s.ends_with('\'')
            && !s[1..s.len() - 1].replace("''", "").contains('\'')
    };
    if e.starts_with('\'') && quoted(e) {
        return true;
    }
    if (upper.starts_with("X'")) && quoted(&e[1..]) {
        return true;
    }
    let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
    !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
}

/// The column groups of a table's UNIQUE constraints and unique indexes,
/// the primary key excepted.
fn unique_groups(conn: &Connection, table: &str) -> Result<Vec<Vec<String>>, rusqlite::Error> {
    let indexes: Vec<(String, bool, String)> = conn
        .prepare(&format!("PRAGMA index_list({table})"))?
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut groups = Vec::new();
    for (index, unique, origin) in indexes {
        // "pk" is the id; "u" a UNIQUE constraint; "c" CREATE UNIQUE INDEX.
        if !unique || origin == "pk" {
            continue;
        }
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
            .query_map([&index], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        groups.push(columns);
    }
    Ok(groups)
}

/// A plain SQL identifier: lowercase ASCII letters, digits and `_`, not
/// starting with a digit. Every name the engine splices into SQL is one
/// (and every name a newer writer's batch may carry outside this device's
/// schema, which never reaches SQL but as a bound value).
pub(crate) fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// bae's sync schema (SPEC section 3): the default a host that is bae
/// gives the engine. Its tables are bae's (`fixtures/bae-library.sql` holds
/// the reference DDL the demo and the tests create).
pub static BAE_SCHEMA: SyncSchema = SyncSchema::new(
    &[
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
                // Appended in phase 3: the key epoch of the release key.
                "key_epoch",
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
    Some("images"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children() {
        for t in BAE_SCHEMA.tables() {
            for (_, parent) in t.parents {
                assert!(
                    BAE_SCHEMA.rank(parent) < BAE_SCHEMA.rank(t.name),
                    "{} before {}",
                    parent,
                    t.name
                );
            }
        }
    }

    #[test]
    fn local_only_columns_do_not_sync() {
        assert!(!BAE_SCHEMA.table("files").unwrap().syncs("source_path"));
        assert!(!BAE_SCHEMA.table("releases").unwrap().syncs("import_status"));
        assert!(!BAE_SCHEMA.table("tracks").unwrap().syncs("import_status"));
        assert!(BAE_SCHEMA.table("storage_profiles").is_none());
        assert!(BAE_SCHEMA.table("torrents").is_none());
    }

    fn bae_library() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        crate::fixture::create_bae_library(&conn).unwrap();
        conn
    }

    /// Runs `ddl` on bae's reference library and checks bae's schema on it.
    fn check_after(ddl: &str) -> Result<(), SchemaError> {
        let conn = bae_library();
        conn.execute_batch(ddl).unwrap();
        schema_error(BAE_SCHEMA.check(&conn))
    }

    fn schema_error(r: Result<(), OplogError>) -> Result<(), SchemaError> {
        match r {
            Ok(()) => Ok(()),
            Err(OplogError::Schema(e)) => Err(e),
            Err(e) => panic!("not a schema error: {e}"),
        }
    }

    #[test]
    fn bae_schema_matches_the_reference_library() {
        BAE_SCHEMA.check(&bae_library()).unwrap();
    }

    #[test]
    fn a_missing_table_is_named() {
        let err = check_after("PRAGMA foreign_keys = OFF; DROP TABLE images;").unwrap_err();
        assert_eq!(
            err,
            SchemaError::MissingTable {
                table: "images".into()
            }
        );
    }

    #[test]
    fn a_missing_column_is_named() {
        let err = check_after("ALTER TABLE albums DROP COLUMN year;").unwrap_err();
        assert_eq!(
            err,
            SchemaError::MissingColumn {
                table: "albums".into(),
                column: "year".into()
            }
        );
    }

    #[test]
    fn an_undeclared_unique_index_is_named() {
        let err = check_after("CREATE UNIQUE INDEX u ON releases (album_id, year);").unwrap_err();
        assert_eq!(
            err,
            SchemaError::UndeclaredUnique {
                table: "releases".into(),
                columns: "album_id, year".into()
            }
        );
    }

    #[test]
    fn a_foreign_key_to_a_local_table_is_named() {
        let err = check_after(
            "ALTER TABLE albums ADD COLUMN profile_id TEXT REFERENCES storage_profiles(id);",
        );
        assert_eq!(
            err,
            Ok(()),
            "a column that does not sync may point anywhere"
        );
        let conn = bae_library();
        static WITH_PROFILE: SyncSchema = SyncSchema::new(
            &[TableSchema {
                name: "release_storage",
                columns: &["release_id", "storage_profile_id"],
                parents: &[],
                unique: &[],
            }],
            None,
        );
        let err = schema_error(WITH_PROFILE.check(&conn)).unwrap_err();
        assert!(
            matches!(&err, SchemaError::ForeignKeyToLocalTable { table, parent, .. }
                if table == "release_storage" && (parent == "releases" || parent == "storage_profiles")),
            "{err}"
        );
    }

    #[test]
    fn an_undeclared_parent_and_a_phantom_parent_are_named() {
        static NO_PARENT: SyncSchema = SyncSchema::new(
            &[
                TableSchema {
                    name: "albums",
                    columns: &["title"],
                    parents: &[],
                    unique: &[],
                },
                TableSchema {
                    name: "album_discogs",
                    columns: &["album_id"],
                    parents: &[],
                    unique: &[&["album_id"]],
                },
            ],
            None,
        );
        let err = schema_error(NO_PARENT.check(&bae_library())).unwrap_err();
        assert!(
            matches!(err, SchemaError::UndeclaredForeignKey { .. }),
            "{err}"
        );
        static PHANTOM: SyncSchema = SyncSchema::new(
            &[
                TableSchema {
                    name: "artists",
                    columns: &["name"],
                    parents: &[],
                    unique: &[],
                },
                TableSchema {
                    name: "albums",
                    columns: &["title", "cover_image_id"],
                    parents: &[("cover_image_id", "artists")],
                    unique: &[],
                },
            ],
            None,
        );
        let err = schema_error(PHANTOM.check(&bae_library())).unwrap_err();
        assert_eq!(
            err,
            SchemaError::ParentNotInDatabase {
                table: "albums".into(),
                column: "cover_image_id".into(),
                parent: "artists".into()
            }
        );
    }

    #[test]
    fn an_inconsistent_schema_is_refused_before_any_sql() {
        static INJECTED: SyncSchema = SyncSchema::new(
            &[TableSchema {
                name: "albums",
                columns: &["title FROM storage_profiles --"],
                parents: &[],
                unique: &[],
            }],
            None,
        );
        let err = schema_error(INJECTED.check(&bae_library())).unwrap_err();
        assert!(matches!(err, SchemaError::Inconsistent { .. }), "{err}");
        static CHILD_FIRST: SyncSchema = SyncSchema::new(
            &[
                TableSchema {
                    name: "releases",
                    columns: &["album_id"],
                    parents: &[("album_id", "albums")],
                    unique: &[],
                },
                TableSchema {
                    name: "albums",
                    columns: &["title"],
                    parents: &[],
                    unique: &[],
                },
            ],
            None,
        );
        let err = schema_error(CHILD_FIRST.check(&bae_library())).unwrap_err();
        assert!(matches!(err, SchemaError::Inconsistent { .. }), "{err}");
    }

    #[test]
    fn children_of_releases_are_its_dependents() {
        let mut kids: Vec<_> = BAE_SCHEMA
            .children_of("releases")
            .map(|(t, _)| t.name)
            .collect();
        kids.sort();
        assert_eq!(kids, ["files", "images", "tracks"]);
    }

    #[test]
    fn a_local_table_that_would_block_a_remote_delete_is_named() {
        let err = check_after(
            "CREATE TABLE plays (id TEXT PRIMARY KEY, track_id TEXT NOT NULL REFERENCES tracks(id));",
        )
        .unwrap_err();
        assert!(
            matches!(&err, SchemaError::LocalTableBlocksMerge { table, parent, .. }
                if table == "plays" && parent == "tracks"),
            "{err}"
        );
        check_after(
            "CREATE TABLE plays (id TEXT PRIMARY KEY, track_id TEXT REFERENCES tracks(id) ON DELETE CASCADE);",
        )
        .unwrap();
    }

    #[test]
    fn a_local_column_cascading_from_a_synced_table_is_named() {
        let err = check_after(
            "ALTER TABLE images ADD COLUMN shown_with TEXT REFERENCES tracks(id) ON DELETE CASCADE;",
        )
        .unwrap_err();
        assert!(
            matches!(&err, SchemaError::LocalColumnBlocksMerge { table, column, .. }
                if table == "images" && column == "shown_with"),
            "{err}"
        );
        check_after(
            "ALTER TABLE images ADD COLUMN shown_with TEXT REFERENCES tracks(id) ON DELETE SET NULL;",
        )
        .unwrap();
    }

    #[test]
    fn a_parent_without_cascade_and_a_non_constant_default_are_named() {
        static NO_CASCADE: SyncSchema = SyncSchema::new(
            &[
                TableSchema {
                    name: "p",
                    columns: &[],
                    parents: &[],
                    unique: &[],
                },
                TableSchema {
                    name: "c",
                    columns: &["p_id"],
                    parents: &[("p_id", "p")],
                    unique: &[],
                },
            ],
            None,
        );
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE p (id TEXT PRIMARY KEY);
             CREATE TABLE c (id TEXT PRIMARY KEY, p_id TEXT REFERENCES p(id));",
        )
        .unwrap();
        let err = schema_error(NO_CASCADE.check(&conn)).unwrap_err();
        assert!(
            matches!(err, SchemaError::ParentNotCascadingId { .. }),
            "{err}"
        );

        static NOTES: SyncSchema = SyncSchema::new(
            &[TableSchema {
                name: "notes",
                columns: &["body", "token", "n"],
                parents: &[],
                unique: &[],
            }],
            None,
        );
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT DEFAULT 'x', n INTEGER DEFAULT -1,
                                 token TEXT DEFAULT (hex(randomblob(8))))",
        )
        .unwrap();
        let err = schema_error(NOTES.check(&conn)).unwrap_err();
        assert!(
            matches!(&err, SchemaError::NonConstantDefault { column, .. } if column == "token"),
            "{err}"
        );
    }

    #[test]
    fn constant_defaults_are_told_from_expressions() {
        for c in [
            "NULL", "0", "-1", "1.5e3", "'x'", "'it''s'", "X'00ff'", "(0)", "TRUE",
        ] {
            assert!(is_constant(c), "{c}");
        }
        for e in [
            "CURRENT_TIMESTAMP",
            "random()",
            "(hex(randomblob(8)))",
            "1 + 1",
            "'a' || 'b'",
        ] {
            assert!(!is_constant(e), "{e}");
        }
    }
}
