//! Vassals from etcd v3 (issue 19) end to end: a real etcd (Debian's `etcd-server`,
//! started here on 127.0.0.1 with free ports and a temp data dir, [`Etcd`] in the
//! harness), real `rsgid` instances as hosts (separate run dirs), real vassals.
//!
//! Every wait has a deadline; the figures (put to first answer on three hosts, change to
//! new generation serving, catch-up after the store comes back) are printed, so
//! `--nocapture` shows them; nothing asserts on speed beyond generous bounds.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rsgi_e2e::*;

/// Generous bound for waits on a busy 2-core machine.
pub(super) const DEADLINE: Duration = Duration::from_secs(30);

/// A vassal serving `tests/apps/environ_app.py` (`/pid` answers the worker's pid) on
/// its default socket.
pub(super) fn pid_ini(extra: &str) -> String {
    format!(
        "[uwsgi]\nwsgi-file = {}\n{extra}",
        path_str(&apps_dir().join("environ_app.py"))
    )
}

/// The pid that answers `/pid` on a uwsgi socket.
pub(super) fn served_pid(addr: &Addr) -> Option<i32> {
    let r = uwsgi_get(addr, "/pid").ok()?;
    (r.status == 200).then(|| r.text().trim().parse().ok())?
}

/// rsgid with the etcd source `url` (beside the fixture's own vassal directory).
pub(super) fn host(url: &str, extra: &[&str]) -> Emperor {
    let mut args = vec!["--vassals", url];
    args.extend_from_slice(extra);
    Emperor::start(&args)
}

/// The state of source `i` (0: the fixture's directory, 1: the etcd source).
pub(super) fn source(e: &Emperor, i: usize) -> serde_json::Value {
    e.list_json()["sources"][i].clone()
}

