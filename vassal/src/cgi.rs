//! CGI/WSGI variables for both protocols, as pure functions.
//!
//! An HTTP/1.1 request head (parsed by hyper) goes through [`from_http`]; the vars of a
//! uwsgi packet (sent by nginx's `uwsgi_pass`) go through [`from_uwsgi`]. Both give one
//! [`CgiVars`]: the CGI variables of PEP 3333 (names ASCII, values raw bytes), the URL
//! scheme and the parsed `CONTENT_LENGTH`. The Python layer turns the vars into the
//! WSGI environ, decoding values as latin-1; nothing here touches pyo3.
//!
//! # Cost per request
//!
//! These run once per request, so they avoid per-variable allocations:
//!
//! - [`from_http`] copies every dynamic name and value (method, path, headers) into one
//!   buffer sized up front and hands out [`Bytes`] slices of it: one buffer allocation
//!   plus the `Vec`, however many headers there are. Fixed names are `Bytes::from_static`.
//! - [`from_uwsgi`] filters the packet's vars in place (they are already zero-copy slices
//!   of the packet) and allocates only if it must add defaults beyond the `Vec`'s spare
//!   capacity or percent-decode a `PATH_INFO` it had to derive.
//!
//! # Rules worth knowing
//!
//! - `PATH_INFO` is percent-decoded, `%2F` included, as every WSGI server does;
//!   `QUERY_STRING` and `REQUEST_URI` stay raw.
//! - HTTP headers whose name contains `_` are dropped: `X_Forwarded_For` and
//!   `X-Forwarded-For` would both become `HTTP_X_FORWARDED_FOR`, letting a client spoof
//!   a header a proxy sets (nginx ignores such headers by default, gunicorn drops them).
//! - A `Host` without a port gives `SERVER_PORT` `80` (the port the client meant); an
//!   IPv6 host keeps its brackets in `SERVER_NAME` so PEP 3333's URL reconstruction
//!   stays valid.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use percent_encoding::percent_decode;

/// URL scheme for `wsgi.url_scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `http` (the default; rsgi does not speak TLS itself).
    #[default]
    Http,
    /// `https`, as reported by the front server.
    Https,
}

impl Scheme {
    /// The scheme as `wsgi.url_scheme` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Facts about the connection, known without parsing the request.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// `SERVER_NAME` fallback when there is no Host header: the listening address' host
    /// (`127.0.0.1`; empty for unix sockets, which then gives `localhost`).
    pub server_name: Bytes,
    /// `SERVER_PORT` fallback: the listening port (empty for unix sockets, which then
    /// gives `80`, since PEP 3333 forbids an empty `SERVER_PORT`).
    pub server_port: Bytes,
    /// Peer address, empty for unix sockets.
    pub remote_addr: Bytes,
    /// Peer port, empty for unix sockets (then `REMOTE_PORT` is left out).
    pub remote_port: Bytes,
}

/// The CGI variables of one request, in order. Names are ASCII and unique. Values are
/// raw bytes.
#[derive(Debug, Clone, Default)]
pub struct CgiVars {
    /// `(name, value)` pairs, in the order they should appear in the environ.
    pub vars: Vec<(Bytes, Bytes)>,
    /// For `wsgi.url_scheme`.
    pub scheme: Scheme,
    /// The parsed `CONTENT_LENGTH`; `None` if absent or empty (no body).
    pub content_length: Option<u64>,
}

impl CgiVars {
    /// The value of variable `name`, if present.
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.vars
            .iter()
            .find(|(k, _)| k[..] == *name)
            .map(|(_, v)| v)
    }
}

/// Why a request head cannot become CGI variables (the caller answers 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CgiError {
    /// `CONTENT_LENGTH` is not a decimal number, or the request carries conflicting ones.
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// A variable the request cannot do without is absent or empty.
    #[error("missing {0}")]
    MissingVar(&'static str),
    /// An HTTP/1.1 request without a `Host` header, or with more than one (RFC 9112
    /// §3.2: the server must answer 400).
    #[error("an HTTP/1.1 request needs exactly one Host header")]
    BadHost,
}

const REQUEST_METHOD: &[u8] = b"REQUEST_METHOD";
const SCRIPT_NAME: &[u8] = b"SCRIPT_NAME";
const PATH_INFO: &[u8] = b"PATH_INFO";
const QUERY_STRING: &[u8] = b"QUERY_STRING";
const REQUEST_URI: &[u8] = b"REQUEST_URI";
const SERVER_PROTOCOL: &[u8] = b"SERVER_PROTOCOL";
const SERVER_NAME: &[u8] = b"SERVER_NAME";
const SERVER_PORT: &[u8] = b"SERVER_PORT";
const REMOTE_ADDR: &[u8] = b"REMOTE_ADDR";
const REMOTE_PORT: &[u8] = b"REMOTE_PORT";
const CONTENT_TYPE_VAR: &[u8] = b"CONTENT_TYPE";
const CONTENT_LENGTH_VAR: &[u8] = b"CONTENT_LENGTH";
const HTTP_HOST: &[u8] = b"HTTP_HOST";
const HTTP_CONTENT_TYPE: &[u8] = b"HTTP_CONTENT_TYPE";
const HTTP_CONTENT_LENGTH: &[u8] = b"HTTP_CONTENT_LENGTH";
const HTTPS: &[u8] = b"HTTPS";
const REQUEST_SCHEME: &[u8] = b"REQUEST_SCHEME";
const UWSGI_SCHEME: &[u8] = b"UWSGI_SCHEME";

/// The uwsgi `modifier1` that asks for `SCRIPT_NAME` to be stripped from `PATH_INFO`.
const MODIFIER_MANAGE_PATH_INFO: u8 = 30;

/// Fixed names and values: no allocation, no copy.
fn st(b: &'static [u8]) -> Bytes {
    Bytes::from_static(b)
}

/// One buffer for every dynamic name and value of a request; each piece is split off as
/// a [`Bytes`] sharing the allocation.
struct Arena(BytesMut);

impl Arena {
    /// Splits off what was written since the last split.
    fn take(&mut self) -> Bytes {
        self.0.split().freeze()
    }

    fn copy(&mut self, b: &[u8]) -> Bytes {
        self.0.extend_from_slice(b);
        self.take()
    }
}

