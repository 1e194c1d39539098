//! How the op log stores row ids and text values compactly: a string
//! containing canonical lowercase UUIDs (`8-4-4-4-12` lowercase hex digits:
//! bae's ids are UUIDs or made of them, `{uuid}:{uuid}`, and its foreign
//! keys are ids) is stored as bytes in which each such UUID is a zero byte
//! and its 16 bytes and every other byte stands for itself; any other
//! string (or one with a zero byte) is stored as it is. Packed bytes decode
//! back to exactly their string. Merge keys its stamp tables the same
//! way ([`row_id_to_sql`]); only local tables use it, never a batch.
//!
//! | bytes | meaning |
//! |---|---|
//! | `00` + 16 bytes | a UUID, spelled back in canonical lowercase form |
//! | any other byte | itself (the string's UTF-8) |

use crate::op::Value;
use serde::{Deserialize, Serialize};

/// Positions of the hyphens in a canonical UUID.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];
const UUID_LEN: usize = 36;
const UUID_TAG: u8 = 0;

/// The packed bytes of `s`, if it contains a UUID to pack.
pub(crate) fn pack(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() < UUID_LEN || b.contains(&UUID_TAG) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut packed_any = false;
    let mut i = 0;
    while i < b.len() {
        if let Some(uuid) = b.get(i..i + UUID_LEN).and_then(uuid_bytes) {
            out.push(UUID_TAG);
            out.extend_from_slice(&uuid);
            packed_any = true;
            i += UUID_LEN;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    packed_any.then_some(out)
}

/// The string packed bytes stand for; `None` if they are not packed bytes.
pub(crate) fn unpack(b: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(b.len() + 20);
    let mut i = 0;
    while i < b.len() {
        if b[i] == UUID_TAG {
            let uuid = b.get(i + 1..i + 17)?;
            for (j, byte) in uuid.iter().enumerate() {
                if matches!(j, 4 | 6 | 8 | 10) {
                    out.push(b'-');
                }
                out.push(hex_digit(byte >> 4));
                out.push(hex_digit(byte & 0xf));
            }
            i += 17;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The 16 bytes of a canonical lowercase UUID spelling, if it is one.
fn uuid_bytes(s: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut n = 0;
    for (i, c) in s.iter().enumerate() {
        if HYPHENS.contains(&i) {
            if *c != b'-' {
                return None;
            }
            continue;
        }
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[n / 2] |= if n % 2 == 0 { d << 4 } else { d };
        n += 1;
    }
    Some(out)
}

fn hex_digit(d: u8) -> u8 {
    if d < 10 {
        b'0' + d
    } else {
        b'a' + d - 10
    }
}

/// A row id as the op log stores it, and merge's stamp tables key it: TEXT
/// as given, or a BLOB of its packed bytes (the table in this module's
/// docs). A BLOB never equals a TEXT in SQLite, so two ids never share a
/// stored form.
pub fn row_id_to_sql(id: &str) -> rusqlite::types::Value {
    match pack(id) {
        Some(b) => rusqlite::types::Value::Blob(b),
        None => rusqlite::types::Value::Text(id.to_owned()),
    }
}

/// The row id a cell stored by [`row_id_to_sql`] stands for; `None` if it
/// is neither TEXT nor well-formed packed bytes (a UUID cut short, bytes
/// that are not UTF-8).
pub fn row_id_from_sql(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_owned),
        ValueRef::Blob(b) => unpack(b),
        _ => None,
    }
}

/// A field value in an op-log payload (postcard). Variants 0-4 are
/// [`Value`]'s, so payloads written before packing (version 2 of the op
/// log) read unchanged; `PackedText` is a text value holding a UUID.
#[derive(Serialize)]
pub(crate) enum StoredRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    PackedText(Vec<u8>),
}

impl<'a> StoredRef<'a> {
    /// A text value: packed if it holds a UUID.
    pub(crate) fn text(s: &'a str) -> Self {
        pack(s).map_or(StoredRef::Text(s), StoredRef::PackedText)
    }
}

impl<'a> From<&'a Value> for StoredRef<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => StoredRef::Null,
            Value::Integer(i) => StoredRef::Integer(*i),
            Value::Real(f) => StoredRef::Real(*f),
            Value::Text(s) => StoredRef::text(s),
            Value::Blob(b) => StoredRef::Blob(b),
        }
    }
}

