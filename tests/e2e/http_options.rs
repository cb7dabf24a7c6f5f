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

/// Send `raw` on a new connection and read the whole answer until the server closes.
fn exchange(addr: &Addr, raw: &[u8]) -> Vec<u8> {
    let mut conn = HttpConn::connect(addr).unwrap();
    conn.send(raw).unwrap();
    conn.read_until_close(Duration::from_secs(20)).unwrap()
}

fn remote_of(answer: &[u8]) -> (String, String) {
    let resp = parse_response(answer, false).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let env = resp.json();
    (
        env["REMOTE_ADDR"].as_str().unwrap().to_owned(),
        env["REMOTE_PORT"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn proxy_protocol_v1_and_v2_give_the_client_address() {
    let s = serve_http("environ_app", &["--http-enable-proxy-protocol"]);
    let get_env = b"GET /environ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    // v1
    let v1 = [
        b"PROXY TCP4 203.0.113.9 10.0.0.1 4321 80\r\n".as_slice(),
        get_env,
    ]
    .concat();
    assert_eq!(
        remote_of(&exchange(&s.addr, &v1)),
        ("203.0.113.9".into(), "4321".into())
    );
    let v1_6 = [
        b"PROXY TCP6 2001:db8::7 ::1 5555 443\r\n".as_slice(),
        get_env,
    ]
    .concat();
    assert_eq!(
        remote_of(&exchange(&s.addr, &v1_6)),
        ("2001:db8::7".into(), "5555".into())
    );
    // v2, TCP over IPv4
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 20, 10, 0, 0, 1]);
    v2.extend_from_slice(&7777u16.to_be_bytes());
    v2.extend_from_slice(&80u16.to_be_bytes());
    let v2_req = [v2.as_slice(), get_env].concat();
    assert_eq!(
        remote_of(&exchange(&s.addr, &v2_req)),
        ("198.51.100.20".into(), "7777".into())
    );
    // Keep-alive: the header once, then several requests.
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    conn.send(b"PROXY TCP4 192.0.2.1 10.0.0.1 1111 80\r\n")
        .unwrap();
    for _ in 0..2 {
        let env = conn.get("/environ").unwrap().json();
        assert_eq!(env["REMOTE_ADDR"], "192.0.2.1");
    }
    // No header: the peer's own address (the header is optional, as in uWSGI).
    assert_eq!(remote_of(&exchange(&s.addr, get_env)).0, "127.0.0.1");
    // A malformed header: the connection is closed without an answer; the worker
    // serves on.
    for bad in [
        b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n".as_slice(),
        b"PROXY SOMETHING\r\nGET / HTTP/1.1\r\n\r\n".as_slice(),
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x00GET / HTTP/1.1\r\n\r\n".as_slice(),
    ] {
        assert!(
            exchange(&s.addr, bad).is_empty(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(remote_of(&exchange(&s.addr, &v1)).0, "203.0.113.9");
}

#[test]
fn without_the_option_a_proxy_header_is_a_bad_request() {
    let s = serve_http("environ_app", &[]);
    let raw =
        b"PROXY TCP4 203.0.113.9 10.0.0.1 4321 80\r\nGET /environ HTTP/1.1\r\nHost: a\r\n\r\n";
    let answer = exchange(&s.addr, raw);
    let resp = parse_response(&answer, false).unwrap();
    assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&answer));
}
