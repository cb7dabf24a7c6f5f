//! Relative paths as uWSGI resolves them (issue 16 item 3): uWSGI opens `logto` and
//! writes `pidfile` before it applies `chdir`, then binds the sockets and the stats
//! server inside `chdir`. The real `rsgi` started in a directory with `chdir = app`
//! must put each file where uWSGI would, keep them through a reload (the master goes
//! back to its starting directory to re-execute, so a relative `--ini` still reads),
//! and remove them with `vacuum`; under `rsgid`, which binds the vassal's sockets
//! itself, a relative socket lands in the vassal's `chdir` too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn relative_paths_land_where_uwsgi_puts_them() {
    let start = tempdir();
    let app = start.path().join("app");
    fs::create_dir(&app).unwrap();
    fs::copy(apps_dir().join("hello.py"), app.join("hello.py")).unwrap();
    write_file(
        start.path(),
        "app.ini",
        "[uwsgi]\nchdir = app\nhttp-socket = web.sock\nsocket = app.sock\nwsgi-file = hello.py\n\
         master = true\nprocesses = 1\npidfile = run.pid\nsafe-pidfile = safe.pid\n\
         logto = app.log\nstats = unix:stats.sock\nvacuum = true\n",
    );
    // A relative --ini, started in `start`.
    let mut rsgi = Rsgi::start_in(start.path(), &["--ini", "app.ini"]);
    let web = Addr::Unix(app.join("web.sock"));
    rsgi.wait_ready(&web, DEADLINE);
    assert_eq!(get(&web, "/").status, 200);
    let uwsgi = Addr::Unix(app.join("app.sock"));
    assert_eq!(uwsgi_get(&uwsgi, "/").unwrap().status, 200);
    // Before chdir: the pidfiles and the log, in the starting directory.
    let master = rsgi.pid();
    assert_eq!(read_pidfile(&start.path().join("run.pid")), Some(master));
    assert_eq!(read_pidfile(&start.path().join("safe.pid")), Some(master));
    let log = start.path().join("app.log");
    wait_until(DEADLINE, "the log in the starting directory", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("worker(s) ready"))
    });
    // After chdir: the stats socket.
    assert!(app.join("stats.sock").exists(), "stats socket in the chdir");
    for stray in ["web.sock", "app.sock", "stats.sock"] {
        assert!(
            !start.path().join(stray).exists(),
            "{stray} in the starting directory"
        );
    }
    for stray in ["run.pid", "app.log"] {
        assert!(!app.join(stray).exists(), "{stray} in the chdir");
    }

    // A reload re-executes the master with the relative --ini: it must still read.
    rsgi.signal(Signal::SIGHUP);
    wait_until(DEADLINE, "the reload to complete", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("reload done"))
    });
    assert_eq!(get(&web, "/").status, 200);
    assert!(!app.join("run.pid").exists());

    // vacuum removes each where it was made.
    assert!(rsgi.stop(DEADLINE).success());
    for gone in [
        app.join("web.sock"),
        app.join("app.sock"),
        start.path().join("run.pid"),
    ] {
        assert!(!gone.exists(), "{} left after vacuum", gone.display());
    }
}

/// Under rsgid, which binds a vassal's sockets itself: a relative socket is bound in
/// the vassal's `chdir` (itself relative to the vassals directory, where vassals start),
/// as the vassal alone would.
#[test]
fn rsgid_binds_a_relative_socket_in_the_vassals_chdir() {
    let mut emperor = Emperor::start(&[]);
    let app = emperor.dir().join("app");
    fs::create_dir(&app).unwrap();
    fs::copy(apps_dir().join("hello.py"), app.join("hello.py")).unwrap();
    emperor.write_vassal(
        "rel",
        // chdir relative to the vassals directory, where vassals start.
        "[uwsgi]\nchdir = ../app\nsocket = rel.sock\nwsgi-file = hello.py\n",
    );
    let addr = Addr::Unix(app.join("rel.sock"));
    wait_until(DEADLINE, "the vassal to serve on DIR/rel.sock", || {
        uwsgi_get(&addr, "/").is_ok_and(|r| r.status == 200)
    });
    assert!(!emperor.vassals_dir().join("rel.sock").exists());
    assert!(!emperor.dir().join("rel.sock").exists());
    emperor.wait_log("ready", DEADLINE);
}
