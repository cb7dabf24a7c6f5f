//! The two wire protocols at the byte level: the uwsgi protocol (raw packets on a unix
//! socket, as nginx's `uwsgi_pass` sends them) and malformed HTTP/1.1 requests.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rsgi_e2e::*;

// ---------------------------------------------------------------------------------------
// uwsgi protocol
// ---------------------------------------------------------------------------------------

#[test]
fn hello_over_uwsgi_unix_socket() {
    let s = serve_uwsgi("hello", &[]);
    let resp = uwsgi_request(&s.addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"Hello World");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
}

#[test]
fn uwsgi_environ_from_vars() {
    let s = serve_uwsgi("environ_app", &[]);
    let vars = nginx_vars(
        "GET",
        "/environ",
        "x=1",
        &[
            ("HTTP_X_FOO", "a,b"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("REMOTE_ADDR", "10.1.2.3"),
        ],
    );
    let env = uwsgi_request(&s.addr, &vars, b"").json();
    assert_eq!(env["PATH_INFO"], "/environ");
    assert_eq!(env["QUERY_STRING"], "x=1");
    assert_eq!(env["REQUEST_METHOD"], "GET");
    assert_eq!(env["HTTP_X_FOO"], "a,b");
    assert_eq!(env["HTTP_COOKIE"], "a=1; b=2");
    assert_eq!(env["REMOTE_ADDR"], "10.1.2.3");
    assert_eq!(env["SERVER_NAME"], "localhost");
    assert_eq!(env["SERVER_PORT"], "80");
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert!(env["wsgi.multithread"].is_boolean());
    assert!(env["wsgi.multiprocess"].is_boolean());
    assert!(env.get("HTTP_CONTENT_TYPE").is_none());
    assert!(env.get("HTTP_CONTENT_LENGTH").is_none());
}

#[test]
fn uwsgi_https_on_means_https_scheme() {
    let s = serve_uwsgi("environ_app", &[]);
    let vars = nginx_vars(
        "GET",
        "/environ",
        "",
        &[("HTTPS", "on"), ("REQUEST_SCHEME", "https")],
    );
    let env = uwsgi_request(&s.addr, &vars, b"").json();
    assert_eq!(env["wsgi.url_scheme"], "https");
}

#[test]
fn uwsgi_post_body() {
    let s = serve_uwsgi("environ_app", &[]);
    let body = b"line1\nline2\nline3";
    let vars = nginx_vars(
        "POST",
        "/readline",
        "",
        &[("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "17")],
    );
    let lines = uwsgi_request(&s.addr, &vars, body).json();
    assert_eq!(lines, serde_json::json!(["line1\n", "line2\n", "line3"]));

    let vars = nginx_vars(
        "POST",
        "/echo",
        "",
        &[("CONTENT_TYPE", "text/x-echo"), ("CONTENT_LENGTH", "17")],
    );
    let echo = uwsgi_request(&s.addr, &vars, body);
    assert_eq!(echo.body, body);
    assert_eq!(echo.header("content-type"), Some("text/x-echo"));
}

#[test]
fn uwsgi_streaming_and_exception() {
    let s = serve_uwsgi("environ_app", &[]);
    let resp = uwsgi_request(&s.addr, &nginx_vars("GET", "/stream", "", &[]), b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
    let resp = uwsgi_request(&s.addr, &nginx_vars("GET", "/raise", "", &[]), b"");
    assert_eq!(resp.status, 500);
    let resp = uwsgi_request(&s.addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.status, 200);
}

/// The server answers a normal request after a bad packet.
fn assert_still_serves(addr: &Addr) {
    let resp = uwsgi_request(addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"Hello World");
}

fn assert_refused(reply: &[u8], what: &str) {
    assert!(
        !reply.starts_with(b"HTTP/1.1 200") && !reply.starts_with(b"HTTP/1.0 200"),
        "{what}: the server answered 200: {:?}",
        String::from_utf8_lossy(reply)
    );
}

#[test]
fn uwsgi_vars_larger_than_buffer_size_are_refused() {
    let s = serve_uwsgi("hello", &["--buffer-size", "4096"]);
    let big = "x".repeat(6000);
    let vars = nginx_vars("GET", "/", "", &[("HTTP_COOKIE", &big)]);
    let reply = uwsgi_raw(&s.addr, &uwsgi_packet(&vars, b""), false).unwrap();
    assert_refused(&reply, "vars over buffer-size");
    assert_still_serves(&s.addr);
}

#[test]
fn uwsgi_truncated_packet_is_closed() {
    let s = serve_uwsgi("hello", &[]);
    let block = uwsgi_vars(&nginx_vars("GET", "/", "", &[]));
    // The header promises the whole block; only half of it arrives, then EOF.
    let mut packet = uwsgi_packet_raw(0, u16::try_from(block.len()).unwrap(), 0, &block);
    packet.truncate(4 + block.len() / 2);
    let reply = uwsgi_raw(&s.addr, &packet, true).unwrap();
    assert_refused(&reply, "truncated packet");
    assert!(reply.is_empty(), "expected a plain close, got {reply:?}");
    assert_still_serves(&s.addr);
}

#[test]
fn uwsgi_var_lengths_pointing_past_the_block_are_refused() {
    let s = serve_uwsgi("hello", &[]);
    // One key whose length claims 200 bytes inside a 10-byte block.
    let mut block = 200u16.to_le_bytes().to_vec();
    block.extend_from_slice(b"PATH_INF");
    let packet = uwsgi_packet_raw(0, u16::try_from(block.len()).unwrap(), 0, &block);
    let reply = uwsgi_raw(&s.addr, &packet, true).unwrap();
    assert_refused(&reply, "var length past the block");
    assert_still_serves(&s.addr);
}

#[test]
fn uwsgi_garbage_is_closed() {
    let s = serve_uwsgi("hello", &[]);
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 7 + 13) as u8).collect();
    let reply = uwsgi_raw(&s.addr, &garbage, true).unwrap();
    assert_refused(&reply, "garbage");
    // An HTTP request sent to the uwsgi socket by mistake is garbage too.
    let reply = uwsgi_raw(&s.addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", true).unwrap();
    assert_refused(&reply, "HTTP on a uwsgi socket");
    assert_still_serves(&s.addr);
}

#[test]
fn uwsgi_many_requests_in_a_row() {
    let s = serve_uwsgi("hello", &[]);
    for _ in 0..50 {
        assert_still_serves(&s.addr);
    }
}

// ---------------------------------------------------------------------------------------
// malformed HTTP
// ---------------------------------------------------------------------------------------

/// Send `raw` on its own connection: the server must answer 400 or close the
/// connection without an answer, and serve a clean request on a new connection after.
fn assert_bad_request(s: &Served, raw: &[u8]) {
    check_bad_request(s, raw, false);
}

/// As [`assert_bad_request`]; with `answer_then_close`, a non-400 answer is also
/// accepted if the server then closes the connection without answering anything else
/// (RFC 9112 6.3 allows that for Content-Length + Transfer-Encoding).
fn check_bad_request(s: &Served, raw: &[u8], answer_then_close: bool) {
    let what = String::from_utf8_lossy(raw).into_owned();
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    conn.stream().set_timeouts(Duration::from_secs(10)).unwrap();
    // The server may close before reading everything: a failed write is fine.
    let _ = conn.send(raw);
    match conn.read_final(false) {
        Ok(resp) if answer_then_close && resp.status != 400 => {
            let rest = conn.read_until_close(Duration::from_secs(5));
            assert!(
                rest.as_ref().is_ok_and(Vec::is_empty),
                "{what:?} was answered {} and the connection must then close with \
                 nothing more, got {rest:?}",
                resp.status
            );
        }
        Ok(resp) => assert_eq!(
            resp.status,
            400,
            "{what:?} must be refused with 400, got {} {:?}",
            resp.status,
            resp.text()
        ),
        Err(e) => assert!(
            is_closed_error(&e),
            "{what:?}: expected 400 or a closed connection, got {e} ({:?})",
            e.kind()
        ),
    }
    let ok = get(&s.addr, "/head");
    assert_eq!(ok.status, 200, "after {what:?}");
    assert_eq!(ok.text(), "head body");
}

#[test]
fn http_two_different_content_lengths() {
    let s = serve_http("environ_app", &[]);
    assert_bad_request(
        &s,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\
          Content-Length: 5\r\n\r\nabcde",
    );
}

#[test]
fn http_content_length_and_transfer_encoding() {
    let s = serve_http("environ_app", &[]);
    // The classic smuggling shape: read by Content-Length it is one request; read as
    // chunked, "GET /smuggled" would follow. Either refuse it, or answer (chunked wins)
    // and close: "GET /smuggled" must never be served.
    check_bad_request(
        &s,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        true,
    );
}

#[test]
fn http_bad_chunk_size() {
    let s = serve_http("environ_app", &[]);
    assert_bad_request(
        &s,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          zz\r\nhello\r\n0\r\n\r\n",
    );
}

#[test]
fn http_obs_fold_header() {
    let s = serve_http("environ_app", &[]);
    assert_bad_request(
        &s,
        b"GET /environ HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n  b\r\n\r\n",
    );
}

#[test]
fn http_nul_in_header() {
    let s = serve_http("environ_app", &[]);
    assert_bad_request(
        &s,
        b"GET /environ HTTP/1.1\r\nHost: localhost\r\nX-Nul: a\0b\r\n\r\n",
    );
}

#[test]
fn http_garbage_request_line() {
    let s = serve_http("environ_app", &[]);
    assert_bad_request(
        &s,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
}

// ---------------------------------------------------------------------------------------
// through nginx's uwsgi_pass
// ---------------------------------------------------------------------------------------

#[test]
fn nginx_uwsgi_pass_bodies_streams_errors() {
    let s = serve_uwsgi("environ_app", &[]);
    let Addr::Unix(sock) = &s.addr else {
        unreachable!()
    };
    let nginx = Nginx::start_with(s.dir.path(), sock, "    client_max_body_size 8m;");

    // A body larger than nginx's buffers: nginx spools it to a temp file, then sends it
    // with CONTENT_LENGTH in the same stream.
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let echo = post(&nginx.addr, "/echo", "application/octet-stream", &body);
    assert_eq!(echo.status, 200, "{}", nginx.error_log());
    assert!(echo.body == body, "the body came back different");

    let env = get(&nginx.addr, "/environ/caf%C3%A9?q=1").json();
    assert_eq!(env["PATH_INFO"], "/environ/caf\u{c3}\u{a9}");
    assert_eq!(env["QUERY_STRING"], "q=1");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["SCRIPT_NAME"], "");
    assert!(env.get("HTTP_CONTENT_LENGTH").is_none());

    let stream = get(&nginx.addr, "/stream");
    assert_eq!(stream.text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");

    // An app exception is a 500 from rsgi, not a 502 from nginx.
    let raised = get(&nginx.addr, "/raise");
    assert_eq!(raised.status, 500, "{}", nginx.error_log());
    let after = get(&nginx.addr, "/head");
    assert_eq!(after.text(), "head body");
    assert!(
        !nginx.error_log().contains("upstream prematurely closed"),
        "{}",
        nginx.error_log()
    );
}
