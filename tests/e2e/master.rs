//! The process model (issue 3): a master with prefork workers under real signals and
//! real load. A worker killed with SIGKILL is replaced; SIGHUP reloads the code without
//! failing a request (preload: the master re-executes itself; `lazy-apps`: a new
//! generation of workers), and broken new code leaves the old code serving; SIGTERM lets
//! a slow request finish; harakiri dumps the Python stack and replaces the worker;
//! `max-requests` recycles workers without failing a request; a worker that cannot
//! import its app is retried with backoff; USR1 reopens `logto`; the real `uwsgitop`
//! reads the stats socket; `--reload`/`--stop PIDFILE` signal the master.
//!
//! The loads use `Connection: close` requests: on a keep-alive connection, a request
//! sent just as the server closes the idle connection (a worker that stops gracefully
//! does that) fails by the rules of HTTP/1.1 itself (RFC 9112 §9.3.1: the client must
//! retry), which is no server fault; with one request per connection, every failure
//! the load counts is one.
//!
//! The stats socket (uWSGI's JSON, served by the master) tells which workers run:
//! each test that needs pids passes `--stats <tmp>/stats.sock`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use rsgi_e2e::*;
use serde_json::Value;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Helpers: stats, a load of Connection: close requests, the reloadable app
// ---------------------------------------------------------------------------------------

/// The stats document, or `None` while the master does not answer (during a re-exec).
fn try_stats(path: &Path) -> Option<Value> {
    let mut s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// The stats document; waits for the master to answer.
fn stats(path: &Path) -> Value {
    let mut doc = None;
    wait_until(DEADLINE, "the stats socket to answer", || {
        doc = try_stats(path);
        doc.is_some()
    });
    doc.unwrap()
}

/// One worker as the stats document shows it.
#[derive(Debug, Clone)]
struct WorkerInfo {
    id: u64,
    pid: i32,
    accepting: bool,
    harakiri_count: u64,
}

fn workers(doc: &Value) -> Vec<WorkerInfo> {
    doc["workers"]
        .as_array()
        .expect("a workers array")
        .iter()
        .map(|w| WorkerInfo {
            id: w["id"].as_u64().unwrap(),
            pid: i32::try_from(w["pid"].as_i64().unwrap()).unwrap(),
            accepting: w["accepting"].as_u64() == Some(1),
            harakiri_count: w["harakiri_count"].as_u64().unwrap(),
        })
        .collect()
}

fn pids(doc: &Value) -> BTreeSet<i32> {
    workers(doc).iter().map(|w| w.pid).collect()
}

/// Wait until `n` workers run and accept; returns their pids.
fn wait_workers(stats_path: &Path, n: usize) -> BTreeSet<i32> {
    let mut found = BTreeSet::new();
    wait_until(
        DEADLINE,
        &format!("{n} accepting workers in the stats"),
        || {
            let Some(doc) = try_stats(stats_path) else {
                return false;
            };
            let w = workers(&doc);
            found = w.iter().map(|w| w.pid).collect();
            w.len() == n && w.iter().all(|w| w.accepting && w.pid > 0)
        },
    );
    found
}

/// `GET path` with `Connection: close` on a new connection: the body of a 200, or
/// what went wrong.
fn get_close(addr: &Addr, path: &str) -> Result<String, String> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut conn = HttpConn::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let resp = conn
        .request(raw.as_bytes())
        .map_err(|e| format!("request: {e}"))?;
    if resp.status != 200 {
        return Err(format!("status {}: {}", resp.status, resp.text()));
    }
    Ok(resp.text())
}

/// One request of a load.
#[derive(Debug, Clone)]
struct Outcome {
    /// When the client started it (before connecting).
    started: Instant,
    result: Result<String, String>,
}

/// Client threads sending `Connection: close` requests in a loop until finished.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `threads` clients, each sending `GET path` until [`Load::finish`] (or, with
    /// `limit`, until the load made `limit` requests in all).
    fn start(addr: &Addr, path: &str, threads: usize, limit: Option<usize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (addr, path) = (addr.clone(), path.to_owned());
                let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = get_close(&addr, &path);
                        let mut all = outcomes.lock().unwrap();
                        all.push(Outcome { started, result });
                        if limit.is_some_and(|l| all.len() >= l) {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            threads,
        }
    }

    fn snapshot(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Wait until `cond` holds for the outcomes so far.
    fn wait(&self, what: &str, mut cond: impl FnMut(&[Outcome]) -> bool) {
        wait_until(DEADLINE, what, || cond(&self.outcomes.lock().unwrap()));
    }

    /// Wait until `n` more requests succeeded than had at the call.
    fn wait_more_ok(&self, n: usize) {
        let before = ok_count(&self.snapshot());
        self.wait(&format!("{n} more successful requests"), |o| {
            ok_count(o) >= before + n
        });
    }

    /// Stop the clients and return every outcome.
    fn finish(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.join();
        self.snapshot()
    }

    /// Wait for a load started with a `limit` to make its requests; every outcome.
    fn complete(mut self) -> Vec<Outcome> {
        self.join();
        self.snapshot()
    }

    fn join(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.join();
    }
}

