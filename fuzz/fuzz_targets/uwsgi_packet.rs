//! Fuzz target `uwsgi_packet`: see `rsgi::fuzzing::uwsgi_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsgi::fuzzing::uwsgi_packet(data));
