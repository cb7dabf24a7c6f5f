//! Fuzz target `http_head`: see `rsgi::fuzzing::http_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgi::fuzzing::http_head(data));
