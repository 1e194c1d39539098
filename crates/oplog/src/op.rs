//! The op model: what one recorded write is.

use bae_hlc::{DeviceId, Timestamp};
use serde::{Deserialize, Serialize};

/// A SQLite value carried by an op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Value {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Blob(b)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// What an op does to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// The row was created with these synced fields.
    Insert,
    /// These synced fields of the row changed.
    Update,
    /// The row was deleted.
    Delete,
}

impl OpKind {
    /// The `op_log.kind` code.
    pub fn code(self) -> i64 {
        match self {
            OpKind::Insert => 0,
            OpKind::Update => 1,
            OpKind::Delete => 2,
        }
    }

    /// The kind for an `op_log.kind` code.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(OpKind::Insert),
            1 => Some(OpKind::Update),
            2 => Some(OpKind::Delete),
            _ => None,
        }
    }
}

/// One recorded write to one row of a synced table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// When, by the recording device's clock.
    pub hlc: Timestamp,
    /// The synced table.
    pub table: String,
    /// The row's `id`.
    pub row_id: String,
    /// Insert, update or delete.
    pub kind: OpKind,
    /// The synced fields written (empty for a delete), in write order.
    pub fields: Vec<(String, Value)>,
}

/// The number of a device's batch: its local transactions that recorded ops,
/// counted from 1. It is the `{seq}` of the batch's object in the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchSeq(pub u64);

impl std::fmt::Display for BatchSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The BLAKE3 hash of an encoded batch; each batch names its predecessor's,
/// chaining a device's stream so a gap, swap or rollback shows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchHash(pub [u8; 32]);

impl BatchHash {
    /// The hash of encoded batch bytes.
    pub fn of(encoded: &[u8]) -> Self {
        BatchHash(*blake3::hash(encoded).as_bytes())
    }
}

impl std::fmt::Debug for BatchHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchHash({})", hex::encode(&self.0[..8]))
    }
}

/// One transaction's ops, as a device sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The version of the sync schema its writer ran
    /// ([`crate::SyncSchema::version`]); 0 for a batch of format 1, which
    /// predates versions. The codec frames it ahead of the postcard body.
    #[serde(skip)]
    pub schema_version: u32,
    /// The recording device.
    pub device: DeviceId,
    /// Its number in the device's stream.
    pub seq: BatchSeq,
    /// Hash of the device's previous batch (`None` for its first).
    pub prev: Option<BatchHash>,
    /// The ops in the order they were recorded.
    pub ops: Vec<Op>,
}

impl Batch {
    /// The newest HLC in the batch.
    pub fn max_hlc(&self) -> Option<Timestamp> {
        self.ops.iter().map(|o| o.hlc).max()
    }
}
