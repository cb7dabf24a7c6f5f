//! rsgid as PID 1 (a container's init): reaping orphans.
//!
//! A process whose parent dies is re-parented to the init of its PID namespace; in a
//! container that is rsgid. An app that starts `sh -c "cmd &"` leaves `cmd` behind, and
//! when it exits it stays a zombie until its new parent waits for it. So when rsgid is
//! PID 1, a task waits for every zombie child **that rsgid did not start itself**: the
//! vassals and `rsgi --check-app` runs are rsgid's own children, whose statuses their
//! own waiters (tokio's `Child::wait`) must get, so they are registered here
//! ([`adopt`], [`release`]) and never reaped by this task.
//!
//! Zombie children are found in `/proc/self/task/*/children` and `/proc/<pid>/stat`
//! (`waitid(WNOWAIT)` would report the same zombie again and again, with no way to step
//! over one of rsgid's own). The scan runs on SIGCHLD and once a second.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The children rsgid waits for itself.
static OURS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// How often the reaper looks even without a SIGCHLD (one may be lost while it runs).
const EVERY: Duration = Duration::from_secs(1);

/// Register a child rsgid waits for itself (call right after spawning it, before any
/// `.await`).
pub fn adopt(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        OURS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid);
    }
}

/// Unregister a child once its own waiter has its status.
pub fn release(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        OURS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&pid);
    }
}

fn ours(pid: i32) -> bool {
    OURS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&pid)
}

/// When rsgid is PID 1, start the reaper task (on the current tokio runtime).
pub fn start_if_init() -> std::io::Result<()> {
    if std::process::id() != 1 {
        return Ok(());
    }
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    tracing::info!("running as PID 1: reaping orphaned processes");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tokio::time::sleep(EVERY) => {}
            }
            reap_orphans();
        }
    });
    Ok(())
}

/// Wait for every zombie child that is not one of rsgid's own.
fn reap_orphans() {
    for pid in orphans(&zombie_children()) {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// The zombies that are not rsgid's own children.
fn orphans(zombies: &[i32]) -> Vec<i32> {
    zombies.iter().copied().filter(|&pid| !ours(pid)).collect()
}

/// The children of every thread of this process that are zombies.
fn zombie_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children(&list) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state(&stat) != Some('Z') {
                continue;
            }
            // The pid as rsgid's own PID namespace numbers it (the /proc mounted may be
            // an outer namespace's): the last `NSpid` field.
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            out.push(own_pid(&status).unwrap_or(pid));
        }
    }
    out
}

/// The innermost pid of a `/proc/<pid>/status` (its `NSpid:` line's last field).
fn own_pid(status: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_ascii_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The pids of a `/proc/<pid>/task/<tid>/children` file.
fn children(list: &str) -> impl Iterator<Item = i32> + '_ {
    list.split_ascii_whitespace().filter_map(|p| p.parse().ok())
}

/// The state letter of a `/proc/<pid>/stat` line (after the command, which may hold
/// spaces and parentheses).
fn state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        assert_eq!(children("12 13 \n").collect::<Vec<_>>(), [12, 13]);
        assert_eq!(children("").count(), 0);
        assert_eq!(state("77 (sleep) Z 1 77 77 0 -1"), Some('Z'));
        assert_eq!(state("78 (a (weird) name) S 1"), Some('S'));
        assert_eq!(state("garbage"), None);
        assert_eq!(own_pid("Name:\tsleep\nNSpid:\t4711\t7\nX: 1\n"), Some(7));
        assert_eq!(own_pid("Name:\tsleep\nNSpid:\t4711\n"), Some(4711));
        assert_eq!(own_pid("Name:\tsleep\n"), None);
    }

    #[test]
    fn a_zombie_child_is_found_and_adopted_ones_are_left() {
        // Reaped by this test itself (other tests' children must not be reaped here).
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = i32::try_from(child.id()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !zombie_children().contains(&pid) {
            assert!(std::time::Instant::now() < deadline, "no zombie {pid}");
            std::thread::sleep(Duration::from_millis(5));
        }
        adopt(child.id());
        assert!(
            !orphans(&[pid]).contains(&pid),
            "an adopted child would be reaped"
        );
        release(child.id());
        assert_eq!(orphans(&[pid]), [pid]);
        let _ = child.wait();
    }
}
