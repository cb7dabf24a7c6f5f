//! What reading a configuration needs from the system, injected so that this crate stays
//! plain data and pure functions: how a config file is opened ([`System::open_config`]),
//! the facts of the running process that magic variables show ([`Host`]), and what config
//! logic looks at on disk (`if-exists`/`if-file`/`if-dir`: [`System::path_kind`];
//! `for-glob`: [`System::glob`]).
//!
//! The programs pass `rsgi_os::config::Os` (it opens with `O_NONBLOCK | O_NOCTTY |
//! O_CLOEXEC`, asks the system for the host facts and globs with the `glob` crate); tests
//! pass a fixed [`Host`] and, for config logic, a made-up filesystem.
//!
//! Why a trait rather than std-only code here: std cannot open a file without blocking
//! on a FIFO (the flags are numbers std does not name), and the user and group names of
//! `%U`/`%G` come from NSS (`getpwuid`), which std does not reach. Both need libc, so they
//! live in `rsgi-os` and reach the readers through this trait.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The system side of reading a configuration.
pub trait System {
    /// Open `path` for reading so that opening never blocks (a FIFO without a writer) and
    /// never takes a controlling terminal; the caller checks what it opened
    /// ([`crate::bounds::read_config_bytes`]).
    ///
    /// # Errors
    /// Whatever opening the file gives.
    fn open_config(&self, path: &Path) -> io::Result<File>;

    /// The facts of this process ([`Host`]), asked for once per configuration, when a
    /// magic variable or `if-hostname` first needs them.
    fn host(&self) -> Host;

    /// What is at `path`, symlinks followed (`if-exists`, `if-file`, `if-dir`, and the
    /// `/` that `for-glob` puts after a directory); `None` when nothing is there or it
    /// cannot be looked at.
    fn path_kind(&self, path: &Path) -> Option<PathKind>;

    /// The paths the shell pattern `pattern` matches, in any order, with glob(3)'s rules
    /// (`*` matches neither a `/` nor a leading `.`); entries that cannot be read are left
    /// out. The caller sorts, marks directories and keeps the pattern when nothing
    /// matches (`for-glob` in [`crate::logic`]).
    ///
    /// # Errors
    /// A pattern that is not one (`[`), as a message without location.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;

    /// The canonical path of the config file at `path` (symlinks resolved, as uWSGI's
    /// `realpath`), which the magic variables (`%d`, `%p`, ...) show; `None` when it
    /// cannot be resolved (the path as given is used then).
    fn real_path(&self, path: &Path) -> Option<PathBuf>;
}

/// What [`System::path_kind`] found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Something else (a socket, a FIFO, a device).
    Other,
}

impl From<&std::fs::Metadata> for PathKind {
    /// The kind `stat(2)`'s answer names (no filesystem access here: the caller stats).
    fn from(m: &std::fs::Metadata) -> Self {
        if m.is_file() {
            PathKind::File
        } else if m.is_dir() {
            PathKind::Dir
        } else {
            PathKind::Other
        }
    }
}

/// Facts about the running process that magic variables show. The programs fill one from
/// the system (`rsgi_os::config::Os`); tests build one by hand, so the expansion itself is
/// a pure function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `%v`: the working directory.
    pub cwd: String,
    /// `%h`: the host name.
    pub hostname: String,
    /// `%k`: the number of CPU cores this process may run on.
    pub cpus: usize,
    /// `%u`: the uid.
    pub uid: u32,
    /// `%U`: the user name (the uid when it has none).
    pub user: String,
    /// `%g`: the gid.
    pub gid: u32,
    /// `%G`: the group name (the gid when it has none).
    pub group: String,
    /// `%t`, `%T`: time since the epoch when the configuration was read.
    pub started: Duration,
}

/// A [`System`] for this crate's unit tests: a fixed [`Host`], files opened with a plain
/// `File::open` and looked at with `std::fs::metadata` (the tests never name a FIFO;
/// `rsgi-os` tests the real opening and glob; config logic's tables use a made-up
/// filesystem instead).
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]
    use super::{Host, PathKind, System};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// The fixed facts the tests expect.
    pub(crate) fn host() -> Host {
        Host {
            cwd: "/run/vassals".into(),
            hostname: "web1".into(),
            cpus: 8,
            uid: 1000,
            user: "app".into(),
            gid: 100,
            group: "users".into(),
            started: Duration::from_micros(1_700_000_000_123_456),
        }
    }

    /// Plain opening, [`host`] as the facts.
    pub(crate) struct Fixed;

    impl System for Fixed {
        fn open_config(&self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
            std::fs::File::open(path)
        }
        fn host(&self) -> Host {
            host()
        }
        fn path_kind(&self, path: &Path) -> Option<PathKind> {
            kind_on_disk(path)
        }
        fn real_path(&self, path: &Path) -> Option<PathBuf> {
            std::fs::canonicalize(path).ok()
        }
        fn glob(&self, _pattern: &str) -> Result<Vec<PathBuf>, String> {
            Err("no glob in these tests (rsgi-os tests the real one)".into())
        }
    }

    /// What `std::fs::metadata` says is at `path`.
    pub(crate) fn kind_on_disk(path: &Path) -> Option<PathKind> {
        std::fs::metadata(path).ok().map(|m| PathKind::from(&m))
    }

    /// The one [`Fixed`] the tests share.
    pub(crate) static FIXED: Fixed = Fixed;

    /// A unique temp dir, removed on drop (std only: this crate's tests need no tempfile).
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("rsgi-proto-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn write(&self, name: &str, text: &str) -> String {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
