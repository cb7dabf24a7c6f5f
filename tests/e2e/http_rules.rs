//! Request rules found by trying rsgi as an attacker would (issue 16): an HTTP/1.1
//! request needs exactly one `Host` (RFC 9112 §3.2: 400 otherwise), and a header that
//! nginx passes as several uwsgi vars (one per line) reaches the app joined as the HTTP
//! path joins repeated headers.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use rsgi_e2e::*;

/// Send `raw` to `addr` and read until the server closes: the status line's code.
fn status_of(addr: &std::net::SocketAddr, raw: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[test]
fn http_11_needs_exactly_one_host() {
    let http = free_addr();
    let mut args = vec!["--http-socket".to_owned(), http.to_string()];
    args.extend(app_args("environ_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start(&args).ready(&Addr::Tcp(http));
    let rows: &[(&[u8], u16)] = &[
        (
            b"GET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            200,
        ),
        (b"GET /pid HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            b"GET /pid HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (b"GET /pid HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET /pid HTTP/1.0\r\n\r\n", 200),
        // Keep-alive (hyper's path) too.
        (b"GET /pid HTTP/1.1\r\n\r\n", 400),
    ];
    for (raw, want) in rows {
        assert_eq!(
            status_of(&http, raw),
            *want,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn repeated_uwsgi_vars_are_joined_like_repeated_headers() {
    let dir = tempdir();
    let sock = dir.path().join("app.sock");
    let addr = Addr::Unix(sock.clone());
    let mut args = vec!["--socket".to_owned(), path_str(&sock).to_owned()];
    args.extend(app_args("environ_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start(&args).ready(&addr);
    // As nginx sends them: one var per header line (`nginx_vars` would merge them).
    let mut vars = nginx_vars("GET", "/environ", "", &[]);
    vars.extend([
        ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
        ("HTTP_COOKIE", "a=1"),
        ("HTTP_X_FORWARDED_FOR", "10.0.0.2"),
        ("HTTP_COOKIE", "b=2"),
    ]);
    let bytes = uwsgi_raw(&addr, &uwsgi_packet(&vars, b""), false).expect("uwsgi request");
    let resp = parse_response(&bytes, false).expect("a response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let environ = resp.json();
    assert_eq!(
        environ["HTTP_X_FORWARDED_FOR"], "10.0.0.1,10.0.0.2",
        "{environ}"
    );
    assert_eq!(environ["HTTP_COOKIE"], "a=1; b=2", "{environ}");
}