fn ok_count(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|o| o.result.is_ok()).count()
}

fn failures(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(String::as_str))
        .collect()
}

/// The pid in a `reload_app` or `/pid` body (`"v1 4242"` or `"4242"`).
fn body_pid(body: &str) -> i32 {
    body.split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

/// How many of `outcomes` (successful `/pid` answers) each pid answered.
fn answers_per_pid(outcomes: &[Outcome]) -> std::collections::BTreeMap<i32, usize> {
    let mut per_pid = std::collections::BTreeMap::new();
    for o in outcomes {
        *per_pid
            .entry(body_pid(o.result.as_ref().unwrap()))
            .or_default() += 1;
    }
    per_pid
}

/// Assert that the stats document counts at least `n` respawns for `cause`.
fn assert_respawns(doc: &Value, cause: &str, n: u64) {
    let counts = &doc["rsgi_respawns"];
    assert!(counts[cause].as_u64() >= Some(n), "{cause}: {counts}");
}

/// The version in a `reload_app` body (`"v1 4242"` -> `"v1"`).
fn body_version(body: &str) -> &str {
    body.split_whitespace().next().unwrap_or_default()
}

/// Serve `tests/apps/environ_app.py` over HTTP from `dir`, with the stats socket
/// `<dir>/stats.sock` (see [`stats_of`]) and `extra` options.
fn serve_master_in(dir: tempfile::TempDir, extra: &[&str]) -> Served {
    let addr = Addr::Tcp(free_addr());
    let stats = dir.path().join("stats.sock");
    let mut args = vec![
        "--http-socket".to_owned(),
        addr.arg(),
        "--stats".to_owned(),
        path_str(&stats).to_owned(),
    ];
    args.extend(app_args("environ_app"));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    Served { rsgi, addr, dir }
}

/// [`serve_master_in`] a fresh temp dir.
fn serve_master(extra: &[&str]) -> Served {
    serve_master_in(tempdir(), extra)
}

/// The stats socket of a server from [`serve_master`].
fn stats_of(s: &Served) -> PathBuf {
    s.dir.path().join("stats.sock")
}

/// `tests/apps/reload_app.py` answering `version`, as `dir/reload_app.py`.
fn write_reload_app(dir: &Path, version: &str) -> PathBuf {
    let template = fs::read_to_string(apps_dir().join("reload_app.py")).unwrap();
    let text = template.replace("VERSION = \"v1\"", &format!("VERSION = {version:?}"));
    assert!(text.contains(&format!("VERSION = {version:?}")));
    write_file(dir, "reload_app.py", text)
}

/// A server of `dir/reload_app.py` (version v1) over HTTP with `--master --processes 2`
/// and the stats socket `dir/stats.sock`, plus `extra`.
struct ReloadServer {
    rsgi: Rsgi,
    addr: Addr,
    stats: PathBuf,
    app: PathBuf,
    dir: tempfile::TempDir,
}

fn serve_reload_app(extra: &[&str]) -> ReloadServer {
    let dir = tempdir();
    let app = write_reload_app(dir.path(), "v1");
    let stats = dir.path().join("stats.sock");
    let addr = Addr::Tcp(free_addr());
    let mut args = vec![
        "--http-socket".to_owned(),
        addr.arg(),
        "--chdir".to_owned(),
        path_str(dir.path()).to_owned(),
        "--module".to_owned(),
        "reload_app".to_owned(),
        "--master".to_owned(),
        "--processes".to_owned(),
        "2".to_owned(),
        "--stats".to_owned(),
        path_str(&stats).to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    ReloadServer {
        rsgi,
        addr,
        stats,
        app,
        dir,
    }
}

fn lazy_args(lazy: bool) -> &'static [&'static str] {
    if lazy {
        &["--lazy-apps"]
    } else {
        &[]
    }
}

/// True while a process with this pid exists (a zombie counts).
fn proc_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

// ---------------------------------------------------------------------------------------
// 1. SIGKILL of a worker under load
// ---------------------------------------------------------------------------------------

/// A worker killed with SIGKILL while 3 clients load the server is replaced within a
/// second (a new pid in the stats), and the replacement serves.
///
/// Allowed failures: the one request the killed worker was serving (`threads = 1`: one
/// request at a time, and a worker does not accept a connection it cannot serve yet),
/// and it must be a dropped connection, never an HTTP error. Each request has its own
/// connection (`Connection: close`), so an idle keep-alive connection to the killed
/// worker cannot add a failure.
#[test]
fn sigkill_worker_is_replaced_under_load() {
    let s = serve_master(&["--master", "--processes", "2"]);
    let stats_path = stats_of(&s);
    let before = wait_workers(&stats_path, 2);
    let load = Load::start(&s.addr, "/pid", 3, None);
    load.wait_more_ok(50);

    let victim = *before.iter().next().unwrap();
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let mut replacement = None;
    wait_until(DEADLINE, "a new worker pid in the stats", || {
        let now = try_stats(&stats_path).map(|d| pids(&d)).unwrap_or_default();
        replacement = now.difference(&before).next().copied();
        replacement.is_some()
    });
    let elapsed = killed_at.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "the replacement appeared only after {elapsed:?}"
    );
    let replacement = replacement.unwrap();
    load.wait("the replacement worker to answer", |o| {
        o.iter()
            .any(|o| o.result.as_ref().is_ok_and(|b| body_pid(b) == replacement))
    });
    load.wait_more_ok(50);
    let outcomes = load.finish();

    let failed = failures(&outcomes);

    assert!(
        failed.len() <= 1,
        "{} of {} requests failed (at most the one the killed worker served may): {failed:?}",
        failed.len(),
        outcomes.len()
    );
    assert!(
        failed.iter().all(|f| !f.starts_with("status")),
        "only dropped connections may fail: {failed:?}"
    );
    let after = wait_workers(&stats_path, 2);
    assert!(!after.contains(&victim), "{after:?}");
    assert!(s
        .rsgi
        .log_contains(&format!("(pid {victim}) died with signal SIGKILL")));
}

