//! rsgid's own socket files (the control socket, the emperor stats socket): making way
//! for one without taking a live one, and removing it at exit only if it is still ours.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// Make way for a socket to be bound at `path`: a socket file nobody answers on (left
/// by an rsgid that was killed) is removed; one a live process answers on is an error
/// (`AddrInUse`, naming `option` to choose another path), and so is a path that exists
/// but is no socket (`AlreadyExists`). Shared by the control socket and the emperor
/// stats socket.
pub fn clear_stale(path: &Path, option: &str) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "a live process (another rsgid?) answers on it: stop that one, \
                         or choose another path with {option}"
                    ),
                )),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "replacing a stale socket");
                    std::fs::remove_file(path)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; refusing to replace it",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the socket file when dropped, unless something else replaced it meanwhile
/// (another rsgid's socket bound at the same path is left alone). Shared by the control
/// socket and the emperor stats socket.
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The socket file just bound at `path`, identified by its device and inode.
    pub fn of(path: PathBuf) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(SocketFile {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl SocketFile {
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

    #[test]
    fn a_socket_file_removes_only_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Its own: removed when dropped.
        let first = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(SocketFile::of(path.clone()).unwrap());
        assert!(!path.exists());
        drop(first);
        // Replaced meanwhile (another rsgid took the path over): left alone.
        let _old = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = SocketFile::of(path.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _new = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(file);
        assert!(path.exists(), "the newer socket was removed");
    }

    #[test]
    fn only_a_stale_socket_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Nothing there: nothing to do.
        clear_stale(&path, "--x").unwrap();
        // A live socket: refused, and left in place.
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = clear_stale(&path, "--stats").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("--stats"), "{e}");
        assert!(path.exists());
        // Its listener gone (a killed rsgid): removed.
        drop(live);
        clear_stale(&path, "--x").unwrap();
        assert!(!path.exists());
        // Not a socket: refused and left in place.
        std::fs::write(&path, "data").unwrap();
        let e = clear_stale(&path, "--x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }
}
