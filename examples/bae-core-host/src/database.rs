//! The host's own database layer, as bae-core's `Database` is: a sqlx
//! `SqlitePool` on the library file, the host's own migrations, and the
//! host's reads. The sync engine never sees this pool; it opens its own
//! connections to the same file (see `manager.rs` and `main.rs`).

use crate::BoxError;
use bae_oplog::TableSchema;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// The host's migrations, embedded in the binary: bae's schema, as bae-core's
/// own migrations create it.
///
/// bae-core (with sqlx's default `macros` feature) writes
/// `sqlx::migrate!("./migrations")` for the same thing. This example turns
/// `macros` off because the proc macro builds a second copy of sqlx and
/// SQLite for the compiler, which CI would pay for on every run.
#[derive(Debug)]
struct HostMigrations;

impl HostMigrations {
    /// `(version, description, SQL)`, oldest first. The one step is bae's
    /// reference DDL, the same file the engine's fixtures use
    /// (`fixtures/bae-library.sql`), so the two cannot drift apart.
    const STEPS: &'static [(i64, &'static str, &'static str)] = &[(
        1,
        "library",
        include_str!("../../../fixtures/bae-library.sql"),
    )];
}

impl MigrationSource<'static> for HostMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send>>
    {
        let steps = Self::STEPS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into(),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(steps)))
    }
}

/// The host's connection pool to its library (bae-core's `Database`).
#[derive(Clone, Debug)]
pub struct Database {
    pool: SqlitePool,
}

impl Database {
    /// Opens (creating if needed) the library at `path` and runs the host's
    /// migrations: bae's schema is the host's, created by the host, before
    /// any engine code opens the file.
    pub async fn open(path: &Path) -> Result<Self, BoxError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL lets the host's pool, the host's OpRecorder and the sync
            // service's OpRecorder read while one of them writes. The engine
            // sets the same on its connections; the journal mode is a
            // property of the file, so whoever opens first wins and all agree.
            .journal_mode(SqliteJournalMode::Wal)
            // Writers queue instead of failing with SQLITE_BUSY while the
            // sync service merges a pull.
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // The host's migrations (`HostMigrations`), tracked by
        // sqlx in its own table as usual. They create bae's tables only; the
        // engine creates its own tables when an OpRecorder opens the file,
        // and never touches these or `PRAGMA user_version`.
        Migrator::new(HostMigrations).await?.run(&pool).await?;
        Ok(Database { pool })
    }

    /// An album's title, if the album exists.
    pub async fn album_title(&self, album_id: &str) -> Result<Option<String>, BoxError> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT title FROM albums WHERE id = ?")
                .bind(album_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A release's track titles in track order.
    pub async fn track_titles(&self, release_id: &str) -> Result<Vec<String>, BoxError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT title FROM tracks WHERE release_id = ? ORDER BY disc_number, track_number",
        )
        .bind(release_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Where a file came from on this device (`files.source_path`, a
    /// local-only column: it never syncs).
    pub async fn file_source_path(&self, file_id: &str) -> Result<Option<String>, BoxError> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>("SELECT source_path FROM files WHERE id = ?")
                .bind(file_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// Every row of a synced table as text, synced columns only, ordered by
    /// id: what two converged devices must agree on. SQLite's `quote()`
    /// keeps types apart (`'1'` is not `1`, blobs print as `X'..'`).
    pub async fn synced_rows(&self, table: &TableSchema) -> Result<Vec<String>, BoxError> {
        let columns: Vec<String> = std::iter::once("id")
            .chain(table.columns.iter().copied())
            .map(|c| format!("quote({c})"))
            .collect();
        // Table and column names come from the host's own sync schema, not
        // from input.
        let sql = format!(
            "SELECT {} FROM {} ORDER BY id",
            columns.join(" || ', ' || "),
            table.name
        );
        Ok(sqlx::query_scalar::<_, String>(&sql)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Closes the pool (waits for its connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