// ---------------------------------------------------------------------------------------
// 2. SIGHUP under load: new code, no failed request
// ---------------------------------------------------------------------------------------

/// The app file is rewritten (v1 -> v2) and the master gets SIGHUP while 3 clients load
/// it: no request fails, every request started after the old workers exited answers
/// v2, and the master keeps its pid.
fn hup_under_load(lazy: bool) {
    let mut srv = serve_reload_app(lazy_args(lazy));
    let master = srv.rsgi.pid();
    let old = wait_workers(&srv.stats, 2);
    let load = Load::start(&srv.addr, "/", 3, None);
    load.wait_more_ok(30);

    write_reload_app(srv.dir.path(), "v2");
    srv.rsgi.signal(Signal::SIGHUP);
    // The reload is done when the stats count it and no old worker is left.
    let mut switched_at = None;
    wait_until(DEADLINE, "the reload to complete", || {
        let Some(doc) = try_stats(&srv.stats) else {
            return false;
        };
        let done = doc["rsgi_reloads"].as_u64() == Some(1)
            && pids(&doc).is_disjoint(&old)
            && old.iter().all(|p| !proc_exists(*p));
        if done {
            switched_at = Some(Instant::now());
        }
        done
    });
    let switched_at = switched_at.unwrap();
    load.wait("50 requests started after the reload", |o| {
        o.iter()
            .filter(|o| o.started > switched_at && o.result.is_ok())
            .count()
            >= 50
    });
    let outcomes = load.finish();

    let failed = failures(&outcomes);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the reload: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    let versions = |after: bool| -> BTreeSet<String> {
        outcomes
            .iter()
            .filter(|o| (o.started > switched_at) == after)
            .map(|o| body_version(o.result.as_ref().unwrap()).to_owned())
            .collect()
    };
    assert_eq!(
        versions(true),
        BTreeSet::from(["v2".to_owned()]),
        "after the reload"
    );
    assert!(versions(false).contains("v1"), "{:?}", versions(false));
    assert!(srv.rsgi.try_exit().is_none(), "the master still runs");
    assert_eq!(
        stats(&srv.stats)["pid"].as_i64(),
        Some(i64::from(master.as_raw()))
    );
    assert_eq!(wait_workers(&srv.stats, 2).len(), 2);
}

#[test]
fn hup_under_load_preload() {
    hup_under_load(false);
}

#[test]
fn hup_under_load_lazy_apps() {
    hup_under_load(true);
}

