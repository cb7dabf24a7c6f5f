//! The one writer of responses, for every front end: which headers go out, what an
//! invalid one becomes, the status line, `Date`, how the body is framed
//! (`Content-Length`, chunked, close-delimited, none for HEAD / 1xx / 204 / 304), and
//! the bytes themselves (one sendmsg(2), a task's writes, sendfile(2) for files).
//!
//! Three dialects ([`Wire`]) share these rules:
//! - [`Wire::Close`]: HTTP on a connection that closes after this response (the close
//!   path): written here, in hyper's shape ([`write_head`]), so that it and the hyper
//!   path give the same bytes.
//! - [`Wire::Uwsgi`]: behind nginx's `uwsgi_pass`: `HTTP/1.1`, the app's own status
//!   line and headers as it gave them, the body delimited by the close.
//! - [`Wire::Hyper`]: keep-alive HTTP; hyper writes the head itself (it must, to keep
//!   its connection state), from the response [`to_http`] builds under the same rules.
//!
//! Bodies: [`RespBody`] is the body hyper pulls and the one tasks write frame by frame
//! (it enforces a declared length); [`send`] has the I/O.

use std::cell::RefCell;
use std::time::SystemTime;

use bytes::Bytes;
use http::Version;

use crate::response::Response;

mod body;
pub(super) mod send;

/// `add-header` values, set once at start: added to every response.
static ADD_HEADERS: std::sync::OnceLock<Vec<(Bytes, Bytes)>> = std::sync::OnceLock::new();

/// Read `add-header` values (`Name: value`, uWSGI's form) and keep them for every
/// response. The error names the value that is not a valid header.
pub fn set_add_headers(values: &[String]) -> Result<(), String> {
    let headers = values
        .iter()
        .map(|v| parse_add_header(v))
        .collect::<Result<Vec<_>, _>>()?;
    // A second call (tests) keeps the first list.
    let _ = ADD_HEADERS.set(headers);
    Ok(())
}

/// `Name: value` as a header pair, checked as every header is ([`headers_ok`]).
fn parse_add_header(value: &str) -> Result<(Bytes, Bytes), String> {
    let Some((name, v)) = value.split_once(':') else {
        return Err(format!("add-header = '{value}': expected 'Name: value'"));
    };
    let pair = (
        Bytes::copy_from_slice(name.trim().as_bytes()),
        Bytes::copy_from_slice(v.trim().as_bytes()),
    );
    if !headers_ok(std::slice::from_ref(&pair)) {
        return Err(format!(
            "add-header = '{value}': not a valid header name and value"
        ));
    }
    Ok(pair)
}

/// The `add-header` headers (none unless set).
fn add_headers() -> &'static [(Bytes, Bytes)] {
    ADD_HEADERS.get().map_or(&[], Vec::as_slice)
}

pub(super) use body::RespBody;

/// How a response body follows its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
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
    pub(super) fn limit(self) -> u64 {
        match self {
            Framing::None => 0,
            Framing::Length(n) => n,
            Framing::Chunked | Framing::Close => u64::MAX,
        }
    }
}

/// Who puts the response on the wire, and in which dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// HTTP of this version, the connection closing after the response (the close
    /// path writes it, in hyper's shape).
    Close(Version),
    /// An HTTP response on a uwsgi connection (nginx reads it and closes).
    Uwsgi,
    /// hyper's keep-alive connection: hyper writes the head and frames the body from
    /// what [`to_http`] gives it (a body for 1xx/204/304 is dropped by hyper itself).
    Hyper,
}

/// How the body of `resp` follows its head on `wire`; `head_request`: the request was
/// HEAD (no body, and no length is made up for it).
pub(super) fn framing(wire: Wire, resp: &Response, head_request: bool) -> Framing {
    let bodiless_status = matches!(resp.status, 100..=199 | 204 | 304);
    match wire {
        Wire::Uwsgi | Wire::Hyper if head_request => Framing::None,
        // nginx frames a uwsgi response itself: the app's Content-Length, or the close.
        Wire::Uwsgi => resp.content_length.map_or(Framing::Close, Framing::Length),
        Wire::Close(_) if head_request || bodiless_status => Framing::None,
        Wire::Close(_) | Wire::Hyper => match resp.content_length.or(resp.body.exact_len()) {
            Some(n) => Framing::Length(n),
            None if wire == Wire::Close(Version::HTTP_10) => Framing::Close,
            None => Framing::Chunked,
        },
    }
}

