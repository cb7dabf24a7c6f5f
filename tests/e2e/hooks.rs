//! `hook-*` and `exec-*` (issue 21): uWSGI's hooks run at their phases in the real
//! server, in order, with uWSGI's action syntax; a failing fatal hook stops the server;
//! an action rsgi does not have is refused when the config is read.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(30);

fn ini(dir: &Path, addr: &Addr, extra: &str) -> String {
    format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nwsgi-file = {}\nmaster = true\nprocesses = 2\n{extra}\n",
        addr.arg(),
        path_str(dir),
        path_str(&apps_dir().join("hello.py"))
    )
}

#[test]
fn hooks_run_at_their_phases_in_order() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let hooks = "\
hook-asap = appendn:hooks.out asap
hook-as-root = appendn:hooks.out as-root
exec-as-user = echo as-user >> hooks.out
hook-pre-app = appendn:hooks.out pre-app
hook-post-app = appendn:hooks.out post-app
hook-master-start = appendn:hooks.out master-start
hook-post-fork = appendn:hooks.out post-fork
hook-accepting = appendn:hooks.out accepting
hook-accepting1 = appendn:hooks.out accepting1
hook-as-user-atexit = appendn:hooks.out atexit
hook-master-start = !exec:echo TOP-SECRET > /dev/null
hook-pre-app = write:written.txt hello hooks
hook-pre-app = mkdir:made
";
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini(dir.path(), &addr, hooks)).ready(&addr);
    rsgi.wait_log("2 worker(s) ready", DEADLINE);
    let out = dir.path().join("hooks.out");
    wait_until(DEADLINE, "both workers' accepting hooks", || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .matches("accepting\n")
            .count()
            == 2
    });
    assert_eq!(get(&addr, "/").status, 200);
    assert!(rsgi.stop(DEADLINE).success());

    let lines: Vec<String> = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let first = |what: &str| {
        lines
            .iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("no {what} in {lines:?}"))
    };
    let order = [
        "asap",
        "as-root",
        "as-user",
        "pre-app",
        "post-app",
        "master-start",
        "post-fork",
        "accepting",
        "atexit",
    ];
    for pair in order.windows(2) {
        assert!(
            first(pair[0]) < first(pair[1]),
            "{} before {}: {lines:?}",
            pair[0],
            pair[1]
        );
    }
    let count = |what: &str| lines.iter().filter(|l| *l == what).count();
    assert_eq!(
        (count("post-fork"), count("accepting"), count("accepting1")),
        (2, 2, 1),
        "{lines:?}"
    );
    assert_eq!(
        (count("pre-app"), count("atexit")),
        (1, 1),
        "preloaded once, one exit: {lines:?}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("written.txt")).unwrap(),
        "hello hooks"
    );
    assert!(dir.path().join("made").is_dir());

    let log = rsgi.log();
    assert!(
        log.contains("running \"appendn:hooks.out pre-app\" (pre-app)..."),
        "{log}"
    );
    assert!(
        log.contains("running --- PRIVATE HOOK --- (master-start)"),
        "{log}"
    );
    assert!(!log.contains("TOP-SECRET"), "{log}");
}

/// A failing hook before serving ends the server with the reason; nothing serves.
#[test]
fn a_failing_fatal_hook_stops_the_server() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let path = write_file(
        dir.path(),
        "app.ini",
        ini(dir.path(), &addr, "exec-pre-app = exit 7\n"),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&path)], DEADLINE);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(
            "hook \"exec:exit 7\" (pre-app) failed: the command exited with exit status: 7"
        ),
        "{log}"
    );
    assert!(!log.contains("worker(s) ready"), "{log}");
}

/// uWSGI hook actions rsgi does not run are refused when the config is read, naming the
/// ones it runs.
#[test]
fn an_unsupported_action_is_refused_up_front() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let path = write_file(
        dir.path(),
        "app.ini",
        ini(dir.path(), &addr, "hook-as-root = mount:proc none /proc\n"),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&path)], DEADLINE);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("hook action 'mount' is not supported by rsgi (supported: exec"),
        "{log}"
    );
    assert!(log.contains("app.ini:"), "names the file and line: {log}");
}

/// A worker's `accepting` hooks run before it starts threads of its own (the app
/// threads of `threads = 4`, `py-autoreload`): a `putenv` there sets the variable while
/// the worker has one thread, and a later `exec` sees it (`/proc/PID/task` of the
/// worker, the hook's parent, is counted then; backquotes, as `$(...)` is the config's
/// own environment reference).
#[test]
fn accepting_hooks_run_before_the_worker_starts_threads() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let hooks = "\
threads = 4
py-autoreload = 60
hook-accepting = putenv:RSGI_E2E_HOOK=set-at-accepting
hook-accepting = exec:echo \"$RSGI_E2E_HOOK `ls /proc/$PPID/task | wc -l`\" >> accepting.out
";
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini(dir.path(), &addr, hooks)).ready(&addr);
    rsgi.wait_log("2 worker(s) ready", DEADLINE);
    let out = dir.path().join("accepting.out");
    wait_until(DEADLINE, "both workers' accepting hooks", || {
        fs::read_to_string(&out).unwrap_or_default().lines().count() == 2
    });
    assert_eq!(get(&addr, "/").status, 200);
    assert!(rsgi.stop(DEADLINE).success());
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["set-at-accepting 1", "set-at-accepting 1"],
        "each worker: the variable set, one thread; log:\n{}",
        rsgi.log()
    );
}

/// A `putenv` while threads the app started at import run is refused with the reason
/// (a fatal phase: the server does not start); the same hook before the import works.
#[test]
fn putenv_with_app_threads_running_is_refused() {
    let dir = tempdir();
    write_file(
        dir.path(),
        "threaded.py",
        "import threading, time\n\
         threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'ok']\n",
    );
    let ini = |hook: &str, addr: &Addr| {
        format!(
            "[uwsgi]\nhttp-socket = {}\nchdir = {}\nwsgi-file = threaded.py\n{hook}\n",
            addr.arg(),
            path_str(dir.path()),
        )
    };
    let addr = Addr::Tcp(free_addr());
    let path = write_file(
        dir.path(),
        "late.ini",
        ini("hook-post-app = putenv:APP_MODE=late", &addr),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&path)], DEADLINE);
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains(
            "hook \"putenv:APP_MODE=late\" (post-app) failed: putenv APP_MODE: 2 threads run \
             in this process now"
        ),
        "{log}"
    );

    let addr = Addr::Tcp(free_addr());
    let early = ini("hook-pre-app = putenv:APP_MODE=early", &addr);
    let mut rsgi = Rsgi::start_ini(dir.path(), &early).ready(&addr);
    assert_eq!(get(&addr, "/").status, 200);
    assert!(!rsgi.log().contains("failed"), "{}", rsgi.log());
    assert!(rsgi.stop(DEADLINE).success());
}