// ---------------------------------------------------------------------------------------
// 3. SIGHUP with broken code
// ---------------------------------------------------------------------------------------

/// GET / until it answers `version` (requests that fail on the way are retried).
fn wait_version(addr: &Addr, version: &str) {
    let mut last = Err(String::new());
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        last = get_close(addr, "/");
        if last.as_ref().is_ok_and(|b| body_version(b) == version) {
            return;
        }
        std::thread::sleep(POLL);
    }
    panic!("no {version} answer after {DEADLINE:?}; last answer {last:?}");
}

/// Wait until the stats count `n` failed reloads.
fn wait_failed_reloads(stats_path: &Path, n: u64) {
    wait_until(
        DEADLINE,
        &format!("{n} failed reload(s) in the stats"),
        || try_stats(stats_path).is_some_and(|d| d["rsgi_reloads_failed"].as_u64() == Some(n)),
    );
}

/// After a failed reload, the old code answers every request (10 in a row).
fn assert_still_v1(srv: &ReloadServer) {
    for _ in 0..10 {
        let body = get_close(&srv.addr, "/").unwrap();
        assert_eq!(body_version(&body), "v1", "{body}");
    }
}

/// SIGHUP after the app file got a syntax error, then again after it raises
/// ImportError: both reloads fail with the traceback in the log, v1 keeps answering,
/// the master keeps its pid. A third SIGHUP after the fix switches to v2.
fn hup_with_broken_code(lazy: bool) {
    let mut srv = serve_reload_app(lazy_args(lazy));
    let master = srv.rsgi.pid();
    wait_workers(&srv.stats, 2);
    assert_still_v1(&srv);

    fs::write(
        &srv.app,
        "def application(environ, start_response:\n    return []\n",
    )
    .unwrap();
    srv.rsgi.signal(Signal::SIGHUP);
    wait_failed_reloads(&srv.stats, 1);
    srv.rsgi.wait_log("SyntaxError", DEADLINE);
    assert_still_v1(&srv);

    fs::write(
        &srv.app,
        "import rsgi_e2e_no_such_module  # noqa: F401\nVERSION = 'broken'\n",
    )
    .unwrap();
    srv.rsgi.signal(Signal::SIGHUP);
    wait_failed_reloads(&srv.stats, 2);
    srv.rsgi
        .wait_log("No module named 'rsgi_e2e_no_such_module'", DEADLINE);
    assert!(
        srv.rsgi.log_contains("Traceback"),
        "the traceback is logged"
    );
    assert_still_v1(&srv);
    assert!(srv.rsgi.try_exit().is_none(), "the master still runs");
    assert_eq!(
        stats(&srv.stats)["pid"].as_i64(),
        Some(i64::from(master.as_raw()))
    );

    write_reload_app(srv.dir.path(), "v2");
    srv.rsgi.signal(Signal::SIGHUP);
    wait_version(&srv.addr, "v2");
    wait_until(DEADLINE, "the stats to count the reload", || {
        try_stats(&srv.stats).is_some_and(|d| d["rsgi_reloads"].as_u64() == Some(1))
    });
    assert_eq!(srv.rsgi.pid(), master);
    assert!(srv.rsgi.try_exit().is_none(), "the master still runs");
}

#[test]
fn hup_with_broken_code_preload() {
    hup_with_broken_code(false);
}

#[test]
fn hup_with_broken_code_lazy_apps() {
    hup_with_broken_code(true);
}

// ---------------------------------------------------------------------------------------
// 4. SIGTERM with a slow request in flight
// ---------------------------------------------------------------------------------------

/// SIGTERM while a 2 s request runs: the request completes with 200, the master exits
/// 0, and no process of the server is left (neither the workers seen in the stats nor
/// anything else in its process group).
#[test]
fn sigterm_lets_the_slow_request_finish_then_exits_0() {
    let s = serve_master(&["--master", "--processes", "2"]);
    let worker_pids = wait_workers(&stats_of(&s), 2);
    let marker = s.dir.path().join("slow.txt");
    let addr = s.addr.clone();
    let path = format!("/slow?s=2&marker={}", path_str(&marker));
    let client = std::thread::spawn(move || get_close(&addr, &path));
    wait_until(DEADLINE, "the slow request to reach the app", || {
        fs::read_to_string(&marker).is_ok_and(|m| m.contains("started"))
    });
    let mut rsgi = s.rsgi;
    rsgi.signal(Signal::SIGTERM);
    assert_eq!(client.join().unwrap(), Ok("slept".to_owned()));
    let status = rsgi.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", rsgi.log());
    for pid in &worker_pids {
        assert!(!proc_exists(*pid), "worker {pid} outlived the master");
    }
    assert!(
        killpg(rsgi.pid(), None).is_err(),
        "a process of the server's group is left"
    );
}

