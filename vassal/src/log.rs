//! The log sink: where every log line, access line and `wsgi.errors` write goes.
//!
//! # What
//!
//! One process-wide sink, set up once by [`init`] from the configuration: the
//! `daemonize` file, else the `logto` file, else stderr. [`line`](fn@line) (and the
//! [`log_line!`](crate::log_line) macro) writes one line, [`access`] one access-log line
//! (unless `disable-logging`, see [`set_access_enabled`]), [`write_raw`] passes bytes
//! through (for `wsgi.errors`). With `logdate` each line starts with uWSGI's date format,
//! `Sat Nov 21 06:11:23 2026 - ` (local time, `ctime(3)` layout). [`reopen`] reopens the
//! file after logrotate moved it away (SIGUSR1).
//!
//! # How
//!
//! - **Whole lines.** Each line is formatted into a reusable thread-local buffer and
//!   written with a single `write(2)`; the file is opened `O_APPEND`, so lines from many
//!   threads and from many worker processes never interleave. The access-line path does
//!   not allocate once the buffer has grown.
//! - **One fd number for the life of the process.** For a file target the sink owns a
//!   close-on-exec fd, and [`reopen`] swaps the open file *behind* that fd number with
//!   `dup3(2)`, so a thread writing at that very moment writes to the old or the new file,
//!   never to a closed or reused fd.
//! - **stdout and stderr follow the file.** For a file target, fds 1 and 2 are pointed at
//!   it too (`dup2`), so Python's `print`, tracebacks and C-level messages land in the same
//!   log (uWSGI does the same); [`reopen`] redirects them again.
//! - Before [`init`] (or if it was never called) lines go to stderr without a date.
//! - **Never wait for the emperor.** Under `rsgid` with no log file, stdout and stderr
//!   are pipes that rsgid reads; if rsgid stops reading (stopped, stalled), a blocking
//!   write would stall every worker within milliseconds. So [`init`] makes both pipes
//!   non-blocking there ([`detach_output`]): a line that does not fit now is dropped and
//!   counted, and the next line that fits is preceded by one saying how many were lost
//!   (`rsgi: [pid N] 12 line(s) of output dropped: the emperor was not reading`), which
//!   rsgid also counts (`rsgi_vassal_output_dropped_lines_total`). Python's
//!   `sys.stdout`/`sys.stderr` then write through this sink too (see
//!   `python::output`), whole lines at a time.
//! - **Encoders.** With `log-encoder` each line (one message, as uWSGI's log master
//!   reads one write) goes through the chain ([`rsgi_proto::log_encoder`]) on its way
//!   to every destination; request lines too, unless they go to `req-logger`, where
//!   `log-req-encoder`'s chain applies instead (uWSGI's routing). Python's
//!   `sys.stdout`/`sys.stderr` then write through the sink, so `print()` is encoded;
//!   what C code or a subprocess writes straight to fds 1 and 2 is not.
//! - **`logto2`.** The sink writes to fd 2 (the `logto`/`daemonize` file if one is set)
//!   until [`open_logto2`], called once privileges are dropped, puts the file behind it.
//!   That happens once, before any other thread or worker exists.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use rsgi_proto::config::VassalConfig;

pub mod dest;
pub mod format;

use dest::Out;
use format::Template;
use rsgi_proto::log_encoder::{self, Encoder};

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's stderr (fd 2); under `rsgid` the emperor captures it.
    Stderr,
    /// A file, opened for appending (created with mode 0640).
    File(PathBuf),
    /// `logto2`: fd 2 as it is until [`open_logto2`] opens the file (once privileges
    /// are dropped), then that file.
    Later,
}

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The log file could not be opened or created.
    #[error("cannot open log file {path}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// stdout/stderr or the sink's own fd could not be pointed at the log file.
    #[error("cannot redirect {what} to log file {path}")]
    Redirect {
        /// `stdout`, `stderr` or `the log fd`.
        what: &'static str,
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// [`init`] was called twice.
    #[error("the log sink is already initialized")]
    AlreadyInitialized,
    /// A `logger`/`req-logger` value is wrong or its destination cannot be opened.
    #[error("{option} = {why}")]
    Logger {
        /// `logger` or `req-logger`.
        option: &'static str,
        /// What is wrong (names the value).
        why: String,
    },
}

/// One request line's fields (all borrowed: building one costs nothing); see
/// [`format::Record`].
pub use format::Record as Access;

/// Which requests get a line: uWSGI's `log_request` rules (`disable-logging` with the
/// exceptions `log-4xx`, `log-5xx`, `log-slow`, `log-zero`, `log-big`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Every request (not `disable-logging`).
    pub all: bool,
    /// `log-4xx`.
    pub status_4xx: bool,
    /// `log-5xx`.
    pub status_5xx: bool,
    /// `log-slow`: at least this many milliseconds.
    pub slow_ms: Option<u64>,
    /// `log-zero`: an empty response body.
    pub zero: bool,
    /// `log-big`: at least this many body bytes.
    pub big: Option<u64>,
    /// `log-sendfile`: a body that was a file.
    pub sendfile: bool,
}

impl Policy {
    /// Whether a request with this status, body size and duration (and a body that
    /// was a file, or not) gets a line.
    pub fn wants(&self, status: u16, body_bytes: u64, duration: Duration, file: bool) -> bool {
        self.all
            || (self.sendfile && file)
            || (self.status_4xx && (400..=499).contains(&status))
            || (self.status_5xx && (500..=599).contains(&status))
            || self
                .slow_ms
                .is_some_and(|ms| duration.as_millis() >= u128::from(ms))
            || (self.zero && body_bytes == 0)
            || self.big.is_some_and(|b| body_bytes >= b)
    }
}

