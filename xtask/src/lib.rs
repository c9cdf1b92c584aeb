//! Fixture factory shared by `cargo xtask` and the test suites.
