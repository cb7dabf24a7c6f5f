//! Process files and lifecycle: pidfiles, vacuum, daemonize, logto, socket files (stale,
//! in use, mode), and signals.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn pidfile_holds_the_master_pid() {
    let dir = tempdir();
    let pidfile = dir.path().join("app.pid");
    let s = serve_uwsgi("hello", &["--pidfile", path_str(&pidfile), "--master"]);
    wait_until(DEADLINE, "the pidfile", || read_pidfile(&pidfile).is_some());
    assert_eq!(read_pidfile(&pidfile), Some(s.rsgi.pid()));
}

#[test]
fn safe_pidfile_holds_the_pid() {
    let dir = tempdir();
    let pidfile = dir.path().join("safe.pid");
    let s = serve_uwsgi("hello", &["--safe-pidfile", path_str(&pidfile)]);
    wait_until(DEADLINE, "the safe pidfile", || {
        read_pidfile(&pidfile).is_some()
    });
    assert_eq!(read_pidfile(&pidfile), Some(s.rsgi.pid()));
}

#[test]
fn sigterm_exits_0_and_vacuum_removes_files() {
    let dir = tempdir();
    let pidfile = dir.path().join("v.pid");
    let mut s = serve_uwsgi(
        "hello",
        &[
            "--vacuum",
            "--master",
            "--processes",
            "2",
            "--pidfile",
            path_str(&pidfile),
        ],
    );
    let sock = match &s.addr {
        Addr::Unix(p) => p.clone(),
        Addr::Tcp(_) => unreachable!(),
    };
    assert!(sock.exists());
    wait_until(DEADLINE, "the pidfile", || pidfile.exists());
    // A served request shows the server is fully up (not just bound).
    let resp = uwsgi_request(&s.addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.body, b"Hello World");
    let status = s.rsgi.stop(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", s.rsgi.log());
    assert!(!sock.exists(), "vacuum leaves no socket file");
    assert!(!pidfile.exists(), "vacuum leaves no pidfile");
    // Workers are gone with the master.
    let pgid = s.rsgi.pid();
    wait_until(DEADLINE, "every worker to exit", || {
        killpg(pgid, None).is_err()
    });
}

#[test]
fn sigterm_finishes_the_request_in_flight() {
    let s = serve_http("environ_app", &[]);
    let marker = s.dir.path().join("slow.txt");
    let addr = s.addr.clone();
    let path = format!("/slow?s=1&marker={}", path_str(&marker));
    let client = std::thread::spawn(move || {
        let mut conn = HttpConn::connect(&addr).unwrap();
        conn.get(&path)
    });
    wait_until(DEADLINE, "the slow request to reach the app", || {
        fs::read_to_string(&marker).is_ok_and(|m| m.contains("started"))
    });
    let mut rsgi = s.rsgi;
    rsgi.signal(Signal::SIGTERM);
    let resp = client
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "slept");
    let status = rsgi.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", rsgi.log());
}

#[test]
fn sigint_stops_quickly() {
    let mut s = serve_uwsgi("hello", &["--master", "--processes", "2"]);
    s.rsgi.signal(Signal::SIGINT);
    let status = s.rsgi.wait_exit(Duration::from_secs(10));
    assert!(
        status.code().is_some() || status.signal_is_int(),
        "{status}"
    );
}

/// `ExitStatus` helpers.
trait SignalIsInt {
    fn signal_is_int(&self) -> bool;
}

impl SignalIsInt for std::process::ExitStatus {
    fn signal_is_int(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.signal() == Some(libc_sigint())
    }
}

fn libc_sigint() -> i32 {
    Signal::SIGINT as i32
}

#[test]
fn daemonize_returns_and_logs_to_the_file() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let log = dir.path().join("daemon.log");
    let pidfile = dir.path().join("daemon.pid");
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = environ_app\n\
             daemonize = {}\npidfile = {}\n",
            addr.arg(),
            path_str(&apps_dir()),
            path_str(&log),
            path_str(&pidfile)
        ),
    );
    let (status, out) = Rsgi::run(dir.path(), &["--ini", path_str(&ini)], DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "the command returns; output:\n{out}"
    );
    wait_until(DEADLINE, "the daemon's pidfile", || {
        read_pidfile(&pidfile).is_some()
    });
    let daemon = PidGuard(read_pidfile(&pidfile).unwrap());
    assert!(daemon.alive());
    wait_until(DEADLINE, "the daemon to accept", || accepts(&addr));
    assert_eq!(get(&addr, "/status?code=202").status, 202);
    assert_eq!(get(&addr, "/errors").text(), "ok");
    wait_until(DEADLINE, "log lines in the daemonize file", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.contains("/status") && text.contains("errors-line-from-app")
    });
}

