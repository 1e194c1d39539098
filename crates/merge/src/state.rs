//! What merge knows about one row, and the SQL that reads and writes it:
//! stamps (`bae_sync_row_stamps`, `bae_sync_column_stamps`), the physical
//! row, and the values of absent rows (the `bae_sync_parked` table).

use crate::error::MergeError;
use crate::keys::row_key;
use crate::stamps::stamp_from;
use bae_hlc::Stamp;
use bae_oplog::{TableSchema, Value};
use rusqlite::{params, Connection, OptionalExtension};

/// The pseudo-column naming a row's newest insert stamp in a snapshot's
/// stamp records (the stamp tables keep it beside the tombstone). Not an
/// identifier, so it can never collide with a real column.
pub const ROW_COLUMN: &str = "#row";

/// Whether `bae_sync_parked` (`migrations/merge/`)
/// holds anything: values of rows that are known but absent (deleted, or under
/// an absent parent), kept so whatever revives them later revives the same
/// values on every device whatever the arrival order.
pub(crate) fn ensure_parking(conn: &Connection) -> Result<bool, MergeError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM bae_sync_parked)")?
        .query_row([], |r| r.get(0))?)
}

/// A row's merge state.
#[derive(Debug, Clone)]
pub(crate) struct RowState {
    /// The row is in its table.
    pub present: bool,
    /// Newest insert stamp.
    pub ins: Option<Stamp>,
    /// Newest delete stamp.
    pub tomb: Option<Stamp>,
    /// Explicit per-column stamps newer than `ins` (updates; local writes
    /// after the row's insert).
    pub fields: Vec<(String, Stamp)>,
}

impl RowState {
    /// Whether this library has heard of the row at all.
    pub fn known(&self) -> bool {
        self.present || self.ins.is_some() || self.tomb.is_some() || !self.fields.is_empty()
    }

    /// A column's effective stamp: its explicit stamp or the row's insert
    /// stamp, whichever is newer (an insert writes every column).
    pub fn field(&self, column: &str) -> Option<Stamp> {
        let explicit = self
            .fields
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, s)| *s);
        explicit.max(self.ins)
    }

    /// Whether the row's own stamps say it exists: newest insert newer than
    /// newest delete. A row present without any stamps (written before sync
    /// began) counts as alive until a delete arrives.
    pub fn own_live(&self) -> bool {
        match (self.ins, self.tomb) {
            (Some(i), Some(t)) => i > t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => self.present,
        }
    }

    /// Whether a value written at `stamp` outlives the row's tombstone.
    pub fn after_tomb(&self, stamp: Option<Stamp>) -> bool {
        stamp.is_some() && stamp > self.tomb
    }
}

/// The number `bae_sync_table_ids` gives table `?1`, in SQL (NULL when no
/// stamp has named the table yet, so nothing matches it).
const TABLE_ID: &str = "(SELECT id FROM bae_sync_table_ids WHERE name = ?1)";

/// Reads a row's state in one statement (index lookups only).
pub(crate) fn load_row(
    conn: &Connection,
    table: &TableSchema,
    row_id: &str,
) -> Result<RowState, MergeError> {
    let sql = format!(
        r#"SELECT 0, NULL, NULL, NULL, NULL, NULL FROM {t} WHERE id = ?3
           UNION ALL SELECT 1, NULL, r.ins_hlc, wi.device, r.del_hlc, wd.device FROM bae_sync_row_stamps r
               LEFT JOIN bae_sync_writers wi ON wi.id = r.ins_writer
               LEFT JOIN bae_sync_writers wd ON wd.id = r.del_writer
               WHERE r.table_id = {TABLE_ID} AND r.row_key = ?2
           UNION ALL SELECT 2, c."column", c.hlc, w.device, NULL, NULL FROM bae_sync_column_stamps c
               LEFT JOIN bae_sync_writers w ON w.id = c.writer
               WHERE c.table_id = {TABLE_ID} AND c.row_key = ?2"#,
        t = table.name
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![table.name, row_key(row_id), row_id])?;
    let mut state = RowState {
        present: false,
        ins: None,
        tomb: None,
        fields: Vec::new(),
    };
    let stamp_at = |r: &rusqlite::Row<'_>, i: usize| -> Result<Option<Stamp>, MergeError> {
        match r.get::<_, Option<i64>>(i)? {
            Some(hlc) => Ok(Some(stamp_from(
                table.name,
                row_id,
                hlc,
                r.get_ref(i + 1)?,
            )?)),
            None => Ok(None),
        }
    };
    while let Some(r) = rows.next()? {
        match r.get::<_, i64>(0)? {
            0 => state.present = true,
            1 => {
                state.ins = stamp_at(r, 2)?;
                state.tomb = stamp_at(r, 4)?;
            }
            _ => {
                if let Some(stamp) = stamp_at(r, 2)? {
                    state.fields.push((r.get(1)?, stamp));
                }
            }
        }
    }
    Ok(state)
}

/// Whether a row is in its table.
pub(crate) fn exists(conn: &Connection, table: &str, row_id: &str) -> Result<bool, MergeError> {
    Ok(conn
        .prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))?
        .query_row([row_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether this library has any stamp for a row (a row present from before
/// sync began may have column stamps alone).
pub(crate) fn has_stamps(conn: &Connection, table: &str, row_id: &str) -> Result<bool, MergeError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM bae_sync_row_stamps WHERE table_id = {TABLE_ID} AND row_key = ?2)
                 OR EXISTS (SELECT 1 FROM bae_sync_column_stamps WHERE table_id = {TABLE_ID} AND row_key = ?2)",
        ))?
        .query_row(params![table, row_key(row_id)], |r| r.get(0))?)
}

