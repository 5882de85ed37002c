//! Property tests (proptest): the TwiML renderer, the two protocol parsers, the call state
//! machine and redaction, each under arbitrary input.
//!
//! `cargo test --test properties` runs a few thousand cases in all; `PROPTEST_CASES=N` runs N
//! cases of every property instead (the long run in docs/testing.md, "Properties").

#[path = "properties/call.rs"]
mod prop_call;
#[path = "properties/parsers.rs"]
mod prop_parsers;
#[path = "properties/redaction.rs"]
mod prop_redaction;
#[path = "properties/twiml.rs"]
mod prop_twiml;

/// Cases per property: `PROPTEST_CASES` if set, else `default` (sized so the whole file runs
/// in seconds in `cargo test`).
pub fn config(default: u32) -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    proptest::prelude::ProptestConfig {
        cases,
        // Shrinking a failure of the state-machine property can take long; bound it.
        max_shrink_iters: 2048,
        // Failures are printed with their minimal input; no regression files are written.
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
