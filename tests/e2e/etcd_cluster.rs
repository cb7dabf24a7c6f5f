//! rsgid's etcd source against a real three-member etcd cluster (issue 19 follow-up):
//! [`EtcdCluster`] starts Debian's `etcd-server` three times on 127.0.0.1 (free client and
//! peer ports, a data dir each), rsgid is given the three endpoints, and the member it
//! follows (found in `/proc`: rsgid's established connections) dies (SIGKILL, the
//! leader), hangs (SIGSTOP, a follower), or is left alone without a quorum.
//!
//! Each test checks that no change is lost (puts made through the surviving members
//! while rsgid switches reach it: a new vassal starts, a changed one reloads, a deleted
//! one stops), that the vassals serve all along (a client load with 0 failed requests),
//! and that `rsgictl list` and `rsgi_source_up` tell the truth. Switch times are printed
//! (`--nocapture`); the only bound asserted is a generous one.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rsgi_e2e::*;

use super::etcd::{generation, host, pid_ini, served_pid, source, vassal, DEADLINE};

/// The longest a switch to another member may take: rsgid notices a hung member within
/// its idle check plus its request timeout (5 s + 3 s), a dead one at once; the rest is
/// slack for a busy machine.
const SWITCH_BOUND: Duration = Duration::from_secs(20);

/// rsgid following a cluster, with its metrics address.
struct Host {
    e: Emperor,
    url: String,
    metrics: SocketAddr,
    prefix: &'static str,
}

impl Host {
    /// The etcd source's row in `rsgictl --json list`.
    fn source(&self) -> serde_json::Value {
        source(&self.e, 1)
    }

    /// `rsgi_source_up` for the etcd source, as scraped.
    fn up_metric(&self) -> Option<String> {
        let text = get(&Addr::Tcp(self.metrics), "/metrics").text();
        let head = format!("rsgi_source_up{{source=\"{}\"}} ", self.url);
        text.lines()
            .find_map(|l| l.strip_prefix(head.as_str()))
            .map(str::to_owned)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}.ini", self.prefix)
    }
}

/// The members (indexes) rsgid holds an established connection to.
fn connected(cluster: &EtcdCluster, e: &Emperor) -> Vec<usize> {
    let ports = tcp_peer_ports(e.rsgid_pid());
    (0..cluster.members.len())
        .filter(|&i| ports.contains(&cluster.members[i].client_port()))
        .collect()
}

/// `etcdctl args` through `member`, again until it works (a put made while the members
/// elect a leader may fail; a put and a delete may be repeated).
fn ctl_retrying(member: &Etcd, args: &[&str]) {
    let end = Instant::now() + DEADLINE;
    loop {
        match member.try_ctl(args) {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < end, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// rsgid on `order`'s endpoints (it follows the first), serving `keep`, `change` and
/// `gone` from `prefix`; checks that it follows `order[0]` (its list and `/proc` agree).
fn start_host(cluster: &EtcdCluster, order: &[usize], prefix: &'static str) -> Host {
    let url = cluster.url(order, prefix);
    let metrics = free_addr();
    let mut h = Host {
        e: host(&url, &["--metrics", &metrics.to_string()]),
        url,
        metrics,
        prefix,
    };
    let first = &cluster.members[order[0]];
    for name in ["keep", "change", "gone"] {
        first.put(&h.key(name), &pid_ini(""));
    }
    for name in ["keep", "change", "gone"] {
        h.e.wait_serving(name, "/pid", DEADLINE);
    }
    wait_until(DEADLINE, "the source to be up", || {
        h.source()["state"] == "up"
    });
    let src = h.source();
    assert_eq!(src["endpoint"], first.endpoint().as_str(), "{src}");
    assert_eq!(
        connected(cluster, &h.e),
        vec![order[0]],
        "rsgid's connections"
    );
    h
}

/// Client loads on `keep` and `change`, running.
fn loads(h: &Host) -> Vec<Load> {
    let loads: Vec<Load> = ["keep", "change"]
        .iter()
        .map(|n| Load::uwsgi(1, &h.e.socket(n), "/pid"))
        .collect();
    for l in &loads {
        l.wait_more_ok(10, DEADLINE);
    }
    loads
}

/// The loads of [`loads`] still answered after `what`, with no failed request, and
/// `keep` (`keep_pid` before) was never restarted.
fn served_all_along(h: &Host, loads: Vec<Load>, keep_pid: i32, what: &str) {
    for l in &loads {
        l.wait_more_ok(10, DEADLINE);
    }
    for (l, name) in loads.into_iter().zip(["keep", "change"]) {
        l.stop().assert_no_failures(&format!("{name} while {what}"));
    }
    assert_eq!(
        served_pid(&h.e.socket("keep")),
        Some(keep_pid),
        "keep was disturbed"
    );
}

/// Through `member`: a new vassal, a change, a delete.
fn change_the_set(h: &Host, member: &Etcd) {
    ctl_retrying(member, &["put", "--", &h.key("new"), &pid_ini("")]);
    ctl_retrying(member, &["put", "--", &h.key("change"), &pid_ini("# v2\n")]);
    ctl_retrying(member, &["del", &h.key("gone")]);
}

/// The changes of [`change_the_set`] reached rsgid: `new` serves, `change` runs its
/// second generation, `gone` is retired.
fn the_changes_arrived(h: &mut Host) {
    h.e.wait_serving("new", "/pid", DEADLINE);
    wait_until(DEADLINE, "change to be reloaded", || {
        generation(&h.e, "change") == 2
    });
    wait_until(DEADLINE, "gone to be retired", || {
        vassal(&h.e, "gone").is_none()
    });
    assert!(h.e.vassal_pids("gone").is_empty(), "gone still runs");
}

/// Run `meanwhile` while watching the source from now until it is up through another
/// member than the endpoint `left` (polling `rsgictl list`); how long that took, and the states
/// seen on the way (printed).
fn switch_while(h: &Host, left: String, meanwhile: impl FnOnce()) -> Duration {
    let t0 = Instant::now();
    let (took, seen) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen: Vec<(Duration, String)> = Vec::new();
            let mut took = Duration::ZERO;
            wait_until(
                DEADLINE,
                "the source to be up through another member",
                || {
                    let src = h.source();
                    took = t0.elapsed();
                    let now = format!("{} {}", src["state"], src["endpoint"]);
                    if seen.last().map(|(_, s)| s) != Some(&now) {
                        seen.push((took, now));
                    }
                    src["state"] == "up" && src["endpoint"] != left.as_str()
                },
            );
            (took, seen)
        });
        meanwhile();
        watcher.join().unwrap()
    });
    eprintln!("switch after {took:?}; the source said: {seen:?}");
    took
}

