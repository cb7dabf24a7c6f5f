//! The close path: with `threads = 1`, a request that ends its connection
//! (`Connection: close`, or HTTP/1.0 without keep-alive) is answered right in the
//! accept loop, without hyper, a tokio task or an epoll registration.
//!
//! Why: such a connection costs the kernel an accept, a read, a write and a close;
//! hyper's general path adds an epoll_ctl ADD and DEL, a task, a `Connection` with its
//! dispatcher and ~15 allocations: about a quarter of the worker's CPU for a hello
//! request (bench/PROFILE.md). uWSGI's http-socket does the minimum; so does this path.
//!
//! How: HTTP listeners get `TCP_DEFER_ACCEPT`, so an accepted connection nearly always
//! has its request waiting. The accept loop reads it with one non-blocking recv(2) and
//! parses it with `httparse` ([`parse_close`]); a complete request without a body that
//! closes the connection goes through the same [`cgi::from_http`] as hyper's requests,
//! the app is called inline, head and body leave in one sendmsg(2), and the socket is
//! closed. That sendmsg says `MSG_MORE`, so the kernel holds the last segment until the
//! close adds the FIN to it: answer and FIN reach the client as one segment (8 segments
//! per connection instead of 10, both sides counted; [`StdConn::fin_with_data`] says
//! when not). The response has hyper's shape ([`write_head`]): lower-case header names,
//! `connection: close` for HTTP/1.1, a `content-length` when the length is known,
//! chunked for a streamed HTTP/1.1 body, `date` last.
//!
//! Anything else takes the general path unchanged, with the bytes already read: no
//! data yet, a partial or malformed head (hyper answers the 400), a body, keep-alive,
//! pipelined bytes. A response that does not fit the socket buffer at once, a file or a
//! generator is finished by a task, as on the general path.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use tokio::io::unix::AsyncFd;

use super::{
    answer, invalid_header_response, is_head, AcceptLoop, AccessInfo, Conn, Framing, Handled,
    UwsgiHead, UwsgiRead, UwsgiStart,
};
use crate::cgi::{self, ConnInfo};
use crate::response::{Body, ChunkSource, Response};

/// How much of a request the close path reads at once; a longer head takes the general
/// path (which allows more).
pub(super) const READ_BUF: usize = 8192;
/// The most request headers the close path parses (more: the general path).
const MAX_HEADERS: usize = 64;
/// How many chunks of a streamed body the accept loop sends itself before a task takes
/// over (see [`pump`]).
const PUMP_CHUNKS: u32 = 8;
/// How long the accept loop may spend on a streamed body before a task takes over.
const PUMP_TIME: std::time::Duration = std::time::Duration::from_millis(2);
/// At most this many body pieces go into one sendmsg(2); more are joined first.
const MAX_IOVECS: usize = 32;

/// Whether the close path is on for this process (`RSGI_NO_CLOSE_PATH=1` turns it off,
/// for A/B benchmarks and as an escape hatch).
pub(super) fn enabled() -> bool {
    std::env::var_os("RSGI_NO_CLOSE_PATH").is_none_or(|v| v.is_empty() || v == "0")
}

/// Ask the kernel to hand out connections of `listener` only once they have data
/// (`TCP_DEFER_ACCEPT`, as nginx's `deferred`). False if it could not be set.
pub(super) fn defer_accept(listener: &std::net::TcpListener) -> bool {
    // The value is in seconds: after it, a connection that sent nothing is handed out
    // anyway.
    super::set_tcp_option(listener, libc::TCP_DEFER_ACCEPT, 1)
}

/// A listening socket of either family, as the close path accepts from it.
pub(super) enum StdListener {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// Unix domain.
    Unix(std::os::unix::net::UnixListener),
}

impl AsRawFd for StdListener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            StdListener::Tcp(l) => l.as_raw_fd(),
            StdListener::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// An accepted connection of either family, not (yet) known to tokio: a plain
/// blocking-mode std stream, since the close path only makes flagged non-blocking calls
/// on it, and most connections never need the reactor.
pub(super) enum StdConn {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix domain.
    Unix(std::os::unix::net::UnixStream),
}