/// Make `resp` fit for the wire: if a header the app gave cannot go out (a name that
/// is not an RFC 9110 token, a value with control characters), answer 500 instead
/// ([`refuse_invalid`]).
pub(super) fn checked(resp: Response) -> Response {
    if headers_ok(&resp.headers) {
        return resp;
    }
    refuse_invalid(resp)
}

/// The answer to a response whose headers cannot go on the wire: logged, and a 500
/// instead (the app's response is dropped, which runs its `close()`; its exception
/// still counts).
fn refuse_invalid(resp: Response) -> Response {
    let exception = resp.exception;
    drop(resp);
    crate::log::line(format_args!(
        "rsgi: the app sent an invalid header name or value; answering 500"
    ));
    let mut error = Response::error(500);
    error.exception = exception;
    error
}

/// Whether every header may go on the wire (what `http::HeaderName` and
/// `http::HeaderValue` accept): a table lookup a byte.
fn headers_ok(headers: &[(Bytes, Bytes)]) -> bool {
    headers.iter().all(|(name, value)| {
        !name.is_empty()
            && name
                .iter()
                .all(|&b| BYTE_CLASS[usize::from(b)] & TOKEN != 0)
            && value
                .iter()
                .all(|&b| BYTE_CLASS[usize::from(b)] & VALUE != 0)
    })
}

/// [`BYTE_CLASS`]: may stand in a header name (an RFC 9110 token character).
const TOKEN: u8 = 1;
/// [`BYTE_CLASS`]: may stand in a header value (visible ASCII, obs-text, space, tab).
const VALUE: u8 = 2;

/// What each byte may be part of: [`TOKEN`], [`VALUE`].
static BYTE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            table[b] |= TOKEN;
        }
        if (c >= 0x20 && c != 0x7f) || c == b'\t' {
            table[b] |= VALUE;
        }
        b += 1;
    }
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] |= TOKEN;
        i += 1;
    }
    table
};

