//! `attach-daemon`, `attach-control-daemon`, `smart-attach-daemon`, `attach-daemon2`
//! (issue 21): the real master runs a real shell command beside the app, respawns it
//! when it dies (throttled as uWSGI throttles), stops it with the vassal and on a
//! reload; a smart daemon (pidfile) survives both; a control daemon's death stops the
//! vassal.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(60);

/// The pids a daemon wrote to `file` (one line per start).
fn pids_in(file: &Path) -> Vec<Pid> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// The parent of `pid`, from /proc.
fn parent_of(pid: Pid) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn start(dir: &Path, extra: &str) -> (Rsgi, Addr) {
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nwsgi-file = {}\nmaster = true\n\
         processes = 1\n{extra}\n",
        addr.arg(),
        path_str(dir),
        path_str(&apps_dir().join("hello.py"))
    );
    let rsgi = Rsgi::start_ini(dir, &ini).ready(&addr);
    (rsgi, addr)
}

/// A daemon that records its pid (the shell `exec`s, so `$$` is the daemon's pid) and
/// sleeps.
const SLEEPER: &str = "echo $$ >> daemon.pids; exec sleep 1000";

#[test]
fn attach_daemon_runs_is_respawned_and_stops_with_the_vassal() {
    let dir = tempdir();
    let file = dir.path().join("daemon.pids");
    let (mut rsgi, addr) = start(dir.path(), &format!("attach-daemon = {SLEEPER}\n"));
    wait_until(DEADLINE, "the daemon to start", || {
        pids_in(&file).len() == 1
    });
    let first = pids_in(&file)[0];
    assert!(process_alive(first));
    assert_eq!(
        parent_of(first),
        Some(rsgi.pid().as_raw()),
        "the master's child"
    );
    assert_eq!(get(&addr, "/").status, 200);

    kill(first, Signal::SIGKILL).unwrap();
    wait_until(DEADLINE, "the daemon to be respawned", || {
        pids_in(&file).len() == 2
    });
    let second = pids_in(&file)[1];
    wait_until(DEADLINE, "the respawned daemon to run", || {
        process_alive(second)
    });
    assert!(rsgi.log_contains("died; respawning"), "{}", rsgi.log());

    assert!(rsgi.stop(DEADLINE).success());
    assert!(!process_alive(second), "the daemon outlived the vassal");
    assert!(rsgi.log_contains("stopping daemon"), "{}", rsgi.log());
    assert_eq!(pids_in(&file).len(), 2, "respawned during the stop");
}