/// One vassal's row of `rsgictl --json list`, if listed.
pub(super) fn vassal(e: &Emperor, name: &str) -> Option<serde_json::Value> {
    e.list_json()["vassals"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
}

pub(super) fn generation(e: &Emperor, name: &str) -> u64 {
    vassal(e, name).map_or(0, |v| v["generation"].as_u64().unwrap_or(0))
}

#[test]
fn three_hosts_follow_one_prefix() {
    let etcd = Etcd::start();
    let url = etcd.url("/rsgi/all/");
    let mut hosts: Vec<Emperor> = (0..3).map(|_| host(&url, &[])).collect();

    // A put starts the vassal on every host.
    let t0 = Instant::now();
    etcd.put("/rsgi/all/app.ini", &pid_ini(""));
    let mut firsts = Vec::new();
    for h in &mut hosts {
        h.wait_serving("app", "/pid", DEADLINE);
        firsts.push(t0.elapsed());
    }
    eprintln!("put -> first answer on three hosts: {firsts:?}");

    // status names the key and its mod revision; list names the source.
    let (code, status) = hosts[0].rsgictl(&["status", "app"]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("key           /rsgi/all/app.ini"),
        "{status}"
    );
    assert!(status.contains("mod revision"), "{status}");
    let row = vassal(&hosts[0], "app").unwrap();
    assert_eq!(row["origin"]["source"], url.as_str(), "{row}");
    assert_eq!(row["origin"]["source_state"], "up", "{row}");

    // A change reloads every host with zero failed requests under load.
    let addrs: Vec<Addr> = hosts.iter().map(|h| h.socket("app")).collect();
    let old: Vec<i32> = addrs.iter().map(|a| served_pid(a).unwrap()).collect();
    let loads: Vec<Load> = addrs.iter().map(|a| Load::uwsgi(1, a, "/pid")).collect();
    for l in &loads {
        l.wait_more_ok(10, DEADLINE);
    }
    let t0 = Instant::now();
    etcd.put("/rsgi/all/app.ini", &pid_ini("# v2\n"));
    let mut news = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        wait_until(
            DEADLINE,
            "the new generation to serve on every host",
            || served_pid(a).is_some_and(|p| p != old[i]),
        );
        news.push(t0.elapsed());
    }
    eprintln!("change -> new generation serving on three hosts: {news:?}");
    for l in &loads {
        l.wait_more_ok(10, DEADLINE);
    }
    for (i, l) in loads.into_iter().enumerate() {
        l.stop()
            .assert_no_failures(&format!("host {i} during the change"));
    }
    for h in &hosts {
        // The new generation may answer a moment before rsgid has read its READY=1.
        wait_until(DEADLINE, "generation 2 on every host", || {
            generation(h, "app") == 2
        });
    }

    // rsgictl reload works for an etcd vassal.
    let (code, out) = hosts[1].rsgictl(&["reload", "--wait", "app"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(generation(&hosts[1], "app"), 3);

    // A delete retires everywhere.
    etcd.delete("/rsgi/all/app.ini");
    for h in &mut hosts {
        wait_until(DEADLINE, "app to be retired on every host", || {
            vassal(h, "app").is_none()
        });
        assert!(h.vassal_pids("app").is_empty(), "app still runs");
    }
}

#[test]
fn a_stopped_store_disturbs_nothing() {
    let etcd = Etcd::start();
    let url = etcd.url("/rsgi/h/");
    let metrics = free_addr();
    let metrics_arg = metrics.to_string();
    let mut e = host(&url, &["--metrics", &metrics_arg]);
    etcd.put("/rsgi/h/app.ini", &pid_ini(""));
    e.write_vassal("local", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);
    e.wait_serving("local", "/pid", DEADLINE);
    let app = e.socket("app");
    let pid = served_pid(&app).unwrap();

    // Longer than the client's idle check plus its request timeout (5 s + 3 s).
    etcd.signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    wait_until(
        DEADLINE,
        "the source to report the store unreachable",
        || source(&e, 1)["state"] == "unreachable",
    );
    eprintln!(
        "store stopped -> source unreachable: {:?}",
        stopped.elapsed()
    );
    while stopped.elapsed() < Duration::from_secs(10) {
        // Control answers promptly, the vassal serves as before.
        let t = Instant::now();
        let _ = e.list_json();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "rsgictl list took {:?}",
            t.elapsed()
        );
        assert_eq!(served_pid(&app), Some(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let m = get(&Addr::Tcp(metrics), "/metrics").text();
    let up_line = format!("rsgi_source_up{{source=\"{url}\"}} 0");
    assert!(m.contains(&up_line), "no {up_line:?} in:\n{m}");
    assert!(m.contains("rsgi_source_errors_total"), "{m}");
    // A directory vassal still reloads meanwhile.
    let mark = e.log_mark();
    e.write_vassal("local", &pid_ini("# changed\n"));
    e.wait_log_since(mark, "reloaded vassal=local gen=2", DEADLINE);
    assert_eq!(vassal(&e, "app").unwrap()["state"], "ready");

    etcd.signal(Signal::SIGCONT);
    let t0 = Instant::now();
    etcd.put("/rsgi/h/two.ini", &pid_ini(""));
    e.wait_serving("two", "/pid", DEADLINE);
    let took = t0.elapsed();
    eprintln!("store resumed -> put applied and serving: {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    wait_until(DEADLINE, "the source to be up again", || {
        source(&e, 1)["state"] == "up"
    });
    let m = get(&Addr::Tcp(metrics), "/metrics").text();
    assert!(
        m.contains(&format!("rsgi_source_up{{source=\"{url}\"}} 1")),
        "{m}"
    );
    assert!(
        m.contains(&format!("rsgi_source_revision{{source=\"{url}\"}}")),
        "{m}"
    );
    assert_eq!(served_pid(&app), Some(pid), "app was disturbed");
}

#[test]
fn restarted_while_the_store_is_down_serves_from_its_copy() {
    let mut etcd = Etcd::start();
    let url = etcd.url("/rsgi/h/");
    let mut e = host(&url, &[]);
    etcd.put("/rsgi/h/app.ini", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);

    etcd.kill();
    e.stop(DEADLINE);
    e.restart();
    // The last known set runs, and says it is stale.
    e.wait_serving("app", "/pid", DEADLINE);
    let src = source(&e, 1);
    assert_eq!(src["state"], "stale", "{src}");
    assert_eq!(
        vassal(&e, "app").unwrap()["origin"]["source_state"],
        "stale"
    );
    let (_, text) = e.rsgictl(&["list"]);
    assert!(text.contains("stale"), "{text}");

    // The store returns: rsgid catches up.
    etcd.restart();
    wait_until(DEADLINE, "the source to be up again", || {
        source(&e, 1)["state"] == "up"
    });
    etcd.put("/rsgi/h/app.ini", &pid_ini("# v2\n"));
    wait_until(DEADLINE, "the change to be applied", || {
        generation(&e, "app") == 2
    });
}

#[test]
fn compaction_while_cut_off_converges() {
    let mut etcd = Etcd::start();
    let url = etcd.url("/rsgi/c/");
    let mut e = host(&url, &[]);
    etcd.put("/rsgi/c/a.ini", &pid_ini(""));
    etcd.put("/rsgi/c/b.ini", &pid_ini(""));
    e.wait_serving("a", "/pid", DEADLINE);
    e.wait_serving("b", "/pid", DEADLINE);

    // rsgid is cut off: its watch breaks (the store restarts), then the store changes
    // and compacts its history, so rsgid must resume from a compacted revision.
    e.signal(Signal::SIGSTOP);
    etcd.restart();
    etcd.put("/rsgi/c/a.ini", &pid_ini("# v2\n"));
    etcd.delete("/rsgi/c/b.ini");
    etcd.put("/rsgi/c/c.ini", &pid_ini(""));
    etcd.put("/rsgi/c/filler", "[uwsgi]\n# x\n");
    etcd.delete("/rsgi/c/filler");
    let compacted = etcd.compact();
    let mark = e.log_mark();
    e.signal(Signal::SIGCONT);

    e.wait_log_since(
        mark,
        "revision compacted; reading the prefix again",
        DEADLINE,
    );
    e.wait_serving("c", "/pid", DEADLINE);
    wait_until(DEADLINE, "b to be retired", || vassal(&e, "b").is_none());
    wait_until(DEADLINE, "a to be reloaded", || generation(&e, "a") == 2);
    let src = source(&e, 1);
    assert!(src["revision"].as_i64().unwrap() >= compacted, "{src}");
    assert_eq!(src["state"], "up", "{src}");
}

#[test]
fn tls_with_client_certificates() {
    let certs_dir = tempdir();
    let certs = EtcdCerts::make(certs_dir.path());
    let etcd = Etcd::start_tls(certs.clone());
    let url = etcd.url("/rsgi/tls/");
    let (ca, cert, key) = (
        path_str(&certs.ca).to_owned(),
        path_str(&certs.client_cert).to_owned(),
        path_str(&certs.client_key).to_owned(),
    );
    let mut e = host(
        &url,
        &["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key],
    );
    etcd.put("/rsgi/tls/app.ini", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);
    assert_eq!(source(&e, 1)["state"], "up");

    // Without the client certificate the server refuses: the source says so and
    // nothing runs from it.
    let e2 = host(&url, &["--etcd-ca", &ca]);
    let src = source(&e2, 1);
    assert_ne!(src["state"], "up", "{src}");
    assert!(src["errors"].as_u64().unwrap() > 0, "{src}");
    assert!(vassal(&e2, "app").is_none());
}

#[test]
fn user_and_password_from_a_file() {
    let mut etcd = Etcd::start();
    etcd.enable_auth("s3cret");
    let url = etcd.url("/rsgi/auth/");
    let dir = tempdir();
    let good = write_file(dir.path(), "pw", "s3cret\n");
    let wrong = write_file(dir.path(), "wrong", "nope\n");
    let mut e = host(
        &url,
        &[
            "--etcd-user",
            "root",
            "--etcd-password-file",
            path_str(&good),
        ],
    );
    etcd.put("/rsgi/auth/app.ini", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);
    assert_eq!(source(&e, 1)["state"], "up");

    // A wrong password: the source says why, nothing runs from it.
    let e2 = host(
        &url,
        &[
            "--etcd-user",
            "root",
            "--etcd-password-file",
            path_str(&wrong),
        ],
    );
    let src = source(&e2, 1);
    assert_ne!(src["state"], "up", "{src}");
    assert!(
        src["message"]
            .as_str()
            .unwrap_or_default()
            .contains("authentication failed"),
        "{src}"
    );
    assert!(vassal(&e2, "app").is_none());
}

#[test]
fn bad_values_name_the_key_and_disturb_nothing() {
    let etcd = Etcd::start();
    let url = etcd.url("/rsgi/b/");
    let mut e = host(&url, &[]);
    etcd.put("/rsgi/b/good.ini", &pid_ini(""));
    e.wait_serving("good", "/pid", DEADLINE);
    let good = served_pid(&e.socket("good")).unwrap();

    etcd.put("/rsgi/b/garbage.ini", "this is not an ini file\n\u{1}\u{2}");
    etcd.put("/rsgi/b/unknown.ini", "[uwsgi]\nproccesses = 4\n");
    wait_until(DEADLINE, "both bad vassals to fail", || {
        ["garbage", "unknown"]
            .iter()
            .all(|n| vassal(&e, n).is_some_and(|v| v["state"] == "failed"))
    });
    let reason = vassal(&e, "unknown").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("etcd key /rsgi/b/unknown.ini"), "{reason}");
    assert!(reason.contains("proccesses"), "{reason}");
    let reason = vassal(&e, "garbage").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("etcd key /rsgi/b/garbage.ini"), "{reason}");

    // A bad value for a running vassal: the running generation stays.
    etcd.put("/rsgi/b/good.ini", "[uwsgi]\nprocesses = many\n");
    wait_until(DEADLINE, "the rejection to be logged", || {
        e.log().contains("etcd key /rsgi/b/good.ini")
    });
    assert_eq!(served_pid(&e.socket("good")), Some(good));
    assert_eq!(vassal(&e, "good").unwrap()["state"], "ready");
    // `rsgictl check` checks a file before it is put.
    let dir = tempdir();
    let bad = write_file(dir.path(), "next.ini", "[uwsgi]\nproccesses = 4\n");
    let (code, out) = e.rsgictl(&["check", path_str(&bad)]);
    assert_ne!(code, 0, "{out}");
    // Keys deeper than one level are no vassals.
    etcd.put("/rsgi/b/deeper/x.ini", &pid_ini(""));
    etcd.put("/rsgi/b/after.ini", &pid_ini(""));
    e.wait_serving("after", "/pid", DEADLINE);
    assert!(vassal(&e, "x").is_none());
}

#[test]
fn two_sources_naming_the_same_vassal() {
    let etcd = Etcd::start();
    let url = etcd.url("/rsgi/s/");
    let mut e = host(&url, &[]);
    e.write_vassal("app", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);
    let pid = served_pid(&e.socket("app")).unwrap();

    etcd.put("/rsgi/s/app.ini", &pid_ini("# from etcd\n"));
    wait_until(DEADLINE, "the refusal to be logged", || {
        let log = e.log();
        log.contains("refused from etcd://")
            && log.contains("comes from")
            && log.contains("vassals")
    });
    let src = source(&e, 1);
    assert_eq!(src["refused"][0], "app", "{src}");
    let row = vassal(&e, "app").unwrap();
    assert_eq!(row["generation"], 1, "{row}");
    assert!(
        row["origin"]["source"]
            .as_str()
            .unwrap()
            .ends_with("/vassals"),
        "{row}"
    );
    assert_eq!(served_pid(&e.socket("app")), Some(pid));
}

/// `examples/prometheus/` is valid for Prometheus, and every rsgi metric its alerts use
/// is one a real rsgid with an etcd source serves (`promtool check metrics` clean).
#[test]
fn the_fleet_prometheus_examples_fit_what_rsgid_serves() {
    let promtool = promtool();
    let dir = repo_dir().join("examples/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "rsgid-alerts.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let etcd = Etcd::start();
    let metrics = free_addr();
    let metrics_arg = metrics.to_string();
    let mut e = host(&etcd.url("/rsgi/m/"), &["--metrics", &metrics_arg]);
    etcd.put("/rsgi/m/app.ini", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);
    let text = get(&Addr::Tcp(metrics), "/metrics").text();
    let rules = std::fs::read_to_string(dir.join("rsgid-alerts.yml")).unwrap();
    let used: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("rsgi_"))
        .collect();
    assert!(used.contains("rsgi_source_up"), "{used:?}");
    for name in used {
        assert!(
            text.contains(&format!("\n{name}{{")),
            "the alerts use {name}, which rsgid does not serve:\n{text}"
        );
    }
    assert_promtool_accepts_metrics(&text);
}

#[test]
fn a_dead_endpoint_in_the_list_is_skipped() {
    let etcd = Etcd::start();
    // Nothing listens on the first endpoint.
    let dead = free_port();
    let url = format!("etcd://127.0.0.1:{dead},{}/rsgi/f/", etcd.endpoint());
    let mut e = host(&url, &[]);
    etcd.put("/rsgi/f/app.ini", &pid_ini(""));
    e.wait_serving("app", "/pid", DEADLINE);
    assert_eq!(source(&e, 1)["state"], "up");
}