/// Write the head of `resp` (already [`checked`]) for `wire` into `out`, its body to
/// follow as `framing` (from [`framing`]) says. `date`: the `Date` value (the close
/// path's; uwsgi heads have none: nginx adds its own).
///
/// [`Wire::Close`] writes what hyper writes for a connection that closes after this
/// response: lower-case header names, the standard reason phrase, `connection: close`
/// for HTTP/1.1, a `content-length` when the length is known but was not declared,
/// `transfer-encoding: chunked` for a streamed HTTP/1.1 body, `date` last.
pub(super) fn write_head(
    out: &mut Vec<u8>,
    resp: &Response,
    wire: Wire,
    framing: Framing,
    date: &[u8],
) {
    let Wire::Close(version) = wire else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&resp.status_line);
        out.extend_from_slice(b"\r\n");
        for (name, value) in resp.headers.iter().chain(add_headers()) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        return;
    };
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
    for (name, value) in resp.headers.iter().chain(add_headers()) {
        out.extend(name.iter().map(u8::to_ascii_lowercase));
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if version == Version::HTTP_11 {
        out.extend_from_slice(b"connection: close\r\n");
    }
    match framing {
        Framing::Length(n) if resp.content_length.is_none() => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The head of `resp` (already [`checked`]) for `wire` and how its body follows (see
/// [`framing`] and [`write_head`]).
pub(super) fn head(
    resp: &Response,
    wire: Wire,
    head_request: bool,
    date: &[u8],
) -> (Vec<u8>, Framing) {
    let framing = framing(wire, resp, head_request);
    let mut out = Vec::with_capacity(256);
    write_head(&mut out, resp, wire, framing, date);
    (out, framing)
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

/// The current `Date` value (IMF-fixdate), formatted once per second per thread.
pub(super) fn http_date_now() -> Bytes {
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

/// Convert `resp` for hyper ([`Wire::Hyper`]): the headers (under [`checked`]'s rule) and a
/// [`RespBody`] that keeps the declared length honest; none at all for HEAD (hyper sends
/// no body for HEAD; ours is dropped now, so the app's `close()` runs). Also returns
/// the body length when known, for the access line.
pub(super) fn to_http(resp: Response, head: bool) -> (hyper::Response<RespBody>, Option<u64>) {
    let mut builder = hyper::Response::builder().status(resp.status);
    let mut valid = true;
    if let Some(headers) = builder.headers_mut() {
        headers.reserve(resp.headers.len());
        // `http`'s own types take exactly what [`headers_ok`] takes (a unit test holds
        // them to it, byte by byte): no second pass over the headers.
        for (name, value) in resp.headers.iter().chain(add_headers()) {
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
        return to_http(refuse_invalid(resp), head);
    }
    let declared = resp.content_length;
    let len = declared.or(resp.body.exact_len());
    let body = if framing(Wire::Hyper, &resp, head) == Framing::None {
        drop(resp.body);
        RespBody::new(crate::response::Body::Empty, None)
    } else {
        RespBody::new(resp.body, declared)
    };
    match builder.body(body) {
        Ok(r) => (r, len),
        Err(_) => to_http(Response::error(500), head),
    }
}

/// Say that the app's body ended `short` bytes before its declared length.
pub(super) fn log_short_body(short: u64) {
    crate::log::line(format_args!(
        "rsgi: the app's body is {short} bytes shorter than its Content-Length; \
         closing the connection"
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::response::{Body, ChunkSource, StreamError};

    pub(super) fn resp(
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

    struct Nothing;
    impl ChunkSource for Nothing {
        fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
            Ok(None)
        }
    }

    fn stream() -> Body {
        Body::Stream(Box::new(Nothing))
    }

    fn full() -> Body {
        Body::Full(Bytes::from_static(b"hello"))
    }

    fn head_of(r: &Response, wire: Wire, head: bool) -> (String, Framing) {
        let f = framing(wire, r, head);
        let mut out = Vec::new();
        write_head(&mut out, r, wire, f, b"D");
        (String::from_utf8(out).unwrap(), f)
    }

    const V10: Wire = Wire::Close(Version::HTTP_10);
    const V11: Wire = Wire::Close(Version::HTTP_11);

    #[test]
    fn framing_by_wire_status_and_length() {
        use Framing as F;
        // (wire, status, declared, body, HEAD request, framing)
        let cases: Vec<(Wire, u16, Option<u64>, Body, bool, Framing)> = vec![
            (V11, 200, Some(5), full(), false, F::Length(5)),
            (V11, 200, None, full(), false, F::Length(5)),
            (V11, 200, None, stream(), false, F::Chunked),
            (V10, 200, None, stream(), false, F::Close),
            (V11, 200, Some(5), full(), true, F::None),
            (V11, 204, None, Body::Empty, false, F::None),
            (V10, 304, Some(3), full(), false, F::None),
            (V11, 101, None, Body::Empty, false, F::None),
            (V11, 200, Some(9), stream(), false, F::Length(9)),
            (Wire::Uwsgi, 200, Some(5), full(), false, F::Length(5)),
            // nginx frames it: no length is made up, nothing is chunked
            (Wire::Uwsgi, 200, None, full(), false, F::Close),
            (Wire::Uwsgi, 200, None, stream(), false, F::Close),
            (Wire::Uwsgi, 204, Some(0), Body::Empty, false, F::Length(0)),
            (Wire::Uwsgi, 200, Some(5), full(), true, F::None),
            (Wire::Hyper, 200, Some(5), full(), false, F::Length(5)),
            (Wire::Hyper, 200, None, full(), false, F::Length(5)),
            (Wire::Hyper, 200, None, stream(), false, F::Chunked),
            (Wire::Hyper, 200, None, full(), true, F::None),
        ];
        for (wire, status, cl, body, head, want) in cases {
            let r = resp(status, "x", &[], body, cl);
            assert_eq!(framing(wire, &r, head), want, "{wire:?} {r:?} head {head}");
        }
    }

    #[test]
    fn close_path_heads_have_hypers_shape() {
        let ct = [("Content-Type", "text/plain")];
        let ct_cl = [("Content-Type", "text/plain"), ("Content-Length", "5")];
        let cases: Vec<(Response, Wire, bool, &str, Framing)> = vec![
            (
                resp(200, "200 OK", &ct_cl, full(), Some(5)),
                V11,
                false,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\ndate: D\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &ct, full(), None),
                V11,
                false,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 5\r\ndate: D\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &ct, full(), None),
                V10,
                false,
                "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ndate: D\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &ct, full(), None),
                V11,
                true,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ndate: D\r\n\r\n",
                Framing::None,
            ),
            (
                resp(204, "204 No Content", &[], Body::Empty, None),
                V10,
                false,
                "HTTP/1.0 204 No Content\r\ndate: D\r\n\r\n",
                Framing::None,
            ),
            (
                resp(200, "200 Fine", &[("X-Y", "z")], Body::Empty, None),
                V11,
                false,
                "HTTP/1.1 200 OK\r\nx-y: z\r\nconnection: close\r\ncontent-length: 0\r\ndate: D\r\n\r\n",
                Framing::Length(0),
            ),
            (
                resp(599, "599 Custom", &[], Body::Empty, Some(0)),
                V10,
                false,
                "HTTP/1.0 599 Custom\r\ndate: D\r\n\r\n",
                Framing::Length(0),
            ),
            (
                resp(200, "200 OK", &[], stream(), None),
                V11,
                false,
                "HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n",
                Framing::Chunked,
            ),
            (
                resp(200, "200 OK", &[], stream(), None),
                V10,
                false,
                "HTTP/1.0 200 OK\r\ndate: D\r\n\r\n",
                Framing::Close,
            ),
        ];
        for (r, wire, head, want, framing) in cases {
            assert_eq!(
                head_of(&r, wire, head),
                (want.to_string(), framing),
                "{r:?}"
            );
        }
    }

    #[test]
    fn uwsgi_heads_keep_the_apps_line_and_headers() {
        let cases: Vec<(Response, bool, &str, Framing)> = vec![
            (
                resp(
                    200,
                    "200 Fine",
                    &[("Content-Type", "text/plain"), ("Content-Length", "5")],
                    full(),
                    Some(5),
                ),
                false,
                "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
            ),
            (
                resp(200, "200 OK", &[("X-A", "1")], full(), None),
                false,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n",
                Framing::Close,
            ),
            (
                resp(404, "404 Not Here", &[], full(), None),
                true,
                "HTTP/1.1 404 Not Here\r\n\r\n",
                Framing::None,
            ),
            (
                resp(599, "599 Custom", &[], stream(), None),
                false,
                "HTTP/1.1 599 Custom\r\n\r\n",
                Framing::Close,
            ),
        ];
        for (r, head, want, framing) in cases {
            assert_eq!(
                head_of(&r, Wire::Uwsgi, head),
                (want.to_string(), framing),
                "{r:?}"
            );
        }
    }

    #[test]
    fn invalid_app_headers_become_a_500() {
        for (n, v) in [
            ("Bad Name", "x"),
            ("", "x"),
            ("X", "a\x01b"),
            ("X", "a\x7fb"),
            ("X:", "y"),
            ("X(", "y"),
        ] {
            let mut r = resp(200, "200 OK", &[(n, v)], Body::Empty, None);
            r.exception = true;
            let c = checked(r);
            assert_eq!(c.status, 500, "{n:?}: {v:?}");
            assert!(c.exception, "the app's exception still counts");
            assert_eq!(&c.status_line[..], b"500 Internal Server Error");
            let r = resp(200, "200 OK", &[(n, v)], Body::Empty, None);
            let (h, len) = to_http(r, false);
            assert_eq!(h.status(), 500, "hyper: {n:?}: {v:?}");
            assert_eq!(len, Response::error(500).content_length);
        }
        for (n, v) in [
            ("X", "tab\there é"),
            ("x-Y_z~", ""),
            ("!#$%&'*+-.^_`|~", "v"),
        ] {
            let c = checked(resp(201, "201 Created", &[(n, v)], Body::Empty, None));
            assert_eq!(c.status, 201, "{n:?}: {v:?}");
        }
    }

    #[test]
    fn header_rules_are_the_http_crates() {
        // `checked` (the close path, uwsgi) must refuse exactly what `to_http` (hyper)
        // cannot build.
        let ok = |name: &[u8], value: &[u8]| {
            headers_ok(&[(Bytes::copy_from_slice(name), Bytes::copy_from_slice(value))])
        };
        for b in 0..=255u8 {
            assert_eq!(
                ok(&[b], b"v"),
                http::HeaderName::from_bytes(&[b]).is_ok(),
                "name byte {b:#x}"
            );
            let value = [b'a', b, b'a'];
            assert_eq!(
                ok(b"x", &value),
                http::HeaderValue::from_bytes(&value).is_ok(),
                "value byte {b:#x}"
            );
        }
    }

    #[test]
    fn add_header_values() {
        // (value, Ok((name, value)) or an error containing)
        type Want = Result<(&'static str, &'static str), &'static str>;
        let cases: &[(&str, Want)] = &[
            ("X-Frame-Options: DENY", Ok(("X-Frame-Options", "DENY"))),
            ("Cache-Control:no-cache", Ok(("Cache-Control", "no-cache"))),
            ("  X-A :  b c  ", Ok(("X-A", "b c"))),
            ("X-Empty:", Ok(("X-Empty", ""))),
            ("no colon", Err("expected 'Name: value'")),
            ("Bad Name: x", Err("not a valid header")),
            (": x", Err("not a valid header")),
        ];
        for (value, want) in cases {
            match (parse_add_header(value), want) {
                (Ok((n, v)), Ok((wn, wv))) => {
                    assert_eq!((&n[..], &v[..]), (wn.as_bytes(), wv.as_bytes()), "{value}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{value}: {e}"),
                (got, _) => panic!("{value}: {got:?}"),
            }
        }
    }

    #[test]
    fn date_is_an_imf_fixdate() {
        let d = http_date_now();
        assert_eq!(d.len(), 29, "{d:?}");
        assert!(d.ends_with(b" GMT"));
        assert!(httpdate::parse_http_date(std::str::from_utf8(&d).unwrap()).is_ok());
    }

    /// What hyper writes for `resp` answering `request`, with its `date` value
    /// replaced by `D`.
    fn hyper_bytes(resp: Response, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let head = request.starts_with("HEAD");
        let slot = std::sync::Mutex::new(Some(resp));
        let got = rt.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let service = hyper::service::service_fn(move |_req| {
                let r = slot.lock().unwrap().take().unwrap();
                async move { Ok::<_, std::convert::Infallible>(to_http(r, head).0) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), service);
            let serving = tokio::spawn(conn);
            client.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                client.read_to_end(&mut out),
            )
            .await
            .unwrap()
            .unwrap();
            let _ = serving.await;
            out
        });
        let text = String::from_utf8(got).unwrap();
        let start = text.find("date: ").unwrap() + "date: ".len();
        format!("{}D{}", &text[..start], &text[start + 29..])
    }

    #[test]
    fn hyper_writes_the_close_paths_bytes() {
        // (response, request): the same response through hyper and through write_head
        // (head, then the body the framing lets through).
        const CT: &[(&str, &str)] = &[("Content-Type", "text/plain")];
        const CT_CL: &[(&str, &str)] = &[("Content-Type", "text/plain"), ("Content-Length", "5")];
        let get11 = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let get10 = "GET / HTTP/1.0\r\n\r\n";
        let head11 = "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        type Make = fn() -> Response;
        let cases: Vec<(Make, &str)> = vec![
            (|| resp(200, "200 OK", CT_CL, full(), Some(5)), get11),
            (|| resp(200, "200 OK", CT, full(), None), get11),
            (|| resp(200, "200 OK", CT, full(), None), get10),
            (|| resp(200, "200 OK", CT, full(), None), head11),
            (
                || resp(404, "404 Nope", &[("X-A", "1")], Body::Empty, None),
                get11,
            ),
            (
                || resp(204, "204 No Content", &[], Body::Empty, None),
                get10,
            ),
            (|| Response::error(500), get11),
        ];
        for (make, request) in cases {
            let r = make();
            let version = if request.contains("HTTP/1.0") {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            let head = request.starts_with("HEAD");
            let (mut ours, f) = head_of(&r, Wire::Close(version), head);
            if let (Framing::Length(_), Body::Full(bytes)) = (f, &r.body) {
                ours.push_str(std::str::from_utf8(bytes).unwrap());
            }
            assert_eq!(hyper_bytes(make(), request), ours, "{r:?} for {request:?}");
        }
    }
}
