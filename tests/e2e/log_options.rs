//! The logging options of the public corpus that rsgi lacked (issue 21 follow-up):
//! `log-encoder`/`log-req-encoder` (every line JSON-encoded, read back with serde_json),
//! `logto2` (opened after the privileges drop, so the `uid` user owns the file; as
//! root), `touch-logrotate` and `log-sendfile`. Real rsgi, real Python apps.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(30);

/// An app that prints to stdout and stderr on every request; `/file` answers with
/// `wsgi.file_wrapper`.
const APP: &str = r#"
import sys

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](open("static/a.txt", "rb"))
    print('app says "hi"\tto ' + path)
    sys.stderr.write("stderr line for " + path + "\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// Wait until the file at `path` contains `needle`; return its text.
fn wait_file(path: &Path, needle: &str) -> String {
    let mut text = String::new();
    wait_until(
        DEADLINE,
        &format!("{needle:?} in {}", path.display()),
        || {
            text = read(path);
            text.contains(needle)
        },
    );
    text
}

/// Serve `APP` from `dir` over HTTP with `extra` ini lines (in `dir`, its chdir).
fn serve(dir: &Path, extra: &str) -> (Rsgi, Addr) {
    write_file(dir, "app.py", APP);
    fs::create_dir_all(dir.join("static")).unwrap();
    write_file(&dir.join("static"), "a.txt", "static file\n");
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nwsgi-file = app.py\nmaster = true\n\
         processes = 1\n{extra}\n",
        addr.arg(),
        path_str(dir)
    );
    let rsgi = Rsgi::start_ini(dir, &ini).ready(&addr);
    (rsgi, addr)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Parse every line of `text` as JSON (each must be one object).
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nin:\n{text}"))
        })
        .collect()
}

/// The corpus's `log-encoder = json {...}` + `log-encoder = nl`: every line of the log
/// (rsgi's own, the app's `print()` and stderr, request lines) is one JSON object, with
/// uWSGI's bytes.
#[test]
fn log_encoder_json_encodes_every_line() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let started = now();
    let (_rsgi, addr) = serve(
        dir.path(),
        "logto = app.log\n\
         log-encoder = json {\"time\":${unix}, \"source\":\"uwsgi\", \"message\":\"${msg}\"}\n\
         log-encoder = nl\n",
    );
    assert_eq!(get(&addr, "/hello").status, 200);
    wait_file(&log, "GET /hello HTTP/1.1");
    let text = wait_file(&log, "stderr line for /hello");
    let lines = json_lines(&text);
    assert!(lines.len() >= 4, "{text}");
    for l in &lines {
        let time = l["time"].as_u64().unwrap_or_else(|| panic!("{l}"));
        assert!(time >= started && time <= now() + 1, "{l}");
        assert_eq!(l["source"], "uwsgi", "{l}");
        assert!(l["message"].is_string(), "{l}");
    }
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"app says \"hi\"\tto /hello"),
        "{messages:?}"
    );
    assert!(messages.contains(&"stderr line for /hello"), "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"GET /hello HTTP/1.1\" 200")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("listening on")),
        "rsgi's own lines too: {messages:?}"
    );
    // uWSGI's bytes: its escapes, no space added, one newline from `nl`.
    let print_line = text
        .lines()
        .find(|l| l.contains("app says"))
        .unwrap()
        .to_owned();
    let time = json_lines(&print_line)[0]["time"].as_u64().unwrap();
    assert_eq!(
        format!("{print_line}\n"),
        format!(
            "{{\"time\":{time}, \"source\":\"uwsgi\", \"message\":\"app says \\\"hi\\\"\\tto /hello\"}}\n"
        )
    );
}

/// The corpus's `log-req-encoder = format {..., ${msg}}` with a `log-format` of JSON
/// fields and a `req-logger`: each request line is a JSON object; `log-encoder`
/// with a logger id (`json:default`) is used for no line, as in uWSGI without a logger
/// of that name, and says so.
#[test]
fn log_req_encoder_wraps_request_lines_for_req_logger() {
    let dir = tempdir();
    let (rsgi, addr) = serve(
        dir.path(),
        "logto = app.log\n\
         req-logger = file:req.log\n\
         log-format = \"uri\":\"%(uri)\", \"status\":%(status), \"method\":\"%(method)\"\n\
         log-req-encoder = format {\"time\":${unix}, \"source\":\"uwsgi-req\", ${msg}}\n\
         log-req-encoder = nl\n\
         log-encoder = json:default {\"never\":\"${msg}\"}\n",
    );
    for path in ["/one", "/two?x=1"] {
        assert_eq!(get(&addr, path).status, 200);
    }
    let req = wait_file(&dir.path().join("req.log"), "/two?x=1");
    let lines = json_lines(&req);
    assert_eq!(lines.len(), 2, "{req}");
    assert_eq!(lines[0]["uri"], "/one");
    assert_eq!(lines[1]["uri"], "/two?x=1");
    for l in &lines {
        assert_eq!(l["source"], "uwsgi-req", "{l}");
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["method"], "GET", "{l}");
        assert!(l["time"].as_u64().is_some_and(|t| t + 60 > now()), "{l}");
    }
    // The other lines: untouched (the named encoder is never used).
    let app = wait_file(&dir.path().join("app.log"), "stderr line for /two");
    assert!(app.contains("app says \"hi\"\tto /one\n"), "{app}");
    assert!(!app.contains("never"), "{app}");
    assert!(
        rsgi.log()
            .contains("':default' makes this encoder only for the logger named 'default'"),
        "{}",
        rsgi.log()
    );
}

