//! Ties between writes of one field with equal stamps.
//!
//! A stamp is `(hlc, device)`, so two writes share one only if one device
//! stamped both: a device that went back to a backup hands out its copy's
//! clock again (its new writes can reuse the stamps of writes it published
//! and then lost), and a member's key can sign two ops with one stamp on
//! purpose. Deciding such a tie by arrival (keep the value seen first)
//! splits devices for good, so the tie goes to the greater value under
//! [`value_order`], a fixed total order: which value a field ends with is
//! then a function of the set of writes, as everything else in merge is.
//!
//! Values are compared as their column stores them: SQLite converts a value
//! by the column's type affinity (an integer written to a `TEXT` column is
//! stored as text, a well-formed number in text to an `INTEGER` column as a
//! number), and a present row holds only the converted value. Comparing the
//! written value with the stored one could rank the same pair differently
//! on two devices (`'5'` and `7` in an `INTEGER` column: text above integer
//! as written, 5 below 7 as stored), so both sides are converted first.

use crate::error::MergeError;
use bae_oplog::{TableSchema, Value};
use rusqlite::Connection;
use std::cmp::Ordering;

/// The total order that breaks ties between equal stamps: by kind first
/// (NULL < INTEGER < REAL < TEXT < BLOB), then integers by value, reals by
/// IEEE 754 total order, text by its UTF-8 bytes and blobs by their bytes
/// (`docs/FORMAT-sync.md`, merge rules). Fixed: changing it would make
/// devices of different versions settle ties differently.
pub fn value_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) => 1,
            Value::Real(_) => 2,
            Value::Text(_) => 3,
            Value::Blob(_) => 4,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether `incoming`, written to `column` with the same stamp as the
/// field's `current` value, wins the tie: its stored form is greater.
/// With no current value (a field whose value no revival can bring back,
/// or none was ever kept) the incoming value takes the field; it is kept
/// only where a value written at that stamp would be.
pub(crate) fn wins_tie(
    conn: &Connection,
    table: &TableSchema,
    column: &str,
    incoming: &Value,
    current: Option<&Value>,
) -> Result<bool, MergeError> {
    let Some(current) = current else {
        return Ok(true);
    };
    let affinity = column_affinity(conn, table, column)?;
    let incoming = stored_form(conn, affinity, incoming)?;
    let current = stored_form(conn, affinity, current)?;
    Ok(value_order(&incoming, &current) == Ordering::Greater)
}

/// The columns of `bae_sync_value_forms`, one of each type affinity.
const AFFINITIES: [&str; 5] = ["as_integer", "as_text", "as_blob", "as_real", "as_numeric"];

/// Whether `a` ranks above `b` as a column of `affinity` stores them,
/// equal stored forms ranked as written: a total order whose greatest
/// value has the stored form a tie of a known column settles on.
fn above(conn: &Connection, affinity: &str, a: &Value, b: &Value) -> Result<bool, MergeError> {
    let by_form = value_order(
        &stored_form(conn, affinity, a)?,
        &stored_form(conn, affinity, b)?,
    );
    Ok(by_form.then_with(|| value_order(a, b)) == Ordering::Greater)
}

/// The greatest of `values` under [`above`] for `affinity`.
fn greatest<'v>(
    conn: &Connection,
    affinity: &str,
    values: &[&'v Value],
) -> Result<Option<&'v Value>, MergeError> {
    let mut best: Option<&Value> = None;
    for v in values {
        if best.map_or(Ok(true), |b| above(conn, affinity, v, b))? {
            best = Some(v);
        }
    }
    Ok(best)
}

/// What to keep of `values`, written with one stamp to a column this
/// device does not know yet (a newer writer's), whose type affinity is
/// therefore unknown: for each affinity the greatest as it stores them,
/// so whichever the column turns out to have, the value its tie settles
/// on is among them ([`settled`]). At most five, in [`value_order`]; a
/// function of the set of values, whatever their arrival order.
pub(crate) fn tie_candidates(
    conn: &Connection,
    values: &[&Value],
) -> Result<Vec<Value>, MergeError> {
    let mut kept: Vec<Value> = Vec::with_capacity(AFFINITIES.len());
    for affinity in AFFINITIES {
        if let Some(best) = greatest(conn, affinity, values)? {
            if !kept.iter().any(|k| value_order(k, best) == Ordering::Equal) {
                kept.push(best.clone());
            }
        }
    }
    kept.sort_by(value_order);
    Ok(kept)
}

/// Of the values kept for `column` with one stamp ([`tie_candidates`]),
/// the one its tie settles on, now that the column is known here.
pub(crate) fn settled<'v>(
    conn: &Connection,
    table: &TableSchema,
    column: &str,
    values: &[&'v Value],
) -> Result<Option<&'v Value>, MergeError> {
    greatest(conn, column_affinity(conn, table, column)?, values)
}

