//! Bucket URLs as a user types them (`init`, `join`, the config file).
#![no_main]

use bae_storage_s3::StoreConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(url) = std::str::from_utf8(data) {
        let _ = StoreConfig::parse(url);
    }
});
