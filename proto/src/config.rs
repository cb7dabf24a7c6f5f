//! The typed vassal configuration: what the option table turns ini files, XML files and
//! command lines into. `rsgi` (the vassal) serves from a [`VassalConfig`]; `rsgid` (the
//! emperor) reads its socket options to bind them itself.

use std::path::PathBuf;

/// The wire protocol a listening socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// uWSGI's binary protocol, as nginx's `uwsgi_pass` speaks it (option `socket`).
    Uwsgi,
    /// HTTP/1.1 (options `http-socket` and `http`).
    Http,
}

impl Protocol {
    /// The name used in `LISTEN_FDNAMES` and in logs: `uwsgi` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Uwsgi => "uwsgi",
            Protocol::Http => "http",
        }
    }
}

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address. `host` is empty for uWSGI's `:port` form (all IPv4 addresses), and
    /// holds the bare address for `[::1]:port` (without brackets).
    Tcp {
        /// Host name or address; empty means every IPv4 address (`0.0.0.0`).
        host: String,
        /// Port number.
        port: u16,
    },
    /// A unix-domain socket path (`/run/app.sock`, `unix:/run/app.sock`, `unix:///run/app.sock`).
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ListenAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One listening socket from `socket`, `http-socket` or `http`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketSpec {
    /// Protocol spoken on it.
    pub protocol: Protocol,
    /// Address it listens on.
    pub addr: ListenAddr,
}

/// An option that was accepted but means nothing to rsgi (`plugins = python`,
/// `enable-threads`, ...). The vassal prints one notice line per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Where it was given: `file:line` or `command line`.
    pub origin: String,
    /// The option's name.
    pub option: String,
    /// Why it is ignored.
    pub why: String,
}

/// Everything a vassal needs to run, with defaults applied.
///
/// Field names follow the uWSGI option names (`-` becomes `_`).
#[derive(Debug, Clone, PartialEq)]
pub struct VassalConfig {
    /// The ini or XML file the configuration came from, if any.
    pub source: Option<PathBuf>,
    /// The other files it was read from (includes, `@(FILE)`), with what they held
    /// (set by [`crate::cli::load_file_with`]; rsgid reloads a vassal when one changes).
    pub includes: Vec<crate::bounds::Included>,

    // --- sockets ---
    /// `socket`, `http-socket`, `http`, in the order given.
    pub sockets: Vec<SocketSpec>,
    /// `protocol`: the protocol `socket` lines speak (uwsgi unless set); applied to them
    /// once the whole configuration is read, wherever the line is.
    pub protocol: Option<Protocol>,
    /// `chmod-socket`: the mode for unix sockets, already read as octal (`666` in the
    /// ini is `0o666` here). uWSGI's bare
    /// `chmod-socket` (no value) means 666.
    pub chmod_socket: Option<u32>,
    /// `chown-socket`: `user` or `user:group` for unix sockets.
    pub chown_socket: Option<String>,
    /// `vacuum`: remove unix socket files and pidfiles on exit.
    pub vacuum: bool,
    /// `listen`: the listen backlog (default 1024; uWSGI's 100 is the usual cause of
    /// its "listen queue of socket ... full" and nginx's 502s after a burst). The kernel
    /// caps it at `net.core.somaxconn`.
    pub listen: u32,
    /// `buffer-size`: the largest request head (uwsgi vars or HTTP head) accepted, in bytes
    /// (default 8192, at most 65535).
    pub buffer_size: usize,
    /// `limit-post`: the largest request body accepted, in bytes; 0 (the default) means no
    /// limit. A larger body is answered with 413 without calling the app.
    pub limit_post: u64,
    /// `socket-timeout`: seconds a client may stay silent while sending its request
    /// (each read of the request head and body); uWSGI's default, 4.
    pub socket_timeout: u64,
    /// `http-timeout`: seconds an HTTP client may take to send a request head (uWSGI's
    /// HTTP router timeout; rsgi's workers are the router). `None`: `socket-timeout`.
    pub http_timeout: Option<u64>,
    /// `http-keepalive-timeout`: seconds an HTTP keep-alive connection may stay idle
    /// between requests (default 65: longer than nginx's upstream `keepalive_timeout`,
    /// so nginx closes first).
    pub http_keepalive_timeout: u64,
    /// `enable-proxy-protocol`/`http-enable-proxy-protocol`: HTTP connections may start
    /// with a PROXY protocol header (v1 or v2) that gives the client's address.
    pub enable_proxy_protocol: bool,
    /// `worker-connections`: the most connections one worker holds open at once; at the
    /// cap it stops accepting (and says so) until one closes.
    pub worker_connections: u64,