/// A column's type affinity, by SQLite's rules on its declared type
/// (sqlite.org/datatype3.html, 3.1), as the name of the column of
/// `bae_sync_value_forms` that has it.
fn column_affinity(
    conn: &Connection,
    table: &TableSchema,
    column: &str,
) -> Result<&'static str, MergeError> {
    let mut declared = String::new();
    let mut stmt = conn.prepare_cached(&format!("PRAGMA table_info({})", table.name))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if r.get_ref(1)?.as_str().ok() == Some(column) {
            declared = r.get::<_, Option<String>>(2)?.unwrap_or_default();
        }
    }
    let declared = declared.to_ascii_uppercase();
    Ok(if declared.contains("INT") {
        "as_integer"
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| declared.contains(t))
    {
        "as_text"
    } else if declared.is_empty() || declared.contains("BLOB") {
        "as_blob"
    } else if ["REAL", "FLOA", "DOUB"]
        .iter()
        .any(|t| declared.contains(t))
    {
        "as_real"
    } else {
        "as_numeric"
    })
}

/// `value` as a column of `affinity` stores it, converted by SQLite itself
/// (a temporary table with one column of each affinity): its rules for
/// text that looks like a number are too fine to copy.
fn stored_form(conn: &Connection, affinity: &str, value: &Value) -> Result<Value, MergeError> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS bae_sync_value_forms
             (as_integer INTEGER, as_text TEXT, as_blob BLOB, as_real REAL, as_numeric NUMERIC);
         DELETE FROM temp.bae_sync_value_forms;",
    )?;
    let stored = conn
        .prepare_cached(&format!(
            "INSERT INTO temp.bae_sync_value_forms ({affinity}) VALUES (?1) RETURNING {affinity}"
        ))?
        .query_row([value], |r| Ok(Value::from(r.get_ref(0)?)))?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_order_is_total_and_ranks_kinds_first() {
        let values = [
            Value::Null,
            Value::Integer(-3),
            Value::Integer(7),
            Value::Real(-0.5),
            Value::Real(2.0),
            Value::Text(String::new()),
            Value::Text("B".into()),
            Value::Text("a".into()),
            Value::Blob(vec![]),
            Value::Blob(vec![0, 1]),
        ];
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                assert_eq!(value_order(a, b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    /// A table `t` with a column of each affinity: `n` INTEGER, `s` TEXT,
    /// `r` REAL, `b` none.
    fn one_column_per_affinity() -> (Connection, TableSchema) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, s TEXT, r REAL, b)")
            .unwrap();
        let table = TableSchema {
            name: "t",
            columns: &["n", "s", "r", "b"],
            parents: &[],
            unique: &[],
        };
        (conn, table)
    }

    #[test]
    fn values_compare_as_their_column_stores_them() {
        let (conn, table) = one_column_per_affinity();
        let wins = |c: &str, incoming: Value, current: Value| {
            wins_tie(&conn, &table, c, &incoming, Some(&current)).unwrap()
        };
        // '5' is stored as 5 in an INTEGER column: below 7, not above it
        // as text ranks above integers.
        assert!(!wins("n", "5".into(), Value::Integer(7)));
        assert!(wins("n", Value::Integer(7), "5".into()));
        // 12 is stored as '12' in a TEXT column: below '9'.
        assert!(!wins("s", Value::Integer(12), "9".into()));
        // An integer in a REAL column is a real.
        assert!(!wins("r", Value::Integer(2), Value::Real(2.5)));
        // No affinity: kinds as written.
        assert!(wins("b", "5".into(), Value::Integer(7)));
        // Equal stored forms: neither wins, the field keeps what it has.
        assert!(!wins("n", "5".into(), Value::Integer(5)));
        assert!(!wins("n", Value::Integer(5), "5".into()));
        assert!(wins_tie(&conn, &table, "n", &Value::Null, None).unwrap());
    }

    #[test]
    fn tie_candidates_hold_the_winner_of_every_affinity_in_any_order() {
        let (conn, table) = one_column_per_affinity();
        let values = [
            Value::from("5"),
            Value::Integer(7),
            Value::Integer(12),
            Value::from("9"),
            Value::Real(7.5),
        ];
        let refs: Vec<&Value> = values.iter().collect();
        let kept = tie_candidates(&conn, &refs).unwrap();
        assert!(kept.len() <= 5);
        let mut reversed = refs.clone();
        reversed.reverse();
        assert_eq!(tie_candidates(&conn, &reversed).unwrap(), kept);
        // Merged one at a time, as `keep` does, the same set.
        let mut acc: Vec<Value> = Vec::new();
        for v in &values {
            let mut with_it: Vec<&Value> = acc.iter().collect();
            with_it.push(v);
            acc = tie_candidates(&conn, &with_it).unwrap();
        }
        assert_eq!(acc, kept);
        let kept_refs: Vec<&Value> = kept.iter().collect();
        for (column, winner) in [
            // 7.5 stays a real in an INTEGER column: reals rank above.
            ("n", Value::Real(7.5)),
            ("s", Value::from("9")),
            ("r", Value::Integer(12)),
            ("b", Value::from("9")),
        ] {
            let all = settled(&conn, &table, column, &refs).unwrap().unwrap();
            let from_kept = settled(&conn, &table, column, &kept_refs).unwrap().unwrap();
            assert_eq!((all, from_kept), (&winner, &winner), "{column}");
        }
    }
}
