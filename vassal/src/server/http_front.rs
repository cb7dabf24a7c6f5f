//! The keep-alive HTTP front end: hyper parses, keeps the connection (pipelining,
//! chunked request bodies, `Expect: 100-continue`, timeouts) and writes the head; the
//! request goes through the core ([`super::core`]), the response through
//! [`write::to_http`] (the shared header and framing rules).

use std::convert::Infallible;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::core::{self, Outcome, Ticket, Worker};
use super::write::{self, RespBody};
use crate::cgi::{self, ConnInfo};
use crate::python::{Request, Reservation};
use crate::response::Response;

/// How long a stopping worker waits for the next request on an idle HTTP connection
/// before closing it (see `drive_http`).
const STOP_IDLE_GRACE: Duration = Duration::from_secs(2);

/// Serve one HTTP connection with hyper; `prefix`: bytes already read from it;
/// `reserved`: the app thread held for its first request.
pub(super) async fn handle_http(
    mut conn: Conn,
    prefix: Bytes,
    mut info: ConnInfo,
    worker: Arc<Worker>,
    reserved: Option<Reservation>,
    stop: CancellationToken,
) {
    let mut prefix = prefix;
    if worker.proxy_protocol {
        match read_proxy_header(&mut conn, prefix, worker.http_timeout).await {
            Ok((rest, source)) => {
                prefix = rest;
                if let Some((ip, port)) = source {
                    info.remote_addr = Bytes::from(ip.to_string());
                    info.remote_port = Bytes::from(port.to_string());
                }
            }
            // A malformed header, a client that went away or stayed silent: close.
            Err(()) => return,
        }
    }
    let info = Arc::new(info);
    let fd = conn.fd();
    // How long a client may take to send a request head (`http-timeout`, else
    // `socket-timeout`) and stay idle between requests (`http-keepalive-timeout`):
    // enforced by the stream wrapper ([`Timed`]), which knows which of the two it is.
    let timing = Arc::new(Timing::new(worker.http_timeout, worker.keepalive_timeout));
    // Taken by the first request (hyper's service is `Fn`, hence the lock; none at all
    // without an app-thread pool).
    let reserved = reserved.map(|r| std::sync::Mutex::new(Some(r)));
    let service = {
        // An Arc: cloning a CancellationToken takes a lock, an Arc clone does not.
        let stop = Arc::new(stop.clone());
        let timing = Arc::clone(&timing);
        hyper::service::service_fn(move |req| {
            let worker = Arc::clone(&worker);
            let info = Arc::clone(&info);
            let stop = Arc::clone(&stop);
            let busy = Busy::enter(Arc::clone(&timing));
            let reserved = reserved
                .as_ref()
                .and_then(|r| r.lock().ok().and_then(|mut r| r.take()));
            async move {
                let mut resp = http_request(req, &worker, &info, reserved, fd).await;
                drop(busy);
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
        // [`Timed`] bounds the head and the idle time; hyper's own header timer would
        // count the idle time into the head's.
        .header_read_timeout(None);
    let result = match conn {
        Conn::Tcp(s) => {
            let io = Timed::new(CloseOnDrop(s, prefix), timing);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            drive_http(conn, &stop).await
        }
        Conn::Unix(s) => {
            let io = Timed::new(CloseOnDrop(s, prefix), timing);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            drive_http(conn, &stop).await
        }
    };
    // Connection errors (client went away, malformed request already answered with
    // 400 by hyper, body aborted) end this connection only.
    drop(result);
}

/// Read a PROXY protocol header, if the connection starts with one
/// ([`crate::proxy_protocol`]): the bytes after it, and the client it names. `Err`
/// when it is malformed, or the client closes or stays silent for `timeout`.
async fn read_proxy_header(
    conn: &mut Conn,
    prefix: Bytes,
    timeout: Duration,
) -> Result<(Bytes, Option<(std::net::IpAddr, u16)>), ()> {
    use crate::proxy_protocol::{parse, Parsed};
    let mut buf = bytes::BytesMut::from(&prefix[..]);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match parse(&buf) {
            Parsed::Absent => return Ok((buf.freeze(), None)),
            Parsed::Header { len, source } => {
                let rest = buf.split_off(len);
                return Ok((rest.freeze(), source));
            }
            Parsed::Invalid(_) => return Err(()),
            Parsed::Incomplete => {
                buf.reserve(512);
                match tokio::time::timeout_at(deadline, conn.read_buf(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Err(()),
                }
            }
        }
    }
}

/// The timeouts of one keep-alive connection, shared by its stream ([`Timed`]) and
/// its service ([`Busy`]). Times are milliseconds since `base`; [`NONE`] is unset.
struct Timing {
    base: Instant,
    /// `http-timeout` (or `socket-timeout`): from a request head's first byte (or the
    /// accept) to the whole head.
    head: Duration,
    /// `http-keepalive-timeout`: from the end of a response to the next head's first byte.
    idle: Duration,
    /// Requests being answered.
    in_flight: std::sync::atomic::AtomicU32,
    /// When the current head started (the accept, for the first one).
    head_started: std::sync::atomic::AtomicU64,
    /// When the last response was handed back.
    idle_since: std::sync::atomic::AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Timing {
    fn new(head: Duration, idle: Duration) -> Timing {
        Timing {
            base: Instant::now(),
            head,
            idle,
            in_flight: std::sync::atomic::AtomicU32::new(0),
            head_started: std::sync::atomic::AtomicU64::new(0),
            idle_since: std::sync::atomic::AtomicU64::new(NONE),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// When a connection waiting for bytes (no request being answered) times out:
    /// the head's deadline once a head started, else the idle deadline.
    fn deadline(&self) -> Instant {
        use std::sync::atomic::Ordering::Relaxed;
        let at = |ms: u64, plus: Duration| self.base + Duration::from_millis(ms) + plus;
        match self.head_started.load(Relaxed) {
            NONE => match self.idle_since.load(Relaxed) {
                NONE => at(0, self.head),
                since => at(since, self.idle),
            },
            started => at(started, self.head),
        }
    }
}

/// Marks a request being answered (the connection is not idle, and its body reads are
/// not bounded here: `limit-post` and the app decide).
struct Busy(Arc<Timing>);

impl Busy {
    fn enter(timing: Arc<Timing>) -> Busy {
        use std::sync::atomic::Ordering::Relaxed;
        timing.in_flight.fetch_add(1, Relaxed);
        timing.head_started.store(NONE, Relaxed);
        Busy(timing)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.idle_since.store(self.0.now(), Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A stream that times out (an `io::ErrorKind::TimedOut` read error, on which hyper
/// closes the connection) when the client is silent for too long while no request is
/// being answered: [`Timing::deadline`].
struct Timed<S> {
    inner: S,
    timing: Arc<Timing>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Timed<S> {
    fn new(inner: S, timing: Arc<Timing>) -> Timed<S> {
        let sleep = Box::pin(tokio::time::sleep_until(timing.deadline().into()));
        Timed {
            inner,
            timing,
            sleep,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use std::sync::atomic::Ordering::Relaxed;
        let this = &mut *self;
        let busy = this.timing.in_flight.load(Relaxed) > 0;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !busy
                    && buf.filled().len() > before
                    && this.timing.head_started.load(Relaxed) == NONE
                {
                    // The next request's first bytes: the head's clock starts.
                    this.timing.head_started.store(this.timing.now(), Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if busy => Poll::Pending,
            Poll::Pending => {
                let deadline = this.timing.deadline();
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                this.sleep.as_mut().reset(deadline.into());
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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

/// Answer one request of a hyper connection.
async fn http_request(
    req: hyper::Request<hyper::body::Incoming>,
    worker: &Worker,
    info: &ConnInfo,
    reserved: Option<Reservation>,
    fd: std::os::fd::RawFd,
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
    let mut cgi = match cgi::from_http(
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
    worker.routes.apply(&mut cgi);
    let mut ticket = Ticket::new(&cgi, started);
    // A static file first: its request body, if any, is never read.
    if let Some(resp) = core::static_answer(&worker.static_map, &cgi) {
        return respond(worker, ticket, resp, head);
    }
    if worker.limit_post > 0 && cgi.content_length.unwrap_or(0) > worker.limit_post {
        return refuse(worker, ticket, 413, head);
    }
    let body = match read_http_body(body, worker.limit_post).await {
        Ok(b) => b,
        Err(status) => return refuse(worker, ticket, status, head),
    };
    if cgi.content_length.is_none() && !body.is_empty() {
        // A chunked body: now that it is read, its length is known.
        cgi.content_length = Some(body.len() as u64);
        cgi.vars.push((
            Bytes::from_static(b"CONTENT_LENGTH"),
            Bytes::from(body.len().to_string()),
        ));
    }
    let resp = core::call_app(
        worker,
        &mut ticket,
        Request { cgi, body, head },
        reserved,
        fd,
    )
    .await;
    respond(worker, ticket, resp, head)
}

/// Hand `resp` to hyper and close the request's ticket.
fn respond(
    worker: &Worker,
    ticket: Ticket,
    resp: Response,
    head: bool,
) -> hyper::Response<RespBody> {
    let exception = resp.exception;
    let file = matches!(resp.body, crate::response::Body::File { .. });
    let (out, bytes) = write::to_http(resp, head);
    // The head's size and header count, for `log-format` only: hyper writes the head,
    // so this is its size as written (status line, headers, blank line) less `date`.
    let head = if crate::log::template().is_some() {
        let bytes = out
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + 19;
        (bytes as u64, out.headers().len() as u64)
    } else {
        (0, 0)
    };
    let outcome = Outcome {
        status: out.status().as_u16(),
        bytes: bytes.unwrap_or(0),
        exception,
        head,
        file,
    };
    ticket.finish(worker, outcome);
    out
}

/// Answer `status` without calling the app and close the connection (its request body
/// was not read, or not all of it).
fn refuse(worker: &Worker, ticket: Ticket, status: u16, head: bool) -> hyper::Response<RespBody> {
    ticket.finish(worker, Outcome::server(status));
    closing(write::to_http(Response::error(status), head).0)
}

/// A 400 that also closes the connection.
fn bad_request_close() -> hyper::Response<RespBody> {
    closing(write::to_http(Response::error(400), false).0)
}

/// `out` with `Connection: close`: hyper closes the connection after it.
fn closing(mut out: hyper::Response<RespBody>) -> hyper::Response<RespBody> {
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