/// From an HTTP/1.1 request head (hyper gives us method, URI, version, headers).
///
/// Sets `REQUEST_METHOD`, `SCRIPT_NAME` (empty), `PATH_INFO` (percent-decoded),
/// `QUERY_STRING`, `REQUEST_URI`, `SERVER_PROTOCOL`, `SERVER_NAME`/`SERVER_PORT` (from
/// Host, else the URI authority, else `conn`), `REMOTE_ADDR`/`REMOTE_PORT`,
/// `CONTENT_TYPE`/`CONTENT_LENGTH` when present, then one `HTTP_*` per other header
/// (repeats joined with `,`, Cookie with `; `). The scheme is always `Http`.
pub fn from_http(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    conn: &ConnInfo,
) -> Result<CgiVars, CgiError> {
    let content_length = http_content_length(headers)?;
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1 (HTTP/1.0 may go without).
    let hosts = headers.get_all(HOST).iter().count();
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(CgiError::BadHost);
    }

    let target = match uri.path_and_query() {
        Some(pq) => pq.as_str(),
        None => uri.path(),
    };
    let path_len = target.find('?').unwrap_or(target.len());
    let path = &target.as_bytes()[..path_len];
    let needs_decode = path.contains(&b'%');

    // Everything dynamic goes into one buffer; size it so it never regrows.
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 7)
        .sum();
    let cap = method.as_str().len()
        + target.len()
        + if needs_decode { path.len() } else { 0 }
        + uri.authority().map_or(0, |a| a.as_str().len())
        + header_bytes;
    let mut arena = Arena(BytesMut::with_capacity(cap));
    let mut vars = Vec::with_capacity(12 + headers.keys_len());

    vars.push((st(REQUEST_METHOD), arena.copy(method.as_str().as_bytes())));
    vars.push((st(SCRIPT_NAME), Bytes::new()));
    let request_uri = arena.copy(target.as_bytes());
    let path_info = if needs_decode {
        arena.0.extend(percent_decode(path));
        arena.take()
    } else {
        request_uri.slice(..path_len)
    };
    vars.push((st(PATH_INFO), path_info));
    let query = if path_len < request_uri.len() {
        request_uri.slice(path_len + 1..)
    } else {
        Bytes::new()
    };
    vars.push((st(QUERY_STRING), query));
    vars.push((st(REQUEST_URI), request_uri));
    vars.push((st(SERVER_PROTOCOL), st(protocol(version))));

    // Host: the header (only the first one; several are a protocol violation), else the
    // authority of an absolute-form URI.
    let host = match headers.get(HOST) {
        Some(h) => Some(arena.copy(h.as_bytes())),
        None => uri.authority().map(|a| {
            let a = a.as_str();
            // Drop any userinfo: `user@host:port`.
            arena.copy(a.rsplit('@').next().unwrap_or(a).as_bytes())
        }),
    };
    let (server_name, server_port) = match host.as_ref().and_then(split_host) {
        // A Host without a port: the port this connection really came in on.
        Some((name, port)) => (name, port.unwrap_or_else(|| conn_server(conn).1)),
        None => conn_server(conn),
    };
    vars.push((st(SERVER_NAME), server_name));
    vars.push((st(SERVER_PORT), server_port));
    vars.push((st(REMOTE_ADDR), conn.remote_addr.clone()));
    if !conn.remote_port.is_empty() {
        vars.push((st(REMOTE_PORT), conn.remote_port.clone()));
    }

    let mut content_type = headers.get_all(CONTENT_TYPE).iter();
    if let Some(first) = content_type.next() {
        let value = join(&mut arena, first, content_type, b",");
        vars.push((st(CONTENT_TYPE_VAR), value));
    }
    if let Some(first) = headers.get(CONTENT_LENGTH) {
        // Validated above: all parts are equal, so the first part is the value.
        let first = first.as_bytes();
        let part = first.split(|&b| b == b',').next().unwrap_or(first);
        vars.push((st(CONTENT_LENGTH_VAR), arena.copy(part.trim_ascii())));
    }
    if let Some(host) = host {
        vars.push((st(HTTP_HOST), host));
    }

    let mut iter = headers.iter().peekable();
    while let Some((name, first)) = iter.next() {
        // Repeated values of one header come one after another, with the same name
        // (the very same `HeaderName` in the map).
        let rest =
            std::iter::from_fn(|| iter.next_if(|(n, _)| std::ptr::eq(*n, name))).map(|(_, v)| v);
        if name == HOST || name == CONTENT_TYPE || name == CONTENT_LENGTH {
            rest.for_each(drop);
            continue;
        }
        let name_str = name.as_str();
        if name_str.contains('_') {
            rest.for_each(drop);
            continue;
        }
        arena.0.put_slice(b"HTTP_");
        arena.0.put_slice(name_str.as_bytes());
        // Header names are lower-case tokens; rewrite the copy in place.
        let start = arena.0.len() - name_str.len();
        for b in &mut arena.0[start..] {
            *b = if *b == b'-' {
                b'_'
            } else {
                b.to_ascii_uppercase()
            };
        }
        let key = arena.take();
        let sep: &[u8] = if name == COOKIE { b"; " } else { b"," };
        let value = join(&mut arena, first, rest, sep);
        vars.push((key, value));
    }

    Ok(CgiVars {
        vars,
        scheme: Scheme::Http,
        content_length,
    })
}

/// Copies `first` and then each of `rest`, separated by `sep`, as one value.
fn join<'a>(
    arena: &mut Arena,
    first: &HeaderValue,
    rest: impl Iterator<Item = &'a HeaderValue>,
    sep: &[u8],
) -> Bytes {
    arena.0.put_slice(first.as_bytes());
    for v in rest {
        arena.0.put_slice(sep);
        arena.0.put_slice(v.as_bytes());
    }
    arena.take()
}

/// The Content-Length of an HTTP request: every header line, and every comma-separated
/// element of each, must be the same decimal number (RFC 9110 §8.6).
fn http_content_length(headers: &HeaderMap) -> Result<Option<u64>, CgiError> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(CgiError::BadContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(CgiError::BadContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// A non-empty run of ASCII digits that fits in a u64 (no sign, no spaces).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn protocol(version: Version) -> &'static [u8] {
    match version {
        Version::HTTP_09 => b"HTTP/0.9",
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_2 => b"HTTP/2",
        Version::HTTP_3 => b"HTTP/3",
        _ => b"HTTP/1.1",
    }
}

/// Splits a Host value into name and optional port, as slices of `host`. An IPv6
/// literal keeps its brackets (`[::1]:8000` gives `[::1]` and `8000`). A trailing part
/// that is not a number stays in the name. `None` for an empty name.
fn split_host(host: &Bytes) -> Option<(Bytes, Option<Bytes>)> {
    let h = &host[..];
    let name_end = if h.first() == Some(&b'[') {
        match h.iter().position(|&b| b == b']') {
            Some(close) => close + 1,
            None => h.len(),
        }
    } else {
        match h.iter().rposition(|&b| b == b':') {
            Some(colon) => colon,
            None => h.len(),
        }
    };
    if name_end == 0 {
        return None;
    }
    let port = match h.get(name_end..) {
        Some([b':', digits @ ..])
            if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) =>
        {
            Some(host.slice(name_end + 1..))
        }
        Some([b':']) | Some([]) | None => None,
        // `example.com:abc` or `[::1]junk`: not a port, keep it all as the name.
        Some(_) => return Some((host.clone(), None)),
    };
    Some((host.slice(..name_end), port))
}

