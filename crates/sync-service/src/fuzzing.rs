//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by
//! default): the decoders of bucket bytes this crate keeps private, and
//! real encodings to seed the fuzzers' corpora. Not an API for hosts.

use crate::checkpoint::{
    check_body, checkpoint_place, CheckpointCursor, CheckpointError, CheckpointHeader, Record,
    RecordReader, RecordWriter, CHECKPOINT_FORMAT_VERSION,
};
use crate::marker::{LibraryMarker, MarkerError};
use bae_crypto::{seal_object, KeyEpoch, LibraryKey, ObjectPlace};
use bae_oplog::{SyncSchema, Value};

/// Decodes a library marker's plaintext as `join` does.
pub fn decode_marker(plaintext: &[u8]) -> Result<LibraryMarker, MarkerError> {
    LibraryMarker::decode(plaintext)
}

/// Encodes a library marker's plaintext.
pub fn encode_marker(marker: &LibraryMarker) -> Vec<u8> {
    postcard::to_allocvec(marker).unwrap_or_default()
}

/// The sealed marker `init` writes for `key` (a fixed founder and founding
/// device), and the place it is read at.
pub fn sealed_marker(key: &LibraryKey) -> (Vec<u8>, ObjectPlace) {
    let founder = bae_crypto::IdentitySigningKey::from_seed(&[7; 32]).public_key();
    let device = bae_hlc::DeviceId::from_bytes([7; 16]);
    (
        crate::marker::seal(key, &founder, device),
        crate::marker::place(),
    )
}

/// A checkpoint plaintext read as a restore reads it (header, every body
/// record checked against `schema`, the end marker), re-encoded record by
/// record: decoding the re-encoding must give the same bytes again.
pub fn decode_checkpoint(
    plaintext: &[u8],
    schema: &SyncSchema,
) -> Result<Vec<u8>, CheckpointError> {
    let mut reader = RecordReader::new(plaintext);
    let header = reader.header()?;
    let mut out = RecordWriter::new(Vec::new());
    out.write(&Record::Header(header.clone()))?;
    let records = check_body(&mut reader, &header, schema, |record| out.write(record))?;
    out.write(&Record::End { records })?;
    Ok(out.finish()?.0)
}

/// A valid checkpoint plaintext over `schema`'s first table (one row, its
/// stamps, a tombstone and a parked value), for seeding the corpus.
pub fn sample_checkpoint(schema: &SyncSchema) -> Vec<u8> {
    let Some(table) = schema.tables().first() else {
        return Vec::new();
    };
    let hlc = 1 << 20;
    let device = [9; 16];
    let column = table.columns.first().copied().unwrap_or_default();
    let values = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, _)| match i % 4 {
            0 => Value::Text("a".into()),
            1 => Value::Integer(7),
            2 => Value::Null,
            _ => Value::Blob(vec![1, 2]),
        })
        .collect();
    let body = [
        Record::Row {
            table: table.name.into(),
            id: "r1".into(),
            values,
        },
        Record::Stamp {
            table: table.name.into(),
            row_id: "r1".into(),
            column: column.into(),
            hlc: hlc - 1,
            device,
        },
        Record::Tombstone {
            table: table.name.into(),
            row_id: "r2".into(),
            hlc: hlc - 2,
            device,
        },
        Record::Parked {
            table: table.name.into(),
            row_id: "r3".into(),
            column: column.into(),
            value: Value::Real(0.5),
        },
    ];
    let header = CheckpointHeader {
        version: CHECKPOINT_FORMAT_VERSION,
        id: format!("{hlc:020}-00"),
        writer: device,
        hlc,
        created_ms: 1_700_000_000_000,
        schema_version: 1,
        records: body.len() as u64,
        cursors: vec![CheckpointCursor {
            device,
            seq: 3,
            hash: Some([5; 32]),
        }],
    };
    let mut out = RecordWriter::new(Vec::new());
    let written = std::iter::once(Record::Header(header))
        .chain(body)
        .chain([Record::End { records: 4 }])
        .try_for_each(|r| out.write(&r));
    match (written, out.finish()) {
        (Ok(()), Ok((bytes, _))) => bytes,
        _ => Vec::new(),
    }
}

/// [`sample_checkpoint`] sealed as the checkpoint object it would be, and
/// the place it is read at.
pub fn sealed_checkpoint(key: &LibraryKey, schema: &SyncSchema) -> (Vec<u8>, ObjectPlace) {
    let place = checkpoint_place([9; 16], 1 << 20);
    let sealed = seal_object(key, KeyEpoch::FIRST, &place, &sample_checkpoint(schema));
    (sealed, place)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_sample_checkpoint_decodes_to_itself() {
        let bytes = sample_checkpoint(&bae_oplog::BAE_SCHEMA);
        assert!(!bytes.is_empty());
        assert_eq!(
            decode_checkpoint(&bytes, &bae_oplog::BAE_SCHEMA).unwrap(),
            bytes
        );
    }

    #[test]
    fn the_sealed_marker_opens_and_decodes() {
        let key = LibraryKey::from_bytes([1; 32]);
        let (sealed, place) = sealed_marker(&key);
        let plain = bae_crypto::open_object(&(KeyEpoch::FIRST, &key), &place, &sealed).unwrap();
        let marker = decode_marker(&plain).unwrap();
        assert_eq!(encode_marker(&marker), plain);
    }
}
