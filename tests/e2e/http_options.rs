//! Request-handling options (issue 21 item 2, issue 16 item 2): `add-header`,
//! `http-timeout`, `http-keepalive-timeout`. Real rsgi, real apps, real sockets.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rsgi_e2e::*;

/// Read from `conn` until the server closes it; how long that took. Panics if it is
/// still open after `deadline` or sends anything.
fn wait_closed(conn: &mut HttpConn, deadline: Duration) -> Duration {
    let start = Instant::now();
    let bytes = conn.read_until_close(deadline).unwrap();
    assert!(
        bytes.is_empty(),
        "unexpected bytes: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    start.elapsed()
}

#[test]
fn an_idle_keepalive_connection_is_closed_after_http_keepalive_timeout() {
    let s = serve_http(
        "hello",
        &["--http-keepalive-timeout", "2", "--socket-timeout", "30"],
    );
    // In use: a request every 500 ms for 4 s (twice the idle timeout) on one connection.
    let mut busy = HttpConn::connect(&s.addr).unwrap();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let resp = busy.get("/").unwrap();
        assert_eq!(
            resp.text(),
            "Hello World",
            "request {n} on the busy connection"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Left idle after a request: closed after about 2 s, well before socket-timeout.
    let mut idle = HttpConn::connect(&s.addr).unwrap();
    assert_eq!(idle.get("/").unwrap().status, 200);
    let took = wait_closed(&mut idle, Duration::from_secs(20));
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
    assert!(took < Duration::from_secs(20), "closed after {took:?}");
    // The busy connection, idle as long meanwhile, is closed too; the worker serves on.
    wait_closed(&mut busy, Duration::from_secs(20));
    assert_eq!(get(&s.addr, "/").text(), "Hello World");
}

#[test]
fn the_default_idle_timeout_outlasts_socket_timeout() {
    // socket-timeout 1 bounds a request head, not the wait between requests (65 s).
    let s = serve_http("hello", &["--socket-timeout", "1"]);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    assert_eq!(conn.get("/").unwrap().status, 200);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(conn.get("/").unwrap().text(), "Hello World");
    // A head that stalls halfway is still closed by socket-timeout.
    let mut slow = HttpConn::connect(&s.addr).unwrap();
    slow.send(b"GET / HTTP/1.1\r\nHo").unwrap();
    let took = wait_closed(&mut slow, Duration::from_secs(30));
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn http_timeout_bounds_http_request_heads() {
    // http-timeout 1 (for HTTP) overrides socket-timeout 30.
    let s = serve_http("hello", &["--http-timeout", "1", "--socket-timeout", "30"]);
    let mut slow = HttpConn::connect(&s.addr).unwrap();
    slow.send(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let took = wait_closed(&mut slow, Duration::from_secs(25));
    assert!(took < Duration::from_secs(25), "closed after {took:?}");
    // A keep-alive connection's second head is bounded the same way.
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    assert_eq!(conn.get("/").unwrap().status, 200);
    conn.send(b"GET / HTTP/1.1\r\n").unwrap();
    let took = wait_closed(&mut conn, Duration::from_secs(25));
    assert!(took < Duration::from_secs(25), "closed after {took:?}");
    // And the worker serves on.
    assert_eq!(get(&s.addr, "/").text(), "Hello World");
}

#[test]
fn add_header_goes_on_every_response() {
    let dir = tempdir();
    write_file(dir.path(), "static/a.txt", "static file\n");
    let http = Addr::Tcp(free_addr());
    let uwsgi = Addr::Unix(dir.path().join("u.sock"));
    let map = format!("/static={}", path_str(&dir.path().join("static")));
    let mut args = vec![
        "--http-socket".to_owned(),
        http.arg(),
        "--socket".to_owned(),
        uwsgi.arg(),
        "--static-map".to_owned(),
        map,
        "--add-header".to_owned(),
        "X-Frame-Options: DENY".to_owned(),
        "--add-header".to_owned(),
        "X-Served-By:rsgi".to_owned(),
    ];
    args.extend(app_args("status_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start_in(dir.path(), &args).ready(&http);
    let check = |what: &str, resp: &HttpResponse| {
        assert_eq!(
            resp.header("x-frame-options"),
            Some("DENY"),
            "{what}: {:?}",
            resp.headers
        );
        assert_eq!(
            resp.header("x-served-by"),
            Some("rsgi"),
            "{what}: {:?}",
            resp.headers
        );
    };
    // keep-alive (hyper), Connection: close (the close path), uwsgi, static, errors
    let mut conn = HttpConn::connect(&http).unwrap();
    check("keep-alive", &conn.get("/").unwrap());
    check("keep-alive 404", &conn.get("/status/404").unwrap());
    check("close path", &get(&http, "/"));
    check("static", &get(&http, "/static/a.txt"));
    check("app raised", &get(&http, "/raise"));
    check(
        "uwsgi",
        &uwsgi_request(&uwsgi, &nginx_vars("GET", "/", "", &[]), b""),
    );
}

#[test]
fn a_bad_add_header_is_a_config_error() {
    let dir = tempdir();
    let mut args = vec!["--http-socket".to_owned(), free_addr().to_string()];
    args.extend(app_args("hello"));
    args.extend(["--add-header".to_owned(), "no colon here".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, Duration::from_secs(30));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("add-header = 'no colon here': expected 'Name: value'"),
        "{log}"
    );
}
