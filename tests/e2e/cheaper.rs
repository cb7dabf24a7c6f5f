//! `cheaper` (issue 21): the real master adds workers while every one is busy (uWSGI's
//! spare algorithm, up to `processes`) and retires them once the load is gone (down to
//! `cheaper`), and no request fails on the way.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use nix::unistd::Pid;
use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(90);

/// The worker processes of `master`: its children, from /proc.
fn workers_of(master: Pid) -> usize {
    let mut n = 0;
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(master.as_raw()) && state != Some("Z") {
            n += 1;
        }
    }
    n
}

#[test]
fn workers_follow_the_load() {
    let dir = tempdir();
    write_file(
        dir.path(),
        "slow_app.py",
        "import time\n\
         def application(environ, start_response):\n\
         \x20   time.sleep(0.2)\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'ok']\n",
    );
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = slow_app\nmaster = true\n\
         processes = 4\ncheaper = 1\ncheaper-overload = 1\ncheaper-algo = spare\n",
        addr.arg(),
        path_str(dir.path())
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    rsgi.wait_log("1 worker(s) ready", DEADLINE);
    let master = rsgi.pid();
    assert_eq!(workers_of(master), 1, "cheaper = 1 starts one worker");

    let load = Load::http(8, &addr, "/");
    wait_until(
        DEADLINE,
        "the master to add workers up to processes",
        || workers_of(master) == 4,
    );
    assert!(
        rsgi.log_contains("cheaper: all 1 worker(s) busy"),
        "{}",
        rsgi.log()
    );
    load.wait_more_ok(20, DEADLINE);
    let report = load.stop();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);

    wait_until(
        DEADLINE,
        "the master to retire idle workers down to cheaper",
        || workers_of(master) == 1,
    );
    assert!(
        rsgi.log_contains("cheaper: idle; retiring worker"),
        "{}",
        rsgi.log()
    );
    // It stays there, and serves.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(workers_of(master), 1);
    assert_eq!(get(&addr, "/").status, 200);
}