    // --- the Python app ---
    /// `module`: `pkg.mod` or `pkg.mod:callable`.
    pub module: Option<String>,
    /// `wsgi-file`: a Python file that defines the callable.
    pub wsgi_file: Option<PathBuf>,
    /// `callable`: the name of the WSGI callable (default `application`).
    pub callable: String,
    /// `chdir`: directory to change into before loading the app.
    pub chdir: Option<PathBuf>,
    /// `pythonpath`: directories prepended to `sys.path`, in order.
    pub pythonpath: Vec<PathBuf>,
    /// `home`/`virtualenv`/`venv`/`pyhome`: the virtualenv to use.
    pub home: Option<PathBuf>,
    /// `env`: `KEY=VALUE` pairs set in the process environment before Python starts.
    pub env: Vec<(String, String)>,

    /// `wsgi-disable-file-wrapper`: no `wsgi.file_wrapper` in the environ.
    pub wsgi_disable_file_wrapper: bool,
    /// `check-static`: directories searched for `PATH_INFO` (the whole path) before
    /// the app.
    pub check_static: Vec<PathBuf>,
    /// `static-map2`: like `static-map`, but the whole `PATH_INFO` (prefix included)
    /// is looked up under the directory.
    pub static_map2: Vec<(String, PathBuf)>,
    /// `static-index`: file names tried in a directory a static path names.
    pub static_index: Vec<String>,
    /// `static-gzip-all`: serve `FILE.gz` for `FILE` when the client accepts gzip.
    pub static_gzip_all: bool,
    /// `static-expires-type`: (content type, seconds): an `Expires` header that many
    /// seconds after the request for static files of that type.
    pub static_expires_type: Vec<(String, String)>,
    /// `static-expires-type-mtime`: the same, counted from the file's mtime.
    pub static_expires_type_mtime: Vec<(String, String)>,
    /// `add-header`: `Name: value` headers added to every response.
    pub add_header: Vec<String>,
    /// `mount`: `MOUNTPOINT=APP` values, in order (apps under a URL prefix).
    pub mount: Vec<String>,
    /// `manage-script-name`: split `PATH_INFO` at the longest mountpoint into
    /// `SCRIPT_NAME` and `PATH_INFO`.
    pub manage_script_name: bool,

    // --- static files ---
    /// `static-map`: (URL prefix, directory) pairs, in order.
    pub static_map: Vec<(String, PathBuf)>,

    // --- logs and process files ---
    /// `logto`: log to this file instead of stderr.
    pub logto: Option<PathBuf>,
    /// `logdate`: prefix each log line with the date.
    pub logdate: bool,
    /// `logdate = FORMAT`: uWSGI lets `logdate` carry a strftime format instead of a boolean
    /// (`logdate = %Y-%m-%d %H:%M:%S`). `None` means the default date format. Only
    /// meaningful when `logdate` is true; a vassal may ignore it.
    pub logdate_format: Option<String>,
    /// `disable-logging`: no access log lines.
    pub disable_logging: bool,
    /// `daemonize`: detach and log to this file.
    pub daemonize: Option<PathBuf>,
    /// `pidfile`: written by the master at start.
    pub pidfile: Option<PathBuf>,
    /// `safe-pidfile`: like `pidfile`, written atomically (temp file + rename).
    pub safe_pidfile: Option<PathBuf>,