/// Where request lines go and how they look.
#[derive(Debug)]
struct Requests {
    policy: Policy,
    /// `log-format`, compiled.
    template: Option<Template>,
    /// `req-logger` destinations (empty: the sink).
    outs: Vec<Out>,
    /// `log-req-encoder`, the encoders rsgi uses (for request lines sent to `outs`).
    encoders: Vec<Encoder>,
    /// `log-x-forwarded-for`.
    x_forwarded_for: bool,
}

static REQUESTS: OnceLock<Requests> = OnceLock::new();

/// The fd a [`Sink`] writes to.
#[derive(Debug)]
enum SinkFd {
    Stderr,
    File {
        fd: OwnedFd,
        path: PathBuf,
    },
    /// `logto2`: stderr until the file is opened (set once, by the main thread, before
    /// any other thread or worker exists).
    Later(OnceLock<(OwnedFd, PathBuf)>),
}

impl SinkFd {
    /// The log file's fd and path, if the sink writes to a file (now).
    fn file(&self) -> Option<(BorrowedFd<'_>, &Path)> {
        match self {
            SinkFd::Stderr => None,
            SinkFd::File { fd, path } => Some((fd.as_fd(), path)),
            SinkFd::Later(cell) => cell.get().map(|(fd, path)| (fd.as_fd(), path.as_path())),
        }
    }
}

/// A log destination. The process-wide one is set by [`init`]; tests make their own.
#[derive(Debug)]
pub struct Sink {
    fd: SinkFd,
    logdate: bool,
    /// `logdate = FORMAT`: the strftime format of the date prefix.
    date_format: Option<std::ffi::CString>,
    /// `logger` destinations: when any, lines go there instead of `fd`.
    outs: Vec<Out>,
    /// `log-maxsize` for a file target.
    maxsize: Option<u64>,
    /// `log-backupname`: what `log-maxsize` and `touch-logrotate` rename the file to.
    backupname: Option<PathBuf>,
    /// `log-encoder`, the encoders rsgi uses: every message goes through them.
    encoders: Vec<Encoder>,
    /// Point fds 1 and 2 at the file too (and again on reopen).
    redirect_std: bool,
    /// Whether the last [`Sink::write_raw`] ended a line (for the date prefix).
    raw_at_line_start: AtomicBool,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static STDERR_SINK: Sink = Sink {
    fd: SinkFd::Stderr,
    logdate: false,
    date_format: None,
    outs: Vec::new(),
    maxsize: None,
    backupname: None,
    encoders: Vec::new(),
    redirect_std: false,
    raw_at_line_start: AtomicBool::new(true),
};
static ACCESS_ENABLED: AtomicBool = AtomicBool::new(true);
/// Set once stdout and stderr were made non-blocking ([`detach_output`]).
static NONBLOCKING: AtomicBool = AtomicBool::new(false);
/// Lines dropped since the last notice (stderr target, non-blocking).
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);
/// A line was cut by a full pipe: the next write starts a new line first.
static TORN: AtomicBool = AtomicBool::new(false);

/// The notice about dropped output, as rsgid recognises it.
pub use rsgi_proto::notify::OUTPUT_DROPPED as DROPPED_NOTICE;

/// Buffers beyond this size are given back after use (a huge traceback must not pin
/// memory in every thread).
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// (unix second, formatted date) of the last date prefix this thread wrote.
    static DATE_CACHE: Cell<(i64, [u8; 32], usize)> = const { Cell::new((i64::MIN, [0; 32], 0)) };
}

/// Set up the process-wide sink from the configuration: the `daemonize` file, else the
/// `logto` file, else stderr; `logdate` adds the date prefix and `disable-logging` turns
/// off access lines. For a file target, fds 1 and 2 are redirected to the file. With
/// `logto2` the file is opened later ([`open_logto2`]); until then lines go to fd 2,
/// which is the `daemonize`/`logto` file if one is set.
///
/// Call once, early, in the master before any fork; workers inherit the sink.
pub fn init(config: &VassalConfig) -> Result<(), LogError> {
    let first = config.daemonize.as_ref().or(config.logto.as_ref());
    let target = match (first, &config.logto2) {
        (_, Some(_)) => Target::Later,
        (Some(path), None) => Target::File(path.clone()),
        (None, None) => Target::Stderr,
    };
    if let (Target::Later, Some(path)) = (&target, first) {
        // `logto` (or `daemonize`) and `logto2`: uWSGI logs to the first until the
        // second is opened.
        redirect_stdio(&open_log(path)?, path)?;
    }
    let on_stderr = target == Target::Stderr || (target == Target::Later && first.is_none());
    if on_stderr && std::env::var_os(rsgi_proto::notify::NOTIFY_FD_ENV).is_some() {
        detach_output();
    }
    let mut sink = Sink::open(target, config.logdate, true)?;
    sink.date_format = config
        .logdate_format
        .as_deref()
        .and_then(|f| std::ffi::CString::new(f).ok());
    sink.outs = open_outs("logger", &config.logger)?;
    sink.maxsize = config.log_maxsize;
    sink.backupname = config.log_backupname.clone();
    sink.encoders = log_encoder::used(&config.log_encoder);
    let requests = Requests {
        policy: Policy {
            all: !config.disable_logging,
            status_4xx: config.log_4xx,
            status_5xx: config.log_5xx,
            slow_ms: config.log_slow,
            zero: config.log_zero,
            big: config.log_big,
            sendfile: config.log_sendfile,
        },
        template: config.log_format.as_deref().map(|f| {
            let ftime = config
                .log_format_strftime
                .then_some(config.logdate_format.as_deref())
                .flatten();
            Template::compile(f, ftime)
        }),
        outs: open_outs("req-logger", &config.req_logger)?,
        encoders: log_encoder::used(&config.log_req_encoder),
        x_forwarded_for: config.log_x_forwarded_for,
    };
    set_access_enabled(!config.disable_logging);
    REQUESTS
        .set(requests)
        .map_err(|_| LogError::AlreadyInitialized)?;
    SINK.set(sink).map_err(|_| LogError::AlreadyInitialized)
}

