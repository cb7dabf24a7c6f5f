//! Upgrading rsgid in place (issue 20 item 3) end to end: a real rsgid started from a
//! copy of the built binary in the temp dir, real vassals (`tests/apps/reload_app.py`,
//! whose answers name the process), the real `rsgictl`, a client load, `/metrics`.
//!
//! "A build with a changed version string": the test copies the built rsgid and
//! rewrites its build tag in the copy (`rsgid-build:<version>+local____...`, a
//! fixed-length field made for this, see daemon/src/upgrade.rs) to `+upgraded__...`,
//! then installs it over the running binary's file the way a package manager does
//! (write a new file, rename it into place). The code is the same; the version string
//! rsgid reports is not. Building a second rsgid from source inside the test would take
//! minutes on the test machine.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rsgi_e2e::*;

/// Generous bound for every wait on a busy machine.
const DEADLINE: Duration = Duration::from_secs(40);

/// The build tag field as the built binary holds it, and a replacement of equal length.
const TAG: &[u8] = b"+local______________";

/// A vassal serving `tests/apps/reload_app.py` ("v1 <pid>") with `extra` lines.
fn ini(extra: &str) -> String {
    let app = apps_dir().join("reload_app.py");
    format!("[uwsgi]\nwsgi-file = {}\n{extra}", path_str(&app))
}

/// Copy the built rsgid to `<dir>/bin/rsgid` (the file rsgid is started from).
fn install_copy(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let path = bin_dir.join("rsgid");
    std::fs::copy(bin("rsgid"), &path).unwrap();
    path
}

/// Install a build of rsgid whose tag reads `+<tag>` over `path`: a new file renamed
/// into place (the running binary's file is replaced, not rewritten).
fn install_build(path: &Path, tag: &str) {
    let mut bytes = std::fs::read(bin("rsgid")).unwrap();
    let at = bytes
        .windows(TAG.len())
        .position(|w| w == TAG)
        .expect("the build tag field in the built rsgid");
    let mut new = format!("+{tag}").into_bytes();
    assert!(new.len() <= TAG.len());
    new.resize(TAG.len(), b'_');
    bytes[at..at + TAG.len()].copy_from_slice(&new);
    install_bytes(path, &bytes);
}

