//! End-to-end tests live in tests/; this library holds what several of them share.

// Test support: a failed setup step is a failed test, so panicking is the right answer here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod records;
pub mod terraform;
