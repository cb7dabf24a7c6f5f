//! rsgid started as an unprivileged user, as in most containers (issue 18): vassals run
//! as that user with no uid switching, and an ini that asks for another user runs too
//! (as uWSGI's non-root instances do), with a clear notice in the log. rsgid runs under
//! `setpriv` as the suite's second user (`rsgi-tyrant`, made by `scripts/test.sh`).

use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn an_unprivileged_rsgid_runs_every_vassal_as_itself_and_says_so() {
    let user = test_user("to start rsgid as another user");
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let mut e = Emperor::start_as_user(uid, gid, &["--rescan", "60"]);
    let hello = format!(
        "[uwsgi]\nwsgi-file = {}\n",
        path_str(&apps_dir().join("hello.py"))
    );
    e.write_vassal("plain", &hello);
    e.write_vassal("asks", &format!("{hello}uid = root\n"));
    for name in ["plain", "asks"] {
        e.wait_serving(name, "/", DEADLINE);
        for pid in e.vassal_pids(name) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            let line = status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .expect("Uid line");
            assert!(
                line.split_whitespace()
                    .skip(1)
                    .all(|u| u == uid.to_string()),
                "{name} {pid}: {line}"
            );
        }
    }
    e.wait_log(
        &format!("uid = root ignored: rsgid runs as uid {uid} gid {gid}, not root"),
        DEADLINE,
    );
    let log = e.log();
    let notice = log
        .lines()
        .find(|l| l.contains("uid = root ignored"))
        .unwrap_or_default();
    assert!(notice.contains("vassal=asks"), "{notice}");
}
