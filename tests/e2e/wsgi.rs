//! WSGI semantics over `http-socket`: the environ (PEP 3333), `wsgi.input`, response
//! bodies (streaming, HEAD, write(), exc_info, file_wrapper), errors and close().
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use rsgi_e2e::*;
use serde_json::{json, Value};

fn environ(served: &Served, raw: &str) -> Value {
    let resp = request(&served.addr, raw.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

#[test]
fn hello_over_http_socket() {
    let s = serve_http("hello", &[]);
    let resp = get(&s.addr, "/");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"Hello World");
    assert_eq!(resp.header("content-length"), Some("11"));
    assert_eq!(resp.header("content-type"), Some("text/plain"));
}

#[test]
fn wsgi_file_hello() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let file = apps_dir().join("wsgi_file_hello.py");
    let _rsgi = Rsgi::start_in(
        dir.path(),
        &["--http-socket", &addr.arg(), "--wsgi-file", path_str(&file)],
    )
    .ready(&addr);
    let resp = get(&addr, "/");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "Hello from wsgi-file");
}

#[test]
fn environ_cgi_variables() {
    let s = serve_http("environ_app", &[]);
    let port = match &s.addr {
        Addr::Tcp(a) => a.port(),
        Addr::Unix(_) => unreachable!(),
    };
    let env = environ(
        &s,
        "GET /environ?a=1&b=two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         X-Foo: a\r\nX-Foo: b\r\nCookie: a=1\r\nCookie: b=2\r\nUser-Agent: e2e\r\n\r\n",
    );
    assert_eq!(env["REQUEST_METHOD"], "GET");
    assert_eq!(env["PATH_INFO"], "/environ");
    assert_eq!(env["QUERY_STRING"], "a=1&b=two");
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(env["SERVER_PORT"], port.to_string());
    assert!(
        env["SERVER_NAME"].as_str().is_some_and(|n| !n.is_empty()),
        "SERVER_NAME: {}",
        env["SERVER_NAME"]
    );
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["HTTP_HOST"], "localhost");
    assert_eq!(env["HTTP_USER_AGENT"], "e2e");
    assert_eq!(env["HTTP_X_FOO"], "a,b");
    assert_eq!(env["HTTP_COOKIE"], "a=1; b=2");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["wsgi.version"], json!([1, 0]));
    assert_eq!(env["wsgi.input"], "<input>");
    assert_eq!(env["wsgi.errors"], "<errors>");
    for key in ["wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"] {
        assert!(env[key].is_boolean(), "{key} is not a bool: {}", env[key]);
    }
    assert_eq!(env["wsgi.run_once"], false);
    // PEP 3333: every CGI variable is a native str.
    for (key, ty) in env["_types"].as_object().unwrap() {
        if !key.starts_with("wsgi.") && key.to_uppercase() == *key {
            assert_eq!(ty, "str", "{key} has type {ty}");
        }
    }
    // No request body: CONTENT_LENGTH absent or empty, never HTTP_CONTENT_*.
    assert!(env.get("HTTP_CONTENT_LENGTH").is_none());
}

#[test]
fn environ_content_headers_are_not_http_vars() {
    let s = serve_http("environ_app", &[]);
    let resp = post(&s.addr, "/environ", "application/x-test", b"12345");
    assert_eq!(resp.status, 200);
    let env = resp.json();
    assert_eq!(env["CONTENT_TYPE"], "application/x-test");
    assert_eq!(env["CONTENT_LENGTH"], "5");
    assert_eq!(env["REQUEST_METHOD"], "POST");
    assert!(env.get("HTTP_CONTENT_TYPE").is_none(), "{env}");
    assert!(env.get("HTTP_CONTENT_LENGTH").is_none(), "{env}");
}

