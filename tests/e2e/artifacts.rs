//! The container artifacts (issue 18): `examples/kubernetes/` and the `Dockerfile`,
//! checked against what rsgid serves (`tests/apps/check_manifests.py`, with Debian's
//! python3-yaml), and the example rsgid.toml run for real: rsgid with it (paths moved
//! into a temp dir) answers the probes the manifests use on the port they name. No
//! container runtime or cluster is needed (none is on these machines).

use std::process::Command;
use std::time::Duration;

use rsgi_e2e::*;

#[test]
fn the_manifests_name_what_rsgid_serves() {
    let root = apps_dir()
        .parent()
        .and_then(|p| p.parent())
        .expect("the repository")
        .to_owned();
    let out = Command::new("/usr/bin/python3")
        .arg(apps_dir().join("check_manifests.py"))
        .arg(&root)
        .output()
        .expect("run check_manifests.py (needs python3-yaml: scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_example_rsgid_toml_serves_the_probes() {
    let root = apps_dir()
        .parent()
        .and_then(|p| p.parent())
        .expect("the repository")
        .to_owned();
    let text = std::fs::read_to_string(root.join("examples/kubernetes/rsgid.toml"))
        .expect("read rsgid.toml");
    let port = free_port();
    let tmp = tempdir();
    // The file as it is; the fixture's flags (which win over a file) move the paths into
    // the test's temp dir, and the metrics port to a free one of 127.0.0.1. (That the
    // file itself says 0.0.0.0:9192 is checked by rsgid's settings unit tests.)
    let config = tmp.path().join("rsgid.toml");
    std::fs::write(&config, text).expect("write");
    let listen = format!("127.0.0.1:{port}");
    let mut e = Emperor::start(&["--config", path_str(&config), "--metrics", &listen]);
    let addr = Addr::Tcp(format!("127.0.0.1:{port}").parse().expect("addr"));
    wait_until(
        Duration::from_secs(20),
        "/livez and /readyz answer 200",
        || {
            let ok = |path| http_get(&addr, path).is_ok_and(|r| r.status == 200);
            ok("/livez") && ok("/readyz")
        },
    );
    // JSON log lines, as the file asks.
    let log = e.log();
    let first = log
        .lines()
        .find(|l| l.contains("rsgid started"))
        .unwrap_or_default();
    assert!(first.starts_with('{'), "{first}");
    e.stop(Duration::from_secs(10));
}
