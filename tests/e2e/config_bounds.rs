//! Config input is bounded (issue 15, item 3), end to end with the real binaries: `rsgi`
//! refuses a FIFO include, a `/dev/zero` include, a placeholder bomb and an oversized file
//! with a `file:line` message, in time and without growing; `rsgid` with a vassal that
//! includes a FIFO keeps answering its control socket, keeps serving a healthy vassal and
//! shows the bad one failed with the reason.
//!
//! Every child runs under a deadline (a hang fails the test instead of hanging it) and
//! `rsgi` under an address-space limit, so a regression that reads without end fails here
//! without taking the machine's memory.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rsgi_e2e::*;

/// How long a refused config may take to be refused (it takes milliseconds).
const REFUSE_DEADLINE: Duration = Duration::from_secs(10);

/// Generous bound for waits on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// The address space `rsgi` may use while it reads a config (the config stage needs a
/// few MiB; the unbounded reads this guards against need gigabytes).
const ADDRESS_SPACE: u64 = 2 << 30;

/// Run `cmd` to completion within `deadline`, killing it if it is still running then.
/// Returns its output, or `Err` with what it printed if it had to be killed.
fn run_within(mut cmd: Command, deadline: Duration) -> Result<Output, String> {
    let dir = tempdir();
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL);
    };
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        }),
        None => Err(format!(
            "still running after {deadline:?}; it printed: {}",
            String::from_utf8_lossy(&read(&err_path))
        )),
    }
}

/// `rsgi --ini INI` in `dir`, under [`ADDRESS_SPACE`] and [`REFUSE_DEADLINE`]: its exit
/// code (or the signal that ended it, negated) and stderr.
fn rsgi_ini(dir: &Path, ini: &Path) -> (i32, String) {
    let mut cmd = Command::new(rsgi_bin());
    cmd.arg("--ini").arg(ini).current_dir(dir);
    // SAFETY: between fork and exec only setrlimit, which is async-signal-safe, runs.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let out = run_within(cmd, REFUSE_DEADLINE).unwrap_or_else(|e| panic!("rsgi --ini: {e}"));
    eprintln!(
        "rsgi --ini {} refused in {:?}",
        ini.display(),
        started.elapsed()
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| -out.status.signal().unwrap_or(0));
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Make a FIFO at `dir/name`.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

/// Assert that `rsgi --ini` on `text` exits with the config exit code (78) and says `want`.
fn assert_refused(dir: &Path, text: &str, want: &str) {
    let ini = write_file(dir, "app.ini", text);
    let (code, stderr) = rsgi_ini(dir, &ini);
    assert!(
        stderr.contains(want),
        "rsgi --ini should say {want:?}, said: {stderr}"
    );
    assert_eq!(code, 78, "exit code; stderr: {stderr}");
}

#[test]
fn rsgi_refuses_a_fifo_include_at_once() {
    let dir = tempdir();
    let f = fifo(dir.path(), "fifo.ini");
    let f = path_str(&f);
    assert_refused(
        dir.path(),
        &format!("[uwsgi]\nhttp-socket = 127.0.0.1:0\nini = {f}\n"),
        &format!("app.ini:3: ini = {f}: {f}: not a regular file (a FIFO)"),
    );
}

#[test]
fn rsgi_refuses_a_dev_zero_include() {
    let dir = tempdir();
    assert_refused(
        dir.path(),
        "[uwsgi]\nini = /dev/zero\n",
        "app.ini:2: ini = /dev/zero: /dev/zero: not a regular file (a character device)",
    );
}

#[test]
fn rsgi_refuses_a_placeholder_bomb() {
    // 1.3 KB that would expand to about 4^18 * 8 bytes: each line repeats the one
    // before four times.
    let mut text = String::from("[uwsgi]\nset-ph = p0=xxxxxxxx\n");
    for i in 1..=18 {
        let prev = format!("%(p{})", i - 1);
        text.push_str(&format!("set-ph = p{i}={}\n", prev.repeat(4)));
    }
    text.push_str("chdir = %(p18)\n");
    assert!(text.len() < 1536, "{} bytes", text.len());
    let dir = tempdir();
    // p7 is 4^7 * 8 = 131072 bytes: the first over the 64 KiB cap, on line 9.
    assert_refused(
        dir.path(),
        &text,
        "app.ini:9: the value expands to more than 65536 bytes",
    );
}

#[test]
fn rsgi_refuses_an_oversized_file() {
    let dir = tempdir();
    let mut text = String::from("[uwsgi]\nhttp-socket = 127.0.0.1:0\n");
    let filler = format!("; {}\n", "x".repeat(1021)); // 1 KiB per line
    text.push_str(&filler.repeat(2048));
    let size = text.len();
    assert_refused(
        dir.path(),
        &text,
        &format!("app.ini: {size} bytes; a config file may hold at most 1048576"),
    );
}

/// `rsgictl --socket <e's socket> --json list`, within a deadline.
fn list(e: &Emperor) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new(bin("rsgictl"));
    cmd.env_remove("RSGI_CONTROL")
        .arg("--socket")
        .arg(e.control_socket())
        .args(["--json", "list"]);
    let out = run_within(cmd, REFUSE_DEADLINE).map_err(|e| format!("rsgictl list: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|err| {
        format!(
            "rsgictl list printed no JSON ({err}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The entry of `name` in a `list --json` answer.
fn entry<'a>(list: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    list["vassals"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

#[test]
fn rsgid_keeps_serving_when_a_vassal_includes_a_fifo() {
    let mut e = Emperor::start(&[]);
    let hello = path_str(&apps_dir().join("hello.py")).to_owned();
    e.write_vassal("good", &format!("[uwsgi]\nwsgi-file = {hello}\n"));
    e.wait_serving("good", "/", DEADLINE);

    let f = fifo(e.dir(), "fifo.ini");
    let f = path_str(&f).to_owned();
    e.write_vassal("bad", &format!("[uwsgi]\nwsgi-file = {hello}\nini = {f}\n"));

    // rsgid answers its control socket and shows the bad vassal failed, with the reason.
    let end = Instant::now() + DEADLINE;
    let bad = loop {
        let answer = list(&e).unwrap_or_else(|err| panic!("rsgid stopped answering: {err}"));
        if let Some(bad) = entry(&answer, "bad").filter(|b| b["state"] == "failed") {
            break bad.clone();
        }
        assert!(e.try_exit().is_none(), "rsgid exited");
        assert!(
            Instant::now() < end,
            "'bad' is not failed after {DEADLINE:?}: {answer:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let reason = bad["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "bad.ini:3: ini = {f}: {f}: not a regular file (a FIFO)"
        )),
        "reason: {bad:#}"
    );

    // The healthy vassal still serves, and rsgid still answers after that.
    let r = e.wait_serving("good", "/", DEADLINE);
    assert_eq!(r.status, 200);
    let answer = list(&e).unwrap();
    assert_eq!(
        entry(&answer, "good").unwrap()["state"],
        "ready",
        "{answer:#}"
    );
}
