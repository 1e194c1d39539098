//! The table-ownership check: every engine table (`bae_sync_*`) has one
//! owner crate, the only crate whose code names it; others go through the
//! owner's API. A table created by a migration must be listed here, so a
//! new table cannot land without an owner.

use std::path::{Path, PathBuf};

/// Each engine table and the crate directory (under `crates/`) that owns it.
const OWNERS: &[(&str, &str)] = &[
    ("bae_sync_versions", "oplog"),
    ("bae_sync_op_log", "oplog"),
    ("bae_sync_op_log_v3", "oplog"),
    ("bae_sync_op_log_v4", "oplog"),
    ("bae_sync_op_batches", "oplog"),
    ("bae_sync_op_tables", "oplog"),
    ("bae_sync_device", "oplog"),
    ("bae_sync_schema_columns", "oplog"),
    ("bae_sync_stamps", "merge"),
    ("bae_sync_tombstones", "merge"),
    ("bae_sync_parked", "merge"),
    ("bae_sync_merge", "merge"),
    ("bae_sync_row_stamps", "merge"),
    ("bae_sync_column_stamps", "merge"),
    ("bae_sync_writers", "merge"),
    ("bae_sync_table_ids", "merge"),
    ("bae_sync_row_stamps_v4", "merge"),
    ("bae_sync_column_stamps_v4", "merge"),
    ("bae_sync_row_stamps_v5", "merge"),
    ("bae_sync_column_stamps_v5", "merge"),
    ("bae_sync_v1_keys", "merge"),
    ("bae_sync_keep", "merge"),
    ("bae_sync_kept", "merge"),
    ("bae_sync_newer_writers", "merge"),
    ("bae_sync_ck_held", "merge"),
    ("bae_sync_ck_columns", "merge"),
    ("bae_sync_library", "sync-service"),
    ("bae_sync_cursors", "sync-service"),
    ("bae_sync_problems", "sync-service"),
    ("bae_sync_batch_hashes", "sync-service"),
    ("bae_sync_image_queue", "sync-service"),
    ("bae_sync_wanted_images", "sync-service"),
    ("bae_sync_checkpoints_written", "sync-service"),
    ("bae_sync_membership", "sync-service"),
    ("bae_sync_device_authors", "sync-service"),
];

/// Fails with every mention of an engine table outside its owner crate,
/// and every table a migration creates that has no owner.
pub fn check(root: &Path) -> super::Result<()> {
    let mut problems = Vec::new();
    for (dir, sql) in read_tree(&root.join("migrations"), "sql")? {
        for table in created_tables(&sql) {
            match OWNERS.iter().find(|(t, _)| *t == table) {
                None => problems.push(format!("{}: table {table} has no owner", dir.display())),
                Some((_, owner)) if !dir.starts_with(root.join("migrations").join(owner)) => {
                    problems.push(format!(
                        "{}: table {table} belongs to {owner}'s migrations",
                        dir.display()
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let mut dirs = vec![root.join("bench"), root.join("examples")];
    let crates =
        std::fs::read_dir(root.join("crates")).map_err(|e| format!("cannot list crates/: {e}"))?;
    for entry in crates.flatten() {
        dirs.push(entry.path());
    }
    for dir in dirs {
        let crate_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        for (file, text) in read_tree(&dir, "rs")? {
            for (table, owner) in OWNERS {
                if *owner != crate_name && mentions(&text, table) {
                    problems.push(format!(
                        "{} names {table}, which only {owner} may touch",
                        file.display()
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: table ownership ok ({} tables)", OWNERS.len());
        Ok(())
    } else {
        Err(format!("table ownership:\n  {}", problems.join("\n  ")))
    }
}

/// Every file under `dir` (recursively, skipping `target`) ending in `.{ext}`.
fn read_tree(dir: &Path, ext: &str) -> super::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == ext) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                out.push((path, text));
            }
        }
    }
    Ok(out)
}

/// The `bae_sync_*` tables a migration creates.
fn created_tables(sql: &str) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("create table") {
        rest = &rest[i + "create table".len()..];
        let name = rest
            .trim_start()
            .trim_start_matches("if not exists")
            .trim_start();
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        found.push(name);
    }
    found
}

/// Whether `text` names `table` as a whole word.
fn mentions(text: &str, table: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(table).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + table.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        assert!(mentions(
            "SELECT * FROM bae_sync_merge WHERE",
            "bae_sync_merge"
        ));
        assert!(!mentions("bae_sync_merge_x", "bae_sync_merge"));
        assert!(!mentions("xbae_sync_merge", "bae_sync_merge"));
    }

    #[test]
    fn created_tables_are_found() {
        let sql = "CREATE TABLE bae_sync_a (x);\ncreate table if not exists bae_sync_b (y);";
        assert_eq!(created_tables(sql), ["bae_sync_a", "bae_sync_b"]);
    }
}
