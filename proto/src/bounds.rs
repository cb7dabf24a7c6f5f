//! Bounds on configuration input: the one function that reads a config file
//! ([`read_config_file`]) and the caps ([`Limits`]) every reader and the placeholder
//! expansion keep.
//!
//! A config file is input from whoever can write it (in tyrant mode, any user), so reading
//! it must neither block nor grow without end:
//!
//! - The file is opened through the injected [`System`] (`rsgi_os::config::Os` opens with
//!   `O_NONBLOCK | O_NOCTTY | O_CLOEXEC`), so opening a FIFO or a terminal cannot block or
//!   take a controlling terminal; the **opened** descriptor is
//!   `fstat`ed and anything but a regular file is refused (`/tmp/fifo: not a regular file
//!   (a FIFO)`), so a file swapped for a FIFO between a check and the open is refused too.
//! - A file over [`Limits::file_bytes`] is refused from its size, and at most one byte more
//!   than the cap is ever read (a file that grows while it is read is refused as well).
//! - [`Limits::value_bytes`] caps one expanded value and [`Limits::total_bytes`] all
//!   expanded values of one configuration together (a chain of placeholders doubling at
//!   each line would otherwise reach gigabytes from a few hundred bytes).
//! - [`Limits::include_depth`] caps how deeply files include each other and
//!   [`Limits::include_files`] how many files one configuration reads;
//!   [`Limits::nesting_depth`] caps how deeply placeholders refer to placeholders.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::system::System;

/// The caps on one configuration (a command line with its config files, or one vassal
/// file with its includes). [`Limits::DEFAULT`] is what the programs use; tests pass
/// smaller ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest config file read, in bytes. Real configs are a few KiB.
    pub file_bytes: u64,
    /// The largest value one `key = value` line may expand to, in bytes.
    pub value_bytes: usize,
    /// The largest total of all expanded values of one configuration, in bytes.
    pub total_bytes: usize,
    /// How deeply config files may include each other (the top file is depth 1).
    pub include_depth: usize,
    /// How many config files one configuration may read, the top file included.
    pub include_files: usize,
    /// How deeply a placeholder's value may refer to other placeholders.
    pub nesting_depth: usize,
}

impl Limits {
    /// The caps the programs use: 1 MiB per file, 64 KiB per expanded value, 8 MiB for
    /// all values, includes 16 deep and 256 files, placeholders 16 deep.
    pub const DEFAULT: Limits = Limits {
        file_bytes: 1 << 20,
        value_bytes: 64 << 10,
        total_bytes: 8 << 20,
        include_depth: 16,
        include_files: 256,
        nesting_depth: 16,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What kind of file `ft` is, for "not a regular file (a FIFO)".
fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Read a config file as UTF-8, within `limits.file_bytes`, never blocking (opened through
/// `system`): see the module doc. Errors name the file as `path` was given
/// ([`ConfigError::Read`] when it cannot be opened or read, [`ConfigError::File`] for the
/// wrong kind of file or size, and [`ConfigError::Line`] with the line of the first byte
/// that is not UTF-8).
pub fn read_config_file(
    path: &Path,
    limits: &Limits,
    system: &dyn System,
) -> Result<String, ConfigError> {
    let bytes = read_config_bytes(path, limits, system)?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::line(path, line, "not valid UTF-8")
    })
}

/// [`read_config_file`] without the UTF-8 check: the bytes of a config file, read with
/// the same bounds (rsgid fingerprints vassal files with it).
pub fn read_config_bytes(
    path: &Path,
    limits: &Limits,
    system: &dyn System,
) -> Result<Vec<u8>, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = system.open_config(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?; // fstat of the opened fd
    if !meta.file_type().is_file() {
        return Err(ConfigError::file(
            path,
            format!("not a regular file ({})", kind_of(meta.file_type())),
        ));
    }
    let too_big = |size: u64| {
        ConfigError::file(
            path,
            format!(
                "{size} bytes; a config file may hold at most {}",
                limits.file_bytes
            ),
        )
    };
    if meta.len() > limits.file_bytes {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limits.file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limits.file_bytes {
        return Err(too_big(read.max(meta.len())));
    }
    Ok(bytes)
}

/// A file a configuration read besides its top file (an `ini = ...`/`xml = ...` include,
/// an `@(FILE)`), with what it held when it was read. rsgid keeps these with a vassal's
/// configuration and reloads the vassal when one of them holds other bytes now
/// ([`Included::changed`]): a vassal's change is decided by its content, all of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Included {
    /// The file as the configuration named it (relative paths are relative to the
    /// working directory, as the loader reads them).
    pub path: PathBuf,
    /// Length and FNV-1a (64 bit) of its bytes (at most [`Limits::file_bytes`] + 1 are
    /// looked at); `None` when it could not be opened as a regular file.
    pub digest: Option<(u64, u64)>,
}

impl Included {
    /// What `file` (opened from `path`) holds, read with positioned reads so that the
    /// file's offset stays where it is (the loader reads the same descriptor next).
    pub fn of_file(path: &Path, file: &File) -> Included {
        use std::os::unix::fs::FileExt;
        let digest = file
            .metadata()
            .ok()
            .filter(|m| m.file_type().is_file())
            .and_then(|_| {
                let cap = Limits::DEFAULT.file_bytes.saturating_add(1);
                let (mut len, mut hash) = (0u64, FNV_OFFSET);
                let mut buf = [0u8; 8192];
                while len < cap {
                    let n = file.read_at(&mut buf, len).ok()?;
                    if n == 0 {
                        break;
                    }
                    hash = fnv1a_more(hash, &buf[..n]);
                    len += n as u64;
                }
                Some((len, hash))
            });
        Included {
            path: path.to_path_buf(),
            digest,
        }
    }

