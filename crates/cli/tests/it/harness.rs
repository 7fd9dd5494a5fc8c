//! The shared test harness lives in the `cairn-testkit` crate; this module keeps the tests'
//! `crate::harness::...` paths.

pub use cairn_testkit::*;

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");
