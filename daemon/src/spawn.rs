//! Starting one vassal generation: the `rsgi` process with its sockets, notify socket,
//! user and captured output.
//!
//! The child gets:
//! - the vassal's listening sockets (bound by the emperor) as fds 3.. with
//!   `LISTEN_FDS`/`LISTEN_FDNAMES` (systemd's convention, which `rsgi` honours);
//! - one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` as the next fd, named by
//!   `RSGI_NOTIFY_FD`: the vassal writes `READY=1` and friends on it, and sees EOF when
//!   the emperor dies;
//! - `PR_SET_PDEATHSIG = SIGINT` as a second guard against orphans;
//! - the uid/gid chosen by the emperor (never root unless the ini says so);
//! - its stdout/stderr as pipes, read line by line by the emperor.
//!
//! Only async-signal-safe calls run between fork and exec (`dup2`, `fcntl`, `prctl`,
//! `setsid`); the fd shuffle moves every source fd above the target range first, so
//! placing fd N never clobbers a source still needed.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use rsgi_os::listen::BoundSocket;
use rsgi_proto::notify::NOTIFY_FD_ENV;

use crate::scan::FileKind;

/// Everything needed to start one generation.
pub struct SpawnSpec<'a> {
    /// The `rsgi` binary.
    pub rsgi: &'a Path,
    /// The vassal's config file.
    pub config: &'a Path,
    /// Ini or XML.
    pub kind: FileKind,
    /// Working directory (the vassal directory, as uWSGI's Emperor does).
    pub cwd: &'a Path,
    /// The listening sockets, in order.
    pub sockets: &'a [std::sync::Arc<BoundSocket>],
    /// Drop to this uid/gid (when the emperor runs as root).
    pub user: Option<(u32, u32)>,
}

/// A started generation.
pub struct Spawned {
    /// The process.
    pub child: tokio::process::Child,
    /// Our end of the notify socketpair.
    pub notify: OwnedFd,
}

/// Start one generation of a vassal.
pub fn spawn(spec: &SpawnSpec<'_>) -> io::Result<Spawned> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let flag = match spec.kind {
        FileKind::Ini => "--ini",
        FileKind::Xml => "--xml",
    };
    let mut cmd = std::process::Command::new(spec.rsgi);
    cmd.arg(flag)
        .arg(spec.config)
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_PID")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    let n = spec.sockets.len();
    let names: Vec<&str> = spec.sockets.iter().map(|s| s.protocol.as_str()).collect();
    if n > 0 {
        cmd.env("LISTEN_FDS", n.to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
    } else {
        cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_FDNAMES");
    }
    let notify_target = 3 + n as RawFd;
    cmd.env(NOTIFY_FD_ENV, notify_target.to_string());
    if let Some((uid, gid)) = spec.user {
        cmd.uid(uid).gid(gid);
    }
    // Sources, in target order: the sockets, then the notify end.
    let mut sources: Vec<RawFd> = spec
        .sockets
        .iter()
        .map(|s| s.listener.as_raw_fd())
        .collect();
    sources.push(theirs.as_raw_fd());
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (prctl, fcntl, dup2, setsid); `sources` was allocated
    // before the fork and is only read.
    unsafe {
        cmd.pre_exec(move || place_fds(&sources));
    }
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(false)
        .spawn()?;
    drop(theirs);
    Ok(Spawned {
        child,
        notify: ours,
    })
}

/// In the child: put `sources[i]` at fd `3 + i` (without close-on-exec), ask for
/// SIGINT if the emperor dies, and start a new session so a terminal's signals meant
/// for the emperor do not hit vassals directly.
fn place_fds(sources: &[RawFd]) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number has no memory
    // effects; it is async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setsid has no memory effects; failing (already a leader) is harmless.
    unsafe { libc::setsid() };
    rsgi_os::fds::place_at(sources, 3)
}

/// Where the `rsgi` binary is: the configured path, else next to this executable, else
/// `rsgi` on `PATH`.
pub fn find_rsgi(configured: Option<&Path>) -> std::path::PathBuf {
    if let Some(p) = configured {
        return p.to_owned();
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let candidate = dir.join("rsgi");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    std::path::PathBuf::from("rsgi")
}