#[test]
fn path_info_is_percent_decoded_then_latin1() {
    let s = serve_http("environ_app", &[]);
    let env = get(&s.addr, "/environ/caf%C3%A9?q=%C3%A9").json();
    // Each byte of the decoded path becomes one code point (PEP 3333 "bytes as latin-1").
    assert_eq!(env["PATH_INFO"], "/environ/caf\u{c3}\u{a9}");
    // The query string stays raw.
    assert_eq!(env["QUERY_STRING"], "q=%C3%A9");
}

const BODY: &str = "line1\nline2\nline3";

#[test]
fn wsgi_input_read_readline_readn_iter() {
    let s = serve_http("environ_app", &[]);
    let echo = post(&s.addr, "/echo", "text/x-lines", BODY.as_bytes());
    assert_eq!(echo.status, 200);
    assert_eq!(echo.text(), BODY);
    assert_eq!(echo.header("content-type"), Some("text/x-lines"));

    let lines = post(&s.addr, "/readline", "text/plain", BODY.as_bytes()).json();
    assert_eq!(lines, json!(["line1\n", "line2\n", "line3"]));

    // readline(size): PEP 3333 lets a server ignore the size hint, but no byte may be
    // lost or duplicated, and a line never spans a newline.
    let sized = post(&s.addr, "/readline?size=3", "text/plain", BODY.as_bytes()).json();
    let parts: Vec<&str> = sized
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(parts.concat(), BODY, "{parts:?}");
    assert!(
        parts
            .iter()
            .all(|p| !p.trim_end_matches('\n').contains('\n')),
        "{parts:?}"
    );

    let parts = post(&s.addr, "/readn?n=4", "text/plain", BODY.as_bytes()).json();
    assert_eq!(parts, json!(["line", "1\nli", "ne2\n", "line", "3"]));

    let iterated = post(&s.addr, "/iter", "text/plain", BODY.as_bytes()).json();
    assert_eq!(iterated, json!(["line1\n", "line2\n", "line3"]));
}

#[test]
fn wsgi_input_larger_body() {
    let s = serve_http("environ_app", &[]);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let resp = post(&s.addr, "/echo", "application/octet-stream", &body);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body == body, "echoed body differs");
}

#[test]
fn chunked_request_body() {
    let s = serve_http("environ_app", &[]);
    let resp = request(
        &s.addr,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
          Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello world");
}

#[test]
fn expect_100_continue() {
    let s = serve_http("environ_app", &[]);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n\
          Content-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    // The client waits for the interim response before it sends the body.
    let interim = conn.read_response(false).unwrap();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue, got {interim:?}"
    );
    conn.send(b"hello").unwrap();
    let resp = conn.read_final(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello");
}

#[test]
fn streaming_generator_is_chunked() {
    let s = serve_http("environ_app", &[]);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    let resp = conn.get("/stream").unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.chunked,
        "no Content-Length from the app: HTTP/1.1 must use chunked ({:?})",
        resp.headers
    );
    assert_eq!(resp.text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
    // The connection stays usable after a chunked response.
    assert_eq!(conn.get("/").unwrap().text(), "environ app");
}

#[test]
fn streaming_to_http_1_0_client_ends_at_close() {
    let s = serve_http("environ_app", &[]);
    let raw = http_request(&s.addr, b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
    let resp = parse_response(&raw, false).unwrap();
    assert_eq!(resp.status, 200);
    assert!(!resp.chunked, "HTTP/1.0 has no chunked encoding");
    assert_eq!(resp.text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
}

#[test]
fn head_has_no_body() {
    let s = serve_http("environ_app", &[]);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    let head = conn
        .request(b"HEAD /head HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // If the server had sent the body anyway, it would be read as the next response.
    let next = conn.get("/head").unwrap();
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), "head body");
}

#[test]
fn app_exception_is_500_with_traceback_and_server_survives() {
    let s = serve_http("environ_app", &[]);
    let resp = get(&s.addr, "/raise");
    assert_eq!(resp.status, 500);
    wait_until(Duration::from_secs(10), "a traceback in the log", || {
        s.rsgi.log_contains("Traceback") && s.rsgi.log_contains("boom from environ_app")
    });
    assert!(
        !resp.text().contains("boom from environ_app"),
        "the exception text must not leak to the client"
    );
    let next = get(&s.addr, "/");
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), "environ app");
}