/// `SERVER_NAME` and `SERVER_PORT` from the connection, never empty (PEP 3333).
fn conn_server(conn: &ConnInfo) -> (Bytes, Bytes) {
    let name = if conn.server_name.is_empty() {
        st(b"localhost")
    } else {
        conn.server_name.clone()
    };
    let port = if conn.server_port.is_empty() {
        st(b"80")
    } else {
        conn.server_port.clone()
    };
    (name, port)
}

/// A cheap 64-bit Bloom filter bit for a var name, to skip the duplicate search for
/// nearly every var.
fn name_bit(k: &[u8]) -> u64 {
    let (Some(&last), Some(&mid)) = (k.last(), k.get(k.len() / 2)) else {
        return 1;
    };
    let h = k.len().wrapping_mul(31) ^ usize::from(last).wrapping_mul(7) ^ usize::from(mid);
    1 << (h % 64)
}

/// Indices of the vars [`from_uwsgi`] looks at, after de-duplication.
#[derive(Default)]
struct Seen {
    method: Option<usize>,
    script_name: Option<usize>,
    path_info: Option<usize>,
    query_string: Option<usize>,
    request_uri: Option<usize>,
    content_length: Option<usize>,
    server_name: Option<usize>,
    server_port: Option<usize>,
    remote_addr: Option<usize>,
    https: Option<usize>,
    request_scheme: Option<usize>,
    uwsgi_scheme: Option<usize>,
}

/// From the vars of a uwsgi packet (nginx `uwsgi_params` + `HTTP_*` headers).
///
/// Keeps nginx's vars in order, except that:
/// - a repeated name keeps its first position and its last value (uWSGI's dict does
///   the same);
/// - `HTTP_CONTENT_TYPE`/`HTTP_CONTENT_LENGTH` are dropped (nginx forwards every header,
///   these too), and so are empty `CONTENT_TYPE`/`CONTENT_LENGTH` (nginx sends them empty
///   when absent; an empty length means no body);
/// - `SCRIPT_NAME` defaults to `""`, `PATH_INFO` to the percent-decoded path of
///   `REQUEST_URI`, `QUERY_STRING` to `""`, `SERVER_NAME`/`SERVER_PORT`/`REMOTE_ADDR`
///   (and `REMOTE_PORT` with it) to `conn`; defaults go at the end;
/// - with `modifier1` 30, `SCRIPT_NAME` is stripped from the start of `PATH_INFO` (uWSGI's
///   behaviour), when it is a prefix ending on a segment boundary.
///
/// The scheme is what `UWSGI_SCHEME` says if present (uWSGI gives it precedence), else
/// `Https` if `HTTPS` is `on`/`1` or `REQUEST_SCHEME` is `https` (case-insensitive).
/// Errors: no (or an empty) `REQUEST_METHOD`; a `CONTENT_LENGTH` that is not a number.
pub fn from_uwsgi(
    vars: Vec<(Bytes, Bytes)>,
    modifier1: u8,
    conn: &ConnInfo,
) -> Result<CgiVars, CgiError> {
    let mut vars = vars;
    let mut kept = 0;
    let mut bloom = 0u64;
    for read in 0..vars.len() {
        let (k, v) = std::mem::take(&mut vars[read]);
        if k == HTTP_CONTENT_TYPE || k == HTTP_CONTENT_LENGTH {
            continue;
        }
        let absent = v.is_empty() && (k == CONTENT_TYPE_VAR || k == CONTENT_LENGTH_VAR);
        let bit = name_bit(&k);
        let dup = if bloom & bit != 0 {
            vars[..kept].iter().position(|(seen, _)| *seen == k)
        } else {
            None
        };
        match dup {
            // A later empty CONTENT_* unsets an earlier one (last wins).
            Some(i) if absent => {
                vars[i..kept].rotate_left(1);
                kept -= 1;
            }
            // nginx sends one HTTP_* per line of a repeated header: joined as the HTTP
            // path joins repeated headers (RFC 9110 §5.3; Cookie with `; `).
            Some(i) if k.starts_with(b"HTTP_") && !v.is_empty() => {
                let sep: &[u8] = if &k[..] == b"HTTP_COOKIE" {
                    b"; "
                } else {
                    b","
                };
                let old = &vars[i].1;
                let mut joined = BytesMut::with_capacity(old.len() + sep.len() + v.len());
                joined.extend_from_slice(old);
                joined.extend_from_slice(sep);
                joined.extend_from_slice(&v);
                vars[i].1 = joined.freeze();
            }
            Some(i) => vars[i].1 = v,
            None if absent => {}
            None => {
                vars[kept] = (k, v);
                kept += 1;
                bloom |= bit;
            }
        }
    }
    vars.truncate(kept);

    let mut seen = Seen::default();
    for (i, (k, _)) in vars.iter().enumerate() {
        let slot = match &k[..] {
            REQUEST_METHOD => &mut seen.method,
            SCRIPT_NAME => &mut seen.script_name,
            PATH_INFO => &mut seen.path_info,
            QUERY_STRING => &mut seen.query_string,
            REQUEST_URI => &mut seen.request_uri,
            CONTENT_LENGTH_VAR => &mut seen.content_length,
            SERVER_NAME => &mut seen.server_name,
            SERVER_PORT => &mut seen.server_port,
            REMOTE_ADDR => &mut seen.remote_addr,
            HTTPS => &mut seen.https,
            REQUEST_SCHEME => &mut seen.request_scheme,
            UWSGI_SCHEME => &mut seen.uwsgi_scheme,
            _ => continue,
        };
        *slot = Some(i);
    }
    let value = |i: Option<usize>| i.map(|i| &vars[i].1[..]);

    if value(seen.method).is_none_or(<[u8]>::is_empty) {
        return Err(CgiError::MissingVar("REQUEST_METHOD"));
    }
    let content_length = match value(seen.content_length) {
        Some(v) => Some(parse_decimal(v).ok_or(CgiError::BadContentLength)?),
        None => None,
    };
    let scheme = match value(seen.uwsgi_scheme) {
        Some(s) => scheme_of(s),
        None => {
            let https =
                value(seen.https).is_some_and(|v| v.eq_ignore_ascii_case(b"on") || v == b"1");
            let request_scheme = value(seen.request_scheme).map_or(Scheme::Http, scheme_of);
            if https {
                Scheme::Https
            } else {
                request_scheme
            }
        }
    };

    let script_name = match seen.script_name {
        Some(i) => vars[i].1.clone(),
        None => {
            vars.push((st(SCRIPT_NAME), Bytes::new()));
            Bytes::new()
        }
    };
    let path_info = match seen.path_info {
        Some(i) => i,
        None => {
            let derived = match seen.request_uri {
                Some(i) => decoded_path(&vars[i].1),
                None => Bytes::new(),
            };
            vars.push((st(PATH_INFO), derived));
            vars.len() - 1
        }
    };
    if modifier1 == MODIFIER_MANAGE_PATH_INFO && !script_name.is_empty() {
        let path = &mut vars[path_info].1;
        if let Some(rest) = path.strip_prefix(&script_name[..]) {
            if rest.is_empty() || rest[0] == b'/' {
                *path = path.slice(script_name.len()..);
            }
        }
    }
    if seen.query_string.is_none() {
        vars.push((st(QUERY_STRING), Bytes::new()));
    }
    if seen.server_name.is_none() || seen.server_port.is_none() {
        let (name, port) = conn_server(conn);
        if seen.server_name.is_none() {
            vars.push((st(SERVER_NAME), name));
        }
        if seen.server_port.is_none() {
            vars.push((st(SERVER_PORT), port));
        }
    }
    if seen.remote_addr.is_none() {
        vars.push((st(REMOTE_ADDR), conn.remote_addr.clone()));
        // Only together: nginx's REMOTE_ADDR with our peer's port would be a lie.
        if !conn.remote_port.is_empty() && !vars.iter().any(|(k, _)| k == REMOTE_PORT) {
            vars.push((st(REMOTE_PORT), conn.remote_port.clone()));
        }
    }

    Ok(CgiVars {
        vars,
        scheme,
        content_length,
    })
}

