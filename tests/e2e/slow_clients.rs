//! Slow and silent clients never starve an app (issue 16): with 1,000 connections that
//! send nothing and 100 that send part of a request head held on a socket, a fresh
//! request is still answered at once, for every kind of socket (HTTP on TCP, uwsgi on
//! TCP, uwsgi on a unix socket) and with `threads` 1 or 4. On 7b245a3 a worker with an
//! app-thread pool reserved a thread per accepted connection until its head arrived, so
//! 20 slow clients were enough to time every fresh request out.

use std::time::{Duration, Instant};

use rsgi_e2e::*;

/// One fresh request; its time.
fn fresh(addr: &Addr, http: bool) -> Duration {
    let started = Instant::now();
    let r = if http {
        http_get(addr, "/pid")
    } else {
        uwsgi_get(addr, "/pid")
    };
    let r = r.unwrap_or_else(|e| panic!("a fresh request to {addr} failed: {e}"));
    assert_eq!(r.status, 200, "{}", r.text());
    started.elapsed()
}

fn check(kind: &str, threads: &str) {
    let dir = tempdir();
    let (addr, flag, target, http, partial) = match kind {
        "http" => {
            let a = free_addr();
            (
                Addr::Tcp(a),
                "--http-socket",
                format!("tcp:{}", a.port()),
                true,
                "GET / HTTP/1.1\r\nHo",
            )
        }
        "uwsgi-tcp" => {
            let a = free_addr();
            (
                Addr::Tcp(a),
                "--socket",
                format!("tcp:{}", a.port()),
                false,
                "\0\x40",
            )
        }
        _ => {
            let p = dir.path().join("app.sock");
            let t = format!("unix:{}", path_str(&p));
            (Addr::Unix(p), "--socket", t, false, "\0\x40")
        }
    };
    let mut args = vec![
        flag.to_owned(),
        addr.arg(),
        "--master".into(),
        "--processes".into(),
        "2".into(),
        "--threads".into(),
        threads.into(),
    ];
    args.extend(app_args("environ_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    let _idle = hold_connections(&target, 1000, "", None);
    let _slow = hold_connections(&target, 100, partial, None);
    let mut times: Vec<Duration> = (0..5).map(|_| fresh(&addr, http)).collect();
    times.sort();
    assert!(
        times[2] < Duration::from_secs(1),
        "{kind}, threads = {threads}: fresh requests took {times:?} beside 1,100 idle and slow connections"
    );
}

#[test]
fn idle_and_slow_clients_do_not_starve_a_threaded_worker() {
    for kind in ["http", "uwsgi-tcp", "uwsgi-unix"] {
        check(kind, "4");
    }
}

#[test]
fn idle_and_slow_clients_do_not_starve_a_sync_worker() {
    for kind in ["http", "uwsgi-tcp", "uwsgi-unix"] {
        check(kind, "1");
    }
}

/// `socket-timeout` (uWSGI's name and default, 4 s): a client silent for that long while
/// sending its request is closed; one that keeps sending, however slowly, is served.
#[test]
fn socket_timeout_closes_silent_clients_and_serves_slow_uploads() {
    use std::io::{Read as _, Write as _};
    let dir = tempdir();
    let sock = dir.path().join("app.sock");
    let addr = Addr::Unix(sock.clone());
    let http = free_addr();
    let mut args = vec![
        "--socket".to_owned(),
        path_str(&sock).to_owned(),
        "--http-socket".to_owned(),
        http.to_string(),
        "--socket-timeout".to_owned(),
        "1".to_owned(),
    ];
    args.extend(app_args("environ_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);

    // Silent after part of the request: closed after about a second, on both protocols.
    let closed_after = |mut s: Box<dyn std::io::Read>| {
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        started.elapsed()
    };
    let mut u = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    u.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    u.write_all(b"\0\x40").expect("send");
    let took = closed_after(Box::new(u));
    assert!(
        took < Duration::from_secs(5),
        "uwsgi: closed after {took:?}"
    );
    let mut t = std::net::TcpStream::connect(http).expect("connect");
    t.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    t.write_all(b"GET / HTTP/1.1\r\nHo").expect("send");
    let took = closed_after(Box::new(t));
    assert!(took < Duration::from_secs(5), "http: closed after {took:?}");

    // A body sent in pieces 0.5 s apart, 2.5 s in all: each read comes in time.
    let body = b"0123456789";
    let vars = nginx_vars(
        "POST",
        "/echo",
        "",
        &[("CONTENT_LENGTH", "10"), ("CONTENT_TYPE", "text/plain")],
    );
    let packet = uwsgi_packet(&vars, body);
    let (head, rest) = packet.split_at(packet.len() - body.len());
    let mut u = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    u.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    u.write_all(head).expect("head");
    for piece in rest.chunks(2) {
        std::thread::sleep(Duration::from_millis(500));
        u.write_all(piece).expect("a piece of the body");
    }
    let mut out = Vec::new();
    u.read_to_end(&mut out).expect("read");
    let resp = parse_response(&out, false).expect("a response");
    assert_eq!((resp.status, resp.text()), (200, "0123456789".to_owned()));
}

/// `worker-connections`: at the cap a worker stops accepting and says so; the
/// connections wait in the backlog and are served once others close.
#[test]
fn worker_connections_caps_what_one_worker_holds() {
    let dir = tempdir();
    let sock = dir.path().join("app.sock");
    let addr = Addr::Unix(sock.clone());
    let mut args = vec![
        "--socket".to_owned(),
        path_str(&sock).to_owned(),
        "--worker-connections".to_owned(),
        "10".to_owned(),
        "--socket-timeout".to_owned(),
        "60".to_owned(),
    ];
    args.extend(app_args("environ_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    let pid = rsgi.pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();
    let target = format!("unix:{}", path_str(&sock));
    let holder = hold_connections(&target, 30, "", None);
    rsgi.wait_log(
        "10 connections open (worker-connections)",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(300));
    // 30 offered, 10 taken (the rest of the difference is the runtime's own fds, made
    // lazily): without the cap all 30 would be open.
    let held = fds() - before;
    assert!(
        held < 25,
        "the worker holds {held} more fds with a cap of 10 of 30"
    );
    // Room again once they go.
    drop(holder);
    assert!(fresh(&addr, false) < Duration::from_secs(5));
}
