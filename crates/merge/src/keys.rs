//! How the stamp tables key a row (`row_key`): an id containing canonical
//! lowercase UUIDs (`8-4-4-4-12` lowercase hex digits: bae's ids are UUIDs
//! or made of them, `af:{uuid}`, `{uuid}:{uuid}`) is stored as a BLOB in
//! which each such UUID is a zero byte and its 16 bytes and every other
//! byte stands for itself; any other id (or one with a zero byte) stays
//! TEXT. A key decodes back to exactly its id, so two ids never share a key
//! (and a BLOB never equals a TEXT in SQLite). The encoding is the op log's
//! ([`bae_oplog::row_id_to_sql`]), which stores its row ids the same way.
//!
//! | bytes | meaning |
//! |---|---|
//! | `00` + 16 bytes | a UUID, spelled back in canonical lowercase form |
//! | any other byte | itself (the id's UTF-8) |

use crate::error::MergeError;
use rusqlite::types::{Value as SqlValue, ValueRef};

/// The key of a row id.
pub(crate) fn row_key(id: &str) -> SqlValue {
    bae_oplog::row_id_to_sql(id)
}

/// The row id a stored key stands for; `table` names the row in the error
/// when the key is not TEXT or a well-formed BLOB (a UUID cut short,
/// bytes that are not UTF-8).
pub(crate) fn row_id_of(table: &str, key: ValueRef<'_>) -> Result<String, MergeError> {
    bae_oplog::row_id_from_sql(key).ok_or_else(|| MergeError::CorruptStamp {
        table: table.to_owned(),
        row_id: match key {
            ValueRef::Text(b) | ValueRef::Blob(b) => hex::encode(b),
            ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => String::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const UUID: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

    fn round_trip(id: &str) -> SqlValue {
        let key = row_key(id);
        let back = match &key {
            SqlValue::Blob(b) => row_id_of("t", ValueRef::Blob(b)).unwrap(),
            SqlValue::Text(t) => row_id_of("t", ValueRef::Text(t.as_bytes())).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(back, id);
        key
    }

    #[test]
    fn uuids_inside_ids_pack_and_every_id_comes_back() {
        assert_eq!(
            round_trip(UUID),
            SqlValue::Blob(
                [
                    &[0u8][..],
                    &hex::decode("0a1b2c3d4e5f6789abcdef0123456789").unwrap()
                ]
                .concat()
            )
        );
        for (id, len) in [
            (format!("af:{UUID}"), 20),
            (format!("{UUID}:{UUID}"), 35),
            (format!("{UUID}{UUID}"), 34),
            (format!("x{UUID}y"), 19),
        ] {
            match round_trip(&id) {
                SqlValue::Blob(b) => assert_eq!(b.len(), len, "{id}"),
                other => panic!("{id}: {other:?}"),
            }
        }
    }

    #[test]
    fn ids_without_a_canonical_uuid_stay_text() {
        for id in [
            "0A1B2C3D-4E5F-6789-ABCD-EF0123456789",
            "0a1b2c3d4e5f6789abcdef0123456789",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678",
            "0a1b2c3d-4e5f-6789-abcd+ef0123456789",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678g",
            "row-1",
            "",
            "é",
        ] {
            assert_eq!(round_trip(id), SqlValue::Text(id.to_owned()), "{id}");
        }
        let with_nul = format!("{UUID}\0");
        assert_eq!(round_trip(&with_nul), SqlValue::Text(with_nul.clone()));
    }

    #[test]
    fn a_key_of_the_wrong_shape_is_a_corrupt_stamp() {
        let cut = [0u8, 1, 2, 3];
        let not_utf8 = [b'a', 0xff];
        for key in [
            ValueRef::Blob(&cut),
            ValueRef::Blob(&not_utf8),
            ValueRef::Text(&not_utf8),
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