/// Check the `logger`/`req-logger` values of `config` without opening anything (for
/// a clear error before the app loads).
pub fn check_loggers(config: &VassalConfig) -> Result<(), LogError> {
    for (option, values) in [
        ("logger", &config.logger),
        ("req-logger", &config.req_logger),
    ] {
        for v in values {
            dest::parse(v).map_err(|why| LogError::Logger { option, why })?;
        }
    }
    Ok(())
}

fn open_outs(option: &'static str, values: &[String]) -> Result<Vec<Out>, LogError> {
    values
        .iter()
        .map(|v| {
            let spec = dest::parse(v).map_err(|why| LogError::Logger { option, why })?;
            Out::open(&spec).map_err(|e| LogError::Logger {
                option,
                why: format!("'{v}': {e}"),
            })
        })
        .collect()
}

/// Whether log lines go to `logger` destinations or through `log-encoder`s (so Python's
/// `sys.stdout` and `sys.stderr` should write through the sink to reach them).
pub fn has_loggers() -> bool {
    let sink = sink();
    !sink.outs.is_empty() || !sink.encoders.is_empty()
}

/// `logto2`: open the log file now (once privileges are dropped, so the file is created
/// by, and belongs to, the user the server runs as) and send every line there from now
/// on, fds 1 and 2 included. A no-op unless [`init`] was given `logto2`.
pub fn open_logto2(path: &Path) -> Result<(), LogError> {
    sink().open_later(path)
}

/// `touch-logrotate`: rotate the log file now, as `log-maxsize` does (renamed to
/// `log-backupname`, else `LOGFILE.<unix time>`; a new file opened behind the same fd).
/// Returns the file it was renamed to; `None` when there is no log file (stderr), or
/// another process of this server rotated it first. Other processes must [`reopen`].
pub fn rotate() -> Option<PathBuf> {
    sink().rotate_now()
}

/// The compiled `log-format`, if any (the request pipeline takes what it needs).
pub fn template() -> Option<&'static Template> {
    REQUESTS.get().and_then(|r| r.template.as_ref())
}

/// Whether request lines use `X-Forwarded-For` as the address (`log-x-forwarded-for`).
pub fn x_forwarded_for() -> bool {
    REQUESTS.get().is_some_and(|r| r.x_forwarded_for)
}

/// Make stdout and stderr non-blocking when they are pipes (under rsgid): from now on
/// output that does not fit is dropped and counted instead of waiting (see the module
/// doc). The flag belongs to the pipe, so workers forked later inherit it. A no-op for
/// anything but pipes (a terminal, a file, the journal's socket).
pub fn detach_output() {
    let mut any = false;
    for fd in [1, 2] {
        // SAFETY: fds 1 and 2 stay open for the life of the process; the borrow ends
        // with this iteration.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let is_pipe = nix::sys::stat::fstat(fd)
            .map(|st| {
                nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                    .contains(nix::sys::stat::SFlag::S_IFIFO)
            })
            .unwrap_or(false);
        if !is_pipe {
            continue;
        }
        let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) else {
            continue;
        };
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).is_ok() {
            any = true;
        }
    }
    NONBLOCKING.store(any, Ordering::Relaxed);
}

/// Whether output to stderr is non-blocking (dropped rather than waited for).
pub fn nonblocking() -> bool {
    NONBLOCKING.load(Ordering::Relaxed)
}

/// The process-wide sink (stderr without a date until [`init`] ran).
pub fn sink() -> &'static Sink {
    SINK.get().unwrap_or(&STDERR_SINK)
}

/// Write one line (a newline is added unless the text ends with one).
pub fn line(args: std::fmt::Arguments<'_>) {
    sink().line(args);
}

/// Write bytes as they come (for `wsgi.errors`); with `logdate` each new line gets the
/// date prefix.
pub fn write_raw(bytes: &[u8]) {
    sink().write_raw(bytes);
}

