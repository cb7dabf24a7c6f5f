//! The option table: one [`OptionSpec`] per uWSGI option rsgi knows. The same table drives
//! the ini and XML readers (which keys exist), the command line (`--name`, aliases, short
//! flags, which options take a value), validation and conversion into [`VassalConfig`]
//! (each entry carries its setter in [`Kind`]), and `rsgi --help` ([`help_text`]).
//!
//! Names, aliases and short flags are uWSGI's, so existing ini files and command lines
//! work. uWSGI options that mean nothing in rsgi and whose absence cannot surprise anyone
//! (`plugins = python`, `enable-threads`) are accepted with a notice ([`Kind::Ignored`]);
//! uWSGI features rsgi will not have (`gevent`, `spooler`, `cache2`) are refused with what
//! to use instead ([`Kind::Refused`]); every other unknown name is an error with a "did you
//! mean" ([`suggest`]). `docs/migration.md` has the table.
//!
//! Values: booleans are read as uWSGI reads them ([`read_bool`]: `false`, `off`, `no`, `0`
//! are false, anything else true, with a notice for unusual spellings), and an empty value
//! (bare `--master`, `master =`, `master`, `<master/>`) means true. Integers are decimal;
//! as with uWSGI's `atoi`, text after the number and a blank (an inline comment) is ignored,
//! with a notice.
//! For `harakiri`, `max-requests`, `reload-on-rss` and `max-worker-lifetime`, 0 means "off"
//! (as in uWSGI) and gives `None`.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::{ListenAddr, Protocol, SocketSpec, VassalConfig};

/// A config file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The uWSGI ini dialect ([`crate::ini`]).
    Ini,
    /// uWSGI's XML form ([`crate::xml`]).
    Xml,
    /// Whatever the file name says (`.xml` is XML, anything else ini): uWSGI's `include`.
    ByName,
}

/// uWSGI's config logic (`ConfigLogic.rst`, `core/config.c`): a block opened by one of
/// these, closed by [`LogicOp::End`], applies its lines only when the condition holds (or
/// once per item, for the loops). `%(_)` in those lines is the condition's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicOp {
    /// `if-env = VAR` or `VAR=value`: `%(_)` is the variable's value.
    IfEnv,
    /// `if-not-env = VAR` or `VAR=value`.
    IfNotEnv,
    /// `if-opt = NAME` or `NAME=value`: an option or placeholder set on an earlier line.
    IfOpt,
    /// `if-not-opt = NAME` or `NAME=value`.
    IfNotOpt,
    /// `if-exists = PATH` (a file or directory).
    IfExists,
    /// `if-not-exists = PATH`.
    IfNotExists,
    /// `if-file = PATH` (a regular file).
    IfFile,
    /// `if-not-file = PATH`.
    IfNotFile,
    /// `if-dir = PATH`.
    IfDir,
    /// `if-not-dir = PATH`.
    IfNotDir,
    /// `if-hostname = NAME`.
    IfHostname,
    /// `if-not-hostname = NAME`.
    IfNotHostname,
    /// `if-hostname-match = REGEXP`: the host name matches (a search, not anchored).
    IfHostnameMatch,
    /// `if-not-hostname-match = REGEXP`.
    IfNotHostnameMatch,
    /// `for = a b c`: the lines once per item.
    For,
    /// `for-times = N`: the lines once per number 1..=N.
    ForTimes,
    /// `for-glob = PATTERN`: the lines once per path the pattern matches.
    ForGlob,
    /// `for-readline = FILE`: the lines once per line of the file.
    ForReadline,
    /// `if-reload`: the lines only when the config is read again for a reload.
    IfReload,
    /// `if-not-reload`: the lines only on a first start.
    IfNotReload,
    /// `if-plugin = NAME`: the lines only if uWSGI would have plugin NAME loaded.
    IfPlugin,
    /// `if-not-plugin = NAME`.
    IfNotPlugin,
    /// `else`: the lines when the last `if-*` did not hold.
    Else,
    /// `endif`, `end-if`, `endfor`, `end-for`, `end`: the block ends.
    End,
}

/// A command-line action that is not "serve".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `--help`, `-h`: print the help text.
    Help,
    /// `--version`: print the version.
    Version,
    /// `--stop PIDFILE`: stop the instance whose master pid is in the file.
    Stop,
    /// `--reload PIDFILE`: reload the instance whose master pid is in the file.
    Reload,
    /// `--check-app`: load the configuration and import the app, then exit (0 when it
    /// imports). `rsgictl check` uses it.
    CheckApp,
    /// `--check-config`: load the configuration and say whether it would start (no
    /// Python, nothing bound), then exit: 0 when it is complete.
    CheckConfig,
}

/// What an option's value is and what it does to the [`VassalConfig`]. The setters are
/// plain functions; they run after the value has been parsed and range-checked.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Free text; must not be empty.
    Str(fn(&mut VassalConfig, String)),
    /// A path, kept as written (never checked against the filesystem); must not be empty.
    Path(fn(&mut VassalConfig, PathBuf)),
    /// A decimal integer in `min..=max`.
    Int {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
        /// Setter.
        set: fn(&mut VassalConfig, u64),
    },
    /// A boolean; given without a value means true.
    Bool(fn(&mut VassalConfig, bool)),
    /// A listening address, added to [`VassalConfig::sockets`] with this protocol.
    Socket(Protocol),
    /// `KEY=VALUE`, split at the first `=`; the key must not be empty.
    KeyValue(fn(&mut VassalConfig, String, String)),
    /// `PREFIX=DIR`, split at the first `=`; neither side may be empty.
    Mapping(fn(&mut VassalConfig, String, PathBuf)),
    /// An octal file mode (`666`, `0660`); given without a value means 666.
    Mode(fn(&mut VassalConfig, u32)),
    /// An octal number that must be given (`umask = 022`).
    Octal(fn(&mut VassalConfig, u32)),
    /// `protocol`: the protocol of the sockets given with `socket` (`uwsgi` or `http`).
    Protocol,
    /// `logdate`: a boolean, or (as in uWSGI) a strftime format that implies true.
    LogDate,
    /// Read another config file here (`ini`, `xml`): `path`, `path:section` or `:section`
    /// (another section of the current file).
    Config(Format),
    /// `set-placeholder = name=value`: defines `%(name)` for later values; sets no option.
    Placeholder,
    /// A command-line-only action.
    Action(Action),
    /// Config logic (`if-env`, `for`, `endif`, ...): only in config files, where the loader
    /// handles it before any option is applied.
    Logic(LogicOp),
    /// Accepted for uWSGI compatibility and ignored, with a notice saying why.
    Ignored {
        /// Whether it takes a value on the command line (`--plugins python`) or is a flag
        /// (`--enable-threads`).
        takes_value: bool,
        /// Why ignoring it is fine, shown in the notice and in `--help`.
        why: &'static str,
    },
    /// A real uWSGI option rsgi will not do: an error that says what to use instead (never
    /// the bare "unknown option", which reads like a typo).
    Refused {
        /// Whether it takes a value on the command line (`--gevent 100`) or is a flag.
        takes_value: bool,
        /// What to use instead, shown in the error and in `--help`.
        instead: &'static str,
    },
    /// A value read by a fallible setter (`smart-attach-daemon = PIDFILE CMD`): the error
    /// says what is wrong with it.
    /// `Ok(Some(note))` applies it with a notice.
    Parsed(fn(&mut VassalConfig, &str) -> Result<Option<String>, String>),
    /// Accepted only when false (`vhost = false`), with a notice; true is an error because
    /// rsgi cannot do what it asks.
    FalseOnly {
        /// Why false is fine and true is refused.
        why: &'static str,
    },
}

/// Whether an option takes a value on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Never (`--help`).
    None,
    /// Only as `--name=value` (`--master`, `--master=false`, `--chmod-socket=660`). A
    /// following argument is not taken, except an octal mode after `--chmod-socket`.
    Optional,
    /// Always: `--name value` or `--name=value`.
    Required,
}

impl Kind {
    /// How the command line reads this kind.
    pub fn arity(&self) -> Arity {
        match self {
            Kind::Bool(_) | Kind::Mode(_) | Kind::LogDate | Kind::FalseOnly { .. } => {
                Arity::Optional
            }
            Kind::Ignored {
                takes_value: false, ..
            }
            | Kind::Refused {
                takes_value: false, ..
            } => Arity::Optional,
            Kind::Action(
                Action::Help | Action::Version | Action::CheckApp | Action::CheckConfig,
            ) => Arity::None,
            Kind::Logic(
                LogicOp::Else | LogicOp::End | LogicOp::IfReload | LogicOp::IfNotReload,
            ) => Arity::Optional,
            _ => Arity::Required,
        }
    }

    /// The value placeholder shown in `--help`.
    fn meta(&self) -> &'static str {
        match self {
            Kind::Str(_)
            | Kind::Parsed(_)
            | Kind::Ignored {
                takes_value: true, ..
            }
            | Kind::Refused {
                takes_value: true, ..
            } => " VALUE",
            Kind::Path(_) => " PATH",
            Kind::Int { .. } => " N",
            Kind::Socket(_) => " ADDR",
            Kind::KeyValue(_) => " KEY=VALUE",
            Kind::Mapping(_) => " PREFIX=DIR",
            Kind::Mode(_) => "[=MODE]",
            Kind::Octal(_) => " MODE",
            Kind::Protocol => " uwsgi|http",
            Kind::LogDate => "[=FORMAT]",
            Kind::Config(_) => " FILE",
            Kind::Logic(
                LogicOp::Else | LogicOp::End | LogicOp::IfReload | LogicOp::IfNotReload,
            ) => "",
            Kind::Logic(_) => " VALUE",
            Kind::Placeholder => " NAME=VALUE",
            Kind::Action(Action::Stop | Action::Reload) => " PIDFILE",
            Kind::Bool(_)
            | Kind::Action(_)
            | Kind::Ignored {
                takes_value: false, ..
            }
            | Kind::Refused {
                takes_value: false, ..
            } => "",
            Kind::FalseOnly { .. } => "=false",
        }
    }
}

/// Sections of `--help`, in the order shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Listening sockets.
    Sockets,
    /// The Python app.
    App,
    /// Logs and pid files.
    Logging,
    /// Master, workers, recycling.
    Processes,
    /// The stats server.
    Stats,
    /// User and group.
    Privileges,
    /// Reloads on file changes, attached daemons, cheaper, cron, hooks.
    Lifecycle,
    /// Reading config files.
    Config,
    /// Command-line actions.
    Actions,
    /// uWSGI options accepted and ignored.
    Ignored,
    /// uWSGI options refused, with what to use instead.
    Refused,
}

impl Group {
    /// All groups in `--help` order.
    pub const ALL: [Group; 11] = [
        Group::Sockets,
        Group::App,
        Group::Logging,
        Group::Processes,
        Group::Stats,
        Group::Privileges,
        Group::Lifecycle,
        Group::Config,
        Group::Actions,
        Group::Ignored,
        Group::Refused,
    ];

    /// The section title in `--help`.
    pub fn title(self) -> &'static str {
        match self {
            Group::Sockets => "Sockets",
            Group::App => "Python app",
            Group::Logging => "Logs and pid files",
            Group::Processes => "Processes",
            Group::Stats => "Stats",
            Group::Privileges => "Privileges",
            Group::Lifecycle => {
                "Lifecycle: file-triggered reloads, attached daemons, cheaper, cron, hooks"
            }
            Group::Config => "Config files",
            Group::Actions => "Actions (command line only)",
            Group::Ignored => "Accepted from uWSGI and ignored (a notice is printed)",
            Group::Refused => {
                "uWSGI features rsgi does not have (an error says what to use instead)"
            }
        }
    }
}

/// One option.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The uWSGI name, as in `--name` and `name = value`.
    pub name: &'static str,
    /// Other names for the same option (uWSGI's aliases).
    pub aliases: &'static [&'static str],
    /// uWSGI's one-letter flag, if any (`-p`).
    pub short: Option<char>,
    /// What the value is and what it sets.
    pub kind: Kind,
    /// Whether repeating it adds a value (`socket`, `env`) instead of replacing the last one.
    pub repeatable: bool,
    /// The `--help` section.
    pub group: Group,
    /// One line for `--help`.
    pub help: &'static str,
    /// The default, as shown in `--help`; applying it to a default config changes nothing.
    pub default: Option<&'static str>,
    /// The value's name in `--help` (`MODULE`), when the kind's (`VALUE`) says too little.
    pub meta: Option<&'static str>,
}

impl OptionSpec {
    const fn new(name: &'static str, group: Group, kind: Kind, help: &'static str) -> Self {
        OptionSpec {
            name,
            aliases: &[],
            short: None,
            kind,
            repeatable: false,
            group,
            help,
            default: None,
            meta: None,
        }
    }

    const fn meta(mut self, meta: &'static str) -> Self {
        self.meta = Some(meta);
        self
    }

    const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    const fn short(mut self, c: char) -> Self {
        self.short = Some(c);
        self
    }

