//! Replays the fuzz inputs committed under `fuzz/regressions/<target>/` (seeds and what
//! the fuzzers found; see `fuzz/RESULTS.md`) through the entry points the cargo-fuzz
//! targets call, on stable Rust, so CI keeps them fixed. A panic is the failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

/// Every input of one target; panics when there are none (a missing directory must not
/// pass as "nothing to replay").
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../fuzz/regressions/{target}"));
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    assert!(!out.is_empty(), "{}: no inputs", dir.display());
    out.sort();
    out
}

fn replay(target: &str, entry: fn(&[u8])) {
    for (path, data) in inputs(target) {
        eprintln!("{target}: {}", path.display());
        entry(&data);
    }
}

#[test]
fn uwsgi_packet() {
    replay("uwsgi_packet", rsgi::fuzzing::uwsgi_packet);
}

#[test]
fn http_head() {
    replay("http_head", rsgi::fuzzing::http_head);
}