/// A config asking for an encoder rsgi does not have is refused at once (exit 78, the
/// file and line), saying why.
#[test]
fn unsupported_log_encoders_are_refused() {
    let dir = tempdir();
    for (value, want) in [
        ("gzip", "the gzip encoder is not supported by rsgi"),
        ("msgpack", "the msgpack encoder (a uWSGI plugin)"),
    ] {
        let ini = write_file(
            dir.path(),
            "app.ini",
            format!(
                "[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = app.py\nlog-encoder = {value}\n"
            ),
        );
        let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&ini)], DEADLINE);
        assert_eq!(status.code(), Some(78), "{log}");
        assert!(log.contains("app.ini:4"), "{log}");
        assert!(log.contains(want), "{log}");
    }
}

/// `logto2` as root with `uid`/`gid`: the file is created after the privileges drop,
/// so the unprivileged user owns it, and the server's lines from then on are in it.
#[test]
fn logto2_is_created_by_the_uid_user() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let user = test_user("uid/gid switch users");
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    nix::unistd::chown(&logs, Some(user.uid), Some(user.gid)).unwrap();
    let log = logs.join("user.log");
    let (rsgi, addr) = serve(
        dir.path(),
        "uid = rsgi-tyrant\ngid = rsgi-tyrant\nlogto2 = logs/user.log\n",
    );
    assert_eq!(get(&addr, "/as-user").status, 200);
    let text = wait_file(&log, "GET /as-user");
    assert!(text.contains("listening on"), "{text}");
    assert!(text.contains("app says \"hi\"\tto /as-user"), "{text}");
    let meta = fs::metadata(&log).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (user.uid.as_raw(), user.gid.as_raw()),
        "owner of {}",
        log.display()
    );
    // The master runs as that user too.
    let status = fs::read_to_string(format!("/proc/{}/status", rsgi.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == user.uid.to_string()),
        "{uid_line}"
    );
    // The lines before the switch went to stderr; none of the file's lines did.
    assert!(!rsgi.log().contains("GET /as-user"), "{}", rsgi.log());

    // A directory the user cannot write: the start fails, naming the file.
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write_file(dir.path(), "app.py", APP);
    let (status, out) = Rsgi::run(
        dir.path(),
        &[
            "--http-socket",
            &free_addr().to_string(),
            "--wsgi-file",
            "app.py",
            "--uid",
            "rsgi-tyrant",
            "--logto2",
            "denied.log",
        ],
        DEADLINE,
    );
    assert_eq!(status.code(), Some(71), "{out}");
    assert!(out.contains("cannot open log file"), "{out}");
    assert!(out.contains("denied.log"), "{out}");
}

/// `touch-logrotate`: a touch renames the log to `log-backupname` and a new one takes
/// the lines of the master and of every worker.
#[test]
fn touch_logrotate_rotates_the_log() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let old = dir.path().join("app.log.old");
    let (mut rsgi, addr) = serve(
        dir.path(),
        "processes = 2\nlogto = app.log\nlog-backupname = app.log.old\n\
         touch-logrotate = rotate.trigger\n",
    );
    wait_file(&log, "2 worker(s) ready");
    assert_eq!(get(&addr, "/before").status, 200);
    wait_file(&log, "GET /before");
    touch_file(&dir.path().join("rotate.trigger"));
    let rotated = wait_file(&old, "triggering rotation to");
    assert!(rotated.contains("GET /before"), "{rotated}");
    wait_file(&log, "log rotated to");
    // Both workers write to the new file: a few requests, each must land there.
    for i in 0..6 {
        let path = format!("/after-{i}");
        wait_until(DEADLINE, &format!("{path} in the new log"), || {
            assert_eq!(get(&addr, &path).status, 200);
            read(&log).contains(&format!("GET {path} "))
        });
    }
    let new = read(&log);
    assert!(!new.contains("GET /before"), "{new}");
    assert!(!read(&old).contains("GET /after-5 "), "{}", read(&old));
    assert!(
        read(&old).contains("touch-logrotate rotate.trigger changed: rotating the log"),
        "{}",
        read(&old)
    );
    rsgi.stop(DEADLINE);
}

/// `log-sendfile` with `disable-logging`: requests answered with a file (static-map,
/// `wsgi.file_wrapper`) are still logged, the others not.
#[test]
fn log_sendfile_logs_file_responses_despite_disable_logging() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let static_dir = dir.path().join("static");
    let (_rsgi, addr) = serve(
        dir.path(),
        &format!(
            "logto = app.log\ndisable-logging = true\nlog-sendfile = True\n\
             static-map = /static={}\nlog-format = REQ %(uri) %(status)\n",
            path_str(&static_dir)
        ),
    );
    let r = get(&addr, "/static/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "static file\n"));
    assert_eq!(get(&addr, "/plain").status, 200);
    let r = get(&addr, "/file");
    assert_eq!((r.status, r.text().as_str()), (200, "static file\n"));
    let text = wait_file(&log, "REQ /file 200");
    assert!(text.contains("REQ /static/a.txt 200"), "{text}");
    // /plain ran before /file in the same worker: its line had its chance.
    assert!(text.contains("app says \"hi\"\tto /plain"), "{text}");
    assert!(!text.contains("REQ /plain"), "{text}");
}
