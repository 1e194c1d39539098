//! Converting version 1 of the merge state (`bae_sync_stamps`,
//! `bae_sync_tombstones`) into the compact tables migration
//! `0002_compact_stamps` creates, as `0004_table_numbers` left them (the
//! conversion runs after every migration). SQL cannot compute a row key (it packs
//! the UUIDs inside an id, `keys.rs`), so the keys are computed here and
//! the rest is SQL; all of it, and dropping the old tables, in one
//! transaction. A library whose conversion failed still has the old
//! tables and converts on its next open; until then it does not open.

use crate::error::MergeError;
use crate::keys::row_key;
use rusqlite::{params, Connection};

/// Moves the version 1 stamps over, unless already done. Stamps order by
/// (hlc, device bytes): a column stamp at or below its row's insert stamp
/// decides nothing and is dropped.
const CONVERT: &str = r#"
INSERT OR IGNORE INTO bae_sync_writers (device)
    SELECT device FROM bae_sync_stamps UNION SELECT device FROM bae_sync_tombstones;

INSERT OR IGNORE INTO bae_sync_table_ids (name)
    SELECT table_name FROM temp.bae_sync_v1_keys ORDER BY 1;

INSERT INTO bae_sync_row_stamps (table_id, row_key, ins_hlc, ins_writer, del_hlc, del_writer)
    SELECT n.id, r.row_key, s.hlc, ws.id, t.hlc, wt.id
    FROM temp.bae_sync_v1_keys r
    JOIN bae_sync_table_ids n ON n.name = r.table_name
    LEFT JOIN bae_sync_stamps s
        ON s.table_name = r.table_name AND s.row_id = r.row_id AND s."column" = '#row'
    LEFT JOIN bae_sync_writers ws ON ws.device = s.device
    LEFT JOIN bae_sync_tombstones t ON t.table_name = r.table_name AND t.row_id = r.row_id
    LEFT JOIN bae_sync_writers wt ON wt.device = t.device
    WHERE s.hlc IS NOT NULL OR t.hlc IS NOT NULL;

INSERT INTO bae_sync_column_stamps (table_id, row_key, "column", hlc, writer)
    SELECT n.id, r.row_key, f."column", f.hlc, w.id
    FROM bae_sync_stamps f
    JOIN temp.bae_sync_v1_keys r ON r.table_name = f.table_name AND r.row_id = f.row_id
    JOIN bae_sync_table_ids n ON n.name = r.table_name
    JOIN bae_sync_writers w ON w.device = f.device
    WHERE f."column" <> '#row' AND NOT EXISTS (
        SELECT 1 FROM bae_sync_stamps i
        WHERE i.table_name = f.table_name AND i.row_id = f.row_id AND i."column" = '#row'
          AND (i.hlc > f.hlc OR (i.hlc = f.hlc AND i.device >= f.device)));

DROP TABLE temp.bae_sync_v1_keys;
DROP TABLE bae_sync_stamps;
DROP TABLE bae_sync_tombstones;
"#;

/// Converts version 1's stamps if the library still has them.
pub(crate) fn convert_version_1(conn: &mut Connection) -> Result<(), MergeError> {
    let pending: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'bae_sync_stamps')",
        [],
        |r| r.get(0),
    )?;
    if !pending {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TEMP TABLE bae_sync_v1_keys (table_name TEXT, row_id TEXT, row_key,
                                             PRIMARY KEY (table_name, row_id))",
    )?;
    {
        let mut rows = tx.prepare(
            "SELECT table_name, row_id FROM bae_sync_stamps
             UNION SELECT table_name, row_id FROM bae_sync_tombstones",
        )?;
        let mut keep = tx.prepare(
            "INSERT INTO temp.bae_sync_v1_keys (table_name, row_id, row_key) VALUES (?1, ?2, ?3)",
        )?;
        let mut found = rows.query([])?;
        while let Some(r) = found.next()? {
            let (table, id): (String, String) = (r.get(0)?, r.get(1)?);
            keep.execute(params![table, id, row_key(&id)])?;
        }
    }
    tx.execute_batch(CONVERT)?;
    tx.commit()?;
    Ok(())
}