    // --- process model ---
    /// `master`: run a master process that supervises the workers.
    pub master: bool,
    /// `processes`/`workers`: number of worker processes (default 1).
    pub processes: u32,
    /// `threads`: app threads per worker (default 1).
    pub threads: u32,
    /// `lazy-apps`: import the app in each worker instead of once in the master.
    pub lazy_apps: bool,
    /// `harakiri`: seconds a request may run before its worker is killed.
    pub harakiri: Option<u32>,
    /// `max-requests`: recycle a worker after this many requests.
    pub max_requests: Option<u64>,
    /// `max-requests-delta`: per-worker jitter added to `max-requests`.
    pub max_requests_delta: u64,
    /// `reload-on-rss`: recycle a worker whose resident memory exceeds this many MiB.
    pub reload_on_rss: Option<u64>,
    /// `max-worker-lifetime`: recycle a worker after this many seconds.
    pub max_worker_lifetime: Option<u64>,
    /// `reload-mercy`/`worker-reload-mercy`: seconds a graceful stop or reload may take
    /// before the remaining workers are killed (default 60).
    pub reload_mercy: u64,
    /// `on-demand`: under rsgid, bind the sockets and start the vassal only when the
    /// first connection arrives. `None`: rsgid's `on_demand` setting decides.
    pub on_demand: Option<bool>,
    /// `idle`: under rsgid, stop the vassal after this many seconds without a request
    /// and start it again on the next connection (rsgid keeps the sockets).
    pub idle: Option<u64>,
    /// `die-on-idle`: uWSGI's "shut down when idle"; under rsgid the same as `idle`
    /// alone (the vassal stops and sleeps until the next connection).
    pub die_on_idle: bool,
    /// `stats`: address of the uWSGI-compatible stats server.
    pub stats: Option<String>,
    /// `stats-http`: serve the stats with an HTTP header.
    pub stats_http: bool,
    /// `uid`: user to run as (name or number).
    pub uid: Option<String>,
    /// `umask`: the process umask, set before anything is bound or written.
    pub umask: Option<u32>,
    /// `max-fd`: the open files limit (`RLIMIT_NOFILE`) to set.
    pub max_fd: Option<u64>,
    /// `print`: lines printed when the config is read.
    pub print: Vec<String>,
    /// `import` (`pyimport`): Python modules (or `.py` files) imported before the app.
    pub import: Vec<String>,
    /// `chdir2`: directory to change into after the app is loaded.
    pub chdir2: Option<PathBuf>,
    /// `gid`: group to run as (name or number).
    pub gid: Option<String>,

