//! The OS side of upgrading rsgid in place (issue 20 item 3): `rsgictl upgrade` or
//! SIGUSR2 makes rsgid re-execute its binary in the same process, handing over every
//! fd that must outlive the exec. The state itself (vassals, generations, counters) is
//! built and read by the actor (`emperor/handover.rs`); this module holds what does not
//! depend on it:
//!
//! - the path rsgid was started from ([`remember_exe`], [`exe`]): `argv[0]` made
//!   absolute at start, not `/proc/self/exe`, which names the deleted old file after a
//!   package upgrade replaced it;
//! - rsgid's own listeners (control socket, metrics, emperor stats), registered by the
//!   code that binds them ([`register_listener`]) and taken over after the exec instead
//!   of binding again ([`take_inherited`]);
//! - each child's pipes and notify socket, duplicated at spawn ([`remember_child`]) so
//!   that their numbers stay valid for a handover however the reading tasks end;
//! - [`keep_open`] (clear `FD_CLOEXEC`), [`wait_child`] (a pidfd: the vassals are still
//!   rsgid's children after the exec, but tokio's `Child` is gone), and the serde
//!   helper [`instant_ms`] for the lifecycle's instants.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The environment variable that names the state file for the new image.
pub const STATE_ENV: &str = "RSGID_UPGRADE_STATE";

/// `rsgid --check-upgrade-state FILE`: parse a handed-over state and exit 0 if this
/// binary understands it (run by the old rsgid before it executes the new binary).
pub const CHECK_ARG: &str = "--check-upgrade-state";

/// The build tag as stored in the binary: a fixed-length field (padded with `_`), so
/// that a test can make a second build with another tag by rewriting these bytes in a
/// copy of the binary (see tests/e2e/upgrade.rs).
const BUILD_FIELD: &str = concat!(
    "rsgid-build:",
    env!("CARGO_PKG_VERSION"),
    "+local______________"
);

/// This binary's version and build tag (`rsgid-build:0.1.0+local`), logged at start and
/// after an upgrade.
pub fn build() -> &'static str {
    BUILD_FIELD.trim_end_matches('_')
}

static EXE: OnceLock<PathBuf> = OnceLock::new();
static IMAGE: OnceLock<String> = OnceLock::new();

/// This process image's identity: when it started (ns since the epoch) and its build.
/// An upgrade in place keeps the pid and changes this.
pub fn image_id() -> &'static str {
    IMAGE.get_or_init(|| {
        let ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{ns}:{}", build())
    })
}

/// Remember the path rsgid was started from: `argv[0]` made absolute (symlinks kept,
/// so a `/usr/sbin/rsgid` link swapped to a new version is followed), or found on
/// `PATH` when it has no `/`. Call once at start, before any `chdir`.
pub fn remember_exe() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let argv0 = PathBuf::from(argv0);
    let path = if argv0.as_os_str().as_encoded_bytes().contains(&b'/') {
        std::path::absolute(&argv0).unwrap_or(argv0)
    } else {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(&argv0))
                    .find(|p| p.is_file())
            })
            .unwrap_or(argv0)
    };
    let _ = EXE.set(path);
    let _ = image_id();
}

/// The path rsgid re-executes on an upgrade (see [`remember_exe`]).
pub fn exe() -> PathBuf {
    EXE.get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// rsgid's own listeners: key (`control:<path>`, `metrics:<addr>`, `stats:<addr>`) to
/// fd, for the next handover.
static LISTENERS: Mutex<BTreeMap<String, RawFd>> = Mutex::new(BTreeMap::new());
/// Listeners handed over by the previous image, not yet taken.
static INHERITED: Mutex<BTreeMap<String, RawFd>> = Mutex::new(BTreeMap::new());

/// Register a listener rsgid serves for its whole life (it must stay open).
pub fn register_listener(key: String, fd: RawFd) {
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, fd);
}