#[test]
fn write_callable() {
    let s = serve_http("environ_app", &[]);
    let resp = get(&s.addr, "/write");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "written-returned");
}

#[test]
fn exc_info_replaces_status_before_headers_are_sent() {
    let s = serve_http("environ_app", &[]);
    let resp = get(&s.addr, "/exc_info");
    assert_eq!(resp.status, 500);
    assert_eq!(resp.text(), "exc_info handled");
}

#[test]
fn file_wrapper_returns_file_bytes() {
    let s = serve_http("environ_app", &[]);
    let resp = get(&s.addr, "/filewrapper");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        fs::read(apps_dir().join("filewrapper.txt")).unwrap()
    );
}

#[test]
fn status_from_app() {
    let s = serve_http("environ_app", &[]);
    let resp = get(&s.addr, "/status?code=404");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.text(), "status 404");
    let resp = get(&s.addr, "/status?code=201");
    assert_eq!(resp.status, 201);
}

/// After a response whose body does not match its Content-Length, the next request on the
/// same connection gets a correct response or finds the connection closed: never bytes
/// left over from the broken response.
fn assert_no_desync(path: &str) {
    let s = serve_http("environ_app", &[]);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    conn.stream().set_timeouts(Duration::from_secs(5)).unwrap();
    let first = conn.get(path);
    if let Ok(resp) = &first {
        assert_eq!(resp.status, 200);
        assert!(resp.body.len() <= 10);
    }
    match conn.get("/head") {
        Ok(resp) => {
            assert_eq!(resp.status, 200, "after {path}: {resp:?}");
            assert_eq!(resp.text(), "head body", "after {path}");
        }
        Err(e) => assert!(
            is_closed_error(&e),
            "after {path}: the connection must be closed or in sync, got {e} ({:?})",
            e.kind()
        ),
    }
    // The server itself is fine.
    assert_eq!(get(&s.addr, "/head").text(), "head body");
}

#[test]
fn short_body_does_not_desync_keep_alive() {
    assert_no_desync("/short");
}

#[test]
fn long_body_does_not_desync_keep_alive() {
    assert_no_desync("/long");
}

#[test]
fn close_is_called_on_the_iterable() {
    let s = serve_http("environ_app", &[]);
    let marker = s.dir.path().join("closed.txt");
    let resp = get(&s.addr, &format!("/close?marker={}", path_str(&marker)));
    assert_eq!(resp.text(), "part1-part2");
    wait_until(
        Duration::from_secs(10),
        "close() to write the marker",
        || fs::read_to_string(&marker).is_ok_and(|m| m == "closed\n"),
    );
}

#[test]
fn an_iterable_over_a_list_is_sent_whole_and_closed_once() {
    // Django's HttpResponse iterates a list: rsgi collects it (a Content-Length instead
    // of chunks), and close() still runs once, after the body is out.
    for extra in [&[][..], &["--threads", "2"][..]] {
        let s = serve_http("environ_app", extra);
        for (i, keep_alive) in [false, true].into_iter().enumerate() {
            let marker = s.dir.path().join(format!("closed-{i}.txt"));
            let raw = format!(
                "GET /close_list?marker={} HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
                path_str(&marker),
                if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                }
            );
            let mut conn = HttpConn::connect(&s.addr).unwrap();
            let resp = conn.request(raw.as_bytes()).unwrap();
            assert_eq!(
                resp.text(),
                "list-backed",
                "{extra:?} keep-alive {keep_alive}"
            );
            assert_eq!(resp.header("content-length"), Some("11"));
            assert!(!resp.chunked);
            wait_until(
                Duration::from_secs(10),
                "close() to write the marker",
                || fs::read_to_string(&marker).is_ok_and(|m| m == "closed\n"),
            );
        }
    }
}

