//! uWSGI's request logging (issue 21): `log-format` with its `%(...)` variables,
//! `disable-logging` with `log-4xx`/`log-5xx`, `req-logger`/`logger` to files and to
//! syslog (a unix datagram socket the test binds, named by `RSGI_SYSLOG_SOCKET`),
//! `log-maxsize` rotation and `log-x-forwarded-for`. Real rsgi, real Python apps.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Wait until the file at `path` contains `needle`; panic with its text after `DEADLINE`.
fn wait_file(path: &Path, needle: &str) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let text = read(path);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < end,
            "no {needle:?} in {} after {DEADLINE:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(module: &str, dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (Rsgi, Addr) {
    let addr = Addr::Tcp(free_addr());
    let mut args = vec!["--http-socket".to_owned(), addr.arg()];
    args.extend(app_args(module));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::spawn(dir, &args, envs).ready(&addr);
    (rsgi, addr)
}

#[test]
fn log_format_writes_uwsgis_variables() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let format = "ACCESS %(addr) %(user) \"%(method) %(uri) %(proto)\" %(status) %(rsize) \
                  host=%(host) ua=%(uagent) ref=%(referer) id=%(var.HTTP_X_REQUEST_ID) \
                  pid=%(pid) wid=%(wid) ms=%(msecs) us=%(micros) t=%(time) \
                  [%(ltime)] hs=%(hsize) h=%(headers) size=%(size) cl=%(cl) x=%(nope) 100%";
    let (rsgi, addr) = start(
        "hello",
        dir.path(),
        &["--logto", path_str(&log), "--log-format", format],
        &[],
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let resp = request(
        &addr,
        b"POST /some/path?q=1 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: e2e-agent\r\n\
          X-Request-Id: abc-123\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
    );
    assert_eq!(resp.status, 200);
    let text = wait_file(&log, "ACCESS ");
    let line = text.lines().find(|l| l.starts_with("ACCESS ")).unwrap();
    let pid = rsgi.pid().as_raw();
    let want_start = format!(
        "ACCESS 127.0.0.1 - \"POST /some/path?q=1 HTTP/1.1\" 200 11 host=example.org \
         ua=e2e-agent ref=- id=abc-123 pid={pid} wid=1 ms="
    );
    assert!(
        line.starts_with(&want_start),
        "{line}\nwanted: {want_start}"
    );
    assert!(line.ends_with(" cl=4 x=- 100%"), "{line}");
    let field = |name: &str| -> u64 {
        let rest = line.split(&format!(" {name}=")).nth(1).unwrap();
        rest.split([' ', ']']).next().unwrap().parse().unwrap()
    };
    assert!(field("us") >= field("ms") * 1000, "{line}");
    let t = field("t");
    assert!(t >= before && t <= before + 60, "{line}");
    let (hs, h, size) = (field("hs"), field("h"), field("size"));
    assert!(h >= 2, "Content-Type and Content-Length at least: {line}");
    assert!(hs > 30, "{line}");
    assert_eq!(size, hs + 11, "{line}");
    // [14/Nov/2023:22:13:20 +0000]
    let ltime = line.split('[').nth(1).unwrap().split(']').next().unwrap();
    assert_eq!(ltime.len(), 26, "{line}");
    // rsgi's default line is gone: only the template's.
    assert!(!text.contains("[pid: "), "{text}");
}

#[test]
fn disable_logging_keeps_4xx_and_5xx_with_log_4xx_and_log_5xx() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let (_rsgi, addr) = start(
        "status_app",
        dir.path(),
        &[
            "--logto",
            path_str(&log),
            "--disable-logging",
            "--log-4xx",
            "--log-5xx",
            "--log-format",
            "REQ %(uri) %(status)",
        ],
        &[],
    );
    assert_eq!(get(&addr, "/fine").status, 200);
    assert_eq!(get(&addr, "/status/404").status, 404);
    assert_eq!(get(&addr, "/status/503").status, 503);
    assert_eq!(get(&addr, "/status/201").status, 201);
    let text = wait_file(&log, "REQ /status/503 503");
    assert!(text.contains("REQ /status/404 404"), "{text}");
    // Wait for one more logged request after the 201, so its line had its chance.
    assert_eq!(get(&addr, "/status/410").status, 410);
    let text = wait_file(&log, "REQ /status/410 410");
    assert!(!text.contains("REQ /fine"), "{text}");
    assert!(!text.contains("REQ /status/201"), "{text}");
}

#[test]
fn req_logger_file_and_logger_syslog() {
    let dir = tempdir();
    let requests = dir.path().join("requests.log");
    let sock_path = dir.path().join("syslog.sock");
    let syslog = UnixDatagram::bind(&sock_path).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req_logger = format!("file:{}", path_str(&requests));
    let (_rsgi, addr) = start(
        "environ_app",
        dir.path(),
        &[
            "--req-logger",
            &req_logger,
            "--logger",
            "syslog:e2eapp,local0",
            "--log-format",
            "REQ %(method) %(uri) %(status)",
        ],
        &[("RSGI_SYSLOG_SOCKET", path_str(&sock_path))],
    );
    assert_eq!(get(&addr, "/head").status, 200);
    // A wsgi.errors line: an ordinary log line, so it goes to the logger (syslog).
    assert_eq!(get(&addr, "/errors").status, 200);
    wait_file(&requests, "REQ GET /errors 200");
    let text = read(&requests);
    assert!(text.contains("REQ GET /head 200\n"), "{text}");

    let mut messages = Vec::new();
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        let mut buf = [0u8; 65536];
        if let Ok(n) = syslog.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if messages.iter().any(|m| m.contains("errors-line-from-app")) {
            break;
        }
    }
    // <134>: local0 (16) * 8 + info (6); glibc's layout "Mmm dd hh:mm:ss IDENT: msg".
    let errors = messages
        .iter()
        .find(|m| m.contains("errors-line-from-app"))
        .unwrap_or_else(|| panic!("no errors-line-from-app on syslog: {messages:#?}"));
    assert!(errors.starts_with("<134>"), "{errors}");
    assert!(errors.contains(" e2eapp: "), "{errors}");
    assert!(
        !messages.iter().any(|m| m.contains("REQ ")),
        "request lines went to the logger too: {messages:#?}"
    );
}