// ---------------------------------------------------------------------------------------
// 5. harakiri
// ---------------------------------------------------------------------------------------

/// `--harakiri 1` and a request that sleeps 10 s: the client gets a `504 Gateway
/// Timeout` (long before the 10 s), the log has the worker's Python stack, a new worker
/// serves the next request, and the stats count the harakiri for the slot.
#[test]
fn harakiri_dumps_the_stack_and_replaces_the_worker() {
    let mut s = serve_master(&["--master", "--processes", "1", "--harakiri", "1"]);
    let stats_path = stats_of(&s);
    let old = wait_workers(&stats_path, 1);
    let old_pid = *old.iter().next().unwrap();
    let started = Instant::now();
    let raw = "GET /slow?s=10 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let result = HttpConn::connect(&s.addr).and_then(|mut c| c.request(raw.as_bytes()));
    let took = started.elapsed();
    let answer = result.unwrap_or_else(|e| panic!("no answer after {took:?}: {e}"));
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert!(answer.text().starts_with("harakiri"), "{}", answer.text());
    assert!(took < Duration::from_secs(10), "{took:?}");

    s.rsgi.wait_log("(most recent call first)", DEADLINE);
    let log = s.rsgi.log();
    assert!(log.contains("harakiri"), "{log}");
    assert!(
        log.contains("environ_app.py") && log.contains(" in slow"),
        "the stack names the sleeping function:\n{log}"
    );
    let body = get_close(&s.addr, "/pid").unwrap();
    let new_pid = body_pid(&body);
    assert_ne!(new_pid, old_pid, "a new worker answers");
    let doc = stats(&stats_path);
    let slot = workers(&doc).into_iter().find(|w| w.id == 1).unwrap();
    assert_eq!(slot.pid, new_pid);
    assert!(slot.harakiri_count >= 1, "{slot:?}");
    assert_respawns(&doc, "harakiri", 1);
}

/// The same with the app imported by each worker (`lazy-apps`: faulthandler is set up
/// in the worker, not before the fork) and with keep-alive HTTP through hyper and
/// `threads = 2`: the stuck request gets the 504, the stack is still dumped.
#[test]
fn harakiri_answers_504_with_lazy_apps_and_keepalive() {
    let mut s = serve_master(&[
        "--master",
        "--processes",
        "1",
        "--threads",
        "2",
        "--lazy-apps",
        "--harakiri",
        "1",
    ]);
    let mut conn = HttpConn::connect(&s.addr).expect("connect");
    let answer = conn
        .request(b"GET /slow?s=10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("an answer");
    assert_eq!(answer.status, 504, "{}", answer.text());
    s.rsgi.wait_log("(most recent call first)", DEADLINE);
    assert_eq!(get_close(&s.addr, "/pid").map(|b| !b.is_empty()), Ok(true));
}

// ---------------------------------------------------------------------------------------
// 6. max-requests
// ---------------------------------------------------------------------------------------

/// `--max-requests 50` with 2 workers under 1000 requests from 3 clients: no request
/// fails, and workers are recycled (more than the 2 first pids answer).
#[test]
fn max_requests_recycles_without_failures() {
    let s = serve_master(&["--master", "--processes", "2", "--max-requests", "50"]);
    wait_workers(&stats_of(&s), 2);
    let outcomes = Load::start(&s.addr, "/pid", 3, Some(1000)).complete();
    let failed = failures(&outcomes);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    let answered: BTreeSet<i32> = answers_per_pid(&outcomes).into_keys().collect();
    assert!(
        answered.len() >= 4,
        "at least 2 workers must have been recycled; pids that answered: {answered:?}"
    );
    let doc = stats(&stats_of(&s));
    assert_respawns(&doc, "max_requests", 2);
}

/// The worker wakes the master when it reaches max-requests, so recycling follows the
/// limit closely instead of the master's periodic check: with a limit of 20 and one
/// worker, 200 sequential requests are answered by about 10 pids, each serving close to
/// 20 (the replacement is spawned before the old worker stops, so more land on the old
/// one while the replacement starts: a handful on an idle machine, up to ~40 seen on
/// this 2-core VM under a load of 5-7, hence the bound of 60; recycling by the master's
/// 1 s tick instead would leave all 200 to one or two workers).
#[test]
fn max_requests_is_honoured_closely() {
    let s = serve_master(&["--master", "--processes", "1", "--max-requests", "20"]);
    wait_workers(&stats_of(&s), 1);
    let outcomes = Load::start(&s.addr, "/pid", 1, Some(200)).complete();
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes));
    let per_pid = answers_per_pid(&outcomes);
    let most = per_pid.values().max().copied().unwrap_or(0);
    assert!(
        most <= 60,
        "a worker served {most} requests with max-requests = 20: {per_pid:?}"
    );
    assert!(per_pid.len() >= 4, "too few recycles: {per_pid:?}");
}

