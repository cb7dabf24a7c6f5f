//! What a harakiri answers: the connections whose request is with the app right now,
//! and the `504 Gateway Timeout` each gets when the master kills the worker.
//!
//! The master sends SIGUSR2 before it SIGKILLs a worker whose request ran past
//! `harakiri` (faulthandler dumps the stacks on it). On that signal, this module's
//! action writes a complete `504` with `Connection: close` to every connection whose
//! response has not started (the app is still running for it), so an HTTP client or
//! nginx sees an answer, not a connection closed without one. uWSGI closes the
//! connection instead (nginx then says 502 "upstream prematurely closed"); a 504 says
//! what happened.
//!
//! The table is fixed-size atomics, because a signal handler may only read memory
//! that needs no lock, and `write(2)` is async-signal-safe.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// Connections tracked at once (a worker runs at most `threads` app calls; more than
/// this many in flight are simply not answered by a harakiri).
const SLOTS: usize = 512;

static FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// The answer written to each connection still waiting for the app.
pub const HARAKIRI_RESPONSE: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\n\
Content-Type: text/plain\r\n\
Content-Length: 36\r\n\
Connection: close\r\n\
\r\n\
harakiri: the request took too long\n";

/// A connection's place in the table while the app runs for it; freed on drop.
#[derive(Debug)]
pub(super) struct InFlight(Option<usize>);

/// Track `fd` while the app runs for its request.
pub(super) fn enter(fd: RawFd) -> InFlight {
    for (i, slot) in FDS.iter().enumerate() {
        if slot
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return InFlight(Some(i));
        }
    }
    InFlight(None)
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            FDS[i].store(-1, Ordering::Release);
        }
    }
}

/// On `signal` (the master's harakiri warning), answer every tracked connection with
/// [`HARAKIRI_RESPONSE`]. Once per process.
pub fn answer_on(signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the action reads atomics and calls write(2), both async-signal-safe; it
    // allocates nothing and takes no lock. (SIGUSR2 may take a handler.)
    unsafe { signal_hook_registry::register(signal, answer_all) }.map(|_| ())
}

fn answer_all() {
    for slot in &FDS {
        let fd = slot.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: write(2) on an fd number; at worst a closed or reused one gets
            // the bytes or EBADF, and the process is about to be killed.
            unsafe {
                libc::write(
                    fd,
                    HARAKIRI_RESPONSE.as_ptr().cast(),
                    HARAKIRI_RESPONSE.len(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;

    #[test]
    fn the_response_is_well_formed() {
        let text = std::str::from_utf8(HARAKIRI_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
    }

    #[test]
    fn tracked_connections_get_the_answer_and_freed_ones_do_not() {
        let (mut a_peer, a) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut b_peer, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let tracked = enter(a.as_raw_fd());
        drop(enter(b.as_raw_fd()));
        answer_all();
        drop(tracked);
        drop((a, b));
        let mut got = Vec::new();
        a_peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, HARAKIRI_RESPONSE);
        got.clear();
        b_peer.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
    }
}
