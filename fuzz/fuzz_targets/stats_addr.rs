//! Fuzz target `stats_addr`: see `rsgi_proto::fuzzing::stats_addr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgi_proto::fuzzing::stats_addr(data));
