//! Entry points of the fuzz targets under `fuzz/` (cargo-fuzz, nightly) for the parsers
//! this crate owns. Each takes the fuzzer's raw bytes; it must never panic, hang or
//! allocate without bound, whatever the bytes. The same functions replay the committed
//! regression inputs (`fuzz/regressions/<target>/`) in `tests/fuzz_regressions.rs` on
//! stable Rust, so CI runs what the fuzzers once found.
//!
//! They are thin: they call the public parser, and check a few properties that must hold
//! for any input (a parsed notify message formats back to itself, and so on).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::VassalConfig;
use crate::error::ConfigError;
use crate::system::{Host, PathKind, System};

/// The config files a fuzz input may name: the top file and one more, for includes
/// (`ini = %db.ini`, `xml = %db.xml`, `@(%db.ini)`). Any other path does not exist for the
/// fuzzer, so it never reads the real filesystem's files (nor blocks on a FIFO).
const FILES: [&str; 4] = ["app.ini", "b.ini", "app.xml", "b.xml"];

/// The directory the fuzz inputs are written to: one per process and thread (the
/// regression tests run in parallel threads), under the temp dir.
fn dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static THREAD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let thread = THREAD.with(|n| *n);
    std::env::temp_dir().join(format!("rsgi-fuzz-{}-{thread}", std::process::id()))
}

/// A [`System`] that opens only [`FILES`] in its directory and has fixed host facts.
struct Sandbox(PathBuf);

impl System for Sandbox {
    /// Paths stay as given: the sandbox's files are never links.
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        Some(path.to_path_buf())
    }

    fn open_config(&self, path: &Path) -> io::Result<File> {
        match path.file_name().and_then(|n| n.to_str()) {
            Some(name) if FILES.contains(&name) => File::open(self.0.join(name)),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn host(&self) -> Host {
        Host {
            cwd: "/srv".into(),
            hostname: "fuzz".into(),
            cpus: 2,
            uid: 1000,
            user: "app".into(),
            gid: 1000,
            group: "app".into(),
            started: Duration::from_secs(1_700_000_000),
        }
    }

    /// Only [`FILES`] in the sandbox exist (as regular files, when written); nothing
    /// else does, so config logic never looks at the real filesystem either.
    fn path_kind(&self, path: &Path) -> Option<PathKind> {
        match path.file_name().and_then(|n| n.to_str()) {
            Some(name) if FILES.contains(&name) && self.0.join(name).is_file() => {
                Some(PathKind::File)
            }
            _ => None,
        }
    }

    /// Nothing matches (`for-glob` then gives the pattern itself).
    fn glob(&self, _pattern: &str) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }
}

/// A fixed environment: `$(HOME)` and `$(PORT)` are set, nothing else.
fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/app".into()),
        "PORT" => Some("8000".into()),
        _ => None,
    }
}

