//! Entry points of the fuzz targets under `fuzz/` (cargo-fuzz, nightly) for the request
//! parsers of the app server: the uwsgi packet codec ([`uwsgi_packet`]) and the HTTP
//! request head ([`http_head`]). Each takes the fuzzer's raw bytes and must not panic,
//! hang or allocate without bound. `tests/fuzz_regressions.rs` replays the committed
//! inputs (`fuzz/regressions/<target>/`) through the same functions on stable Rust.

use bytes::Bytes;

use crate::cgi::{self, CgiVars, ConnInfo};
use crate::uwsgi;

/// The connection every fuzz request arrives on (a TCP peer on loopback).
fn conn() -> ConnInfo {
    ConnInfo {
        server_name: Bytes::from_static(b"127.0.0.1"),
        server_port: Bytes::from_static(b"8000"),
        remote_addr: Bytes::from_static(b"127.0.0.1"),
        remote_port: Bytes::from_static(b"40000"),
    }
}

/// What any request's CGI variables must satisfy: unique names (the environ is a dict),
/// and a `CONTENT_LENGTH` variable whenever a length was parsed.
fn check_vars(vars: &CgiVars) {
    let mut names: Vec<&[u8]> = vars.vars.iter().map(|(k, _)| &k[..]).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate CGI variable names");
    if vars.content_length.is_some() {
        assert!(
            vars.get(b"CONTENT_LENGTH").is_some(),
            "a parsed length without a CONTENT_LENGTH variable"
        );
    }
}

/// Target `uwsgi_packet`: a uwsgi request head as the uwsgi front reads it (the length
/// check with the largest `buffer-size`, the vars, the CGI variables for both WSGI
/// modifiers). A packet that parses encodes back to the same bytes.
///
/// # Panics
///
/// When a property above does not hold (a bug the fuzzer reports).
pub fn uwsgi_packet(data: &[u8]) {
    let Ok((header, head_len)) = uwsgi::check(data, usize::from(u16::MAX)) else {
        return;
    };
    let head = Bytes::copy_from_slice(data);
    let Ok(vars) = uwsgi::parse_vars(&head, header) else {
        return;
    };
    let pairs: Vec<(&[u8], &[u8])> = vars.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    assert_eq!(
        uwsgi::encode(header.modifier1, header.modifier2, &pairs),
        &data[..head_len],
        "uwsgi round trip"
    );
    for modifier1 in [0, 30] {
        if let Ok(vars) = cgi::from_uwsgi(vars.clone(), modifier1, &conn()) {
            check_vars(&vars);
        }
    }
}

/// Target `http_head`: an HTTP/1.x request head, both ways the server reads one. The
/// close path's own parser and decision (`server/close_path.rs`), and the general path
/// (hyper parses the head with `httparse`, as here, with its limit of 100 headers; then
/// [`cgi::from_http`] makes the variables and applies the Host rules).
///
/// # Panics
///
/// When a property of [`CgiVars`] does not hold.
pub fn http_head(data: &[u8]) {
    let info = conn();
    if let Some(Ok(vars)) = crate::server::fuzz_head(data, &info) {
        check_vars(&vars);
    }
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut slots);
    if !matches!(req.parse(data), Ok(httparse::Status::Complete(_))) {
        return;
    }
    let version = match req.version {
        Some(0) => http::Version::HTTP_10,
        Some(1) => http::Version::HTTP_11,
        _ => return,
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (
        http::Method::from_bytes(method.as_bytes()),
        http::Uri::try_from(path),
    ) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        headers.append(name, value);
    }
    if let Ok(vars) = cgi::from_http(&method, &uri, version, &headers, &info) {
        check_vars(&vars);
    }
}