/// [`StoredRef`], read back.
#[derive(Deserialize)]
pub(crate) enum Stored {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    PackedText(Vec<u8>),
}

impl Stored {
    /// The value; `None` for packed bytes that stand for no string.
    pub(crate) fn into_value(self) -> Option<Value> {
        Some(match self {
            Stored::Null => Value::Null,
            Stored::Integer(i) => Value::Integer(i),
            Stored::Real(f) => Value::Real(f),
            Stored::Text(s) => Value::Text(s),
            Stored::Blob(b) => Value::Blob(b),
            Stored::PackedText(b) => Value::Text(unpack(&b)?),
        })
    }

    /// The text a row id stored by [`StoredRef::text`] stands for.
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Stored::Text(s) => Some(s),
            Stored::PackedText(b) => unpack(&b),
            _ => None,
        }
    }
}

/// How many bytes of encoded ops the recorder gathers before it writes
/// them as one op-log row (a row may pass it by one op). Small, so rows
/// pack SQLite's 4 KiB pages: a row of more than about 4 KB spills into an
/// overflow page and leaves a leaf holding about 2 KB of it that no other
/// row fits beside. The op log of 200 albums (1.24 MB of ops), on disk:
/// one row per transaction (about 6 KB) 1.64 MB, rows of 1,700 bytes
/// 1.64 MB, of 800 bytes 1.43 MB (version 3: 1.45 MB). An album import
/// is still a handful of inserts where it was one per op.
pub(crate) const CHUNK_BYTES: usize = 800;

/// The ops of one op-log row (`bae_sync_op_log`, version 4), as the
/// recorder gathers them: postcard of `(base_hlc: u64, ops: Vec<op>)`,
/// each op `(hlc_delta: i64, table_id: i64, kind: u8, row_id: Stored,
/// fields: Vec<(u8, Stored)>)`, where an op's HLC is the previous op's
/// (the first's: `base_hlc`) plus its delta, so an op spends a byte or
/// two on its HLC, not eight. The ops are consecutive seqs ending at the
/// row's `last_seq`, all of one batch.
pub(crate) struct ChunkWriter {
    base: u64,
    prev: u64,
    count: usize,
    ops: Vec<u8>,
}

/// One op, read back from a chunk.
pub(crate) struct StoredOp {
    pub(crate) hlc: u64,
    pub(crate) table_id: i64,
    pub(crate) kind: u8,
    pub(crate) row_id: Stored,
    pub(crate) fields: Vec<(u8, Stored)>,
}

impl ChunkWriter {
    /// An empty chunk.
    pub(crate) fn new() -> Self {
        ChunkWriter {
            base: 0,
            prev: 0,
            count: 0,
            ops: Vec::with_capacity(4096),
        }
    }

    /// How many ops it holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The bytes of its ops so far.
    pub(crate) fn bytes(&self) -> usize {
        self.ops.len()
    }

