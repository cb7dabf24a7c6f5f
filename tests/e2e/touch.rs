//! `touch-reload`, `touch-chain-reload`, `touch-workers-reload`, `touch-logreopen`
//! (issue 21): the real master notices a changed file (its modification time, checked
//! every second, as uWSGI's master does) and reloads, chain-reloads, replaces its workers
//! or reopens its log, while a client load runs: no request may fail.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(60);

/// An app that answers `VERSION pid`, VERSION read from `version` at import.
fn write_app(dir: &Path, version: &str) {
    write_file(
        dir,
        "touch_app.py",
        "import os\n\
         VERSION = open('version').read().strip()\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [('%s %d' % (VERSION, os.getpid())).encode()]\n",
    );
    write_file(dir, "version", version);
}

struct Served {
    rsgi: Rsgi,
    addr: Addr,
    dir: tempfile::TempDir,
}

/// `processes = 2` serving `touch_app` over HTTP, with `extra` ini lines.
fn serve(extra: &str) -> Served {
    let dir = tempdir();
    write_app(dir.path(), "v1");
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = touch_app\nmaster = true\n\
         processes = 2\nreload-mercy = 10\n{extra}\n",
        addr.arg(),
        path_str(dir.path())
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    rsgi.wait_log("2 worker(s) ready", DEADLINE);
    Served { rsgi, addr, dir }
}

fn answer(addr: &Addr) -> (String, i32) {
    let r = get(addr, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let (v, pid) = text.split_once(' ').unwrap();
    (v.to_owned(), pid.parse().unwrap())
}

/// The worker pids seen over `n` requests.
fn worker_pids(addr: &Addr, n: usize) -> std::collections::BTreeSet<i32> {
    (0..n).map(|_| answer(addr).1).collect()
}

/// `touch-reload` in the default (preload) mode: the master re-executes, the new code
/// serves, the master keeps its pid, no request fails.
#[test]
fn touch_reload_reloads_under_load() {
    let s = serve("touch-reload = reload.trigger\n");
    let master = s.rsgi.pid();
    assert_eq!(answer(&s.addr).0, "v1");
    let load = Load::http(3, &s.addr, "/");
    load.wait_more_ok(30, DEADLINE);

    write_file(s.dir.path(), "version", "v2");
    touch_file(&s.dir.path().join("reload.trigger"));
    wait_until(DEADLINE, "the new code to serve", || {
        answer(&s.addr).0 == "v2"
    });
    load.wait_more_ok(30, DEADLINE);
    let report = load.stop();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);
    assert!(s
        .rsgi
        .log_contains("touch-reload reload.trigger changed: graceful reload"));
    assert_eq!(s.rsgi.pid(), master);
    // Only once: the re-executed master takes the file's time as its baseline.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.rsgi.log().matches("changed: graceful reload").count(),
        1,
        "{}",
        s.rsgi.log()
    );
}

/// `touch-chain-reload` with `lazy-apps`: the workers are replaced one at a time, each
/// with the new code, and no request fails.
#[test]
fn touch_chain_reload_replaces_workers_one_at_a_time() {
    let s = serve("lazy-apps = true\ntouch-chain-reload = chain.trigger\n");
    let before = worker_pids(&s.addr, 20);
    let load = Load::http(3, &s.addr, "/");
    load.wait_more_ok(30, DEADLINE);

    write_file(s.dir.path(), "version", "v2");
    touch_file(&s.dir.path().join("chain.trigger"));
    let mut rsgi = s.rsgi;
    rsgi.wait_log("chain reload done", DEADLINE);
    load.wait_more_ok(30, DEADLINE);
    let report = load.stop();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);

    let log = rsgi.log();
    let first = log.find("chain reload: replacing worker").unwrap();
    let second = log.rfind("chain reload: replacing worker").unwrap();
    assert!(first < second, "two workers replaced in turn:\n{log}");
    assert!(
        log.contains("chain reload of 2 worker(s), one at a time"),
        "{log}"
    );
    // Every worker now runs the new code, and none of the old pids is left.
    for _ in 0..20 {
        let (v, pid) = answer(&s.addr);
        assert_eq!(v, "v2");
        assert!(!before.contains(&pid), "old worker {pid} still serves");
    }
}

/// `touch-workers-reload` in preload mode: every worker is replaced, the master is not
/// (so, as in uWSGI, the code the master imported stays: v1).
#[test]
fn touch_workers_reload_replaces_the_workers_only() {
    let s = serve("touch-workers-reload = workers.trigger\n");
    let master = s.rsgi.pid();
    let before = worker_pids(&s.addr, 20);
    let load = Load::http(3, &s.addr, "/");
    load.wait_more_ok(30, DEADLINE);

    write_file(s.dir.path(), "version", "v2");
    touch_file(&s.dir.path().join("workers.trigger"));
    let mut rsgi = s.rsgi;
    rsgi.wait_log("reload done: generation 2 serves", DEADLINE);
    load.wait_more_ok(30, DEADLINE);
    let report = load.stop();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);
    assert!(!rsgi.log_contains("re-executing"));
    assert_eq!(rsgi.pid(), master);
    wait_until(DEADLINE, "the old workers to be gone", || {
        worker_pids(&s.addr, 10).is_disjoint(&before)
    });
    assert_eq!(answer(&s.addr).0, "v1");
}

/// `touch-logreopen`: after the log file is moved away (logrotate), a touch makes the
/// master and the workers write to a fresh file at the configured path.
#[test]
fn touch_logreopen_reopens_the_log() {
    let dir = tempdir();
    write_app(dir.path(), "v1");
    let addr = Addr::Tcp(free_addr());
    let log = dir.path().join("app.log");
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = touch_app\nprocesses = 2\n\
         logto = {}\ntouch-logreopen = reopen.trigger\n",
        addr.arg(),
        path_str(dir.path()),
        path_str(&log)
    );
    let _rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    wait_until(DEADLINE, "the workers to log", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("worker(s) ready"))
    });
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    touch_file(&dir.path().join("reopen.trigger"));
    wait_until(DEADLINE, "a fresh log file", || log.exists());
    // The workers reopened too: their access lines land in the new file.
    wait_until(DEADLINE, "an access line in the new log", || {
        let _ = get(&addr, "/after-reopen");
        fs::read_to_string(&log).is_ok_and(|l| l.contains("/after-reopen"))
    });
    let old = fs::read_to_string(dir.path().join("app.log.1")).unwrap();
    assert!(!old.contains("/after-reopen"), "{old}");
}
