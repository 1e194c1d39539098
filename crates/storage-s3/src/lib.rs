//! Object stores for bae sync (layer 1, phase 1).
//!
//! Owns: the async object-store trait, the local-directory store (the
//! embedded default), the S3 store over rust-s3, and the bucket layout.
//!
//! Architecture invariant: `storage-s3` sees only opaque bytes; it knows
//! nothing of ops, keys or SQLite.
//!
//! Map:
//! - [`ObjectStore`] (`store.rs`): put, get (one object or many), range
//!   get, head, list, delete,
//!   and `put_file` / `get_to_file`, which stream large objects through
//!   bounded memory; [`StoreError`] (`error.rs`) says whether a failure is
//!   worth retrying.
//! - [`LocalDirStore`] (`local.rs`), [`MemoryStore`] (`memory.rs`),
//!   [`S3Store`] (`s3_store.rs`, retries by [`RetryPolicy`] in `retry.rs`).
//! - [`open_store`] / [`StoreConfig`] (`bucket_url.rs`): bucket URLs.
//! - [`layout`]: the bucket's key scheme, the only place keys are built.
//! - [`key`]: which keys every store accepts.
//! - `testing` (cargo feature `testing`, off by default, like tokio's
//!   `test-util`): counting and fault-injecting wrappers for the tests of
//!   upper layers, which enable it in their dev-dependencies.
#![forbid(unsafe_code)]

mod bucket_url;
mod error;
pub mod key;
pub mod layout;
mod local;
mod memory;
mod retry;
mod s3_store;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use bucket_url::{
    absolute_bucket_url, create_store, open_store, StoreConfig, CONNECT_TIMEOUT_VAR, TIMEOUT_VAR,
};
pub use error::{ConfigError, StoreError, Unreachable};
pub use local::LocalDirStore;
pub use memory::MemoryStore;
pub use retry::RetryPolicy;
pub use s3_store::{AddressingStyle, S3Config, S3Credentials, S3Store};
pub use store::{ObjectMeta, ObjectStore, WriteObject};