    /// `strict`: keys that are no option of rsgi or uWSGI are errors, not notices.
    pub strict: bool,
    // --- lifecycle ---
    /// `touch-reload`: gracefully reload the vassal when one of these files' mtime changes.
    pub touch_reload: Vec<PathBuf>,
    /// `touch-chain-reload`: replace the workers one at a time when one of these changes.
    pub touch_chain_reload: Vec<PathBuf>,
    /// `touch-workers-reload`: replace every worker (not the master) when one changes.
    pub touch_workers_reload: Vec<PathBuf>,
    /// `touch-logreopen`: reopen the log file when one of these changes.
    pub touch_logreopen: Vec<PathBuf>,
    /// `attach-daemon` and friends: commands the master runs beside the app.
    pub daemons: Vec<AttachDaemon>,
    /// `py-autoreload`: seconds between checks of the loaded modules' files (0: off).
    pub py_autoreload: u64,
    /// `hook-*`, `exec-*`: actions run at points of the start-up and exit.
    pub hooks: Vec<Hook>,
    /// `cron`, `unique-cron`, `cron2`: commands the master runs at set times.
    pub crons: Vec<Cron>,
    /// `cheaper`: the fewest workers the adaptive worker count keeps (0: off; then
    /// `processes` always run). `processes` is the most.
    pub cheaper: u32,
    /// `cheaper-initial`: workers at start (default: `cheaper`).
    pub cheaper_initial: Option<u32>,
    /// `cheaper-step`: workers added at once under overload (default 1).
    pub cheaper_step: u32,
    /// `cheaper-overload`: master cycles (seconds) of every worker busy before adding
    /// (default 3), and of idleness between two retirements.
    pub cheaper_overload: u64,
    // --- request logging (issue 21) ---
    /// `log-format`/`logformat`: uWSGI's request line template (`%(addr) %(status)`);
    /// `None`: rsgi's default line.
    pub log_format: Option<String>,
    /// `log-format-strftime`: `%(ftime)` uses the `logdate` strftime format.
    pub log_format_strftime: bool,
    /// `log-4xx`: log 4xx responses even with `disable-logging`.
    pub log_4xx: bool,
    /// `log-5xx`: log 5xx responses even with `disable-logging`.
    pub log_5xx: bool,
    /// `log-slow`: log requests that took at least this many milliseconds even with
    /// `disable-logging`.
    pub log_slow: Option<u64>,
    /// `log-zero`: log responses with an empty body even with `disable-logging`.
    pub log_zero: bool,
    /// `log-big`: log responses of at least this many body bytes even with
    /// `disable-logging`.
    pub log_big: Option<u64>,
    /// `logger`: where log lines go (`file:PATH`, `syslog[:IDENT[,FACILITY]]`, `stdio`),
    /// in order; request lines too unless `req-logger` is set.
    pub logger: Vec<String>,
    /// `req-logger`: where request lines go (same forms as `logger`).
    pub req_logger: Vec<String>,
    /// `log-maxsize`: rotate the `logto`/`daemonize` file once it is larger than this
    /// many bytes.
    pub log_maxsize: Option<u64>,
    /// `log-backupname`: the rotated file's name (default `LOGFILE.<unix time>`).
    pub log_backupname: Option<PathBuf>,
    /// `log-x-forwarded-for`: the request line's address is the `X-Forwarded-For`
    /// header when there is one.
    pub log_x_forwarded_for: bool,
    // --- logging and lifecycle options of the corpus (issue 21 follow-up) ---
    /// `logto2`: like `logto`, but opened once privileges are dropped (the file is
    /// created by the `uid`/`gid` user).
    pub logto2: Option<PathBuf>,
    /// `log-encoder`: the chain every log line goes through (request lines too, unless
    /// `req-logger` is set), in order.
    pub log_encoder: Vec<crate::log_encoder::Encoder>,
    /// `log-req-encoder`: the chain request lines go through on their way to the
    /// `req-logger` destinations.
    pub log_req_encoder: Vec<crate::log_encoder::Encoder>,
    /// `touch-logrotate`: rotate the log file (as `log-maxsize` does) when one of these
    /// files changes.
    pub touch_logrotate: Vec<PathBuf>,
    /// `log-sendfile`: log requests answered with a file (static files,
    /// `wsgi.file_wrapper`) even with `disable-logging`.
    pub log_sendfile: bool,

    /// Accepted options that rsgi ignores, with where they were given.
    pub notices: Vec<Notice>,
}

/// A hook's phase (`hook-PHASE`); see `crate::hooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPhase {
    /// `hook-asap`: first thing, before the log and the sockets.
    Asap,
    /// `hook-as-root`: before `uid`/`gid` drop privileges.
    AsRoot,
    /// `hook-as-user`: after privileges are dropped.
    AsUser,
    /// `hook-pre-app`: before the app is imported (in the process that imports it).
    PreApp,
    /// `hook-post-app`: after the app is imported.
    PostApp,
    /// `hook-master-start`: when the master starts.
    MasterStart,
    /// `hook-post-fork`: in each worker, right after the fork.
    PostFork,
    /// `hook-accepting`: in each worker, once it accepts.
    Accepting,
    /// `hook-accepting1`: in worker 1 only, once it accepts.
    Accepting1,
    /// `hook-as-user-atexit`: when the server exits.
    AtExit,
}