impl StdConn {
    fn fd(&self) -> RawFd {
        match self {
            StdConn::Tcp(s) => s.as_raw_fd(),
            StdConn::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Whether the last segment of a response may wait for the FIN that closing adds
    /// (`MSG_MORE`), so that the two leave as one packet: data and FIN together save
    /// the client and the server a segment and an ACK each per connection. Only for
    /// TCP, and only when everything the client sent has been read: closing a socket
    /// with unread data resets it, and a reset throws away a response still held back.
    fn fin_with_data(&self, all_read: bool) -> bool {
        all_read && matches!(self, StdConn::Tcp(_))
    }

    /// Hand the connection to tokio (non-blocking, registered with the reactor).
    pub(super) fn into_conn(self) -> io::Result<Conn> {
        match self {
            StdConn::Tcp(s) => {
                s.set_nonblocking(true)?;
                Ok(Conn::Tcp(tokio::net::TcpStream::from_std(s)?))
            }
            StdConn::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(Conn::Unix(tokio::net::UnixStream::from_std(s)?))
            }
        }
    }
}

/// Accept one connection (with the peer's address for TCP).
pub(super) async fn accept(
    listener: &AsyncFd<StdListener>,
) -> io::Result<(StdConn, Option<SocketAddr>)> {
    loop {
        let mut guard = listener.readable().await?;
        let accepted = guard.try_io(|l| match l.get_ref() {
            StdListener::Tcp(l) => l.accept().map(|(s, a)| (StdConn::Tcp(s), Some(a))),
            StdListener::Unix(l) => l.accept().map(|(s, _)| (StdConn::Unix(s), None)),
        });
        if let Ok(result) = accepted {
            return result;
        }
    }
}

/// Read what the connection has sent so far into `buf`, without waiting. `Ok(None)`:
/// nothing yet; `Ok(Some(0))`: the client closed.
fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `fd` is an open socket (the caller owns it); `buf` is valid for
    // `buf.len()` bytes of writes for the duration of the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    match usize::try_from(n) {
        Ok(n) => Ok(Some(n)),
        Err(_) => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// A request the close path can answer.
#[derive(Debug)]
pub(super) struct CloseRequest {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
}

/// Parse everything a connection has sent so far. `Some` when it is exactly one
/// complete request, without a body, after which the connection closes (hyper's rules:
/// HTTP/1.1 with a `close` token in `Connection`, HTTP/1.0 without `keep-alive`);
/// `None` for anything the general path must see.
pub(super) fn parse_close(buf: &[u8]) -> Option<CloseRequest> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len == buf.len() => {}
        _ => return None,
    }
    let version = match req.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let uri = Uri::try_from(req.path?).ok()?;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let (mut close_token, mut keep_alive_token) = (false, false);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && h.value.trim_ascii() != b"0") {
            return None;
        }
        if name == CONNECTION {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close_token |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let closes = if version == Version::HTTP_10 {
        !keep_alive_token
    } else {
        close_token
    };
    closes.then_some(CloseRequest {
        method,
        uri,
        version,
        headers,
    })
}

/// A response header the app gave cannot go on the wire.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct InvalidHeader;

