//! The worker: accept loops and per-connection handlers for both protocols.
//!
//! A worker runs one current-thread tokio runtime. Each listening socket gets an accept
//! loop; each connection a task. A request is read completely (uwsgi vars and body,
//! or the HTTP head and body) before the app sees it, then handed to the
//! [`Executor`]. Static files (`static-map`) are answered from Rust before the app.
//!
//! - With `threads = 1`, an HTTP request that closes its connection (`Connection:
//!   close`, HTTP/1.0) and has no body is answered from the accept loop without hyper
//!   ([`close_path`]): a quarter less CPU per connection, same bytes on the wire.
//! - HTTP/1.1 goes through hyper (keep-alive, pipelining, chunked bodies,
//!   `Expect: 100-continue`, `Date`); the response body is a [`RespBody`] that also
//!   keeps the app's `Content-Length` honest, so a wrong one can never desynchronise
//!   a keep-alive connection.
//! - uwsgi (nginx `uwsgi_pass`): one request per connection, as nginx's uwsgi module
//!   has no upstream keep-alive; the response is written as raw HTTP and the
//!   connection closed; files go out with `sendfile(2)`.
//!
//! Shutdown: on [`Stop::Graceful`] the accept loops end (the listening sockets stay
//! open in the process, so the kernel keeps queueing connections for the next
//! generation); every HTTP response from then on carries `Connection: close`, so a
//! keep-alive connection ends cleanly after the request in progress or the next one
//! (an idle one is closed after [`STOP_IDLE_GRACE`]); the worker waits for every
//! connection task up to a deadline.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use rsgi_proto::config::Protocol;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cgi::{self, CgiVars, ConnInfo};
use crate::listen::{BoundSocket, Listener};
use crate::python::{Executor, Request, Reservation};
use crate::response::{Body, Response, StreamError};
use crate::static_files::{self, Lookup, StaticMap};
use crate::uwsgi;

mod close_path;

/// How long a uwsgi client may take to send its request (uWSGI's `socket-timeout`
/// is 4 s; nginx sends the whole packet at once, so this only bites broken clients).
const UWSGI_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an HTTP client may take to send a request head.
const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping worker waits for the next request on an idle HTTP connection
/// before closing it (see `drive_http`).
const STOP_IDLE_GRACE: Duration = Duration::from_secs(2);
/// How many connections in a row the close path's accept loop may pass on to the
/// general path before it yields.
const ACCEPT_BURST: u32 = 16;
/// How many connections in a row the close path may answer before it yields when the
/// worker has nothing else to run (see `AcceptLoop::run_close_path`).
const CLOSE_TURN: u32 = 16;
/// How long the close path may answer connections in a row before it yields, whatever
/// their count: what else the runtime holds (a single-process server's `stats` socket,
/// timers) waits no longer than this plus one request. As [`STREAM_TURN`].
const CLOSE_TURN_TIME: Duration = Duration::from_millis(2);
/// How long a streamed body may keep the worker's thread before it lets the other
/// connections in (see `RespBody::poll_frame`).
const STREAM_TURN: Duration = Duration::from_millis(2);
/// Chunk size for file bodies that cannot use sendfile.
const FILE_CHUNK: usize = 64 * 1024;

/// How the worker should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop accepting, finish the requests in flight (within `mercy`), exit.
    Graceful,
    /// Exit now.
    Fast,
}

/// What every connection handler needs.
pub struct Worker {
    /// Runs the app.
    pub executor: Executor,
    /// `static-map` entries.
    pub static_map: StaticMap,
    /// `buffer-size`: the largest request head.
    pub buffer_size: usize,
    /// `limit-post`: the largest request body (0 = unlimited).
    pub limit_post: u64,
    /// Seconds a graceful stop may take before connections are dropped.
    pub mercy: Duration,
    /// This process' pid, for access lines.
    pub pid: u32,
    /// This worker's shared counters (none for a single-process server).
    pub counters: Option<Counters>,
}

/// A worker's slot in the shared counters.
pub struct Counters {
    /// The shared region.
    pub shm: Arc<crate::shm::Shm>,
    /// This worker's slot.
    pub id: crate::shm::WorkerId,
    /// `max-requests` (with this worker's delta): once reached, the worker wakes the
    /// master through `master_pipe` so the replacement starts at once, not at the
    /// master's next tick.
    pub recycle_after: Option<u64>,
    /// Write end of the master's pipe (see [`crate::master_pipe::send_due`]).
    pub master_pipe: Option<std::os::fd::RawFd>,
    /// Whether the master was already told.
    pub recycle_sent: std::sync::atomic::AtomicBool,
}

