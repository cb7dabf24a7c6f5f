//! rsgid as PID 1 of a PID namespace, as in a container (issue 18): orphans of the apps
//! are re-parented to it and must be reaped, while its own children's statuses stay
//! theirs (a vassal killed by SIGKILL is seen as killed by signal 9). `unshare --pid
//! --fork` from util-linux; root is a prerequisite.

use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Each request leaves five orphans behind (`sh -c "sleep 0.2 &"`): they are
/// re-parented to PID 1 and exit 0.2 s later.
const ORPHANING_APP: &str = r#"
import subprocess

def application(environ, start_response):
    for _ in range(5):
        subprocess.Popen(["sh", "-c", "sleep 0.2 & exit 0"]).wait()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"orphaned"]
"#;

/// The zombie children of `pid` (every thread's children, state Z).
fn zombies_of(pid: nix::unistd::Pid) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_ascii_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .map(|i| stat[i + 1..].trim_start().chars().next());
            if state == Some(Some('Z')) {
                out.push(stat);
            }
        }
    }
    out
}

#[test]
fn as_pid_1_rsgid_reaps_orphans_but_not_its_own_children() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (unshare --pid): run scripts/test.sh as root"
    );
    let mut e = Emperor::start_in_pid_namespace(&["--rescan", "60"]);
    e.wait_log("running as PID 1: reaping orphaned processes", DEADLINE);
    let app = e.dir().join("orphaning.py");
    std::fs::write(&app, ORPHANING_APP).expect("write the app");
    e.write_vassal(
        "a",
        &format!(
            "[uwsgi]\nwsgi-file = {}\nmaster = true\nprocesses = 1\n",
            path_str(&app)
        ),
    );
    e.wait_serving("a", "/", DEADLINE);
    for _ in 0..3 {
        let r = uwsgi_get(&e.socket("a"), "/").expect("GET");
        assert_eq!(r.text(), "orphaned");
    }
    // The orphans have exited: none may be left as a zombie of rsgid.
    std::thread::sleep(Duration::from_millis(500));
    let rsgid = e.rsgid_pid();
    let mut left = Vec::new();
    wait_until(DEADLINE, "no zombie children of rsgid", || {
        left = zombies_of(rsgid);
        left.is_empty()
    });
    // Its own children's exits are still its own: a vassal killed with SIGKILL is
    // reported as such (not "unknown exit status") and started again.
    let master = e
        .vassal_pids("a")
        .into_iter()
        .min()
        .expect("the vassal's master");
    let mark = e.log_mark();
    nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    e.wait_log_since(mark, "signal 9", DEADLINE);
    assert!(
        !e.log_since(mark).contains("unknown exit status"),
        "{}",
        e.log()
    );
    e.wait_serving("a", "/", DEADLINE);
}
