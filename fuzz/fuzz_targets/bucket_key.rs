//! Bucket keys as a listing returns them: every layout parser.
#![no_main]

use bae_storage_s3::layout::{
    parse_checkpoint_key, parse_heads_key, parse_image_key, parse_membership_key, parse_ops_key,
    parse_storage_key, parse_wrapped_key_key, BucketPath,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_heads_key(key);
    let _ = parse_ops_key(key);
    let _ = parse_checkpoint_key(key);
    let _ = parse_image_key(key);
    let _ = parse_storage_key(key);
    let _ = parse_membership_key(key);
    let _ = parse_wrapped_key_key(key);
    if let Ok(path) = BucketPath::parse(key) {
        assert_eq!(
            path.key(),
            key,
            "a parsed key is the key it was parsed from"
        );
        assert_eq!(BucketPath::parse(&path.key()).ok(), Some(path));
    }
});