/// Every registered listener.
pub fn listeners() -> BTreeMap<String, RawFd> {
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Record the listeners the previous image handed over (at start, before anything
/// binds).
pub fn set_inherited(fds: BTreeMap<String, RawFd>) {
    *INHERITED.lock().unwrap_or_else(PoisonError::into_inner) = fds;
}

/// The handed-over listener for `key`, if there is one (taken once).
pub fn take_inherited(key: &str) -> Option<OwnedFd> {
    let fd = INHERITED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(key)?;
    // SAFETY: the previous image handed this fd over for `key` and nothing else in
    // this process owns it (it is taken out of the map once).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Close handed-over listeners nobody took (the setting changed in between).
pub fn close_unused_inherited() {
    let left = std::mem::take(&mut *INHERITED.lock().unwrap_or_else(PoisonError::into_inner));
    for (key, fd) in left {
        tracing::info!(listener = %key, "not configured any more: closing the handed-over listener");
        // SAFETY: as in `take_inherited`: an fd handed over to us, owned by no one.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// One child's fds rsgid reads: its notify socket and its output pipes (duplicates,
/// kept while the child lives).
#[derive(Debug)]
pub struct ChildFds {
    /// rsgid's end of the notify socketpair.
    pub notify: Option<OwnedFd>,
    /// The read end of its stdout pipe.
    pub stdout: Option<OwnedFd>,
    /// The read end of its stderr pipe.
    pub stderr: Option<OwnedFd>,
}

/// The raw numbers of a child's [`ChildFds`], as written into the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChildFdNumbers {
    /// Notify socket.
    pub notify: Option<RawFd>,
    /// Stdout pipe.
    pub stdout: Option<RawFd>,
    /// Stderr pipe.
    pub stderr: Option<RawFd>,
}

static CHILDREN: Mutex<BTreeMap<i32, ChildFds>> = Mutex::new(BTreeMap::new());

/// Keep duplicates of a child's fds for a later handover.
pub fn remember_child(pid: i32, fds: ChildFds) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pid, fds);
}

/// The child exited: its fds are of no use any more.
pub fn forget_child(pid: i32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&pid);
}

/// The fd numbers kept for `pid`.
pub fn child_fds(pid: i32) -> ChildFdNumbers {
    let children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(c) = children.get(&pid) else {
        return ChildFdNumbers::default();
    };
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map(AsRawFd::as_raw_fd);
    ChildFdNumbers {
        notify: raw(&c.notify),
        stdout: raw(&c.stdout),
        stderr: raw(&c.stderr),
    }
}

/// Duplicate `fd` (close-on-exec), for [`remember_child`].
pub fn dup(fd: &impl std::os::fd::AsFd) -> Option<OwnedFd> {
    fd.as_fd().try_clone_to_owned().ok()
}

/// Take ownership of a handed-over fd number.
///
/// # Safety
///
/// `fd` must be an fd the previous image handed over and that nothing else in this
/// process owns (each number is taken once).
pub unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller's promise.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Clear `FD_CLOEXEC`, so that `fd` survives the exec.
pub fn keep_open(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: only the flag of an fd this process holds open is changed; the borrow
    // does not outlive the call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = FdFlag::from_bits_truncate(fcntl(borrowed, FcntlArg::F_GETFD)?);
    fcntl(borrowed, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Set `FD_CLOEXEC` again (after a failed exec).
pub fn close_on_exec(fd: RawFd) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: as in `keep_open`.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Ok(bits) = fcntl(borrowed, FcntlArg::F_GETFD) {
        let flags = FdFlag::from_bits_truncate(bits) | FdFlag::FD_CLOEXEC;
        let _ = fcntl(borrowed, FcntlArg::F_SETFD(flags));
    }
}

/// Wait for child `pid` to exit and collect it: `(exit code, signal)`. Works for a
/// child spawned by the previous image (a pidfd, then `waitpid`).
pub async fn wait_child(pid: i32) -> (Option<i32>, Option<i32>) {
    use nix::sys::wait::{waitpid, WaitStatus};
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if let Ok(raw) = RawFd::try_from(raw) {
        if raw >= 0 {
            // SAFETY: pidfd_open just returned this fd; nothing else owns it.
            let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: the AsyncFd owns the pidfd until it is dropped.
            if let Ok(watched) = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    pidfd,
                    tokio::io::Interest::READABLE,
                )
            } {
                let _ = watched.readable().await;
            }
        }
    }
    // The child has exited (or pidfd_open failed: wait for it on a blocking thread).
    let result =
        tokio::task::spawn_blocking(move || waitpid(nix::unistd::Pid::from_raw(pid), None)).await;
    match result {
        Ok(Ok(WaitStatus::Exited(_, code))) => (Some(code), None),
        Ok(Ok(WaitStatus::Signaled(_, sig, _))) => (None, Some(sig as i32)),
        _ => (None, None),
    }
}

/// Write `bytes` to `path` (mode 0600, replacing it).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Run `exe --check-upgrade-state state` and wait up to `within`: `Ok` when it exits
/// 0, otherwise what went wrong (its output included).
pub fn check_new_binary(
    exe: &Path,
    state: &Path,
    within: std::time::Duration,
) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .arg(CHECK_ARG)
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let end = std::time::Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stderr).trim().to_owned()
                    + String::from_utf8_lossy(&out.stdout).trim();
                if status.success() {
                    return Ok(());
                }
                return Err(format!(
                    "{} {CHECK_ARG} failed ({status}){}",
                    exe.display(),
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ));
            }
            Ok(None) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {CHECK_ARG} did not answer within {} s",
                    exe.display(),
                    within.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", exe.display())),
        }
    }
}

/// Serde for an `Instant` as signed milliseconds from now (an `Instant` has no meaning
/// outside its process; the exec takes far less than the resolution that matters).
pub mod instant_ms {
    use std::time::{Duration, Instant};

    /// Serialize `at` as milliseconds relative to now (negative: in the past).
    pub fn serialize<S: serde::Serializer>(at: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_ms(*at))
    }

    /// Deserialize milliseconds relative to now.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        let ms: i64 = serde::Deserialize::deserialize(d)?;
        Ok(from_ms(ms))
    }

    /// `at` as milliseconds from now.
    pub fn to_ms(at: Instant) -> i64 {
        let now = Instant::now();
        if at >= now {
            i64::try_from(at.duration_since(now).as_millis()).unwrap_or(i64::MAX)
        } else {
            -i64::try_from(now.duration_since(at).as_millis()).unwrap_or(i64::MAX)
        }
    }

    /// Now plus `ms` (clamped to what an `Instant` can hold).
    pub fn from_ms(ms: i64) -> Instant {
        let now = Instant::now();
        let d = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            now.checked_add(d).unwrap_or(now)
        } else {
            now.checked_sub(d).unwrap_or(now)
        }
    }
}