/// `max-worker-lifetime`: a worker older than the limit is replaced (replacement first),
/// and requests keep succeeding.
#[test]
fn max_worker_lifetime_recycles() {
    let s = serve_master(&["--master", "--processes", "1", "--max-worker-lifetime", "1"]);
    let first = wait_workers(&stats_of(&s), 1);
    let mut seen = BTreeSet::new();
    wait_until(DEADLINE, "a worker replaced for its lifetime", || {
        let resp = get(&s.addr, "/pid");
        assert_eq!(resp.status, 200, "{}", resp.text());
        seen.insert(body_pid(&resp.text()));
        seen.iter().any(|p| !first.contains(p))
    });
    let doc = stats(&stats_of(&s));
    assert_respawns(&doc, "lifetime", 1);
}

/// `reload-on-rss`: a worker above the limit (every Python worker is above 1 MiB, so
/// here every worker is replaced as soon as its replacement accepts) is replaced, the
/// cause is counted, and requests keep being answered.
#[test]
fn reload_on_rss_recycles() {
    let s = serve_master(&["--master", "--processes", "1", "--reload-on-rss", "1"]);
    wait_until(DEADLINE, "a worker replaced for its memory", || {
        let doc = stats(&stats_of(&s));
        doc["rsgi_respawns"]["rss"].as_u64() >= Some(1)
    });
    let resp = get(&s.addr, "/pid");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(s.rsgi.log_contains("recycling (rss)"), "{}", s.rsgi.log());
}

// ---------------------------------------------------------------------------------------
// 7. Django, preloaded and lazy
// ---------------------------------------------------------------------------------------