    /// Appends one op.
    pub(crate) fn push(
        &mut self,
        hlc: u64,
        table_id: i64,
        kind: u8,
        row_id: &str,
        fields: &[(u8, StoredRef<'_>)],
    ) -> Result<(), postcard::Error> {
        if self.count == 0 {
            self.base = hlc;
            self.prev = hlc;
        }
        // Two's-complement difference: exact for any pair of u64s, and
        // small for the rising clock of one transaction.
        let delta = hlc.wrapping_sub(self.prev) as i64;
        let row_id = StoredRef::text(row_id);
        let ops = std::mem::take(&mut self.ops);
        self.ops = postcard::to_extend(&(delta, table_id, kind, row_id, fields), ops)?;
        self.prev = hlc;
        self.count += 1;
        Ok(())
    }

    /// The row's bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        // The header of a postcard `(u64, Vec<_>)`: the base, then the
        // Vec's length; the ops' own encodings follow as its elements.
        let mut out = postcard::to_allocvec(&(self.base, self.count))?;
        out.extend_from_slice(&self.ops);
        Ok(out)
    }

    /// Empties it, once its row is written.
    pub(crate) fn clear(&mut self) {
        self.ops.clear();
        self.count = 0;
    }
}

/// The ops of a chunk's bytes, oldest first.
pub(crate) fn read_chunk(bytes: &[u8]) -> Result<Vec<StoredOp>, String> {
    type Raw = (i64, i64, u8, Stored, Vec<(u8, Stored)>);
    let (base, raw): (u64, Vec<Raw>) = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    let mut prev = base;
    Ok(raw
        .into_iter()
        .map(|(delta, table_id, kind, row_id, fields)| {
            prev = prev.wrapping_add(delta as u64);
            StoredOp {
                hlc: prev,
                table_id,
                kind,
                row_id,
                fields,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const U: &str = "0b4c2a6e-1f3d-4e5a-9b7c-8d6e5f4a3b2c";

    #[test]
    fn ids_made_of_uuids_pack_and_others_stay_text() {
        let joined = format!("{U}:{U}");
        for s in [U, joined.as_str(), &format!("af:{U}")] {
            let p = pack(s).unwrap();
            assert!(p.len() < s.len());
            assert_eq!(unpack(&p).unwrap(), s);
        }
        for s in ["a1", "", &U.to_uppercase(), &U[1..], &format!("\0{U}")] {
            assert_eq!(pack(s), None, "{s:?}");
        }
        assert_eq!(unpack(&[0, 1, 2]), None, "a cut UUID");
    }

    #[test]
    fn a_value_written_before_packing_reads_the_same() {
        let values = vec![
            (0u8, Value::Null),
            (1, Value::Integer(-7)),
            (2, Value::Real(1.5)),
            (3, Value::Text(U.into())),
            (4, Value::Blob(vec![1, 2])),
        ];
        let old = postcard::to_allocvec(&values).unwrap();
        let read: Vec<(u8, Stored)> = postcard::from_bytes(&old).unwrap();
        let read: Vec<(u8, Value)> = read
            .into_iter()
            .map(|(i, v)| (i, v.into_value().unwrap()))
            .collect();
        assert_eq!(read, values);
        let new: Vec<(u8, StoredRef<'_>)> = values.iter().map(|(i, v)| (*i, v.into())).collect();
        assert!(postcard::to_allocvec(&new).unwrap().len() < old.len());
    }

    proptest! {
        /// Any HLCs, rising or not, any tables, kinds, ids and values read
        /// back as pushed, in order.
        #[test]
        fn a_chunk_reads_back_its_ops(
            ops in proptest::collection::vec(
                (any::<u64>(), any::<i64>(), any::<u8>(), prop_oneof![Just(U.to_owned()), ".{0,8}"],
                 proptest::collection::vec((any::<u8>(), any::<i64>()), 0..4)),
                0..20,
            )
        ) {
            let mut chunk = ChunkWriter::new();
            for (hlc, table, kind, id, fields) in &ops {
                let values: Vec<(u8, Value)> =
                    fields.iter().map(|(i, v)| (*i, Value::Integer(*v))).collect();
                let stored: Vec<(u8, StoredRef<'_>)> =
                    values.iter().map(|(i, v)| (*i, v.into())).collect();
                chunk.push(*hlc, *table, *kind, id, &stored).unwrap();
            }
            prop_assert_eq!(chunk.len(), ops.len());
            let read = read_chunk(&chunk.encode().unwrap()).unwrap();
            prop_assert_eq!(read.len(), ops.len());
            for (r, (hlc, table, kind, id, fields)) in read.into_iter().zip(&ops) {
                prop_assert_eq!(r.hlc, *hlc);
                prop_assert_eq!(r.table_id, *table);
                prop_assert_eq!(r.kind, *kind);
                prop_assert_eq!(r.row_id.into_text(), Some(id.clone()));
                let values: Vec<(u8, Value)> =
                    r.fields.into_iter().map(|(i, v)| (i, v.into_value().unwrap())).collect();
                let want: Vec<(u8, Value)> =
                    fields.iter().map(|(i, v)| (*i, Value::Integer(*v))).collect();
                prop_assert_eq!(values, want);
            }
            chunk.clear();
            prop_assert_eq!(read_chunk(&chunk.encode().unwrap()).unwrap().len(), 0);
        }

        #[test]
        fn any_string_round_trips(
            parts in proptest::collection::vec(
                prop_oneof![Just(U.to_owned()), ".{0,6}", "[0-9a-f-]{30,40}"],
                0..5,
            )
        ) {
            let s: String = parts.concat();
            if let Some(p) = pack(&s) {
                prop_assert_eq!(unpack(&p), Some(s));
            }
        }
    }
}
