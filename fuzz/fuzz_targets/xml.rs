//! Fuzz target `xml`: see `rsgi_proto::fuzzing::xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgi_proto::fuzzing::xml(data));