/// Write one request line if the policy wants it (`disable-logging` and its
/// exceptions): `log-format`'s line or rsgi's default one, to `req-logger` if set,
/// else to the sink (and so to `logger`).
pub fn access(a: &Access<'_>) {
    let Some(requests) = REQUESTS.get() else {
        if ACCESS_ENABLED.load(Ordering::Relaxed) {
            sink().access(a);
        }
        return;
    };
    let policy = Policy {
        all: ACCESS_ENABLED.load(Ordering::Relaxed),
        ..requests.policy
    };
    if !policy.wants(a.status, a.body_bytes, a.duration, a.file_body) {
        return;
    }
    let sink = sink();
    with_buf(|buf| {
        match &requests.template {
            Some(t) => t.render(a, buf),
            None => sink.push_access(a, buf),
        }
        if requests.outs.is_empty() {
            // As in uWSGI: without a req-logger, request lines are log lines, and go
            // through log-encoder (log-req-encoder is for req-logger's lines).
            sink.write_all(buf);
        } else {
            for_each_message(&requests.encoders, buf, |message| {
                for out in &requests.outs {
                    sink.write_to(out, message);
                }
            });
        }
    });
}

/// Turn access lines on or off (`disable-logging` turns them off).
pub fn set_access_enabled(enabled: bool) {
    ACCESS_ENABLED.store(enabled, Ordering::Relaxed);
}

/// Reopen the log file (on SIGUSR1, after logrotate renamed it). Call from the main loop,
/// not from a signal handler (it opens a file). A no-op for stderr.
pub fn reopen() -> Result<(), LogError> {
    sink().reopen()
}

/// Write one line to the process-wide log: `log_line!("worker {pid} ready")`.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::log::line(::std::format_args!($($arg)*))
    };
}

impl Sink {
    /// Open a sink. `redirect_std` also points fds 1 and 2 at a file target (the
    /// process-wide sink does; tests must not).
    pub fn open(target: Target, logdate: bool, redirect_std: bool) -> Result<Sink, LogError> {
        let fd = match target {
            Target::Stderr => SinkFd::Stderr,
            Target::Later => SinkFd::Later(OnceLock::new()),
            Target::File(path) => {
                let file = open_log(&path)?;
                if redirect_std {
                    redirect_stdio(&file, &path)?;
                }
                SinkFd::File {
                    fd: OwnedFd::from(file),
                    path,
                }
            }
        };
        Ok(Sink {
            fd,
            logdate,
            date_format: None,
            outs: Vec::new(),
            maxsize: None,
            backupname: None,
            encoders: Vec::new(),
            redirect_std,
            raw_at_line_start: AtomicBool::new(true),
        })
    }

    /// The log file, if the sink writes to one.
    pub fn path(&self) -> Option<&Path> {
        self.fd.file().map(|(_, path)| path)
    }

    /// Write one line (see [`line`](fn@line)).
    pub fn line(&self, args: std::fmt::Arguments<'_>) {
        with_buf(|buf| {
            if self.logdate {
                self.push_date(buf);
            }
            // Writing into a Vec cannot fail.
            let _ = buf.write_fmt(args);
            if buf.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
            self.write_all(buf);
        });
    }

    /// Write bytes as they come (see [`write_raw`]).
    pub fn write_raw(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.logdate {
            self.write_all(bytes);
            return;
        }
        with_buf(|buf| {
            let mut at_start = self.raw_at_line_start.load(Ordering::Relaxed);
            for piece in bytes.split_inclusive(|&b| b == b'\n') {
                if at_start {
                    self.push_date(buf);
                }
                buf.extend_from_slice(piece);
                at_start = piece.last() == Some(&b'\n');
            }
            self.raw_at_line_start.store(at_start, Ordering::Relaxed);
            self.write_all(buf);
        });
    }

    /// Write one access line, whatever [`set_access_enabled`] says:
    /// `[pid: 1234] 127.0.0.1 - "GET /x?y HTTP/1.1" 200 11 bytes 0.12 ms`.
    pub fn access(&self, a: &Access<'_>) {
        with_buf(|buf| {
            self.push_access(a, buf);
            self.write_all(buf);
        });
    }

    /// Append rsgi's default request line to `buf`.
    fn push_access(&self, a: &Access<'_>, buf: &mut Vec<u8>) {
        if self.logdate {
            self.push_date(buf);
        }
        // Writing into a Vec cannot fail, and integer and float formatting does not
        // allocate: once the buffer has grown, this path allocates nothing.
        let _ = write!(buf, "[pid: {}] ", a.pid);
        push_escaped(buf, a.addr);
        buf.extend_from_slice(b" - \"");
        push_escaped(buf, a.method);
        buf.push(b' ');
        push_escaped(buf, a.uri);
        buf.push(b' ');
        push_escaped(buf, a.proto);
        let ms = a.duration.as_secs_f64() * 1000.0;
        let _ = writeln!(buf, "\" {} {} bytes {:.2} ms", a.status, a.body_bytes, ms);
    }

