//! Running a shell command beside a vassal, as uWSGI's master runs its attached daemons
//! (`core/daemons.c`, `uwsgi_spawn_daemon`): `/bin/sh -c COMMAND`, stdin from
//! `/dev/null`, stdout and stderr shared with the caller (the log; a pipe is reopened so
//! the child's writes block even where the caller's do not), in a session of its
//! own (so a stop signal can reach its whole process group), every other inherited fd
//! closed at exec, no signal blocked and every signal at its default disposition.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::Pid;

/// How to run a command.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellOptions<'a> {
    /// Die with the caller (`PR_SET_PDEATHSIG`): uWSGI's dumb daemons.
    pub die_with_parent: bool,
    /// Detach it (fork once more, the middle process exits) and write its pid to this
    /// file: uWSGI's `smart-attach-daemon2`.
    pub daemonize_pidfile: Option<&'a Path>,
}

/// Start `/bin/sh -c command`; returns the shell's pid (the middle process's, when
/// daemonized). The caller reaps it.
///
/// Call only while the process has a single thread: the child runs code between fork
/// and exec (async-signal-safe calls only, but the rule keeps it simple).
pub fn shell(command: &str, opts: ShellOptions<'_>) -> io::Result<Pid> {
    let pidfile = match opts.daemonize_pidfile {
        Some(p) => Some(
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in pidfile"))?,
        ),
        None => None,
    };
    let die_with_parent = opts.die_with_parent;
    // Prepared before the fork: the child may not allocate.
    let own_fds = [c"/proc/self/fd/1", c"/proc/self/fd/2"];
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (sigprocmask, signal, setsid, prctl, fstat, open, dup2,
    // close_range, fork, _exit, getpid, write, close) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            // Every signal to its default: an ignored one survives exec, and a shell
            // cannot trap a signal that was ignored when it started (POSIX), so a rsgi
            // started in the background of a script (SIGINT and SIGQUIT ignored) would
            // hand its daemons signals they can neither catch nor die of.
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            }
            // Under rsgid our stdout and stderr are pipes set non-blocking (the log must
            // never wait); that flag belongs to the shared open file, so a daemon
            // writing faster than rsgid reads would get EAGAIN. Reopening a pipe through
            // /proc gives the child its own, blocking, open file on the same pipe.
            // Files and sockets are left alone (a file would lose O_APPEND).
            for (fd, path) in [1, 2].into_iter().zip(own_fds) {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO {
                    let fresh = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fresh >= 0 {
                        libc::dup2(fresh, fd);
                        libc::close(fresh);
                    }
                }
            }
            // Our listeners, shared memory, signalfd...: not the daemon's business.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if let Some(pidfile) = &pidfile {
                match libc::fork() {
                    -1 => return Err(io::Error::last_os_error()),
                    0 => {}
                    _ => libc::_exit(0),
                }
                write_pid(pidfile);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    // The caller reaps it with waitpid (the master's SIGCHLD loop).
    drop(child);
    Ok(Pid::from_raw(pid))
}

/// Write this process's pid and a newline to `path` (async-signal-safe: no allocation).
fn write_pid(path: &CString) {
    // SAFETY: getpid, open, write and close are async-signal-safe; the buffer is ours.
    unsafe {
        let mut n = libc::getpid() as u32;
        let mut buf = [0u8; 16];
        let mut i = buf.len() - 1;
        buf[i] = b'\n';
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        );
        if fd >= 0 {
            libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i);
            libc::close(fd);
        }
    }
}

/// The pid in `path` if that process is alive (uWSGI's `uwsgi_check_pidfile`: the file's
/// leading number, checked with `kill(pid, 0)`).
pub fn live_pid_in(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0)?;
    let pid = Pid::from_raw(pid);
    nix::sys::signal::kill(pid, None).ok().map(|()| pid)
}

extern "C" {
    /// POSIX `tzset(3)` (not in the libc crate): reads `TZ` / `/etc/localtime`.
    fn tzset();
}

/// The local time of `epoch` (seconds), as the cron matcher reads it (uWSGI's
/// `localtime()`, with the month 1-12).
pub fn local_time(epoch: i64) -> Option<rsgi_proto::cron::Tm> {
    let t: libc::time_t = epoch;
    // SAFETY: tzset and localtime_r only read the time zone and write into `tm`, which
    // is ours; `t` outlives the call.
    unsafe {
        tzset();
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        Some(rsgi_proto::cron::Tm {
            minute: tm.tm_min,
            hour: tm.tm_hour,
            day: tm.tm_mday,
            month: tm.tm_mon + 1,
            weekday: tm.tm_wday,
        })
    }
}
