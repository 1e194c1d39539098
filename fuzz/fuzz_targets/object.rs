//! A sync object (header and chunks), opened with a fixed key at a fixed
//! place, whole and streamed with a size limit.
#![no_main]

use bae_crypto::object::{check_header, ObjectHeader};
use bae_crypto::{open_object, open_object_stream, KeyEpoch, LibraryKey};
use bae_fuzz::{object_place, LIBRARY_KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = LibraryKey::from_bytes(LIBRARY_KEY);
    let keys = (KeyEpoch::FIRST, &key);
    let place = object_place();
    if let Ok(header) = ObjectHeader::parse(data) {
        assert_eq!(ObjectHeader::parse(&header.to_bytes()).ok(), Some(header));
        let _ = check_header(&keys, &place, &header);
    }
    let whole = open_object(&keys, &place, data);
    let mut out = Vec::new();
    let streamed = open_object_stream(&keys, &place, data, &mut out, 1 << 20);
    if let (Ok(whole), Ok(n)) = (&whole, &streamed) {
        assert_eq!(*n as usize, whole.len());
        assert_eq!(&out, whole);
    }
});