    /// The date prefix: `logdate = FORMAT`'s strftime, else `ctime(3)`'s layout.
    fn push_date(&self, buf: &mut Vec<u8>) {
        match &self.date_format {
            None => push_date(buf),
            Some(f) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                format::push_strftime(buf, f, now);
                buf.extend_from_slice(b" - ");
            }
        }
    }

    /// Reopen the file target (see [`reopen`]).
    pub fn reopen(&self) -> Result<(), LogError> {
        let outs = self.outs.iter();
        let req_outs = REQUESTS.get().map(|r| r.outs.iter()).into_iter().flatten();
        for out in outs.chain(req_outs) {
            if let Out::File(f) = out {
                f.reopen().map_err(|source| LogError::Open {
                    path: f.path().to_owned(),
                    source,
                })?;
            }
        }
        let Some((fd, path)) = self.fd.file() else {
            return Ok(());
        };
        let file = open_log(path)?;
        // SAFETY: dup3 atomically makes our fd number refer to the new open file; `fd` is
        // owned by this sink and stays open (only what it refers to changes), so every
        // concurrent writer uses a valid fd throughout. Both fds are valid here.
        let r = unsafe { libc::dup3(file.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) };
        if r == -1 {
            return Err(LogError::Redirect {
                what: "the log fd",
                path: path.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        if self.redirect_std {
            redirect_stdio(&file, path)?;
        }
        Ok(())
    }

    /// `write(2)` everything, normally in one call; errors are dropped (there is nowhere
    /// left to report them). On a non-blocking stderr ([`detach_output`]) a full pipe
    /// drops the rest and counts the lines lost; the first write that fits again is
    /// preceded by a notice with the count.
    fn write_all(&self, bytes: &[u8]) {
        for_each_message(&self.encoders, bytes, |message| {
            if self.outs.is_empty() {
                self.write_primary(message);
            } else {
                for out in &self.outs {
                    self.write_to(out, message);
                }
            }
        });
    }

    /// See [`open_logto2`].
    fn open_later(&self, path: &Path) -> Result<(), LogError> {
        let SinkFd::Later(cell) = &self.fd else {
            return Ok(());
        };
        let file = open_log(path)?;
        if self.redirect_std {
            redirect_stdio(&file, path)?;
        }
        cell.set((OwnedFd::from(file), path.to_owned()))
            .map_err(|_| LogError::AlreadyInitialized)
    }

    /// See [`rotate`].
    fn rotate_now(&self) -> Option<PathBuf> {
        let (fd, path) = self.fd.file()?;
        self.rotate_file(fd, path, None)
    }

    /// [`dest::rotate_if_due`] for the sink's own file (`max`: `log-maxsize`, `None`:
    /// now); fds 1 and 2 follow the new file when the sink redirects them.
    fn rotate_file(&self, fd: BorrowedFd<'_>, path: &Path, max: Option<u64>) -> Option<PathBuf> {
        let redirect = |file: &File| {
            if self.redirect_std {
                let _ = redirect_stdio(file, path);
            }
        };
        dest::rotate_if_due(fd, path, max, self.backupname.as_deref(), Some(&redirect))
    }

    /// Write to one `logger`/`req-logger` destination.
    fn write_to(&self, out: &Out, bytes: &[u8]) {
        match out {
            Out::File(f) => f.write(bytes),
            Out::Syslog(s) => s.write(bytes),
            Out::Primary => self.write_primary(bytes),
        }
    }

    /// Write to the sink's own fd (the file or stderr); rotate a file past
    /// `log-maxsize`.
    fn write_primary(&self, bytes: &[u8]) {
        let file = self.fd.file();
        if let (Some((fd, path)), Some(max)) = (file, self.maxsize) {
            let _ = write_fd(fd, bytes);
            self.rotate_file(fd, path, Some(max));
            return;
        }
        if let Some((fd, _)) = file {
            let _ = write_fd(fd, bytes);
            return;
        }
        let stderr = io::stderr();
        if !nonblocking() {
            let _ = write_fd(stderr.as_fd(), bytes);
            return;
        }
        write_counted(stderr.as_fd(), bytes);
    }
}

/// How much of a buffer [`write_fd`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    All,
    /// Some bytes, then the pipe was full.
    Part(usize),
    /// Nothing.
    None,
}

/// `write(2)` until done, a full pipe (`EAGAIN`) or an error (which ends the write).
fn write_fd(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Written {
    let total = bytes.len();
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => break,
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    match total - bytes.len() {
        n if n == total => Written::All,
        0 => Written::None,
        n => Written::Part(n),
    }
}

/// Write `bytes` to a non-blocking `fd`, dropping and counting what does not fit, after
/// the notice about earlier drops if there were any.
fn write_counted(fd: BorrowedFd<'_>, bytes: &[u8]) {
    let dropped = DROPPED_LINES.swap(0, Ordering::Relaxed);
    let torn = TORN.swap(false, Ordering::Relaxed);
    if dropped > 0 || torn {
        let notice = dropped_notice(torn, dropped, std::process::id());
        let written = write_fd(fd, notice.as_bytes());
        if written != Written::All {
            // Still full: keep the count, and this line goes too.
            DROPPED_LINES.fetch_add(dropped, Ordering::Relaxed);
            if torn || matches!(written, Written::Part(_)) {
                TORN.store(true, Ordering::Relaxed);
            }
            note_dropped(Written::None, bytes);
            return;
        }
    }
    let written = write_fd(fd, bytes);
    note_dropped(written, bytes);
}

/// Count what a failed write lost: the lines of `bytes` after what was written (at
/// least one).
fn note_dropped(written: Written, bytes: &[u8]) {
    let (rest, torn) = match written {
        Written::All => return,
        Written::None => (bytes, false),
        Written::Part(n) => (&bytes[n..], true),
    };
    let lines = rest.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
    DROPPED_LINES.fetch_add(lines, Ordering::Relaxed);
    if torn {
        TORN.store(true, Ordering::Relaxed);
    }
}

/// The line that reports dropped output (after a torn line, on a line of its own).
fn dropped_notice(torn: bool, dropped: u64, pid: u32) -> String {
    let start = if torn { "\n" } else { "" };
    if dropped == 0 {
        return start.to_owned();
    }
    format!("{start}rsgi: [pid {pid}] {dropped} {DROPPED_NOTICE}\n")
}

fn open_log(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_owned(),
            source,
        })
}

