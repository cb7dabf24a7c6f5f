//! rsgid under a bad day (issue 15): an idle rsgid does no work of its own making, a bad
//! directory entry never freezes the others, and the watch survives the vassal directory
//! being removed and made again. The real rsgid and rsgi, with a rescan interval of a
//! minute, so that anything that happens within a test's deadline was event-driven.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);
/// Long enough that no periodic rescan happens during a test.
const NO_RESCAN: [&str; 2] = ["--rescan", "60"];

fn hello_ini() -> String {
    format!(
        "[uwsgi]\nwsgi-file = {}\n",
        path_str(&apps_dir().join("hello.py"))
    )
}

/// `GET /metrics` on rsgid's control socket.
fn metrics(e: &Emperor) -> String {
    let mut s = UnixStream::connect(e.control_socket()).expect("connect to the control socket");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: rsgid\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// `rsgi_emperor_scans_total`.
fn scans(e: &Emperor) -> u64 {
    let text = metrics(e);
    text.lines()
        .find_map(|l| l.strip_prefix("rsgi_emperor_scans_total "))
        .unwrap_or_else(|| panic!("no rsgi_emperor_scans_total in:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

/// The `list` entry of vassal `name`, once it satisfies `cond`.
fn wait_entry(
    e: &Emperor,
    name: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until(DEADLINE, &format!("{name}: {what}"), || {
        last = e.list_json()["vassals"]
            .as_array()
            .and_then(|v| v.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or(serde_json::Value::Null);
        cond(&last)
    });
    last
}

#[test]
fn an_idle_rsgid_does_not_rescan_itself() {
    let mut e = Emperor::start(&NO_RESCAN);
    for name in ["a", "b", "c"] {
        e.write_vassal(name, &hello_ini());
    }
    for name in ["a", "b", "c"] {
        e.wait_serving(name, "/", DEADLINE);
    }
    // Let the start-up settle (the last events of the writes above).
    std::thread::sleep(Duration::from_millis(500));
    let before = scans(&e);
    std::thread::sleep(Duration::from_secs(3));
    let after = scans(&e);
    // Reading the files for a scan raised inotify events that asked for the next scan:
    // about 43 scans a second. Now nothing happens until a change or the interval.
    assert!(
        after - before <= 1,
        "{} scans in 3 s of idling (from {before} to {after})",
        after - before
    );
    // A real change is still seen at once (not at the next periodic rescan).
    e.write_vassal("d", &hello_ini());
    e.wait_serving("d", "/", DEADLINE);
    assert!(scans(&e) > after);
}

#[test]
fn a_bad_entry_is_reported_and_the_rest_goes_on() {
    let mut e = Emperor::start(&NO_RESCAN);
    e.write_vassal("good", &hello_ini());
    e.wait_serving("good", "/", DEADLINE);
    let dir = e.vassals_dir();
    std::os::unix::fs::symlink("loop.ini", dir.join("loop.ini")).expect("symlink loop");
    nix::unistd::mkfifo(&dir.join("fifo.ini"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // New, changed and deleted files still work, at once.
    e.write_vassal("new", &hello_ini());
    e.wait_serving("new", "/", DEADLINE);
    e.remove("good");
    wait_until(DEADLINE, "good retired", || {
        e.list_json()["vassals"]
            .as_array()
            .is_some_and(|v| !v.iter().any(|x| x["name"] == "good"))
    });
    // The bad entries are listed as failed, with the reason.
    let looped = wait_entry(&e, "loop", "failed", |v| v["state"] == "failed");
    let reason = looped["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("loop.ini") && reason.contains("symbolic links"),
        "{looped}"
    );
    let fifo = wait_entry(&e, "fifo", "failed", |v| v["state"] == "failed");
    let reason = fifo["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not a regular file (a FIFO)"), "{fifo}");
    // Reported once, not on every scan.
    std::thread::sleep(Duration::from_secs(1));
    let log = e.log();
    let lines = log.lines().filter(|l| l.contains("symbolic links")).count();
    assert!(lines <= 2, "the loop was logged {lines} times:\n{log}");
    // Fixing the entry brings the vassal up.
    std::fs::remove_file(dir.join("loop.ini")).expect("rm loop.ini");
    e.write_vassal("loop", &hello_ini());
    e.wait_serving("loop", "/", DEADLINE);
}

#[test]
fn the_watch_comes_back_with_the_directory() {
    let mut e = Emperor::start(&NO_RESCAN);
    e.write_vassal("a", &hello_ini());
    e.wait_serving("a", "/", DEADLINE);
    let dir = e.vassals_dir();
    let away = e.dir().join("vassals.away");
    std::fs::rename(&dir, &away).expect("move the vassal directory away");
    e.wait_log("the vassal directory went away", DEADLINE);
    // Nothing is retired while the directory is gone.
    std::thread::sleep(Duration::from_millis(300));
    e.wait_serving("a", "/", DEADLINE);
    std::fs::create_dir(&dir).expect("make the vassal directory again");
    std::fs::copy(away.join("a.ini"), dir.join("a.ini")).expect("copy a.ini back");
    e.wait_log("watching it again", DEADLINE);
    // A change in the new directory is seen by its watch, well before the interval.
    e.write_vassal("b", &hello_ini());
    e.wait_serving("b", "/", DEADLINE);
}

#[test]
fn a_renamed_file_hands_its_socket_over_without_refusing_a_connection() {
    let e = Emperor::start(&NO_RESCAN);
    let socket = e.dir().join("shared.sock");
    let ini = format!(
        "[uwsgi]\nwsgi-file = {}\nsocket = {}\n",
        path_str(&apps_dir().join("environ_app.py")),
        path_str(&socket)
    );
    e.write_vassal("a", &ini);
    let addr = Addr::Unix(socket.clone());
    wait_until(DEADLINE, "a serves", || {
        uwsgi_get(&addr, "/pid").is_ok_and(|r| r.status == 200)
    });
    let old: i32 = uwsgi_get(&addr, "/pid")
        .expect("GET /pid")
        .text()
        .trim()
        .parse()
        .expect("pid");

    // Clients all along: every connection must be answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match uwsgi_get(&addr, "/pid") {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status)),
                    Err(e) => failed.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let dir = e.vassals_dir();
    std::fs::rename(dir.join("a.ini"), dir.join("a2.ini")).expect("mv a.ini a2.ini");
    // a2 serves on the same socket; a is gone.
    let mut last = serde_json::Value::Null;
    wait_until(DEADLINE, "a2 ready and a retired", || {
        last = e.list_json();
        let v = last["vassals"].as_array().cloned().unwrap_or_default();
        v.iter().any(|x| x["name"] == "a2" && x["state"] == "ready")
            && !v.iter().any(|x| x["name"] == "a")
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.join().expect("client thread");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rename: {:?}\n{last}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 50, "only {ok} requests");
    // The socket stays (the retired vassal does not remove what a2 serves on), and a2's
    // workers answer.
    assert!(socket.exists(), "the handed-over socket file was removed");
    let new: i32 = uwsgi_get(&addr, "/pid")
        .expect("GET /pid")
        .text()
        .trim()
        .parse()
        .expect("pid");
    assert_ne!(new, old);
    assert!(e.log().contains("socket handed over"), "{}", e.log());
}

#[test]
fn a_socket_another_vassal_owns_fails_at_once() {
    let e = Emperor::start(&NO_RESCAN);
    let socket = e.dir().join("taken.sock");
    let ini = format!("{}socket = {}\n", hello_ini(), path_str(&socket));
    e.write_vassal("first", &ini);
    wait_until(DEADLINE, "first serves", || {
        uwsgi_get(&Addr::Unix(socket.clone()), "/").is_ok_and(|r| r.status == 200)
    });
    e.write_vassal("second", &ini);
    let second = wait_entry(&e, "second", "failed", |v| v["state"] == "failed");
    assert!(
        second["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already used by vassal 'first'")),
        "{second}"
    );
    // At once: no backoff retries before failing.
    assert!(!e.log().contains("retrying in"), "{}", e.log());
    // When the owner goes, the vassal that wanted its socket starts (`cp a.ini b.ini;
    // rm a.ini`).
    e.remove("first");
    wait_entry(&e, "second", "ready", |v| v["state"] == "ready");
    // A missing socket directory fails at once too.
    let nowhere = e.dir().join("no-such-dir/app.sock");
    e.write_vassal(
        "third",
        &format!("{}socket = {}\n", hello_ini(), path_str(&nowhere)),
    );
    let third = wait_entry(&e, "third", "failed", |v| v["state"] == "failed");
    assert!(
        third["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no-such-dir")),
        "{third}"
    );
    assert!(!e.log().contains("retrying in"), "{}", e.log());
}

#[test]
fn idle_connections_of_a_group_member_do_not_lock_root_out() {
    use std::os::unix::fs::PermissionsExt as _;
    let user = test_user("a second user holds the connections");
    let group = nix::unistd::Group::from_name("rsgi-tyrant-extra")
        .expect("look up rsgi-tyrant-extra")
        .expect("no group rsgi-tyrant-extra: scripts/test.sh creates it");
    let mut e = Emperor::start(&NO_RESCAN);
    e.write_vassal("a", &hello_ini());
    e.wait_serving("a", "/", DEADLINE);
    // The group of the control socket: its members may use rsgictl.
    std::fs::set_permissions(e.dir(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    nix::unistd::chown(&e.control_socket(), None, Some(group.gid)).expect("chgrp ctl.sock");
    let target = format!("unix:{}", path_str(&e.control_socket()));
    let holder = hold_connections(
        &target,
        100,
        "",
        Some((user.uid.as_raw(), group.gid.as_raw())),
    );
    // Root still gets in, again and again, while the member holds on.
    for _ in 0..5 {
        let v = e.list_json();
        assert!(v["vassals"].as_array().is_some_and(|a| a.len() == 1), "{v}");
    }
    e.wait_log("control socket: connection limit reached", DEADLINE);
    drop(holder);
}

#[test]
fn a_flood_of_idle_metrics_connections_is_capped() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut e = Emperor::start(&["--metrics", &listen, "--rescan", "60"]);
    e.write_vassal("a", &hello_ini());
    e.wait_serving("a", "/", DEADLINE);
    let holder = hold_connections(&format!("tcp:{port}"), 1010, "", None);
    e.wait_log("metrics: connection limit reached", DEADLINE);
    // rsgid's fd table holds the capped connections only.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", e.pid()))
        .expect("rsgid's fds")
        .count();
    assert!(fds < 200, "rsgid holds {fds} fds");
    // And it goes on: the control socket answers, a new vassal starts.
    assert!(e.list_json()["vassals"].is_array());
    e.write_vassal("b", &hello_ini());
    e.wait_serving("b", "/", DEADLINE);
    drop(holder);
}

/// An app that writes to stdout (print) and stderr (logging) on every request, 300
/// bytes in all, so that a stalled reader's pipe fills within a few hundred requests.
const CHATTY_APP: &str = r#"
import logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
log = logging.getLogger("chatty")

def application(environ, start_response):
    print("chatty print " + "p" * 120)
    log.info("chatty log %s", "l" * 120)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

/// Requests in a loop on two threads for `how_long`; returns (answered, slowest, errors).
fn hammer(addr: &Addr, how_long: Duration) -> (u64, Duration, Vec<String>) {
    let end = std::time::Instant::now() + how_long;
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let (mut ok, mut slowest, mut errors) = (0u64, Duration::ZERO, Vec::new());
                while std::time::Instant::now() < end {
                    let t = std::time::Instant::now();
                    match uwsgi_get(&addr, "/") {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => errors.push(format!("status {}", r.status)),
                        Err(e) => errors.push(e.to_string()),
                    }
                    slowest = slowest.max(t.elapsed());
                }
                (ok, slowest, errors)
            })
        })
        .collect();
    let mut total = (0, Duration::ZERO, Vec::new());
    for t in threads {
        let (ok, slowest, errors) = t.join().expect("client thread");
        total.0 += ok;
        total.1 = total.1.max(slowest);
        total.2.extend(errors);
    }
    total
}

#[test]
fn a_stopped_rsgid_never_stalls_an_app() {
    let mut e = Emperor::start(&NO_RESCAN);
    let app = e.dir().join("chatty.py");
    std::fs::write(&app, CHATTY_APP).expect("write the app");
    let wsgi = path_str(&app).to_owned();
    e.write_vassal(
        "master",
        &format!("[uwsgi]\nwsgi-file = {wsgi}\nmaster = true\nprocesses = 2\n"),
    );
    e.write_vassal(
        "single",
        &format!("[uwsgi]\nwsgi-file = {wsgi}\nthreads = 2\n"),
    );
    e.wait_serving("master", "/", DEADLINE);
    e.wait_serving("single", "/", DEADLINE);

    // rsgid stops reading: SIGSTOP for the length of the load.
    e.signal(nix::sys::signal::Signal::SIGSTOP);
    let results = std::thread::scope(|s| {
        let runs: Vec<_> = ["master", "single"]
            .map(|name| {
                let addr = e.socket(name);
                s.spawn(move || (name, hammer(&addr, Duration::from_secs(6))))
            })
            .into_iter()
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("load"))
            .collect::<Vec<_>>()
    });
    e.signal(nix::sys::signal::Signal::SIGCONT);
    for (name, (ok, slowest, errors)) in &results {
        assert!(errors.is_empty(), "{name}: {errors:?}");
        // Enough output to fill any pipe rsgid was not reading: 64 KiB in ~220 requests.
        assert!(*ok > 1000, "{name}: only {ok} requests in 6 s");
        // No request waited for rsgid (a blocked write would wait the whole 6 s).
        assert!(
            *slowest < Duration::from_secs(2),
            "{name}: a request took {slowest:?} while rsgid was stopped"
        );
    }
    // Once rsgid reads again, each process says what it lost with its next output
    // (here: the next requests' lines), and rsgid counts it.
    wait_until(
        DEADLINE,
        "rsgi_vassal_output_dropped_lines_total counts",
        || {
            for n in ["master", "single"] {
                let _ = uwsgi_get(&e.socket(n), "/");
            }
            let text = metrics(&e);
            ["master", "single"].iter().all(|n| {
                text.lines().any(|l| {
                    l.strip_prefix(&format!(
                        "rsgi_vassal_output_dropped_lines_total{{vassal=\"{n}\"}} "
                    ))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
                })
            })
        },
    );
    assert!(
        e.log()
            .contains("line(s) of output dropped: the emperor was not reading"),
        "no notice in the log"
    );
    // And the apps still log normally afterwards.
    let mark = e.log_mark();
    uwsgi_get(&e.socket("master"), "/").expect("GET after the stall");
    e.wait_log_since(mark, "chatty print", DEADLINE);
}

#[test]
fn sigterm_stops_rsgid_within_stop_timeout_plus_a_second() {
    let mut e = Emperor::start(&["--stop-timeout", "2"]);
    // A master vassal with a request that hangs, and a single-process one likewise.
    let app = path_str(&apps_dir().join("environ_app.py")).to_owned();
    e.write_vassal(
        "m",
        &format!("[uwsgi]\nwsgi-file = {app}\nmaster = true\nprocesses = 2\n"),
    );
    e.write_vassal("s", &format!("[uwsgi]\nwsgi-file = {app}\n"));
    e.wait_serving("m", "/pid", DEADLINE);
    e.wait_serving("s", "/pid", DEADLINE);
    let hung: Vec<_> = ["m", "s"]
        .map(|n| {
            let addr = e.socket(n);
            std::thread::spawn(move || uwsgi_get(&addr, "/slow?s=60"))
        })
        .into_iter()
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    e.signal(nix::sys::signal::Signal::SIGTERM);
    e.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "rsgid took {took:?} to stop with stop_timeout = 2 s"
    );
    // Nothing is left behind.
    wait_until(Duration::from_secs(5), "every vassal process gone", || {
        e.vassal_pids("m").is_empty() && e.vassal_pids("s").is_empty()
    });
    drop(hung);
}
