//! Which object keys and list prefixes every store accepts.
//!
//! One rule set for all stores, so a key that works on the local directory
//! works on S3 and back. A key is `/`-separated segments; each segment is
//! non-empty, is not `.` or `..`, holds no backslash or control character and
//! does not start with [`RESERVED_PREFIX`] (the local store's temp files).

use crate::error::StoreError;

/// Longest key accepted, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Segments starting with this are reserved for in-flight writes of the local
/// store; no key may use it, so temp files never show up in a listing.
pub const RESERVED_PREFIX: &str = ".bae-tmp";

/// Checks a full object key.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(invalid(key, "empty key"));
    }
    check_common(key)?;
    for segment in key.split('/') {
        check_segment(key, segment)?;
    }
    Ok(())
}

/// Checks a list prefix: empty, or the start of a valid key (it may end in
/// `/` or in the middle of a segment).
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_common(prefix)?;
    let mut segments: Vec<&str> = prefix.split('/').collect();
    // The last piece is a partial segment ("" when the prefix ends in '/').
    let last = segments.pop().unwrap_or_default();
    for segment in segments {
        check_segment(prefix, segment)?;
    }
    if last == "." || last == ".." {
        return Err(invalid(prefix, "'.' or '..' segment"));
    }
    if last.starts_with(RESERVED_PREFIX) {
        return Err(invalid(
            prefix,
            "segment uses the reserved temp-file prefix",
        ));
    }
    Ok(())
}

fn check_common(key: &str) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(key, "longer than 1024 bytes"));
    }
    if key.starts_with('/') {
        return Err(invalid(key, "absolute path"));
    }
    if key.contains('\\') {
        return Err(invalid(key, "backslash"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(key, "control character"));
    }
    Ok(())
}

fn check_segment(key: &str, segment: &str) -> Result<(), StoreError> {
    match segment {
        "" => Err(invalid(key, "empty path segment")),
        "." | ".." => Err(invalid(key, "'.' or '..' segment")),
        s if s.starts_with(RESERVED_PREFIX) => {
            Err(invalid(key, "segment uses the reserved temp-file prefix"))
        }
        _ => Ok(()),
    }
}

fn invalid(key: &str, reason: &'static str) -> StoreError {
    StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_style_keys_are_valid() {
        for key in ["heads/abc", "ops/d/00000000000000000001", "a", "a.b/c-d_e"] {
            validate_key(key).unwrap();
        }
    }

    #[test]
    fn escaping_and_malformed_keys_are_rejected() {
        for key in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/../../x",
            "a/./b",
            "a\\b",
            "a\nb",
            "x/.bae-tmp-123",
        ] {
            assert!(
                matches!(validate_key(key), Err(StoreError::InvalidKey { .. })),
                "{key:?} accepted"
            );
        }
        assert!(validate_key(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn prefixes_may_end_anywhere_but_not_escape() {
        for prefix in ["", "heads/", "ops/dev", "a/b/c"] {
            validate_prefix(prefix).unwrap();
        }
        for prefix in ["/", "../", "a//", "a/..", "..", "a\\"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?} accepted");
        }
    }
}