/// Split a fuzz input into the top file and the second file at the first NUL byte (a
/// config file never holds one).
fn two_files(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// Write the two files of `data` as `top` and `other` and load `top` as a vassal file
/// would be loaded (the whole loader: dialect, includes, expansions, config logic, the
/// option table), with `:section` when the input's first line is `#section NAME`.
fn load(data: &[u8], top: &str, other: &str) -> Option<Result<VassalConfig, ConfigError>> {
    let (first, second) = two_files(data);
    let dir = dir();
    let written = std::fs::create_dir_all(&dir).is_ok()
        && std::fs::write(dir.join(top), first).is_ok()
        && std::fs::write(dir.join(other), second).is_ok();
    let mut loaded = None;
    if written {
        let mut spec = dir.join(top).display().to_string();
        if let Some(rest) = first.strip_prefix(b"#section ") {
            let name = rest.split(|&b| b == b'\n').next().unwrap_or_default();
            spec.push(':');
            spec.push_str(&String::from_utf8_lossy(name));
        }
        // Errors are expected for most inputs; only a panic, a hang or a runaway
        // allocation is a bug.
        loaded = Some(crate::cli::load_file_with(
            &spec,
            &env,
            &Sandbox(dir.clone()),
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}

/// Target `ini`: the ini dialect with its expansions, includes and config logic.
pub fn ini(data: &[u8]) {
    let _ = load(data, "app.ini", "b.ini");
}

/// Target `xml`: the XML config reader (and, through `ini = ...` lines in it, the rest of
/// the loader).
pub fn xml(data: &[u8]) {
    let _ = load(data, "app.xml", "b.xml");
}

/// Target `notify`: the notify datagram parser. Every parsed message formats to a line
/// that parses back to the same message.
///
/// # Panics
///
/// When that round trip does not hold (a bug the fuzzer reports).
pub fn notify(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let messages = crate::notify::parse(&text);
    for m in &messages {
        assert_eq!(
            crate::notify::parse(&m.to_line()),
            vec![m.clone()],
            "notify round trip of {m:?}"
        );
    }
    let _ = crate::notify::output_dropped(&text);
    assert_eq!(
        crate::notify::parse(&crate::notify::format(&messages)),
        messages
    );
}

/// Target `stats_addr`: the stats/metrics address grammar. A parsed TCP address keeps
/// its port; a parse never panics.
pub fn stats_addr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::stats_addr::parse(text);
}

/// The control API's JSON bodies, as rsgid reads a request body (`POST /check`) and
/// `rsgictl` reads the answers: each type is parsed from the bytes, and what parses
/// serialises and parses back to the same value.
///
/// # Panics
///
/// When a round trip does not hold.
pub fn control_bodies(data: &[u8]) {
    use crate::control::{
        ActionResult, CheckRequest, CheckResult, ErrorBody, LogLines, TopList, VassalList,
        VassalStatus,
    };
    fn round<T>(data: &[u8])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(value) = serde_json::from_slice::<T>(data) {
            let text = serde_json::to_vec(&value).expect("a parsed body serialises");
            let again: T = serde_json::from_slice(&text).expect("a serialised body parses");
            assert_eq!(again, value, "control body round trip");
        }
    }
    round::<CheckRequest>(data);
    round::<CheckResult>(data);
    round::<ActionResult>(data);
    round::<LogLines>(data);
    round::<ErrorBody>(data);
    round::<VassalList>(data);
    round::<VassalStatus>(data);
    round::<TopList>(data);
}

/// Feed every input committed under `fuzz/regressions/<target>/` (seeds and what the
/// fuzzers found) to `entry`, in name order: the stable tests of each crate that owns a
/// fuzz target call this, so CI replays exactly what the fuzzer ran. Panics when the
/// directory is missing or empty (nothing to replay must not pass), and names each input
/// on stderr before it runs, so a panic points at it.
pub fn replay_committed(target: &str, entry: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    assert!(!paths.is_empty(), "{}: no inputs", dir.display());
    paths.sort();
    for path in paths {
        eprintln!("{target}: {}", path.display());
        match std::fs::read(&path) {
            Ok(data) => entry(&data),
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The sandbox really serves both files: the fuzzer reaches includes and `@(file)`.
    #[test]
    fn includes_reach_the_second_file() {
        let cfg = load(
            b"[uwsgi]\nini = %db.ini\nmodule = app\nenv = X=@(%db.ini)\n\0[uwsgi]\nprocesses = 3\n",
            "app.ini",
            "b.ini",
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.processes, 3);
        assert!(
            cfg.env.iter().any(|e| e.1.contains("processes = 3")),
            "{:?}",
            cfg.env
        );
        let cfg = load(b"<uwsgi><module>m</module><xml>%db.xml</xml></uwsgi>\0<uwsgi><threads>5</threads></uwsgi>", "app.xml", "b.xml").unwrap();
        assert_eq!(cfg.unwrap().threads, 5);
        // Nothing else is readable.
        assert!(load(b"[uwsgi]\nini = /etc/hostname\n", "app.ini", "b.ini")
            .unwrap()
            .is_err());
    }
}
