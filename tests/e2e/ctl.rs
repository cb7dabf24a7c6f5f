//! `rsgictl` and the control socket (issue 5) end to end: a real rsgid ([`Emperor`]),
//! real `rsgi` vassals serving `tests/apps/hello.py` on unix sockets in the temp dir,
//! and the real `rsgictl` binary, every verb in human and `--json` form with its exit
//! code. Waits poll `rsgictl status` (or the log) with deadlines; nothing sleeps a fixed
//! time.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rsgi_e2e::*;

/// Generous bound for every wait on a busy machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// What one `rsgictl` run printed, and how it exited.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("rsgictl printed no JSON ({e}): {self:#?}"))
    }
}

/// `rsgictl` with no `RSGI_CONTROL` from the environment of the test.
fn rsgictl() -> Command {
    let mut cmd = Command::new(bin("rsgictl"));
    cmd.env_remove("RSGI_CONTROL").stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Out {
    let out = cmd.output().expect("run rsgictl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `rsgictl --socket <the emperor's socket> args...`.
fn ctl(e: &Emperor, args: &[&str]) -> Out {
    let mut cmd = rsgictl();
    cmd.arg("--socket").arg(e.control_socket()).args(args);
    run(cmd)
}

/// Like [`ctl`], asserting the exit code.
fn ctl_ok(e: &Emperor, args: &[&str], code: i32) -> Out {
    let out = ctl(e, args);
    assert_eq!(out.code, code, "rsgictl {args:?}: {out:#?}");
    out
}

/// Absolute path of `tests/apps/<name>.py`.
fn app(name: &str) -> String {
    path_str(&apps_dir().join(format!("{name}.py"))).to_owned()
}

/// A vassal serving `wsgi_file` on its default socket (`<tmp>/run/<name>.sock`, uwsgi).
fn ini(wsgi_file: &str) -> String {
    format!("[uwsgi]\nwsgi-file = {wsgi_file}\n")
}

/// `rsgictl --json status NAME`'s state, or the exit code and stderr if it failed.
fn state(e: &Emperor, name: &str) -> Result<serde_json::Value, String> {
    let out = ctl(e, &["--json", "status", name]);
    match out.code {
        0 | 3 => Ok(out.json()),
        _ => Err(format!("exit {}: {}", out.code, out.stderr.trim())),
    }
}

/// Poll `rsgictl status NAME` until the vassal is in `want`; returns the status.
fn wait_state(e: &mut Emperor, name: &str, want: &str) -> serde_json::Value {
    let end = Instant::now() + DEADLINE;
    loop {
        let last = state(e, name);
        if let Ok(s) = &last {
            if s["state"] == want {
                return s.clone();
            }
        }
        if let Some(status) = e.try_exit() {
            panic!("rsgid exited ({status}) while waiting for {name} to be {want}");
        }
        assert!(
            Instant::now() < end,
            "{name} is not {want} after {DEADLINE:?}; last status: {last:#?}"
        );
        std::thread::sleep(POLL);
    }
}

/// An emperor with vassals `names`, each serving hello.py, all ready.
fn emperor_with(names: &[&str], extra_args: &[&str]) -> Emperor {
    let mut e = Emperor::start(extra_args);
    for name in names {
        e.write_vassal(name, &ini(&app("hello")));
    }
    for name in names {
        wait_state(&mut e, name, "ready");
        e.wait_serving(name, "/", DEADLINE);
    }
    e
}

/// The column at which `word` starts in `line`.
fn col(line: &str, word: &str) -> usize {
    line.find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
}

#[test]
fn list_and_status_in_both_forms() {
    let mut e = emperor_with(&["hello", "second-vassal"], &[]);

    let out = ctl_ok(&e, &["list"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].starts_with("NAME"), "header first: {}", out.stdout);
    for word in [
        "STATE", "PID", "GEN", "UPTIME", "RESTARTS", "SOCKET", "REASON",
    ] {
        assert!(lines[0].contains(word), "{word} in {}", lines[0]);
    }
    assert!(lines[1].starts_with("hello "), "{}", out.stdout);
    assert!(lines[2].starts_with("second-vassal "), "{}", out.stdout);
    // Aligned: each row's state starts under STATE, its socket under SOCKET.
    for row in &lines[1..] {
        assert_eq!(col(row, "ready"), col(lines[0], "STATE"), "{}", out.stdout);
        assert_eq!(col(row, "unix:"), col(lines[0], "SOCKET"), "{}", out.stdout);
    }
    let hello_pid = e.vassal_pids("hello")[0].as_raw();
    assert!(
        lines[1].contains(&format!(" {hello_pid} ")),
        "pid {hello_pid} in {}",
        lines[1]
    );

    let list = ctl_ok(&e, &["list", "--json"], 0).json();
    let vassals = list["vassals"].as_array().unwrap();
    assert_eq!(vassals.len(), 2, "{list:#}");
    assert_eq!(vassals[0]["name"], "hello");
    assert_eq!(vassals[0]["state"], "ready");
    assert_eq!(vassals[0]["pid"], hello_pid);
    assert_eq!(vassals[0]["generation"], 1);
    assert_eq!(vassals[0]["restarts"], 0);
    let sock = format!("unix:{}", e.socket("hello").arg());
    assert_eq!(vassals[0]["sockets"][0], sock.as_str());
    assert_eq!(vassals[0]["reason"], "");
    // `status` without a name is the list.
    assert_eq!(ctl_ok(&e, &["status"], 0).stdout, ctl(&e, &["list"]).stdout);

    let out = ctl_ok(&e, &["status", "hello"], 0);
    let text = &out.stdout;
    assert!(text.starts_with("hello\n"), "{text}");
    assert!(text.contains("  state       ready\n"), "{text}");
    assert!(
        text.contains(&format!("  pid         {hello_pid}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("  sockets     {sock}\n")), "{text}");
    let ini_path = e.ini_path("hello");
    assert!(
        text.contains(&format!("  config      {}\n", ini_path.display())),
        "{text}"
    );
    assert!(text.contains("  last exit   -\n"), "{text}");
    assert!(text.contains("  last error  -\n"), "{text}");
    assert!(text.contains("  workers"), "{text}");
    assert!(text.contains("listening on"), "the last log lines: {text}");

    let status = ctl_ok(&e, &["--json", "status", "hello"], 0).json();
    assert_eq!(status["name"], "hello");
    assert_eq!(status["state"], "ready");
    assert_eq!(status["pid"], hello_pid);
    assert_eq!(status["config"], path_str(&ini_path));
    assert!(status["last_exit"].is_null(), "{status:#}");
    assert!(status["workers"].is_array(), "{status:#}");
    assert!(
        status["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("listening on")),
        "{status:#}"
    );

    let out = ctl_ok(&e, &["ping"], 0);
    assert!(out.stdout.contains("rsgid is running"), "{out:#?}");
    assert_eq!(ctl_ok(&e, &["--json", "ping"], 0).json()["ok"], true);

    // The environment variable finds the socket too.
    let mut cmd = rsgictl();
    cmd.env("RSGI_CONTROL", e.control_socket()).arg("ping");
    assert_eq!(run(cmd).code, 0);

    // What the README shows: plain HTTP with any Host header (curl when installed).
    let ctl_addr = Addr::Unix(e.control_socket());
    let resp = http_get(&ctl_addr, "/vassals").unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json()["vassals"][0]["name"], "hello");
    if Path::new("/usr/bin/curl").is_file() {
        let out = Command::new("/usr/bin/curl")
            .args(["-sS", "--unix-socket"])
            .arg(e.control_socket())
            .arg("http://localhost/vassals/hello")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["name"], "hello");
    } else {
        eprintln!("SKIPPED the curl part: /usr/bin/curl is not installed");
    }

    // Socket mode 0660.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(e.control_socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "control socket mode {mode:o}");
    assert!(e.try_exit().is_none());
}

#[test]
fn unknown_vassals_exit_4() {
    let e = emperor_with(&["hello"], &[]);
    for args in [
        &["status", "nope"][..],
        &["--json", "status", "nope"],
        &["reload", "nope"],
        &["reload", "nope", "--wait"],
        &["stop", "nope"],
        &["start", "nope"],
        &["restart", "nope"],
        &["logs", "nope"],
        &["logs", "nope", "-f"],
    ] {
        let out = ctl_ok(&e, args, 4);
        assert!(
            out.stderr.contains("no such vassal: nope"),
            "rsgictl {args:?}: {out:#?}"
        );
    }
    // Names are percent-encoded: one with URL-special characters is just unknown.
    let out = ctl_ok(&e, &["status", "a?b#c%d"], 4);
    assert!(out.stderr.contains("no such vassal: a?b#c%d"), "{out:#?}");
}

#[test]
fn no_rsgid_exits_3_with_the_socket_path() {
    let dir = tempdir();
    let missing = dir.path().join("ctl.sock");
    for args in [
        &["list"][..],
        &["ping"],
        &["status", "x"],
        &["--json", "list"],
    ] {
        let mut cmd = rsgictl();
        cmd.arg("--socket").arg(&missing).args(args);
        let out = run(cmd);
        assert_eq!(out.code, 3, "{args:?}: {out:#?}");
        assert_eq!(
            out.stderr.trim(),
            format!(
                "rsgictl: rsgid is not running (no socket at {})",
                missing.display()
            )
        );
        assert!(out.stdout.is_empty(), "{out:#?}");
    }
    // A socket file left behind by a killed rsgid.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let mut cmd = rsgictl();
    cmd.env("RSGI_CONTROL", &stale).arg("ping");
    let out = run(cmd);
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "rsgid is not running (nothing answers on {})",
            stale.display()
        )),
        "{out:#?}"
    );
    // Usage errors are clap's 2.
    let mut cmd = rsgictl();
    cmd.args(["reload"]);
    assert_eq!(run(cmd).code, 2);
}

#[test]
fn reload_wait_reports_success_and_failure() {
    let mut e = Emperor::start(&[]);
    let app_py = own_hello(&e, "app");
    wait_state(&mut e, "app", "ready");
    e.wait_serving("app", "/", DEADLINE);

    let out = ctl_ok(&e, &["reload", "app", "--wait"], 0);
    assert_eq!(out.stdout.trim(), "app: generation 2 serves", "{out:#?}");
    let s = wait_state(&mut e, "app", "ready");
    assert_eq!(s["generation"], 2);
    let result = ctl_ok(&e, &["--json", "reload", "app", "--wait"], 0).json();
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(result["message"], "app: generation 3 serves");
    // Every vassal.
    let out = ctl_ok(&e, &["reload", "--all", "--wait"], 0);
    assert!(out.stdout.contains("app: generation 4 serves"), "{out:#?}");
    // Without --wait it answers at once.
    let out = ctl_ok(&e, &["reload", "app"], 0);
    assert!(out.stdout.contains("app: reloading"), "{out:#?}");
    let s = wait_state_gen(&mut e, "app", 5);
    let serving_pid = s["pid"].as_i64().unwrap();

    // The next generation cannot import the app: the reload fails, generation 5 serves on.
    std::fs::write(&app_py, "raise ImportError('broken on purpose')\n").unwrap();
    let out = ctl_ok(&e, &["reload", "app", "--wait"], 1);
    assert!(
        out.stderr.contains("app: reload failed"),
        "says it failed: {out:#?}"
    );
    assert!(
        out.stderr.contains("ImportError: broken on purpose"),
        "says why: {out:#?}"
    );
    let resp = uwsgi_get(&e.socket("app"), "/").unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "Hello World"));
    let s = state(&e, "app").unwrap();
    assert_eq!(s["state"], "ready", "{s:#}");
    assert_eq!(s["pid"], serving_pid, "the old generation serves: {s:#}");
    assert!(
        s["last_error"].as_str().unwrap().contains("exited"),
        "{s:#}"
    );
    let result = ctl_ok(&e, &["--json", "reload", "app", "--wait"], 1).json();
    assert_eq!(result["ok"], false, "{result:#}");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .starts_with("app: reload failed"),
        "{result:#}"
    );
    let out = ctl_ok(&e, &["reload", "--all", "--wait"], 1);
    assert!(out.stderr.contains("app: reload failed"), "{out:#?}");

    // While the old generation serves (and logs every request), the lines shown for a
    // failed reload are the failed generation's own, not the old one's access log.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, addr) = (stop.clone(), e.socket("app"));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = uwsgi_get(&addr, "/");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let out = ctl_ok(&e, &["reload", "app", "--wait"], 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    client.join().unwrap();
    let shown = out
        .stderr
        .split_once("last lines of app's generation ")
        .unwrap_or_else(|| panic!("no lines of the failed generation: {out:#?}"))
        .1;
    assert!(shown.contains("ImportError: broken on purpose"), "{out:#?}");
    assert!(
        !shown.contains("\"GET / "),
        "the old generation's access log: {out:#?}"
    );
    let resp = uwsgi_get(&e.socket("app"), "/").unwrap();
    assert_eq!(resp.status, 200);

    // Fixed: the reload goes through again.
    std::fs::copy(apps_dir().join("hello.py"), &app_py).unwrap();
    let out = ctl_ok(&e, &["reload", "app", "--wait"], 0);
    assert!(out.stdout.contains("serves"), "{out:#?}");
    assert!(e.log().contains("control: reload app (wait)"), "logged");
}