/// After a switch: the list, `/proc` and the metrics agree on the member followed,
/// the revision is the store's, and the switch counted errors.
fn in_step_through_another(
    h: &Host,
    cluster: &EtcdCluster,
    left: usize,
    errors_before: u64,
    took: Duration,
) {
    let src = h.source();
    let via = src["endpoint"].as_str().unwrap().to_owned();
    let member = (0..cluster.members.len())
        .find(|&i| cluster.members[i].endpoint() == via)
        .unwrap_or_else(|| panic!("{via} is no member"));
    assert_ne!(member, left, "{src}");
    assert!(
        src["errors"].as_u64().unwrap() > errors_before,
        "the switch counted no error: {src}"
    );
    assert!(src.get("message").is_none(), "{src}");
    assert!(
        took < SWITCH_BOUND,
        "the switch took {took:?} (bound {SWITCH_BOUND:?})"
    );
    // Only the member it follows: nothing left hanging on the one it left.
    wait_until(
        DEADLINE,
        "rsgid's connections to be to the new member only",
        || connected(cluster, &h.e) == vec![member],
    );
    let store = cluster.members[member].revision();
    wait_until(DEADLINE, "the source's revision to be the store's", || {
        h.source()["revision"].as_i64() == Some(store)
    });
    assert_eq!(h.up_metric().as_deref(), Some("1"));
    let (code, text) = h.e.rsgictl(&["list"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("via {via}")), "{text}");
}

#[test]
fn the_leader_rsgid_follows_is_killed() {
    let mut cluster = EtcdCluster::start(3);
    let leader = cluster.wait_leader(DEADLINE);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut h = start_host(&cluster, &[leader, others[0], others[1]], "/rsgi/k/");
    let keep = served_pid(&h.e.socket("keep")).unwrap();
    let errors_before = h.source()["errors"].as_u64().unwrap();
    let loads = loads(&h);

    let took = switch_while(&h, cluster.members[leader].endpoint(), || {
        let t0 = Instant::now();
        cluster.members[leader].kill();
        // Through a survivor, as soon as the two agree on a new leader.
        let new_leader = cluster.wait_leader(DEADLINE);
        eprintln!("leader killed -> new leader: {:?}", t0.elapsed());
        change_the_set(&h, &cluster.members[new_leader]);
    });
    eprintln!("leader killed -> rsgid up through another member: {took:?}");
    the_changes_arrived(&mut h);
    in_step_through_another(&h, &cluster, leader, errors_before, took);

    served_all_along(&h, loads, keep, "the leader died");
}

#[test]
fn a_hung_member_is_left_within_a_bound() {
    let cluster = EtcdCluster::start(3);
    let leader = cluster.wait_leader(DEADLINE);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // rsgid follows a follower, which then hangs: connections to it are accepted by
    // the kernel, and nothing answers.
    let hung = others[0];
    let mut h = start_host(&cluster, &[hung, leader, others[1]], "/rsgi/h/");
    let keep = served_pid(&h.e.socket("keep")).unwrap();
    let errors_before = h.source()["errors"].as_u64().unwrap();
    let loads = loads(&h);

    let took = switch_while(&h, cluster.members[hung].endpoint(), || {
        let t0 = Instant::now();
        cluster.members[hung].signal(Signal::SIGSTOP);
        change_the_set(&h, &cluster.members[leader]);
        let store = cluster.members[leader].revision();
        eprintln!(
            "{:?} after the member hung, the store is at {store} and rsgid at {} ({})",
            t0.elapsed(),
            h.source()["revision"],
            h.source()["state"],
        );
    });
    eprintln!("member hung -> rsgid up through another member: {took:?}");
    the_changes_arrived(&mut h);
    in_step_through_another(&h, &cluster, hung, errors_before, took);

    served_all_along(&h, loads, keep, "a member hung");
    cluster.members[hung].signal(Signal::SIGCONT);
}

