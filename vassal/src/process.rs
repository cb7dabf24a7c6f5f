//! Process plumbing: `daemonize`, pidfiles, and `--stop`/`--reload` by pidfile.
//!
//! # What
//!
//! - [`daemonize`] detaches from the terminal (uWSGI's `daemonize = LOGFILE`).
//! - [`write_pidfile`], [`read_pidfile`], [`remove_pidfile`] handle `pidfile` and
//!   `safe-pidfile` (written to a temporary file and renamed into place, so a reader never
//!   sees a half-written pid).
//! - [`signal_pidfile`] serves `rsgi --stop PIDFILE` (SIGTERM, which in rsgi means a
//!   graceful stop, never uWSGI's "TERM means reload") and `rsgi --reload PIDFILE` (SIGHUP).
//!
//! # How
//!
//! `daemonize` is the classic double fork: fork, `setsid` in the child, fork again so the
//! daemon is not a session leader and can never reacquire a terminal. The working
//! directory is kept (as uWSGI does), stdin comes from `/dev/null`, stdout and stderr go
//! to the log file (append). The original process waits until the grandchild has set up
//! its stdio and written one byte on a close-on-exec pipe, then exits 0; if the grandchild
//! dies first, it exits [`EXIT_OS`] and names the log file. `fork` is only sound while the
//! process has a single thread, so `daemonize` refuses to run otherwise (checked through
//! `/proc/self/task`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use rsgi_proto::notify::{EXIT_OK, EXIT_OS};

/// The directory `rsgi` was started in: relative `pidfile`, `logto`, `daemonize` and
/// `chdir` are relative to it, and a re-executing master goes back to it (as uWSGI's
/// reload does), so its command line reads the same.
pub static START_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Why a process operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `daemonize` was called while other threads exist (fork would lose them).
    #[error(
        "cannot daemonize: the process already runs {threads} threads \
         (daemonize must happen before any thread starts)"
    )]
    Threads {
        /// Number of threads found.
        threads: usize,
    },
    /// The `daemonize` log file could not be opened.
    #[error("cannot open daemonize log file {path}")]
    OpenLog {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A step of `daemonize` failed before the fork.
    #[error("cannot daemonize: {about}")]
    Daemonize {
        /// The step that failed.
        about: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pidfile could not be written.
    #[error("cannot write pidfile {path}")]
    WritePidfile {
        /// The pidfile.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pidfile does not exist.
    #[error("pidfile {path} does not exist (is the server running?)")]
    PidfileMissing {
        /// The pidfile.
        path: PathBuf,
    },
    /// The pidfile could not be read.
    #[error("cannot read pidfile {path}")]
    ReadPidfile {
        /// The pidfile.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pidfile is empty.
    #[error("pidfile {path} is empty")]
    PidfileEmpty {
        /// The pidfile.
        path: PathBuf,
    },
    /// The pidfile holds something other than a positive pid.
    #[error("pidfile {path} does not hold a pid: {content:?}")]
    PidfileGarbage {
        /// The pidfile.
        path: PathBuf,
        /// The start of what it holds.
        content: String,
    },
    /// No process has the pid in the pidfile.
    #[error("no process has pid {pid} (from pidfile {path}): the server is not running")]
    NotRunning {
        /// The pidfile.
        path: PathBuf,
        /// The pid it holds.
        pid: i32,
    },
    /// `kill(2)` failed (usually: permission denied).
    #[error("cannot send {signal} to pid {pid} (from pidfile {path})")]
    Signal {
        /// The pidfile.
        path: PathBuf,
        /// The pid it holds.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Detach from the terminal and keep running as a daemon that logs to `log` (append).
///
/// Returns in the daemon (the grandchild); the calling process exits 0 once the daemon has
/// set up its stdio, or [`EXIT_OS`] if it died first. Must be called before any thread
/// exists (no tokio runtime, no Python threads): otherwise [`ProcessError::Threads`].
/// The working directory and umask are kept.
pub fn daemonize(log: &Path) -> Result<(), ProcessError> {
    if let Some(threads) = thread_count().filter(|&n| n > 1) {
        return Err(ProcessError::Threads { threads });
    }
    detach(log)
}

/// [`daemonize`] without the thread check (tests run under a threaded harness; the
/// forked child keeps only the calling thread, which is all a test needs).
fn detach(log: &Path) -> Result<(), ProcessError> {
    let log_file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(log)
        .map_err(|source| ProcessError::OpenLog {
            path: log.to_owned(),
            source,
        })?;
    let devnull = File::open("/dev/null").map_err(|source| ProcessError::Daemonize {
        about: "open /dev/null",
        source,
    })?;
    let (ready_r, ready_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ProcessError::Daemonize {
            about: "pipe",
            source: e.into(),
        })?;
    // Buffered output must not be written twice (once per process).
    let _ = io::stdout().flush();

    // SAFETY: the process has a single thread (checked by `daemonize`), so the child is
    // a complete copy and may run any code, allocation included.
    let first = unsafe { fork() }.map_err(|e| ProcessError::Daemonize {
        about: "fork",
        source: e.into(),
    })?;
    if let ForkResult::Parent { child } = first {
        drop(ready_w);
        // The intermediate child exits at once; reap it.
        let _ = waitpid(child, None);
        let mut byte = [0u8; 1];
        let got = loop {
            match nix::unistd::read(&ready_r, &mut byte) {
                Err(Errno::EINTR) => {}
                other => break other,
            }
        };
        if got == Ok(1) {
            std::process::exit(EXIT_OK);
        }
        eprintln!("rsgi: the daemon did not start; see {}", log.display());
        std::process::exit(EXIT_OS);
    }

    // The first child: a new session, then fork again so that the daemon is not a
    // session leader and can never acquire a controlling terminal.
    drop(ready_r);
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("rsgi: daemonize: setsid: {e}");
        exit_now(EXIT_OS);
    }
    // SAFETY: this child is single-threaded (fork copies only the calling thread of a
    // process that had one thread).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => exit_now(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("rsgi: daemonize: second fork: {e}");
            exit_now(EXIT_OS);
        }
    }

    // The daemon.
    let redirected = nix::unistd::dup2_stdin(&devnull)
        .and_then(|()| nix::unistd::dup2_stdout(&log_file))
        .and_then(|()| nix::unistd::dup2_stderr(&log_file));
    if let Err(e) = redirected {
        eprintln!(
            "rsgi: daemonize: cannot redirect stdio to {}: {e}",
            log.display()
        );
        exit_now(EXIT_OS);
    }
    // Tell the original process we are up; it exits when it reads this.
    let _ = nix::unistd::write(&ready_w, b"1");
    Ok(())
}

/// `_exit(2)`: end a forked child at once, running no exit handlers and flushing no
/// buffers that belong to the parent.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes a plain integer and never returns; skipping destructors and
    // atexit handlers is the point (they belong to the process that forked us).
    unsafe { libc::_exit(code) }
}

/// Threads of this process, from `/proc/self/task` (`None` without procfs).
pub(crate) fn thread_count() -> Option<usize> {
    fs::read_dir("/proc/self/task").ok().map(Iterator::count)
}

/// Write `pid` and a newline to `path` (mode 0644). With `safe` (uWSGI's `safe-pidfile`)
/// the pid goes to a temporary file in the same directory, which is then renamed over
/// `path`, so a reader never sees a partial file.
pub fn write_pidfile(path: &Path, pid: u32, safe: bool) -> Result<(), ProcessError> {
    let err = |source| ProcessError::WritePidfile {
        path: path.to_owned(),
        source,
    };
    let content = format!("{pid}\n");
    if !safe {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)
            .map_err(err)?;
        return f.write_all(content.as_bytes()).map_err(err);
    }
    let name = path.file_name().ok_or_else(|| {
        err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// Remove the pidfile on the way out (`vacuum`), unless it now holds another process's
/// pid (a newer server generation wrote over it). Errors are ignored.
pub fn remove_pidfile(path: &Path) {
    let ours = match fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) => pid == std::process::id(),
            Err(_) => true,
        },
        Err(_) => return,
    };
    if ours {
        let _ = fs::remove_file(path);
    }
}

