//! Unix socket files: making way for a socket to be bound without taking a live one
//! ([`clear_stale`]), written once for the vassal's listening sockets ([`crate::listen`])
//! and rsgid's own sockets (control, stats); and removing a socket file at exit only if it
//! is still ours ([`SocketFile`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

/// What [`clear_stale`] found at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// Nothing was there (or it went away meanwhile): the path is free.
    Free,
    /// A socket file nobody answers on (left by a server that was killed) was removed.
    Removed,
}

/// Why a path cannot be made free for `bind(2)`.
#[derive(Debug, thiserror::Error)]
pub enum StaleError {
    /// A live server answers on the socket (or its backlog is full).
    #[error("a live server answers on it")]
    InUse,
    /// The path exists and is no socket: never touched.
    #[error("the path exists and is not a socket")]
    NotASocket,
    /// Looking at the path, probing the socket or removing it failed.
    #[error("cannot {about}: {source}")]
    Io {
        /// `check existing socket` or `remove stale socket`.
        about: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Make way for a unix socket to be bound at `path`: nothing there is fine; a socket file
/// nobody answers on is removed ([`Cleared::Removed`]); a socket a live process answers on
/// ([`StaleError::InUse`]) or any other file ([`StaleError::NotASocket`]) is left alone.
/// The probe connects without blocking, so a live server with a full backlog counts as
/// live rather than hanging the caller.
///
/// # Errors
/// See [`StaleError`].
pub fn clear_stale(path: &Path) -> Result<Cleared, StaleError> {
    let io_err = |about, source| StaleError::Io { about, source };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cleared::Free),
        Err(e) => return Err(io_err("check existing socket", e)),
    };
    if !meta.file_type().is_socket() {
        return Err(StaleError::NotASocket);
    }
    match probe(path) {
        // Nobody answers: a leftover of a server that died without cleaning up.
        Err(Errno::ECONNREFUSED) => match std::fs::remove_file(path) {
            Ok(()) => Ok(Cleared::Removed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Cleared::Free),
            Err(e) => Err(io_err("remove stale socket", e)),
        },
        // Gone between the stat and the connect: free.
        Err(Errno::ENOENT) => Ok(Cleared::Free),
        // Connected, or its backlog is full (EAGAIN): a live server.
        Ok(()) | Err(Errno::EAGAIN) => Err(StaleError::InUse),
        Err(e) => Err(io_err("check existing socket", e.into())),
    }
}

/// Try to connect to a unix socket without blocking.
fn probe(path: &Path) -> Result<(), Errno> {
    connect_nonblocking(path).map(drop)
}

/// A stream socket connected to `path` without blocking (`EAGAIN` when the listener's
/// backlog is full).
fn connect_nonblocking(path: &Path) -> Result<OwnedFd, Errno> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// Removes the socket file when dropped, unless something else replaced it meanwhile
/// (another server's socket bound at the same path is left alone).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The socket file just bound at `path`, identified by its device and inode.
    ///
    /// # Errors
    /// `path` cannot be looked at.
    pub fn of(path: PathBuf) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(SocketFile {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Where the socket file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socket_file_removes_only_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Its own: removed when dropped.
        let first = UnixListener::bind(&path).unwrap();
        drop(SocketFile::of(path.clone()).unwrap());
        assert!(!path.exists());
        drop(first);
        // Replaced meanwhile (another server took the path over): left alone.
        let _old = UnixListener::bind(&path).unwrap();
        let file = SocketFile::of(path.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _new = UnixListener::bind(&path).unwrap();
        drop(file);
        assert!(path.exists(), "the newer socket was removed");
    }

    #[test]
    fn only_a_stale_socket_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        fn kind(r: Result<Cleared, StaleError>) -> String {
            match r {
                Ok(c) => format!("{c:?}"),
                Err(e) => e.to_string(),
            }
        }
        // Nothing there: free.
        assert_eq!(kind(clear_stale(&path)), "Free");
        // A live socket: refused and left in place. (Backlog 1, so that it fills up.)
        let live = listen(&path, 1);
        assert_eq!(kind(clear_stale(&path)), "a live server answers on it");
        assert!(path.exists());
        // A live socket with a full backlog: still live, and the probe does not block.
        let mut held = Vec::new();
        let full = loop {
            match connect_nonblocking(&path) {
                Ok(fd) if held.len() < 64 => held.push(fd),
                Ok(_) => panic!("a backlog of 1 took 64 connections"),
                Err(e) => break e,
            }
        };
        assert_eq!(full, Errno::EAGAIN);
        let (tx, rx) = std::sync::mpsc::channel();
        let probed = path.clone();
        std::thread::spawn(move || tx.send(kind(clear_stale(&probed))));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("clear_stale blocked on a full backlog");
        assert_eq!(got, "a live server answers on it");
        drop(held);
        // Its listener gone (a killed server): removed.
        drop(live);
        assert_eq!(kind(clear_stale(&path)), "Removed");
        assert!(!path.exists());
        // Not a socket: refused and left in place.
        std::fs::write(&path, "data").unwrap();
        assert_eq!(
            kind(clear_stale(&path)),
            "the path exists and is not a socket"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    /// A listening unix socket at `path` with `backlog`.
    fn listen(path: &Path, backlog: i32) -> OwnedFd {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        socket::listen(&fd, socket::Backlog::new(backlog).unwrap()).unwrap();
        fd
    }
}