#[test]
fn reload_of_a_stopped_vassal_exits_3() {
    let mut e = emperor_with(&["a"], &[]);
    ctl_ok(&e, &["stop", "a"], 0);
    wait_state(&mut e, "a", "stopped");

    for args in [&["reload", "a"][..], &["reload", "a", "--wait"]] {
        let out = ctl_ok(&e, args, 3);
        assert_eq!(
            out.stderr.trim(),
            "a: not running (stopped), nothing to reload",
            "rsgictl {args:?}: {out:#?}"
        );
        assert!(out.stdout.is_empty(), "rsgictl {args:?}: {out:#?}");
    }
    for args in [
        &["--json", "reload", "a"][..],
        &["--json", "reload", "a", "--wait"],
    ] {
        let result = ctl_ok(&e, args, 3).json();
        assert_eq!(result["ok"], false, "{result:#}");
        assert_eq!(
            result["message"], "a: not running (stopped), nothing to reload",
            "{result:#}"
        );
        assert_eq!(
            result["not_running"],
            serde_json::json!(["a"]),
            "{result:#}"
        );
    }
    // Nothing was started by it.
    let s = state(&e, "a").unwrap();
    assert_eq!(s["state"], "stopped", "{s:#}");
    assert!(e.vassal_pids("a").is_empty(), "a has a process again");
}