/// Inserts a row with the given columns (the rest take their defaults).
pub(crate) fn insert_row(
    conn: &Connection,
    table: &str,
    row_id: &str,
    fields: &[(&str, &Value)],
) -> rusqlite::Result<usize> {
    let sql = bae_oplog::insert_sql(table, fields.iter().map(|(c, _)| *c));
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(fields.len() + 1);
    values.push(&row_id);
    values.extend(fields.iter().map(|(_, v)| *v as &dyn rusqlite::ToSql));
    conn.prepare_cached(&sql)?.execute(values.as_slice())
}

/// Updates columns of a present row.
pub(crate) fn update_row(
    conn: &Connection,
    table: &str,
    row_id: &str,
    fields: &[(&str, &Value)],
) -> Result<(), MergeError> {
    if fields.is_empty() {
        return Ok(());
    }
    let sql = bae_oplog::update_sql(table, fields.iter().map(|(c, _)| *c));
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(fields.len() + 1);
    values.push(&row_id);
    values.extend(fields.iter().map(|(_, v)| *v as &dyn rusqlite::ToSql));
    conn.prepare_cached(&sql)?.execute(values.as_slice())?;
    Ok(())
}

/// Deletes a row (the database cascades to its dependents).
pub(crate) fn delete_row(conn: &Connection, table: &str, row_id: &str) -> Result<(), MergeError> {
    conn.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?
        .execute([row_id])?;
    Ok(())
}

/// The synced columns of a present row.
pub(crate) fn physical_values(
    conn: &Connection,
    table: &TableSchema,
    row_id: &str,
) -> Result<Vec<(&'static str, Value)>, MergeError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE id = ?1",
        table.columns.join(", "),
        table.name
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([row_id])?;
    let mut out = Vec::with_capacity(table.columns.len());
    if let Some(r) = rows.next()? {
        for (i, c) in table.columns.iter().enumerate() {
            out.push((*c, Value::from(r.get_ref(i)?)));
        }
    }
    Ok(out)
}

/// Ids of present rows of `child` whose `column` is `parent_id`.
pub(crate) fn child_ids(
    conn: &Connection,
    child: &str,
    column: &str,
    parent_id: &str,
) -> Result<Vec<String>, MergeError> {
    let sql = format!("SELECT id FROM {child} WHERE {column} = ?1 ORDER BY id");
    let ids = conn
        .prepare_cached(&sql)?
        .query_map([parent_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Keeps a value of an absent row.
pub(crate) fn park(
    conn: &Connection,
    table: &str,
    row_id: &str,
    column: &str,
    value: &Value,
) -> Result<(), MergeError> {
    conn.prepare_cached(
        r#"INSERT INTO bae_sync_parked (table_name, row_id, "column", value) VALUES (?1, ?2, ?3, ?4)
           ON CONFLICT (table_name, row_id, "column") DO UPDATE SET value = excluded.value"#,
    )?
    .execute(params![table, row_id, column, value])?;
    Ok(())
}

/// The kept values of an absent row.
pub(crate) fn parked_values(
    conn: &Connection,
    table: &str,
    row_id: &str,
) -> Result<Vec<(String, Value)>, MergeError> {
    let mut stmt = conn.prepare_cached(
        r#"SELECT "column", value FROM bae_sync_parked WHERE table_name = ?1 AND row_id = ?2"#,
    )?;
    let mut rows = stmt.query([table, row_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push((r.get(0)?, Value::from(r.get_ref(1)?)));
    }
    Ok(out)
}

/// Forgets the kept values of a row (it is present again).
pub(crate) fn unpark(conn: &Connection, table: &str, row_id: &str) -> Result<(), MergeError> {
    conn.prepare_cached("DELETE FROM bae_sync_parked WHERE table_name = ?1 AND row_id = ?2")?
        .execute([table, row_id])?;
    Ok(())
}

/// Ids of rows of `table` in `bae_sync_parked` (absent rows with kept values).
pub(crate) fn parked_ids(conn: &Connection, table: &str) -> Result<Vec<String>, MergeError> {
    let ids = conn
        .prepare_cached(
            "SELECT DISTINCT row_id FROM bae_sync_parked WHERE table_name = ?1 ORDER BY row_id",
        )?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Ids of parked rows of `table` whose kept `column` is `value` (absent
/// children of a parent, rivals for a unique key).
pub(crate) fn parked_ids_with(
    conn: &Connection,
    table: &str,
    column: &str,
    value: &Value,
) -> Result<Vec<String>, MergeError> {
    let ids = conn
        .prepare_cached(
            r#"SELECT row_id FROM bae_sync_parked WHERE table_name = ?1 AND "column" = ?2 AND value = ?3 ORDER BY row_id"#,
        )?
        .query_map(params![table, column, value], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Ids of present rows of `table` whose `columns` hold `values`.
pub(crate) fn ids_with_values(
    conn: &Connection,
    table: &str,
    columns: &[&str],
    values: &[Value],
) -> Result<Vec<String>, MergeError> {
    let filter: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    let sql = format!(
        "SELECT id FROM {table} WHERE {} ORDER BY id",
        filter.join(" AND ")
    );
    let params: Vec<&dyn rusqlite::ToSql> =
        values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
    let ids = conn
        .prepare_cached(&sql)?
        .query_map(params.as_slice(), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}
