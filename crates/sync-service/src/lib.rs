//! The sync service for bae (layer 3, phases 1-3) and the `bae-sync` CLI.
//!
//! Owns: push, pull, status, images, checkpoints, GC and the read-only
//! server bootstrap, built from the crates below.
//!
//! Architecture invariant: the only crate that combines storage, crypto and
//! the database; nothing below it depends on it.
#![forbid(unsafe_code)]
