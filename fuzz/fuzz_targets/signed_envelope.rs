//! The signed envelope around a batch or head: parsed, re-encoded to the
//! same bytes, and verified at the place and epoch of the seed batch
//! (`ops/33…33/7`, epoch 2).
#![no_main]

use bae_crypto::KeyEpoch;
use bae_fuzz::LIBRARY_ID;
use bae_hlc::DeviceId;
use bae_membership::{LibraryId, SignedKind, SignedObject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = SignedObject::from_bytes(data) else {
        return;
    };
    assert_eq!(object.to_bytes(), data, "an envelope has one encoding");
    let place = (SignedKind::Batch, DeviceId::from_bytes([0x33; 16]), 7);
    let _ = object.verify(LibraryId::from_bytes(LIBRARY_ID), place, KeyEpoch(2));
});