fn redirect_stdio(file: &File, path: &Path) -> Result<(), LogError> {
    let err = |what: &'static str| {
        move |e: Errno| LogError::Redirect {
            what,
            path: path.to_owned(),
            source: e.into(),
        }
    };
    nix::unistd::dup2_stdout(file).map_err(err("stdout"))?;
    nix::unistd::dup2_stderr(file).map_err(err("stderr"))?;
    Ok(())
}

/// Run `f` with this thread's (emptied) line buffer; a nested call (a `Display` impl
/// that logs) gets a fresh one instead of panicking.
fn with_buf(f: impl FnOnce(&mut Vec<u8>)) {
    let mut f = Some(f);
    let _ = BUF.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            buf.clear();
            if let Some(f) = f.take() {
                f(&mut buf);
            }
            if buf.capacity() > KEEP_CAPACITY {
                buf.clear();
                buf.shrink_to(512);
            }
        }
    });
    // Reentrant call, or the thread-local is being destroyed.
    if let Some(f) = f {
        f(&mut Vec::new());
    }
}

/// Hand `bytes` to `write` as they are, or, with encoders (`log-encoder`,
/// `log-req-encoder`), each line of them (a message, as uWSGI's log master reads one)
/// run through the chain. One call of `write` per message, as uWSGI writes each.
fn for_each_message(encoders: &[Encoder], bytes: &[u8], mut write: impl FnMut(&[u8])) {
    if encoders.is_empty() {
        write(bytes);
        return;
    }
    let mut out = Vec::with_capacity(bytes.len() + 128);
    for message in bytes.split_inclusive(|&b| b == b'\n') {
        out.clear();
        log_encoder::encode(encoders, message, &Now, &mut out);
        write(&out);
    }
}

/// The real clock of the encoders: the system time, strftime in local time.
struct Now;

impl log_encoder::Clock for Now {
    fn unix(&self) -> i64 {
        self.micros() / 1_000_000
    }

    fn millis(&self) -> i64 {
        self.micros() / 1000
    }

    fn micros(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn strftime(&self, format: &str, out: &mut Vec<u8>) {
        if let Ok(format) = std::ffi::CString::new(format) {
            format::push_strftime(out, &format, self.unix());
        }
    }
}

/// Append bytes, turning control characters and `"` into `\xNN` so that a request
/// cannot forge log lines or break the quoting.
fn push_escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        if b < 0x20 || b == 0x7f || b == b'"' {
            buf.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            buf.push(b);
        }
    }
}

/// Append `Sat Nov 21 06:11:23 2026 - ` (local time), cached per thread per second.
fn push_date(buf: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let (secs, mut text, mut len) = DATE_CACHE.with(Cell::get);
    if secs != now {
        len = format_ctime(now, &mut text);
        DATE_CACHE.with(|c| c.set((now, text, len)));
    }
    buf.extend_from_slice(&text[..len]);
    buf.extend_from_slice(b" - ");
}

