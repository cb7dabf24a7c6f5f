//! The worker: its accept loops, and the request pipeline they feed.
//!
//! A worker runs one current-thread tokio runtime. Each listening socket gets an accept
//! loop ([`serve`]); each connection on the general path a task. A request is read
//! completely (uwsgi vars and body, or the HTTP head and body) before the app sees it.
//!
//! The pipeline, one file per stage (see also `lib.rs`):
//! - `server/conn.rs`: sockets: listeners and their options, accepted connections of
//!   either family, the addresses for the CGI variables.
//! - front ends that only parse and write:
//!   - `server/close_path.rs`: with `threads = 1`, an HTTP request that closes its
//!     connection (`Connection: close`, HTTP/1.0) and has no body, and every complete
//!     uwsgi packet, answered from the accept loop without hyper or a task: a quarter
//!     less CPU per connection, same bytes on the wire.
//!   - `server/http_front.rs`: HTTP/1.1 through hyper (keep-alive, pipelining, chunked
//!     bodies, `Expect: 100-continue`, `Date`).
//!   - `server/uwsgi_front.rs`: uwsgi (nginx `uwsgi_pass`): one request per connection;
//!     the response is written as raw HTTP and the connection closed.
//! - `server/core.rs`: the core every front end calls: [`Worker`], the answer (a
//!   `static-map` file or the app), and its accounting (shared counters, access line,
//!   the `max-requests` wake-up of the master).
//! - `server/write.rs` (with `write/body.rs`, `write/send.rs`): the one writer of
//!   response heads and bodies: header rules, framing, sendmsg(2), sendfile(2), and the
//!   body hyper pulls, which keeps the app's `Content-Length` honest so that a wrong one
//!   can never desynchronise a keep-alive connection.
//!
//! Shutdown: on [`Stop::Graceful`] the accept loops end (the listening sockets stay
//! open in the process, so the kernel keeps queueing connections for the next
//! generation); every HTTP response from then on carries `Connection: close`, so a
//! keep-alive connection ends cleanly after the request in progress or the next one
//! (an idle one is closed after a grace of 2 s); the worker waits for every connection
//! task up to a deadline.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rsgi_proto::config::Protocol;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cgi::ConnInfo;
use crate::listen::{BoundSocket, Listener};
use crate::python::Executor;
use close_path::{Handled, PassOn};
use conn::{Conn, StdConn, StdListener};
use uwsgi_front::UwsgiStart;

mod close_path;
mod conn;
mod core;
mod http_front;
pub mod inflight;
mod uwsgi_front;
mod write;

pub use self::core::{Counters, Worker};
pub use self::write::set_add_headers;
pub(crate) use close_path::fuzz_head;

/// How many connections in a row the close path's accept loop may pass on to the
/// general path before it yields.
const ACCEPT_BURST: u32 = 16;
/// How many connections in a row the close path may answer before it yields when the
/// worker has nothing else to run (see `AcceptLoop::run_close_path`).
const CLOSE_TURN: u32 = 16;
/// How long the close path may answer connections in a row before it yields, whatever
/// their count: what else the runtime holds (a single-process server's `stats` socket,
/// timers) waits no longer than this plus one request (as a streamed body's turn).
const CLOSE_TURN_TIME: Duration = Duration::from_millis(2);

/// How the worker should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop accepting, finish the requests in flight (within `mercy`), exit.
    Graceful,
    /// Exit now.
    Fast,
}

/// A signal the worker acts on arrived (set from the signal handler, see
/// [`note_signal`]). The close path's accept loop, which yields to the scheduler only
/// every [`CLOSE_TURN`] answers or [`CLOSE_TURN_TIME`] when it is alone, yields at the
/// next answer instead, so that the runtime's signal driver sees the signal (a stop or
/// a recycle waits for one request at most, as it did when the loop yielded after every
/// answer).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Raise [`SIGNALLED`] whenever `signal` arrives, besides what tokio's own handler does
/// (signal-hook-registry chains the actions). Once per signal and process: each call
/// adds an action.
pub fn note_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: the action only stores to an atomic, which is async-signal-safe. (The
    // registry panics on a signal no handler may take, SIGKILL or SIGSEGV: the callers
    // pass the worker's stop and control signals only.)
    unsafe { signal_hook_registry::register(signal, || SIGNALLED.store(true, Ordering::Relaxed)) }
        .map(|_| ())
}

