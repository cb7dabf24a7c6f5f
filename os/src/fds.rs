//! Placing file descriptors at fixed numbers for a program about to be executed (the
//! `LISTEN_FDS` convention: the listening sockets at 3, 4, ...). Used by rsgid in a
//! spawned vassal's child (between fork and exec) and by a vassal's master before it
//! re-executes itself.

use std::io;
use std::os::fd::RawFd;

/// The most fds [`place_at`] places (it keeps its work on the stack).
pub const MAX_PLACED: usize = 64;

/// Put `sources[i]` at fd `first + i`, without close-on-exec, whatever those numbers
/// hold now: every source is first lifted above the target range (so placing one never
/// clobbers a source still needed), then `dup2`-ed into place, and the lifted copies
/// closed. The sources themselves stay open.
///
/// Async-signal-safe (only `fcntl`, `dup2`, `close`; no allocation), so it may run in a
/// forked child before `exec`.
///
/// # Errors
/// `EMFILE` for more than [`MAX_PLACED`] sources; the OS error of a failed call.
pub fn place_at(sources: &[RawFd], first: RawFd) -> io::Result<()> {
    let mut lifted = [0 as RawFd; MAX_PLACED];
    if sources.len() > MAX_PLACED {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    let floor = first + sources.len() as RawFd;
    for (i, &fd) in sources.iter().enumerate() {
        // SAFETY: fcntl(F_DUPFD) on an fd the caller holds open; it only creates an fd.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD, floor) };
        if high < 0 {
            return Err(io::Error::last_os_error());
        }
        lifted[i] = high;
    }
    for (i, &high) in lifted[..sources.len()].iter().enumerate() {
        // SAFETY: dup2 onto a target in first..floor: what was there is replaced, as the
        // caller asked (everything still needed was lifted above the range).
        if unsafe { libc::dup2(high, first + i as RawFd) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `high` is this function's own duplicate, no longer needed.
        unsafe { libc::close(high) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::AsRawFd;

    /// The inode of what `fd` refers to.
    fn ino(fd: RawFd) -> u64 {
        // SAFETY: borrowing an open fd for the duration of fstat.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::sys::stat::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn sources_land_at_their_targets_even_when_they_overlap() {
        // Three pipes' read ends, placed at 200, 201, 202; one source already sits in the
        // target range (at 201), which a naive dup2 order would clobber.
        let pipes: Vec<_> = (0..3).map(|_| nix::unistd::pipe().unwrap()).collect();
        let want: Vec<u64> = pipes.iter().map(|(r, _)| ino(r.as_raw_fd())).collect();
        // SAFETY: dup2 of an open fd to an unused high number in this test process.
        let at_201 = unsafe { libc::dup2(pipes[0].0.as_raw_fd(), 201) };
        assert_eq!(at_201, 201);
        let sources = [201, pipes[1].0.as_raw_fd(), pipes[2].0.as_raw_fd()];
        place_at(&sources, 200).unwrap();
        let got: Vec<u64> = (200..203).map(ino).collect();
        assert_eq!(got, want);
        for fd in 200..203 {
            // SAFETY: fcntl(F_GETFD) on an fd placed above.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, 0, "fd {fd} is close-on-exec");
            // SAFETY: closing the test's own placed fds.
            unsafe { libc::close(fd) };
        }
        assert!(place_at(&[0; MAX_PLACED + 1], 300).is_err());
    }
}