/// `ctime(3)`'s layout without its newline: `Sat Nov  1 06:11:23 2026`. Returns the
/// length written.
fn format_ctime(secs: i64, out: &mut [u8; 32]) -> usize {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t: libc::time_t = secs;
    // SAFETY: `tm` is plain old data (integers and one pointer): all zeroes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the reentrant variant
    // and writes only into `tm`.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    let mut cursor = io::Cursor::new(&mut out[..]);
    let _ = if ok {
        let day = usize::try_from(tm.tm_wday).ok().and_then(|d| DAYS.get(d));
        let month = usize::try_from(tm.tm_mon).ok().and_then(|m| MONTHS.get(m));
        write!(
            cursor,
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            day.unwrap_or(&"???"),
            month.unwrap_or(&"???"),
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            i64::from(tm.tm_year) + 1900
        )
    } else {
        write!(cursor, "@{secs}")
    };
    usize::try_from(cursor.position()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn file_sink(dir: &Path, logdate: bool) -> (Sink, PathBuf) {
        let path = dir.join("app.log");
        (
            Sink::open(Target::File(path.clone()), logdate, false).unwrap(),
            path,
        )
    }

    fn sample() -> Access<'static> {
        Access {
            addr: b"127.0.0.1",
            method: b"GET",
            uri: b"/x?y",
            proto: b"HTTP/1.1",
            status: 200,
            body_bytes: 11,
            duration: Duration::from_micros(120),
            pid: 1234,
            ..Access::default()
        }
    }

    /// `Sat Nov 21 06:11:23 2026 - ` at the start of `line`; returns the rest.
    fn strip_date(line: &str) -> &str {
        let (date, rest) = line.split_once(" - ").unwrap();
        let parts: Vec<&str> = date.split_whitespace().collect();
        assert_eq!(parts.len(), 5, "date {date:?}");
        assert!(DAYS_OK.contains(&parts[0]), "weekday in {date:?}");
        assert_eq!(parts[3].len(), 8, "time in {date:?}");
        assert!(parts[4].parse::<u32>().unwrap() >= 2024, "year in {date:?}");
        rest
    }
    const DAYS_OK: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

    #[test]
    fn file_sink_with_logdate() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = file_sink(dir.path(), true);
        sink.line(format_args!("hello {}", 42));
        sink.line(format_args!("already ended\n"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert_eq!(strip_date(lines[0]), "hello 42");
        assert_eq!(strip_date(lines[1]), "already ended");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn ctime_layout() {
        let mut out = [0u8; 32];
        let n = format_ctime(1_700_000_000, &mut out);
        let s = std::str::from_utf8(&out[..n]).unwrap();
        // The exact text depends on the local time zone; the layout does not.
        assert_eq!(s.len(), 24, "{s:?}");
        assert_eq!(&s[3..4], " ");
        assert_eq!(&s[7..8], " ");
        assert_eq!(&s[13..14], ":");
        assert!(s.ends_with(" 2023"), "{s:?}");
    }

    #[test]
    fn access_line_format() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = file_sink(dir.path(), false);
        sink.access(&sample());
        let evil = Access {
            uri: b"/a\"b\nc",
            ..sample()
        };
        sink.access(&evil);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "[pid: 1234] 127.0.0.1 - \"GET /x?y HTTP/1.1\" 200 11 bytes 0.12 ms\n\
             [pid: 1234] 127.0.0.1 - \"GET /a\\x22b\\x0ac HTTP/1.1\" 200 11 bytes 0.12 ms\n"
        );
    }

    #[test]
    fn raw_writes_get_a_date_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = file_sink(dir.path(), true);
        sink.write_raw(b"Traceback:\n  line one");
        sink.write_raw(b" continued\nlast\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(strip_date).collect();
        assert_eq!(lines, ["Traceback:", "  line one continued", "last"]);

        let path = dir.path().join("plain.log");
        let plain = Sink::open(Target::File(path.clone()), false, false).unwrap();
        plain.write_raw(b"as is");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "as is");
    }

    #[test]
    fn reopen_after_rename_creates_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = file_sink(dir.path(), false);
        sink.line(format_args!("before"));
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.line(format_args!("still old"));
        sink.reopen().unwrap();
        sink.line(format_args!("after"));
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        // The fd number is the same and still close-on-exec.
        let SinkFd::File { fd, .. } = &sink.fd else {
            panic!("not a file sink")
        };
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn open_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("x.log");
        let err = Sink::open(Target::File(path), false, false).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot open log file "),
            "{err}"
        );
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }

    #[test]
    fn lines_from_threads_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = file_sink(dir.path(), true);
        let sink = std::sync::Arc::new(sink);
        let long = "x".repeat(3000);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                let long = long.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        match i % 3 {
                            0 => sink.line(format_args!("thread {t} line {i} {long}")),
                            1 => sink.access(&Access { pid: t, ..sample() }),
                            _ => sink.write_raw(format!("raw {t} {i} {long}\n").as_bytes()),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 * 500);
        for line in lines {
            let rest = strip_date(line);
            let ok = (rest.starts_with("thread ") && rest.ends_with(&long))
                || (rest.starts_with("raw ") && rest.ends_with(&long))
                || (rest.starts_with("[pid: ") && rest.ends_with(" 0.12 ms"));
            assert!(ok, "torn line: {:?}", &rest[..rest.len().min(80)]);
        }
    }

    #[test]
    fn nested_logging_does_not_panic() {
        struct Loud<'a>(&'a Sink);
        impl std::fmt::Display for Loud<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.line(format_args!("inner"));
                f.write_str("outer")
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = file_sink(dir.path(), false);
        sink.line(format_args!("{}", Loud(&sink)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "inner\nouter\n");
    }

    #[test]
    fn a_full_pipe_drops_and_counts_then_says_so() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let flags = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        // Fill the pipe with whole lines of 64 bytes.
        let line = [b"x".repeat(63), b"\n".to_vec()].concat();
        let mut kept = 0;
        while write_fd(w.as_fd(), &line) == Written::All {
            kept += 1;
        }
        // That last line did not fit (a 64-byte write into a pipe is all or nothing).
        note_dropped(Written::None, &line);
        // Three more lines in one write, and one line: all dropped, counted by lines.
        write_counted(w.as_fd(), b"a\nb\nc\n");
        write_counted(w.as_fd(), b"d\n");
        assert_eq!(DROPPED_LINES.load(Ordering::Relaxed), 5);
        // The reader catches up: the next line comes after the notice.
        let mut drained = Vec::new();
        let mut buf = [0u8; 65536];
        while drained.len() < kept * line.len() {
            let n = nix::unistd::read(&r, &mut buf).unwrap();
            drained.extend_from_slice(&buf[..n]);
        }
        assert!(drained.chunks(64).all(|c| c == line.as_slice()));
        write_counted(w.as_fd(), b"back\n");
        let n = nix::unistd::read(&r, &mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        let pid = std::process::id();
        assert_eq!(
            text,
            format!("rsgi: [pid {pid}] 5 {DROPPED_NOTICE}\nback\n")
        );
        assert_eq!(DROPPED_LINES.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn notice_table() {
        assert_eq!(dropped_notice(false, 0, 7), "");
        assert_eq!(dropped_notice(true, 0, 7), "\n");
        // rsgid reads the count back (its metric).
        let notice = dropped_notice(false, 3, 7);
        assert_eq!(
            rsgi_proto::notify::output_dropped(notice.trim_end()),
            Some(3)
        );
        assert_eq!(
            dropped_notice(true, 3, 7),
            format!("\nrsgi: [pid 7] 3 {DROPPED_NOTICE}\n")
        );
    }

    #[test]
    fn which_requests_get_a_line() {
        let ms = Duration::from_millis;
        let quiet = Policy::default();
        let cases: &[(Policy, u16, u64, Duration, bool)] = &[
            (Policy { all: true, ..quiet }, 200, 10, ms(1), true),
            (quiet, 200, 10, ms(1), false),
            (
                Policy {
                    status_4xx: true,
                    ..quiet
                },
                404,
                10,
                ms(1),
                true,
            ),
            (
                Policy {
                    status_4xx: true,
                    ..quiet
                },
                500,
                10,
                ms(1),
                false,
            ),
            (
                Policy {
                    status_5xx: true,
                    ..quiet
                },
                503,
                10,
                ms(1),
                true,
            ),
            (
                Policy {
                    status_5xx: true,
                    ..quiet
                },
                499,
                10,
                ms(1),
                false,
            ),
            (
                Policy {
                    slow_ms: Some(100),
                    ..quiet
                },
                200,
                10,
                ms(100),
                true,
            ),
            (
                Policy {
                    slow_ms: Some(100),
                    ..quiet
                },
                200,
                10,
                ms(99),
                false,
            ),
            (
                Policy {
                    zero: true,
                    ..quiet
                },
                204,
                0,
                ms(1),
                true,
            ),
            (
                Policy {
                    zero: true,
                    ..quiet
                },
                200,
                1,
                ms(1),
                false,
            ),
            (
                Policy {
                    big: Some(1000),
                    ..quiet
                },
                200,
                1000,
                ms(1),
                true,
            ),
            (
                Policy {
                    big: Some(1000),
                    ..quiet
                },
                200,
                999,
                ms(1),
                false,
            ),
        ];
        for (policy, status, bytes, took, want) in cases {
            assert_eq!(
                policy.wants(*status, *bytes, *took, false),
                *want,
                "{policy:?} {status} {bytes} {took:?}"
            );
        }
        // log-sendfile: a body that was a file (a static file, wsgi.file_wrapper).
        let sendfile = Policy {
            sendfile: true,
            ..quiet
        };
        for (policy, file, want) in [
            (sendfile, true, true),
            (sendfile, false, false),
            (quiet, true, false),
        ] {
            assert_eq!(
                policy.wants(200, 10, ms(1), file),
                want,
                "{policy:?} {file}"
            );
        }
    }

    fn encoders(values: &[&str]) -> Vec<Encoder> {
        log_encoder::used(
            &values
                .iter()
                .map(|v| log_encoder::parse(v).unwrap().0)
                .collect::<Vec<_>>(),
        )
    }

    /// `log-encoder`: every line (one message each, as uWSGI's log master reads them)
    /// goes through the chain; the date prefix is part of the message.
    #[test]
    fn encoders_run_once_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, path) = file_sink(dir.path(), false);
        sink.encoders = encoders(&[r#"json {"m":"${msg}"}"#, "nl"]);
        sink.line(format_args!("say \"hi\"\tnow"));
        sink.write_raw(b"two\nlines\n");
        sink.access(&sample());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"m\":\"say \\\"hi\\\"\\tnow\"}\n{\"m\":\"two\"}\n{\"m\":\"lines\"}\n\
             {\"m\":\"[pid: 1234] 127.0.0.1 - \\\"GET /x?y HTTP/1.1\\\" 200 11 bytes 0.12 ms\"}\n"
        );

        let dir = tempfile::tempdir().unwrap();
        let (mut dated, path) = file_sink(dir.path(), true);
        dated.encoders = encoders(&["format <${msg}>", "nl"]);
        dated.line(format_args!("x"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with('<') && text.ends_with(" - x>\n"),
            "{text:?}"
        );
    }

    /// `logto2`: stderr until the file is opened, then the file.
    #[test]
    fn later_sink_writes_to_its_file_once_opened() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(Target::Later, false, false).unwrap();
        assert!(sink.path().is_none());
        let path = dir.path().join("later.log");
        sink.open_later(&path).unwrap();
        assert_eq!(sink.path(), Some(path.as_path()));
        sink.line(format_args!("in the file"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "in the file\n");
        assert!(matches!(
            sink.open_later(&path),
            Err(LogError::AlreadyInitialized)
        ));
    }

    /// `touch-logrotate`: the file is renamed (log-backupname, else LOGFILE.<unix time>)
    /// whatever its size, and a new one opened behind the same fd.
    #[test]
    fn rotate_now_renames_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, path) = file_sink(dir.path(), false);
        sink.line(format_args!("before"));
        let backup = dir.path().join("app.log.old");
        sink.backupname = Some(backup.clone());
        assert_eq!(sink.rotate_now(), Some(backup.clone()));
        sink.line(format_args!("after"));
        let old = std::fs::read_to_string(&backup).unwrap();
        assert!(old.starts_with("before\n"), "{old}");
        assert!(old.contains("triggering rotation to"), "{old}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        sink.backupname = None;
        let rotated = sink.rotate_now().unwrap();
        let name = rotated.file_name().unwrap().to_str().unwrap().to_owned();
        let stamp = name.strip_prefix("app.log.").unwrap();
        assert!(stamp.parse::<u64>().is_ok(), "{name}");
        assert!(Sink::open(Target::Stderr, false, false)
            .unwrap()
            .rotate_now()
            .is_none());
    }

    #[test]
    fn global_sink_defaults_to_stderr() {
        // Without init, the process-wide sink is stderr; this must not panic.
        assert!(sink().path().is_none());
        crate::log_line!("log test line {}", 1);
        set_access_enabled(false);
        access(&sample());
        set_access_enabled(true);
        assert!(reopen().is_ok());
    }
}