#[test]
fn quorum_lost_keeps_serving_and_recovers() {
    let mut cluster = EtcdCluster::start(3);
    let mut h = start_host(&cluster, &[0, 1, 2], "/rsgi/q/");
    let keep = served_pid(&h.e.socket("keep")).unwrap();
    let load = Load::uwsgi(1, &h.e.socket("keep"), "/pid");
    load.wait_more_ok(10, DEADLINE);

    // rsgid's member is left alone: it runs and answers, but has no quorum.
    let t0 = Instant::now();
    cluster.members[1].kill();
    cluster.members[2].kill();
    wait_until(
        DEADLINE,
        "the source to report the store unreachable",
        || h.source()["state"] == "unreachable",
    );
    let noticed = t0.elapsed();
    eprintln!("quorum lost -> source unreachable: {noticed:?}");
    let src = h.source();
    eprintln!("the source while the quorum is lost: {src}");
    assert!(src.get("endpoint").is_none(), "{src}");
    assert!(src["message"].as_str().is_some(), "{src}");
    assert_eq!(h.up_metric().as_deref(), Some("0"));
    let (_, text) = h.e.rsgictl(&["list"]);
    assert!(text.contains("unreachable"), "{text}");
    // Reads fail on the survivor (a linearizable read needs the quorum).
    let read = cluster.members[0].try_ctl(&["get", &h.key("keep")]);
    assert!(read.is_err(), "a read without quorum worked: {read:?}");

    // While the quorum is lost: never up, the vassals serve from the local copy.
    let errors = src["errors"].as_u64().unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_ne!(h.source()["state"], "up");
        assert_eq!(served_pid(&h.e.socket("keep")), Some(keep));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        h.source()["errors"].as_u64().unwrap() > errors,
        "no retry counted"
    );
    assert_eq!(vassal(&h.e, "change").unwrap()["state"], "ready");

    // A member returns: the quorum is back (restart waits for it), so is the source.
    let t1 = Instant::now();
    cluster.members[1].restart();
    wait_until(DEADLINE, "the source to be up again", || {
        h.source()["state"] == "up"
    });
    eprintln!("member back -> source up: {:?}", t1.elapsed());
    cluster.members[1].put(&h.key("new"), &pid_ini(""));
    h.e.wait_serving("new", "/pid", DEADLINE);
    assert_eq!(h.up_metric().as_deref(), Some("1"));
    load.wait_more_ok(10, DEADLINE);
    load.stop()
        .assert_no_failures("keep while the quorum was lost");
    assert_eq!(
        served_pid(&h.e.socket("keep")),
        Some(keep),
        "keep was disturbed"
    );
}

/// Whether rsgid's log since `mark` names vassal `name` at all (spawned, retired...).
fn log_names(e: &Emperor, mark: usize, name: &str) -> bool {
    e.log_since(mark).contains(&format!("vassal={name}"))
}

#[test]
fn started_while_its_first_member_is_dead_or_hung_it_starts_the_stores_set() {
    let mut cluster = EtcdCluster::start(3);
    let mut h = start_host(&cluster, &[0, 1, 2], "/rsgi/s/");
    h.e.stop(DEADLINE);

    // While rsgid is down the set changes and the member it lists first dies. Its copy
    // still has `gone`: the first scan must be the store's set (`new`, no `gone`), not
    // the copy's (which would start `gone` and then retire it).
    change_the_set(&h, &cluster.members[1]);
    cluster.members[0].kill();
    let mark = h.e.log_mark();
    let t0 = Instant::now();
    h.e.restart();
    eprintln!(
        "restart with a dead first member: control answers after {:?}",
        t0.elapsed()
    );
    h.e.wait_serving("new", "/pid", DEADLINE);
    assert!(!log_names(&h.e, mark, "gone"), "{}", h.e.log_since(mark));
    assert_eq!(h.source()["state"], "up");

    // The same with a hung first member (it answers nothing; the kernel still accepts).
    h.e.stop(DEADLINE);
    cluster.members[0].restart();
    ctl_retrying(&cluster.members[1], &["del", &h.key("new")]);
    ctl_retrying(
        &cluster.members[1],
        &["put", "--", &h.key("fresh"), &pid_ini("")],
    );
    cluster.members[0].signal(Signal::SIGSTOP);
    let mark = h.e.log_mark();
    let t0 = Instant::now();
    h.e.restart();
    eprintln!(
        "restart with a hung first member: control answers after {:?}",
        t0.elapsed()
    );
    h.e.wait_serving("fresh", "/pid", DEADLINE);
    assert!(!log_names(&h.e, mark, "new"), "{}", h.e.log_since(mark));
    assert_eq!(h.source()["state"], "up");
    cluster.members[0].signal(Signal::SIGCONT);
}
