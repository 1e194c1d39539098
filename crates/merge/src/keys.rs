//! How the stamp tables key a row (`row_key`): a row id in canonical
//! lowercase UUID form (`8-4-4-4-12` lowercase hex digits, what bae's ids
//! are) is stored as its 16 bytes, any other id as its TEXT. The mapping is
//! one to one (only the canonical spelling is packed, and a BLOB never
//! equals a TEXT in SQLite), so a key always gives back the id it came
//! from. Migration `0002_compact_stamps.sql` spells out the same rule.

use crate::error::MergeError;
use rusqlite::types::{Value as SqlValue, ValueRef};

/// Positions of the hyphens in a canonical UUID.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// The key of a row id.
pub(crate) fn row_key(id: &str) -> SqlValue {
    match packed(id) {
        Some(bytes) => SqlValue::Blob(bytes.to_vec()),
        None => SqlValue::Text(id.to_owned()),
    }
}

fn packed(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !HYPHENS.contains(i))
        .map(|(_, c)| *c);
    for (i, c) in b.iter().enumerate() {
        if HYPHENS.contains(&i) != (*c == b'-') {
            return None;
        }
    }
    for byte in &mut out {
        let hi = lower_hex(digits.next()?)?;
        let lo = lower_hex(digits.next()?)?;
        *byte = hi << 4 | lo;
    }
    Some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The row id a stored key stands for; `table` names the row in the error
/// when the key is neither TEXT nor 16 bytes.
pub(crate) fn row_id_of(table: &str, key: ValueRef<'_>) -> Result<String, MergeError> {
    match key {
        ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|_| corrupt(table, "")),
        ValueRef::Blob(b) => {
            let bytes: [u8; 16] = b.try_into().map_err(|_| corrupt(table, &hex::encode(b)))?;
            let x = hex::encode(bytes);
            Ok(format!(
                "{}-{}-{}-{}-{}",
                &x[..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..]
            ))
        }
        _ => Err(corrupt(table, "")),
    }
}

fn corrupt(table: &str, row: &str) -> MergeError {
    MergeError::CorruptStamp {
        table: table.to_owned(),
        row_id: row.to_owned(),
    }
}

/// SQL for the key of the row id `expr` (a column or parameter), for
/// statements that join the stamps with a synced table.
pub(crate) fn row_key_sql(expr: &str) -> String {
    let digit = "[0-9a-f]";
    let pattern = [8, 4, 4, 4, 12]
        .iter()
        .map(|n| digit.repeat(*n))
        .collect::<Vec<_>>()
        .join("-");
    format!(
        "(CASE WHEN {expr} GLOB '{pattern}' THEN unhex(replace({expr}, '-', '')) ELSE {expr} END)"
    )
}

/// SQL for the row id of the stored key `expr` (a 16-byte key back to its
/// canonical UUID spelling), for ordering stamps as their ids order.
pub(crate) fn row_id_sql(expr: &str) -> String {
    let hex = format!("lower(hex({expr}))");
    let parts = [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]
        .iter()
        .map(|(at, n)| format!("substr({hex}, {at}, {n})"))
        .collect::<Vec<_>>()
        .join(" || '-' || ");
    format!("(CASE WHEN typeof({expr}) = 'blob' THEN {parts} ELSE {expr} END)")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn canonical_uuids_pack_and_everything_else_stays_text() {
        let uuid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
        let SqlValue::Blob(b) = row_key(uuid) else {
            panic!("a canonical UUID packs")
        };
        assert_eq!(b.len(), 16);
        assert_eq!(row_id_of("t", ValueRef::Blob(&b)).unwrap(), uuid);
        for other in [
            "0A1B2C3D-4E5F-6789-ABCD-EF0123456789",
            "0a1b2c3d4e5f6789abcdef0123456789",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678",
            "0a1b2c3d-4e5f-6789-abcd-ef01234567890",
            "0a1b2c3d-4e5f-6789-abcd+ef0123456789",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678g",
            "row-1",
            "",
        ] {
            assert_eq!(row_key(other), SqlValue::Text(other.to_owned()), "{other}");
            assert_eq!(
                row_id_of("t", ValueRef::Text(other.as_bytes())).unwrap(),
                other
            );
        }
    }

    #[test]
    fn the_sql_key_is_the_rust_key() {
        let conn = Connection::open_in_memory().unwrap();
        let sql = format!("SELECT {}", row_key_sql("?1"));
        for id in [
            "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            "0A1B2C3D-4E5F-6789-ABCD-EF0123456789",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678g",
            "row-1",
        ] {
            let key: SqlValue = conn.query_row(&sql, [id], |r| r.get(0)).unwrap();
            assert_eq!(key, row_key(id), "{id}");
            let back: String = conn
                .query_row(&format!("SELECT {}", row_id_sql("?1")), [key], |r| r.get(0))
                .unwrap();
            assert_eq!(back, id);
        }
    }

    #[test]
    fn a_key_of_the_wrong_shape_is_a_corrupt_stamp() {
        for key in [
            ValueRef::Blob(&[1, 2, 3]),
            ValueRef::Integer(7),
            ValueRef::Null,
        ] {
            assert!(matches!(
                row_id_of("tracks", key),
                Err(MergeError::CorruptStamp { .. })
            ));
        }
    }
}
