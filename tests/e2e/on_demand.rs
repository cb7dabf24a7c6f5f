//! On-demand vassals and `idle` (issue 20 items 1 and 2) end to end: a real rsgid, real
//! `rsgi` vassals serving `tests/apps/reload_app.py` (every answer says which process
//! answered) on unix sockets in the temp dir, and the real `rsgictl`. A sleeping vassal
//! has no process, the first connection wakes it and is answered, `idle` puts it back to
//! sleep, and connections that race the idle stop are all answered.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use rsgi_e2e::*;

/// Generous bound for every wait on a busy machine.
const DEADLINE: Duration = Duration::from_secs(40);

/// A vassal serving `tests/apps/reload_app.py` ("v1 <pid>") with `extra` lines.
fn ini(extra: &str) -> String {
    let app = apps_dir().join("reload_app.py");
    format!("[uwsgi]\nwsgi-file = {}\n{extra}", path_str(&app))
}

/// The processes (other than rsgid) whose command line mentions `dir`: the vassals.
fn vassal_processes(dir: &Path, rsgid: i32) -> Vec<i32> {
    let needle = path_str(dir).to_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if pid != rsgid && cmdline.contains(&needle) && cmdline.contains("rsgi") {
            pids.push(pid);
        }
    }
    pids
}

