//! Fuzz target `ini`: see `rsgi_proto::fuzzing::ini`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgi_proto::fuzzing::ini(data));