/// Write the head of `resp` into `out` as hyper writes it for a connection that closes
/// after this response; returns how the body follows. `head_request`: the request was
/// HEAD (no body, and no length is made up for it).
pub(super) fn write_head(
    out: &mut Vec<u8>,
    resp: &Response,
    version: Version,
    head_request: bool,
    date: &[u8],
) -> Result<Framing, InvalidHeader> {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    let canonical = http::StatusCode::from_u16(resp.status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match canonical {
        Some(reason) => {
            out.extend_from_slice(itoa3(resp.status).as_slice());
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
        }
        // No standard phrase: the app's own line (hyper would write `<none>`).
        None => out.extend_from_slice(&resp.status_line),
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) || !value_ok(value) {
            return Err(InvalidHeader);
        }
        out.extend(name.iter().map(u8::to_ascii_lowercase));
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if version == Version::HTTP_11 {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let no_body = head_request || matches!(resp.status, 100..=199 | 204 | 304);
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = resp.content_length {
        Framing::Length(n)
    } else if let Some(n) = resp.body.exact_len() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    } else {
        Framing::Close
    };
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    Ok(framing)
}

/// The three digits of a status code (100..=999).
fn itoa3(code: u16) -> [u8; 3] {
    let c = code.clamp(100, 999);
    [
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ]
}

/// RFC 9110 token characters (what `http::HeaderName` accepts).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What `http::HeaderValue` accepts: visible ASCII, obs-text, space and tab.
fn value_ok(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// The current `date` value (IMF-fixdate), formatted once per second per thread.
fn http_date_now() -> Bytes {
    thread_local! {
        static CACHE: RefCell<(u64, Bytes)> = const { RefCell::new((u64::MAX, Bytes::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, Bytes::from(httpdate::fmt_http_date(now)));
        }
        c.1.clone()
    })
}

/// Serve an HTTP connection if its request is for the close path; otherwise hand it to
/// the general path. `buf` is the accept loop's read buffer ([`READ_BUF`] bytes).
pub(super) async fn serve_http(
    lp: &AcceptLoop,
    stream: StdConn,
    info: ConnInfo,
    buf: &mut [u8],
) -> Handled {
    let n = match recv_now(stream.fd(), buf) {
        Ok(Some(0)) | Err(_) => return Handled::Here, // closed without a request
        Ok(Some(n)) => n,
        Ok(None) => return lp.general_http(stream, info, Bytes::new()),
    };
    let data = &buf[..n];
    let Some(req) = parse_close(data) else {
        return lp.general_http(stream, info, Bytes::copy_from_slice(data));
    };
    let started = Instant::now();
    let Ok(cgi) = cgi::from_http(&req.method, &req.uri, req.version, &req.headers, &info) else {
        // The general path answers the 400, as for any request.
        return lp.general_http(stream, info, Bytes::copy_from_slice(data));
    };
    let head = req.method == Method::HEAD;
    let access = AccessInfo::of(&cgi);
    let (resp, token) = answer(&lp.worker, cgi, Bytes::new(), head, None).await;
    let exception = resp.exception;
    let date = http_date_now();
    let mut out = Vec::with_capacity(256);
    let (resp, framing) = match write_head(&mut out, &resp, req.version, head, &date) {
        Ok(framing) => (resp, framing),
        Err(InvalidHeader) => {
            drop(resp);
            let resp = invalid_header_response();
            out.clear();
            match write_head(&mut out, &resp, req.version, head, &date) {
                Ok(framing) => (resp, framing),
                Err(InvalidHeader) => return Handled::Here,
            }
        }
    };
    let status = resp.status;
    // parse_close took every byte read, and the read did not fill the buffer: nothing
    // was left unread.
    let fin = stream.fin_with_data(n < buf.len());
    let done = on_sent(access, token, (status, exception), started);
    send_response(lp, stream, out, resp.body, framing, fin, done);
    Handled::Here
}

/// Serve a uwsgi connection (nginx's `uwsgi_pass`: one request, then close) right away
/// if its whole request has arrived; otherwise hand it to the general path where the
/// close path left it.
pub(super) async fn serve_uwsgi(lp: &AcceptLoop, stream: StdConn, info: ConnInfo) -> Handled {
    let worker = &lp.worker;
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let got = {
        let spare = buf.spare_capacity_mut();
        // SAFETY: the spare capacity is `spare.len()` bytes of allocated memory; recv
        // only writes into it, and only the bytes it reports are used (set_len below).
        let slice =
            unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
        recv_now(stream.fd(), slice)
    };
    match got {
        Ok(Some(0)) | Err(_) => return Handled::Here,
        // SAFETY: recv initialised the first `n` bytes of the spare capacity.
        Ok(Some(n)) => unsafe { buf.set_len(n) },
        Ok(None) => return lp.general_uwsgi(stream, info, UwsgiStart::Read(buf)),
    }
    let started = Instant::now();
    let (cgi, length) = match super::parse_uwsgi_head(&mut buf, worker, &info) {
        Ok(UwsgiHead::Parsed { cgi, length }) => (cgi, length),
        Ok(UwsgiHead::Incomplete) => return lp.general_uwsgi(stream, info, UwsgiStart::Read(buf)),
        Err(UwsgiRead::Closed) => return Handled::Here,
        Err(UwsgiRead::Status(status, cgi)) => {
            return lp.general_uwsgi(stream, info, UwsgiStart::Refuse(status, cgi))
        }
    };
    if buf.len() < length {
        return lp.general_uwsgi(stream, info, UwsgiStart::Body { cgi, buf, length });
    }
    let fin = stream.fin_with_data(buf.len() == length && length < READ_BUF);
    buf.truncate(length);
    let head = is_head(&cgi);
    let access = AccessInfo::of(&cgi);
    let (resp, token) = answer(worker, cgi, buf.freeze(), head, None).await;
    let (status, exception) = (resp.status, resp.exception);
    let out = super::uwsgi_response_head(&resp);
    let framing = if head {
        Framing::None
    } else {
        resp.content_length.map_or(Framing::Close, Framing::Length)
    };
    let done = on_sent(access, token, (status, exception), started);
    send_response(lp, stream, out, resp.body, framing, fin, done);
    Handled::Here
}

/// What runs once a close-path response is out (or the client went away): count the
/// request in the shared counters and write its access line, with the body bytes sent.
fn on_sent(
    access: AccessInfo,
    token: Option<crate::shm::RequestToken>,
    (status, exception): (u16, bool),
    started: Instant,
) -> impl FnOnce(&super::Worker, u64) + Send + 'static {
    move |worker, sent| access.finish(worker, token, (status, sent, exception), started)
}

/// Send a response whose head is `out`: a body already in memory goes with the head
/// in one sendmsg(2) ([`send_or_finish`]), a stream as the app produces it ([`pump`]),
/// a file from a task (sendfile). Then `done` runs with the body bytes sent. `fin`:
/// the last send may hold its segment back for the FIN ([`StdConn::fin_with_data`]).
fn send_response(
    lp: &AcceptLoop,
    stream: StdConn,
    out: Vec<u8>,
    body: Body,
    framing: Framing,
    fin: bool,
    done: impl FnOnce(&super::Worker, u64) + Send + 'static,
) {
    let in_memory = match (framing, body) {
        (Framing::None, body) => {
            drop(body);
            Vec::new()
        }
        (Framing::Length(_) | Framing::Close, Body::Full(b)) => vec![b],
        (Framing::Length(_) | Framing::Close, Body::Chunks(c)) => c,
        (Framing::Length(_) | Framing::Close, Body::Empty) => Vec::new(),
        (framing, Body::Stream(source)) => {
            return pump(lp, stream, out, source, framing, fin, done)
        }
        (framing, body) => return lp.finish_later(stream, out, Some((body, framing)), done),
    };
    let (pieces, room) = cut(in_memory, framing.limit());
    // Short of a declared length: logged once the rest is out.
    let short = if let Framing::Length(_) = framing {
        room
    } else {
        0
    };
    send_or_finish(lp, stream, out, pieces, short, fin, done);
}

/// Send a streamed body (a generator, Flask's response iterable) as the app produces
/// it, each chunk with one sendmsg(2) (the head goes with the first), framed as
/// `framing` says; the app's `close()` runs when `source` is dropped at the end. The
/// app runs on this thread either way (`threads = 1`), so pulling chunks here costs
/// nothing the general path would not. A task finishes the stream once the socket
/// buffer is full, or once the stream proves long ([`PUMP_CHUNKS`] chunks or
/// [`PUMP_TIME`]): there, other connections get their turns between chunks.
fn pump(
    lp: &AcceptLoop,
    stream: StdConn,
    head: Vec<u8>,
    mut source: Box<dyn ChunkSource>,
    framing: Framing,
    fin: bool,
    done: impl FnOnce(&super::Worker, u64) + Send + 'static,
) {
    let fd = stream.fd();
    let limit = framing.limit();
    let mut pending = head;
    let mut sent: u64 = 0;
    let mut pulled = 0;
    let started = Instant::now();
    let complete = loop {
        if pulled == PUMP_CHUNKS || started.elapsed() > PUMP_TIME {
            // A long stream: a task goes on with it (nothing is pending here).
            hand_over(lp, stream, pending, source, framing, sent, done);
            return;
        }
        pulled += 1;
        let mut chunk = match source.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break true,
            Err(_) => break false, // the Python layer logged it
        };
        let room = limit - sent;
        if room == 0 {
            break true;
        }
        if chunk.len() as u64 > room {
            chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if chunk.is_empty() {
            continue;
        }
        let len = chunk.len() as u64;
        let mut pieces = Vec::with_capacity(2);
        if framing == Framing::Chunked {
            pending.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            pieces.push(chunk);
            pieces.push(Bytes::from_static(b"\r\n"));
        } else {
            pieces.push(chunk);
        }
        match send_now(fd, &pending, &pieces, false) {
            Sent::All => {
                pending.clear();
                sent += len;
            }
            Sent::Part(written) => {
                let rest = unsent(&pending, &pieces, written);
                hand_over(lp, stream, rest, source, framing, sent + len, done);
                return;
            }
            Sent::Failed => {
                drop(source);
                done(&lp.worker, sent);
                return;
            }
        }
    };
    if framing == Framing::Chunked && complete {
        // The last chunk only after a complete body: a cut one stays visibly cut.
        pending.extend_from_slice(b"0\r\n\r\n");
    }
    if let Framing::Length(n) = framing {
        if sent < n {
            super::log_short_body(n - sent);
        }
    }
    send_or_finish(lp, stream, pending, Vec::new(), 0, fin, move |worker, _| {
        done(worker, sent);
    });
    drop(source);
}

/// Let a task finish a stream: send `rest`, then what `source` still produces. `sent`:
/// the body bytes already sent (or in `rest`).
fn hand_over(
    lp: &AcceptLoop,
    stream: StdConn,
    rest: Vec<u8>,
    source: Box<dyn ChunkSource>,
    framing: Framing,
    sent: u64,
    done: impl FnOnce(&super::Worker, u64) + Send + 'static,
) {
    let framing = match framing {
        Framing::Length(n) => Framing::Length(n - sent),
        other => other,
    };
    lp.finish_later(
        stream,
        rest,
        Some((Body::Stream(source), framing)),
        move |worker, more| done(worker, sent + more),
    );
}

/// What of `head` and `pieces` is left after the first `written` bytes.
fn unsent(head: &[u8], pieces: &[Bytes], written: usize) -> Vec<u8> {
    let total = head.len() + pieces.iter().map(Bytes::len).sum::<usize>();
    let mut rest = Vec::with_capacity(total.saturating_sub(written));
    let mut skip = written;
    for piece in std::iter::once(head).chain(pieces.iter().map(|p| &p[..])) {
        let take = skip.min(piece.len());
        rest.extend_from_slice(&piece[take..]);
        skip -= take;
    }
    rest
}

/// Send `out` and `pieces` now if the socket takes them, else finish on a task; then
/// run `done` with the body bytes sent. `short`: how many bytes the body lacks against
/// its declared length (logged). `fin`: as for [`send_response`]; the socket is closed
/// right after a complete send, which sends the held segment with the FIN.
fn send_or_finish(
    lp: &AcceptLoop,
    stream: StdConn,
    out: Vec<u8>,
    pieces: Vec<Bytes>,
    short: u64,
    fin: bool,
    done: impl FnOnce(&super::Worker, u64) + Send + 'static,
) {
    let fd = stream.fd();
    let worker = &lp.worker;
    let body_len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    match send_now(fd, &out, &pieces, fin) {
        Sent::All => {
            if short > 0 {
                super::log_short_body(short);
            }
            drop(stream);
            done(worker, body_len);
        }
        Sent::Part(written) => {
            // The socket buffer is full: a task sends the rest.
            let rest = unsent(&out, &pieces, written);
            lp.finish_later(stream, rest, None, move |worker, _| {
                if short > 0 {
                    super::log_short_body(short);
                }
                done(worker, body_len);
            });
        }
        Sent::Failed => {
            // The client went away; the request was still served.
            done(worker, 0);
        }
    }
}

/// Cut body pieces to the declared length; also returns by how much they fall short.
fn cut(mut pieces: Vec<Bytes>, limit: u64) -> (Vec<Bytes>, u64) {
    let mut room = limit;
    pieces.retain_mut(|p| {
        if room == 0 {
            return false;
        }
        if p.len() as u64 > room {
            p.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        room -= p.len() as u64;
        !p.is_empty()
    });
    if pieces.len() > MAX_IOVECS {
        let joined: Vec<u8> = pieces.concat();
        pieces = vec![Bytes::from(joined)];
    }
    (pieces, room)
}

/// How far a non-blocking send got.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    All,
    /// The socket buffer filled after this many bytes.
    Part(usize),
    /// The connection is gone.
    Failed,
}

/// Send `head` and `pieces` without blocking, as far as the socket buffer allows.
/// `more`: `MSG_MORE`, the kernel may hold the last partial segment until the next send
/// or the FIN (the caller closes the socket right after a complete send). A partial
/// send is finished by a task whose plain writes push everything out.
fn send_now(fd: std::os::fd::RawFd, head: &[u8], pieces: &[Bytes], more: bool) -> Sent {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(pieces.len() + 1);
    slices.push(IoSlice::new(head));
    slices.extend(pieces.iter().map(|p| IoSlice::new(p)));
    let total: usize = head.len() + pieces.iter().map(Bytes::len).sum::<usize>();
    let mut written = 0usize;
    let mut bufs = &mut slices[..];
    while written < total {
        // SAFETY: a zeroed msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (documented by std); sendmsg
        // only reads the slices, which live across the call.
        msg.msg_iov = bufs.as_mut_ptr().cast();
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: `fd` is an open socket we own; `msg` points to valid iovecs.
        let n = unsafe { libc::sendmsg(fd, &msg, flags) };
        match usize::try_from(n) {
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => Sent::Part(written),
                    _ => Sent::Failed,
                };
            }
        }
    }
    Sent::All
}