/// One uwsgi `GET /` to `addr`: the pid that answered "v1 <pid>".
fn answer(addr: &Addr) -> Result<i32, String> {
    match uwsgi_get(addr, "/") {
        Ok(r) if r.status == 200 => r
            .text()
            .strip_prefix("v1 ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("unexpected body {:?}", r.text())),
        Ok(r) => Err(format!("status {} body {:?}", r.status, r.text())),
        Err(e) => Err(e.to_string()),
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_sleeping_vassal_has_no_process_and_its_first_connection_wakes_it() {
    let metrics = free_addr();
    let mut e = Emperor::start(&["--metrics", &metrics.to_string()]);
    e.write_vassal("app", &ini("on-demand = true\n"));
    let v = e.wait_state("app", "sleeping", DEADLINE);
    assert!(v["pid"].is_null(), "a sleeping vassal has no pid: {v}");
    // rsgid bound the socket, and nothing else runs for the vassal.
    let sock = e.run_dir().join("app.sock");
    assert!(sock.exists(), "rsgid holds {}", sock.display());
    assert_eq!(
        vassal_processes(e.dir(), e.pid().as_raw()),
        Vec::<i32>::new(),
        "no rsgi process while sleeping"
    );
    assert!(e.log().contains("sleeping: rsgid holds the sockets"));
    // Sleeping serves on demand: rsgictl's exit code and /readyz say so.
    let (code, _) = e.rsgictl(&["list"]);
    assert_eq!(
        code, 0,
        "a sleeping vassal counts as running for rsgictl list"
    );
    let (code, out) = e.rsgictl(&["health"]);
    assert_eq!(code, 0, "readyz with a sleeping vassal: {out}");
    let scrape = get(&Addr::Tcp(metrics), "/metrics").text();
    for series in [
        "rsgi_vassal_state{vassal=\"app\",state=\"sleeping\"} 1",
        "rsgi_vassal_state{vassal=\"app\",state=\"ready\"} 0",
        "rsgi_vassal_ready{vassal=\"app\"} 1",
    ] {
        assert!(
            scrape.lines().any(|l| l == series),
            "no {series} in:\n{scrape}"
        );
    }

    // The first connection waits in the backlog and is answered by the new vassal.
    let pid = answer(&e.socket("app")).expect("the first request to a sleeping vassal");
    let v = e.wait_state("app", "ready", DEADLINE);
    assert_eq!(
        v["pid"], pid,
        "the vassal that answered is the one rsgid started"
    );
    assert!(e.log().contains("a connection waits: starting"));
    // And it keeps serving.
    assert_eq!(answer(&e.socket("app")), Ok(pid));
}

#[test]
fn idle_puts_it_back_to_sleep_and_the_next_request_wakes_it_again() {
    let mut e = Emperor::start(&[]);
    e.write_vassal("app", &ini("on-demand = true\nidle = 2\n"));
    e.wait_state("app", "sleeping", DEADLINE);
    let first = answer(&e.socket("app")).expect("first request");
    e.wait_state("app", "ready", DEADLINE);
    // No request for 2 s: it stops, rsgid keeps the socket.
    e.wait_state("app", "sleeping", DEADLINE);
    wait_until(DEADLINE, "the idle vassal's process to be gone", || {
        !alive(first)
    });
    assert!(e.log().contains("(idle): stopping"), "{}", e.log());
    assert!(e.run_dir().join("app.sock").exists());
    // The next request starts a new process.
    let second = answer(&e.socket("app")).expect("request after the idle stop");
    assert_ne!(first, second, "a new process answers after the sleep");
    // The metrics ledger counts both generations' requests.
    e.wait_state("app", "ready", DEADLINE);
}

#[test]
fn idle_without_on_demand_also_sleeps_and_wakes() {
    // uWSGI's `idle` (cheap mode) respawns on the next connection; under rsgid the
    // whole vassal sleeps, started as usual at first.
    let mut e = Emperor::start(&[]);
    e.write_vassal("app", &ini("idle = 2\ndie-on-idle = true\n"));
    let v = e.wait_state("app", "ready", DEADLINE);
    let first = v["pid"].as_i64().unwrap() as i32;
    e.wait_state("app", "sleeping", DEADLINE);
    wait_until(DEADLINE, "the idle vassal's process to be gone", || {
        !alive(first)
    });
    let second = answer(&e.socket("app")).expect("request after the idle stop");
    assert_ne!(first, second);
}

#[test]
fn the_on_demand_setting_makes_every_vassal_sleep_unless_it_says_otherwise() {
    let mut e = Emperor::start(&["--on-demand"]);
    e.write_vassal("lazy", &ini(""));
    e.write_vassal("eager", &ini("on-demand = false\n"));
    e.wait_state("lazy", "sleeping", DEADLINE);
    e.wait_state("eager", "ready", DEADLINE);
    // rsgictl start wakes a sleeping vassal without a connection.
    let (code, out) = e.rsgictl(&["start", "lazy"]);
    assert_eq!(code, 0, "{out}");
    e.wait_state("lazy", "ready", DEADLINE);
}

#[test]
fn connections_that_race_the_idle_stop_are_all_answered() {
    let mut e = Emperor::start(&[]);
    e.write_vassal("app", &ini("on-demand = true\nidle = 1\n"));
    e.wait_state("app", "sleeping", DEADLINE);
    let addr = e.socket("app");
    let rounds = 5;
    let mut raced = 0;
    let mut answered = 0;
    for round in 0..rounds {
        let mark = e.log_mark();
        let pid = answer(&addr).unwrap_or_else(|err| panic!("round {round}: wake: {err}"));
        // rsgid's idle decision: SIGTERM follows at once.
        e.wait_log_since(mark, "(idle): stopping", DEADLINE);
        // Connect every 5 ms until the stopping process is gone (reaped by rsgid): the
        // first ones may still be served by it; those that reach the backlog after it
        // stopped accepting must be noticed by rsgid once it exits. Then no further
        // connection: nothing else would wake the vassal for them.
        let mut clients = Vec::new();
        loop {
            let addr = addr.clone();
            clients.push(std::thread::spawn(move || answer(&addr)));
            std::thread::sleep(Duration::from_millis(5));
            if !alive(pid) || clients.len() >= 1000 {
                break;
            }
        }
        for c in clients {
            let by = c.join().unwrap().unwrap_or_else(|err| {
                panic!(
                    "round {round}: a connection around the idle stop failed: {err}\n{}",
                    e.log()
                )
            });
            answered += 1;
            if by != pid {
                raced += 1;
            }
        }
        // Let it go idle again before the next round.
        e.wait_state("app", "sleeping", DEADLINE);
    }
    assert!(
        raced > 0,
        "no connection had to wait for the next start ({answered} answered by the stopping process)"
    );
}
