//! Membership for bae sync (layer 2, phases 2-3).
//!
//! Will own: identity keys in the OS keyring, signed op envelopes, the
//! membership chain, library-key wrapping, invitations, revocation and share
//! grants. Phase 2 and 3 work fills this crate; formats written in phase 1
//! already leave room for signatures, key epochs and release keys.
//!
//! Architecture invariant: `membership` never touches the network; it
//! validates objects that the sync service fetched.
#![forbid(unsafe_code)]
