//! What the integration tests share. A test file includes it with `mod support;` and uses the
//! parts it needs.
#![allow(dead_code)] // each test file uses a part of it

pub mod call_harness;
pub mod tools;