#[test]
fn logto_writes_the_log_file() {
    let dir = tempdir();
    let logfile = dir.path().join("logto.log");
    let s = serve_http("environ_app", &["--logto", path_str(&logfile)]);
    assert_eq!(get(&s.addr, "/errors").text(), "ok");
    assert_eq!(get(&s.addr, "/raise").status, 500);
    wait_until(DEADLINE, "log lines in the logto file", || {
        let text = fs::read_to_string(&logfile).unwrap_or_default();
        text.contains("/errors")
            && text.contains("errors-line-from-app")
            && text.contains("Traceback")
    });
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = tempdir();
    let sock = dir.path().join("stale.sock");
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "a socket file with no listener");
    let addr = Addr::Unix(sock.clone());
    let mut args = vec!["--socket".to_owned(), addr.arg()];
    args.extend(app_args("hello"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    let resp = uwsgi_request(&addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.body, b"Hello World");
}

#[test]
fn socket_in_use_is_a_clear_error() {
    let first = serve_uwsgi("hello", &[]);
    let dir = tempdir();
    let mut args = vec!["--socket".to_owned(), first.addr.arg()];
    args.extend(app_args("hello"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, DEADLINE);
    assert!(
        !status.success(),
        "a second server on a live socket must fail; log:\n{log}"
    );
    assert!(status.code().is_some(), "exit, not a crash: {status}");
    assert!(
        log.contains(&first.addr.arg()),
        "the error names the socket:\n{log}"
    );
    // The first server is untouched.
    let resp = uwsgi_request(&first.addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.body, b"Hello World");
}

#[test]
fn tcp_port_in_use_is_a_clear_error() {
    let first = serve_http("hello", &[]);
    let dir = tempdir();
    let mut args = vec!["--http-socket".to_owned(), first.addr.arg()];
    args.extend(app_args("hello"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, DEADLINE);
    assert!(
        !status.success(),
        "a second server on a bound port must fail; log:\n{log}"
    );
    assert!(status.code().is_some(), "exit, not a crash: {status}");
    assert_eq!(get(&first.addr, "/").text(), "Hello World");
}

#[test]
fn chmod_socket_sets_the_mode() {
    let s = serve_uwsgi("hello", &["--chmod-socket=660"]);
    let Addr::Unix(sock) = &s.addr else {
        unreachable!()
    };
    let mode = fs::metadata(sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(format!("{mode:o}"), "660", "socket mode (octal)");
}

/// Non-blocking connects to `path` until one fails or `max` are open: the queued ones.
/// A full accept queue fails with EAGAIN, which nginx answers with a 502.
fn connects_until_refused(path: &std::path::Path, max: usize) -> Vec<std::os::fd::OwnedFd> {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(path).unwrap();
    let mut open = Vec::new();
    while open.len() < max {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => open.push(fd),
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!(
                "connect({}) after {} connections: {e}",
                path.display(),
                open.len()
            ),
        }
    }
    open
}

/// The listen backlog is 1024 unless `listen` says otherwise (uWSGI's default of 100 is
/// full after a burst: its "listen queue of socket ... full" and nginx's 502s). Counted
/// while the server is stopped (SIGSTOP), so nothing is accepted: connects succeed until
/// the kernel's queue holds the backlog, then fail with EAGAIN. Then it serves again.
#[test]
fn listen_backlog_is_1024_by_default_and_listen_sets_it() {
    for (extra, max, want) in [(&[][..], 400, 400), (&["--listen", "50"][..], 400, 50)] {
        let s = serve_uwsgi("hello", extra);
        let Addr::Unix(sock) = &s.addr else {
            unreachable!()
        };
        s.rsgi.signal(Signal::SIGSTOP);
        let open = connects_until_refused(sock, max);
        s.rsgi.signal(Signal::SIGCONT);
        assert_eq!(open.len(), want, "connections queued with {extra:?}");
        drop(open);
        let resp = uwsgi_request(&s.addr, &nginx_vars("GET", "/", "", &[]), b"");
        assert_eq!(resp.status, 200, "{extra:?}: {}", s.rsgi.log());
    }
}

#[test]
fn workers_answer_with_several_pids() {
    let s = serve_http("environ_app", &["--master", "--processes", "3"]);
    let master = s.rsgi.pid().as_raw().to_string();
    let mut pids = std::collections::BTreeSet::new();
    // Concurrent slow requests: a worker busy in the app (threads = 1) cannot take them
    // all, so more than one worker must answer.
    let end = std::time::Instant::now() + DEADLINE;
    while pids.len() < 2 {
        assert!(
            std::time::Instant::now() < end,
            "only these pids answered concurrent requests: {pids:?} (master {master})"
        );
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let addr = s.addr.clone();
                std::thread::spawn(move || get(&addr, "/pid?s=0.2").text())
            })
            .collect();
        pids.extend(clients.into_iter().map(|c| c.join().unwrap()));
    }
    assert!(
        !pids.contains(&master),
        "the master does not run the app: {pids:?}"
    );
}