    const fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }

    const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    /// If rsgi accepts this option only to ignore it: why.
    pub fn noop_reason(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Ignored { why, .. } | Kind::FalseOnly { why } => Some(why),
            _ => None,
        }
    }

    /// If rsgi refuses this uWSGI option: what to use instead.
    pub fn refusal(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Refused { instead, .. } => Some(instead),
            _ => None,
        }
    }

    /// Whether `name` is this option's name or one of its aliases.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// Why the busyness algorithm's settings are ignored.
const BUSYNESS: &str =
    "rsgi's cheaper runs uWSGI's spare algorithm; the busyness algorithm's settings mean nothing to it";

/// `cheaper-algo`: uWSGI's `spare` is what rsgi runs; `busyness` (a plugin in uWSGI, the
/// other common choice) is read as `spare`; the rest are refused.
fn cheaper_algo(_: &mut VassalConfig, value: &str) -> Result<Option<String>, String> {
    match value.trim() {
        "spare" => Ok(None),
        "busyness" => Ok(Some(
            "the busyness algorithm is not in rsgi: uWSGI's spare algorithm is used".to_owned(),
        )),
        other => Err(format!(
            "cheaper algorithm '{other}' is not supported by rsgi: use cheaper-algo = spare"
        )),
    }
}

/// Largest `u32` as `u64`, for `Kind::Int` bounds of `u32` fields.
const U32: u64 = u32::MAX as u64;

// The setters narrow `u64` to the field's type; the `max` bound beside each one makes the
// cast lossless.
#[allow(clippy::cast_possible_truncation)]
mod set {
    use super::*;

    pub fn listen(c: &mut VassalConfig, v: u64) {
        c.listen = v as u32;
    }
    pub fn buffer_size(c: &mut VassalConfig, v: u64) {
        c.buffer_size = v as usize;
    }
    pub fn processes(c: &mut VassalConfig, v: u64) {
        c.processes = v as u32;
    }
    pub fn threads(c: &mut VassalConfig, v: u64) {
        c.threads = v as u32;
    }
    pub fn harakiri(c: &mut VassalConfig, v: u64) {
        c.harakiri = (v > 0).then_some(v as u32);
    }
}

use Group as G;

/// What to use instead of uWSGI's regex-keyed `static-expires*` options.
const EXPIRES_REGEX: &str =
    "rsgi matches no regular expressions: use static-expires-type = MIME=SECS, or set Expires/Cache-Control in nginx";