impl AcceptLoop {
    /// Finish a response on a task: send `rest`, then `body` as `framing` says, then
    /// run `done` with the body bytes the task sent.
    fn finish_later(
        &self,
        stream: StdConn,
        rest: Vec<u8>,
        body: Option<(Body, Framing)>,
        done: impl FnOnce(&super::Worker, u64) + Send + 'static,
    ) {
        let worker = std::sync::Arc::clone(&self.worker);
        let Ok(mut conn) = stream.into_conn() else {
            return;
        };
        self.tracker.spawn(async move {
            let mut sent = 0;
            if conn.write_all(&rest).await.is_ok() {
                if let Some((body, framing)) = body {
                    sent = super::write_body(&mut conn, body, framing)
                        .await
                        .unwrap_or(0);
                }
            }
            drop(conn);
            done(&worker, sent);
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn which_requests_take_the_close_path() {
        let cases: &[(&str, bool)] = &[
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                true,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nconnection: Close\r\n\r\n",
                true,
            ),
            ("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n", true),
            ("GET / HTTP/1.0\r\n\r\n", true),
            ("HEAD /x?y HTTP/1.0\r\nHost: a\r\n\r\n", true),
            (
                "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            // keep-alive: the general path
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
            // a body, or framing the general path must judge
            (
                "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
                false,
            ),
            (
                "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\n",
                false,
            ),
            (
                "POST / HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
            ),
            (
                "GET / HTTP/1.1\r\nConnection: close\r\nContent-Length: x\r\n\r\n",
                false,
            ),
            // incomplete, pipelined, malformed, or not for a WSGI app
            ("GET / HTTP/1.1\r\nConnection: close\r\n", false),
            ("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", false),
            (
                "GET / HTTP/1.1\r\nBad Header: x\r\nConnection: close\r\n\r\n",
                false,
            ),
            ("GET /\x01 HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/2.0\r\nConnection: close\r\n\r\n", false),
            ("CONNECT a:443 HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            ("", false),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_close(raw.as_bytes()).is_some(), *want, "{raw:?}");
        }
    }

    #[test]
    fn parsed_request_keeps_what_cgi_needs() {
        let r = parse_close(
            b"GET http://h:81/p%20q?x=1 HTTP/1.0\r\nX-A: 1\r\nx-a: 2\r\nHost: h:81\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.version, Version::HTTP_10);
        assert_eq!(r.uri.path(), "/p%20q");
        assert_eq!(r.uri.query(), Some("x=1"));
        let all: Vec<_> = r.headers.get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
    }

    fn resp(
        status: u16,
        line: &str,
        headers: &[(&str, &str)],
        body: Body,
        cl: Option<u64>,
    ) -> Response {
        Response {
            status,
            status_line: Bytes::copy_from_slice(line.as_bytes()),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        Bytes::copy_from_slice(n.as_bytes()),
                        Bytes::copy_from_slice(v.as_bytes()),
                    )
                })
                .collect(),
            body,
            content_length: cl,
            exception: false,
        }
    }

    fn head_of(r: &Response, v: Version, head: bool) -> (String, Result<Framing, InvalidHeader>) {
        let mut out = Vec::new();
        let f = write_head(&mut out, r, v, head, b"D");
        (String::from_utf8(out).unwrap(), f)
    }

    #[test]
    fn heads_have_hypers_shape() {
        let ct = [("Content-Type", "text/plain")];
        let ct_cl = [("Content-Type", "text/plain"), ("Content-Length", "5")];
        let full = || Body::Full(Bytes::from_static(b"hello"));
        let v11 = Version::HTTP_11;
        let v10 = Version::HTTP_10;
        let cases: Vec<(Response, Version, bool, &str, Framing)> = vec![
            (
                resp(200, "200 OK", &ct_cl, full(), Some(5)),
                v11,
                false,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\ndate: D\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &ct, full(), None),
                v11,
                false,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 5\r\ndate: D\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &ct, full(), None),
                v10,
                false,
                "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ndate: D\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &ct, full(), None),
                v11,
                true,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ndate: D\r\n\r\n",
                Framing::None,
            ),
            (
                resp(204, "204 No Content", &[], Body::Empty, None),
                v10,
                false,
                "HTTP/1.0 204 No Content\r\ndate: D\r\n\r\n",
                Framing::None,
            ),
            (
                resp(200, "200 Fine", &[("X-Y", "z")], Body::Empty, None),
                v11,
                false,
                "HTTP/1.1 200 OK\r\nx-y: z\r\nconnection: close\r\ncontent-length: 0\r\ndate: D\r\n\r\n",
                Framing::Length(0),
            ),
            (
                resp(599, "599 Custom", &[], Body::Empty, Some(0)),
                v10,
                false,
                "HTTP/1.0 599 Custom\r\ndate: D\r\n\r\n",
                Framing::Length(0),
            ),
        ];
        for (r, v, head, want, framing) in cases {
            assert_eq!(
                head_of(&r, v, head),
                (want.to_string(), Ok(framing)),
                "{r:?}"
            );
        }
    }