#[test]
fn reload_all_gives_every_vassal_its_line_in_name_order() {
    let mut e = Emperor::start(&[]);
    // `a` can be broken for its next generation; `b` gets stopped; `c` reloads fine.
    let a_py = own_hello(&e, "a");
    e.write_vassal("b", &ini(&app("hello")));
    e.write_vassal("c", &ini(&app("hello")));
    for name in ["a", "b", "c"] {
        wait_state(&mut e, name, "ready");
        e.wait_serving(name, "/", DEADLINE);
    }
    ctl_ok(&e, &["stop", "b"], 0);
    wait_state(&mut e, "b", "stopped");
    let b_line = "b: not running (stopped), nothing to reload";

    // Others pending: the stopped one keeps its line, in its place.
    let out = ctl_ok(&e, &["reload", "--all", "--wait"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["a: generation 2 serves", b_line, "c: generation 2 serves"],
        "{out:#?}"
    );
    let result = ctl_ok(&e, &["--json", "reload", "--all", "--wait"], 0).json();
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(
        result["message"],
        format!("a: generation 3 serves\n{b_line}\nc: generation 3 serves"),
        "{result:#}"
    );
    assert_eq!(
        result["not_running"],
        serde_json::json!(["b"]),
        "{result:#}"
    );

    // Without --wait, the same lines at once.
    let out = ctl_ok(&e, &["reload", "--all"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["a: reloading", b_line, "c: reloading"], "{out:#?}");
    wait_state_gen(&mut e, "a", 4);
    wait_state_gen(&mut e, "c", 4);

    // A failed reload: every line still there, in order, on stderr, exit 1.
    std::fs::write(&a_py, "raise ImportError('broken on purpose')\n").unwrap();
    let out = ctl_ok(&e, &["reload", "--all", "--wait"], 1);
    let firsts: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| ["a: ", "b: ", "c: "].iter().any(|p| l.starts_with(p)))
        .collect();
    assert_eq!(firsts.len(), 3, "{out:#?}");
    assert!(firsts[0].starts_with("a: reload failed"), "{out:#?}");
    assert_eq!(firsts[1], b_line, "{out:#?}");
    assert_eq!(firsts[2], "c: generation 5 serves", "{out:#?}");
    assert_eq!(state(&e, "b").unwrap()["state"], "stopped");
}

/// A vassal `name` serving its own copy of `hello.py` (`NAME.py` in the emperor's
/// directory, to break and mend); returns the copy's path.
fn own_hello(e: &Emperor, name: &str) -> std::path::PathBuf {
    let py = e.dir().join(format!("{name}.py"));
    std::fs::copy(apps_dir().join("hello.py"), &py).unwrap();
    e.write_vassal(name, &ini(path_str(&py)));
    py
}

/// Poll until vassal `name` is ready at generation `gen`.
fn wait_state_gen(e: &mut Emperor, name: &str, gen: u64) -> serde_json::Value {
    let end = Instant::now() + DEADLINE;
    loop {
        let s = wait_state(e, name, "ready");
        if s["generation"] == gen {
            return s;
        }
        assert!(
            Instant::now() < end,
            "{name} never reached generation {gen}: {s:#}"
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn stop_survives_a_rescan_and_start_brings_it_back() {
    let mut e = emperor_with(&["a", "b"], &["--rescan", "1"]);
    let out = ctl_ok(&e, &["stop", "a"], 0);
    assert_eq!(out.stdout.trim(), "a: stopping", "{out:#?}");
    wait_state(&mut e, "a", "stopped");
    let end = Instant::now() + DEADLINE;
    while !e.vassal_pids("a").is_empty() {
        assert!(Instant::now() < end, "a's process is still there");
        std::thread::sleep(POLL);
    }
    // Not running: status and list say so with exit 3.
    let out = ctl_ok(&e, &["status", "a"], 3);
    assert!(out.stdout.contains("  state       stopped\n"), "{out:#?}");
    assert!(out.stdout.contains("stopped by rsgictl"), "{out:#?}");
    let out = ctl_ok(&e, &["list"], 3);
    let row = out.stdout.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(row.contains("stopped"), "{}", out.stdout);
    assert_eq!(
        ctl_ok(&e, &["--json", "status", "a"], 3).json()["pid"],
        serde_json::Value::Null
    );
    assert!(e.log().contains("control: stop a"), "logged");
    assert!(e.log().contains("peer_uid="), "the peer's uid is logged");

    // Another vassal changes (its reload goes through the rescan machinery), and more
    // than two rescan intervals pass: `a` stays stopped throughout.
    let mark = e.log_mark();
    e.touch("b");
    e.wait_log_since(mark, "reloaded", DEADLINE);
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(2500) {
        let s = state(&e, "a").unwrap();
        assert_eq!(s["state"], "stopped", "a came back by itself: {s:#}");
        assert!(e.vassal_pids("a").is_empty(), "a has a process again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(e.try_exit().is_none(), "rsgid runs");

    let out = ctl_ok(&e, &["start", "a"], 0);
    assert_eq!(out.stdout.trim(), "a: starting", "{out:#?}");
    wait_state(&mut e, "a", "ready");
    e.wait_serving("a", "/", DEADLINE);
    ctl_ok(&e, &["status", "a"], 0);
    ctl_ok(&e, &["list"], 0);

    // restart: a new process (not a graceful reload), ready again.
    let before = state(&e, "a").unwrap()["pid"].as_i64().unwrap();
    let result = ctl_ok(&e, &["--json", "restart", "a"], 0).json();
    assert_eq!(result["ok"], true, "{result:#}");
    let end = Instant::now() + DEADLINE;
    loop {
        let s = wait_state(&mut e, "a", "ready");
        if s["pid"].as_i64().unwrap() != before {
            break;
        }
        assert!(Instant::now() < end, "a was not restarted: {s:#}");
        std::thread::sleep(POLL);
    }
    e.wait_serving("a", "/", DEADLINE);

    // Stop, then a change of its file starts it again (as the issue says).
    ctl_ok(&e, &["--json", "stop", "a"], 0);
    wait_state(&mut e, "a", "stopped");
    e.touch("a");
    wait_state(&mut e, "a", "ready");
}

/// A running `rsgictl logs -f`, its lines delivered through a channel.
struct Follower {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(e: &Emperor, args: &[&str]) -> Follower {
        let mut child = rsgictl()
            .arg("--socket")
            .arg(e.control_socket())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// Wait for a line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "no line with {needle:?} from rsgictl logs -f ({e}; exited: {:?})",
                    self.child.try_wait()
                ),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_and_follow() {
    let mut e = emperor_with(&["hello"], &[]);
    uwsgi_get(&e.socket("hello"), "/first-request").unwrap();
    wait_until(DEADLINE, "the access line in rsgid's log", || {
        e.log().contains("/first-request")
    });

    let out = ctl_ok(&e, &["logs", "hello"], 0);
    assert!(out.stdout.contains("listening on"), "{out:#?}");
    assert!(out.stdout.contains("GET /first-request"), "{out:#?}");
    let out = ctl_ok(&e, &["logs", "hello", "-n", "1"], 0);
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    assert!(out.stdout.contains("/first-request"), "{out:#?}");
    let logs = ctl_ok(&e, &["--json", "logs", "hello", "-n", "2"], 0).json();
    let lines = logs["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{logs:#}");
    assert!(lines[1].as_str().unwrap().contains("/first-request"));

    // Follow: the backlog first, then a new request's access line as it happens.
    let mut follower = Follower::start(&e, &["logs", "hello", "-f", "-n", "1"]);
    follower.wait_for("/first-request");
    uwsgi_get(&e.socket("hello"), "/followed-request").unwrap();
    let line = follower.wait_for("/followed-request");
    assert!(line.contains("GET /followed-request"), "{line}");
    // And across a reload (the new generation's lines come through the same feed).
    ctl_ok(&e, &["reload", "hello", "--wait"], 0);
    e.wait_serving("hello", "/after-reload", DEADLINE);
    follower.wait_for("/after-reload");
    drop(follower);

    let mut follower = Follower::start(&e, &["--json", "logs", "hello", "--follow"]);
    uwsgi_get(&e.socket("hello"), "/json-follow").unwrap();
    let line = follower.wait_for("/json-follow");
    let text: String = serde_json::from_str(&line).unwrap();
    assert!(text.contains("GET /json-follow"), "{text}");
    drop(follower);

    // Followers that went away cost nothing: rsgid still answers.
    ctl_ok(&e, &["ping"], 0);
}

#[test]
fn check_catches_typos_import_errors_and_clashes() {
    let mut e = emperor_with(&["hello"], &[]);
    let dir = e.dir().join("check");
    let hello = app("hello");
    // Line 3 has the typo.
    let typo = write_file(
        &dir,
        "app.ini",
        format!("[uwsgi]\nwsgi-file = {hello}\nprocesess = 2\n"),
    );
    let out = ctl_ok(&e, &["check", path_str(&typo)], 1);
    assert!(out.stdout.contains("app.ini:3:"), "{out:#?}");
    assert!(out.stdout.contains("procesess"), "{out:#?}");
    assert!(out.stdout.contains("processes"), "did you mean: {out:#?}");
    let result = ctl_ok(&e, &["--json", "check", path_str(&typo)], 1).json();
    assert_eq!(result["ok"], false);
    assert!(result["problems"][0]
        .as_str()
        .unwrap()
        .contains("app.ini:3:"));

    // The app does not import.
    let broken = write_file(
        &dir,
        "broken.ini",
        format!("[uwsgi]\nwsgi-file = {}\n", app("import_error")),
    );
    let out = ctl_ok(&e, &["check", path_str(&broken)], 1);
    assert!(out.stdout.contains("does not import"), "{out:#?}");
    assert!(
        out.stdout.contains("this_module_does_not_exist_rsgi_e2e"),
        "{out:#?}"
    );

    // A socket another vassal holds.
    let clash = write_file(
        &dir,
        "clash.ini",
        format!(
            "[uwsgi]\nsocket = {}\nwsgi-file = {hello}\n",
            e.socket("hello").arg()
        ),
    );
    let out = ctl_ok(&e, &["check", path_str(&clash)], 1);
    assert!(
        out.stdout.contains("already used by vassal 'hello'"),
        "{out:#?}"
    );

    // A good file, by a relative path.
    let good = write_file(
        &dir,
        "good.ini",
        format!(
            "[uwsgi]\nsocket = {}\nwsgi-file = {hello}\n",
            path_str(&dir.join("good.sock"))
        ),
    );
    let out = ctl_ok(&e, &["check", path_str(&good)], 0);
    assert_eq!(
        out.stdout.trim(),
        format!("{}: ok", good.display()),
        "{out:#?}"
    );
    let mut cmd = rsgictl();
    cmd.current_dir(&dir)
        .arg("--socket")
        .arg(e.control_socket())
        .args(["--json", "check", "good.ini"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.json()["ok"], true);
    assert_eq!(out.json()["problems"].as_array().unwrap().len(), 0);
    // Nothing was applied: still one vassal, and the checked socket was not bound.
    let list = ctl_ok(&e, &["--json", "list"], 0).json();
    assert_eq!(list["vassals"].as_array().unwrap().len(), 1);
    assert!(!dir.join("good.sock").exists());

    // A missing file.
    let out = ctl_ok(&e, &["check", path_str(&dir.join("missing.ini"))], 1);
    assert!(out.stderr.contains("missing.ini"), "{out:#?}");
    assert!(e.try_exit().is_none());
}

/// Send `bytes` on a fresh control connection, then read what comes back until the
/// server closes (or a response arrived and the read times out). With `half_close`,
/// the write side is shut after the bytes (the server may answer and close before it
/// read them all); without, the request must ask the server to close.
fn raw(sock: &Path, bytes: &[u8], half_close: bool) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    if half_close {
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
    } else {
        s.write_all(bytes).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `text` (`None`: closed without one).
fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn garbage_on_the_socket_gets_4xx_and_rsgid_runs_on() {
    let mut e = emperor_with(&["hello"], &[]);
    let sock = e.control_socket();

    // Random bytes (a fixed xorshift sequence, so a failure reproduces).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random),
        ("a bad request line", b"HELLO THERE\r\n\r\n".to_vec()),
        ("a bad version", b"GET /vassals HTTP/7.1\r\n\r\n".to_vec()),
        ("nul bytes", vec![0; 1000]),
        (
            "a huge header",
            format!(
                "GET /vassals HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(1 << 20)
            )
            .into_bytes(),
        ),
        (
            "a bad content-length",
            b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
        ),
        (
            "CL and TE together",
            b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases.drain(..) {
        let answer = raw(&sock, &bytes, true);
        match status_of(&answer) {
            None => assert!(answer.is_empty(), "{what}: {answer:?}"),
            Some(code) => assert!((400..500).contains(&code), "{what}: {answer:?}"),
        }
        assert!(e.try_exit().is_none(), "rsgid died after {what}");
    }

    // Well-formed HTTP that is wrong for the API: a status and an error body.
    let api_cases: [(&str, &[u8], u16); 7] = [
        (
            "an unknown route",
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            404,
        ),
        (
            "a wrong method",
            b"DELETE /vassals/hello HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
        ),
        (
            "GET on a POST route",
            b"GET /vassals/hello/stop HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
        ),
        (
            "a bad query",
            b"GET /vassals/hello/logs?n=lots HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "an unknown parameter",
            b"GET /vassals?sort=name HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "bad JSON",
            b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{\"path\":1",
            400,
        ),
        (
            "a relative path",
            b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n{\"path\":\"a.ini\"}",
            400,
        ),
    ];
    for (what, bytes, want) in api_cases {
        // Whole requests: no half-close (the control socket, like most HTTP servers,
        // takes a client's EOF for a client that went away); the server closes after
        // answering instead.
        let bytes = String::from_utf8_lossy(bytes)
            .replacen("Host: x\r\n", "Host: x\r\nConnection: close\r\n", 1)
            .into_bytes();
        let answer = raw(&sock, &bytes, false);
        assert_eq!(status_of(&answer), Some(want), "{what}: {answer:?}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("{what}: no JSON error body ({err}): {answer:?}"));
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    }

    // A client that connects and goes away mid-request, and one that sends nothing.
    drop(UnixStream::connect(&sock).unwrap());
    let mut half = UnixStream::connect(&sock).unwrap();
    half.write_all(b"GET /vassals HTTP/1.1\r\nHo").unwrap();
    drop(half);
    let _idle = UnixStream::connect(&sock).unwrap();

    // rsgid runs on, answers, and its vassal still serves.
    assert!(e.try_exit().is_none(), "rsgid died");
    ctl_ok(&e, &["ping"], 0);
    let list = ctl_ok(&e, &["--json", "list"], 0).json();
    assert_eq!(list["vassals"][0]["state"], "ready");
    e.wait_serving("hello", "/", DEADLINE);
}

#[test]
fn a_second_rsgid_on_the_same_socket_is_refused() {
    let e = emperor_with(&[], &[]);
    let dir = tempdir();
    let vassals = dir.path().join("vassals");
    std::fs::create_dir_all(&vassals).unwrap();
    let log = dir.path().join("second.log");
    let mut child = Command::new(bin("rsgid"))
        .arg("--vassals")
        .arg(&vassals)
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .arg("--control")
        .arg(e.control_socket())
        .args(["--metrics", "off"])
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second rsgid on the same control socket did not exit");
        }
        std::thread::sleep(POLL);
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("control socket"), "{stderr}");
    assert!(stderr.contains("another rsgid"), "{stderr}");
    // The first one is untouched.
    ctl_ok(&e, &["ping"], 0);
}