/// Every option rsgi knows, in `--help` order within each [`Group`].
// One option per few lines reads better than rustfmt's one-field-per-line layout.
#[rustfmt::skip]
pub static OPTIONS: &[OptionSpec] = &[
    // --- sockets ---
    OptionSpec::new("socket", G::Sockets, Kind::Socket(Protocol::Uwsgi),
        "listen with the uwsgi protocol (nginx uwsgi_pass): host:port, :port, [::1]:port, /path.sock, unix:/path.sock")
        .aliases(&["uwsgi-socket"]).short('s').repeatable(),
    OptionSpec::new("http-socket", G::Sockets, Kind::Socket(Protocol::Http),
        "listen with HTTP/1.1 (behind nginx proxy_pass, or directly); keep-alive included")
        .aliases(&["http11-socket"]).repeatable(),
    OptionSpec::new("http", G::Sockets, Kind::Socket(Protocol::Http),
        "same as http-socket (uWSGI starts a separate HTTP router; rsgi's workers speak HTTP themselves)")
        .repeatable(),
    OptionSpec::new("protocol", G::Sockets, Kind::Protocol,
        "the protocol of the sockets given with socket (and uwsgi-socket): uwsgi (the default) or http, as uWSGI's protocol = http"),
    OptionSpec::new("chmod-socket", G::Sockets, Kind::Mode(|c, v| c.chmod_socket = Some(v)),
        "mode of unix socket files, octal (given without a value: 666)")
        .short('C'),
    OptionSpec::new("chown-socket", G::Sockets, Kind::Str(|c, v| c.chown_socket = Some(v)),
        "owner of unix socket files: user or user:group").meta("USER[:GROUP]"),
    OptionSpec::new("vacuum", G::Sockets, Kind::Bool(|c, v| c.vacuum = v),
        "remove unix socket files and pid files on exit")
        ,
    OptionSpec::new("listen", G::Sockets, Kind::Int { min: 1, max: i32::MAX as u64, set: set::listen },
        "listen backlog (uWSGI: 100; the kernel caps it at net.core.somaxconn)")
        .short('l').default("1024"),
    OptionSpec::new("buffer-size", G::Sockets, Kind::Int { min: 1, max: 65535, set: set::buffer_size },
        "largest request head (uwsgi vars or HTTP headers) in bytes, at most 65535")
        .short('b').default("8192").meta("BYTES"),
    OptionSpec::new("socket-timeout", G::Sockets, Kind::Int { min: 1, max: 31_536_000, set: |c, v| c.socket_timeout = v },
        "seconds a client may stay silent while sending its request (each read of the head and body); slower ones are closed")
        .default("4").meta("SECS"),
    OptionSpec::new("http-timeout", G::Sockets, Kind::Int { min: 1, max: 31_536_000, set: |c, v| c.http_timeout = Some(v) },
        "seconds an HTTP client may take to send a request head (uWSGI's HTTP router timeout; rsgi's HTTP sockets are the router); unset: socket-timeout")
        .meta("SECS"),
    OptionSpec::new("http-keepalive-timeout", G::Sockets, Kind::Int { min: 1, max: 31_536_000, set: |c, v| c.http_keepalive_timeout = v },
        "seconds an HTTP keep-alive connection may stay idle between requests before it is closed (rsgi's own; longer than nginx's upstream keepalive_timeout)")
        .default("65").meta("SECS"),
    OptionSpec::new("enable-proxy-protocol", G::Sockets, Kind::Bool(|c, v| c.enable_proxy_protocol = v),
        "HTTP connections may start with a PROXY protocol header (v1 or v2, from HAProxy or a cloud load balancer): REMOTE_ADDR/REMOTE_PORT come from it; a malformed one closes the connection")
        .aliases(&["http-enable-proxy-protocol"]),
    OptionSpec::new("worker-connections", G::Sockets, Kind::Int { min: 1, max: 1_000_000, set: |c, v| c.worker_connections = v },
        "the most connections one worker holds open at once; at the cap it stops accepting (and logs it) until one closes")
        .default("4096").meta("N"),
    OptionSpec::new("limit-post", G::Sockets, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.limit_post = v },
        "largest request body in bytes; larger ones get 413 (0: no limit)")
        .default("0").meta("BYTES"),
    // --- the Python app ---
    OptionSpec::new("module", G::App, Kind::Str(|c, v| c.module = Some(v)),
        "the WSGI module to import: pkg.mod or pkg.mod:callable")
        .aliases(&["wsgi"]).short('w').meta("MODULE"),
    OptionSpec::new("wsgi-file", G::App, Kind::Path(|c, v| c.wsgi_file = Some(v)),
        "a Python file that defines the WSGI callable")
        .aliases(&["file"]),
    OptionSpec::new("callable", G::App, Kind::Str(|c, v| c.callable = v),
        "name of the WSGI callable in the module or file")
        .default("application").meta("NAME"),
    OptionSpec::new("chdir", G::App, Kind::Path(|c, v| c.chdir = Some(v)),
        "change to this directory before loading the app").meta("DIR"),
    OptionSpec::new("pythonpath", G::App, Kind::Path(|c, v| c.pythonpath.push(v)),
        "add a directory to sys.path")
        .aliases(&["python-path", "pp"]).repeatable().meta("DIR"),
    OptionSpec::new("home", G::App, Kind::Path(|c, v| c.home = Some(v)),
        "the virtualenv to run the app in")
        .aliases(&["virtualenv", "venv", "pyhome"]).short('H').meta("DIR"),
    OptionSpec::new("env", G::App, Kind::KeyValue(|c, k, v| c.env.push((k, v))),
        "set an environment variable before Python starts")
        .repeatable(),
    OptionSpec::new("add-header", G::App, Kind::Str(|c, v| c.add_header.push(v)),
        "add this header to every response (the app's, static files, errors)")
        .repeatable().meta("'NAME: VALUE'"),
    OptionSpec::new("mount", G::App, Kind::Str(|c, v| c.mount.push(v)),
        "serve another app under a URL prefix: /prefix=file.py or /prefix=pkg.mod[:callable]; chosen by SCRIPT_NAME (see manage-script-name)")
        .repeatable().meta("/PREFIX=APP"),
    OptionSpec::new("manage-script-name", G::App, Kind::Bool(|c, v| c.manage_script_name = v),
        "move the longest mount prefix from PATH_INFO into SCRIPT_NAME (apps under a prefix behind a proxy that does not set SCRIPT_NAME)"),
    OptionSpec::new("static-map", G::App, Kind::Mapping(|c, p, d| c.static_map.push((p, d))),
        "serve files under URL PREFIX from DIR without calling the app")
        .repeatable(),
    OptionSpec::new("static-map2", G::App, Kind::Mapping(|c, p, d| c.static_map2.push((p, d))),
        "like static-map, but the whole path (prefix included) is looked up under DIR")
        .repeatable(),
    OptionSpec::new("check-static", G::App, Kind::Path(|c, v| c.check_static.push(v)),
        "serve DIR/PATH_INFO when that file exists, before static-map and the app")
        .repeatable().meta("DIR"),
    OptionSpec::new("static-index", G::App, Kind::Str(|c, v| c.static_index.push(v)),
        "for a static path that is a directory, serve this file in it (index.html)")
        .repeatable().meta("NAME"),
    OptionSpec::new("static-gzip-all", G::App, Kind::Bool(|c, v| c.static_gzip_all = v),
        "serve FILE.gz (Content-Encoding: gzip) for a static FILE when the client accepts gzip and FILE.gz exists"),
    OptionSpec::new("static-expires-type", G::App, Kind::KeyValue(|c, t, v| c.static_expires_type.push((t, v))),
        "Expires header SECS after the request for static files of content type MIME (text/css=3600)")
        .repeatable().meta("MIME=SECS"),
    OptionSpec::new("static-expires-type-mtime", G::App, Kind::KeyValue(|c, t, v| c.static_expires_type_mtime.push((t, v))),
        "Expires header SECS after the file's modification time, for static files of content type MIME")
        .repeatable().meta("MIME=SECS"),
    OptionSpec::new("wsgi-disable-file-wrapper", G::App, Kind::Bool(|c, v| c.wsgi_disable_file_wrapper = v),
        "leave wsgi.file_wrapper out of the environ"),
    // --- logs and pid files ---
    OptionSpec::new("logto", G::Logging, Kind::Path(|c, v| c.logto = Some(v)),
        "log to this file instead of stderr").meta("LOGFILE"),
    OptionSpec::new("logdate", G::Logging, Kind::LogDate,
        "prefix log lines with the date (or with this strftime FORMAT)")
        .aliases(&["log-date"]),
    OptionSpec::new("disable-logging", G::Logging, Kind::Bool(|c, v| c.disable_logging = v),
        "do not log requests (errors are still logged)")
        .short('L'),
    OptionSpec::new("daemonize", G::Logging, Kind::Path(|c, v| c.daemonize = Some(v)),
        "detach from the terminal and log to this file")
        .short('d').meta("LOGFILE"),
    OptionSpec::new("pidfile", G::Logging, Kind::Path(|c, v| c.pidfile = Some(v)),
        "write the master's pid to this file"),
    OptionSpec::new("safe-pidfile", G::Logging, Kind::Path(|c, v| c.safe_pidfile = Some(v)),
        "like pidfile, written atomically (temp file + rename)"),
    OptionSpec::new("print", G::Logging, Kind::Str(|c, v| c.print.push(v)),
        "print TEXT when the config is read (uWSGI prints it while parsing)")
        .repeatable().meta("TEXT"),
    OptionSpec::new("umask", G::Privileges, Kind::Octal(|c, v| c.umask = Some(v)),
        "set the process's umask (octal) before anything is bound, written or imported"),
    OptionSpec::new("max-fd", G::Privileges, Kind::Int { min: 1, max: u32::MAX as u64, set: |c, v| c.max_fd = Some(v) },
        "set the open files limit (RLIMIT_NOFILE) to N; above the hard limit only as root"),
    OptionSpec::new("import", G::App, Kind::Str(|c, v| c.import.push(v)),
        "import a Python module (or run a .py file) before the app is loaded, in each process that loads it")
        .aliases(&["pyimport", "py-import", "python-import"]).repeatable().meta("MODULE"),
    OptionSpec::new("chdir2", G::App, Kind::Path(|c, v| c.chdir2 = Some(v)),
        "change to this directory after the app is loaded").meta("DIR"),
    // request logging (issue 21)
    OptionSpec::new("log-format", G::Logging, Kind::Str(|c, v| c.log_format = Some(v)),
        "the request line as uWSGI's template: %(addr) %(method) %(uri) %(proto) %(status) %(size) %(msecs) %(ftime) %(var.NAME) ...; unknown %(x) print -")
        .aliases(&["logformat"]).meta("FORMAT"),
    OptionSpec::new("log-format-strftime", G::Logging, Kind::Bool(|c, v| c.log_format_strftime = v),
        "%(ftime) uses the logdate strftime FORMAT (without it, or without a logdate format: %(ltime))")
        .aliases(&["logformat-strftime"]),
    OptionSpec::new("log-4xx", G::Logging, Kind::Bool(|c, v| c.log_4xx = v),
        "log requests answered 4xx even with disable-logging"),
    OptionSpec::new("log-5xx", G::Logging, Kind::Bool(|c, v| c.log_5xx = v),
        "log requests answered 5xx even with disable-logging"),
    OptionSpec::new("log-slow", G::Logging, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.log_slow = (v > 0).then_some(v) },
        "log requests that took at least this many milliseconds even with disable-logging").meta("MSECS"),
    OptionSpec::new("log-zero", G::Logging, Kind::Bool(|c, v| c.log_zero = v),
        "log responses with an empty body even with disable-logging"),
    OptionSpec::new("log-big", G::Logging, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.log_big = (v > 0).then_some(v) },
        "log responses of at least this many body bytes even with disable-logging").meta("BYTES"),
    OptionSpec::new("logger", G::Logging, Kind::Str(|c, v| c.logger.push(v)),
        "send log lines (and request lines, unless req-logger is set) here instead: file:PATH, syslog[:IDENT[,FACILITY]] or stdio")
        .repeatable().meta("LOGGER"),
    OptionSpec::new("req-logger", G::Logging, Kind::Str(|c, v| c.req_logger.push(v)),
        "send request lines here: file:PATH, syslog[:IDENT[,FACILITY]] or stdio")
        .aliases(&["logger-req"]).repeatable().meta("LOGGER"),
    OptionSpec::new("log-maxsize", G::Logging, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.log_maxsize = (v > 0).then_some(v) },
        "rotate the logto/daemonize file once it is larger than this: renamed to LOGFILE.<unix time> (or log-backupname), a new one opened")
        .meta("BYTES"),
    OptionSpec::new("log-backupname", G::Logging, Kind::Path(|c, v| c.log_backupname = Some(v)),
        "the name log-maxsize renames the log file to (replacing the last one)"),
    OptionSpec::new("log-x-forwarded-for", G::Logging, Kind::Bool(|c, v| c.log_x_forwarded_for = v),
        "the request line's address (%(addr)) is the X-Forwarded-For header when the request has one"),
    // logging and lifecycle options of the corpus (issue 21 follow-up)
    OptionSpec::new("logto2", G::Logging, Kind::Path(|c, v| c.logto2 = Some(v)),
        "log to this file, opened once uid/gid have dropped privileges (so that user creates and owns it); lines before go to logto or stderr")
        .meta("LOGFILE"),
    OptionSpec::new("log-encoder", G::Logging, Kind::Parsed(|c, v| crate::log_encoder::add(&mut c.log_encoder, v)),
        "pass each log line (request lines too, unless req-logger is set) through this encoder, chained in order: prefix TEXT, suffix TEXT, nl, format TEMPLATE, json TEMPLATE; templates take ${msg} ${msgnl} ${unix} ${millis} ${micros} ${strftime:FMT} and add no newline (follow them with log-encoder = nl)")
        .repeatable().meta("ENCODER[ ARGS]"),
    OptionSpec::new("log-req-encoder", G::Logging, Kind::Parsed(|c, v| crate::log_encoder::add(&mut c.log_req_encoder, v)),
        "the same for request lines on their way to req-logger (without req-logger they go through log-encoder, as in uWSGI)")
        .repeatable().meta("ENCODER[ ARGS]"),
    OptionSpec::new("log-sendfile", G::Logging, Kind::Bool(|c, v| c.log_sendfile = v),
        "log requests answered with a file (static files, wsgi.file_wrapper: uWSGI's sendfile responses) even with disable-logging"),
    OptionSpec::new("touch-logrotate", G::Lifecycle, Kind::Path(|c, v| c.touch_logrotate.push(v)),
        "rotate the log file (logto, logto2 or daemonize) when this file changes, as log-maxsize does: renamed to log-backupname (or LOGFILE.<unix time>), a new one opened")
        .repeatable().meta("FILE"),
    OptionSpec::new("close-on-exec", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi accepts every connection close-on-exec (accept4 with SOCK_CLOEXEC): a subprocess of the app never inherits one" }, ""),
    OptionSpec::new("close-on-exec2", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi's listening sockets are always close-on-exec in the master and the workers (rsgi hands them across its own re-exec itself): a subprocess of the app never inherits one" }, ""),
    OptionSpec::new("refork", G::Ignored, Kind::Ignored { takes_value: false, why: "the extra fork is for uWSGI's jails (namespaces, chroot), which rsgi does not have; without one it only leaves a parent waiting with every signal blocked, so rsgi does not fork again (the pidfile keeps naming the master)" }, "")
        .aliases(&["re-fork", "refork-as-root", "re-fork-as-root", "refork-post-jail", "re-fork-post-jail"]),
    // --- processes ---
    OptionSpec::new("master", G::Processes, Kind::Bool(|c, v| c.master = v),
        "run a master process that supervises the workers")
        .short('M'),
    OptionSpec::new("processes", G::Processes, Kind::Int { min: 1, max: 65535, set: set::processes },
        "number of worker processes")
        .aliases(&["workers", "process"]).short('p').default("1"),
    OptionSpec::new("threads", G::Processes, Kind::Int { min: 1, max: 65535, set: set::threads },
        "app threads per worker")
        .default("1"),
    OptionSpec::new("lazy-apps", G::Processes, Kind::Bool(|c, v| c.lazy_apps = v),
        "import the app in each worker instead of once in the master")
        .aliases(&["lazy"]),
    OptionSpec::new("harakiri", G::Processes, Kind::Int { min: 0, max: U32, set: set::harakiri },
        "kill a worker whose request runs longer than this many seconds (0: never)")
        .short('t').meta("SECONDS"),
    OptionSpec::new("max-requests", G::Processes, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.max_requests = (v > 0).then_some(v) },
        "recycle a worker after this many requests (0: never)")
        .short('R'),
    OptionSpec::new("max-requests-delta", G::Processes, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.max_requests_delta = v },
        "add up to this many requests per worker to max-requests, so workers do not recycle together")
        .default("0"),
    OptionSpec::new("reload-on-rss", G::Processes, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.reload_on_rss = (v > 0).then_some(v) },
        "recycle a worker whose resident memory exceeds this many MiB (0: never)").meta("MIB"),
    OptionSpec::new("max-worker-lifetime", G::Processes, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.max_worker_lifetime = (v > 0).then_some(v) },
        "recycle a worker after this many seconds (0: never)").meta("SECONDS"),
    OptionSpec::new("reload-mercy", G::Processes, Kind::Int { min: 0, max: u64::MAX, set: |c, v| c.reload_mercy = v },
        "seconds a graceful stop or reload may take before workers are killed")
        .aliases(&["worker-reload-mercy"]).default("60").meta("SECONDS"),
    // --- on demand (issue 20): read by rsgid ---
    OptionSpec::new("on-demand", G::Processes, Kind::Bool(|c, v| c.on_demand = Some(v)),
        "under rsgid: bind the sockets, start the app on the first connection"),
    OptionSpec::new("idle", G::Processes, Kind::Int { min: 0, max: U32, set: |c, v| c.idle = (v > 0).then_some(v) },
        "under rsgid: stop after this many seconds without a request, start again on the next connection (0: never)").meta("SECONDS"),
    OptionSpec::new("die-on-idle", G::Processes, Kind::Bool(|c, v| c.die_on_idle = v),
        "uWSGI's exit-when-idle: under rsgid the same as idle alone (standalone rsgi ignores idle)"),
    // --- stats ---
    OptionSpec::new("stats", G::Stats, Kind::Str(|c, v| c.stats = Some(v)),
        "serve uWSGI-compatible stats JSON (uwsgitop) on this address: host:port, :port or /path.sock")
        .aliases(&["stats-server"]).meta("ADDR"),
    OptionSpec::new("stats-http", G::Stats, Kind::Bool(|c, v| c.stats_http = v),
        "serve the stats with an HTTP header (curl, uwsgitop http://...)")
        ,
    // --- privileges ---
    OptionSpec::new("uid", G::Privileges, Kind::Str(|c, v| c.uid = Some(v)),
        "run as this user (name or number)").meta("USER"),
    OptionSpec::new("gid", G::Privileges, Kind::Str(|c, v| c.gid = Some(v)),
        "run as this group (name or number)").meta("GROUP"),
    // --- lifecycle ---
    OptionSpec::new("touch-reload", G::Lifecycle, Kind::Path(|c, v| c.touch_reload.push(v)),
        "gracefully reload (as SIGHUP) when this file's modification time changes; checked every second")
        .repeatable().meta("FILE"),
    OptionSpec::new("touch-chain-reload", G::Lifecycle, Kind::Path(|c, v| c.touch_chain_reload.push(v)),
        "when this file changes, replace the workers one at a time, each after its replacement accepts (new code with lazy-apps)")
        .repeatable().meta("FILE"),
    OptionSpec::new("touch-workers-reload", G::Lifecycle, Kind::Path(|c, v| c.touch_workers_reload.push(v)),
        "when this file changes, start a new set of workers and retire the old ones once they accept (the master stays)")
        .repeatable().meta("FILE"),
    OptionSpec::new("touch-logreopen", G::Lifecycle, Kind::Path(|c, v| c.touch_logreopen.push(v)),
        "reopen the log file (as SIGUSR1) when this file changes")
        .repeatable().meta("FILE"),
    OptionSpec::new("attach-daemon", G::Lifecycle, Kind::Parsed(|c, v| crate::daemons::attach(c, v, false).map(|()| None)),
        "run CMD (/bin/sh -c) beside the app: respawned when it dies (throttled), stopped with the vassal and on reload")
        .repeatable().meta("CMD"),
    OptionSpec::new("attach-control-daemon", G::Lifecycle, Kind::Parsed(|c, v| crate::daemons::attach(c, v, true).map(|()| None)),
        "like attach-daemon, but when CMD dies the vassal stops")
        .repeatable().meta("CMD"),
    OptionSpec::new("smart-attach-daemon", G::Lifecycle, Kind::Parsed(|c, v| crate::daemons::smart(c, v, false).map(|()| None)),
        "run CMD unless the pid in PIDFILE lives; respawn it when that pid is gone; it survives reloads and stops")
        .repeatable().meta("PIDFILE[,FREQ] CMD"),
    OptionSpec::new("smart-attach-daemon2", G::Lifecycle, Kind::Parsed(|c, v| crate::daemons::smart(c, v, true).map(|()| None)),
        "like smart-attach-daemon, for a CMD that does not daemonize: rsgi detaches it and writes PIDFILE")
        .repeatable().meta("PIDFILE[,FREQ] CMD"),
    OptionSpec::new("attach-daemon2", G::Lifecycle, Kind::Parsed(|c, v| crate::daemons::keyval(c, v).map(|()| None)),
        "attach-daemon with keys: cmd=CMD[,pidfile=P][,freq=N][,control=1][,daemonize=1][,stopsignal=N]")
        .repeatable().meta("KEY=VAL,..."),
    OptionSpec::new("hook-asap", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::Asap, v)),
        "run ACTION:ARG first thing at start, before the log and the sockets; actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("exec-asap", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add_exec(c, crate::hooks::Phase::Asap, v).map(|()| None)),
        "run CMD (/bin/sh -c, waited for) first thing at start, before the log and the sockets: hook-asap = exec:CMD")
        .repeatable().meta("CMD"),
    OptionSpec::new("hook-as-root", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::AsRoot, v)),
        "run ACTION:ARG before uid/gid drop privileges; actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("exec-as-root", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add_exec(c, crate::hooks::Phase::AsRoot, v).map(|()| None)),
        "run CMD (/bin/sh -c, waited for) before uid/gid drop privileges: hook-as-root = exec:CMD")
        .repeatable().meta("CMD"),
    OptionSpec::new("hook-as-user", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::AsUser, v)),
        "run ACTION:ARG after privileges are dropped; actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("exec-as-user", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add_exec(c, crate::hooks::Phase::AsUser, v).map(|()| None)),
        "run CMD (/bin/sh -c, waited for) after privileges are dropped: hook-as-user = exec:CMD")
        .repeatable().meta("CMD"),
    OptionSpec::new("hook-pre-app", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::PreApp, v)),
        "run ACTION:ARG before the app is imported (in each worker with lazy-apps); actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("exec-pre-app", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add_exec(c, crate::hooks::Phase::PreApp, v).map(|()| None)),
        "run CMD (/bin/sh -c, waited for) before the app is imported (in each worker with lazy-apps): hook-pre-app = exec:CMD")
        .repeatable().meta("CMD"),
    OptionSpec::new("hook-post-app", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::PostApp, v)),
        "run ACTION:ARG after the app is imported; actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("exec-post-app", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add_exec(c, crate::hooks::Phase::PostApp, v).map(|()| None)),
        "run CMD (/bin/sh -c, waited for) after the app is imported: hook-post-app = exec:CMD")
        .repeatable().meta("CMD"),
    OptionSpec::new("hook-master-start", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::MasterStart, v)),
        "run ACTION:ARG when the master starts; actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("hook-post-fork", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::PostFork, v)),
        "run ACTION:ARG in each worker right after the fork (a failure is logged); actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("hook-accepting", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::Accepting, v)),
        "run ACTION:ARG in each worker once it accepts (a failure is logged); actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("hook-accepting1", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::Accepting1, v)),
        "run ACTION:ARG in worker 1 once it accepts (a failure is logged); actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("hook-as-user-atexit", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add(c, crate::hooks::Phase::AtExit, v)),
        "run ACTION:ARG when the server exits (a failure is logged); actions: exec, safeexec, print, write(n), append(n), create, unlink, mkdir, chmod, putenv, cd, exit")
        .repeatable().meta("ACTION:ARG"),
    OptionSpec::new("exec-as-user-atexit", G::Lifecycle, Kind::Parsed(|c, v| crate::hooks::add_exec(c, crate::hooks::Phase::AtExit, v).map(|()| None)),
        "run CMD (/bin/sh -c, waited for) when the server exits (a failure is logged): hook-as-user-atexit = exec:CMD")
        .repeatable().meta("CMD"),
    OptionSpec::new("py-autoreload", G::Lifecycle, Kind::Int { min: 0, max: 86_400, set: |c, v| c.py_autoreload = v },
        "every N seconds each worker checks the files of its loaded Python modules and reloads the vassal (as SIGHUP) when one changed (0: off)")
        .aliases(&["python-autoreload"]).default("0").meta("SECS"),
    OptionSpec::new("cron", G::Lifecycle, Kind::Parsed(|c, v| crate::cron::add(c, v, false).map(|()| None)),
        "run CMD (/bin/sh -c) at local times: MIN HOUR DAY MONTH WEEKDAY CMD, -1 any, -N every N (uWSGI's syntax)")
        .repeatable().meta("M H D MON WD CMD"),
    OptionSpec::new("unique-cron", G::Lifecycle, Kind::Parsed(|c, v| crate::cron::add(c, v, true).map(|()| None)),
        "like cron, but never while the previous run of CMD still runs")
        .repeatable().meta("M H D MON WD CMD"),
    OptionSpec::new("cron2", G::Lifecycle, Kind::Parsed(|c, v| crate::cron::add2(c, v).map(|()| None)),
        "cron with keys: minute=,hour=,day=,month=,week= (unset: any), unique=1, harakiri=SECS, then CMD")
        .repeatable().meta("KEY=VAL,... CMD"),
    OptionSpec::new("cheaper", G::Lifecycle, Kind::Int { min: 0, max: 65535, set: |c, v| c.cheaper = v as u32 },
        "adaptive worker count: keep at least N workers, up to processes, added under load and retired when idle (uWSGI's spare algorithm; 0: off)")
        .default("0").meta("N"),
    OptionSpec::new("cheaper-initial", G::Lifecycle, Kind::Int { min: 1, max: 65535, set: |c, v| c.cheaper_initial = Some(v as u32) },
        "with cheaper: workers started at first (default: cheaper)").meta("N"),
    OptionSpec::new("cheaper-step", G::Lifecycle, Kind::Int { min: 1, max: 65535, set: |c, v| c.cheaper_step = v as u32 },
        "with cheaper: workers added at once when every worker is busy").default("1").meta("N"),
    OptionSpec::new("cheaper-overload", G::Lifecycle, Kind::Int { min: 1, max: 86_400, set: |c, v| c.cheaper_overload = v },
        "with cheaper: seconds of every worker busy before workers are added (and of idleness between retirements)")
        .default("3").meta("SECS"),
    OptionSpec::new("cheaper-algo", G::Lifecycle, Kind::Parsed(cheaper_algo),
        "the cheaper algorithm: spare (busyness is read as spare, with a notice; others are refused)")
        .default("spare").meta("NAME"),
    // --- config files ---
    OptionSpec::new("ini", G::Config, Kind::Config(Format::Ini),
        "read options from an ini file: FILE, FILE:section, or :section of the current file")
        .repeatable(),
    OptionSpec::new("xml", G::Config, Kind::Config(Format::Xml),
        "read options from an XML file: FILE or FILE:id")
        .short('x').repeatable(),
    OptionSpec::new("include", G::Config, Kind::Config(Format::ByName),
        "read options from a config file, ini or XML by its name: FILE or FILE:section")
        .repeatable(),
    OptionSpec::new("if-env", G::Config, Kind::Logic(LogicOp::IfEnv),
        "apply the lines up to endif only if environment variable VAR is set (VAR=value: to that value); %(_) is its value")
        .aliases(&["ifenv"]).meta("VAR[=VALUE]").repeatable(),
    OptionSpec::new("if-not-env", G::Config, Kind::Logic(LogicOp::IfNotEnv),
        "apply the lines up to endif only if VAR is not set (VAR=value: not to that value)")
        .meta("VAR[=VALUE]").repeatable(),
    OptionSpec::new("if-opt", G::Config, Kind::Logic(LogicOp::IfOpt),
        "apply the lines up to endif only if option or placeholder NAME was set before (NAME=value: to that value)")
        .meta("NAME[=VALUE]").repeatable(),
    OptionSpec::new("if-not-opt", G::Config, Kind::Logic(LogicOp::IfNotOpt),
        "apply the lines up to endif only if NAME was not set before (NAME=value: not to that value)")
        .meta("NAME[=VALUE]").repeatable(),
    OptionSpec::new("if-exists", G::Config, Kind::Logic(LogicOp::IfExists),
        "apply the lines up to endif only if PATH exists; %(_) is PATH")
        .aliases(&["if-file-exists", "ifexists"]).meta("PATH").repeatable(),
    OptionSpec::new("if-not-exists", G::Config, Kind::Logic(LogicOp::IfNotExists),
        "apply the lines up to endif only if PATH does not exist")
        .aliases(&["if-not-file-exists"]).meta("PATH").repeatable(),
    OptionSpec::new("if-file", G::Config, Kind::Logic(LogicOp::IfFile),
        "apply the lines up to endif only if PATH is a regular file")
        .meta("PATH").repeatable(),
    OptionSpec::new("if-not-file", G::Config, Kind::Logic(LogicOp::IfNotFile),
        "apply the lines up to endif only if PATH is not a regular file")
        .meta("PATH").repeatable(),
    OptionSpec::new("if-dir", G::Config, Kind::Logic(LogicOp::IfDir),
        "apply the lines up to endif only if PATH is a directory")
        .aliases(&["if-directory", "ifdir"]).meta("PATH").repeatable(),
    OptionSpec::new("if-not-dir", G::Config, Kind::Logic(LogicOp::IfNotDir),
        "apply the lines up to endif only if PATH is not a directory")
        .aliases(&["if-not-directory"]).meta("PATH").repeatable(),
    OptionSpec::new("if-hostname", G::Config, Kind::Logic(LogicOp::IfHostname),
        "apply the lines up to endif only on the host called NAME")
        .meta("NAME").repeatable(),
    OptionSpec::new("if-not-hostname", G::Config, Kind::Logic(LogicOp::IfNotHostname),
        "apply the lines up to endif only on other hosts than NAME")
        .meta("NAME").repeatable(),
    OptionSpec::new("if-hostname-match", G::Config, Kind::Logic(LogicOp::IfHostnameMatch),
        "apply the lines up to endif only if the host name matches REGEXP (found anywhere in it; ^...$ for all of it); %(_) is REGEXP")
        .meta("REGEXP").repeatable(),
    OptionSpec::new("if-not-hostname-match", G::Config, Kind::Logic(LogicOp::IfNotHostnameMatch),
        "apply the lines up to endif only if the host name does not match REGEXP")
        .meta("REGEXP").repeatable(),
    OptionSpec::new("for", G::Config, Kind::Logic(LogicOp::For),
        "apply the lines up to endfor once per space-separated item; %(_) is the item")
        .meta("ITEMS").repeatable(),
    OptionSpec::new("for-times", G::Config, Kind::Logic(LogicOp::ForTimes),
        "apply the lines up to endfor N times; %(_) is 1, 2, ... N")
        .meta("N").repeatable(),
    OptionSpec::new("for-glob", G::Config, Kind::Logic(LogicOp::ForGlob),
        "apply the lines up to endfor once per path matching the shell PATTERN, sorted (directories end with /; no match: the pattern itself, as uWSGI)")
        .meta("PATTERN").repeatable(),
    OptionSpec::new("for-readline", G::Config, Kind::Logic(LogicOp::ForReadline),
        "apply the lines up to endfor once per line of FILE; %(_) is the line")
        .meta("FILE").repeatable(),
    OptionSpec::new("if-reload", G::Config, Kind::Logic(LogicOp::IfReload),
        "apply the lines up to endif only when the master reads the config again for a reload (SIGHUP, --reload)")
        .repeatable(),
    OptionSpec::new("if-not-reload", G::Config, Kind::Logic(LogicOp::IfNotReload),
        "apply the lines up to endif only on a first start, not on a reload")
        .repeatable(),
    OptionSpec::new("if-plugin", G::Config, Kind::Logic(LogicOp::IfPlugin),
        "apply the lines up to endif only if NAME is a plugin rsgi has built in: python, python3, python3XX")
        .aliases(&["ifplugin"]).meta("NAME").repeatable(),
    OptionSpec::new("if-not-plugin", G::Config, Kind::Logic(LogicOp::IfNotPlugin),
        "apply the lines up to endif only if NAME is not built in (any plugin but python)")
        .meta("NAME").repeatable(),
    OptionSpec::new("else", G::Config, Kind::Logic(LogicOp::Else),
        "after an if-* block: apply the lines up to endif only if that condition did not hold")
        .repeatable(),
    OptionSpec::new("endif", G::Config, Kind::Logic(LogicOp::End),
        "end an if-*, else or for block")
        .aliases(&["end-if", "endfor", "end-for", "end"]).repeatable(),
    OptionSpec::new("set-placeholder", G::Config, Kind::Placeholder,
        "define %(NAME) for the values after it, without setting an option")
        .aliases(&["set-ph"]).repeatable(),
    // --- actions ---
    OptionSpec::new("help", G::Actions, Kind::Action(Action::Help), "print this help and exit")
        .short('h'),
    OptionSpec::new("version", G::Actions, Kind::Action(Action::Version), "print the version and exit"),
    OptionSpec::new("stop", G::Actions, Kind::Action(Action::Stop),
        "gracefully stop the instance whose master pid is in PIDFILE"),
    OptionSpec::new("reload", G::Actions, Kind::Action(Action::Reload),
        "gracefully reload the instance whose master pid is in PIDFILE"),
    OptionSpec::new("check-app", G::Actions, Kind::Action(Action::CheckApp),
        "load the configuration and import the app, then exit: 0 if it imports"),
    OptionSpec::new("check-config", G::Actions, Kind::Action(Action::CheckConfig),
        "read the configuration (no Python, nothing bound), print its notices and what it would serve, then exit: 0 if it is complete"),
    // --- accepted from uWSGI, ignored ---
    OptionSpec::new("plugins", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi has Python built in; there are no plugins" }, "")
        .aliases(&["plugin"]).repeatable().meta("NAME"),
    OptionSpec::new("enable-threads", G::Ignored, Kind::Ignored { takes_value: false, why: "Python threads always work in rsgi" }, "")
        .short('T'),
    OptionSpec::new("single-interpreter", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi always runs one interpreter per process" }, ""),
    OptionSpec::new("die-on-term", G::Ignored, Kind::Ignored { takes_value: false, why: "SIGTERM always stops rsgi gracefully (SIGHUP reloads)" }, ""),
    OptionSpec::new("no-orphans", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi workers always exit when their master dies" }, ""),
    OptionSpec::new("need-app", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi always exits when the app cannot be loaded" }, ""),
    OptionSpec::new("strict", G::Config, Kind::Bool(|c, v| c.strict = v),
        "make keys that are neither rsgi's nor uWSGI's options errors (without it they are ignored with a notice, as uWSGI ignores them; typos of real options are always errors)"),
    OptionSpec::new("memory-report", G::Ignored, Kind::Ignored { takes_value: false, why: "worker memory is always in the stats" }, ""),
    OptionSpec::new("thunder-lock", G::Ignored, Kind::Ignored { takes_value: false, why: "a tuning knob for uWSGI's accept(); rsgi has no such lock" }, ""),
    OptionSpec::new("harakiri-verbose", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi always logs the request whose worker it kills" }, ""),
    OptionSpec::new("post-buffering", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi always reads the whole request body before calling the app" }, "").meta("N"),
    OptionSpec::new("auto-procname", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi does not rename its processes" }, ""),
    OptionSpec::new("procname-prefix", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi does not rename its processes" }, "").meta("PREFIX"),
    OptionSpec::new("ignore-sigpipe", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi never gets SIGPIPE: a client that went away only ends its connection, quietly" }, ""),
    OptionSpec::new("ignore-write-errors", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi does not log a failed write to a client that went away" }, ""),
    OptionSpec::new("disable-write-exception", G::Ignored, Kind::Ignored { takes_value: false, why: "the app never writes to the client itself (write() data is sent after it returns), so no write exception reaches it" }, ""),
    OptionSpec::new("offload-threads", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi sends files with sendfile(2) from the worker's event loop; there are no offload threads" }, "").meta("N"),
    OptionSpec::new("http-keepalive", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi's HTTP sockets always keep HTTP/1.1 connections alive" }, ""),
    OptionSpec::new("cheaper-busyness-max", G::Ignored, Kind::Ignored { takes_value: true, why: BUSYNESS }, "")
        .aliases(&["cheaper-busyness-min", "cheaper-busyness-multiplier"]).meta("N"),
    OptionSpec::new("cheaper-busyness-penalty", G::Ignored, Kind::Ignored { takes_value: true, why: BUSYNESS }, "")
        .aliases(&["cheaper-busyness-verbose", "cheaper-busyness-backlog-alert"]).meta("N"),
    OptionSpec::new("cheaper-busyness-backlog-multiplier", G::Ignored, Kind::Ignored { takes_value: true, why: BUSYNESS }, "")
        .aliases(&["cheaper-busyness-backlog-step"]).meta("N"),
    OptionSpec::new("cheaper-busyness-backlog-nonzero", G::Ignored, Kind::Ignored { takes_value: true, why: BUSYNESS }, "").meta("N"),
    OptionSpec::new("log-master", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi processes write whole lines straight to the log (one write each, O_APPEND), so no log master process is needed" }, "")
        .aliases(&["threaded-logger"]),
    OptionSpec::new("log-reopen", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi always reopens its log file on a reload (the master re-executes itself)" }, ""),
    OptionSpec::new("log-micros", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi's request line already gives the time to 1/100 ms; for microseconds use %(micros) in log-format" }, ""),
    OptionSpec::new("vhost", G::Ignored, Kind::FalseOnly { why: "rsgi serves one app per vassal; vhost = true (apps chosen per request) is not supported" }, ""),
    // (seen in public configs: bench/corpus)
    OptionSpec::new("locks", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi has no uwsgi.lock() API, so there are no user locks to create" }, "").meta("N"),
    OptionSpec::new("no-site", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi always imports Python's site module: it is how the virtualenv's packages are found" }, ""),
    OptionSpec::new("master-as-root", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi's master drops privileges together with the workers; sockets, pid files and logs are opened before, as root" }, ""),
    OptionSpec::new("cheap", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi starts its workers at once; a vassal that starts on its first connection is rsgid's on-demand mode" }, ""),
    OptionSpec::new("procname", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi does not rename its processes" }, "")
        .aliases(&["procname-master", "procname-prefix-spaced", "procname-append"]).meta("NAME"),
    OptionSpec::new("show-config", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi does not print its config at start: `rsgi --ini FILE --check-config` shows what a config serves" }, ""),
    OptionSpec::new("honour-stdin", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi leaves stdin as it was given (uWSGI replaces it with /dev/null unless honour-stdin)" }, ""),
    OptionSpec::new("http-websockets", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi has no uwsgi.websocket_* API: an Upgrade request reaches the app as a plain WSGI request" }, ""),
    OptionSpec::new("http-auto-chunked", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi always sends an HTTP/1.1 response without Content-Length chunked" }, ""),
    OptionSpec::new("no-defer-accept", G::Ignored, Kind::Ignored { takes_value: false, why: "rsgi keeps TCP_DEFER_ACCEPT on its HTTP sockets: a connection is handed to a worker once it sends data (the kernel completes the handshake either way, so TCP health checks still pass)" }, ""),
    OptionSpec::new("ksm", G::Ignored, Kind::Ignored { takes_value: true, why: "rsgi does not mark memory for kernel samepage merging" }, "").meta("N"),
    // --- uWSGI features rsgi does not have: refused, with what to use instead ---
    OptionSpec::new("gevent", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi serves requests on threads, not greenlets: use threads = N (and processes = N)" }, "").meta("N"),
    OptionSpec::new("async", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no async cores: use threads = N (and processes = N)" }, "").meta("N"),
    OptionSpec::new("ugreen", G::Refused, Kind::Refused { takes_value: false, instead: "rsgi has no green threads: use threads = N (and processes = N)" }, ""),
    OptionSpec::new("cache2", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no shared cache: use your framework's cache on Redis or memcached" }, "")
        .aliases(&["cache"]),
    OptionSpec::new("spooler", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no spooler: run a task queue (Celery, RQ, Dramatiq) as its own service" }, "")
        .aliases(&["spooler-processes", "spooler-import"]),
    OptionSpec::new("mule", G::Refused, Kind::Refused { takes_value: false, instead: "rsgi has no mules: run background work as its own service (a task queue worker)" }, "")
        .aliases(&["mules"]),
    OptionSpec::new("alarm", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no alarms: alert on rsgid's metrics (Prometheus) or on its log" }, "")
        .aliases(&["alarm-log", "alarm-backlog", "alarm-segfault"]),
    OptionSpec::new("hook-pre-jail", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no jails (namespaces, chroot): use hook-as-root for what must run before privileges drop" }, "")
        .aliases(&["hook-post-jail", "hook-in-jail"]).meta("ACTION:ARG"),
    OptionSpec::new("exec-pre-jail", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no jails (namespaces, chroot): use exec-as-root for what must run before privileges drop" }, "")
        .aliases(&["exec-post-jail", "exec-in-jail"]).meta("CMD"),
    OptionSpec::new("hook-accepting-once", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi does not track once per instance: use hook-accepting (each worker start) or hook-accepting1 (worker 1)" }, "")
        .aliases(&["hook-accepting1-once"]).meta("ACTION:ARG"),
    OptionSpec::new("cheaper-rss-limit-soft", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi's cheaper does not count memory: use reload-on-rss to recycle a worker that grows" }, "")
        .aliases(&["cheaper-rss-limit-hard"]).meta("BYTES"),
    OptionSpec::new("log-route", G::Refused, Kind::Refused { takes_value: true, instead: "route in your log collector (rsyslog, journald, Vector): rsgi sends request lines and other lines apart with req-logger and logger" }, "")
        .aliases(&["log-req-route"]),
    OptionSpec::new("static-expires", G::Refused, Kind::Refused { takes_value: true, instead: EXPIRES_REGEX }, "")
        .aliases(&["static-expires-mtime"]),
    OptionSpec::new("static-expires-uri", G::Refused, Kind::Refused { takes_value: true, instead: EXPIRES_REGEX }, "")
        .aliases(&["static-expires-uri-mtime"]),
    OptionSpec::new("static-expires-path-info", G::Refused, Kind::Refused { takes_value: true, instead: EXPIRES_REGEX }, "")
        .aliases(&["static-expires-path-info-mtime"]),
    OptionSpec::new("emperor", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi's emperor is its own program: rsgid --vassals DIR" }, "").meta("DIR"),
    OptionSpec::new("emperor-stats", G::Refused, Kind::Refused { takes_value: true, instead: "an Emperor setting: rsgid is the emperor, with its own settings (rsgid --help, rsgid.toml; stats: rsgid's /metrics and rsgictl list)" }, "")
        .aliases(&["emperor-stats-server", "emperor-freq", "emperor-throttle", "emperor-max-throttle", "emperor-pidfile",
                   "emperor-procname", "emperor-required-heartbeat", "emperor-curse-tolerance", "emperor-broodlord",
                   "emperor-extra-extension", "emperor-extra-ext", "emperor-wrapper", "emperor-use-clone", "emperor-cap",
                   "emperor-proxy-socket", "vassal-set", "vassals-set", "vassal-sos", "vassal-sos-backlog",
                   "vassals-inherit", "vassals-include", "vassals-inherit-before", "vassals-include-before",
                   "vassals-start-hook", "vassals-stop-hook", "vassals-cap", "vassal-cap"]).meta("VALUE"),
    OptionSpec::new("emperor-tyrant", G::Refused, Kind::Refused { takes_value: false, instead: "an Emperor setting: rsgid --tyrant (each vassal runs as its file's owner)" }, "")
        .aliases(&["emperor-tyrant-nofollow", "emperor-nofollow", "emperor-graceful-shutdown", "emperor-magic-exec", "emperor-no-blacklist"]),
    OptionSpec::new("route", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no internal router: put the rules in nginx (location, return, rewrite, add_header)" }, "")
        .aliases(&["route-run", "route-host", "route-uri", "route-qs", "route-remote-addr", "route-user-agent", "response-route", "final-route", "error-route",
                   "route-if", "route-if-not", "route-label", "route-referer", "route-remote-user"]),
    OptionSpec::new("carbon", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi pushes no stats to carbon/graphite: scrape rsgid's /metrics (Prometheus; graphite can be fed from it with a bridge) or read the stats socket" }, "")
        .aliases(&["carbon-freq", "carbon-hostname-dots", "carbon-id", "carbon-idle-avg", "carbon-max-retry", "carbon-name-resolve", "carbon-no-workers",
                   "carbon-resolve-names", "carbon-retry-delay", "carbon-root", "carbon-timeout", "carbon-use-metrics"]),
    OptionSpec::new("fastrouter", G::Refused, Kind::Refused { takes_value: true, instead: "rsgi has no routers: put nginx (or any proxy) in front, with uwsgi_pass or proxy_pass to each vassal's socket" }, "")
        .aliases(&["fastrouter-subscription-server", "subscribe-to", "subscribe2", "rawrouter", "sslrouter", "forkptyrouter"]),
    OptionSpec::new("paste", G::Refused, Kind::Refused { takes_value: true, instead: "load a PasteDeploy app from Python: module = a file whose application = paste.deploy.loadapp('config:/path/app.ini')" }, "").meta("URI"),
    OptionSpec::new("master-fifo", G::Refused, Kind::Refused { takes_value: true, instead: "send signals instead: HUP reloads, TERM stops gracefully, INT stops at once (rsgictl reload/stop under rsgid)" }, "").meta("PATH"),
    OptionSpec::new("reload-on-as", G::Refused, Kind::Refused { takes_value: true, instead: "address space says little about memory use: use reload-on-rss = MiB" }, "").meta("MB"),
    OptionSpec::new("gevent-early-monkey-patch", G::Refused, Kind::Refused { takes_value: false, instead: "rsgi serves requests on threads, not greenlets: use threads = N (and processes = N)" }, "")
        .aliases(&["gevent-monkey-patch"]),
];

/// The option called `name` (its name or an alias; case-sensitive, as uWSGI).
pub fn find(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.is_named(name))
}

/// The option with short flag `c`.
pub fn find_short(c: char) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.short == Some(c))
}

/// The known name or alias closest to the unknown `name`, if it is close enough to be a
/// likely typo. Case and `_`/`-` are ignored when comparing (`Wsgi_File` suggests
/// `wsgi-file`).
pub fn suggest(name: &str) -> Option<&'static str> {
    let norm = |s: &str| s.to_lowercase().replace('_', "-");
    let wanted = norm(name);
    let limit = (wanted.chars().count() / 3).max(1);
    OPTIONS
        .iter()
        .flat_map(|o| std::iter::once(&o.name).chain(o.aliases.iter()))
        .map(|&candidate| (edit_distance(&wanted, &norm(candidate)), candidate))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Damerau-Levenshtein distance (optimal string alignment): insertions, deletions,
/// substitutions and swaps of two neighbours each cost 1.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| (0..=b.len()).map(|j| if i == 0 { j } else { i }).collect())
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// What applying one setting asks of the caller beyond changing the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The config was updated.
    Set,
    /// Ignored; the caller records a [`crate::config::Notice`] with this reason.
    Ignored(&'static str),
    /// The config was updated, but the value was read in a way worth telling (a number
    /// followed by a comment, a boolean spelt unusually); the caller records a notice.
    Noted(String),
    /// Read this config file (`path`, `path:section` or `:section`) here.
    Include(Format, String),
    /// Define `%(name)` as `value` for later config files.
    Placeholder(String, String),
    /// A command-line action, with its value (the pid file) if it takes one.
    Action(Action, Option<String>),
}

/// Apply one setting of `spec` to `config`. `value` is `None` when the option was given
/// without a value (bare `--master`, `master =`, `<master/>`). The error is a message
/// without location (`'four' is not a number`); the caller says where.
pub fn apply(
    spec: &OptionSpec,
    value: Option<&str>,
    config: &mut VassalConfig,
) -> Result<Applied, String> {
    let required = || value.ok_or_else(|| "needs a value".to_owned());
    match spec.kind {
        Kind::Str(set) => set(config, required()?.to_owned()),
        Kind::Path(set) => set(config, PathBuf::from(required()?)),
        Kind::Parsed(set) => {
            if let Some(note) = set(config, required()?)? {
                return Ok(Applied::Noted(note));
            }
        }
        Kind::Int { min, max, set } => {
            let (n, note) = read_int(required()?, min, max)?;
            set(config, n);
            if let Some(note) = note {
                return Ok(Applied::Noted(note));
            }
        }
        Kind::Bool(set) => {
            let (on, note) = value.map_or((true, None), read_bool);
            set(config, on);
            if let Some(note) = note {
                return Ok(Applied::Noted(note));
            }
        }
        Kind::Socket(protocol) => config.sockets.push(SocketSpec {
            protocol,
            addr: parse_listen(required()?)?,
        }),
        Kind::KeyValue(set) => match required()?.split_once('=') {
            Some((k, v)) if !k.is_empty() => set(config, k.to_owned(), v.to_owned()),
            _ => return Err(format!("expected KEY=VALUE, found '{}'", required()?)),
        },
        Kind::Mapping(set) => match required()?.split_once('=') {
            Some((p, d)) if !p.is_empty() && !d.is_empty() => {
                set(config, p.to_owned(), PathBuf::from(d));
            }
            _ => return Err(format!("expected PREFIX=DIR, found '{}'", required()?)),
        },
        Kind::Mode(set) => set(config, value.map_or(Ok(0o666), parse_mode)?),
        Kind::Octal(set) => set(config, parse_mode(required()?)?),
        Kind::Protocol => {
            config.protocol = Some(match required()?.trim() {
                "uwsgi" => Protocol::Uwsgi,
                "http" | "http11" => Protocol::Http,
                other => {
                    return Err(format!(
                        "rsgi speaks uwsgi and http, not '{other}' (use socket = ADDR for uwsgi, \
                         http-socket = ADDR for HTTP)"
                    ))
                }
            });
        }
        Kind::LogDate => match value.map(|v| (v, parse_bool(v))) {
            None => (config.logdate, config.logdate_format) = (true, None),
            Some((_, Ok(on))) => (config.logdate, config.logdate_format) = (on, None),
            Some((format, Err(_))) => {
                (config.logdate, config.logdate_format) = (true, Some(format.to_owned()));
            }
        },
        Kind::Config(format) => return Ok(Applied::Include(format, required()?.to_owned())),
        Kind::Logic(_) => {
            return Err(
                "config logic (if-*, for, else, endif) works only in config files".to_owned(),
            )
        }
        Kind::Placeholder => {
            return match required()?.split_once('=') {
                Some((n, v)) if !n.trim().is_empty() => Ok(Applied::Placeholder(
                    n.trim().to_owned(),
                    v.trim().to_owned(),
                )),
                _ => Err(format!("expected NAME=VALUE, found '{}'", required()?)),
            }
        }
        Kind::Action(
            action @ (Action::Help | Action::Version | Action::CheckApp | Action::CheckConfig),
        ) => return Ok(Applied::Action(action, None)),
        Kind::Action(action) => return Ok(Applied::Action(action, Some(required()?.to_owned()))),
        Kind::Ignored { why, .. } => return Ok(Applied::Ignored(why)),
        Kind::Refused { instead, .. } => return Err(format!("not supported by rsgi: {instead}")),
        Kind::FalseOnly { why } => {
            return match value.map(read_bool) {
                Some((false, _)) => Ok(Applied::Ignored(why)),
                None | Some((true, _)) => Err(format!("not supported: {why}")),
            }
        }
    }
    Ok(Applied::Set)
}

/// Read a boolean option's value as uWSGI's `uwsgi_opt_true` does: `false`, `off`, `no`
/// (any case) and `0` are false, **anything else is true** (`vhost = anything` turns vhost
/// on). The note, when there is one, says how an unusual value was read:
///
/// - a value that is not one of the usual words (`maybe`) is true, with a note;
/// - a value whose first word is false, followed by more (`false ; no master`), is
///   **false** with a note. uWSGI would read the whole text as true, which is surely not
///   what the line means (rsgi differs here on purpose, see `docs/migration.md`).
///
/// (An empty value never gets here: it means "given without a value", i.e. true.)
pub fn read_bool(value: &str) -> (bool, Option<String>) {
    let is_false =
        |w: &str| matches!(w.to_ascii_lowercase().as_str(), "false" | "off" | "no") || w == "0";
    let is_true = |w: &str| matches!(w.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1");
    if is_false(value) {
        return (false, None);
    }
    if is_true(value) {
        return (true, None);
    }
    match value.split_whitespace().next() {
        Some(first) if is_false(first) => (
            false,
            Some(format!(
                "'{value}' read as false from its first word (uWSGI would read the whole \
                 value as true)"
            )),
        ),
        Some(first) if is_true(first) => (true, None),
        _ => (
            true,
            Some(format!(
                "'{value}' read as true (as uWSGI does: any value but false/off/no/0 is true)"
            )),
        ),
    }
}

/// Whether `value` is one of the usual boolean words: `true/false`, `yes/no`, `on/off`,
/// `1/0`, any case. The command line uses it to tell `--master false` (a misplaced value)
/// from a stray argument.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "'{value}' is not a boolean (use true/false, yes/no, on/off or 1/0)"
        )),
    }
}

/// Read an integer option's value as uWSGI's `atoi` does where that is safe: the leading
/// decimal number, so `1000  ; restart now and then` is 1000 (with a note saying the rest
/// was ignored). Unlike `atoi`, a value that does not start with a number is an error, not 0,
/// and so is a number glued to more text (`32k`: uWSGI reads 32, which is surely not what
/// was meant).
fn read_int(value: &str, min: u64, max: u64) -> Result<(u64, Option<String>), String> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = value.split_at(digits);
    if digits == 0 {
        return Err(format!("'{value}' is not a whole number"));
    }
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(format!(
            "'{value}' is not a whole number (uWSGI would read {number} and drop '{rest}')"
        ));
    }
    let n = parse_int(number, min, max)?;
    let note = (!rest.is_empty()).then(|| {
        format!(
            "read as {n}; the rest ('{}') is ignored, as uWSGI does",
            rest.trim()
        )
    });
    Ok((n, note))
}

fn parse_int(value: &str, min: u64, max: u64) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{value}' is not a whole number"));
    }
    match value.parse::<u64>() {
        Ok(n) if n < min => Err(format!("{n} is too small (at least {min})")),
        Ok(n) if n > max => Err(format!("{n} is too large (at most {max})")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{value} is too large (at most {max})")),
    }
}

fn parse_mode(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    if (1..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        u32::from_str_radix(digits, 8).map_err(|e| e.to_string())
    } else {
        Err(format!("'{value}' is not an octal mode like 666 or 0660"))
    }
}

/// Parse a listening address as uWSGI writes them:
///
/// | written                           | result                                     |
/// |-----------------------------------|--------------------------------------------|
/// | `127.0.0.1:8000`, `localhost:80`  | TCP, that host                             |
/// | `:8000`                           | TCP, empty host (every IPv4 address)       |
/// | `[::1]:8000`, `[::]:80`           | TCP, the address without brackets          |
/// | `/run/app.sock`, `app.sock`       | unix socket, path kept as written          |
/// | `unix:/run/app.sock`, `unix:///run/app.sock` | unix socket `/run/app.sock`     |
/// | `@name`                           | unix socket `@name` (Linux abstract namespace; the vassal decides) |
///
/// A bare number (`8000`) is refused: uWSGI would make a unix socket file named `8000`,
/// which is never what was meant. A port must be 0..=65535; IPv6 addresses need brackets.
pub fn parse_listen(value: &str) -> Result<ListenAddr, String> {
    if value.is_empty() {
        return Err("empty address".to_owned());
    }
    if let Some(rest) = value.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(format!("'{value}': no socket path after 'unix:'"));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("'{value}': '{p}' is not a port number (0-65535)"))
    };
    if let Some(rest) = value.strip_prefix('[') {
        let Some((host, tail)) = rest.split_once(']') else {
            return Err(format!("'{value}': '[' without ']'"));
        };
        let Some(p) = tail.strip_prefix(':') else {
            return Err(format!("'{value}': expected ':port' after ']'"));
        };
        return Ok(ListenAddr::Tcp {
            host: host.to_owned(),
            port: port(p)?,
        });
    }
    if value.starts_with('/') || value.starts_with('.') || value.starts_with('@') {
        return Ok(ListenAddr::Unix(PathBuf::from(value)));
    }
    if value.contains("://") {
        return Err(format!(
            "'{value}': write host:port or a socket path, not a URL"
        ));
    }
    match value.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(format!(
            "'{value}': write IPv6 addresses in brackets, like [::1]:8000"
        )),
        Some((host, p)) => Ok(ListenAddr::Tcp {
            host: host.to_owned(),
            port: port(p)?,
        }),
        None if value.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "'{value}' would be a unix socket file named {value}; for TCP port {value} write ':{value}'"
        )),
        None => Ok(ListenAddr::Unix(PathBuf::from(value))),
    }
}

/// Where help texts start in `--help`, and where lines wrap.
const HELP_COLUMN: usize = 30;
const HELP_WIDTH: usize = 100;

/// The `rsgi --help` text, generated from [`OPTIONS`].
pub fn help_text() -> String {
    let mut out = String::from(
        "Usage: rsgi [OPTIONS] [FILE.ini[:section] | FILE.xml[:id] | APP.py]...\n\
         \n\
         Serve one Python WSGI app. The options are uWSGI's: give each one as --name VALUE,\n\
         --name=VALUE, or as 'name = value' in the [uwsgi] (or [rsgi]) section of an ini file.\n\
         Config files and options apply in command-line order: a later value replaces an earlier\n\
         one, and values of options marked (+) add up. Flags take =false: --master=false.\n",
    );
    for group in Group::ALL {
        let _ = write!(out, "\n{}:\n", group.title());
        for spec in OPTIONS.iter().filter(|o| o.group == group) {
            let short = spec.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            let meta = match (spec.meta, spec.kind.arity()) {
                (Some(m), Arity::Optional) => format!("[={m}]"),
                (Some(m), _) => format!(" {m}"),
                (None, _) => spec.kind.meta().to_owned(),
            };
            let left = format!("  {short:4}--{}{meta}", spec.name);
            // Words of the help text, then the notes, each kept on one line.
            let text = spec
                .noop_reason()
                .or_else(|| spec.refusal())
                .unwrap_or(spec.help);
            let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
            if spec.repeatable {
                words.push("(+)".to_owned());
            }
            if let Some(default) = spec.default {
                words.push(format!("[default: {default}]"));
            }
            if !spec.aliases.is_empty() {
                let names: Vec<String> = spec.aliases.iter().map(|a| format!("--{a}")).collect();
                let also = format!("[also: {}]", names.join(", "));
                if also.chars().count() <= HELP_WIDTH - HELP_COLUMN {
                    words.push(also);
                } else {
                    // Too long for one line: wrapped between names.
                    words.push("[also:".to_owned());
                    let last = names.len() - 1;
                    for (i, n) in names.into_iter().enumerate() {
                        words.push(if i == last {
                            format!("{n}]")
                        } else {
                            format!("{n},")
                        });
                    }
                }
            }
            out.push_str(&left);
            let mut column = left.chars().count();
            if column + 2 > HELP_COLUMN {
                out.push('\n');
                column = 0;
            }
            for (i, word) in words.iter().enumerate() {
                let len = word.chars().count();
                if i > 0 && column + 1 + len > HELP_WIDTH {
                    out.push('\n');
                    column = 0;
                }
                if column < HELP_COLUMN {
                    out.push_str(&" ".repeat(HELP_COLUMN - column));
                    column = HELP_COLUMN;
                } else {
                    out.push(' ');
                    column += 1;
                }
                out.push_str(word);
                column += len;
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    fn run(name: &str, value: Option<&str>) -> Result<VassalConfig, String> {
        let mut c = VassalConfig::default();
        apply(find(name).unwrap(), value, &mut c).map(|_| c)
    }

    #[test]
    fn names_aliases_and_shorts_are_unique() {
        let mut names = HashSet::new();
        let mut shorts = HashSet::new();
        for o in OPTIONS {
            for n in std::iter::once(&o.name).chain(o.aliases) {
                assert!(names.insert(*n), "duplicate name {n}");
            }
            if let Some(c) = o.short {
                assert!(shorts.insert(c), "duplicate short -{c}");
            }
            assert!(
                o.noop_reason().is_some() || o.refusal().is_some() || !o.help.is_empty(),
                "{} has no help",
                o.name
            );
        }
    }

    #[test]
    fn required_names_and_aliases() {
        let cases: &[(&str, &[&str], Option<char>)] = &[
            ("socket", &["uwsgi-socket"], Some('s')),
            ("http-socket", &["http11-socket"], None),
            ("http", &[], None),
            ("chmod-socket", &[], Some('C')),
            ("module", &["wsgi"], Some('w')),
            ("wsgi-file", &["file"], None),
            ("pythonpath", &["python-path", "pp"], None),
            ("home", &["virtualenv", "venv", "pyhome"], Some('H')),
            ("logdate", &["log-date"], None),
            ("processes", &["workers", "process"], Some('p')),
            ("reload-mercy", &["worker-reload-mercy"], None),
            ("stats", &["stats-server"], None),
            ("xml", &[], Some('x')),
            ("master", &[], Some('M')),
            ("buffer-size", &[], Some('b')),
            ("harakiri", &[], Some('t')),
            ("daemonize", &[], Some('d')),
            ("enable-threads", &[], Some('T')),
            ("disable-logging", &[], Some('L')),
            ("plugins", &["plugin"], None),
        ];
        for (name, aliases, short) in cases {
            let o = find(name).unwrap();
            assert_eq!(o.aliases, *aliases, "{name}");
            assert_eq!(o.short, *short, "{name}");
            for a in *aliases {
                assert_eq!(find(a).unwrap().name, *name);
            }
            if let Some(c) = short {
                assert_eq!(find_short(*c).unwrap().name, *name);
            }
        }
        for name in [
            "chown-socket",
            "vacuum",
            "listen",
            "callable",
            "chdir",
            "env",
            "static-map",
            "logto",
            "pidfile",
            "safe-pidfile",
            "threads",
            "lazy-apps",
            "max-requests",
            "max-requests-delta",
            "reload-on-rss",
            "max-worker-lifetime",
            "stats-http",
            "uid",
            "gid",
            "ini",
            "limit-post",
            "single-interpreter",
            "die-on-term",
            "no-orphans",
            "thunder-lock",
            "auto-procname",
            "procname-prefix",
            "need-app",
            "strict",
            "memory-report",
            "post-buffering",
            "vhost",
        ] {
            assert!(find(name).is_some(), "{name} missing");
        }
        assert!(find("Master").is_none(), "names are case-sensitive");
    }

    /// Every documented default, applied to a default config, changes nothing.
    #[test]
    fn defaults_match_vassal_config_default() {
        for o in OPTIONS {
            if let Some(d) = o.default {
                let c = run(o.name, Some(d)).unwrap_or_else(|e| panic!("{}: {e}", o.name));
                assert_eq!(c, VassalConfig::default(), "default of {}", o.name);
            }
        }
    }

    #[test]
    fn booleans() {
        for v in ["true", "TRUE", "True", "yes", "Yes", "on", "ON", "1"] {
            assert!(run("master", Some(v)).unwrap().master, "{v}");
        }
        for v in ["false", "FALSE", "no", "NO", "off", "Off", "0"] {
            let mut c = VassalConfig {
                master: true,
                ..Default::default()
            };
            apply(find("master").unwrap(), Some(v), &mut c).unwrap();
            assert!(!c.master, "{v}");
        }
        assert!(run("master", None).unwrap().master);
    }

    /// uWSGI's `uwsgi_opt_true`: false/off/no (any case) and 0 are false, anything else is
    /// true. Each case: (value, result, note).
    #[test]
    fn booleans_read_as_uwsgi_does() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("true ; comment", true, None),
            ("yes please", true, None),
            ("2", true, Some("'2' read as true (as uWSGI does: any value but false/off/no/0 is true)")),
            ("maybe", true, Some("'maybe' read as true (as uWSGI does: any value but false/off/no/0 is true)")),
            ("enabled", true, Some("'enabled' read as true (as uWSGI does: any value but false/off/no/0 is true)")),
            // Deliberately not uWSGI: it would read the whole text as true.
            ("false ; no master", false, Some("'false ; no master' read as false from its first word (uWSGI would read the whole value as true)")),
            ("0 # off", false, Some("'0 # off' read as false from its first word (uWSGI would read the whole value as true)")),
        ];
        for (value, want, note) in cases {
            let mut c = VassalConfig::default();
            let applied = apply(find("master").unwrap(), Some(value), &mut c).unwrap();
            assert_eq!(c.master, *want, "{value}");
            let want_applied = match note {
                Some(n) => Applied::Noted((*n).to_owned()),
                None => Applied::Set,
            };
            assert_eq!(applied, want_applied, "{value}");
        }
        // vhost = anything is vhost turned on, which rsgi cannot do.
        assert_eq!(
            run("vhost", Some("anything")).unwrap_err(),
            "not supported: rsgi serves one app per vassal; vhost = true (apps chosen per request) is not supported"
        );
    }

    /// uWSGI's `atoi`: the leading number counts, so an inline comment after a number is
    /// ignored (with a note). (value, max_requests, note)
    #[test]
    fn integers_read_their_leading_number() {
        let cases: &[(&str, Option<u64>, Option<&str>)] = &[
            ("1000", Some(1000), None),
            ("1000  ; restart workers now and then", Some(1000), Some("read as 1000; the rest ('; restart workers now and then') is ignored, as uWSGI does")),
            ("0 # off", None, Some("read as 0; the rest ('# off') is ignored, as uWSGI does")),
        ];
        for (value, want, note) in cases {
            let mut c = VassalConfig::default();
            let applied = apply(find("max-requests").unwrap(), Some(value), &mut c).unwrap();
            assert_eq!(c.max_requests, *want, "{value}");
            let want_applied = match note {
                Some(n) => Applied::Noted((*n).to_owned()),
                None => Applied::Set,
            };
            assert_eq!(applied, want_applied, "{value}");
        }
    }

    #[test]
    fn values_table() {
        type Check = fn(&VassalConfig) -> bool;
        let cases: &[(&str, Option<&str>, Check)] = &[
            ("processes", Some("4"), |c| c.processes == 4),
            ("process", Some("4"), |c| c.processes == 4),
            ("workers", Some("1"), |c| c.processes == 1),
            ("threads", Some("2"), |c| c.threads == 2),
            ("buffer-size", Some("65535"), |c| c.buffer_size == 65535),
            ("listen", Some("80"), |c| c.listen == 80),
            ("limit-post", Some("1048576"), |c| c.limit_post == 1_048_576),
            ("harakiri", Some("30"), |c| c.harakiri == Some(30)),
            ("harakiri", Some("0"), |c| c.harakiri.is_none()),
            ("max-requests", Some("5000"), |c| {
                c.max_requests == Some(5000)
            }),
            ("max-requests", Some("0"), |c| c.max_requests.is_none()),
            ("reload-on-rss", Some("512"), |c| {
                c.reload_on_rss == Some(512)
            }),
            ("max-worker-lifetime", Some("3600"), |c| {
                c.max_worker_lifetime == Some(3600)
            }),
            ("max-requests-delta", Some("10"), |c| {
                c.max_requests_delta == 10
            }),
            ("worker-reload-mercy", Some("5"), |c| c.reload_mercy == 5),
            ("on-demand", None, |c| c.on_demand == Some(true)),
            ("on-demand", Some("false"), |c| c.on_demand == Some(false)),
            ("idle", Some("30"), |c| c.idle == Some(30)),
            ("idle", Some("0"), |c| c.idle.is_none()),
            ("die-on-idle", None, |c| c.die_on_idle),
            ("chmod-socket", None, |c| c.chmod_socket == Some(0o666)),
            ("chmod-socket", Some("660"), |c| {
                c.chmod_socket == Some(0o660)
            }),
            ("chmod-socket", Some("0600"), |c| {
                c.chmod_socket == Some(0o600)
            }),
            ("chown-socket", Some("www-data:www-data"), |c| {
                c.chown_socket.as_deref() == Some("www-data:www-data")
            }),
            ("env", Some("DJANGO_SETTINGS_MODULE=mysite.settings"), |c| {
                c.env == [("DJANGO_SETTINGS_MODULE".into(), "mysite.settings".into())]
            }),
            ("env", Some("A=b=c"), |c| {
                c.env == [("A".into(), "b=c".into())]
            }),
            ("env", Some("EMPTY="), |c| {
                c.env == [("EMPTY".into(), String::new())]
            }),
            ("static-map", Some("/static=/data/deploy/static"), |c| {
                c.static_map == [("/static".into(), PathBuf::from("/data/deploy/static"))]
            }),
            ("static-map", Some("/static=/data/...c"), |c| {
                c.static_map == [("/static".into(), PathBuf::from("/data/...c"))]
            }),
            ("module", Some("mysite.wsgi:application"), |c| {
                c.module.as_deref() == Some("mysite.wsgi:application")
            }),
            ("wsgi", Some("app"), |c| c.module.as_deref() == Some("app")),
            ("file", Some("run.py"), |c| {
                c.wsgi_file == Some(PathBuf::from("run.py"))
            }),
            ("callable", Some("app"), |c| c.callable == "app"),
            ("venv", Some("/srv/venv"), |c| {
                c.home == Some(PathBuf::from("/srv/venv"))
            }),
            ("pp", Some("/srv/lib"), |c| {
                c.pythonpath == [PathBuf::from("/srv/lib")]
            }),
            ("logdate", None, |c| c.logdate && c.logdate_format.is_none()),
            ("logdate", Some("true"), |c| {
                c.logdate && c.logdate_format.is_none()
            }),
            ("log-date", Some("off"), |c| !c.logdate),
            ("logdate", Some("%Y-%m-%d"), |c| {
                c.logdate && c.logdate_format.as_deref() == Some("%Y-%m-%d")
            }),
            ("stats-server", Some(":9191"), |c| {
                c.stats.as_deref() == Some(":9191")
            }),
            ("stats-http", None, |c| c.stats_http),
            ("uid", Some("www-data"), |c| {
                c.uid.as_deref() == Some("www-data")
            }),
            ("gid", Some("33"), |c| c.gid.as_deref() == Some("33")),
            ("vacuum", Some("yes"), |c| c.vacuum),
            ("lazy-apps", None, |c| c.lazy_apps),
            ("disable-logging", None, |c| c.disable_logging),
            ("daemonize", Some("/var/log/uwsgi.log"), |c| {
                c.daemonize == Some(PathBuf::from("/var/log/uwsgi.log"))
            }),
            ("pidfile", Some("/run/a.pid"), |c| {
                c.pidfile == Some(PathBuf::from("/run/a.pid"))
            }),
            ("safe-pidfile", Some("/run/b.pid"), |c| {
                c.safe_pidfile == Some(PathBuf::from("/run/b.pid"))
            }),
            ("logto", Some("/var/log/a.log"), |c| {
                c.logto == Some(PathBuf::from("/var/log/a.log"))
            }),
            ("logto2", Some("/var/log/b.log"), |c| {
                c.logto2 == Some(PathBuf::from("/var/log/b.log"))
            }),
            ("log-sendfile", Some("True"), |c| c.log_sendfile),
            ("touch-logrotate", Some("/run/rotate"), |c| {
                c.touch_logrotate == [PathBuf::from("/run/rotate")]
            }),
            ("log-encoder", Some("format [${msg}]"), |c| {
                c.log_encoder.len() == 1 && c.log_req_encoder.is_empty()
            }),
            ("log-req-encoder", Some("nl"), |c| {
                c.log_req_encoder.len() == 1 && c.log_encoder.is_empty()
            }),
            ("chdir", Some("/data/项目目录/"), |c| {
                c.chdir == Some(PathBuf::from("/data/项目目录/"))
            }),
        ];
        for (name, value, check) in cases {
            let c = run(name, *value).unwrap_or_else(|e| panic!("{name} {value:?}: {e}"));
            assert!(check(&c), "{name} {value:?}: {c:?}");
        }
    }

    #[test]
    fn value_errors_table() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("processes", Some("four"), "'four' is not a whole number"),
            ("processes", Some("-1"), "'-1' is not a whole number"),
            ("processes", Some("0"), "0 is too small (at least 1)"),
            ("processes", None, "needs a value"),
            ("buffer-size", Some("65536"), "65536 is too large (at most 65535)"),
            ("buffer-size", Some("32k"), "'32k' is not a whole number (uWSGI would read 32 and drop 'k')"),
            ("max-requests", Some("; 1000"), "'; 1000' is not a whole number"),
            ("limit-post", Some("99999999999999999999"), "99999999999999999999 is too large (at most 18446744073709551615)"),
            ("env", Some("NOEQUALS"), "expected KEY=VALUE, found 'NOEQUALS'"),
            ("env", Some("=x"), "expected KEY=VALUE, found '=x'"),
            ("static-map", Some("/static"), "expected PREFIX=DIR, found '/static'"),
            ("static-map", Some("/static="), "expected PREFIX=DIR, found '/static='"),
            ("chmod-socket", Some("rw"), "'rw' is not an octal mode like 666 or 0660"),
            ("chmod-socket", Some("888"), "'888' is not an octal mode like 666 or 0660"),
            ("module", None, "needs a value"),
            ("socket", Some("8000"), "'8000' would be a unix socket file named 8000; for TCP port 8000 write ':8000'"),
            ("vhost", Some("true"), "not supported: rsgi serves one app per vassal; vhost = true (apps chosen per request) is not supported"),
            ("set-placeholder", Some("x"), "expected NAME=VALUE, found 'x'"),
            ("log-encoder", Some("gzip"), "the gzip encoder is not supported by rsgi: it turns each line into a binary frame for uWSGI's log master to ship; rsgi writes text lines (compress rotated files instead, or in your log shipper): use prefix, suffix, nl, format or json"),
            ("log-req-encoder", Some("msgpack"), "the msgpack encoder (a uWSGI plugin) is not supported by rsgi: use json (or prefix, suffix, nl, format or json)"),
        ];
        for (name, value, want) in cases {
            assert_eq!(run(name, *value).unwrap_err(), *want, "{name} {value:?}");
        }
    }

    #[test]
    fn special_kinds() {
        let mut c = VassalConfig::default();
        let mut a = |n: &str, v: Option<&str>| apply(find(n).unwrap(), v, &mut c);
        assert_eq!(
            a("plugins", Some("python")),
            Ok(Applied::Ignored(
                "rsgi has Python built in; there are no plugins"
            ))
        );
        assert!(matches!(
            a("enable-threads", Some("true")),
            Ok(Applied::Ignored(_))
        ));
        assert!(matches!(a("vhost", Some("false")), Ok(Applied::Ignored(_))));
        assert_eq!(
            a("ini", Some("a.ini:x")),
            Ok(Applied::Include(Format::Ini, "a.ini:x".into()))
        );
        assert_eq!(
            a("xml", Some("a.xml")),
            Ok(Applied::Include(Format::Xml, "a.xml".into()))
        );
        assert_eq!(
            a("set-ph", Some("a = b")),
            Ok(Applied::Placeholder("a".into(), "b".into()))
        );
        assert_eq!(a("help", None), Ok(Applied::Action(Action::Help, None)));
        assert_eq!(
            a("stop", Some("/p.pid")),
            Ok(Applied::Action(Action::Stop, Some("/p.pid".into())))
        );
        assert_eq!(a("reload", None), Err("needs a value".into()));
        assert_eq!(c, VassalConfig::default());
    }

    #[test]
    fn sockets_accumulate_with_protocols() {
        let mut c = VassalConfig::default();
        for (n, v) in [
            ("socket", ":1"),
            ("http", ":2"),
            ("http-socket", ":3"),
            ("uwsgi-socket", "/a.sock"),
        ] {
            apply(find(n).unwrap(), Some(v), &mut c).unwrap();
        }
        let protos: Vec<_> = c.sockets.iter().map(|s| s.protocol).collect();
        assert_eq!(
            protos,
            [
                Protocol::Uwsgi,
                Protocol::Http,
                Protocol::Http,
                Protocol::Uwsgi
            ]
        );
    }

    #[test]
    fn listen_addresses() {
        let tcp = |h: &str, p| {
            Ok(ListenAddr::Tcp {
                host: h.into(),
                port: p,
            })
        };
        let unix = |p: &str| Ok(ListenAddr::Unix(PathBuf::from(p)));
        let cases: Vec<(&str, Result<ListenAddr, String>)> = vec![
            ("127.0.0.1:8077", tcp("127.0.0.1", 8077)),
            ("0.0.0.0:9005", tcp("0.0.0.0", 9005)),
            (":3030", tcp("", 3030)),
            ("localhost:80", tcp("localhost", 80)),
            ("127.0.0.1:0", tcp("127.0.0.1", 0)),
            ("[::1]:8000", tcp("::1", 8000)),
            ("[::]:80", tcp("::", 80)),
            ("/path/x.sock", unix("/path/x.sock")),
            ("yikaoyan.sock", unix("yikaoyan.sock")),
            ("./run/a.sock", unix("./run/a.sock")),
            ("unix:/p/a.sock", unix("/p/a.sock")),
            ("unix:///p/a.sock", unix("/p/a.sock")),
            ("unix:rel.sock", unix("rel.sock")),
            ("@abstract", unix("@abstract")),
            ("/tmp/with:colon.sock", unix("/tmp/with:colon.sock")),
            ("", Err("empty address".into())),
            ("unix:", Err("'unix:': no socket path after 'unix:'".into())),
            (
                ":99999",
                Err("':99999': '99999' is not a port number (0-65535)".into()),
            ),
            (
                "host:",
                Err("'host:': '' is not a port number (0-65535)".into()),
            ),
            (
                "host:http",
                Err("'host:http': 'http' is not a port number (0-65535)".into()),
            ),
            (
                "::1:8000",
                Err("'::1:8000': write IPv6 addresses in brackets, like [::1]:8000".into()),
            ),
            ("[::1]", Err("'[::1]': expected ':port' after ']'".into())),
            ("[::1:80", Err("'[::1:80': '[' without ']'".into())),
            (
                "http://x:80",
                Err("'http://x:80': write host:port or a socket path, not a URL".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_listen(input), want, "input {input:?}");
        }
    }

    #[test]
    fn distances_and_suggestions() {
        let d: &[(&str, &str, usize)] = &[
            ("", "", 0),
            ("abc", "", 3),
            ("processes", "processes", 0),
            ("proccesses", "processes", 1),
            ("porcesses", "processes", 1),
            ("kitten", "sitting", 3),
            ("ca", "abc", 3),
        ];
        for (a, b, n) in d {
            assert_eq!(edit_distance(a, b), *n, "{a} {b}");
        }
        let s: &[(&str, Option<&str>)] = &[
            ("proccesses", Some("processes")),
            ("proceses", Some("processes")),
            ("wokers", Some("workers")),
            ("Socket", Some("socket")),
            ("wsgi_file", Some("wsgi-file")),
            ("virtualen", Some("virtualenv")),
            ("chmod-sock", Some("chmod-socket")),
            ("harakri", Some("harakiri")),
            ("tuntap-router", None),
            ("xyzzy", None),
            ("a", None),
        ];
        for (typo, want) in s {
            assert_eq!(suggest(typo), *want, "{typo}");
        }
    }

    /// Issue 21's option families: every real uWSGI option there is supported, a no-op
    /// with a reason, or refused with what to use instead; never the bare "unknown
    /// option". This test fails when a classified one loses its place.
    #[test]
    fn uwsgi_option_families_are_classified() {
        // (option, expected class)
        let classified: &[(&str, &str)] = &[
            ("ignore-sigpipe", "no-op"),
            ("ignore-write-errors", "no-op"),
            ("disable-write-exception", "no-op"),
            ("offload-threads", "no-op"),
            ("http-keepalive", "no-op"),
            ("http11-socket", "supported"),
            ("include", "supported"),
            ("if-env", "supported"),
            ("if-not-env", "supported"),
            ("if-exists", "supported"),
            ("endif", "supported"),
            ("gevent", "refused"),
            ("async", "refused"),
            ("ugreen", "refused"),
            ("cache2", "refused"),
            ("cache", "refused"),
            ("spooler", "refused"),
            ("spooler-processes", "refused"),
            ("mule", "refused"),
            ("mules", "refused"),
            ("alarm", "refused"),
            ("alarm-log", "refused"),
            ("emperor", "refused"),
            ("touch-reload", "supported"),
            ("touch-chain-reload", "supported"),
            ("touch-workers-reload", "supported"),
            ("touch-logreopen", "supported"),
            ("attach-daemon", "supported"),
            ("attach-control-daemon", "supported"),
            ("smart-attach-daemon", "supported"),
            ("smart-attach-daemon2", "supported"),
            ("attach-daemon2", "supported"),
            ("cheaper", "supported"),
            ("cheaper-initial", "supported"),
            ("cheaper-step", "supported"),
            ("cheaper-overload", "supported"),
            ("cheaper-algo", "supported"),
            ("cheaper-busyness-max", "no-op"),
            ("cheaper-busyness-min", "no-op"),
            ("cheaper-rss-limit-soft", "refused"),
            ("cron", "supported"),
            ("unique-cron", "supported"),
            ("cron2", "supported"),
            ("hook-asap", "supported"),
            ("hook-as-root", "supported"),
            ("hook-as-user", "supported"),
            ("hook-pre-app", "supported"),
            ("hook-post-app", "supported"),
            ("hook-master-start", "supported"),
            ("hook-accepting", "supported"),
            ("hook-accepting1", "supported"),
            ("hook-as-user-atexit", "supported"),
            ("exec-as-root", "supported"),
            ("exec-as-user", "supported"),
            ("exec-pre-app", "supported"),
            ("exec-post-app", "supported"),
            ("hook-pre-jail", "refused"),
            ("exec-pre-jail", "refused"),
            ("hook-accepting1-once", "refused"),
            ("py-autoreload", "supported"),
            ("log-4xx", "supported"),
            ("log-5xx", "supported"),
            ("logger", "supported"),
            ("req-logger", "supported"),
            ("log-format", "supported"),
            ("logformat", "supported"),
            ("log-master", "no-op"),
            ("log-reopen", "no-op"),
            ("log-micros", "no-op"),
            ("log-route", "refused"),
            ("static-expires", "refused"),
            ("static-expires-uri", "refused"),
            ("log-maxsize", "supported"),
            ("logto2", "supported"),
            ("log-encoder", "supported"),
            ("log-req-encoder", "supported"),
            ("log-sendfile", "supported"),
            ("touch-logrotate", "supported"),
            ("close-on-exec", "no-op"),
            ("close-on-exec2", "no-op"),
            ("refork", "no-op"),
            ("re-fork", "no-op"),
            ("refork-as-root", "no-op"),
            ("refork-post-jail", "no-op"),
            ("mount", "supported"),
            ("http-timeout", "supported"),
            ("add-header", "supported"),
            ("enable-proxy-protocol", "supported"),
            ("http-enable-proxy-protocol", "supported"),
            ("static-gzip-all", "supported"),
            ("check-static", "supported"),
            ("static-map2", "supported"),
            ("static-index", "supported"),
            ("wsgi-disable-file-wrapper", "supported"),
            ("manage-script-name", "supported"),
        ];
        for (name, want) in classified {
            let o = find(name).unwrap_or_else(|| panic!("{name} is not in the table"));
            let class = match (o.noop_reason(), o.refusal()) {
                (Some(_), _) => "no-op",
                (_, Some(_)) => "refused",
                _ => "supported",
            };
            assert_eq!(class, *want, "{name}");
            if class == "refused" {
                let err = run(name, Some("1")).unwrap_err();
                let instead = o.refusal().unwrap_or_default();
                assert_eq!(err, format!("not supported by rsgi: {instead}"), "{name}");
                assert!(
                    instead.contains(": "),
                    "{name}: says no alternative: {instead}"
                );
            }
        }
    }

    /// `cheaper-algo`: uWSGI's spare runs; busyness is read as spare with a notice; the
    /// others are refused naming spare.
    #[test]
    fn cheaper_algorithms() {
        let spec = find("cheaper-algo").unwrap();
        let mut c = VassalConfig::default();
        assert_eq!(apply(spec, Some("spare"), &mut c), Ok(Applied::Set));
        assert!(matches!(
            apply(spec, Some("busyness"), &mut c),
            Ok(Applied::Noted(n)) if n.contains("spare algorithm is used")
        ));
        for other in ["backlog", "backlog2", "manual"] {
            let err = apply(spec, Some(other), &mut c).unwrap_err();
            assert!(err.contains("use cheaper-algo = spare"), "{other}: {err}");
        }
    }

    #[test]
    fn help_lists_every_option() {
        let help = help_text();
        for o in OPTIONS {
            assert!(help.contains(&format!("--{}", o.name)), "{}", o.name);
            for a in o.aliases {
                assert!(help.contains(&format!("--{a}")), "{a}");
            }
        }
        for g in Group::ALL {
            assert!(help.contains(g.title()));
        }
        assert!(help.contains("  -p, --processes N "));
        assert!(help.contains("  -w, --module MODULE "));
        assert!(help.contains("  -C, --chmod-socket[=MODE] "));
        assert!(
            help.lines().all(|l| l.chars().count() <= HELP_WIDTH),
            "{help}"
        );
        assert!(help.contains("[default: 1]"));
        assert!(help.contains("[also: --workers, --process]"));
        assert!(help.contains("rsgi has Python built in"));
    }
}

#[cfg(test)]
mod uwsgi_name_tests {
    use super::*;
    use crate::uwsgi_names::is_uwsgi_option;

    /// Options accepted as no-ops or refused exist only for uWSGI's sake: each of their
    /// names is a real uWSGI option (a misspelt entry here would never match a config).
    #[test]
    fn noop_and_refused_names_are_uwsgi_options() {
        for o in OPTIONS {
            if !matches!(o.group, Group::Ignored | Group::Refused) {
                continue;
            }
            for name in std::iter::once(&o.name).chain(o.aliases.iter()) {
                assert!(is_uwsgi_option(name), "{name} is not a uWSGI option");
            }
        }
    }
}
