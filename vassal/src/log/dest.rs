//! `logger` and `req-logger` destinations, in uWSGI's syntax (`core/logging.c`
//! `setup_chosen_logger`, `plugins/logfile`, `plugins/syslog`), and `log-maxsize`
//! rotation.
//!
//! | written | what |
//! |---|---|
//! | `file:PATH` | append to PATH (created 0640) |
//! | `file:logfile=PATH,maxsize=N,backupname=B` | the same, rotated past N bytes |
//! | `syslog` | syslog, ident `uwsgi`, facility `daemon`, priority `info` |
//! | `syslog:IDENT` / `syslog:IDENT,FACILITY` | another ident / facility (`local0`, ...; an unknown name is `daemon`, as in uWSGI) |
//! | `stdio` | the process's own log (the `logto` file or stderr) |
//!
//! uWSGI runs loggers in a log master that workers send lines to; rsgi's processes
//! write each line straight to each destination (one `write(2)` or one datagram per
//! line, never waiting: a syslog socket that is full drops the line).
//!
//! Syslog datagrams go to `/dev/log` as glibc's `syslog(3)` writes them
//! (`<PRI>Mmm dd hh:mm:ss IDENT: message`). The environment variable
//! `RSGI_SYSLOG_SOCKET` names another socket path (tests use it).
//!
//! Differences from uWSGI (on purpose): a named logger (`NAME file:...`) is refused, as
//! only `log-route` (refused) would use it; loggers other than `file`, `syslog` and
//! `stdio` are refused with the supported list.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that overrides the syslog socket path (`/dev/log`).
pub const SYSLOG_SOCKET_ENV: &str = "RSGI_SYSLOG_SOCKET";

/// A parsed `logger`/`req-logger` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `file:PATH` (with optional rotation).
    File {
        /// The file.
        path: PathBuf,
        /// Rotate past this many bytes.
        maxsize: Option<u64>,
        /// The rotated file's name (default `PATH.<unix time>`).
        backup: Option<PathBuf>,
    },
    /// `syslog[:IDENT[,FACILITY]]`.
    Syslog {
        /// The ident (default `uwsgi`).
        ident: String,
        /// The facility number (default `daemon`, 3).
        facility: u8,
    },
    /// `stdio`: the process's own log.
    Stdio,
}

/// syslog facilities by name (uWSGI's table, Linux numbers).
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("security", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Parse a `logger`/`req-logger` value; the error says what is wrong.
pub fn parse(value: &str) -> Result<Spec, String> {
    if let Some((id, _)) = value.split_once(' ') {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "'{value}': a named logger ('{id} ...') is only used by log-route, which rsgi \
                 does not support; drop the name"
            ));
        }
    }
    let (name, arg) = match value.split_once(':') {
        Some((n, a)) => (n, (!a.is_empty()).then_some(a)),
        None => (value, None),
    };
    match name {
        "file" => {
            let arg = arg.ok_or_else(|| format!("'{value}': file needs a path: file:PATH"))?;
            if !arg.contains('=') {
                return Ok(Spec::File {
                    path: PathBuf::from(arg),
                    maxsize: None,
                    backup: None,
                });
            }
            let (mut path, mut maxsize, mut backup) = (None, None, None);
            for kv in arg.split(',') {
                match kv.split_once('=') {
                    Some(("logfile", v)) if !v.is_empty() => path = Some(PathBuf::from(v)),
                    Some(("maxsize", v)) => {
                        maxsize = Some(v.parse::<u64>().map_err(|_| {
                            format!("'{value}': maxsize '{v}' is not a whole number")
                        })?);
                    }
                    Some(("backupname", v)) if !v.is_empty() => backup = Some(PathBuf::from(v)),
                    _ => {
                        return Err(format!(
                            "'{value}': expected logfile=PATH[,maxsize=N][,backupname=PATH], found '{kv}'"
                        ))
                    }
                }
            }
            let path = path.ok_or_else(|| format!("'{value}': missing logfile=PATH"))?;
            Ok(Spec::File {
                path,
                maxsize: maxsize.filter(|&m| m > 0),
                backup,
            })
        }
        "syslog" => {
            let (ident, facility) = match arg {
                None => ("uwsgi", None),
                Some(a) => match a.split_once(',') {
                    Some((i, f)) => (i, Some(f)),
                    None => (a, None),
                },
            };
            let facility = facility
                .and_then(|f| FACILITIES.iter().find(|(n, _)| *n == f))
                .map_or(3, |&(_, n)| n);
            Ok(Spec::Syslog {
                ident: ident.to_owned(),
                facility,
            })
        }
        "stdio" => Ok(Spec::Stdio),
        other => Err(format!(
            "'{value}': rsgi has no '{other}' logger: use file:PATH, syslog[:IDENT[,FACILITY]] or stdio"
        )),
    }
}

