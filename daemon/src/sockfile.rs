//! rsgid's own socket files (the control socket, the emperor stats socket): making way
//! for one without taking a live one, and removing it at exit only if it is still ours.
//! The work is [`rsgi_os::sockfile`]'s (the vassal's listening sockets use the same
//! code); here are rsgid's messages for it.

use std::io;
use std::path::Path;

pub use rsgi_os::sockfile::SocketFile;

/// Make way for a socket to be bound at `path`: a socket file nobody answers on (left
/// by an rsgid that was killed) is removed; one a live process answers on is an error
/// (`AddrInUse`, naming `option` to choose another path), and so is a path that exists
/// but is no socket (`AlreadyExists`). Shared by the control socket and the emperor
/// stats socket.
pub fn clear_stale(path: &Path, option: &str) -> io::Result<()> {
    use rsgi_os::sockfile::{Cleared, StaleError};
    match rsgi_os::sockfile::clear_stale(path) {
        Ok(Cleared::Free) => Ok(()),
        Ok(Cleared::Removed) => {
            tracing::info!(path = %path.display(), "replacing a stale socket");
            Ok(())
        }
        Err(StaleError::InUse) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "a live process (another rsgid?) answers on it: stop that one, \
                 or choose another path with {option}"
            ),
        )),
        Err(StaleError::NotASocket) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; refusing to replace it",
        )),
        Err(StaleError::Io { source, .. }) => Err(source),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
