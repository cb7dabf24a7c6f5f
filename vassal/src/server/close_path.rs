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
//! when not). The response has hyper's shape (`server/write.rs`, [`Wire::Close`]).
//!
//! Anything else is passed on ([`Handled::PassOn`]) to the general path, which the
//! accept loop starts with the bytes already read: no data yet, a partial or malformed
//! head (hyper answers the 400), a body, keep-alive, pipelined bytes. A response that
//! does not fit the socket buffer at once, a file or a generator is finished by a task,
//! as on the general path (`server/write/send.rs`).
//!
//! This file only parses and decides; the answer comes from the core
//! (`server/core.rs`) and goes out through `server/write.rs`.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use tokio_util::task::TaskTracker;

use super::conn::{recv_now, StdConn};
use super::core::{self, Outcome, Ticket, Worker};
use super::uwsgi_front::{parse_uwsgi_head, UwsgiHead, UwsgiRead, UwsgiStart};
use super::write::{self, send, Wire};
use crate::cgi::{self, ConnInfo};
use crate::python::Request;
use crate::response::Response;

/// How much of a request the close path reads at once; a longer head takes the general
/// path (which allows more).
pub(super) const READ_BUF: usize = 8192;
/// The most request headers the close path parses (more: the general path).
const MAX_HEADERS: usize = 64;

/// Whether the close path is on for this process (`RSGI_NO_CLOSE_PATH=1` turns it off,
/// for A/B benchmarks and as an escape hatch).
pub(super) fn enabled() -> bool {
    std::env::var_os("RSGI_NO_CLOSE_PATH").is_none_or(|v| v.is_empty() || v == "0")
}

/// Where the close path left a connection.
// Returned once per connection and matched at once, never stored: boxing the larger
// variant would only add an allocation to each connection passed on.
#[allow(clippy::large_enum_variant)]
pub(super) enum Handled {
    /// Answered (or closed) right there, or left to a task to finish writing.
    Here,
    /// For the general path, which the accept loop starts.
    PassOn(PassOn),
}

/// A connection the general path takes over, with what the close path read of it.
pub(super) enum PassOn {
    /// HTTP through hyper; `prefix`: the bytes already read.
    Http {
        /// The connection.
        conn: StdConn,
        /// Its addresses.
        info: ConnInfo,
        /// What was read of it.
        prefix: Bytes,
    },
    /// uwsgi, from `start`.
    Uwsgi {
        /// The connection.
        conn: StdConn,
        /// Its addresses.
        info: ConnInfo,
        /// Where the close path left the request.
        start: UwsgiStart,
    },
}

fn pass_http(conn: StdConn, info: ConnInfo, prefix: Bytes) -> Handled {
    Handled::PassOn(PassOn::Http { conn, info, prefix })
}

fn pass_uwsgi(conn: StdConn, info: ConnInfo, start: UwsgiStart) -> Handled {
    Handled::PassOn(PassOn::Uwsgi { conn, info, start })
}