#[test]
fn logger_file_alone_takes_request_lines_too() {
    let dir = tempdir();
    let all = dir.path().join("all.log");
    let logger = format!("file:{}", path_str(&all));
    let (rsgi, addr) = start("hello", dir.path(), &["--logger", &logger], &[]);
    assert_eq!(get(&addr, "/x").status, 200);
    let text = wait_file(&all, "\"GET /x HTTP/1.1\" 200");
    assert!(text.contains("[pid: "), "rsgi's default line: {text}");
    assert!(
        !rsgi.log().contains("\"GET /x HTTP/1.1\""),
        "the request line also went to stderr:\n{}",
        rsgi.log()
    );
}

#[test]
fn bad_logger_is_a_clear_config_error() {
    let dir = tempdir();
    let mut args = vec!["--http-socket".to_owned(), free_addr().to_string()];
    args.extend(app_args("hello"));
    args.extend(["--logger".to_owned(), "redislog:127.0.0.1:6379".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, DEADLINE);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(
            "logger = 'redislog:127.0.0.1:6379': rsgi has no 'redislog' logger: use file:PATH"
        ),
        "{log}"
    );
}

#[test]
fn log_maxsize_rotates_like_uwsgi() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let (_rsgi, addr) = start(
        "hello",
        dir.path(),
        &[
            "--master",
            "--processes",
            "2",
            "--logto",
            path_str(&log),
            "--log-maxsize",
            "2000",
        ],
        &[],
    );
    let rotated = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("app.log."))
                    .is_some_and(|ts| ts.parse::<u64>().is_ok())
            })
            .collect()
    };
    let end = Instant::now() + DEADLINE;
    let mut n = 0;
    while rotated(dir.path()).is_empty() {
        assert!(Instant::now() < end, "no app.log.<time> after {n} requests");
        assert_eq!(get(&addr, &format!("/req{n}")).status, 200);
        n += 1;
    }
    let old = rotated(dir.path()).remove(0);
    let old_text = read(&old);
    assert!(old_text.contains("triggering rotation to"), "{old_text}");
    assert!(old.metadata().unwrap().len() > 2000);
    // New requests land in a new app.log (from every worker, after they notice).
    for i in 0..20 {
        assert_eq!(get(&addr, &format!("/after{i}")).status, 200);
    }
    let text = wait_file(&log, "/after19");
    assert!(!text.contains("GET /req0 "), "{text}");
}

#[test]
fn log_x_forwarded_for_replaces_the_address() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let (_rsgi, addr) = start(
        "hello",
        dir.path(),
        &["--logto", path_str(&log), "--log-x-forwarded-for"],
        &[],
    );
    let resp = request(
        &addr,
        b"GET /xff HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(get(&addr, "/plain").status, 200);
    let text = wait_file(&log, "GET /plain ");
    assert!(
        text.contains("203.0.113.9 - \"GET /xff HTTP/1.1\" 200"),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1 - \"GET /plain HTTP/1.1\" 200"),
        "{text}"
    );
}

#[test]
fn logdate_format_and_ftime_with_log_format_strftime() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let (_rsgi, addr) = start(
        "hello",
        dir.path(),
        &[
            "--logto",
            path_str(&log),
            "--logdate=%Y-%m-%dT%H:%M:%S",
            "--log-format-strftime",
            "--log-format",
            "[%(ftime)] REQ %(uri)",
        ],
        &[],
    );
    assert_eq!(get(&addr, "/dated").status, 200);
    let text = wait_file(&log, "REQ /dated");
    let is_stamp = |s: &str| {
        s.len() == 19
            && s.as_bytes()[4] == b'-'
            && s.as_bytes()[10] == b'T'
            && s.as_bytes()[13] == b':'
            && s[..4].parse::<u32>().is_ok_and(|y| y >= 2024)
    };
    // The request line: %(ftime) in the logdate format, no date prefix.
    let req = text.lines().find(|l| l.contains("REQ /dated")).unwrap();
    let stamp = req.strip_prefix('[').unwrap().split(']').next().unwrap();
    assert!(is_stamp(stamp), "{req}");
    assert!(req.ends_with("] REQ /dated"), "{req}");
    // Other lines: prefixed with the date in that format and " - ".
    let other = text
        .lines()
        .find(|l| !l.contains("REQ "))
        .unwrap_or_else(|| panic!("no other line:\n{text}"));
    let (prefix, _) = other.split_once(" - ").unwrap();
    assert!(is_stamp(prefix), "{other}");
}

#[test]
fn log_slow_keeps_slow_requests_with_disable_logging() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let (_rsgi, addr) = start(
        "environ_app",
        dir.path(),
        &[
            "--logto",
            path_str(&log),
            "--disable-logging",
            "--log-slow",
            "300",
            "--log-format",
            "REQ %(uri) %(msecs)",
        ],
        &[],
    );
    assert_eq!(get(&addr, "/head").status, 200);
    assert_eq!(get(&addr, "/slow?s=0.5").status, 200);
    let text = wait_file(&log, "REQ /slow?s=0.5 ");
    assert!(!text.contains("REQ /head"), "{text}");
    let ms: u64 = text
        .lines()
        .find(|l| l.starts_with("REQ /slow"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms >= 300, "{text}");
}