fn scheme_of(s: &[u8]) -> Scheme {
    if s.eq_ignore_ascii_case(b"https") {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

/// The path part of a request URI, percent-decoded; a slice of `uri` when there is
/// nothing to decode.
fn decoded_path(uri: &Bytes) -> Bytes {
    let end = uri.iter().position(|&b| b == b'?').unwrap_or(uri.len());
    let path = &uri[..end];
    if path.contains(&b'%') {
        Bytes::from(percent_decode(path).collect::<Vec<u8>>())
    } else {
        uri.slice(..end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http::HeaderName;

    /// Request headers of a test case.
    type Headers = &'static [(&'static str, &'static [u8])];
    /// Edits to the base nginx vars: set (Some) or remove (None).
    type Changes = &'static [(&'static [u8], Option<&'static [u8]>)];
    /// Expected vars: present with this value (Some) or absent (None).
    type Expect = &'static [(&'static str, Option<&'static [u8]>)];

    fn tcp_conn() -> ConnInfo {
        ConnInfo {
            server_name: st(b"127.0.0.1"),
            server_port: st(b"8000"),
            remote_addr: st(b"10.0.0.7"),
            remote_port: st(b"51234"),
        }
    }

    fn unix_conn() -> ConnInfo {
        ConnInfo {
            server_name: Bytes::new(),
            server_port: Bytes::new(),
            remote_addr: Bytes::new(),
            remote_port: Bytes::new(),
        }
    }

    fn http(
        method: &str,
        uri: &str,
        headers: &[(&str, &[u8])],
        conn: &ConnInfo,
    ) -> Result<CgiVars, CgiError> {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri: Uri = uri.parse().unwrap();
        // HTTP/1.1 needs a Host (see `host_rules`): rows without one are HTTP/1.0.
        let version = if map.contains_key(HOST) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        from_http(&method, &uri, version, &map, conn)
    }

    #[test]
    fn host_rules() {
        let build = |version: Version, hosts: &[&[u8]]| {
            let mut map = HeaderMap::new();
            for h in hosts {
                map.append(HOST, HeaderValue::from_bytes(h).unwrap());
            }
            from_http(
                &Method::GET,
                &"/".parse().unwrap(),
                version,
                &map,
                &tcp_conn(),
            )
        };
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1.
        assert!(matches!(
            build(Version::HTTP_11, &[]),
            Err(CgiError::BadHost)
        ));
        assert!(matches!(
            build(Version::HTTP_11, &[b"a", b"b"]),
            Err(CgiError::BadHost)
        ));
        assert!(matches!(
            build(Version::HTTP_11, &[b"a", b"a"]),
            Err(CgiError::BadHost)
        ));
        assert!(build(Version::HTTP_11, &[b"a"]).is_ok());
        // HTTP/1.0 may go without; two are still one too many.
        assert!(build(Version::HTTP_10, &[]).is_ok());
        assert!(matches!(
            build(Version::HTTP_10, &[b"a", b"b"]),
            Err(CgiError::BadHost)
        ));
    }

    fn get<'a>(cgi: &'a CgiVars, name: &str) -> Option<&'a [u8]> {
        cgi.get(name.as_bytes()).map(|b| &b[..])
    }

    fn names(cgi: &CgiVars) -> Vec<String> {
        cgi.vars
            .iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect()
    }

    fn assert_unique(cgi: &CgiVars) {
        let mut n = names(cgi);
        let len = n.len();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), len, "duplicate names in {:?}", names(cgi));
    }

    /// One row: request target and headers, then the vars that must (Some) or must not
    /// (None) be present.
    struct Case {
        name: &'static str,
        uri: &'static str,
        headers: Headers,
        expect: Expect,
    }

    #[rustfmt::skip]
    const HTTP_CASES: &[Case] = &[
        Case { name: "basic", uri: "/hello?a=1&b=2", headers: &[("host", b"example.com")], expect: &[
            ("REQUEST_METHOD", Some(b"GET")), ("SCRIPT_NAME", Some(b"")), ("PATH_INFO", Some(b"/hello")),
            ("QUERY_STRING", Some(b"a=1&b=2")), ("REQUEST_URI", Some(b"/hello?a=1&b=2")),
            ("SERVER_PROTOCOL", Some(b"HTTP/1.1")), ("SERVER_NAME", Some(b"example.com")),
            ("SERVER_PORT", Some(b"8000")), ("REMOTE_ADDR", Some(b"10.0.0.7")), ("REMOTE_PORT", Some(b"51234")),
            ("HTTP_HOST", Some(b"example.com")), ("CONTENT_TYPE", None), ("CONTENT_LENGTH", None),
        ]},
        Case { name: "no query", uri: "/", headers: &[("host", b"h")], expect: &[
            ("QUERY_STRING", Some(b"")), ("REQUEST_URI", Some(b"/")), ("PATH_INFO", Some(b"/")),
        ]},
        Case { name: "empty query", uri: "/p?", headers: &[], expect: &[
            ("QUERY_STRING", Some(b"")), ("REQUEST_URI", Some(b"/p?")), ("PATH_INFO", Some(b"/p")),
        ]},
        Case { name: "cookies joined with '; '", uri: "/", headers: &[("cookie", b"a=1"), ("cookie", b"b=2")], expect: &[
            ("HTTP_COOKIE", Some(b"a=1; b=2")),
        ]},
        Case { name: "other repeats joined with ','", uri: "/", headers: &[("accept", b"text/html"), ("x-forwarded-for", b"1.1.1.1"), ("accept", b"*/*")], expect: &[
            ("HTTP_ACCEPT", Some(b"text/html,*/*")), ("HTTP_X_FORWARDED_FOR", Some(b"1.1.1.1")),
        ]},
        Case { name: "content-* extracted, not HTTP_", uri: "/", headers: &[("content-type", b"application/json"), ("content-length", b"12")], expect: &[
            ("CONTENT_TYPE", Some(b"application/json")), ("CONTENT_LENGTH", Some(b"12")),
            ("HTTP_CONTENT_TYPE", None), ("HTTP_CONTENT_LENGTH", None),
        ]},
        Case { name: "identical content-lengths", uri: "/", headers: &[("content-length", b"5, 5"), ("content-length", b"5")], expect: &[
            ("CONTENT_LENGTH", Some(b"5")),
        ]},
        Case { name: "dashes and case", uri: "/", headers: &[("X-Request-ID", b"abc"), ("user-agent", b"curl/8")], expect: &[
            ("HTTP_X_REQUEST_ID", Some(b"abc")), ("HTTP_USER_AGENT", Some(b"curl/8")),
        ]},
        Case { name: "underscore headers dropped", uri: "/", headers: &[("x_forwarded_for", b"6.6.6.6")], expect: &[
            ("HTTP_X_FORWARDED_FOR", None),
        ]},
        Case { name: "host with port", uri: "/", headers: &[("host", b"example.com:8080")], expect: &[
            ("SERVER_NAME", Some(b"example.com")), ("SERVER_PORT", Some(b"8080")), ("HTTP_HOST", Some(b"example.com:8080")),
        ]},
        Case { name: "ipv6 host with port", uri: "/", headers: &[("host", b"[::1]:8000")], expect: &[
            ("SERVER_NAME", Some(b"[::1]")), ("SERVER_PORT", Some(b"8000")),
        ]},
        Case { name: "ipv6 host without port", uri: "/", headers: &[("host", b"[2001:db8::1]")], expect: &[
            ("SERVER_NAME", Some(b"[2001:db8::1]")), ("SERVER_PORT", Some(b"8000")),
        ]},
        Case { name: "host with empty port", uri: "/", headers: &[("host", b"example.com:")], expect: &[
            ("SERVER_NAME", Some(b"example.com")), ("SERVER_PORT", Some(b"8000")),
        ]},
        Case { name: "host with junk port", uri: "/", headers: &[("host", b"example.com:abc")], expect: &[
            ("SERVER_NAME", Some(b"example.com:abc")), ("SERVER_PORT", Some(b"8000")),
        ]},
        Case { name: "no host: conn fallback, no HTTP_HOST", uri: "/", headers: &[], expect: &[
            ("SERVER_NAME", Some(b"127.0.0.1")), ("SERVER_PORT", Some(b"8000")), ("HTTP_HOST", None),
        ]},
        Case { name: "empty host: conn fallback", uri: "/", headers: &[("host", b"")], expect: &[
            ("SERVER_NAME", Some(b"127.0.0.1")), ("SERVER_PORT", Some(b"8000")), ("HTTP_HOST", Some(b"")),
        ]},
        Case { name: "HTTP_HOST falls back to URI authority", uri: "http://user@example.org:81/x?y", headers: &[], expect: &[
            ("HTTP_HOST", Some(b"example.org:81")), ("SERVER_NAME", Some(b"example.org")), ("SERVER_PORT", Some(b"81")),
            ("PATH_INFO", Some(b"/x")), ("REQUEST_URI", Some(b"/x?y")), ("QUERY_STRING", Some(b"y")),
        ]},
        Case { name: "Host header beats URI authority", uri: "http://a.example/x", headers: &[("host", b"b.example")], expect: &[
            ("HTTP_HOST", Some(b"b.example")), ("SERVER_NAME", Some(b"b.example")),
        ]},
        Case { name: "latin-1 path bytes", uri: "/caf%E9?q=%E9", headers: &[], expect: &[
            ("PATH_INFO", Some(b"/caf\xe9")), ("QUERY_STRING", Some(b"q=%E9")), ("REQUEST_URI", Some(b"/caf%E9?q=%E9")),
        ]},
        Case { name: "utf-8 path bytes", uri: "/caf%C3%A9", headers: &[], expect: &[
            ("PATH_INFO", Some(b"/caf\xc3\xa9")),
        ]},
        Case { name: "dot segments decoded, not resolved", uri: "/static/%2e%2e/%2E%2E/etc", headers: &[], expect: &[
            ("PATH_INFO", Some(b"/static/../../etc")),
        ]},
        Case { name: "%2F decodes too", uri: "/a%2Fb", headers: &[], expect: &[("PATH_INFO", Some(b"/a/b"))] },
        Case { name: "invalid escapes kept", uri: "/a%zz%4", headers: &[], expect: &[("PATH_INFO", Some(b"/a%zz%4"))] },
        Case { name: "plus is not a space in paths", uri: "/a+b", headers: &[], expect: &[("PATH_INFO", Some(b"/a+b"))] },
        Case { name: "header value bytes kept raw", uri: "/", headers: &[("x-name", b"caf\xe9")], expect: &[
            ("HTTP_X_NAME", Some(b"caf\xe9")),
        ]},
    ];

    #[test]
    fn http_rules() {
        for case in HTTP_CASES {
            let cgi = http("GET", case.uri, case.headers, &tcp_conn()).unwrap();
            for (name, want) in case.expect {
                assert_eq!(get(&cgi, name), *want, "{}: {name}", case.name);
            }
            assert_unique(&cgi);
            assert_eq!(cgi.scheme, Scheme::Http);
        }
    }

    #[test]
    fn http_content_length_parsed() {
        let cases: &[(Headers, Result<Option<u64>, CgiError>)] = &[
            (&[], Ok(None)),
            (&[("content-length", b"0")], Ok(Some(0))),
            (&[("content-length", b"123")], Ok(Some(123))),
            (
                &[("content-length", b"7"), ("content-length", b"7")],
                Ok(Some(7)),
            ),
            (
                &[("content-length", b"7"), ("content-length", b"8")],
                Err(CgiError::BadContentLength),
            ),
            (
                &[("content-length", b"7, 8")],
                Err(CgiError::BadContentLength),
            ),
            (
                &[("content-length", b"-1")],
                Err(CgiError::BadContentLength),
            ),
            (
                &[("content-length", b"+1")],
                Err(CgiError::BadContentLength),
            ),
            (
                &[("content-length", b"abc")],
                Err(CgiError::BadContentLength),
            ),
            (&[("content-length", b"")], Err(CgiError::BadContentLength)),
            (
                &[("content-length", b"99999999999999999999999")],
                Err(CgiError::BadContentLength),
            ),
        ];
        for (headers, want) in cases {
            let got = http("POST", "/", headers, &tcp_conn()).map(|c| c.content_length);
            assert_eq!(&got, want, "{headers:?}");
        }
    }

    #[test]
    fn http_order_and_protocol() {
        let mut map = HeaderMap::new();
        map.append(HOST, HeaderValue::from_static("h"));
        map.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        map.append("accept", HeaderValue::from_static("*/*"));
        let uri: Uri = "/x".parse().unwrap();
        let cgi = from_http(&Method::PUT, &uri, Version::HTTP_10, &map, &tcp_conn()).unwrap();
        assert_eq!(
            names(&cgi),
            [
                "REQUEST_METHOD",
                "SCRIPT_NAME",
                "PATH_INFO",
                "QUERY_STRING",
                "REQUEST_URI",
                "SERVER_PROTOCOL",
                "SERVER_NAME",
                "SERVER_PORT",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "CONTENT_TYPE",
                "HTTP_HOST",
                "HTTP_ACCEPT",
            ]
        );
        assert_eq!(get(&cgi, "REQUEST_METHOD"), Some(&b"PUT"[..]));
        assert_eq!(get(&cgi, "SERVER_PROTOCOL"), Some(&b"HTTP/1.0"[..]));
    }

    #[test]
    fn http_unix_socket_defaults() {
        let cgi = http("GET", "/", &[], &unix_conn()).unwrap();
        assert_eq!(get(&cgi, "SERVER_NAME"), Some(&b"localhost"[..]));
        assert_eq!(get(&cgi, "SERVER_PORT"), Some(&b"80"[..]));
        assert_eq!(get(&cgi, "REMOTE_ADDR"), Some(&b""[..]));
        assert_eq!(get(&cgi, "REMOTE_PORT"), None);
    }

    #[test]
    fn http_extension_method() {
        let cgi = http("PROPFIND", "/dav", &[], &tcp_conn()).unwrap();
        assert_eq!(get(&cgi, "REQUEST_METHOD"), Some(&b"PROPFIND"[..]));
    }

    #[test]
    fn http_many_headers_fit_the_arena() {
        let values: Vec<(String, Vec<u8>)> = (0..100)
            .map(|i| (format!("x-h{i}"), vec![b'v'; i]))
            .collect();
        let headers: Vec<(&str, &[u8])> =
            values.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
        let cgi = http("GET", "/p%20q", &headers, &tcp_conn()).unwrap();
        for (i, (_, v)) in values.iter().enumerate() {
            assert_eq!(get(&cgi, &format!("HTTP_X_H{i}")), Some(&v[..]));
        }
        assert_unique(&cgi);
    }

    fn nginx(extra: &[(&'static [u8], &'static [u8])]) -> Vec<(Bytes, Bytes)> {
        let base: &[(&'static [u8], &'static [u8])] = &[
            (b"QUERY_STRING", b"a=1"),
            (b"REQUEST_METHOD", b"GET"),
            (b"CONTENT_TYPE", b""),
            (b"CONTENT_LENGTH", b""),
            (b"REQUEST_URI", b"/app/caf%C3%A9?a=1"),
            (b"PATH_INFO", b"/app/caf\xc3\xa9"),
            (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"REQUEST_SCHEME", b"http"),
            (b"REMOTE_ADDR", b"203.0.113.9"),
            (b"REMOTE_PORT", b"40000"),
            (b"SERVER_PORT", b"443"),
            (b"SERVER_NAME", b"example.com"),
            (b"HTTP_HOST", b"example.com"),
        ];
        base.iter()
            .chain(extra)
            .map(|(k, v)| (st(k), st(v)))
            .collect()
    }

    /// Replaces (or with `None` removes) base vars, then appends the rest.
    fn nginx_with(changes: Changes) -> Vec<(Bytes, Bytes)> {
        let mut vars = nginx(&[]);
        for (k, v) in changes {
            match (vars.iter().position(|(n, _)| n == k), v) {
                (Some(i), Some(v)) => vars[i].1 = st(v),
                (Some(i), None) => {
                    vars.remove(i);
                }
                (None, Some(v)) => vars.push((st(k), st(v))),
                (None, None) => {}
            }
        }
        vars
    }

    struct UwsgiCase {
        name: &'static str,
        changes: Changes,
        modifier1: u8,
        scheme: Scheme,
        content_length: Option<u64>,
        expect: Expect,
    }

    #[rustfmt::skip]
    const UWSGI_CASES: &[UwsgiCase] = &[
        UwsgiCase { name: "plain GET: empty CONTENT_* dropped, SCRIPT_NAME added", changes: &[], modifier1: 0,
            scheme: Scheme::Http, content_length: None, expect: &[
            ("CONTENT_TYPE", None), ("CONTENT_LENGTH", None), ("SCRIPT_NAME", Some(b"")),
            ("PATH_INFO", Some(b"/app/caf\xc3\xa9")), ("QUERY_STRING", Some(b"a=1")),
            ("SERVER_NAME", Some(b"example.com")), ("REMOTE_ADDR", Some(b"203.0.113.9")),
            ("DOCUMENT_ROOT", Some(b"/usr/share/nginx/html")),
        ]},
        UwsgiCase { name: "POST body", changes: &[(b"REQUEST_METHOD", Some(b"POST")), (b"CONTENT_TYPE", Some(b"application/json")),
            (b"CONTENT_LENGTH", Some(b"42")), (b"HTTP_CONTENT_TYPE", Some(b"application/json")), (b"HTTP_CONTENT_LENGTH", Some(b"42"))],
            modifier1: 0, scheme: Scheme::Http, content_length: Some(42), expect: &[
            ("CONTENT_TYPE", Some(b"application/json")), ("CONTENT_LENGTH", Some(b"42")),
            ("HTTP_CONTENT_TYPE", None), ("HTTP_CONTENT_LENGTH", None),
        ]},
        UwsgiCase { name: "HTTPS on", changes: &[(b"HTTPS", Some(b"on"))], modifier1: 0,
            scheme: Scheme::Https, content_length: None, expect: &[("HTTPS", Some(b"on"))] },
        UwsgiCase { name: "HTTPS ON", changes: &[(b"HTTPS", Some(b"ON"))], modifier1: 0,
            scheme: Scheme::Https, content_length: None, expect: &[] },
        UwsgiCase { name: "HTTPS 1", changes: &[(b"HTTPS", Some(b"1"))], modifier1: 0,
            scheme: Scheme::Https, content_length: None, expect: &[] },
        UwsgiCase { name: "HTTPS off", changes: &[(b"HTTPS", Some(b"off"))], modifier1: 0,
            scheme: Scheme::Http, content_length: None, expect: &[] },
        UwsgiCase { name: "REQUEST_SCHEME https", changes: &[(b"REQUEST_SCHEME", Some(b"https"))], modifier1: 0,
            scheme: Scheme::Https, content_length: None, expect: &[] },
        UwsgiCase { name: "UWSGI_SCHEME https", changes: &[(b"UWSGI_SCHEME", Some(b"HTTPS"))], modifier1: 0,
            scheme: Scheme::Https, content_length: None, expect: &[] },
        UwsgiCase { name: "UWSGI_SCHEME overrides HTTPS", changes: &[(b"HTTPS", Some(b"on")), (b"UWSGI_SCHEME", Some(b"http"))], modifier1: 0,
            scheme: Scheme::Http, content_length: None, expect: &[] },
        UwsgiCase { name: "missing PATH_INFO: decoded REQUEST_URI path", changes: &[(b"PATH_INFO", None), (b"REQUEST_URI", Some(b"/caf%E9/%2e%2e?x=%41"))],
            modifier1: 0, scheme: Scheme::Http, content_length: None, expect: &[("PATH_INFO", Some(b"/caf\xe9/.."))] },
        UwsgiCase { name: "missing PATH_INFO and REQUEST_URI", changes: &[(b"PATH_INFO", None), (b"REQUEST_URI", None)],
            modifier1: 0, scheme: Scheme::Http, content_length: None, expect: &[("PATH_INFO", Some(b""))] },
        UwsgiCase { name: "missing QUERY_STRING", changes: &[(b"QUERY_STRING", None)], modifier1: 0,
            scheme: Scheme::Http, content_length: None, expect: &[("QUERY_STRING", Some(b""))] },
        UwsgiCase { name: "modifier1 30 strips SCRIPT_NAME", changes: &[(b"SCRIPT_NAME", Some(b"/app"))], modifier1: 30,
            scheme: Scheme::Http, content_length: None, expect: &[("SCRIPT_NAME", Some(b"/app")), ("PATH_INFO", Some(b"/caf\xc3\xa9"))] },
        UwsgiCase { name: "modifier1 30, PATH_INFO == SCRIPT_NAME", changes: &[(b"SCRIPT_NAME", Some(b"/app")), (b"PATH_INFO", Some(b"/app"))], modifier1: 30,
            scheme: Scheme::Http, content_length: None, expect: &[("PATH_INFO", Some(b""))] },
        UwsgiCase { name: "modifier1 30, not on a segment boundary", changes: &[(b"SCRIPT_NAME", Some(b"/ap"))], modifier1: 30,
            scheme: Scheme::Http, content_length: None, expect: &[("PATH_INFO", Some(b"/app/caf\xc3\xa9"))] },
        UwsgiCase { name: "modifier1 30, not a prefix", changes: &[(b"SCRIPT_NAME", Some(b"/other"))], modifier1: 30,
            scheme: Scheme::Http, content_length: None, expect: &[("PATH_INFO", Some(b"/app/caf\xc3\xa9"))] },
        UwsgiCase { name: "modifier1 0 leaves PATH_INFO", changes: &[(b"SCRIPT_NAME", Some(b"/app"))], modifier1: 0,
            scheme: Scheme::Http, content_length: None, expect: &[("PATH_INFO", Some(b"/app/caf\xc3\xa9"))] },
        UwsgiCase { name: "missing server/remote: conn", changes: &[(b"SERVER_NAME", None), (b"SERVER_PORT", None), (b"REMOTE_ADDR", None), (b"REMOTE_PORT", None)],
            modifier1: 0, scheme: Scheme::Http, content_length: None, expect: &[
            ("SERVER_NAME", Some(b"127.0.0.1")), ("SERVER_PORT", Some(b"8000")), ("REMOTE_ADDR", Some(b"10.0.0.7")), ("REMOTE_PORT", Some(b"51234")),
        ]},
        UwsgiCase { name: "nginx REMOTE_ADDR without port: conn port not mixed in", changes: &[(b"REMOTE_PORT", None)],
            modifier1: 0, scheme: Scheme::Http, content_length: None, expect: &[("REMOTE_ADDR", Some(b"203.0.113.9")), ("REMOTE_PORT", None)] },
        UwsgiCase { name: "CONTENT_LENGTH 0", changes: &[(b"CONTENT_LENGTH", Some(b"0"))], modifier1: 0,
            scheme: Scheme::Http, content_length: Some(0), expect: &[("CONTENT_LENGTH", Some(b"0"))] },
    ];

    #[test]
    fn uwsgi_rules() {
        for case in UWSGI_CASES {
            let cgi = from_uwsgi(nginx_with(case.changes), case.modifier1, &tcp_conn()).unwrap();
            assert_eq!(cgi.scheme, case.scheme, "{}", case.name);
            assert_eq!(cgi.content_length, case.content_length, "{}", case.name);
            for (name, want) in case.expect {
                assert_eq!(get(&cgi, name), *want, "{}: {name}", case.name);
            }
            assert_unique(&cgi);
        }
    }

    #[test]
    fn uwsgi_keeps_order() {
        let cgi = from_uwsgi(nginx(&[(b"HTTP_ACCEPT", b"*/*")]), 0, &tcp_conn()).unwrap();
        assert_eq!(
            names(&cgi),
            [
                "QUERY_STRING",
                "REQUEST_METHOD",
                "REQUEST_URI",
                "PATH_INFO",
                "DOCUMENT_ROOT",
                "SERVER_PROTOCOL",
                "REQUEST_SCHEME",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "SERVER_PORT",
                "SERVER_NAME",
                "HTTP_HOST",
                "HTTP_ACCEPT",
                "SCRIPT_NAME",
            ]
        );
    }

    #[test]
    fn uwsgi_duplicates() {
        let vars = nginx(&[
            (b"HTTP_COOKIE", b"a=1"),
            (b"CONTENT_TYPE", b"text/plain"),
            (b"HTTP_COOKIE", b"b=2"),
            (b"QUERY_STRING", b"last"),
        ]);
        let cgi = from_uwsgi(vars, 0, &tcp_conn()).unwrap();
        // Repeated headers (one HTTP_* each from nginx) are joined as on the HTTP path.
        assert_eq!(get(&cgi, "HTTP_COOKIE"), Some(&b"a=1; b=2"[..]));
        assert_eq!(get(&cgi, "QUERY_STRING"), Some(&b"last"[..]));
        assert_eq!(get(&cgi, "CONTENT_TYPE"), Some(&b"text/plain"[..]));
        // First position, last value (for what is not a header).
        assert_eq!(names(&cgi)[0], "QUERY_STRING");
        assert_unique(&cgi);
        let vars = nginx(&[
            (b"HTTP_X_FORWARDED_FOR", b"10.0.0.1"),
            (b"HTTP_X_FORWARDED_FOR", b"10.0.0.2"),
            (b"HTTP_ACCEPT", b"a"),
        ]);
        let cgi = from_uwsgi(vars, 0, &tcp_conn()).unwrap();
        assert_eq!(
            get(&cgi, "HTTP_X_FORWARDED_FOR"),
            Some(&b"10.0.0.1,10.0.0.2"[..])
        );
        assert_eq!(get(&cgi, "HTTP_ACCEPT"), Some(&b"a"[..]));
        assert_unique(&cgi);

        // A later empty CONTENT_LENGTH unsets an earlier one.
        let vars = nginx_with(&[(b"CONTENT_LENGTH", Some(b"5"))])
            .into_iter()
            .chain([(st(b"CONTENT_LENGTH"), Bytes::new())])
            .collect();
        let cgi = from_uwsgi(vars, 0, &tcp_conn()).unwrap();
        assert_eq!(cgi.content_length, None);
        assert_eq!(get(&cgi, "CONTENT_LENGTH"), None);
        assert_unique(&cgi);
    }

    #[test]
    fn uwsgi_errors() {
        let cases: &[(Changes, CgiError)] = &[
            (
                &[(b"REQUEST_METHOD", None)],
                CgiError::MissingVar("REQUEST_METHOD"),
            ),
            (
                &[(b"REQUEST_METHOD", Some(b""))],
                CgiError::MissingVar("REQUEST_METHOD"),
            ),
            (
                &[(b"CONTENT_LENGTH", Some(b"12a"))],
                CgiError::BadContentLength,
            ),
            (
                &[(b"CONTENT_LENGTH", Some(b" 12"))],
                CgiError::BadContentLength,
            ),
            (
                &[(b"CONTENT_LENGTH", Some(b"-1"))],
                CgiError::BadContentLength,
            ),
        ];
        for (changes, want) in cases {
            let got = from_uwsgi(nginx_with(changes), 0, &tcp_conn()).unwrap_err();
            assert_eq!(&got, want, "{changes:?}");
        }
    }

    #[test]
    fn uwsgi_minimal_over_unix_socket() {
        let vars = vec![
            (st(b"REQUEST_METHOD"), st(b"GET")),
            (st(b"REQUEST_URI"), st(b"/x?y=1")),
        ];
        let cgi = from_uwsgi(vars, 0, &unix_conn()).unwrap();
        assert_eq!(
            names(&cgi),
            [
                "REQUEST_METHOD",
                "REQUEST_URI",
                "SCRIPT_NAME",
                "PATH_INFO",
                "QUERY_STRING",
                "SERVER_NAME",
                "SERVER_PORT",
                "REMOTE_ADDR",
            ]
        );
        assert_eq!(get(&cgi, "PATH_INFO"), Some(&b"/x"[..]));
        assert_eq!(get(&cgi, "SERVER_NAME"), Some(&b"localhost"[..]));
        assert_eq!(get(&cgi, "SERVER_PORT"), Some(&b"80"[..]));
    }

    #[test]
    fn uwsgi_many_vars_with_colliding_bloom_bits() {
        // 200 distinct names, enough to fill every Bloom bit: all must survive.
        let names: Vec<String> = (0..200).map(|i| format!("HTTP_X_{i}")).collect();
        let mut vars = vec![(st(b"REQUEST_METHOD"), st(b"GET"))];
        vars.extend(
            names
                .iter()
                .map(|n| (Bytes::from(n.clone()), Bytes::from(n.clone()))),
        );
        let cgi = from_uwsgi(vars, 0, &tcp_conn()).unwrap();
        for n in &names {
            assert_eq!(get(&cgi, n), Some(n.as_bytes()));
        }
        assert_unique(&cgi);
    }

    #[test]
    fn split_host_table() {
        type Parts = Option<(&'static [u8], Option<&'static [u8]>)>;
        let cases: &[(&[u8], Parts)] = &[
            (b"example.com", Some((b"example.com", None))),
            (b"example.com:8080", Some((b"example.com", Some(b"8080")))),
            (b"[::1]:8000", Some((b"[::1]", Some(b"8000")))),
            (b"[::1]", Some((b"[::1]", None))),
            (b"[::1", Some((b"[::1", None))),
            (b"[::1]x", Some((b"[::1]x", None))),
            (b":80", None),
            (b"", None),
        ];
        for (host, want) in cases {
            let got = split_host(&Bytes::copy_from_slice(host));
            let got = got.as_ref().map(|(n, p)| (&n[..], p.as_deref()));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(host));
        }
    }
}
