//! Fuzz target `notify`: see `rsgi_proto::fuzzing::notify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgi_proto::fuzzing::notify(data));