/// Serve `sockets` until `stop` resolves; `on_ready` runs once every accept loop runs.
/// Returns once every connection is done (or the mercy deadline passed).
pub async fn serve(
    sockets: &[BoundSocket],
    worker: Arc<Worker>,
    stop: impl std::future::Future<Output = Stop>,
    on_ready: impl FnOnce(),
) -> io::Result<()> {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The close path calls the app from the accept loop: only when the app runs inline.
    let close_path = matches!(worker.executor, Executor::Inline(_)) && close_path::enabled();
    for socket in sockets {
        let mut accept = AcceptLoop {
            protocol: socket.protocol,
            worker: Arc::clone(&worker),
            token: token.clone(),
            tracker: tracker.clone(),
            nodelay_inherited: false,
            alone: sockets.len() == 1,
        };
        if let Listener::Tcp(l) = &socket.listener {
            accept.nodelay_inherited = conn::listener_nodelay(l);
        }
        if close_path {
            let l = match &socket.listener {
                Listener::Tcp(l) => {
                    // Best effort: without it the path still works, it just finds the
                    // request not there yet more often (and hands it on).
                    conn::defer_accept(l);
                    StdListener::Tcp(l.try_clone()?)
                }
                Listener::Unix(l) => StdListener::Unix(l.try_clone()?),
            };
            // SAFETY: the listener owns its fd, which stays open and the same for as
            // long as the AsyncFd (its owner) lives.
            let l = unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }
                .map_err(|e| io::Error::other(e.to_string()))?;
            tokio::spawn(accept.run_close_path(l));
            continue;
        }
        match &socket.listener {
            Listener::Tcp(l) => {
                let l = TcpListener::from_std(l.try_clone()?)?;
                tokio::spawn(accept.run_tcp(l));
            }
            Listener::Unix(l) => {
                let l = UnixListener::from_std(l.try_clone()?)?;
                tokio::spawn(accept.run_unix(l));
            }
        }
    }
    on_ready();
    let how = stop.await;
    worker.stopped_accepting();
    token.cancel();
    tracker.close();
    if how == Stop::Fast {
        return Ok(());
    }
    // HTTP connections see the cancelled token and close once their request is done
    // (see `drive_http`).
    if tokio::time::timeout(worker.mercy, tracker.wait())
        .await
        .is_err()
    {
        crate::log::line(format_args!(
            "rsgi: worker {}: requests still running after {} s of mercy, leaving them",
            worker.pid,
            worker.mercy.as_secs()
        ));
    }
    Ok(())
}

struct AcceptLoop {
    protocol: Protocol,
    worker: Arc<Worker>,
    /// Cancelled when the worker stops: accept loops end, HTTP connections close
    /// after their request in progress.
    token: CancellationToken,
    tracker: TaskTracker,
    /// TCP_NODELAY is set on the listening socket, and accepted sockets inherit it.
    nodelay_inherited: bool,
    /// This is the worker's only accept loop (one socket).
    alone: bool,
}

/// Where the general path starts on a connection.
enum Start {
    /// HTTP through hyper, these bytes of it read already.
    Http(Bytes),
    /// uwsgi, from here.
    Uwsgi(UwsgiStart),
}

impl AcceptLoop {
    /// `accept`, once an app thread is free (at once without an app-thread pool): a
    /// busy worker leaves new connections to the others, as uWSGI's threads do.
    async fn when_free<T>(&self, accept: impl std::future::Future<Output = T>) -> T {
        self.worker.executor.wait_free().await;
        self.room_for_a_connection().await;
        accept.await
    }

