//! rsgid started as an unprivileged user, as in most containers (issue 18): vassals run
//! as that user with no uid switching, and an ini that asks for another user is refused
//! with the reason instead of failing later inside the vassal. rsgid runs under
//! `setpriv` as the suite's second user (`rsgi-tyrant`, made by `scripts/test.sh`).

use std::process::{Command, Stdio};
use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn an_unprivileged_rsgid_runs_vassals_as_itself_and_refuses_other_users() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (to start rsgid as another user): run scripts/test.sh as root"
    );
    let user = nix::unistd::User::from_name("rsgi-tyrant")
        .expect("look up rsgi-tyrant")
        .expect("no user rsgi-tyrant: scripts/test.sh creates it");
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let mut e = Emperor::start_as_user(uid, gid, &["--rescan", "60"]);
    let hello = format!(
        "[uwsgi]\nwsgi-file = {}\n",
        path_str(&apps_dir().join("hello.py"))
    );
    e.write_vassal("plain", &hello);
    e.write_vassal("asks", &format!("{hello}uid = root\n"));
    e.wait_serving("plain", "/", DEADLINE);
    for pid in e.vassal_pids("plain") {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            line.split_whitespace()
                .skip(1)
                .all(|u| u == uid.to_string()),
            "{pid}: {line}"
        );
    }
    let mut last = serde_json::Value::Null;
    wait_until(DEADLINE, "asks is failed with the reason", || {
        let out = Command::new(bin("rsgictl"))
            .env_remove("RSGI_CONTROL")
            .stdin(Stdio::null())
            .arg("--socket")
            .arg(e.control_socket())
            .args(["--json", "status", "asks"])
            .output()
            .expect("rsgictl");
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
        last["state"] == "failed"
    });
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("rsgid runs as uid {uid}, not root")),
        "{last}"
    );
    assert!(e.vassal_pids("asks").is_empty(), "asks was started");
}
