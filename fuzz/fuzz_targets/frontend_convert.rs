//! The parts of the frontend's `convert` module that layer_unpack fuzzes, compiled in by
//! path (the frontend is a binary crate). They refer to each other as `super::...`, so they
//! sit together in this module, as in the frontend.
#![allow(dead_code, unused_imports, clippy::all)]

#[path = "../../frontend/src/convert/emit.rs"]
pub mod emit;
#[path = "../../frontend/src/convert/sandbox.rs"]
pub mod sandbox;
#[path = "../../frontend/src/convert/scan.rs"]
pub mod scan;
#[path = "../../frontend/src/convert/tarsink.rs"]
pub mod tarsink;
#[path = "../../frontend/src/convert/tree.rs"]
pub mod tree;
