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
    /// `stats`: address of the uWSGI-compatible stats server.
    pub stats: Option<String>,
    /// `stats-http`: serve the stats with an HTTP header.
    pub stats_http: bool,
    /// `uid`: user to run as (name or number).
    pub uid: Option<String>,
    /// `gid`: group to run as (name or number).
    pub gid: Option<String>,

    /// Accepted options that rsgi ignores, with where they were given.
    pub notices: Vec<Notice>,
}

impl Default for VassalConfig {
    fn default() -> Self {
        VassalConfig {
            source: None,
            includes: Vec::new(),
            sockets: Vec::new(),
            chmod_socket: None,
            chown_socket: None,
            vacuum: false,
            listen: 1024,
            buffer_size: 8192,
            limit_post: 0,
            socket_timeout: 4,
            worker_connections: 4096,
            module: None,
            wsgi_file: None,
            callable: "application".to_owned(),
            chdir: None,
            pythonpath: Vec::new(),
            home: None,
            env: Vec::new(),
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
            stats: None,
            stats_http: false,
            uid: None,
            gid: None,
            notices: Vec::new(),
        }
    }
}