/// A request the close path can answer.
#[derive(Debug)]
struct CloseRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// Parse everything a connection has sent so far. `Some` when it is exactly one
/// complete request, without a body, after which the connection closes (hyper's rules:
/// HTTP/1.1 with a `close` token in `Connection`, HTTP/1.0 without `keep-alive`);
/// `None` for anything the general path must see.
fn parse_close(buf: &[u8]) -> Option<CloseRequest> {
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

/// Entry point of the `http_head` fuzz target (see [`crate::fuzzing::http_head`]): the
/// close path's decision ([`parse_close`]) and, for a request it takes, the CGI variables
/// it builds ([`cgi::from_http`]), with `info` as the connection.
pub(crate) fn fuzz_head(
    data: &[u8],
    info: &ConnInfo,
) -> Option<Result<cgi::CgiVars, cgi::CgiError>> {
    let req = parse_close(data)?;
    Some(cgi::from_http(
        &req.method,
        &req.uri,
        req.version,
        &req.headers,
        info,
    ))
}

/// Serve an HTTP connection if its request is for the close path; otherwise pass it
/// on. `buf` is the accept loop's read buffer ([`READ_BUF`] bytes); `tasks` finish
/// responses that do not leave at once.
pub(super) async fn serve_http(
    worker: &Arc<Worker>,
    tasks: &TaskTracker,
    stream: StdConn,
    info: ConnInfo,
    buf: &mut [u8],
) -> Handled {
    if worker.proxy_protocol {
        // The PROXY header is read by the general path (`http_front`).
        return pass_http(stream, info, Bytes::new());
    }
    let n = match recv_now(stream.fd(), buf) {
        Ok(Some(0)) | Err(_) => return Handled::Here, // closed without a request
        Ok(Some(n)) => n,
        Ok(None) => return pass_http(stream, info, Bytes::new()),
    };
    let data = &buf[..n];
    let Some(req) = parse_close(data) else {
        return pass_http(stream, info, Bytes::copy_from_slice(data));
    };
    let started = Instant::now();
    let Ok(mut cgi) = cgi::from_http(&req.method, &req.uri, req.version, &req.headers, &info)
    else {
        // The general path answers the 400, as for any request.
        return pass_http(stream, info, Bytes::copy_from_slice(data));
    };
    let head = req.method == Method::HEAD;
    worker.routes.apply(&mut cgi);
    let mut ticket = Ticket::new(&cgi, started);
    let request = Request {
        cgi,
        body: Bytes::new(),
        head,
    };
    let resp = core::answer(worker, &mut ticket, request, None, stream.fd()).await;
    let resp = write::checked(resp);
    let (out, framing) = write::head(
        &resp,
        Wire::Close(req.version),
        head,
        &write::http_date_now(),
    );
    // parse_close took every byte read, and the read did not fill the buffer: nothing
    // was left unread.
    let fin = stream.fin_with_data(n < buf.len());
    send_answer(worker, tasks, stream, (out, framing), resp, fin, ticket);
    Handled::Here
}

/// Serve a uwsgi connection (nginx's `uwsgi_pass`: one request, then close) right away
/// if its whole request has arrived; otherwise pass it on from where the close path
/// left it.
pub(super) async fn serve_uwsgi(
    worker: &Arc<Worker>,
    tasks: &TaskTracker,
    stream: StdConn,
    info: ConnInfo,
) -> Handled {
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
        Ok(None) => return pass_uwsgi(stream, info, UwsgiStart::Read(buf)),
    }
    let started = Instant::now();
    let (mut cgi, length) = match parse_uwsgi_head(&mut buf, worker, &info) {
        Ok(UwsgiHead::Parsed { cgi, length }) => (cgi, length),
        Ok(UwsgiHead::Incomplete) => return pass_uwsgi(stream, info, UwsgiStart::Read(buf)),
        Err(UwsgiRead::Closed) => return Handled::Here,
        Err(UwsgiRead::Status(status, cgi)) => {
            return pass_uwsgi(stream, info, UwsgiStart::Refuse(status, cgi))
        }
    };
    if buf.len() < length {
        return pass_uwsgi(stream, info, UwsgiStart::Body { cgi, buf, length });
    }
    let fin = stream.fin_with_data(buf.len() == length && length < READ_BUF);
    buf.truncate(length);
    let head = core::is_head(&cgi);
    worker.routes.apply(&mut cgi);
    let mut ticket = Ticket::new(&cgi, started);
    let request = Request {
        cgi,
        body: buf.freeze(),
        head,
    };
    let resp = core::answer(worker, &mut ticket, request, None, stream.fd()).await;
    let resp = write::checked(resp);
    let (out, framing) = write::head(&resp, Wire::Uwsgi, head, b"");
    send_answer(worker, tasks, stream, (out, framing), resp, fin, ticket);
    Handled::Here
}

/// Send `resp` whose head is `out` (see [`send::send_response`]), then close the
/// request's ticket with the body bytes sent.
fn send_answer(
    worker: &Arc<Worker>,
    tasks: &TaskTracker,
    stream: StdConn,
    (out, framing): (Vec<u8>, write::Framing),
    resp: Response,
    fin: bool,
    ticket: Ticket,
) {
    let (status, exception) = (resp.status, resp.exception);
    let file = matches!(resp.body, crate::response::Body::File { .. });
    let head = core::head_stats(&out);
    let worker = Arc::clone(worker);
    send::send_response(tasks, stream, out, resp.body, framing, fin, move |sent| {
        let outcome = Outcome {
            status,
            bytes: sent,
            exception,
            head,
            file,
        };
        ticket.finish(&worker, outcome);
    });
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
}