/// A hook's action; see `crate::hooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// `exec:CMD`: run `/bin/sh -c CMD` and wait; non-zero fails.
    Exec,
    /// `safeexec:CMD`: the same, a non-zero exit is only logged.
    SafeExec,
    /// `print:TEXT`, `log:TEXT`: a log line.
    Print,
    /// `write:FILE TEXT`: create or truncate FILE with TEXT.
    Write,
    /// `writen:FILE TEXT`: the same, with a newline.
    WriteN,
    /// `append:FILE TEXT`.
    Append,
    /// `appendn:FILE TEXT`: with a newline.
    AppendN,
    /// `create:FILE`, `creat:FILE`: an empty file.
    Create,
    /// `unlink:FILE`.
    Unlink,
    /// `mkdir:DIR` (mode 0777 less the umask).
    Mkdir,
    /// `chmod:FILE MODE` (octal).
    Chmod,
    /// `putenv:KEY=VALUE`.
    Putenv,
    /// `cd:DIR`, `chdir:DIR`.
    Chdir,
    /// `exit:CODE`: exit the process.
    Exit,
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// When it runs.
    pub phase: HookPhase,
    /// What it does.
    pub action: HookAction,
    /// The argument after `action:`.
    pub arg: String,
    /// `!action:`: do not log its text.
    pub private: bool,
    /// `ACTION:ARG` as written, for the log.
    pub written: String,
}

/// One command cron (`cron`, `unique-cron`, `cron2`), as uWSGI's `struct uwsgi_cron`:
/// each time field is a value, or `-N` for "every N" (`-1`: any). See [`crate::cron`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// Minute, 0-59.
    pub minute: i32,
    /// Hour, 0-23.
    pub hour: i32,
    /// Day of the month, 1-31.
    pub day: i32,
    /// Month, 1-12.
    pub month: i32,
    /// Weekday, 0-6 (Sunday 0, or 7).
    pub week: i32,
    /// The command, run with `/bin/sh -c`.
    pub command: String,
    /// Never two runs at once (`unique-cron`, `cron2 unique=1`).
    pub unique: bool,
    /// `cron2 harakiri=S`: kill a run after S seconds.
    pub harakiri: Option<u64>,
}

/// One command the master runs beside the app (`attach-daemon`, `smart-attach-daemon`,
/// `attach-control-daemon`, `attach-daemon2`), as uWSGI's `core/daemons.c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachDaemon {
    /// The command, run with `/bin/sh -c`.
    pub command: String,
    /// Smart daemons: the pidfile that tracks it (it survives reloads and stops, and is
    /// respawned when the pid in the file is gone).
    pub pidfile: Option<PathBuf>,
    /// Smart daemons: checks (one a second) of a missing pid before the first respawn.
    pub freq: u32,
    /// `attach-control-daemon`: when it dies, the whole vassal stops.
    pub control: bool,
    /// The signal that stops it (uWSGI's default: SIGTERM, sent to its process group).
    pub stop_signal: i32,
    /// `smart-attach-daemon2`: rsgi daemonizes it and writes its pidfile.
    pub daemonize: bool,
}