/// An open destination.
#[derive(Debug)]
pub enum Out {
    /// A file.
    File(LogFile),
    /// A syslog socket.
    Syslog(Syslog),
    /// The process's own log (the main sink's file or stderr).
    Primary,
}

impl Out {
    /// Open the destination `spec` says.
    pub fn open(spec: &Spec) -> io::Result<Out> {
        Ok(match spec {
            Spec::File {
                path,
                maxsize,
                backup,
            } => Out::File(LogFile::open(path.clone(), *maxsize, backup.clone())?),
            Spec::Syslog { ident, facility } => Out::Syslog(Syslog::new(ident, *facility)),
            Spec::Stdio => Out::Primary,
        })
    }
}

/// An append-only log file, rotated past `maxsize` bytes.
#[derive(Debug)]
pub struct LogFile {
    fd: OwnedFd,
    path: PathBuf,
    maxsize: Option<u64>,
    backup: Option<PathBuf>,
}

impl LogFile {
    /// Open (create) `path` for appending.
    pub fn open(
        path: PathBuf,
        maxsize: Option<u64>,
        backup: Option<PathBuf>,
    ) -> io::Result<LogFile> {
        let file = super::open_log(&path).map_err(|e| match e {
            super::LogError::Open { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?;
        Ok(LogFile {
            fd: OwnedFd::from(file),
            path,
            maxsize,
            backup,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes` (one `write(2)`), then rotate if the file grew past `maxsize`.
    pub fn write(&self, bytes: &[u8]) {
        let _ = super::write_fd(self.fd.as_fd(), bytes);
        if let Some(max) = self.maxsize {
            rotate_if_due(
                self.fd.as_fd(),
                &self.path,
                Some(max),
                self.backup.as_deref(),
                None,
            );
        }
    }

    /// Reopen after logrotate moved the file away.
    pub fn reopen(&self) -> io::Result<()> {
        reopen_onto(self.fd.as_fd(), &self.path).map(drop)
    }
}

/// Open `path` again (append, create) and put it behind `fd`'s number; returns the new
/// file (still open, for the caller to point other fds at).
pub(super) fn reopen_onto(fd: BorrowedFd<'_>, path: &Path) -> io::Result<std::fs::File> {
    let file = super::open_log(path).map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: dup3 makes `fd`'s number refer to the new open file atomically; both fds
    // are valid, and `fd` stays open (only what it refers to changes).
    if unsafe { libc::dup3(file.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// `log-maxsize`: if the file behind `fd` is larger than `max` bytes (`None`: whatever
/// its size, for `touch-logrotate`), rotate it as uWSGI does (rename to `backup`,
/// default `PATH.<unix time>`, then a new file), or, if another process of this
/// instance already did, reopen `path`. A POSIX record lock (per process, unlike
/// `flock`, which forked workers would share) makes one process rotate. `then` runs
/// with the new file (to point stdout/stderr at it). Returns the name the file was
/// renamed to, when this call renamed it.
pub(super) fn rotate_if_due(
    fd: BorrowedFd<'_>,
    path: &Path,
    max: Option<u64>,
    backup: Option<&Path>,
    then: Option<&dyn Fn(&std::fs::File)>,
) -> Option<PathBuf> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    if max.is_some_and(|max| u64::try_from(st.st_size).unwrap_or(0) <= max) {
        return None;
    }
    let lock = |kind: libc::c_short, wait: bool| {
        // SAFETY: `flock` is plain old data; zero is valid for every field.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
        // SAFETY: `fd` is valid and `fl` a valid flock for the call.
        unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl) }
    };
    if lock(libc::F_WRLCK as libc::c_short, true) == -1 {
        return None;
    }
    let same = nix::sys::stat::stat(path)
        .map(|p| p.st_ino == st.st_ino && p.st_dev == st.st_dev)
        .unwrap_or(false);
    let mut renamed = None;
    if same {
        let rotated = backup.map(Path::to_path_buf).unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{now}"));
            PathBuf::from(name)
        });
        let notice = format!(
            "rsgi: logsize: {}, triggering rotation to {}...\n",
            st.st_size,
            rotated.display()
        );
        let _ = super::write_fd(fd, notice.as_bytes());
        if std::fs::rename(path, &rotated).is_err() {
            lock(libc::F_UNLCK as libc::c_short, false);
            return None;
        }
        renamed = Some(rotated);
    }
    lock(libc::F_UNLCK as libc::c_short, false);
    let file = reopen_onto(fd, path).ok()?;
    if let Some(then) = then {
        then(&file);
    }
    renamed
}

/// A syslog destination: one datagram per line to `/dev/log` (or
/// [`SYSLOG_SOCKET_ENV`]), never waiting.
#[derive(Debug)]
pub struct Syslog {
    ident: String,
    /// `facility * 8 + info (6)`.
    pri: u8,
    path: PathBuf,
    socket: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    /// A destination with this ident and facility (connects on first use).
    pub fn new(ident: &str, facility: u8) -> Syslog {
        let path = std::env::var_os(SYSLOG_SOCKET_ENV)
            .map_or_else(|| PathBuf::from("/dev/log"), PathBuf::from);
        Syslog {
            ident: ident.to_owned(),
            pri: facility.saturating_mul(8).saturating_add(6),
            path,
            socket: Mutex::new(None),
        }
    }

    /// Send each line of `bytes` as one message (a trailing newline is not sent).
    pub fn write(&self, bytes: &[u8]) {
        let mut guard = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let msg = self.message(line);
            if guard.is_none() {
                *guard = self.connect();
            }
            let Some(sock) = guard.as_ref() else {
                return;
            };
            if let Err(e) = sock.send(&msg) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    // The syslog daemon restarted: connect again next time.
                    *guard = None;
                }
            }
        }
    }

    fn connect(&self) -> Option<UnixDatagram> {
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect(&self.path).ok()?;
        sock.set_nonblocking(true).ok()?;
        Some(sock)
    }

    /// `<PRI>Mmm dd hh:mm:ss IDENT: line`, as glibc's syslog(3) writes it.
    fn message(&self, line: &[u8]) -> Vec<u8> {
        let mut msg = format!("<{}>", self.pri).into_bytes();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        super::format::push_strftime(&mut msg, c"%h %e %T", now);
        msg.push(b' ');
        msg.extend_from_slice(self.ident.as_bytes());
        msg.extend_from_slice(b": ");
        msg.extend_from_slice(line);
        msg
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_table() {
        let file = |p: &str| Spec::File {
            path: PathBuf::from(p),
            maxsize: None,
            backup: None,
        };
        let syslog = |i: &str, f: u8| Spec::Syslog {
            ident: i.to_owned(),
            facility: f,
        };
        let ok: &[(&str, Spec)] = &[
            ("file:/var/log/app.log", file("/var/log/app.log")),
            ("file:rel.log", file("rel.log")),
            (
                "file:logfile=/l,maxsize=100,backupname=/l.old",
                Spec::File {
                    path: PathBuf::from("/l"),
                    maxsize: Some(100),
                    backup: Some(PathBuf::from("/l.old")),
                },
            ),
            ("syslog", syslog("uwsgi", 3)),
            ("syslog:", syslog("uwsgi", 3)),
            ("syslog:myapp", syslog("myapp", 3)),
            ("syslog:myapp,local3", syslog("myapp", 19)),
            // an unknown facility is daemon, as in uWSGI
            ("syslog:myapp,nope", syslog("myapp", 3)),
            ("stdio", Spec::Stdio),
        ];
        for (value, want) in ok {
            assert_eq!(parse(value).as_ref(), Ok(want), "{value}");
        }
        let bad: &[(&str, &str)] = &[
            ("file", "needs a path"),
            ("file:", "needs a path"),
            ("file:maxsize=10", "missing logfile"),
            ("file:logfile=/x,color=red", "expected logfile=PATH"),
            ("access file:/x", "named logger"),
            ("redislog:127.0.0.1", "no 'redislog' logger"),
            ("socket:/tmp/x", "no 'socket' logger"),
        ];
        for (value, want) in bad {
            let err = parse(value).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }

    #[test]
    fn syslog_messages_are_glibc_shaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new("app", 16);
        s.path = path;
        s.write(b"one\ntwo\n");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        let n = server.recv(&mut buf).unwrap();
        let second = String::from_utf8_lossy(&buf[..n]).into_owned();
        // <134> = local0 * 8 + info; "Nov 14 22:13:20" is 15 characters
        assert!(first.starts_with("<134>"), "{first}");
        assert_eq!(&first[5 + 15..], " app: one", "{first}");
        assert!(second.ends_with(" app: two"), "{second}");
    }

    #[test]
    fn rotation_renames_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let f = LogFile::open(path.clone(), Some(10), Some(dir.path().join("a.old"))).unwrap();
        f.write(b"12345\n");
        assert!(!dir.path().join("a.old").exists());
        f.write(b"67890\n");
        // 12 bytes > 10: rotated after this write
        let old = std::fs::read_to_string(dir.path().join("a.old")).unwrap();
        assert!(old.starts_with("12345\n67890\n"), "{old}");
        assert!(old.contains("triggering rotation to"), "{old}");
        f.write(b"new\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }
}
