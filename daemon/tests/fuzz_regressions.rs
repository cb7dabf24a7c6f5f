//! Replays the fuzz inputs committed under `fuzz/regressions/<target>/` (seeds and what
//! the fuzzers found; see `fuzz/RESULTS.md`) through the entry points the cargo-fuzz
//! targets call, on stable Rust, so CI keeps them fixed. A panic is the failure.
#![allow(clippy::unwrap_used)]

use rsgi_proto::fuzzing::replay_committed as replay;

#[test]
fn control() {
    replay("control", rsgid::control::fuzz_request);
}