/// A command that exits at once is respawned with uWSGI's throttle (1 s, then longer),
/// not in a tight loop.
#[test]
fn a_failing_daemon_is_throttled() {
    let dir = tempdir();
    let file = dir.path().join("runs");
    let (rsgi, _addr) = start(dir.path(), "attach-daemon = echo run >> runs; exit 3\n");
    wait_until(DEADLINE, "the daemon to run twice", || {
        fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let runs = fs::read_to_string(&file).unwrap().lines().count();
    let elapsed = started.elapsed();
    // Unthrottled it runs hundreds of times a second; throttled, about once a second
    // at first and slower after.
    assert!(runs <= 12, "{runs} runs in {elapsed:?}: not throttled");
    assert!(rsgi.log_contains("(throttled)"), "{}", rsgi.log());
}

/// A reload (SIGHUP: the master re-executes, or with `lazy-apps` forks a new
/// generation) stops the daemon and starts it again, as uWSGI's reload does: one daemon
/// runs, never two.
fn reload_restarts_the_daemon(extra: &str) {
    let dir = tempdir();
    let file = dir.path().join("daemon.pids");
    let (mut rsgi, addr) = start(dir.path(), &format!("attach-daemon = {SLEEPER}\n{extra}"));
    wait_until(DEADLINE, "the daemon to start", || {
        pids_in(&file).len() == 1
    });
    let first = pids_in(&file)[0];
    rsgi.signal(Signal::SIGHUP);
    rsgi.wait_log("reload done", DEADLINE);
    wait_until(DEADLINE, "the daemon to restart", || {
        pids_in(&file).len() == 2
    });
    let second = pids_in(&file)[1];
    wait_until(DEADLINE, "the old daemon to be gone", || {
        !process_alive(first)
    });
    assert!(process_alive(second));
    assert_eq!(get(&addr, "/").status, 200);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        pids_in(&file).len(),
        2,
        "started once more, not again and again"
    );
}

#[test]
fn reload_restarts_the_daemon_preloaded() {
    reload_restarts_the_daemon("");
}

#[test]
fn reload_restarts_the_daemon_lazy() {
    reload_restarts_the_daemon("lazy-apps = true\n");
}

/// smart-attach-daemon: tracked by its pidfile; started once, survives a reload and the
/// vassal's stop (as in uWSGI), respawned when its pid is gone.
#[test]
fn smart_daemon_survives_reload_and_stop() {
    let dir = tempdir();
    let pidfile = dir.path().join("smart.pid");
    let (mut rsgi, _addr) = start(
        dir.path(),
        "smart-attach-daemon = smart.pid echo $$ > smart.pid; echo $$ >> daemon.pids; exec sleep 1000\n",
    );
    wait_until(DEADLINE, "the smart daemon's pidfile", || {
        read_pidfile(&pidfile).is_some()
    });
    let first = read_pidfile(&pidfile).unwrap();
    let _guard = PidGuard(first);
    rsgi.signal(Signal::SIGHUP);
    rsgi.wait_log("reload done", DEADLINE);
    // The re-executed master found it alive: not started again.
    rsgi.wait_log("found a live pid", DEADLINE);
    assert_eq!(pids_in(&dir.path().join("daemon.pids")), vec![first]);
    assert!(process_alive(first));

    // Killed: the pid it was seen with is gone, so it is respawned.
    kill(first, Signal::SIGKILL).unwrap();
    wait_until(DEADLINE, "the smart daemon to be respawned", || {
        read_pidfile(&pidfile).is_some_and(|p| p != first)
    });
    let second = read_pidfile(&pidfile).unwrap();
    let _guard2 = PidGuard(second);

    assert!(rsgi.stop(DEADLINE).success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        process_alive(second),
        "a smart daemon survives the vassal's stop"
    );
}

/// attach-control-daemon: when it dies, the vassal stops (gracefully, exit 0).
#[test]
fn control_daemon_death_stops_the_vassal() {
    let dir = tempdir();
    let (mut rsgi, _addr) = start(dir.path(), "attach-control-daemon = sleep 2\n");
    let status = rsgi.wait_exit(DEADLINE);
    assert!(status.success(), "{status}: {}", rsgi.log());
    assert!(
        rsgi.log_contains("control daemon \"sleep 2\""),
        "{}",
        rsgi.log()
    );
}

/// attach-daemon2 with uWSGI's keys: the command runs and gets its stop signal (here
/// SIGINT, which the command traps to leave a mark).
#[test]
fn attach_daemon2_stop_signal() {
    let dir = tempdir();
    let (mut rsgi, _addr) = start(
        dir.path(),
        "attach-daemon2 = cmd=trap 'echo got-int > stopped; exit 0' INT; echo $$ >> daemon.pids; while true; do sleep 0.1; done,stopsignal=2\n",
    );
    let file = dir.path().join("daemon.pids");
    wait_until(DEADLINE, "the daemon to start", || {
        pids_in(&file).len() == 1
    });
    assert!(rsgi.stop(DEADLINE).success());
    // The shell runs its trap once the `sleep 0.1` in flight returns: the mark may land
    // just after the master is gone.
    let stopped = dir.path().join("stopped");
    wait_until(DEADLINE, "the daemon's INT trap to leave its mark", || {
        fs::read_to_string(&stopped).is_ok_and(|s| s.trim() == "got-int")
    });
}

/// Under rsgid a vassal's stdout and stderr are non-blocking pipes (its log never
/// waits). A daemon that writes a lot must still see blocking writes, not EAGAIN: here
/// `head` writes ~2 MB and the marker is written only if every write succeeded.
#[test]
fn a_chatty_daemon_under_rsgid_is_not_cut_short() {
    let mut emperor = Emperor::start(&[]);
    let dir = emperor.dir().join("app");
    fs::create_dir(&dir).unwrap();
    emperor.write_vassal(
        "chatty",
        &format!(
            "[uwsgi]\nchdir = {}\nwsgi-file = {}\n\
             attach-daemon = yes 0123456789abcdef | head -n 120000 && echo ok > marker; exec sleep 1000\n",
            path_str(&dir),
            path_str(&apps_dir().join("hello.py"))
        ),
    );
    emperor.wait_serving("chatty", "/", DEADLINE);
    wait_until(DEADLINE, "the daemon's writes to finish", || {
        dir.join("marker").exists()
    });
    assert_eq!(fs::read_to_string(dir.join("marker")).unwrap(), "ok\n");
}