    #[test]
    fn unknown_length_is_chunked_in_1_1_and_close_delimited_in_1_0() {
        struct Nothing;
        impl crate::response::ChunkSource for Nothing {
            fn next_chunk(&mut self) -> Result<Option<Bytes>, crate::response::StreamError> {
                Ok(None)
            }
        }
        let r = resp(200, "200 OK", &[], Body::Stream(Box::new(Nothing)), None);
        let (h, f) = head_of(&r, Version::HTTP_11, false);
        assert_eq!(f, Ok(Framing::Chunked));
        assert!(h.contains("transfer-encoding: chunked\r\n"), "{h}");
        let (h, f) = head_of(&r, Version::HTTP_10, false);
        assert_eq!(f, Ok(Framing::Close));
        assert!(!h.contains("transfer-encoding"), "{h}");
    }

    #[test]
    fn invalid_app_headers_are_refused() {
        for (n, v) in [
            ("Bad Name", "x"),
            ("", "x"),
            ("X", "a\x01b"),
            ("X", "a\x7fb"),
            ("X:", "y"),
        ] {
            let r = resp(200, "200 OK", &[(n, v)], Body::Empty, None);
            assert_eq!(
                head_of(&r, Version::HTTP_11, false).1,
                Err(InvalidHeader),
                "{n:?}: {v:?}"
            );
        }
        let r = resp(200, "200 OK", &[("X", "tab\there é")], Body::Empty, None);
        assert!(head_of(&r, Version::HTTP_11, false).1.is_ok());
    }