impl Worker {
    /// Mark the start of an app call (the master's harakiri clock starts here).
    fn app_started(&self) -> Option<crate::shm::RequestToken> {
        let c = self.counters.as_ref()?;
        Some(
            c.shm
                .slot(c.id)?
                .request_started(crate::shm::monotonic_ms()),
        )
    }
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
            accept.nodelay_inherited = listener_nodelay(l);
        }
        if close_path {
            let l = match &socket.listener {
                Listener::Tcp(l) => {
                    // Best effort: without it the path still works, it just finds the
                    // request not there yet more often (and hands it on).
                    close_path::defer_accept(l);
                    close_path::StdListener::Tcp(l.try_clone()?)
                }
                Listener::Unix(l) => close_path::StdListener::Unix(l.try_clone()?),
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
    if let Some(c) = &worker.counters {
        if let Some(slot) = c.shm.slot(c.id) {
            slot.set_accepting(false);
        }
    }
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

/// Where the close path left a connection (see `AcceptLoop::run_close_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Answered (or closed) right there, or left to a task to finish writing.
    Here,
    /// Passed on to the general path.
    PassedOn,
}

/// Set TCP_NODELAY on a TCP listening socket. Linux copies it to every socket accepted
/// from it, which saves a setsockopt(2) per connection (with `Connection: close`, one of
/// the 9 syscalls a request took). False if it could not be set.
fn listener_nodelay(listener: &std::net::TcpListener) -> bool {
    set_tcp_option(listener, libc::TCP_NODELAY, 1)
}

/// Set the `IPPROTO_TCP` option `name` of `listener` to `value`; false if it failed.
fn set_tcp_option(listener: &std::net::TcpListener, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: the fd is open (we hold the listener); the option value points to a
    // c_int that lives across the call, and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

impl AcceptLoop {
    /// `accept`, once an app thread is free (at once without an app-thread pool): a
    /// busy worker leaves new connections to the others, as uWSGI's threads do.
    async fn when_free<T>(&self, accept: impl std::future::Future<Output = T>) -> T {
        self.worker.executor.wait_free().await;
        accept.await
    }

    async fn run_tcp(self, listener: TcpListener) {
        let local = local_names(listener.local_addr().ok());
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
                    let info = tcp_info(&local, peer);
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
    async fn run_close_path(self, listener: AsyncFd<close_path::StdListener>) {
        let local = local_names(match listener.get_ref() {
            close_path::StdListener::Tcp(l) => l.local_addr().ok(),
            close_path::StdListener::Unix(_) => None,
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
                r = close_path::accept(&listener) => r,
            };
            match accepted {
                Ok((conn, peer)) => {
                    let info = match (&conn, peer) {
                        (close_path::StdConn::Tcp(s), Some(peer)) => {
                            if !self.nodelay_inherited {
                                let _ = s.set_nodelay(true);
                            }
                            tcp_info(&local, peer)
                        }
                        _ => unix_info(),
                    };
                    let handled = match self.protocol {
                        Protocol::Http => close_path::serve_http(&self, conn, info, &mut buf).await,
                        Protocol::Uwsgi => close_path::serve_uwsgi(&self, conn, info).await,
                    };
                    if handled == Handled::PassedOn && burst < ACCEPT_BURST {
                        burst += 1;
                        continue;
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

    /// Serve an accepted connection on the general HTTP path; `prefix` is what was
    /// already read from it.
    fn general_http(&self, conn: close_path::StdConn, info: ConnInfo, prefix: Bytes) -> Handled {
        match conn.into_conn() {
            Ok(conn) => {
                let worker = Arc::clone(&self.worker);
                let stop = self.token.clone();
                self.tracker
                    .spawn(handle_http(conn, prefix, info, worker, None, stop));
            }
            Err(e) => crate::log::line(format_args!("rsgi: cannot serve a connection: {e}")),
        }
        Handled::PassedOn
    }

    /// Serve an accepted connection on the general uwsgi path, from where the close
    /// path left it.
    fn general_uwsgi(
        &self,
        conn: close_path::StdConn,
        info: ConnInfo,
        start: UwsgiStart,
    ) -> Handled {
        match conn.into_conn() {
            Ok(conn) => {
                let worker = Arc::clone(&self.worker);
                self.tracker
                    .spawn(handle_uwsgi(conn, info, worker, start, None));
            }
            Err(e) => crate::log::line(format_args!("rsgi: cannot serve a connection: {e}")),
        }
        Handled::PassedOn
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
                Ok((stream, _)) => self.dispatch(Conn::Unix(stream), unix_info()).await,
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
        let worker = Arc::clone(&self.worker);
        // With an app-thread pool, the connection holds a thread from now until its
        // first request reaches the pool (see `Reservation`).
        let reserved = worker.executor.reserve();
        match self.protocol {
            Protocol::Uwsgi => {
                let start = UwsgiStart::Read(BytesMut::new());
                self.tracker
                    .spawn(handle_uwsgi(conn, info, worker, start, reserved));
            }
            Protocol::Http => {
                let stop = self.token.clone();
                self.tracker.spawn(handle_http(
                    conn,
                    Bytes::new(),
                    info,
                    worker,
                    reserved,
                    stop,
                ));
            }
        }
    }
}

/// Accept errors are transient (EMFILE, ECONNABORTED): log, breathe, go on.
async fn accept_error(e: &io::Error) {
    crate::log::line(format_args!("rsgi: accept failed: {e}"));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A TCP listener's own address as `(SERVER_NAME, SERVER_PORT)` fallbacks, formatted
/// once per accept loop rather than per connection.
fn local_names(local: Option<SocketAddr>) -> (Bytes, Bytes) {
    match local {
        Some(l) => (
            Bytes::from(l.ip().to_string()),
            Bytes::from(l.port().to_string()),
        ),
        None => (Bytes::from_static(b"localhost"), Bytes::new()),
    }
}

fn tcp_info((server_name, server_port): &(Bytes, Bytes), peer: SocketAddr) -> ConnInfo {
    ConnInfo {
        server_name: server_name.clone(),
        server_port: server_port.clone(),
        remote_addr: Bytes::from(peer.ip().to_string()),
        remote_port: Bytes::from(peer.port().to_string()),
    }
}

fn unix_info() -> ConnInfo {
    ConnInfo {
        server_name: Bytes::from_static(b"localhost"),
        server_port: Bytes::new(),
        remote_addr: Bytes::new(),
        remote_port: Bytes::new(),
    }
}

/// An accepted connection of either family.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

// ---------------------------------------------------------------------------------
// Shared request logic
// ---------------------------------------------------------------------------------

/// Answer a request from `static-map`, if a mapping has the file.
fn static_response(worker: &Worker, cgi: &CgiVars) -> Option<Response> {
    if worker.static_map.is_empty() {
        return None;
    }
    let method = cgi.get(b"REQUEST_METHOD")?;
    if &method[..] != b"GET" && &method[..] != b"HEAD" {
        return None;
    }
    let path = cgi.get(b"PATH_INFO")?;
    match worker.static_map.lookup(path)? {
        Lookup::Found(file) => {
            let last_modified = static_files::http_date(file.modified);
            let ims = cgi.get(b"HTTP_IF_MODIFIED_SINCE").map(|b| &b[..]);
            if static_files::not_modified(ims, file.modified) {
                let mut resp = Response::error(304);
                resp.body = Body::Empty;
                resp.content_length = None;
                resp.headers = vec![(
                    Bytes::from_static(b"Last-Modified"),
                    Bytes::from(last_modified),
                )];
                return Some(resp);
            }
            let opened = match std::fs::File::open(&file.path) {
                Ok(f) => f,
                Err(_) => return Some(Response::error(404)),
            };
            Some(Response {
                status: 200,
                status_line: Bytes::from_static(b"200 OK"),
                headers: vec![
                    (
                        Bytes::from_static(b"Content-Type"),
                        Bytes::from_static(file.content_type.as_bytes()),
                    ),
                    (
                        Bytes::from_static(b"Content-Length"),
                        Bytes::from(file.len.to_string()),
                    ),
                    (
                        Bytes::from_static(b"Last-Modified"),
                        Bytes::from(last_modified),
                    ),
                ],
                content_length: Some(file.len),
                body: Body::File {
                    file: opened,
                    offset: 0,
                    len: Some(file.len),
                    on_done: None,
                },
                exception: false,
            })
        }
        Lookup::Forbidden => Some(Response::error(403)),
        Lookup::NotFound => Some(Response::error(404)),
    }
}

/// Answer `cgi` from `static-map` if a mapping has it, else call the app (on the thread
/// `reserved` holds, if any); the token marks the app call in the shared counters.
async fn answer(
    worker: &Worker,
    cgi: CgiVars,
    body: Bytes,
    head: bool,
    reserved: Option<Reservation>,
) -> (Response, Option<crate::shm::RequestToken>) {
    if let Some(r) = static_response(worker, &cgi) {
        return (r, None);
    }
    let token = worker.app_started();
    let resp = worker
        .executor
        .call_reserved(Request { cgi, body, head }, reserved)
        .await;
    (resp, token)
}

/// Whether a uwsgi request (by its CGI vars) is a HEAD request.
fn is_head(cgi: &CgiVars) -> bool {
    cgi.get(b"REQUEST_METHOD")
        .is_some_and(|m| &m[..] == b"HEAD")
}

/// The app's headers cannot go on the wire: say so and answer 500 instead.
fn invalid_header_response() -> Response {
    crate::log::line(format_args!(
        "rsgi: the app sent an invalid header name or value; answering 500"
    ));
    Response::error(500)
}

/// What the access line needs from a request (cheap `Bytes` clones, taken before the
/// request moves into the app call).
struct AccessInfo {
    remote: Bytes,
    method: Bytes,
    uri: Bytes,
    protocol: Bytes,
}

impl AccessInfo {
    fn of(cgi: &CgiVars) -> AccessInfo {
        let get = |name: &[u8]| cgi.get(name).cloned().unwrap_or_default();
        AccessInfo {
            remote: get(b"REMOTE_ADDR"),
            method: get(b"REQUEST_METHOD"),
            uri: cgi
                .get(b"REQUEST_URI")
                .or_else(|| cgi.get(b"PATH_INFO"))
                .cloned()
                .unwrap_or_default(),
            protocol: get(b"SERVER_PROTOCOL"),
        }
    }

    /// Count the request in the shared counters and write its access line.
    fn finish(
        &self,
        worker: &Worker,
        token: Option<crate::shm::RequestToken>,
        (status, bytes, exception): (u16, u64, bool),
        started: Instant,
    ) {
        if let (Some(token), Some(c)) = (token, worker.counters.as_ref()) {
            if let Some(slot) = c.shm.slot(c.id) {
                slot.request_finished(token, status, bytes, started.elapsed(), exception);
                if let (Some(limit), Some(fd)) = (c.recycle_after, c.master_pipe) {
                    if slot.requests_since_spawn() >= limit
                        && !c
                            .recycle_sent
                            .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        crate::master_pipe::send_due(fd, c.id);
                    }
                }
            }
        }
        self.log(worker, status, bytes, started);
    }

    fn log(&self, worker: &Worker, status: u16, bytes: u64, started: Instant) {
        crate::log::access(&crate::log::Access {
            remote: &self.remote,
            method: &self.method,
            uri: &self.uri,
            protocol: &self.protocol,
            status,
            bytes,
            duration: started.elapsed(),
            pid: worker.pid,
        });
    }
}

// ---------------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------------

/// Serve one HTTP connection with hyper; `prefix`: bytes already read from it;
/// `reserved`: the app thread held for its first request.
async fn handle_http(
    conn: Conn,
    prefix: Bytes,
    info: ConnInfo,
    worker: Arc<Worker>,
    reserved: Option<Reservation>,
    stop: CancellationToken,
) {
    let info = Arc::new(info);
    // Taken by the first request (hyper's service is `Fn`, hence the lock; none at all
    // without an app-thread pool).
    let reserved = reserved.map(|r| std::sync::Mutex::new(Some(r)));
    let service = {
        // An Arc: cloning a CancellationToken takes a lock, an Arc clone does not.
        let stop = Arc::new(stop.clone());
        hyper::service::service_fn(move |req| {
            let worker = Arc::clone(&worker);
            let info = Arc::clone(&info);
            let stop = Arc::clone(&stop);
            let reserved = reserved
                .as_ref()
                .and_then(|r| r.lock().ok().and_then(|mut r| r.take()));
            async move {
                let mut resp = http_request(req, &worker, &info, reserved).await;
                if stop.is_cancelled() {
                    // The worker is stopping: this is the connection's last response,
                    // and the client learns it from the response (hyper closes after
                    // it) rather than from a connection closed under its next request.
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        // A client that shuts down its write side after the request still gets its
        // answer (as from uWSGI, and from the close path).
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HTTP_HEADER_TIMEOUT);
    let result = match conn {
        Conn::Tcp(s) => {
            let conn = builder.serve_connection(TokioIo::new(CloseOnDrop(s, prefix)), service);
            drive_http(conn, &stop).await
        }
        Conn::Unix(s) => {
            let conn = builder.serve_connection(TokioIo::new(CloseOnDrop(s, prefix)), service);
            drive_http(conn, &stop).await
        }
    };
    // Connection errors (client went away, malformed request already answered with
    // 400 by hyper, body aborted) end this connection only.
    drop(result);
}

/// A stream whose `shutdown` does nothing: the connection ends when the stream is
/// dropped, and close(2) sends the FIN that shutdown(2) would have sent. hyper shuts a
/// connection down before dropping it; skipping that saves a syscall per connection
/// (another of the 9 with `Connection: close`). The bytes on the wire are the same:
/// data, then FIN (or RST, either way, if the client's unread data is left in the
/// socket). The second field holds bytes already read from the stream (by the close
/// path), which reads return first.
struct CloseOnDrop<S>(S, Bytes);

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CloseOnDrop<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.1.is_empty() {
            let n = self.1.len().min(buf.remaining());
            let first = self.1.split_to(n);
            buf.put_slice(&first);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CloseOnDrop<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serve one HTTP connection; once `stop` is cancelled, let it end by itself after
/// one more response, up to [`STOP_IDLE_GRACE`], then close it.
///
/// Closing an idle keep-alive connection at once (hyper's `graceful_shutdown`) fails
/// the request its client may be sending at that moment: a connection accepted but not
/// read yet, or one whose client is about to reuse it (a load generator always is;
/// HTTP/1.1 lets clients retry only idempotent requests, and many never do). So the
/// connection gets until the grace to send its next request; the service answers it
/// with `Connection: close`, and hyper closes after that response. A client that stays
/// idle (a browser's spare connection) is closed at the end of the grace.
async fn drive_http<C>(conn: C, stop: &CancellationToken) -> Result<(), C::Error>
where
    C: hyper_util::server::graceful::GracefulConnection,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        () = stop.cancelled() => {}
    }
    tokio::select! {
        r = conn.as_mut() => return r,
        () = tokio::time::sleep(STOP_IDLE_GRACE) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

async fn http_request(
    req: hyper::Request<hyper::body::Incoming>,
    worker: &Worker,
    info: &ConnInfo,
    reserved: Option<Reservation>,
) -> hyper::Response<RespBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        && parts.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        // Ambiguous framing (RFC 9112 §6.3: a request smuggling vector): refuse, and
        // close the connection since we cannot know where the next request starts.
        return bad_request_close();
    }
    let cgi = match cgi::from_http(
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        info,
    ) {
        Ok(c) => c,
        Err(_) => return bad_request_close(),
    };
    let head = parts.method == http::Method::HEAD;
    let access = AccessInfo::of(&cgi);
    let resp = match static_response(worker, &cgi) {
        Some(r) => r,
        None => {
            if worker.limit_post > 0 && cgi.content_length.unwrap_or(0) > worker.limit_post {
                let resp = Response::error(413);
                access.log(worker, 413, 0, started);
                let mut out = to_http(resp, head).0;
                out.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                return out;
            }
            let mut cgi = cgi;
            let body = match read_http_body(body, worker.limit_post).await {
                Ok(b) => b,
                Err(status) => {
                    access.log(worker, status, 0, started);
                    let mut out = to_http(Response::error(status), head).0;
                    out.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    return out;
                }
            };
            if cgi.content_length.is_none() && !body.is_empty() {
                // A chunked body: now that it is read, its length is known.
                cgi.content_length = Some(body.len() as u64);
                cgi.vars.push((
                    Bytes::from_static(b"CONTENT_LENGTH"),
                    Bytes::from(body.len().to_string()),
                ));
            }
            let token = worker.app_started();
            let resp = worker
                .executor
                .call_reserved(Request { cgi, body, head }, reserved)
                .await;
            let exception = resp.exception;
            let status = resp.status;
            let (out, bytes) = to_http(resp, head);
            access.finish(
                worker,
                token,
                (status, bytes.unwrap_or(0), exception),
                started,
            );
            return out;
        }
    };
    let status = resp.status;
    let (out, bytes) = to_http(resp, head);
    access.log(worker, status, bytes.unwrap_or(0), started);
    out
}

/// A 400 that also closes the connection.
fn bad_request_close() -> hyper::Response<RespBody> {
    let mut out = to_http(Response::error(400), false).0;
    out.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    out
}

/// Read a whole HTTP request body (hyper decodes chunked and answers
/// `Expect: 100-continue` when we start reading). Err is the status to answer.
async fn read_http_body(body: hyper::body::Incoming, limit: u64) -> Result<Bytes, u16> {
    if limit == 0 {
        return body.collect().await.map(|c| c.to_bytes()).map_err(|_| 400);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(413),
        Err(_) => Err(400),
    }
}

/// Convert to a hyper response; also returns the body length when known (for the
/// access line).
fn to_http(resp: Response, head: bool) -> (hyper::Response<RespBody>, Option<u64>) {
    let mut builder = hyper::Response::builder().status(resp.status);
    let mut valid = true;
    if let Some(headers) = builder.headers_mut() {
        headers.reserve(resp.headers.len());
        for (name, value) in &resp.headers {
            match (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_maybe_shared(value.clone()),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                _ => valid = false,
            }
        }
    }
    if !valid {
        return to_http(invalid_header_response(), head);
    }
    let declared = resp.content_length;
    let known = resp.body.exact_len();
    let body = if head {
        // hyper sends no body for HEAD; still drop ours now so close() runs.
        drop(resp.body);
        RespBody::new(Body::Empty, None)
    } else {
        RespBody::new(resp.body, declared)
    };
    let len = declared.or(known);
    match builder.body(body) {
        Ok(r) => (r, len),
        Err(_) => to_http(Response::error(500), head),
    }
}

/// A response body for hyper that enforces the declared Content-Length: extra bytes
/// are cut off, and a body that ends short aborts the connection (the client sees a
/// truncated response, never the next response glued to this one).
pub struct RespBody {
    inner: Body,
    /// Bytes still allowed by the declared Content-Length.
    remaining: Option<u64>,
    /// Chunks of `Body::Chunks`, in order (reversed for cheap pops).
    rev_chunks: Vec<Bytes>,
    done: bool,
    /// After a streamed chunk: a turn for the other tasks and the I/O driver before the
    /// next one (see `poll_frame`).
    pause: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// When the stream last let the others in (set at its first chunk).
    last_pause: Option<Instant>,
}

impl RespBody {
    fn new(inner: Body, declared: Option<u64>) -> RespBody {
        let (inner, rev_chunks) = match inner {
            Body::Chunks(mut c) => {
                c.reverse();
                (Body::Empty, c)
            }
            other => (other, Vec::new()),
        };
        RespBody {
            inner,
            remaining: declared,
            rev_chunks,
            done: false,
            pause: None,
            last_pause: None,
        }
    }

    fn next_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
        if let Some(c) = self.rev_chunks.pop() {
            return Poll::Ready(Some(Ok(c)));
        }
        match &mut self.inner {
            Body::Empty | Body::Chunks(_) => Poll::Ready(None),
            Body::Full(_) => match std::mem::replace(&mut self.inner, Body::Empty) {
                Body::Full(b) => Poll::Ready(Some(Ok(b))),
                _ => Poll::Ready(None),
            },
            Body::File {
                file, offset, len, ..
            } => {
                use std::os::unix::fs::FileExt;
                let want = len.map_or(FILE_CHUNK, |l| {
                    usize::try_from(l).unwrap_or(FILE_CHUNK).min(FILE_CHUNK)
                });
                if want == 0 {
                    self.inner = Body::Empty;
                    return Poll::Ready(None);
                }
                let mut buf = vec![0u8; want];
                match file.read_at(&mut buf, *offset) {
                    Ok(0) => {
                        self.inner = Body::Empty;
                        Poll::Ready(None)
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        *offset += n as u64;
                        if let Some(l) = len {
                            *l -= n as u64;
                        }
                        Poll::Ready(Some(Ok(Bytes::from(buf))))
                    }
                    Err(e) => Poll::Ready(Some(Err(StreamError(e.to_string())))),
                }
            }
            Body::Stream(source) => {
                let next = source.next_chunk().transpose();
                let now = Instant::now();
                let last = *self.last_pause.get_or_insert(now);
                if now.duration_since(last) >= STREAM_TURN {
                    self.pause = Some(Box::pin(tokio::task::yield_now()));
                    self.last_pause = Some(now);
                }
                Poll::Ready(next)
            }
            Body::Channel(rx) => rx.poll_recv(cx),
        }
    }
}

impl hyper::body::Body for RespBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(pause) = &mut this.pause {
            // With `threads = 1` a generator runs on this thread: pulling chunk after
            // chunk without a pause would hold every other connection of the worker
            // until the stream ends (a slow generator, for its whole length). A
            // `yield_now` once the stream had the thread for STREAM_TURN lets the I/O
            // driver and the other tasks in (waking ourselves would not: the driver is
            // only polled when no task is ready, or every 61 polls).
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        loop {
            let next = match this.next_raw(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(n) => n,
            };
            match (next, this.remaining) {
                (Some(Ok(chunk)), None) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                (Some(Ok(mut chunk)), Some(rem)) => {
                    if rem == 0 {
                        // Past the declared length: drain and drop the rest.
                        continue;
                    }
                    if chunk.len() as u64 > rem {
                        chunk.truncate(usize::try_from(rem).unwrap_or(usize::MAX));
                    }
                    this.remaining = Some(rem - chunk.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                (Some(Err(e)), _) => {
                    this.done = true;
                    this.inner = Body::Empty;
                    return Poll::Ready(Some(Err(e)));
                }
                (None, Some(rem)) if rem > 0 => {
                    this.done = true;
                    log_short_body(rem);
                    return Poll::Ready(Some(Err(StreamError(
                        "body shorter than Content-Length".into(),
                    ))));
                }
                (None, _) => {
                    this.done = true;
                    this.inner = Body::Empty;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || (self.rev_chunks.is_empty()
                && matches!(self.inner, Body::Empty)
                && self.remaining.is_none_or(|r| r == 0))
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(rem) = self.remaining {
            return SizeHint::with_exact(rem);
        }
        let known = match &self.inner {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::File { len, .. } => *len,
            _ => None,
        };
        match known {
            Some(k) => SizeHint::with_exact(
                k + self.rev_chunks.iter().map(|c| c.len() as u64).sum::<u64>(),
            ),
            None => SizeHint::default(),
        }
    }
}

// ---------------------------------------------------------------------------------
// uwsgi
// ---------------------------------------------------------------------------------

/// Where the general uwsgi path starts on a connection.
enum UwsgiStart {
    /// Read the request; these bytes of it were read already.
    Read(BytesMut),
    /// The head is parsed: read the rest of the body (`buf` holds its start).
    Body {
        cgi: CgiVars,
        buf: BytesMut,
        length: usize,
    },
    /// Answer this status and close.
    Refuse(u16, Option<CgiVars>),
}

async fn handle_uwsgi(
    mut conn: Conn,
    info: ConnInfo,
    worker: Arc<Worker>,
    start: UwsgiStart,
    reserved: Option<Reservation>,
) {
    let started = Instant::now();
    let request = async {
        match start {
            UwsgiStart::Read(buf) => read_uwsgi(&mut conn, &worker, &info, buf).await,
            UwsgiStart::Body { cgi, buf, length } => {
                read_uwsgi_body(&mut conn, cgi, buf, length).await
            }
            UwsgiStart::Refuse(status, cgi) => Err(UwsgiRead::Status(status, cgi)),
        }
    };
    let (cgi, body) = match tokio::time::timeout(UWSGI_READ_TIMEOUT, request).await {
        Ok(Ok(r)) => r,
        Ok(Err(UwsgiRead::Closed)) | Err(_) => return,
        Ok(Err(UwsgiRead::Status(status, cgi))) => {
            let _ = write_uwsgi_response(&mut conn, Response::error(status), false).await;
            if let Some(cgi) = cgi {
                AccessInfo::of(&cgi).log(&worker, status, 0, started);
            }
            return;
        }
    };
    let head = is_head(&cgi);
    let access = AccessInfo::of(&cgi);
    let (resp, token) = answer(&worker, cgi, body, head, reserved).await;
    let status = resp.status;
    let exception = resp.exception;
    let sent = write_uwsgi_response(&mut conn, resp, head)
        .await
        .unwrap_or(0);
    access.finish(&worker, token, (status, sent, exception), started);
}

enum UwsgiRead {
    /// The client went away or sent garbage: close without answering.
    Closed,
    /// Answer with this status, then close.
    Status(u16, Option<CgiVars>),
}

/// What [`parse_uwsgi_head`] found in the bytes read so far.
enum UwsgiHead {
    /// More bytes are needed for the vars.
    Incomplete,
    /// The vars are parsed (and split off the buffer, which now starts with the body);
    /// the body is `length` bytes.
    Parsed { cgi: CgiVars, length: usize },
}

/// Parse a uwsgi request head from `buf` once it is complete.
fn parse_uwsgi_head(
    buf: &mut BytesMut,
    worker: &Worker,
    info: &ConnInfo,
) -> Result<UwsgiHead, UwsgiRead> {
    let (header, head_len) = match uwsgi::check(buf, worker.buffer_size) {
        Ok(found) => found,
        Err(uwsgi::Error::Incomplete) => return Ok(UwsgiHead::Incomplete),
        Err(uwsgi::Error::TooLarge { size, limit }) => {
            crate::log::line(format_args!(
                "rsgi: uwsgi request vars of {size} bytes exceed buffer-size {limit}; \
                 raise buffer-size (max 65535)"
            ));
            return Err(UwsgiRead::Closed);
        }
        Err(uwsgi::Error::Malformed(why)) => {
            crate::log::line(format_args!("rsgi: malformed uwsgi packet: {why}"));
            return Err(UwsgiRead::Closed);
        }
    };
    if header.modifier1 != 0 && header.modifier1 != 30 {
        crate::log::line(format_args!(
            "rsgi: uwsgi modifier1 {} is not a WSGI request; closing",
            header.modifier1
        ));
        return Err(UwsgiRead::Closed);
    }
    let head = buf.split_to(head_len).freeze();
    let vars = uwsgi::parse_vars(&head, header).map_err(|e| {
        crate::log::line(format_args!("rsgi: malformed uwsgi packet: {e}"));
        UwsgiRead::Closed
    })?;
    let cgi = match cgi::from_uwsgi(vars, header.modifier1, info) {
        Ok(c) => c,
        Err(e) => {
            crate::log::line(format_args!("rsgi: bad uwsgi request: {e}"));
            return Err(UwsgiRead::Status(400, None));
        }
    };
    let length = cgi.content_length.unwrap_or(0);
    if worker.limit_post > 0 && length > worker.limit_post {
        return Err(UwsgiRead::Status(413, Some(cgi)));
    }
    let length = usize::try_from(length).map_err(|_| UwsgiRead::Status(413, None))?;
    Ok(UwsgiHead::Parsed { cgi, length })
}

async fn read_uwsgi(
    conn: &mut Conn,
    worker: &Worker,
    info: &ConnInfo,
    mut buf: BytesMut,
) -> Result<(CgiVars, Bytes), UwsgiRead> {
    buf.reserve(4096);
    loop {
        match parse_uwsgi_head(&mut buf, worker, info)? {
            UwsgiHead::Parsed { cgi, length } => {
                return read_uwsgi_body(conn, cgi, buf, length).await
            }
            UwsgiHead::Incomplete => read_more(conn, &mut buf).await?,
        }
    }
}

/// Read what the client sent next into `buf`; its end or an error closes.
async fn read_more(conn: &mut Conn, buf: &mut BytesMut) -> Result<(), UwsgiRead> {
    match conn.read_buf(buf).await {
        Ok(0) | Err(_) => Err(UwsgiRead::Closed),
        Ok(_) => Ok(()),
    }
}

/// Read the rest of a `length`-byte body whose start is in `buf`.
async fn read_uwsgi_body(
    conn: &mut Conn,
    cgi: CgiVars,
    mut buf: BytesMut,
    length: usize,
) -> Result<(CgiVars, Bytes), UwsgiRead> {
    while buf.len() < length {
        buf.reserve(length - buf.len());
        read_more(conn, &mut buf).await?;
    }
    buf.truncate(length);
    Ok((cgi, buf.freeze()))
}

/// The head of a response on a uwsgi connection: HTTP/1.1, the app's status line and
/// headers as it gave them.
fn uwsgi_response_head(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&resp.status_line);
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Write an HTTP-style response on a uwsgi connection and close it. Returns the body
/// bytes sent.
async fn write_uwsgi_response(conn: &mut Conn, resp: Response, head: bool) -> io::Result<u64> {
    let mut out = uwsgi_response_head(&resp);
    let declared = resp.content_length;
    // The connection is closed when the caller drops it (close(2) sends the FIN; a
    // shutdown(2) first would only cost a syscall per request).
    if head {
        drop(resp.body);
        conn.write_all(&out).await?;
        return Ok(0);
    }
    match resp.body {
        Body::Full(b) if declared.is_none_or(|d| d == b.len() as u64) => {
            // Head and body in one write: the common case.
            out.extend_from_slice(&b);
            conn.write_all(&out).await?;
            Ok(b.len() as u64)
        }
        body => {
            conn.write_all(&out).await?;
            let framing = declared.map_or(Framing::Close, Framing::Length);
            write_body(conn, body, framing).await
        }
    }
}

/// How a response body follows its head on a connection that closes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// At most this many bytes (the declared or known length): more are cut off; fewer
    /// are logged, and the closed connection tells the client the body is cut.
    Length(u64),
    /// HTTP/1.1 chunked (a streamed body of unknown length).
    Chunked,
    /// Until the connection closes (unknown length, no chunking).
    Close,
}

impl Framing {
    /// The most body bytes this framing lets through.
    fn limit(self) -> u64 {
        match self {
            Framing::None => 0,
            Framing::Length(n) => n,
            Framing::Chunked | Framing::Close => u64::MAX,
        }
    }
}

/// Write `body` after its head; returns the body bytes sent (without chunk framing).
async fn write_body(conn: &mut Conn, body: Body, framing: Framing) -> io::Result<u64> {
    if framing == Framing::None {
        return Ok(0);
    }
    let limit = framing.limit();
    match body {
        // sendfile(2), unless the file must be chunked (no length, HTTP/1.1).
        Body::File {
            file,
            offset,
            len,
            on_done,
        } if framing != Framing::Chunked => {
            let want = len.unwrap_or(u64::MAX).min(limit);
            let sent = conn.sendfile(&file, offset, want).await?;
            drop(on_done);
            if limit != u64::MAX && sent < limit {
                log_short_body(limit - sent);
            }
            Ok(sent)
        }
        body => write_frames(conn, body, framing, limit).await,
    }
}

/// Write a body frame by frame (streams, channels, chunk lists, files without sendfile).
async fn write_frames(
    conn: &mut Conn,
    body: Body,
    framing: Framing,
    limit: u64,
) -> io::Result<u64> {
    let mut sent: u64 = 0;
    let mut source = RespBody::new(body, None);
    let mut frames = std::pin::pin!(&mut source);
    let mut complete = true;
    while let Some(frame) = frames.as_mut().frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let room = limit - sent;
        if room == 0 {
            break;
        }
        if data.len() as u64 > room {
            data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if data.is_empty() {
            continue;
        }
        if framing == Framing::Chunked {
            let mut chunk = Vec::with_capacity(data.len() + 12);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            conn.write_all(&chunk).await?;
        } else {
            conn.write_all(&data).await?;
        }
        sent += data.len() as u64;
    }
    match framing {
        // The last chunk only after a complete body: a cut one stays visibly cut.
        Framing::Chunked if complete => conn.write_all(b"0\r\n\r\n").await?,
        Framing::Length(n) if sent < n => log_short_body(n - sent),
        _ => {}
    }
    Ok(sent)
}

fn log_short_body(short: u64) {
    crate::log::line(format_args!(
        "rsgi: the app's body is {short} bytes shorter than its Content-Length; \
         closing the connection"
    ));
}

impl Conn {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read_buf(buf).await,
            Conn::Unix(s) => s.read_buf(buf).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(data).await,
            Conn::Unix(s) => s.write_all(data).await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.writable().await,
            Conn::Unix(s) => s.writable().await,
        }
    }

    fn try_sendfile(
        &self,
        file: &std::fs::File,
        offset: &mut i64,
        count: usize,
    ) -> io::Result<usize> {
        let out_fd = match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        };
        let mut off: libc::off_t = *offset;
        let io = || {
            // SAFETY: both fds are open for the duration of the call (we hold the
            // stream and the file); `off` is a valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(out_fd, file.as_raw_fd(), &mut off, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        };
        let n = match self {
            Conn::Tcp(s) => s.try_io(tokio::io::Interest::WRITABLE, io),
            Conn::Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, io),
        }?;
        *offset = off;
        Ok(n)
    }

    /// Send up to `count` bytes of `file` from `offset` with sendfile(2).
    async fn sendfile(&self, file: &std::fs::File, offset: u64, count: u64) -> io::Result<u64> {
        let mut off = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut sent: u64 = 0;
        while sent < count {
            let chunk = usize::try_from(count - sent)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            match self.try_sendfile(file, &mut off, chunk) {
                Ok(0) => break,
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hyper::body::Body as _;

    #[test]
    fn a_noted_signal_raises_the_flag() {
        // SIGURG: ignored by default, and nothing else in the tests uses it.
        note_signal(libc::SIGURG).unwrap();
        SIGNALLED.store(false, Ordering::Relaxed);
        // SAFETY: raise(3) on this thread; the signal has the registry's handler.
        assert_eq!(unsafe { libc::raise(libc::SIGURG) }, 0);
        assert!(SIGNALLED.swap(false, Ordering::Relaxed));
    }

    fn collect(mut body: RespBody) -> (Vec<u8>, bool) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => out.extend_from_slice(&f.into_data().unwrap()),
                Poll::Ready(Some(Err(_))) => return (out, false),
                Poll::Ready(None) => return (out, true),
                Poll::Pending => panic!("pending"),
            }
        }
    }

    #[test]
    fn content_length_is_enforced() {
        let cases: Vec<(Body, Option<u64>, &[u8], bool)> = vec![
            (
                Body::Full(Bytes::from_static(b"hello")),
                None,
                b"hello",
                true,
            ),
            (
                Body::Full(Bytes::from_static(b"hello")),
                Some(5),
                b"hello",
                true,
            ),
            (
                Body::Full(Bytes::from_static(b"helloworld")),
                Some(5),
                b"hello",
                true,
            ),
            (
                Body::Full(Bytes::from_static(b"hel")),
                Some(5),
                b"hel",
                false,
            ),
            (
                Body::Chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
                Some(3),
                b"abc",
                true,
            ),
            (Body::Empty, Some(0), b"", true),
            (Body::Empty, Some(2), b"", false),
        ];
        for (body, declared, want, complete) in cases {
            let (got, ok) = collect(RespBody::new(body, declared));
            assert_eq!(got, want);
            assert_eq!(ok, complete, "declared {declared:?}");
        }
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listener_nodelay(&listener));
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn size_hint_is_exact_when_known() {
        let b = RespBody::new(
            Body::Chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
            None,
        );
        assert_eq!(b.size_hint().exact(), Some(4));
        let b = RespBody::new(Body::Full(Bytes::from_static(b"abc")), None);
        assert_eq!(b.size_hint().exact(), Some(3));
    }
}