fn django_with_master(lazy: bool) {
    let dir = tempdir();
    let project = django_project(dir.path());
    let addr = Addr::Tcp(free_addr());
    let stats_path = dir.path().join("stats.sock");
    let mut args = vec![
        "--http-socket".to_owned(),
        addr.arg(),
        "--chdir".to_owned(),
        path_str(&project).to_owned(),
        "--module".to_owned(),
        "mysite.wsgi".to_owned(),
        "--home".to_owned(),
        path_str(&venv()).to_owned(),
        "--master".to_owned(),
        "--processes".to_owned(),
        "2".to_owned(),
        "--stats".to_owned(),
        path_str(&stats_path).to_owned(),
    ];
    args.extend(lazy_args(lazy).iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    wait_workers(&stats_path, 2);
    for _ in 0..4 {
        let resp = get(&addr, "/");
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(resp.text().contains(DJANGO_INDEX_TEXT), "{}", resp.text());
    }
    drop(rsgi);
}

#[test]
fn django_preloaded_by_the_master() {
    django_with_master(false);
}

#[test]
fn django_with_lazy_apps() {
    django_with_master(true);
}

// ---------------------------------------------------------------------------------------
// 8. A worker that cannot start: backoff, not a tight loop
// ---------------------------------------------------------------------------------------

/// The "retrying in X s" delays the master logged, in order.
fn retry_delays(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.split("retrying in ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// `lazy-apps` with a module that raises ImportError: the master stays up and retries
/// with growing delays (attempts 1..=5 take over 1.5 s: a handful of lines, not
/// hundreds); once the module is fixed, a worker comes up and serves.
#[test]
fn failing_lazy_worker_backs_off_and_recovers() {
    let dir = tempdir();
    let module = write_file(
        dir.path(),
        "flaky_app.py",
        "import rsgi_e2e_no_such_module  # noqa: F401\n",
    );
    let addr = Addr::Tcp(free_addr());
    let args = [
        "--http-socket",
        &addr.arg(),
        "--chdir",
        path_str(dir.path()),
        "--module",
        "flaky_app",
        "--master",
        "--processes",
        "1",
        "--lazy-apps",
    ];
    // The master binds the socket before any worker exists.
    let mut rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    let started = Instant::now();
    rsgi.wait_log("(attempt 5)", DEADLINE);
    let elapsed = started.elapsed();
    assert!(rsgi.try_exit().is_none(), "the master stays up");
    let log = rsgi.log();
    let delays = retry_delays(&log);
    assert!(
        (5..=7).contains(&delays.len()),
        "{} attempts in {elapsed:?}: {delays:?}",
        delays.len()
    );
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "the delays grow: {delays:?}"
    );
    assert!(
        log.contains("rsgi_e2e_no_such_module"),
        "the error is logged"
    );

    fs::write(&module, fs::read(apps_dir().join("reload_app.py")).unwrap()).unwrap();
    let mut last = Err(String::new());
    wait_until(DEADLINE, "the fixed app to serve", || {
        last = get_close(&addr, "/");
        last.as_ref().is_ok_and(|b| body_version(b) == "v1")
    });
    assert!(rsgi.try_exit().is_none());
}

// ---------------------------------------------------------------------------------------
// 9. uwsgitop
// ---------------------------------------------------------------------------------------

/// The real `uwsgitop` (PyPI, in the test venv) draws frames from the stats socket
/// showing the header, the master pid and both workers' pids, without a traceback. It
/// is a curses program: `tests/apps/uwsgitop_pty.py` runs it in a pseudo-terminal,
/// waits until the words show up on the screen and a second frame is drawn, kills it
/// and prints the screen text.
#[test]
fn uwsgitop_shows_the_workers() {
    let s = serve_master(&["--master", "--processes", "2"]);
    let stats_path = stats_of(&s);
    let worker_pids = wait_workers(&stats_path, 2);
    assert_eq!(get(&s.addr, "/").status, 200);
    let master = s.rsgi.pid().to_string();
    let mut words = vec!["WID".to_owned(), "PID".to_owned(), "idle".to_owned()];
    words.extend(worker_pids.iter().map(i32::to_string));
    let screen = uwsgitop(path_str(&stats_path), "WID", &words);
    assert!(
        screen.contains(&format!("masterpid: {master}")),
        "the master pid is on the screen:\n{screen}"
    );
}

// ---------------------------------------------------------------------------------------
// 10. SIGUSR1 reopens logto
// ---------------------------------------------------------------------------------------

/// The log file is renamed (as logrotate does), the master gets SIGUSR1: the master and
/// every worker reopen `logto`, so access lines of both workers land in the new file.
#[test]
fn sigusr1_reopens_the_logto_file() {
    let dir = tempdir();
    let logfile = dir.path().join("app.log");
    let s = serve_master_in(
        dir,
        &[
            "--master",
            "--processes",
            "2",
            "--logto",
            path_str(&logfile),
        ],
    );
    let worker_pids = wait_workers(&stats_of(&s), 2);
    assert_eq!(get(&s.addr, "/errors").text(), "ok");
    wait_until(DEADLINE, "the access line in the log", || {
        fs::read_to_string(&logfile).is_ok_and(|t| t.contains("GET /errors"))
    });
    let rotated = s.dir.path().join("app.log.1");
    fs::rename(&logfile, &rotated).unwrap();
    s.rsgi.signal(Signal::SIGUSR1);

    // Concurrent slow requests reach both workers (threads = 1: a busy worker cannot
    // take them all); the workers reopen the file asynchronously, so poll.
    let has_access_lines = |text: &str| {
        worker_pids
            .iter()
            .all(|p| text.contains(&format!("[pid: {p}]")) && text.contains("GET /pid"))
    };
    wait_until(
        DEADLINE,
        "access lines of both workers in the new file",
        || {
            let clients: Vec<_> = (0..4)
                .map(|_| {
                    let addr = s.addr.clone();
                    std::thread::spawn(move || get_close(&addr, "/pid?s=0.05"))
                })
                .collect();
            for c in clients {
                c.join().unwrap().unwrap();
            }
            fs::read_to_string(&logfile).is_ok_and(|t| has_access_lines(&t))
        },
    );
    assert!(fs::read_to_string(&rotated)
        .unwrap()
        .contains("GET /errors"));
}

// ---------------------------------------------------------------------------------------
// 11. rsgi --reload / --stop PIDFILE
// ---------------------------------------------------------------------------------------

/// `rsgi --reload PIDFILE` reloads like SIGHUP (v1 -> v2), `rsgi --stop PIDFILE` stops
/// like SIGTERM (exit 0).
#[test]
fn reload_and_stop_commands_signal_the_master() {
    let pidfile_dir = tempdir();
    let pidfile = pidfile_dir.path().join("app.pid");
    let mut srv = serve_reload_app(&["--pidfile", path_str(&pidfile)]);
    wait_workers(&srv.stats, 2);
    assert_eq!(read_pidfile(&pidfile), Some(srv.rsgi.pid()));
    assert_eq!(body_version(&get_close(&srv.addr, "/").unwrap()), "v1");

    write_reload_app(srv.dir.path(), "v2");
    // The commands run in their own directory: their log must not clobber the server's.
    let (status, out) = Rsgi::run(
        pidfile_dir.path(),
        &["--reload", path_str(&pidfile)],
        DEADLINE,
    );
    assert_eq!(status.code(), Some(0), "{out}");
    wait_version(&srv.addr, "v2");
    assert!(srv.rsgi.try_exit().is_none());

    let (status, out) = Rsgi::run(
        pidfile_dir.path(),
        &["--stop", path_str(&pidfile)],
        DEADLINE,
    );
    assert_eq!(status.code(), Some(0), "{out}");
    let status = srv.rsgi.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", srv.rsgi.log());
}

#[test]
fn a_worker_with_every_thread_busy_leaves_new_connections_to_the_others() {
    // 2 workers x 2 threads and 4 slow requests at once: a worker accepts only while
    // one of its threads is free (counting connections whose request has not arrived
    // yet), as uWSGI's threads do, so each worker takes exactly 2. Greedy accepting
    // gave 3 + 1 most of the time: the third request waited for a thread of a busy
    // worker while the other worker had one idle.
    let s = serve_master(&["--master", "--processes", "2", "--threads", "2"]);
    let expected = wait_workers(&stats_of(&s), 2);
    for round in 0..3 {
        // Connect all four first and send the requests a moment later: accepting "while
        // a thread is free" by counting only requests in the pool would let one worker
        // take every connection in that moment. (The pause only makes such a
        // regression show; with the reservation at accept the outcome holds whatever
        // the timing.)
        let mut conns: Vec<HttpConn> = (0..4)
            .map(|_| HttpConn::connect(&s.addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        for c in &mut conns {
            c.send(b"GET /pid?s=1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
        }
        let mut per_pid = std::collections::BTreeMap::<i32, usize>::new();
        for c in &mut conns {
            let body = c.read_response(false).unwrap().text();
            *per_pid.entry(body_pid(&body)).or_default() += 1;
        }
        assert_eq!(
            per_pid.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "round {round}: {per_pid:?}"
        );
        assert!(
            per_pid.values().all(|&n| n == 2),
            "round {round}: {per_pid:?}"
        );
    }
}

/// A full accept queue is seen on a unix socket too (uWSGI sees only TCP queues): while
/// the one worker is stopped, connections fill `listen = 4`; the master logs uWSGI's
/// "listen queue of socket ... full", the stats show the queue and count the event
/// (`listen_queue_errors`); then the worker serves again.
#[test]
fn full_listen_queue_of_a_unix_socket_is_logged_and_counted() {
    let dir = tempdir();
    let sock = dir.path().join("app.sock");
    let stats_sock = dir.path().join("stats.sock");
    let addr = Addr::Unix(sock.clone());
    let mut args = vec![
        "--socket".to_owned(),
        addr.arg(),
        "--stats".to_owned(),
        path_str(&stats_sock).to_owned(),
        "--master".to_owned(),
        "--listen".to_owned(),
        "4".to_owned(),
    ];
    args.extend(app_args("hello"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    // The worker accepts and has taken the readiness probe's connection.
    let mut doc = stats(&stats_sock);
    wait_until(DEADLINE, "the worker to accept, the queue empty", || {
        doc = stats(&stats_sock);
        workers(&doc)[0].accepting && doc["sockets"][0]["queue"] == 0
    });
    assert_eq!(doc["listen_queue_errors"], 0, "{doc}");
    let worker = Pid::from_raw(workers(&doc)[0].pid);
    kill(worker, Signal::SIGSTOP).unwrap();
    let waiting: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    rsgi.wait_log("listen queue of socket", DEADLINE);
    assert!(
        rsgi.log_contains(&format!("{} (4/4) full", sock.display())),
        "{}",
        rsgi.log()
    );
    let doc = stats(&stats_sock);
    kill(worker, Signal::SIGCONT).unwrap();
    assert_eq!(doc["listen_queue"], 4, "{doc}");
    assert!(doc["listen_queue_errors"].as_u64() >= Some(1), "{doc}");
    assert_eq!(doc["sockets"][0]["queue"], 4, "{doc}");
    assert_eq!(doc["sockets"][0]["max_queue"], 4, "{doc}");
    drop(waiting);
    let resp = uwsgi_request(&addr, &nginx_vars("GET", "/", "", &[]), b"");
    assert_eq!(resp.status, 200);
}
