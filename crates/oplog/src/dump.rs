//! A canonical dump of the synced tables: equal libraries, equal dumps.

use crate::error::OplogError;
use crate::op::Value;
use crate::schema::SyncSchema;
use rusqlite::Connection;
use std::fmt::Write;

/// Every synced table's synced columns, rows sorted by id, one line per row,
/// values in an unambiguous text form. Local-only columns never appear.
pub fn canonical_dump(conn: &Connection, schema: &SyncSchema) -> Result<String, OplogError> {
    let mut out = String::new();
    for table in schema.tables() {
        let mut stmt = conn.prepare(&table.select_rows_sql())?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let _ = write!(out, "{} {id:?}", table.name);
            for (i, column) in table.columns.iter().enumerate() {
                let value = Value::from(row.get_ref(i + 1)?);
                let _ = write!(out, " {column}=");
                render(&mut out, &value);
            }
            out.push('\n');
        }
    }
    Ok(out)
}

fn render(out: &mut String, value: &Value) {
    let _ = match value {
        Value::Null => write!(out, "NULL"),
        Value::Integer(i) => write!(out, "{i}"),
        Value::Real(f) => write!(out, "{f:?}"),
        Value::Text(s) => write!(out, "{s:?}"),
        Value::Blob(b) => write!(out, "x'{}'", hex::encode(b)),
    };
}
