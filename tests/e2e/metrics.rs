//! Observability (issue 6) end to end: rsgid's Prometheus endpoint (its own port and the
//! control socket), checked by the real `promtool`; the counters against the requests a
//! test sent; crash respawns and reload outcomes; uWSGI's stats JSON read by the real
//! `uwsgitop` (a single-process vassal, a master over `stats-http`, rsgid's emperor
//! view); `rsgictl top --once`; and the switch that turns counting off for benchmarks.
//!
//! The vassals serve `tests/apps/status_app.py` (`/status/404` answers 404, `/raise`
//! raises). Readiness is waited for with the metrics themselves (`rsgi_vassal_up`), not
//! with a request, so that the counts hold only what a test sent.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rsgi_e2e::*;
use serde_json::Value;

/// Generous bound for every wait on a busy machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Prometheus' text format, as rsgid must announce it.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Absolute path of `tests/apps/<name>.py`.
fn app(name: &str) -> String {
    path_str(&apps_dir().join(format!("{name}.py"))).to_owned()
}

/// A vassal serving `status_app.py` on its default socket, with `extra` ini lines.
fn status_ini(extra: &str) -> String {
    format!("[uwsgi]\nwsgi-file = {}\n{extra}", app("status_app"))
}

/// rsgid with its metrics on a free port of 127.0.0.1 (the fixture's `--metrics off`
/// is overridden: the last flag wins).
fn emperor(extra: &[&str]) -> (Emperor, Addr) {
    let addr = free_addr();
    let arg = addr.to_string();
    let mut args = vec!["--metrics", arg.as_str()];
    args.extend_from_slice(extra);
    (Emperor::start(&args), Addr::Tcp(addr))
}

/// `GET /metrics` at `addr`: checks the status and the content type, returns the text.
fn scrape(addr: &Addr) -> String {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "GET /metrics on {addr}: {}", r.text());
    assert_eq!(r.header("content-type"), Some(TEXT_FORMAT), "on {addr}");
    r.text()
}

