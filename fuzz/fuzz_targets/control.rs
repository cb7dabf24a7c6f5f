//! Fuzz target `control`: see `rsgid::control::fuzz_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgid::control::fuzz_request(data));
