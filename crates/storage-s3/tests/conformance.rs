//! The conformance suite against every store: memory, local directory, and
//! the S3 server `cargo xtask test` starts (each test under its own prefix).
// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod memory {
    crate::conformance_tests!(|_| crate::common::memory());
}

mod local_dir {
    crate::conformance_tests!(|_| crate::common::local());
}

mod s3 {
    crate::conformance_tests!(crate::common::s3);
}
