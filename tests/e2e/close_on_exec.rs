//! `close-on-exec` (connection sockets) and `close-on-exec2` (listening sockets), issue
//! 21 follow-up: rsgi accepts no-ops for both because its fds are already what they
//! ask. Proof with the real binaries: an app runs a subprocess with `close_fds=False`
//! (and `os.system`) that lists its own `/proc/self/fd`; it must not see the
//! connection socket nor the listener, on rsgi's HTTP close path and keep-alive path,
//! after a SIGHUP reload (the master re-executes itself and hands its listeners across
//! the exec), and under rsgid (listeners passed through `LISTEN_FDS`). A route that
//! clears `FD_CLOEXEC` itself shows the check would see an inherited socket.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Answers JSON: its pid, its own fds (`parent`), and what a subprocess started with
/// `close_fds=False` (`child`) and one started by `os.system` (`system`) have open.
/// `/leak` first clears `FD_CLOEXEC` on every socket it holds.
const APP: &str = r#"
import fcntl, json, os, subprocess

def fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    return out

def parse(ls):
    out = {}
    for line in ls.splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            out[left.split()[-1]] = target
    return out

def application(environ, start_response):
    mine = fds()
    if environ["PATH_INFO"] == "/leak":
        for fd, target in mine.items():
            if target.startswith("socket:"):
                flags = fcntl.fcntl(int(fd), fcntl.F_GETFD)
                fcntl.fcntl(int(fd), fcntl.F_SETFD, flags & ~fcntl.FD_CLOEXEC)
    child = subprocess.run(["ls", "-l", "/proc/self/fd"], close_fds=False,
                           capture_output=True).stdout.decode()
    path = "/tmp/rsgi-e2e-fds-%d" % os.getpid()
    os.system("ls -l /proc/self/fd > " + path)
    with open(path) as f:
        system = f.read()
    os.unlink(path)
    body = json.dumps({"pid": os.getpid(), "parent": mine, "child": parse(child),
                       "system": parse(system)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"#;

/// What one answer says: the pid, how many sockets the worker holds, and the sockets
/// the two subprocesses saw at fds 3 and up.
struct Seen {
    pid: i64,
    parent_sockets: usize,
    inherited: Vec<String>,
}

fn seen(doc: &serde_json::Value) -> Seen {
    let map = |key: &str| -> BTreeMap<String, String> {
        serde_json::from_value(doc[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}: {doc}"))
    };
    let sockets = |m: &BTreeMap<String, String>| -> Vec<String> {
        m.iter()
            .filter(|(fd, target)| {
                fd.parse::<u32>().is_ok_and(|n| n >= 3) && target.starts_with("socket:")
            })
            .map(|(fd, target)| format!("{fd} -> {target}"))
            .collect()
    };
    let (child, system) = (map("child"), map("system"));
    assert!(
        !child.is_empty() && !system.is_empty(),
        "no fd listing: {doc}"
    );
    let parent = map("parent");
    let mut inherited = sockets(&child);
    inherited.extend(sockets(&system));
    Seen {
        pid: doc["pid"].as_i64().unwrap(),
        parent_sockets: parent.values().filter(|t| t.starts_with("socket:")).count(),
        inherited,
    }
}

/// The worker held its listener and the connection, and no subprocess saw either.
fn assert_nothing_inherited(what: &str, doc: &serde_json::Value) -> i64 {
    let s = seen(doc);
    assert!(
        s.parent_sockets >= 2,
        "{what}: the worker should hold the listener and the connection: {doc}"
    );
    assert!(
        s.inherited.is_empty(),
        "{what}: a subprocess inherited {:?}: {doc}",
        s.inherited
    );
    s.pid
}

fn write_app(dir: &Path) {
    write_file(dir, "fds_app.py", APP);
}

#[test]
fn subprocesses_inherit_no_socket_standalone_and_after_a_reload() {
    let dir = tempdir();
    write_app(dir.path());
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nwsgi-file = fds_app.py\nmaster = true\n\
         processes = 1\nclose-on-exec = true\nclose-on-exec2 = true\n",
        addr.arg(),
        path_str(dir.path())
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    rsgi.wait_log("close-on-exec: ", DEADLINE);
    rsgi.wait_log("close-on-exec2: ", DEADLINE);
    // The close path (Connection: close).
    let first = assert_nothing_inherited("close path", &get(&addr, "/fds").json());
    // The keep-alive path (hyper).
    let mut conn = HttpConn::connect(&addr).unwrap();
    for i in 0..2 {
        let r = conn.get("/fds").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_nothing_inherited(&format!("keep-alive request {i}"), &r.json());
    }
    drop(conn);
    // A reload: the master re-executes itself with its listeners, new workers.
    rsgi.signal(Signal::SIGHUP);
    let mut after = get(&addr, "/fds").json();
    wait_until(DEADLINE, "a worker of the reloaded master", || {
        after = get(&addr, "/fds").json();
        after["pid"].as_i64() != Some(first)
    });
    assert_nothing_inherited("after the reload", &after);
    // The check sees an inherited socket when there is one.
    let leak = seen(&get(&addr, "/leak").json());
    assert!(
        !leak.inherited.is_empty(),
        "sockets without FD_CLOEXEC must show in the listing"
    );
}

#[test]
fn subprocesses_inherit_no_socket_under_rsgid() {
    let dir = tempdir();
    write_app(dir.path());
    let mut e = Emperor::start(&["--rescan", "60"]);
    e.write_vassal(
        "fds",
        &format!(
            "[uwsgi]\nchdir = {}\nwsgi-file = fds_app.py\nmaster = true\nprocesses = 1\n\
             close-on-exec = true\nclose-on-exec2 = true\n",
            path_str(dir.path())
        ),
    );
    let r = e.wait_serving("fds", "/fds", DEADLINE);
    assert_nothing_inherited("under rsgid", &r.json());
}
