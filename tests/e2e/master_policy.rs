//! The master's policy as the real process shows it (issue 17): the pure
//! `vassal/src/master/policy.rs` decides when the master wakes up
//! (`State::next_wakeup`), and the shell sleeps in poll(2) until then. Here a real
//! master, a real CPython and real workers check that it sleeps: a worker retried after
//! a failed start that takes long to import its app must not make the master poll
//! every millisecond (it did: the past backoff instant kept the timeout at zero).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::{Duration, Instant};

use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(30);

/// The voluntary context switches of `pid` so far: one per sleep in poll(2).
fn voluntary_switches(pid: nix::unistd::Pid) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("voluntary_ctxt_switches in /proc/PID/status")
}

/// `lazy-apps`, one worker: the first import fails (the master backs off 0.1 s), the
/// second takes 4 s. While it imports, the master has nothing to do but its 1 s tick:
/// it sleeps, a few wake-ups a second, not one a millisecond. Then the worker serves.
#[test]
fn master_sleeps_while_a_retried_worker_imports() {
    let dir = tempdir();
    write_file(
        dir.path(),
        "slow_second_app.py",
        "import os, time\n\
         if not os.path.exists('failed_once'):\n\
         \x20   open('failed_once', 'w').close()\n\
         \x20   raise ImportError('the first import fails on purpose')\n\
         open('importing', 'w').close()\n\
         time.sleep(4)\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'ok']\n",
    );
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = slow_second_app\nmaster = true\n\
         processes = 1\nlazy-apps = true\n",
        addr.arg(),
        path_str(dir.path())
    );
    // The master binds the socket before any worker exists.
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    rsgi.wait_log("retrying in 0.1 s (attempt 1)", DEADLINE);
    wait_until(DEADLINE, "the retried worker to import", || {
        dir.path().join("importing").exists()
    });
    let master = rsgi.pid();
    let before = voluntary_switches(master);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let woke = voluntary_switches(master) - before;
    let elapsed = started.elapsed();
    assert!(
        !rsgi.log_contains("worker(s) ready"),
        "the worker was ready before the end of the measure: it must still import"
    );
    // A 1 s tick and a few stray wake-ups, against ~2000 when it spun.
    assert!(
        woke < 50,
        "the master woke {woke} times in {elapsed:?} while a worker imported"
    );
    wait_until(DEADLINE, "the worker to serve", || {
        accepts(&addr) && get(&addr, "/").status == 200
    });
}