fn install_bytes(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The value of `series` in a `/metrics` scrape.
fn metric(addr: &Addr, series: &str) -> f64 {
    let text = get(addr, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// `rsgictl upgrade`: (exit code, stdout, stderr).
fn upgrade(e: &Emperor) -> (i32, String, String) {
    let out = std::process::Command::new(bin("rsgictl"))
        .env_remove("RSGI_CONTROL")
        .arg("--socket")
        .arg(e.control_socket())
        .arg("upgrade")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn upgrade_under_load_keeps_every_vassal_pid_and_loses_no_request() {
    let dir = tempdir();
    let program = install_copy(dir.path());
    let metrics = Addr::Tcp(free_addr());
    let mut e = Emperor::start_binary(&program, &["--metrics", &metrics.arg()]);
    let rsgid = e.pid();
    e.write_vassal("app", &ini("processes = 2\nmaster = true\n"));
    e.write_vassal("single", &ini(""));
    e.write_vassal("lazy", &ini("on-demand = true\n"));
    let app_pid = e.wait_state("app", "ready", DEADLINE)["pid"].clone();
    let single_pid = e.wait_state("single", "ready", DEADLINE)["pid"].clone();
    e.wait_state("lazy", "sleeping", DEADLINE);
    assert!(e.log().contains("build=\"rsgid-build:"), "{}", e.log());

    let load = Load::uwsgi(2, &e.socket("app"), "/");
    let single_load = Load::uwsgi(1, &e.socket("single"), "/");
    load.wait_more_ok(20, DEADLINE);
    single_load.wait_more_ok(10, DEADLINE);
    let series = "rsgi_requests_total{vassal=\"app\",class=\"2xx\"}";
    let before = metric(&metrics, series);
    assert!(before > 0.0);

    // A new build is installed over the binary rsgid was started from.
    install_build(&program, "upgraded");
    let mark = e.log_mark();
    let (code, out, err) = upgrade(&e);
    assert_eq!(code, 0, "rsgictl upgrade: {out}{err}");
    assert!(out.contains("re-executing"), "{out}");
    e.wait_log_since(mark, "rsgid upgraded in place", DEADLINE);
    let after_log = e.log_since(mark);
    assert!(
        after_log.contains("to=rsgid-build:0.1.0+upgraded"),
        "the new build took over: {after_log}"
    );

    // Requests keep being answered by the same processes.
    load.wait_more_ok(20, DEADLINE);
    single_load.wait_more_ok(10, DEADLINE);
    assert_eq!(e.pid(), rsgid, "the same rsgid process");
    assert_eq!(
        e.vassal_entry("app")["pid"],
        app_pid,
        "app was not restarted"
    );
    assert_eq!(
        e.vassal_entry("single")["pid"],
        single_pid,
        "single was not restarted"
    );
    assert_eq!(e.vassal_entry("lazy")["state"], "sleeping");
    // The metrics listener was handed over, and the counters did not restart.
    let after = metric(&metrics, series);
    assert!(after > before, "{series}: {before} then {after}");

    // A second upgrade, by signal, from the state the first one handed over.
    install_build(&program, "again");
    let mark = e.log_mark();
    e.signal(nix::sys::signal::Signal::SIGUSR2);
    e.wait_log_since(mark, "rsgid upgraded in place", DEADLINE);
    assert!(e.log_since(mark).contains("to=rsgid-build:0.1.0+again"));
    load.wait_more_ok(20, DEADLINE);
    let report = load.stop();
    let single_report = single_load.stop();
    assert_eq!(
        report.failed, 0,
        "failed requests during the upgrades: {report:?}"
    );
    assert_eq!(single_report.failed, 0, "{single_report:?}");
    assert_eq!(e.vassal_entry("app")["pid"], app_pid);
    assert_eq!(e.pid(), rsgid);

    // Everything still works: the sleeping vassal's socket, a reload, the exit of an
    // adopted process.
    let woke = uwsgi_get(&e.socket("lazy"), "/").unwrap();
    assert_eq!(woke.status, 200, "{}", woke.text());
    let (code, out) = e.rsgictl(&["reload", "app", "--wait"]);
    assert_eq!(code, 0, "reload after the upgrades: {out}");
    let new_pid = e.wait_state("app", "ready", DEADLINE)["pid"].clone();
    assert_ne!(new_pid, app_pid, "the reload started a new generation");
    let app_pid = app_pid.as_i64().unwrap() as i32;
    wait_until(DEADLINE, "the adopted old generation to exit", || {
        e.log().contains(&format!("pid={app_pid} exit="))
    });
    assert!(metric(&metrics, series) >= after);
}

#[test]
fn a_broken_new_binary_is_refused_and_the_running_rsgid_stays() {
    let dir = tempdir();
    let program = install_copy(dir.path());
    let mut e = Emperor::start_binary(&program, &[]);
    let rsgid = e.pid();
    e.write_vassal("app", &ini(""));
    let app_pid = e.wait_state("app", "ready", DEADLINE)["pid"].clone();

    // A "new binary" that cannot run the check.
    install_bytes(&program, b"#!/bin/sh\necho 'not rsgid' >&2\nexit 1\n");
    let (code, out, err) = upgrade(&e);
    assert_eq!(code, 1, "rsgictl upgrade must fail: {out}{err}");
    assert!(err.contains("upgrade refused"), "{err}");
    assert!(
        err.contains("not rsgid"),
        "the check's output is shown: {err}"
    );
    // By signal too: refused, logged.
    let mark = e.log_mark();
    e.signal(nix::sys::signal::Signal::SIGUSR2);
    e.wait_log_since(mark, "upgrade refused", DEADLINE);

    assert!(e.try_exit().is_none(), "rsgid runs on");
    assert_eq!(e.pid(), rsgid);
    assert_eq!(e.vassal_entry("app")["pid"], app_pid);
    let r = uwsgi_get(&e.socket("app"), "/").unwrap();
    assert_eq!(r.status, 200);
    // And a state this binary does not understand is refused by the check itself.
    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        br#"{"version":999,"from_build":"x","listeners":{},"scans":0,"vassals":[]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(bin("rsgid"))
        .arg("--check-upgrade-state")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state version 999"), "{err}");
    std::fs::write(&state, b"not json").unwrap();
    let out = std::process::Command::new(bin("rsgid"))
        .arg("--check-upgrade-state")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