/// The value of the series `series` (name and labels exactly as written, e.g.
/// `rsgi_requests_total{vassal="app",class="2xx"}`), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrape until every `(series, value)` holds; returns that scrape. Panics with the last
/// scrape after [`DEADLINE`].
fn wait_values(addr: &Addr, want: &[(&str, f64)]) -> String {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let last = scrape(addr);
        if want.iter().all(|(s, v)| value(&last, s) == Some(*v)) {
            return last;
        }
        assert!(
            std::time::Instant::now() < end,
            "waited {DEADLINE:?} for {want:?}; last scrape:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn up(name: &str) -> String {
    format!("rsgi_vassal_up{{vassal=\"{name}\"}}")
}

fn requests(name: &str, class: &str) -> String {
    format!("rsgi_requests_total{{vassal=\"{name}\",class=\"{class}\"}}")
}

fn reloads(name: &str, result: &str) -> String {
    format!("rsgi_vassal_reloads_total{{vassal=\"{name}\",result=\"{result}\"}}")
}

fn respawns(name: &str, cause: &str) -> String {
    format!("rsgi_vassal_worker_respawns_total{{vassal=\"{name}\",cause=\"{cause}\"}}")
}

/// `n` uwsgi requests for `path` on vassal `name`, each answered with `status`.
fn send(e: &Emperor, name: &str, path: &str, n: usize, status: u16) {
    let addr = e.socket(name);
    for _ in 0..n {
        let r = uwsgi_get(&addr, path).unwrap_or_else(|err| panic!("GET {path}: {err}"));
        assert_eq!(r.status, status, "GET {path}: {}", r.text());
    }
}

/// A control-socket call, answered with JSON.
fn control(e: &Emperor, method: &str, path: &str) -> Value {
    let ctl = Addr::Unix(e.control_socket());
    let r = match method {
        "GET" => get(&ctl, path),
        _ => post(&ctl, path, "application/json", b""),
    };
    r.json()
}

/// Read a stats socket (uWSGI's transport: connect, read until EOF).
fn read_stats(path: &Path) -> Value {
    let mut doc = None;
    wait_until(DEADLINE, "the stats socket to answer", || {
        let Ok(mut s) = UnixStream::connect(path) else {
            return false;
        };
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buf = Vec::new();
        if s.read_to_end(&mut buf).is_err() {
            return false;
        }
        doc = serde_json::from_slice(&buf).ok();
        doc.is_some()
    });
    doc.unwrap()
}

/// Every number in a JSON document is a non-negative integer (uWSGI's rule).
fn assert_integers_only(v: &Value, path: &str) {
    match v {
        Value::Number(n) => assert!(n.is_u64(), "{path} = {n} is not a u64"),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_integers_only(v, &format!("{path}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, v)| assert_integers_only(v, &format!("{path}.{k}"))),
        Value::Null | Value::Bool(_) => panic!("{v} at {path}"),
        Value::String(_) => {}
    }
}

// ---------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------

/// 7 × 200 and 3 × 404 are counted as exactly that, by status class, on rsgid's port and
/// on the control socket alike; the histogram counts the same 10 requests.
#[test]
fn counters_equal_the_requests_sent_by_class() {
    let (e, metrics) = emperor(&[]);
    e.write_vassal("app", &status_ini(""));
    wait_values(&metrics, &[(&up("app"), 1.0)]);
    send(&e, "app", "/", 7, 200);
    send(&e, "app", "/status/404", 3, 404);
    let text = wait_values(
        &metrics,
        &[
            (&requests("app", "2xx"), 7.0),
            (&requests("app", "4xx"), 3.0),
            ("rsgi_request_duration_seconds_count{vassal=\"app\"}", 10.0),
        ],
    );
    for class in ["1xx", "3xx", "5xx"] {
        assert_eq!(value(&text, &requests("app", class)), Some(0.0), "{class}");
    }
    assert_eq!(
        value(
            &text,
            "rsgi_request_duration_seconds_bucket{vassal=\"app\",le=\"+Inf\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &text,
            "rsgi_request_duration_seconds_bucket{vassal=\"app\",le=\"60\"}"
        ),
        Some(10.0),
        "nothing took a minute"
    );
    let sum = value(&text, "rsgi_request_duration_seconds_sum{vassal=\"app\"}").unwrap();
    assert!(sum > 0.0 && sum < 10.0, "sum {sum}");
    assert_eq!(
        value(&text, "rsgi_request_exceptions_total{vassal=\"app\"}"),
        Some(0.0)
    );
    assert!(value(&text, "rsgi_sent_bytes_total{vassal=\"app\"}").unwrap() > 0.0);
    assert_eq!(
        value(&text, "rsgi_vassal_state{vassal=\"app\",state=\"ready\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "rsgi_vassal_workers{vassal=\"app\",status=\"idle\"}"),
        Some(1.0)
    );
    let rss = value(&text, "rsgi_vassal_resident_memory_bytes{vassal=\"app\"}").unwrap();
    assert!(rss > 1e6, "an embedded CPython takes more than 1 MB: {rss}");
    let start = value(
        &text,
        "rsgi_vassal_generation_start_timestamp_seconds{vassal=\"app\"}",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start > now - 600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.contains("\nrsgi_build_info{version=\""), "{text}");

    // The control socket serves the same numbers.
    let via_control = scrape(&Addr::Unix(e.control_socket()));
    assert_eq!(value(&via_control, &requests("app", "2xx")), Some(7.0));
    assert_eq!(value(&via_control, &requests("app", "4xx")), Some(3.0));
    // Anything but /metrics on the metrics port is a 404.
    assert_eq!(get(&metrics, "/nope").status, 404);
}

/// `kill -9` of a worker of a master vassal counts one crash respawn; a SIGHUP to its
/// master (a reload inside the vassal, which passes the same counters memfd to rsgid
/// again) counts one reload and two reload respawns, and nothing is counted twice.
#[test]
fn a_killed_worker_counts_a_crash_and_a_hup_a_reload() {
    let (e, metrics) = emperor(&[]);
    e.write_vassal("app", &status_ini("master = true\nprocesses = 2\n"));
    wait_values(
        &metrics,
        &[
            (&up("app"), 1.0),
            ("rsgi_vassal_workers{vassal=\"app\",status=\"idle\"}", 2.0),
        ],
    );
    send(&e, "app", "/", 5, 200);
    wait_values(&metrics, &[(&requests("app", "2xx"), 5.0)]);
    let status = control(&e, "GET", "/vassals/app");
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{status:#}");
    let victim = workers[0]["pid"].as_i64().unwrap();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let text = wait_values(
        &metrics,
        &[
            (&respawns("app", "crash"), 1.0),
            ("rsgi_vassal_workers{vassal=\"app\",status=\"idle\"}", 2.0),
        ],
    );
    assert_eq!(
        value(&text, "rsgi_vassal_restarts_total{vassal=\"app\"}"),
        Some(0.0)
    );
    assert_eq!(value(&text, &up("app")), Some(1.0));
    assert_eq!(value(&text, &requests("app", "2xx")), Some(5.0));

    // The vassal reloads itself: its master re-executes and hands rsgid the same memfd.
    let master = status["pid"].as_i64().unwrap();
    kill(Pid::from_raw(master as i32), Signal::SIGHUP).unwrap();
    let text = wait_values(
        &metrics,
        &[
            (&reloads("app", "ok"), 1.0),
            (&respawns("app", "reload"), 2.0),
            ("rsgi_vassal_workers{vassal=\"app\",status=\"idle\"}", 2.0),
        ],
    );
    assert_eq!(value(&text, &respawns("app", "crash")), Some(1.0), "{text}");
    assert_eq!(value(&text, &requests("app", "2xx")), Some(5.0), "{text}");
    assert_eq!(value(&text, &reloads("app", "failed")), Some(0.0));
    send(&e, "app", "/", 2, 200);
    wait_values(&metrics, &[(&requests("app", "2xx"), 7.0)]);
}

/// `rsgi_vassal_listen_queue` counts the connections waiting on a vassal's unix socket
/// (nginx's `uwsgi_pass unix:`), which rsgid holds: none while the worker accepts, three
/// while it is stopped and three clients connect, none again once it runs.
#[test]
fn listen_queue_of_a_unix_socket_shows_waiting_connections() {
    let (e, metrics) = emperor(&[]);
    e.write_vassal("app", &status_ini("master = true\nprocesses = 1\n"));
    let queue = "rsgi_vassal_listen_queue{vassal=\"app\"}";
    wait_values(
        &metrics,
        &[
            (&up("app"), 1.0),
            ("rsgi_vassal_workers{vassal=\"app\",status=\"idle\"}", 1.0),
            (queue, 0.0),
        ],
    );
    let status = control(&e, "GET", "/vassals/app");
    let worker = Pid::from_raw(status["workers"][0]["pid"].as_i64().unwrap() as i32);
    kill(worker, Signal::SIGSTOP).unwrap();
    let Addr::Unix(sock) = e.socket("app") else {
        unreachable!()
    };
    let waiting: Vec<_> = (0..3)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
        .collect();
    let seen = std::panic::catch_unwind(|| wait_values(&metrics, &[(queue, 3.0)]));
    kill(worker, Signal::SIGCONT).unwrap();
    if let Err(panic) = seen {
        std::panic::resume_unwind(panic);
    }
    drop(waiting);
    wait_values(&metrics, &[(queue, 0.0)]);
    send(&e, "app", "/", 1, 200);
}

/// rsgid's reloads: one that works counts `result="ok"`, one whose new generation
/// cannot import the app counts `result="failed"`; the request totals survive both
/// generation changes (the old generation's counts stay when it exits).
#[test]
fn reloads_count_by_result_and_totals_survive_generations() {
    let (e, metrics) = emperor(&[]);
    let app_py = e.dir().join("app.py");
    std::fs::copy(apps_dir().join("status_app.py"), &app_py).unwrap();
    e.write_vassal(
        "app",
        &format!("[uwsgi]\nwsgi-file = {}\n", path_str(&app_py)),
    );
    wait_values(&metrics, &[(&up("app"), 1.0)]);
    send(&e, "app", "/", 3, 200);
    send(&e, "app", "/status/503", 1, 503);

    let result = control(&e, "POST", "/vassals/app/reload?wait=1");
    assert_eq!(result["ok"], true, "{result:#}");
    wait_until(DEADLINE, "the old generation to exit", || {
        e.vassal_pids("app").len() == 1
    });
    let text = wait_values(
        &metrics,
        &[
            (&reloads("app", "ok"), 1.0),
            ("rsgi_vassal_generation{vassal=\"app\"}", 2.0),
        ],
    );
    assert_eq!(value(&text, &requests("app", "2xx")), Some(3.0), "{text}");
    assert_eq!(value(&text, &requests("app", "5xx")), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "rsgi_request_duration_seconds_count{vassal=\"app\"}"),
        Some(4.0)
    );
    send(&e, "app", "/", 2, 200);
    wait_values(&metrics, &[(&requests("app", "2xx"), 5.0)]);

    // The next generation cannot import the app: the reload fails, generation 2 serves.
    std::fs::write(&app_py, "raise ImportError('broken on purpose')\n").unwrap();
    let result = control(&e, "POST", "/vassals/app/reload?wait=1");
    assert_eq!(result["ok"], false, "{result:#}");
    let text = wait_values(
        &metrics,
        &[
            (&reloads("app", "failed"), 1.0),
            (&reloads("app", "ok"), 1.0),
            (&up("app"), 1.0),
        ],
    );
    assert_eq!(value(&text, &requests("app", "2xx")), Some(5.0), "{text}");
    assert_eq!(
        value(&text, "rsgi_vassal_generation{vassal=\"app\"}"),
        Some(2.0)
    );
}

// ---------------------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------------------

/// `promtool check metrics` reports nothing on a real scrape: a single-process vassal
/// with 200s, 404s and an exception, a master with two workers, and a vassal that
/// cannot start (so that several states show).
#[test]
fn promtool_check_metrics_reports_nothing() {
    promtool(); // missing promtool fails before any work
    let (e, metrics) = emperor(&["--backoff-base", "0.1", "--max-attempts", "2"]);
    e.write_vassal("single", &status_ini(""));
    e.write_vassal("multi", &status_ini("master = true\nprocesses = 2\n"));
    e.write_vassal(
        "broken",
        &format!("[uwsgi]\nwsgi-file = {}\n", app("import_error")),
    );
    wait_values(
        &metrics,
        &[
            (&up("single"), 1.0),
            (&up("multi"), 1.0),
            ("rsgi_vassal_state{vassal=\"broken\",state=\"failed\"}", 1.0),
        ],
    );
    send(&e, "single", "/", 3, 200);
    send(&e, "single", "/status/404", 2, 404);
    send(&e, "single", "/raise", 1, 500);
    send(&e, "multi", "/", 4, 200);
    let text = wait_values(
        &metrics,
        &[
            (&requests("single", "5xx"), 1.0),
            ("rsgi_request_exceptions_total{vassal=\"single\"}", 1.0),
            (&requests("multi", "2xx"), 4.0),
        ],
    );
    assert_promtool_accepts_metrics(&text);
}

// ---------------------------------------------------------------------------------------
// uWSGI stats and uwsgitop
// ---------------------------------------------------------------------------------------

/// A single-process `rsgi` (no master) serves the stats JSON on a unix socket: uWSGI's
/// keys, integers only, its one worker with its requests; uwsgitop draws it.
#[test]
fn uwsgitop_reads_a_single_process_server() {
    let dir = tempdir();
    let stats = dir.path().join("stats.sock");
    let s = serve_http("status_app", &["--stats", path_str(&stats)]);
    for _ in 0..3 {
        assert_eq!(get(&s.addr, "/").status, 200);
    }
    let doc = read_stats(&stats);
    assert_integers_only(&doc, "$");
    let pid = i64::from(s.rsgi.pid().as_raw());
    assert_eq!(doc["pid"], pid);
    let workers = doc["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{doc:#}");
    assert_eq!(workers[0]["pid"], pid);
    assert_eq!(workers[0]["requests"], 3);
    assert_eq!(doc["sockets"][0]["proto"], "http");
    let words = ["WID", "PID", "idle"]
        .iter()
        .map(|w| (*w).to_owned())
        .chain([pid.to_string()])
        .collect::<Vec<_>>();
    let screen = uwsgitop(path_str(&stats), "WID", &words);
    assert!(screen.contains(&format!("masterpid: {pid}")), "{screen}");
}

/// `stats-http` without a master: every answer arrives whole (the server reads the
/// request before it answers and closes, as uWSGI does; closing with the request
/// unread would reset the connection under the client).
#[test]
fn single_process_stats_http_answers_every_client() {
    let stats = free_addr();
    let stats_arg = stats.to_string();
    let _s = serve_http("status_app", &["--stats", &stats_arg, "--stats-http"]);
    // The stats socket is bound once the app imported (the HTTP socket before).
    wait_until(DEADLINE, "the stats socket to accept", || {
        std::net::TcpStream::connect(stats).is_ok()
    });
    for _ in 0..20 {
        let r = http_get(&Addr::Tcp(stats), "/").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["workers"].as_array().unwrap().len(), 1);
    }
}

/// A master with two workers serves the stats over TCP with `stats-http`: uWSGI's
/// HTTP header, then the document; uwsgitop reads it from `http://...`.
#[test]
fn uwsgitop_reads_a_master_over_stats_http() {
    let stats = free_addr();
    let stats_arg = stats.to_string();
    let s = serve_http(
        "status_app",
        &[
            "--master",
            "--processes",
            "2",
            "--stats",
            &stats_arg,
            "--stats-http",
        ],
    );
    let mut doc = Value::Null;
    wait_until(DEADLINE, "two workers in the stats", || {
        let Ok(r) = http_get(&Addr::Tcp(stats), "/") else {
            return false;
        };
        assert_eq!(r.header("content-type"), Some("application/json"));
        doc = r.json();
        doc["workers"]
            .as_array()
            .is_some_and(|w| w.iter().filter(|w| w["pid"].as_u64() > Some(0)).count() == 2)
    });
    assert_integers_only(&doc, "$");
    let mut words = vec!["WID".to_owned(), "PID".to_owned()];
    words.extend(
        doc["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].to_string()),
    );
    let screen = uwsgitop(&format!("http://{stats}"), "WID", &words);
    let master = s.rsgi.pid().to_string();
    assert!(screen.contains(&format!("masterpid: {master}")), "{screen}");
}

/// rsgid's `--stats` serves uWSGI's emperor form: `vassals` with each file name and
/// pid, integers only; uwsgitop draws its vassal view.
#[test]
fn uwsgitop_reads_the_emperor_view() {
    let dir = tempdir();
    let stats = dir.path().join("emperor-stats.sock");
    let (e, metrics) = emperor(&["--stats", path_str(&stats)]);
    e.write_vassal("alpha", &status_ini(""));
    e.write_vassal("beta", &status_ini("master = true\nprocesses = 2\n"));
    wait_values(&metrics, &[(&up("alpha"), 1.0), (&up("beta"), 1.0)]);
    let doc = read_stats(&stats);
    assert_integers_only(&doc, "$");
    assert_eq!(doc["pid"], i64::from(e.pid().as_raw()));
    assert_eq!(
        doc["emperor"][0],
        path_str(&e.vassals_dir().canonicalize().unwrap())
    );
    assert_eq!(doc["emperor_tyrant"], 0);
    assert_eq!(doc["blacklist"], serde_json::json!([]));
    let vassals = doc["vassals"].as_array().unwrap();
    let ids: Vec<&str> = vassals.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alpha.ini", "beta.ini"]);
    for v in vassals {
        for key in [
            "pid",
            "born",
            "last_mod",
            "loyal",
            "ready",
            "accepting",
            "respawns",
            "uid",
            "gid",
        ] {
            assert!(v[key].is_u64(), "{key} in {v}");
        }
        assert_eq!(v["ready"], 1, "{v}");
        assert!(v["pid"].as_u64().unwrap() > 0, "{v}");
    }
    let mut words = vec![
        "VASSAL".to_owned(),
        "alpha.ini".to_owned(),
        "beta.ini".to_owned(),
    ];
    words.extend(vassals.iter().map(|v| v["pid"].to_string()));
    let screen = uwsgitop(path_str(&stats), "VASSAL", &words);
    assert!(screen.contains("emperor:"), "{screen}");
}

/// A second rsgid given the stats socket of a running one does not take it over: it
/// logs why it serves no stats and goes on; the socket still answers with the first
/// one's document, also after the second has exited.
#[test]
fn a_second_rsgid_leaves_a_live_stats_socket_alone() {
    let dir = tempdir();
    let stats = dir.path().join("emperor-stats.sock");
    let (first, _m1) = emperor(&["--stats", path_str(&stats)]);
    let first_pid = i64::from(first.pid().as_raw());
    assert_eq!(read_stats(&stats)["pid"], first_pid);
    let (mut second, metrics) = emperor(&["--stats", path_str(&stats)]);
    second.wait_log("cannot serve the emperor stats", DEADLINE);
    assert!(second.log().contains("answers on it"), "{}", second.log());
    // The second goes on supervising.
    second.write_vassal("app", &status_ini(""));
    wait_values(&metrics, &[(&up("app"), 1.0)]);
    assert_eq!(read_stats(&stats)["pid"], first_pid);
    drop(second);
    assert_eq!(read_stats(&stats)["pid"], first_pid);
}

// ---------------------------------------------------------------------------------------
// rsgictl top
// ---------------------------------------------------------------------------------------

/// `rsgictl top --once` prints one frame with every vassal and its request count;
/// `--json` gives the totals.
#[test]
fn rsgictl_top_once_shows_request_counts() {
    let (e, metrics) = emperor(&[]);
    e.write_vassal("app", &status_ini(""));
    e.write_vassal("other", &status_ini("master = true\nprocesses = 2\n"));
    wait_values(&metrics, &[(&up("app"), 1.0), (&up("other"), 1.0)]);
    send(&e, "app", "/", 4, 200);
    send(&e, "app", "/status/404", 2, 404);
    wait_values(&metrics, &[(&requests("app", "2xx"), 4.0)]);
    let run = |args: &[&str]| {
        let out = Command::new(bin("rsgictl"))
            .env_remove("RSGI_CONTROL")
            .arg("--socket")
            .arg(e.control_socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "rsgictl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let frame = run(&["top", "--once"]);
    let lines: Vec<&str> = frame.lines().collect();
    assert!(lines[0].starts_with("rsgictl top - 2 vassal(s)"), "{frame}");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    let reqs = header.iter().position(|h| *h == "REQS").unwrap();
    let row = |name: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{frame}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let app = row("app");
    assert_eq!(app[1], "ready", "{frame}");
    assert_eq!(app[reqs], "6", "{frame}");
    let other = row("other");
    assert_eq!(other[reqs], "0", "{frame}");
    let idle = header.iter().position(|h| *h == "IDLE").unwrap();
    assert_eq!(other[idle], "2", "{frame}");
    assert!(
        !frame.contains('\x1b'),
        "no escape codes when not a terminal"
    );

    let json: Value = serde_json::from_str(&run(&["--json", "top", "--once"])).unwrap();
    let app = &json["vassals"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["requests"], 6);
    assert_eq!(app["status_classes"], serde_json::json!([0, 4, 0, 2, 0]));
    assert!(app["rss_bytes"].as_u64().unwrap() > 0);
}

// ---------------------------------------------------------------------------------------
// Counting off (benchmarks)
// ---------------------------------------------------------------------------------------

/// `RSGI_NO_COUNTERS=1` serves requests without counting them (the benchmark's
/// "metrics off").
#[test]
fn no_counters_switch_turns_counting_off() {
    let dir = tempdir();
    let stats = dir.path().join("stats.sock");
    let addr = Addr::Tcp(free_addr());
    let mut args = vec![
        "--http-socket".to_owned(),
        addr.arg(),
        "--stats".to_owned(),
        path_str(&stats).to_owned(),
    ];
    args.extend(app_args("status_app"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::spawn(dir.path(), &args, &[("RSGI_NO_COUNTERS", "1")]).ready(&addr);
    for _ in 0..3 {
        assert_eq!(get(&addr, "/").status, 200);
    }
    let doc = read_stats(&stats);
    assert_eq!(doc["workers"][0]["requests"], 0, "{doc:#}");
    assert_eq!(doc["workers"][0]["pid"], i64::from(rsgi.pid().as_raw()));
}
