//! `cron`, `cron2` (issue 21): the real master runs real shell commands by the local
//! clock. A minute-granularity schedule cannot be waited for here, so these tests use
//! the real clock with schedules that match now (the hour we are in, any minute: uWSGI
//! and rsgi run a matching cron at once when they start) or never match within the test
//! (the next hour); every-N, weekday, day-or-weekday and once-a-minute rules are table
//! tests on an injected clock (`vassal/src/master/cron.rs`, `proto/src/cron.rs`).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::unistd::Pid;
use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(30);

/// The local hour, read by `date` (the same time zone rules as the master's
/// `localtime`); waits out the last seconds of an hour so the test stays in one.
fn local_hour() -> u32 {
    loop {
        let out = Command::new("date").arg("+%H %M %S").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let f: Vec<u32> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        if f[1] == 59 && f[2] >= 50 {
            std::thread::sleep(Duration::from_secs(11));
            continue;
        }
        return f[0];
    }
}

fn start(dir: &Path, extra: &str) -> Rsgi {
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nwsgi-file = {}\nprocesses = 1\n{extra}\n",
        addr.arg(),
        path_str(dir),
        path_str(&apps_dir().join("hello.py"))
    );
    Rsgi::start_ini(dir, &ini).ready(&addr)
}

#[test]
fn a_matching_cron_runs_and_a_later_one_does_not() {
    let dir = tempdir();
    let hour = local_hour();
    let mut rsgi = start(
        dir.path(),
        &format!(
            "cron = -1 {hour} -1 -1 -1 echo ran >> cron.out\n\
             cron = -1 {} -1 -1 -1 echo ran >> never.out\n",
            (hour + 1) % 24
        ),
    );
    let out = dir.path().join("cron.out");
    wait_until(DEADLINE, "the matching cron to run", || out.exists());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "ran\n",
        "once in this minute"
    );
    assert!(
        !dir.path().join("never.out").exists(),
        "the next hour's cron ran"
    );
    rsgi.wait_log("cron: running \"echo ran >> cron.out\"", DEADLINE);
    rsgi.wait_log("ended with exit code 0", DEADLINE);
}

/// cron2 with uWSGI's keys (unset fields: any) and `harakiri`: a run that overstays is
/// killed.
#[test]
fn cron2_harakiri_kills_an_overlong_run() {
    let dir = tempdir();
    let mut rsgi = start(
        dir.path(),
        "cron2 = harakiri=2 echo $$ > job.pid; exec sleep 1000\n",
    );
    let pidfile = dir.path().join("job.pid");
    wait_until(DEADLINE, "the cron to run", || {
        read_pidfile(&pidfile).is_some()
    });
    let pid: Pid = read_pidfile(&pidfile).unwrap();
    let _guard = PidGuard(pid);
    assert!(process_alive(pid));
    wait_until(DEADLINE, "harakiri to kill the run", || !process_alive(pid));
    rsgi.wait_log("after its harakiri of 2 s", DEADLINE);
    rsgi.wait_log("ended with signal SIGKILL", DEADLINE);
}
