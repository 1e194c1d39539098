//! How the stamp tables key a row (`row_key`). An id containing canonical
//! lowercase UUIDs (`8-4-4-4-12` lowercase hex digits: bae's ids are UUIDs
//! or made of them, `af:{uuid}`, `{uuid}:{uuid}`) is stored as a BLOB that
//! starts with the 16 bytes of its first UUID, followed by the id in the
//! op log's packed form ([`bae_oplog::row_id_to_sql`]: each UUID a zero
//! byte and its 16 bytes, every other byte itself) with that first UUID
//! left out: its zero byte alone marks where it goes. Any other id (or one
//! with a zero byte) stays TEXT. A key decodes back to exactly its id, so
//! two ids never share a key (and a BLOB never equals a TEXT in SQLite).
//!
//! | bytes | meaning |
//! |---|---|
//! | first 16 | the id's first UUID |
//! | `00` (the first one after them) | where the first UUID goes |
//! | `00` + 16 bytes (any later one) | a UUID, spelled back in canonical lowercase form |
//! | any other byte | itself (the id's UTF-8) |
//!
//! The first UUID leads so that the stamps of rows whose ids are made
//! from one row's id sort beside that row's (bae derives join and child
//! ids so: a track `{t}`, its credit `{t}:{artist}`, its audio format
//! `af:{t}`): a batch that inserts them touches one page of the row
//! stamps, not three (`bae_sync_row_stamps` is keyed by row key first;
//! migration `0005_clustered_row_keys`).

use crate::error::MergeError;
use rusqlite::types::{Value as SqlValue, ValueRef};

/// The key of a row id.
pub(crate) fn row_key(id: &str) -> SqlValue {
    match bae_oplog::row_id_to_sql(id) {
        SqlValue::Blob(packed) => SqlValue::Blob(lead_first_uuid(&packed).unwrap_or(packed)),
        other => other,
    }
}

/// The op log's packed form with its first UUID moved to the front (its
/// zero byte stays where it was); `None` if it has no whole UUID.
fn lead_first_uuid(packed: &[u8]) -> Option<Vec<u8>> {
    let at = packed.iter().position(|b| *b == 0)?;
    let uuid = packed.get(at + 1..at + 17)?;
    let mut key = Vec::with_capacity(packed.len());
    key.extend_from_slice(uuid);
    key.extend_from_slice(&packed[..=at]);
    key.extend_from_slice(&packed[at + 17..]);
    Some(key)
}

/// The op log's packed form of a key's id: the leading UUID put back at
/// the first zero byte after it; `None` if the key has no such byte.
fn packed_of(key: &[u8]) -> Option<Vec<u8>> {
    let (uuid, rest) = key.split_at_checked(16)?;
    let at = rest.iter().position(|b| *b == 0)?;
    let mut packed = Vec::with_capacity(key.len());
    packed.extend_from_slice(&rest[..=at]);
    packed.extend_from_slice(uuid);
    packed.extend_from_slice(&rest[at + 1..]);
    Some(packed)
}

/// The row id a stored key stands for; `table` names the row in the error
/// when the key is not TEXT or a well-formed BLOB (a UUID cut short,
/// bytes that are not UTF-8).
pub(crate) fn row_id_of(table: &str, key: ValueRef<'_>) -> Result<String, MergeError> {
    let id = match key {
        ValueRef::Blob(b) => {
            packed_of(b).and_then(|p| bae_oplog::row_id_from_sql(ValueRef::Blob(&p)))
        }
        other => bae_oplog::row_id_from_sql(other),
    };
    id.ok_or_else(|| MergeError::CorruptStamp {
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
                    &hex::decode("0a1b2c3d4e5f6789abcdef0123456789").unwrap()[..],
                    &[0u8][..]
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
    fn ids_made_from_one_row_id_lead_with_its_uuid() {
        let other = "ffeeddcc-bbaa-9988-7766-554433221100";
        let keys: Vec<Vec<u8>> = [
            UUID.to_owned(),
            format!("{UUID}:{other}"),
            format!("af:{UUID}"),
        ]
        .iter()
        .map(|id| match round_trip(id) {
            SqlValue::Blob(b) => b,
            other => panic!("{other:?}"),
        })
        .collect();
        let lead = hex::decode("0a1b2c3d4e5f6789abcdef0123456789").unwrap();
        for k in &keys {
            assert_eq!(&k[..16], lead.as_slice());
        }
        // The op log's form, for comparison, leads with the zero byte or
        // the prefix.
        let SqlValue::Blob(packed) = bae_oplog::row_id_to_sql(&format!("af:{UUID}")) else {
            panic!("not packed");
        };
        assert_eq!(&packed[..3], b"af:");
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
        // A leading UUID with no zero byte after it to say where it goes.
        let nowhere = [7u8; 20];
        for key in [
            ValueRef::Blob(&cut),
            ValueRef::Blob(&nowhere),
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