    #[test]
    fn bodies_are_cut_to_the_declared_length() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let cases: Vec<(Vec<Bytes>, u64, Vec<Bytes>, u64)> = vec![
            (vec![b("hello")], 5, vec![b("hello")], 0),
            (vec![b("hello")], 2, vec![b("he")], 0),
            (vec![b("ab"), b("cd"), b("ef")], 3, vec![b("ab"), b("c")], 0),
            (vec![b("ab")], 5, vec![b("ab")], 3),
            (vec![b(""), b("ab")], 2, vec![b("ab")], 0),
            (vec![], 0, vec![], 0),
        ];
        for (pieces, limit, want, short) in cases {
            assert_eq!(
                cut(pieces.clone(), limit),
                (want, short),
                "{pieces:?} {limit}"
            );
        }
        let many: Vec<Bytes> = (0..100).map(|_| b("x")).collect();
        assert_eq!(cut(many, 100).0, vec![Bytes::from(vec![b'x'; 100])]);
    }

    #[test]
    fn unsent_is_what_follows_the_written_bytes() {
        let pieces = [Bytes::from_static(b"body"), Bytes::from_static(b"\r\n")];
        let cases: &[(usize, &[u8])] = &[
            (0, b"head body\r\n"),
            (3, b"d body\r\n"),
            (5, b"body\r\n"),
            (7, b"dy\r\n"),
            (10, b"\n"),
            (11, b""),
        ];
        for (written, want) in cases {
            assert_eq!(
                unsent(b"head ", &pieces, *written),
                want.to_vec(),
                "{written}"
            );
        }
    }

    #[test]
    fn date_is_an_imf_fixdate() {
        let d = http_date_now();
        assert_eq!(d.len(), 29, "{d:?}");
        assert!(d.ends_with(b" GMT"));
        assert!(httpdate::parse_http_date(std::str::from_utf8(&d).unwrap()).is_ok());
    }

    #[test]
    fn a_held_back_answer_leaves_with_the_close() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let body = Bytes::from(vec![b'x'; 3000]);
        assert_eq!(
            send_now(server.as_raw_fd(), b"head ", &[body], true),
            Sent::All
        );
        drop(server); // the FIN goes out with the held segment
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 5 + 3000);
        assert!(got.starts_with(b"head xxx"));
    }

    #[test]
    fn send_now_reports_a_full_buffer_and_a_gone_peer() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        assert_eq!(
            send_now(
                server.as_raw_fd(),
                b"head ",
                &[Bytes::from_static(b"body")],
                false
            ),
            Sent::All
        );
        let mut got = [0u8; 9];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"head body");
        // 64 MiB never fits the loopback buffers of an unread socket.
        let big = Bytes::from(vec![0u8; 64 << 20]);
        match send_now(server.as_raw_fd(), b"", &[big], false) {
            Sent::Part(n) => assert!(n > 0 && n < 64 << 20, "{n}"),
            other => panic!("{other:?}"),
        }
        drop(client);
        let mut failed = false;
        for _ in 0..100 {
            if send_now(server.as_raw_fd(), b"x", &[], false) == Sent::Failed {
                failed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(failed, "a closed peer is reported");
    }
}