#[test]
fn close_is_called_when_the_client_goes_away() {
    let s = serve_http("environ_app", &[]);
    let marker = s.dir.path().join("closed.txt");
    {
        let mut conn = HttpConn::connect(&s.addr).unwrap();
        conn.send(
            format!(
                "GET /close_slow?marker={}&n=400 HTTP/1.1\r\nHost: localhost\r\n\r\n",
                path_str(&marker)
            )
            .as_bytes(),
        )
        .unwrap();
        // Read the head and some of the stream, then hang up mid-stream.
        let first = conn.read_some(2048).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200"), "{first:?}");
    }
    // 400 chunks take 20 s; close() must come much sooner, when a write fails.
    wait_until(
        Duration::from_secs(12),
        "close() after the client disconnected",
        || fs::read_to_string(&marker).is_ok_and(|m| m.contains("closed")),
    );
}

#[test]
fn wsgi_errors_goes_to_the_log() {
    let s = serve_http("environ_app", &[]);
    assert_eq!(get(&s.addr, "/errors").text(), "ok");
    wait_until(
        Duration::from_secs(10),
        "the wsgi.errors line in the log",
        || s.rsgi.log_contains("errors-line-from-app"),
    );
}

#[test]
fn access_line_per_request() {
    let s = serve_http("environ_app", &[]);
    assert_eq!(get(&s.addr, "/status?code=203").status, 203);
    wait_until(
        Duration::from_secs(10),
        "an access line naming the path",
        || {
            s.rsgi
                .log()
                .lines()
                .any(|l| l.contains("GET /status") && l.contains("203"))
        },
    );
}

#[test]
fn keep_alive_sequential_requests() {
    let s = serve_http("environ_app", &[]);
    let get_head: &[u8] = b"GET /head HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let post_echo: &[u8] =
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc";
    let resps = keep_alive(&s.addr, &[get_head, post_echo, get_head]).unwrap();
    assert_eq!(resps[0].text(), "head body");
    assert_eq!(resps[1].text(), "abc");
    assert_eq!(resps[2].text(), "head body");
}

#[test]
fn keep_alive_pipelined_requests() {
    let s = serve_http("environ_app", &[]);
    let a: &[u8] = b"GET /status?code=201 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let b: &[u8] = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nwxyz";
    let c: &[u8] = b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let d: &[u8] = b"GET /head HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let resps = pipeline(&s.addr, &[a, b, c, d]).unwrap();
    assert_eq!(resps[0].status, 201);
    assert_eq!(resps[1].text(), "wxyz");
    assert_eq!(resps[2].text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
    assert_eq!(resps[3].text(), "head body");
}

#[test]
fn connection_close_is_honoured() {
    let s = serve_http("environ_app", &[]);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    let resp = conn
        .request(b"GET /head HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(resp.text(), "head body");
    let rest = conn.read_until_close(Duration::from_secs(5)).unwrap();
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");
}

#[test]
fn common_environ_keys_are_the_apps_own_interned_strings() {
    // The names every request has and the headers apps look up most are interned: the
    // app's `environ["PATH_INFO"]` then finds its key by identity, and no key str is
    // made per request. Rarer names are plain strs, equal all the same.
    let s = serve_http("environ_app", &[]);
    for raw in [
        "GET /interned HTTP/1.1\r\nHost: h\r\nUser-Agent: e2e\r\nX-Something-Rare: 1\r\n\r\n",
        "GET /interned HTTP/1.1\r\nHost: h\r\nUser-Agent: e2e\r\nX-Something-Rare: 1\r\n\
         Connection: close\r\n\r\n",
    ] {
        let got = request(&s.addr, raw.as_bytes()).json();
        let want = serde_json::json!({
            "REQUEST_METHOD": true,
            "PATH_INFO": true,
            "SERVER_PROTOCOL": true,
            "HTTP_HOST": true,
            "HTTP_USER_AGENT": true,
            "X_UNKNOWN_KEY": true,
            "value GET": true,
            "value HTTP/1.1": true,
        });
        assert_eq!(got, want, "{raw:?}");
    }
}