impl Default for VassalConfig {
    fn default() -> Self {
        VassalConfig {
            source: None,
            includes: Vec::new(),
            sockets: Vec::new(),
            protocol: None,
            chmod_socket: None,
            chown_socket: None,
            vacuum: false,
            listen: 1024,
            buffer_size: 8192,
            limit_post: 0,
            socket_timeout: 4,
            worker_connections: 4096,
            http_timeout: None,
            http_keepalive_timeout: 65,
            enable_proxy_protocol: false,
            module: None,
            wsgi_file: None,
            callable: "application".to_owned(),
            chdir: None,
            pythonpath: Vec::new(),
            home: None,
            env: Vec::new(),
            wsgi_disable_file_wrapper: false,
            check_static: Vec::new(),
            static_map2: Vec::new(),
            static_index: Vec::new(),
            static_gzip_all: false,
            static_expires_type: Vec::new(),
            static_expires_type_mtime: Vec::new(),
            add_header: Vec::new(),
            mount: Vec::new(),
            manage_script_name: false,
            static_map: Vec::new(),
            logto: None,
            logdate: false,
            logdate_format: None,
            disable_logging: false,
            daemonize: None,
            pidfile: None,
            safe_pidfile: None,
            master: false,
            processes: 1,
            threads: 1,
            lazy_apps: false,
            harakiri: None,
            max_requests: None,
            max_requests_delta: 0,
            reload_on_rss: None,
            max_worker_lifetime: None,
            reload_mercy: 60,
            on_demand: None,
            idle: None,
            die_on_idle: false,
            stats: None,
            stats_http: false,
            uid: None,
            umask: None,
            max_fd: None,
            print: Vec::new(),
            import: Vec::new(),
            chdir2: None,
            gid: None,
            strict: false,
            touch_reload: Vec::new(),
            touch_chain_reload: Vec::new(),
            touch_workers_reload: Vec::new(),
            touch_logreopen: Vec::new(),
            daemons: Vec::new(),
            py_autoreload: 0,
            hooks: Vec::new(),
            crons: Vec::new(),
            cheaper: 0,
            cheaper_initial: None,
            cheaper_step: 1,
            cheaper_overload: 3,
            log_format: None,
            log_format_strftime: false,
            log_4xx: false,
            log_5xx: false,
            log_slow: None,
            log_zero: false,
            log_big: None,
            logger: Vec::new(),
            req_logger: Vec::new(),
            log_maxsize: None,
            log_backupname: None,
            log_x_forwarded_for: false,
            logto2: None,
            log_encoder: Vec::new(),
            log_req_encoder: Vec::new(),
            touch_logrotate: Vec::new(),
            log_sendfile: false,
            notices: Vec::new(),
        }
    }
}

/// What a configuration without an app should set: the one hint `rsgi --check-config`
/// and a failed start both give.
pub const APP_HINT: &str = "set module = pkg.wsgi, wsgi-file = path/to/wsgi.py or mount = /=app.py";

impl VassalConfig {
    /// What keeps this configuration from serving, before anything is bound or imported:
    /// no socket to listen on, no app to load. Empty when it is complete. `rsgi
    /// --check-config` prints these; the files and directories it names are not checked
    /// here (they may exist only on the host it is meant for).
    pub fn incomplete(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sockets.is_empty() {
            problems.push(
                "no socket: add socket = ADDR (uwsgi protocol) or http-socket = ADDR".to_owned(),
            );
        }
        if self.module.is_none() && self.wsgi_file.is_none() && self.mount.is_empty() {
            problems.push(format!("no app: {APP_HINT}"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_names_what_is_missing() {
        let socket = SocketSpec {
            protocol: Protocol::Http,
            addr: ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 8000,
            },
        };
        /// (sockets, module, wsgi-file, problems that start with)
        type Row<'a> = (bool, Option<&'a str>, Option<&'a str>, &'a [&'a str]);
        let rows: &[Row<'_>] = &[
            (true, Some("app.wsgi"), None, &[]),
            (true, None, Some("app.py"), &[]),
            (true, None, None, &["no app"]),
            (false, Some("app.wsgi"), None, &["no socket"]),
            (false, None, None, &["no socket", "no app"]),
        ];
        let mounted = VassalConfig {
            sockets: vec![socket.clone()],
            mount: vec!["/api=api.py".into()],
            ..VassalConfig::default()
        };
        assert!(mounted.incomplete().is_empty(), "a mount is an app");
        for (has_socket, module, file, want) in rows {
            let config = VassalConfig {
                sockets: if *has_socket {
                    vec![socket.clone()]
                } else {
                    Vec::new()
                },
                module: module.map(str::to_owned),
                wsgi_file: file.map(PathBuf::from),
                ..VassalConfig::default()
            };
            let got = config.incomplete();
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.starts_with(w), "{g} vs {w}");
            }
        }
    }
}