    /// What `path` holds now, opened through `system` as the loader opens it.
    pub fn read(path: &Path, system: &dyn System) -> Included {
        match system.open_config(path) {
            Ok(file) => Included::of_file(path, &file),
            Err(_) => Included {
                path: path.to_path_buf(),
                digest: None,
            },
        }
    }

    /// Whether `path` holds other bytes now than when it was read (or appeared, or went).
    pub fn changed(&self, system: &dyn System) -> bool {
        Included::read(&self.path, system).digest != self.digest
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a (64 bit), continued from `hash` over `bytes`.
fn fnv1a_more(hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// A [`System`] that notes every file opened through it ([`Included::of_file`]), so that
/// the loader can tell which files a configuration was read from.
pub(crate) struct Recording<'s> {
    inner: &'s dyn System,
    opened: std::cell::RefCell<Vec<Included>>,
}

impl<'s> Recording<'s> {
    /// Record what is opened through `inner`.
    pub(crate) fn new(inner: &'s dyn System) -> Self {
        Recording {
            inner,
            opened: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Every file opened (or tried), in order, each once, except `top`.
    pub(crate) fn into_included(self, top: &Path) -> Vec<Included> {
        let mut out: Vec<Included> = Vec::new();
        for inc in self.opened.into_inner() {
            if inc.path != top && !out.iter().any(|o| o.path == inc.path) {
                out.push(inc);
            }
        }
        out
    }
}

impl System for Recording<'_> {
    fn open_config(&self, path: &Path) -> std::io::Result<File> {
        let opened = self.inner.open_config(path);
        let inc = match &opened {
            Ok(file) => Included::of_file(path, file),
            Err(_) => Included {
                path: path.to_path_buf(),
                digest: None,
            },
        };
        self.opened.borrow_mut().push(inc);
        opened
    }

    fn host(&self) -> crate::system::Host {
        self.inner.host()
    }

    fn real_path(&self, path: &Path) -> Option<std::path::PathBuf> {
        self.inner.real_path(path)
    }

    fn path_kind(&self, path: &Path) -> Option<crate::system::PathKind> {
        self.inner.path_kind(path)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        self.inner.glob(pattern)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::system::testing::FIXED;

    fn small(file_bytes: u64) -> Limits {
        Limits {
            file_bytes,
            ..Limits::DEFAULT
        }
    }

    /// The checks after opening (a FIFO needs the real, non-blocking opening: `rsgi-os`
    /// tests that).
    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = crate::system::testing::TempDir::new("bounds");
        let d = dir.0.as_path();
        std::fs::write(d.join("ok.ini"), "[uwsgi]\n").unwrap();
        std::fs::write(d.join("big.ini"), "x".repeat(101)).unwrap();
        std::fs::write(d.join("edge.ini"), "x".repeat(100)).unwrap();
        std::fs::write(d.join("bad.ini"), b"[uwsgi]\n\xff\n").unwrap();
        let sock = std::os::unix::net::UnixListener::bind(d.join("sock.ini")).unwrap();
        let show = |name: &str| d.join(name).display().to_string();
        let cases: &[(String, Result<String, String>)] = &[
            (show("ok.ini"), Ok("[uwsgi]\n".to_owned())),
            (show("edge.ini"), Ok("x".repeat(100))),
            (
                show("big.ini"),
                Err(format!(
                    "{}: 101 bytes; a config file may hold at most 100",
                    show("big.ini")
                )),
            ),
            (
                show("sock.ini"),
                // A socket cannot be opened at all.
                Err(format!("{}: cannot read: ", show("sock.ini"))),
            ),
            (
                "/dev/zero".to_owned(),
                Err("/dev/zero: not a regular file (a character device)".to_owned()),
            ),
            (
                "/dev/null".to_owned(),
                Err("/dev/null: not a regular file (a character device)".to_owned()),
            ),
            (
                d.display().to_string(),
                Err(format!("{}: not a regular file (a directory)", d.display())),
            ),
            (
                show("bad.ini"),
                Err(format!("{}:2: not valid UTF-8", show("bad.ini"))),
            ),
            (
                show("missing.ini"),
                Err(format!("{}: cannot read: ", show("missing.ini"))),
            ),
        ];
        for (path, want) in cases {
            let got =
                read_config_file(Path::new(path), &small(100), &FIXED).map_err(|e| e.to_string());
            match (&got, want) {
                (Ok(text), Ok(want)) => assert_eq!(text, want, "{path}"),
                (Err(e), Err(want)) => assert!(e.starts_with(want.as_str()), "{path}: {e}"),
                _ => panic!("{path}: got {got:?}, want {want:?}"),
            }
        }
        drop(sock);
    }

    #[test]
    fn default_caps() {
        let l = Limits::default();
        assert_eq!(l.file_bytes, 1_048_576);
        assert_eq!(l.value_bytes, 65_536);
        assert_eq!(l.total_bytes, 8_388_608);
        assert_eq!(
            (l.include_depth, l.include_files, l.nesting_depth),
            (16, 256, 16)
        );
    }
}