/// Read the pid in `path` and check that the process exists.
pub fn read_pidfile(path: &Path) -> Result<Pid, ProcessError> {
    let text = fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ProcessError::PidfileMissing {
                path: path.to_owned(),
            }
        } else {
            ProcessError::ReadPidfile {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ProcessError::PidfileEmpty {
            path: path.to_owned(),
        });
    }
    // A pid <= 0 would make kill(2) signal a whole process group: never accept one.
    let pid = match text.parse::<i32>() {
        Ok(pid) if pid > 0 => Pid::from_raw(pid),
        _ => {
            return Err(ProcessError::PidfileGarbage {
                path: path.to_owned(),
                content: text.chars().take(40).collect(),
            })
        }
    };
    match kill(pid, None) {
        // EPERM: it exists but belongs to another user; signalling will say so.
        Ok(()) | Err(Errno::EPERM) => Ok(pid),
        Err(_) => Err(ProcessError::NotRunning {
            path: path.to_owned(),
            pid: pid.as_raw(),
        }),
    }
}

/// Send `sig` to the process named in the pidfile (`rsgi --stop`: SIGTERM, a graceful
/// stop; `rsgi --reload`: SIGHUP). Returns the pid signalled.
pub fn signal_pidfile(path: &Path, sig: Signal) -> Result<Pid, ProcessError> {
    let pid = read_pidfile(path)?;
    kill(pid, sig).map_err(|e| match e {
        Errno::ESRCH => ProcessError::NotRunning {
            path: path.to_owned(),
            pid: pid.as_raw(),
        },
        e => ProcessError::Signal {
            path: path.to_owned(),
            pid: pid.as_raw(),
            signal: sig,
            source: e.into(),
        },
    })?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    #[test]
    fn pidfile_round_trip_plain_and_safe() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        for safe in [false, true] {
            let path = dir.path().join(format!("app-{safe}.pid"));
            fs::write(&path, "999999999 stale and longer\n").unwrap();
            write_pidfile(&path, me, safe).unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), format!("{me}\n"));
            assert_eq!(read_pidfile(&path).unwrap().as_raw(), me as i32);
            remove_pidfile(&path);
            assert!(!path.exists());
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn remove_pidfile_keeps_another_process_pidfile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.pid");
        write_pidfile(&path, 1, false).unwrap();
        remove_pidfile(&path);
        assert!(path.exists());
        remove_pidfile(&dir.path().join("missing.pid"));
    }

    #[test]
    fn pidfile_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");

        let err = read_pidfile(&path).unwrap_err();
        assert!(matches!(err, ProcessError::PidfileMissing { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "pidfile {} does not exist (is the server running?)",
                path.display()
            )
        );

        fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            read_pidfile(&path),
            Err(ProcessError::PidfileEmpty { .. })
        ));

        for garbage in ["abc", "12ab", "0", "-1", "-1234", "99999999999"] {
            fs::write(&path, garbage).unwrap();
            let err = read_pidfile(&path).unwrap_err();
            assert!(
                matches!(err, ProcessError::PidfileGarbage { .. }),
                "{garbage}: {err:?}"
            );
            assert!(err.to_string().contains(garbage), "{err}");
        }

        // A pid that is not running: one of a child we already reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        fs::write(&path, format!("{pid}\n")).unwrap();
        let err = read_pidfile(&path).unwrap_err();
        assert!(matches!(err, ProcessError::NotRunning { .. }), "{err:?}");
        assert!(err.to_string().contains(&pid.to_string()));

        let err = write_pidfile(&dir.path().join("no/such/dir.pid"), 1, true).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot write pidfile "),
            "{err}"
        );
    }

    #[test]
    fn signal_pidfile_stops_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sleep.pid");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        write_pidfile(&path, child.id(), true).unwrap();
        let pid = signal_pidfile(&path, Signal::SIGTERM).unwrap();
        assert_eq!(pid.as_raw(), child.id() as i32);
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn daemonize_refuses_with_threads() {
        // Make sure a second thread exists even under `--test-threads=1`.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let extra = std::thread::spawn(move || rx.recv());
        let dir = tempfile::tempdir().unwrap();
        let err = daemonize(&dir.path().join("d.log")).unwrap_err();
        drop(tx);
        extra.join().unwrap().unwrap_err();
        assert!(matches!(err, ProcessError::Threads { .. }), "{err:?}");
        assert!(
            !dir.path().join("d.log").exists(),
            "nothing happens before the check"
        );
    }

    const HELPER_ENV: &str = "RSGI_TEST_DAEMONIZE_DIR";

    /// Run by `daemonize_detaches` in a fresh test process: daemonize, then write a
    /// pidfile and a line, and exit.
    #[test]
    #[ignore = "helper: run by daemonize_detaches in its own process"]
    fn daemonize_helper() {
        let Some(dir) = std::env::var_os(HELPER_ENV) else {
            return;
        };
        let dir = PathBuf::from(dir);
        detach(&dir.join("daemon.log")).unwrap();
        // Only the daemon gets here.
        println!("daemon up");
        eprintln!("daemon stderr");
        write_pidfile(&dir.join("daemon.pid"), std::process::id(), true).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        std::process::exit(0);
    }

    #[test]
    fn daemonize_detaches() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::tests::daemonize_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, dir.path())
            .output()
            .unwrap();
        // The original process exits 0 once the daemon is up, before the helper's test
        // harness would print its summary.
        assert!(out.status.success(), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("daemon up"));

        let pidfile = dir.path().join("daemon.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() {
            assert!(
                Instant::now() < deadline,
                "the daemon never wrote its pidfile"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = Pid::from_raw(
            fs::read_to_string(&pidfile)
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        );
        // A new session, not ours, and not its leader.
        let sid = nix::unistd::getsid(Some(pid));
        if let Ok(sid) = sid {
            assert_ne!(sid, nix::unistd::getsid(None).unwrap());
            assert_ne!(sid, pid);
        }
        // Gone, or a zombie waiting for init to reap it.
        let gone = |pid: Pid| {
            kill(pid, None).is_err()
                || fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit_once(") ")
                            .is_some_and(|(_, st)| st.starts_with('Z'))
                    })
                    .unwrap_or(true)
        };
        while !gone(pid) {
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = fs::read_to_string(dir.path().join("daemon.log")).unwrap();
        assert!(
            log.contains("daemon up") && log.contains("daemon stderr"),
            "{log:?}"
        );
    }
}
