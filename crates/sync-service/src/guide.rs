//! The engine's documents (`docs/*.md`), included so they appear on the
//! documentation site next to the API they describe.
//!
//! Only compiled when rustdoc documents the crate
//! (`#[cfg(all(doc, not(doctest)))]`): rustdoc sets `doc` when it collects
//! doctests too, and the documents' examples are not doctests. `cargo
//! xtask docs` fails when a file in `docs/` has no module here.
//!
//! - [`architecture`]: the bird's-eye view, the code map and its invariants.
//! - [`format_index`]: every bucket and local format with its version,
//!   spec, code and test vectors.
//! - [`format_crypto`]: the chunked and sync-object formats, key text,
//!   signatures, sealed boxes, release keys.
//! - [`format_sync`]: batches, heads, write and read order, the local tables.
//! - [`format_checkpoint`]: checkpoints.
//! - [`format_membership`]: membership entries and their validation, signed
//!   envelopes, key blobs, the identity.
//! - [`bucket_layout`]: the bucket's keys and the order of writes.
//! - [`integration`]: how bae-core adopts the engine, step by step.
//! - [`schema_evolution`]: devices on different schema versions, what
//!   changes are safe, what is refused at open.
//! - [`security`]: the threat model, each claim with the test that shows it.
//! - [`reliability`]: what is promised under crashes and faults, and the
//!   simulation, kill loop and fuzzing that show it.

#[doc = include_str!("../../../docs/ARCHITECTURE.md")]
pub mod architecture {}

#[doc = include_str!("../../../docs/FORMAT.md")]
pub mod format_index {}

#[doc = include_str!("../../../docs/FORMAT-crypto.md")]
pub mod format_crypto {}

#[doc = include_str!("../../../docs/FORMAT-sync.md")]
pub mod format_sync {}

#[doc = include_str!("../../../docs/FORMAT-checkpoint.md")]
pub mod format_checkpoint {}

#[doc = include_str!("../../../docs/FORMAT-membership.md")]
pub mod format_membership {}

#[doc = include_str!("../../../docs/FORMAT-grant.md")]
pub mod format_grant {}

#[doc = include_str!("../../../docs/BUCKET-LAYOUT.md")]
pub mod bucket_layout {}

#[doc = include_str!("../../../docs/INTEGRATION.md")]
pub mod integration {}

#[doc = include_str!("../../../docs/SCHEMA-EVOLUTION.md")]
pub mod schema_evolution {}

#[doc = include_str!("../../../docs/SECURITY.md")]
pub mod security {}

#[doc = include_str!("../../../docs/RELIABILITY.md")]
pub mod reliability {}
