//! Lossless parsers for guest configuration files.
//!
//! Every parser here takes bytes and returns a document plus diagnostics; it
//! never fails and never does I/O. Unchanged documents render back
//! byte-identically, so later edits touch only the spans they change.