    /// Wait while the worker holds `worker-connections` connections (logged once per
    /// `CAP_LOG_EVERY` seconds): the others, or a connection closing, make room. Only
    /// under a flood does this wait at all.
    async fn room_for_a_connection(&self) {
        let cap = self.worker.max_connections;
        if self.tracker.len() < cap {
            return;
        }
        let now = crate::shm::monotonic_ms() / 1000;
        let last = self.worker.cap_logged.load(Ordering::Relaxed);
        if last == 0 || now >= last + core::CAP_LOG_EVERY {
            self.worker.cap_logged.store(now.max(1), Ordering::Relaxed);
            crate::log::line(format_args!(
                "rsgi: worker {}: {cap} connections open (worker-connections): not accepting \
                 until one closes",
                self.worker.pid
            ));
        }
        while self.tracker.len() >= cap {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn run_tcp(self, listener: TcpListener) {
        let local = conn::local_names(listener.local_addr().ok());
        loop {
            let accepted = tokio::select! {
                // Biased: once the worker stops, it accepts no more connections; they
                // stay queued for the workers that go on.
                biased;
                _ = self.token.cancelled() => return,
                r = self.when_free(listener.accept()) => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if !self.nodelay_inherited {
                        let _ = stream.set_nodelay(true);
                    }
                    let info = conn::tcp_info(&local, peer);
                    self.dispatch(Conn::Tcp(stream), info).await;
                }
                Err(e) => accept_error(&e).await,
            }
        }
    }

    /// The accept loop when the app runs inline: see [`close_path`].
    ///
    /// After a connection answered here, the loop yields, so that the app's time is
    /// shared fairly with keep-alive connections (see `dispatch`); when there are none
    /// and this is the worker's only accept loop, every [`CLOSE_TURN`] answers or
    /// [`CLOSE_TURN_TIME`], whichever comes first. A connection passed on
    /// to the general path only became a task: the loop goes on accepting (up to
    /// [`ACCEPT_BURST`] in a row) while more are waiting, so that connections arriving
    /// together join the round at once. Accepting one per round left the last of 64
    /// keep-alive connections opened together waiting for 64 rounds of app calls (a
    /// p99 of ~250 ms with Django, against uWSGI's 25 ms).
    async fn run_close_path(self, listener: AsyncFd<StdListener>) {
        let local = conn::local_names(match listener.get_ref() {
            StdListener::Tcp(l) => l.local_addr().ok(),
            StdListener::Unix(_) => None,
        });
        let mut buf = vec![0u8; close_path::READ_BUF];
        let mut burst = 0;
        let mut answered = 0;
        let mut turn_started = Instant::now();
        loop {
            let accepted = tokio::select! {
                // Biased: once the worker stops, it accepts no more connections; they
                // stay queued for the workers that go on.
                biased;
                _ = self.token.cancelled() => return,
                r = async {
                    self.room_for_a_connection().await;
                    conn::accept(&listener).await
                } => r,
            };
            match accepted {
                Ok((conn, peer)) => {
                    let info = match (&conn, peer) {
                        (StdConn::Tcp(s), Some(peer)) => {
                            if !self.nodelay_inherited {
                                let _ = s.set_nodelay(true);
                            }
                            conn::tcp_info(&local, peer)
                        }
                        _ => conn::unix_info(),
                    };
                    let (worker, tasks) = (&self.worker, &self.tracker);
                    let handled = match self.protocol {
                        Protocol::Http => {
                            close_path::serve_http(worker, tasks, conn, info, &mut buf).await
                        }
                        Protocol::Uwsgi => close_path::serve_uwsgi(worker, tasks, conn, info).await,
                    };
                    if let Handled::PassOn(pass) = handled {
                        self.pass_on(pass);
                        if burst < ACCEPT_BURST {
                            burst += 1;
                            continue;
                        }
                    }
                    burst = 0;
                    // As in `dispatch`: let the other connections have their turn. With
                    // nobody else (no other accept loop, no connection task), a turn of
                    // the scheduler only polls the I/O driver, an epoll_wait(2) per
                    // request: then the loop yields every CLOSE_TURN answers or
                    // CLOSE_TURN_TIME, after a signal (see SIGNALLED), and whenever no
                    // connection is waiting.
                    answered += 1;
                    if !self.alone
                        || !self.tracker.is_empty()
                        || answered >= CLOSE_TURN
                        || turn_started.elapsed() >= CLOSE_TURN_TIME
                        || SIGNALLED.swap(false, Ordering::Relaxed)
                    {
                        answered = 0;
                        tokio::task::yield_now().await;
                        turn_started = Instant::now();
                    }
                }
                Err(e) => accept_error(&e).await,
            }
        }
    }

    /// Start the general path on a connection the close path passed on.
    fn pass_on(&self, pass: PassOn) {
        let (conn, info, start) = match pass {
            PassOn::Http { conn, info, prefix } => (conn, info, Start::Http(prefix)),
            PassOn::Uwsgi { conn, info, start } => (conn, info, Start::Uwsgi(start)),
        };
        match conn.into_conn() {
            Ok(conn) => self.spawn(conn, info, start, None),
            Err(e) => crate::log::line(format_args!("rsgi: cannot serve a connection: {e}")),
        }
    }

    async fn run_unix(self, listener: UnixListener) {
        loop {
            let accepted = tokio::select! {
                // Biased: once the worker stops, it accepts no more connections; they
                // stay queued for the workers that go on.
                biased;
                _ = self.token.cancelled() => return,
                r = self.when_free(listener.accept()) => r,
            };
            match accepted {
                Ok((stream, _)) => self.dispatch(Conn::Unix(stream), conn::unix_info()).await,
                Err(e) => accept_error(&e).await,
            }
        }
    }

    /// Start the connection's task, then let it run before accepting again.
    ///
    /// Without the yield, a worker back from a long app call would accept every
    /// connection waiting in the backlog in one burst and then serve them one after the
    /// other (`threads = 1` runs the app on this thread), while the other workers,
    /// idle, find the backlog empty: latency piles up behind one worker, and a worker
    /// that dies takes all of them with it. After the yield (tokio runs deferred tasks
    /// after the ready ones and the I/O driver), a connection whose request has arrived
    /// reaches the app first, as with uWSGI's one-accept-per-free-thread; one whose
    /// client is slow does not hold up accepting.
    async fn dispatch(&self, conn: Conn, info: ConnInfo) {
        self.spawn_conn(conn, info);
        tokio::task::yield_now().await;
    }

    fn spawn_conn(&self, conn: Conn, info: ConnInfo) {
        // With an app-thread pool, the connection holds a thread from now until its
        // first request reaches the pool (see `Reservation`).
        let reserved = self.worker.executor.reserve();
        let start = match self.protocol {
            Protocol::Uwsgi => Start::Uwsgi(UwsgiStart::Read(BytesMut::new())),
            Protocol::Http => Start::Http(Bytes::new()),
        };
        self.spawn(conn, info, start, reserved);
    }

    /// Run the general path's task for `conn`, from `start`.
    fn spawn(
        &self,
        conn: Conn,
        info: ConnInfo,
        start: Start,
        reserved: Option<crate::python::Reservation>,
    ) {
        let worker = Arc::clone(&self.worker);
        match start {
            Start::Uwsgi(start) => {
                let task = uwsgi_front::handle_uwsgi(conn, info, worker, start, reserved);
                self.tracker.spawn(task);
            }
            Start::Http(prefix) => {
                let stop = self.token.clone();
                let task = http_front::handle_http(conn, prefix, info, worker, reserved, stop);
                self.tracker.spawn(task);
            }
        }
    }
}

/// Accept errors are transient (EMFILE, ECONNABORTED): log, breathe, go on.
async fn accept_error(e: &io::Error) {
    crate::log::line(format_args!("rsgi: accept failed: {e}"));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_noted_signal_raises_the_flag() {
        // SIGURG: ignored by default, and nothing else in the tests uses it.
        note_signal(libc::SIGURG).unwrap();
        SIGNALLED.store(false, Ordering::Relaxed);
        // SAFETY: raise(3) on this thread; the signal has the registry's handler.
        assert_eq!(unsafe { libc::raise(libc::SIGURG) }, 0);
        assert!(SIGNALLED.swap(false, Ordering::Relaxed));
    }
}
