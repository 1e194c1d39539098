//! `bae-sync`: drives the sync engine on a library file.
fn main() {}
