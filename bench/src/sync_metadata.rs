//! `sync_metadata_ratio`: how much room the sync engine takes beside the
//! library it syncs. Bytes of every engine table and index (`bae_sync_*`)
//! ÷ bytes of the library's own tables and indexes, measured with SQLite's
//! `dbstat` after `VACUUM`, on two devices of one library of demo albums:
//!
//! - the **writer**, which imported every album, then pushed, wrote a
//!   checkpoint and ran `gc --now` (its op log pruned, its own writes
//!   folded into the stamps);
//! - a **joiner**, a new device that bootstrapped from that checkpoint and
//!   pulled.
//!
//! Each device is measured against its own library (local-only tables such
//! as the writer's import records do not sync). The entry's ratio is the
//! larger of the two (target: at most 0.15 each);
//! `details` gives both ratios and the sizes in MB. Not a timing: one run.
//!
//! Nearly all of the engine's bytes are merge's row stamps, one entry
//! per synced row (106,064 at 2,000 albums): each holds a table number,
//! the row id packed (UUIDs as 16 bytes), the insert HLC and a writer
//! number, about 40 bytes on disk (`docs/FORMAT-sync.md`). At 2,000 albums
//! the ratio was 0.170 with table names in every stamp, 0.143 (writer) and
//! 0.142 (joiner) with table numbers (merge migration 0004).

use crate::report::{Entry, Size};
use crate::sync_bootstrap::{demo_bucket, DemoBucket};
use bae_oplog::fixture::open_library;
use bae_sync_service::SyncService;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;
const MB: f64 = 1024.0 * 1024.0;

pub fn sync_metadata_ratio(size: Size) -> Result<Entry, String> {
    let albums = size.pick(300, 2000);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| err(&e))?;
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let writer_db = dir.path().join("writer.db");
    let joiner_db = dir.path().join("joiner.db");
    let DemoBucket { store, key, member } = demo_bucket(&rt, dir.path(), &writer_db, albums)?;
    let service = |path: &Path| -> Result<SyncService, String> {
        SyncService::new(
            open_library(path).map_err(|e| err(&e))?,
            store.clone(),
            key.clone(),
            member.clone(),
        )
        .map_err(|e| err(&e))
    };
    let writer = service(&writer_db)?;
    rt.block_on(async {
        writer.push().await?;
        writer.checkpoint().await?;
        writer.gc(0, Duration::ZERO, true).await
    })
    .map_err(|e| err(&e))?;
    drop(writer);
    let joiner = service(&joiner_db)?;
    rt.block_on(async {
        joiner.bootstrap_from_checkpoint().await?;
        joiner.pull().await
    })
    .map_err(|e| err(&e))?;
    drop(joiner);
    let w = Sizes::measure(&writer_db)?;
    let j = Sizes::measure(&joiner_db)?;
    eprintln!(
        "bench: sync_metadata_ratio: {albums} albums{}; writer {:.2} MB engine / {:.1} MB library ({:.3}); joiner {:.2} MB / {:.1} MB ({:.3})",
        size.pick(" (--quick: fewer than the target's 2,000)", ""),
        w.engine as f64 / MB,
        w.library as f64 / MB,
        w.ratio(),
        j.engine as f64 / MB,
        j.library as f64 / MB,
        j.ratio()
    );
    for (who, s) in [("writer", &w), ("joiner", &j)] {
        for (name, bytes) in &s.engine_tables {
            eprintln!(
                "bench: sync_metadata_ratio: {who} {name} {:.2} MB",
                *bytes as f64 / MB
            );
        }
    }
    // Each device against its own library: local-only tables (the writer's
    // import records) do not sync, so the two libraries differ a little.
    let (larger, name) = if w.ratio() >= j.ratio() {
        (&w, "writer")
    } else {
        (&j, "joiner")
    };
    let mut entry = Entry::new(
        "sync_metadata_ratio",
        larger.engine as f64 / MB,
        larger.library as f64 / MB,
        "library tables and indexes (dbstat after VACUUM)",
        "MB",
    );
    entry.details = Some(serde_json::json!({
        "albums": albums,
        "quick": size == Size::Quick,
        "larger_of": name,
        "writer_ratio": w.ratio(),
        "joiner_ratio": j.ratio(),
        "writer_engine_mb": w.engine as f64 / MB,
        "writer_library_mb": w.library as f64 / MB,
        "joiner_engine_mb": j.engine as f64 / MB,
        "joiner_library_mb": j.library as f64 / MB,
        "target": 0.15,
    }));
    Ok(entry)
}

/// Page bytes of one database after `VACUUM`, split into the engine's
/// tables (with their indexes) and everything else.
struct Sizes {
    engine: u64,
    library: u64,
    engine_tables: Vec<(String, u64)>,
}

impl Sizes {
    fn measure(path: &Path) -> Result<Sizes, String> {
        let err = |e: rusqlite::Error| format!("measuring {}: {e}", path.display());
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch("VACUUM").map_err(err)?;
        // dbstat names each b-tree; sqlite_schema maps an index to its table.
        // The schema table itself counts for neither side.
        let mut stmt = conn
            .prepare(
                "SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat d
                 JOIN sqlite_schema s ON s.name = d.name
                 GROUP BY s.tbl_name ORDER BY s.tbl_name",
            )
            .map_err(err)?;
        let per_table = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut sizes = Sizes {
            engine: 0,
            library: 0,
            engine_tables: Vec::new(),
        };
        for (table, bytes) in per_table {
            let bytes = u64::try_from(bytes).unwrap_or(0);
            if table.starts_with("bae_sync_") {
                sizes.engine += bytes;
                sizes.engine_tables.push((table, bytes));
            } else {
                sizes.library += bytes;
            }
        }
        Ok(sizes)
    }

    fn ratio(&self) -> f64 {
        self.engine as f64 / self.library as f64
    }
}
