//! rsgid's own settings: a TOML file (`/etc/rsgi/rsgid.toml`) plus the same settings
//! as command-line flags, which win over the file.
//!
//! ```toml
//! vassals = "/etc/rsgi/vassals"       # relative paths are relative to this file
//! # or several sources: directories and etcd prefixes
//! # vassals = ["/etc/rsgi/vassals", "etcd://10.0.0.1:2379,10.0.0.2:2379/rsgi/all/"]
//! state_dir = "/var/lib/rsgi"         # remote sources' last-known-good copies;
//!                                     # default: state/ in run_dir
//! run_dir = "/run/rsgi"
//! control_socket = "/run/rsgi/control.sock"
//! metrics_listen = "127.0.0.1:9192"   # or "off"
//! stats = "/run/rsgi/emperor-stats.sock"  # uWSGI emperor stats JSON; or "127.0.0.1:9191"
//! rsgi = "/usr/bin/rsgi"
//! uid = "www-data"                    # or a number
//! gid = "www-data"
//! tyrant = false
//! rescan_interval = 3                 # seconds, may be fractional
//! log_lines = 200
//! ready_vassals = ["shop", "api"]     # what /readyz waits for; default: every vassal
//! log_format = "text"                 # or "json": one object per line, for collectors
//! start_timeout = 30
//! stop_timeout = 30
//! on_demand = false                   # true: every vassal starts on its first connection
//!
//! [etcd]                              # for etcd:// sources
//! ca = "/etc/rsgi/etcd-ca.pem"        # turns TLS on
//! cert = "/etc/rsgi/etcd-client.pem"
//! key = "/etc/rsgi/etcd-client-key.pem"
//! user = "rsgi"
//! password_file = "/etc/rsgi/etcd-password"   # or RSGI_ETCD_PASSWORD in the environment
//!
//! [backoff]
//! base = 0.5
//! max = 30
//! max_attempts = 5
//! loyal_after = 10
//! ```
//!
//! Without a file and without flags everything has a default that works for a
//! system install; `rsgid --vassals ./vassals --run-dir /tmp/rsgi` needs no root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::lifecycle::Policy;
use crate::source::etcd::EtcdOptions;
use crate::source::SourceSpec;

/// How rsgid writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, `vassal` for a
    /// vassal's lines, and the other fields.
    Json,
}

/// The config file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG: &str = "/etc/rsgi/rsgid.toml";
/// Default vassal directory.
pub const DEFAULT_VASSALS: &str = "/etc/rsgi/vassals";
/// Default runtime directory (sockets, status).
pub const DEFAULT_RUN_DIR: &str = "/run/rsgi";
/// Default metrics port, on 127.0.0.1 only. Next to uWSGI's customary stats port 9191;
/// avoids 9200, which Elasticsearch takes on many hosts.
pub const DEFAULT_METRICS_PORT: u16 = 9192;

/// `rsgid`: the rsgi emperor. Runs one `rsgi` app server per ini file in a directory.
///
/// Every flag can also be set in the config file; flags win.
#[derive(Debug, Clone, Default, PartialEq, clap::Parser)]
// The last of a repeated flag wins (`--metrics off ... --metrics 127.0.0.1:9300`), as
// with most Unix tools; clap would reject the repetition otherwise.
#[command(name = "rsgid", version, args_override_self = true)]
pub struct Args {
    /// Config file (TOML). Default: /etc/rsgi/rsgid.toml if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where vassals come from: a directory of vassal files (*.ini, *.xml), or
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX/ (every key directly under the prefix is
    /// a vassal). Repeatable. Default: /etc/rsgi/vassals.
    #[arg(long, value_name = "DIR|URL", action = clap::ArgAction::Append)]
    pub vassals: Vec<String>,
    /// Where remote sources keep their last-known-good copy. Default: state/ in the
    /// run directory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// etcd: CA certificate (PEM) to verify the servers with; turns TLS on.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// etcd: client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// etcd: the client certificate's key (PEM).
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd: user name (the password comes from --etcd-password-file or the
    /// RSGI_ETCD_PASSWORD environment variable, never from the command line).
    #[arg(long, value_name = "USER")]
    pub etcd_user: Option<String>,
    /// etcd: a file holding the user's password (one line).
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// Runtime directory for vassal sockets and the control socket. Default: /run/rsgi.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Control socket path. Default: control.sock in the run directory.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Prometheus metrics address (ADDR:PORT), or "off". Default: 127.0.0.1:9192.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Serve uWSGI's emperor stats JSON (uwsgitop's vassal view) on this address:
    /// HOST:PORT, :PORT or a unix socket path. Default: none.
    #[arg(long, value_name = "ADDR")]
    pub stats: Option<String>,
    /// The rsgi binary. Default: `rsgi` next to rsgid, then on PATH.
    #[arg(long, value_name = "PATH")]
    pub rsgi: Option<PathBuf>,
    /// Default user for vassals when rsgid runs as root (a vassal's own uid wins).
    #[arg(long, value_name = "USER")]
    pub uid: Option<String>,
    /// Default group for vassals when rsgid runs as root (a vassal's own gid wins).
    #[arg(long, value_name = "GROUP")]
    pub gid: Option<String>,
    /// Tyrant mode: run each vassal as the owner of its file (never root).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub tyrant: Option<bool>,
    /// First backoff delay after a crash, in seconds. Default: 0.5.
    #[arg(long, value_name = "SECS")]
    pub backoff_base: Option<f64>,
    /// Longest backoff delay, in seconds. Default: 30.
    #[arg(long, value_name = "SECS")]
    pub backoff_max: Option<f64>,
    /// Failures in a row before a vassal is marked failed. Default: 5.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Seconds ready after which the failure count resets. Default: 10.
    #[arg(long, value_name = "SECS")]
    pub loyal_after: Option<f64>,
    /// Seconds a new vassal generation has to send READY=1. Default: 30.
    #[arg(long, value_name = "SECS")]
    pub start_timeout: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when stopping a vassal. Default: 30.
    #[arg(long, value_name = "SECS")]
    pub stop_timeout: Option<f64>,
    /// Seconds between full rescans of the vassal directory. Default: 3.
    #[arg(long, value_name = "SECS")]
    pub rescan: Option<f64>,
    /// Lines of output kept per vassal for `rsgictl logs`. Default: 200.
    #[arg(long, value_name = "N")]
    pub log_lines: Option<usize>,
    /// rsgid's log lines (vassal output and access lines included): `text`, or `json`
    /// (one JSON object per line, for log collectors). Default: text.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// The vassals `GET /readyz` waits for, comma-separated. Default: every vassal that
    /// is not stopped on request.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub ready_vassals: Option<Vec<String>>,
    /// On demand by default: bind every vassal's sockets and start it on its first
    /// connection (a vassal's own `on-demand` wins). Default: false.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub on_demand: Option<bool>,
}

/// rsgid's settings after merging defaults, the file and the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The first directory source (or, with only remote sources, the first one's local
    /// copy once [`crate::start`] resolved it).
    pub vassals: PathBuf,
    /// Every vassal source, in the order given.
    pub sources: Vec<SourceSpec>,
    /// Where remote sources keep their last-known-good copy.
    pub state_dir: PathBuf,
    /// How to reach etcd (TLS, credentials).
    pub etcd: EtcdOptions,
    /// Runtime directory (vassal sockets, control socket).
    pub run_dir: PathBuf,
    /// The control socket.
    pub control_socket: PathBuf,
    /// Where to serve metrics; `None` disables them.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve uWSGI's emperor stats JSON; `None` (the default) serves none.
    pub stats: Option<StatsAddr>,
    /// The rsgi binary; `None`: the actor looks next to rsgid's executable, then on PATH.
    pub rsgi: Option<PathBuf>,
    /// Default user for vassals (name or number) when running as root.
    pub uid: Option<String>,
    /// Default group for vassals (name or number) when running as root.
    pub gid: Option<String>,
    /// Run each vassal as the owner of its file.
    pub tyrant: bool,
    /// Time between full rescans of the vassal directory.
    pub rescan_interval: Duration,
    /// Lines of output kept per vassal.
    pub log_lines: usize,
    /// The vassals readiness (`/readyz`) waits for; `None`: every vassal that should
    /// run.
    pub ready_vassals: Option<Vec<String>>,
    /// How rsgid writes its log.
    pub log_format: LogFormat,
    /// Backoff and timeouts for the vassal lifecycle.
    pub policy: Policy,
    /// Vassals without an `on-demand` option of their own are on demand.
    pub on_demand: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        let run_dir = PathBuf::from(DEFAULT_RUN_DIR);
        Settings {
            config_file: None,
            vassals: PathBuf::from(DEFAULT_VASSALS),
            sources: vec![SourceSpec::Dir(PathBuf::from(DEFAULT_VASSALS))],
            state_dir: run_dir.join("state"),
            etcd: EtcdOptions::default(),
            control_socket: run_dir.join("control.sock"),
            run_dir,
            metrics_listen: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_METRICS_PORT,
            )),
            stats: None,
            rsgi: None,
            uid: None,
            gid: None,
            tyrant: false,
            rescan_interval: Duration::from_secs(3),
            log_lines: 200,
            ready_vassals: None,
            log_format: LogFormat::Text,
            policy: Policy::default(),
            on_demand: false,
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or does not fit the schema.
    #[error("{}{}: {}{message}", path.display(),
            line.map(|l| format!(":{l}")).unwrap_or_default(),
            key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// The dotted key at that line (`backoff.base`), when known and not already
        /// in the message.
        key: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// Values that parse but make no sense; every problem is listed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One bad setting value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {key}: {message}")]
pub struct Problem {
    /// Where the value came from: `rsgid.toml:7` or `command line`.
    pub origin: String,
    /// The setting (`backoff.base`, `--backoff-base`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// `uid = "www-data"` or `uid = 33`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NameOrId {
    Name(String),
    Id(u32),
}

impl NameOrId {
    fn into_string(self) -> String {
        match self {
            NameOrId::Name(s) => s,
            NameOrId::Id(n) => n.to_string(),
        }
    }
}

/// The schema of rsgid.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    vassals: Option<Spanned<OneOrMany>>,
    state_dir: Option<PathBuf>,
    etcd: Option<FileEtcd>,
    run_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    metrics_listen: Option<Spanned<String>>,
    stats: Option<Spanned<String>>,
    rsgi: Option<PathBuf>,
    uid: Option<NameOrId>,
    gid: Option<NameOrId>,
    tyrant: Option<bool>,
    rescan_interval: Option<Spanned<f64>>,
    log_lines: Option<usize>,
    ready_vassals: Option<Vec<String>>,
    log_format: Option<LogFormat>,
    on_demand: Option<bool>,
    start_timeout: Option<Spanned<f64>>,
    stop_timeout: Option<Spanned<f64>>,
    backoff: Option<FileBackoff>,
}

/// `vassals = "/dir"` or `vassals = ["/dir", "etcd://..."]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The `[etcd]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEtcd {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    user: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackoff {
    base: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    max_attempts: Option<Spanned<u32>>,
    loyal_after: Option<Spanned<f64>>,
}

/// The config file's name and text, to turn a value's span into `rsgid.toml:7`.
#[derive(Clone, Copy)]
struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

/// A value plus where it came from.
struct Val<T> {
    value: T,
    origin: String,
    key: String,
}

impl<T> Val<T> {
    fn problem(&self, message: String) -> Problem {
        Problem {
            origin: self.origin.clone(),
            key: self.key.clone(),
            message,
        }
    }
}

/// The flag if given, else the file's value, each labelled with where it came from.
fn choose<T>(
    flag: Option<T>,
    flag_name: &str,
    file: Option<Spanned<T>>,
    key: &str,
    source: Source<'_>,
) -> Option<Val<T>> {
    match (flag, file) {
        (Some(value), _) => Some(Val {
            value,
            origin: "command line".into(),
            key: flag_name.into(),
        }),
        (None, Some(v)) => Some(Val {
            origin: format!("{}:{}", source.name, line_of(source.text, v.span().start)),
            value: v.into_inner(),
            key: key.into(),
        }),
        (None, None) => None,
    }
}

impl Settings {
    /// Load the settings: `--config FILE` (which must exist), else
    /// [`DEFAULT_CONFIG`] when present, else defaults; flags win over the file.
    pub fn load(args: &Args) -> Result<Settings, SettingsError> {
        Settings::load_with(args, Path::new(DEFAULT_CONFIG))
    }

    /// [`Settings::load`] with another default config path (for tests).
    pub fn load_with(args: &Args, default_config: &Path) -> Result<Settings, SettingsError> {
        let (path, text) = match &args.config {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => (Some(path.clone()), text),
                Err(source) => {
                    return Err(SettingsError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            },
            None => match std::fs::read_to_string(default_config) {
                Ok(text) => (Some(default_config.to_path_buf()), text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                Err(source) => {
                    return Err(SettingsError::Read {
                        path: default_config.to_path_buf(),
                        source,
                    })
                }
            },
        };
        match path {
            Some(path) => Settings::from_toml(args, &path, &text),
            None => Settings::merge(args, None, FileSettings::default(), ""),
        }
    }

    /// Parse `text` (the content of the config file `path`) and merge `args` over it.
    pub fn from_toml(args: &Args, path: &Path, text: &str) -> Result<Settings, SettingsError> {
        let file: FileSettings = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        Settings::merge(args, Some(path), file, text)
    }

    fn merge(
        args: &Args,
        path: Option<&Path>,
        file: FileSettings,
        text: &str,
    ) -> Result<Settings, SettingsError> {
        let mut s = Settings {
            config_file: path.map(Path::to_path_buf),
            ..Settings::default()
        };
        let file_name = path
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = Source {
            name: &file_name,
            text,
        };
        // Relative paths in the file are relative to the file's directory; relative
        // paths in flags stay relative to the working directory.
        let base = path.and_then(Path::parent).unwrap_or(Path::new(""));
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };

        let mut problems = Vec::new();
        // Sources: the flags if any, else the file's; each a directory or a URL.
        let sources: Vec<(String, String, bool)> = if !args.vassals.is_empty() {
            args.vassals
                .iter()
                .map(|v| (v.clone(), "command line: --vassals".to_owned(), false))
                .collect()
        } else if let Some(v) = file.vassals {
            let origin = format!(
                "{}:{}: vassals",
                source.name,
                line_of(source.text, v.span().start)
            );
            match v.into_inner() {
                OneOrMany::One(one) => vec![(one, origin, true)],
                OneOrMany::Many(many) => many
                    .into_iter()
                    .map(|m| (m, origin.clone(), true))
                    .collect(),
            }
        } else {
            Vec::new()
        };
        if !sources.is_empty() {
            s.sources.clear();
        }
        for (value, origin, in_file) in sources {
            match crate::source::parse_source(&value) {
                Ok(SourceSpec::Dir(d)) => {
                    s.sources
                        .push(SourceSpec::Dir(if in_file { rel(d) } else { d }))
                }
                Ok(spec) => s.sources.push(spec),
                Err(message) => {
                    let (origin, key) = origin.rsplit_once(": ").unwrap_or((&origin, "vassals"));
                    problems.push(Problem {
                        origin: origin.to_owned(),
                        key: key.to_owned(),
                        message,
                    })
                }
            }
        }
        if let Some(SourceSpec::Dir(d)) = s.sources.iter().find(|x| matches!(x, SourceSpec::Dir(_)))
        {
            s.vassals = d.clone();
        }
        if let Some(p) = args.run_dir.clone().or_else(|| file.run_dir.map(rel)) {
            s.run_dir = p;
        }
        s.state_dir = args
            .state_dir
            .clone()
            .or_else(|| file.state_dir.map(rel))
            .unwrap_or_else(|| s.run_dir.join("state"));
        let fe = file.etcd.unwrap_or_default();
        s.etcd.ca = args.etcd_ca.clone().or_else(|| fe.ca.map(rel));
        s.etcd.cert = args.etcd_cert.clone().or_else(|| fe.cert.map(rel));
        s.etcd.key = args.etcd_key.clone().or_else(|| fe.key.map(rel));
        s.etcd.user = args.etcd_user.clone().or(fe.user);
        let password_file = args
            .etcd_password_file
            .clone()
            .map(|p| (p, "command line", "--etcd-password-file"))
            .or_else(|| {
                fe.password_file
                    .map(|p| (rel(p), "rsgid.toml", "etcd.password_file"))
            });
        if let Some((p, origin, key)) = password_file {
            match std::fs::read_to_string(&p) {
                Ok(text) => s.etcd.password = Some(text.trim_end_matches(['\n', '\r']).to_owned()),
                Err(e) => problems.push(Problem {
                    origin: origin.into(),
                    key: key.into(),
                    message: format!("{}: {e}", p.display()),
                }),
            }
        } else if let Ok(pw) = std::env::var("RSGI_ETCD_PASSWORD") {
            s.etcd.password = Some(pw);
        }
        s.control_socket = args
            .control
            .clone()
            .or_else(|| file.control_socket.map(rel))
            .unwrap_or_else(|| s.run_dir.join("control.sock"));
        s.rsgi = args.rsgi.clone().or_else(|| file.rsgi.map(rel));
        s.uid = args.uid.clone().or(file.uid.map(NameOrId::into_string));
        s.gid = args.gid.clone().or(file.gid.map(NameOrId::into_string));
        if let Some(t) = args.tyrant.or(file.tyrant) {
            s.tyrant = t;
        }
        if let Some(n) = args.log_lines.or(file.log_lines) {
            s.log_lines = n;
        }
        s.ready_vassals = args.ready_vassals.clone().or(file.ready_vassals);
        if let Some(f) = args.log_format.or(file.log_format) {
            s.log_format = f;
        }
        if let Some(d) = args.on_demand.or(file.on_demand) {
            s.on_demand = d;
        }

        let metrics = choose(
            args.metrics.clone(),
            "--metrics",
            file.metrics_listen,
            "metrics_listen",
            source,
        );
        if let Some(m) = metrics {
            match parse_metrics(&m.value) {
                Ok(addr) => s.metrics_listen = addr,
                Err(message) => problems.push(m.problem(message)),
            }
        }

        if let Some(v) = choose(args.stats.clone(), "--stats", file.stats, "stats", source) {
            match StatsAddr::parse(&v.value) {
                // A relative socket path in the file is relative to the file.
                Ok(StatsAddr::Unix(p)) if v.key == "stats" => {
                    s.stats = Some(StatsAddr::Unix(rel(p)))
                }
                Ok(addr) => s.stats = Some(addr),
                Err(message) => problems.push(v.problem(message)),
            }
        }

        let backoff = file.backoff.unwrap_or_default();
        let base = choose(
            args.backoff_base,
            "--backoff-base",
            backoff.base,
            "backoff.base",
            source,
        );
        let max = choose(
            args.backoff_max,
            "--backoff-max",
            backoff.max,
            "backoff.max",
            source,
        );
        let durations = [
            (&base, &mut s.policy.backoff_base, false),
            (&max, &mut s.policy.backoff_max, false),
            (
                &choose(
                    args.loyal_after,
                    "--loyal-after",
                    backoff.loyal_after,
                    "backoff.loyal_after",
                    source,
                ),
                &mut s.policy.loyal_after,
                true,
            ),
            (
                &choose(
                    args.start_timeout,
                    "--start-timeout",
                    file.start_timeout,
                    "start_timeout",
                    source,
                ),
                &mut s.policy.start_timeout,
                false,
            ),
            (
                &choose(
                    args.stop_timeout,
                    "--stop-timeout",
                    file.stop_timeout,
                    "stop_timeout",
                    source,
                ),
                &mut s.policy.stop_timeout,
                false,
            ),
            (
                &choose(
                    args.rescan,
                    "--rescan",
                    file.rescan_interval,
                    "rescan_interval",
                    source,
                ),
                &mut s.rescan_interval,
                false,
            ),
        ];
        for (val, target, zero_ok) in durations {
            if let Some(v) = val {
                match to_duration(v.value, zero_ok) {
                    Ok(d) => *target = d,
                    Err(message) => problems.push(v.problem(message)),
                }
            }
        }

        let attempts = choose(
            args.max_attempts,
            "--max-attempts",
            backoff.max_attempts,
            "backoff.max_attempts",
            source,
        );
        if let Some(v) = attempts {
            if v.value == 0 {
                problems.push(v.problem("must be at least 1".into()));
            } else {
                s.policy.max_attempts = v.value;
            }
        }

        let (b, m) = (s.policy.backoff_base, s.policy.backoff_max);
        if m < b {
            // Blame the value that was set; the other is the default.
            let (b, m) = (b.as_secs_f64(), m.as_secs_f64());
            match (&base, &max) {
                (_, Some(max)) => {
                    problems.push(max.problem(format!("{m} s is less than backoff.base ({b} s)")))
                }
                (Some(base), None) => {
                    problems.push(base.problem(format!("{b} s is more than backoff.max ({m} s)")))
                }
                (None, None) => {}
            }
        }

        if problems.is_empty() {
            Ok(s)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }
}

fn to_duration(secs: f64, zero_ok: bool) -> Result<Duration, String> {
    if !secs.is_finite() {
        return Err(format!("must be a number of seconds (got {secs})"));
    }
    if secs < 0.0 || (secs == 0.0 && !zero_ok) {
        let want = if zero_ok { "0 or more" } else { "more than 0" };
        return Err(format!("must be {want} seconds (got {secs})"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{secs} seconds is too long"))
}

/// Where rsgid serves uWSGI's emperor stats JSON (`--stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsAddr {
    /// A TCP address (`127.0.0.1:9191`; `:9191` means every IPv4 address, as in uWSGI).
    Tcp(SocketAddr),
    /// A unix socket path (`/run/rsgi/emperor-stats.sock`, or `unix:/path`).
    Unix(PathBuf),
}

impl StatsAddr {
    /// Parse a stats address with the one grammar ([`rsgi_proto::stats_addr`]); rsgid
    /// serves its emperor stats on a unix socket path or an IP address and port (no
    /// abstract socket, no host name to resolve).
    pub fn parse(value: &str) -> Result<StatsAddr, String> {
        use rsgi_proto::stats_addr::{self, StatsAddr as A};
        match stats_addr::parse(value)? {
            A::Unix(path) => Ok(StatsAddr::Unix(path)),
            A::Tcp { host, port } => host
                .parse::<IpAddr>()
                .map(|ip| StatsAddr::Tcp(SocketAddr::new(ip, port)))
                .map_err(|_| format!("rsgid's stats need an IP address, not a host name: {value:?}")),
            A::Abstract(_) => Err(format!(
                "rsgid's stats cannot use an abstract socket: use a path or HOST:PORT, got {value:?}"
            )),
        }
    }
}

impl std::fmt::Display for StatsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsAddr::Tcp(a) => a.fmt(f),
            StatsAddr::Unix(p) => p.display().fmt(f),
        }
    }
}

/// `"off"` or `ADDR:PORT`.
fn parse_metrics(value: &str) -> Result<Option<SocketAddr>, String> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        format!(
            "expected ADDR:PORT (like 127.0.0.1:{DEFAULT_METRICS_PORT}) or \"off\", got {value:?}"
        )
    })
}

/// The 1-based line of byte offset `pos` in `text`.
fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turn a toml error into one `file:line: key: message`.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> SettingsError {
    let message = e.message().trim().to_owned();
    let span = e.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    // Name the key unless the message already does (unknown field `x`).
    let key = match &span {
        Some(span) if !message.starts_with("unknown field") => key_at(text, span.clone()),
        _ => None,
    };
    SettingsError::Toml {
        path: path.to_path_buf(),
        line,
        key,
        message,
    }
}

/// The dotted key whose value starts at `span`: the key on that line, prefixed with
/// the last `[table]` header above it. Good enough for rsgid.toml's flat schema.
fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::Parser;
    use std::fs;

    fn args(flags: &[&str]) -> Args {
        let mut argv = vec!["rsgid"];
        argv.extend_from_slice(flags);
        Args::try_parse_from(argv).unwrap()
    }

    /// Load with a default config path that does not exist.
    fn load(flags: &[&str]) -> Result<Settings, SettingsError> {
        let tmp = tempfile::tempdir().unwrap();
        Settings::load_with(&args(flags), &tmp.path().join("absent.toml"))
    }

    fn load_file(text: &str, flags: &[&str]) -> Result<Settings, SettingsError> {
        Settings::from_toml(&args(flags), Path::new("/etc/rsgi/rsgid.toml"), text)
    }

    fn err(r: Result<Settings, SettingsError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn defaults_without_a_file() {
        let s = load(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.vassals, Path::new("/etc/rsgi/vassals"));
        assert_eq!(s.run_dir, Path::new("/run/rsgi"));
        assert_eq!(s.control_socket, Path::new("/run/rsgi/control.sock"));
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9192".parse().unwrap()));
        assert_eq!(s.rsgi, None);
        assert!(!s.tyrant);
        assert_eq!(s.rescan_interval, Duration::from_secs(3));
        assert_eq!(s.log_lines, 200);
        assert_eq!(s.policy, Policy::default());
        assert_eq!(s.config_file, None);
    }

    #[test]
    fn control_socket_follows_run_dir() {
        let s = load(&["--vassals", "./v", "--run-dir", "/tmp/rsgi"]).unwrap();
        assert_eq!(s.vassals, Path::new("./v"));
        assert_eq!(s.control_socket, Path::new("/tmp/rsgi/control.sock"));
    }

    #[test]
    fn sources_from_flags_and_file() {
        let s = load(&[
            "--vassals",
            "./v",
            "--vassals",
            "etcd://10.0.0.1:2379,10.0.0.2:2379/rsgi/all/",
            "--run-dir",
            "/tmp/r",
        ])
        .unwrap();
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.sources[0], SourceSpec::Dir("./v".into()));
        assert_eq!(
            s.sources[1].to_string(),
            "etcd://10.0.0.1:2379,10.0.0.2:2379/rsgi/all/"
        );
        assert_eq!(s.state_dir, Path::new("/tmp/r/state"));

        let s = load_file(
            "vassals = [\"v\", \"etcd://h:1/p/\"]\nstate_dir = \"st\"\n[etcd]\nuser = \"u\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.sources[0], SourceSpec::Dir("/etc/rsgi/v".into()));
        assert_eq!(s.vassals, Path::new("/etc/rsgi/v"));
        assert_eq!(s.state_dir, Path::new("/etc/rsgi/st"));
        assert_eq!(s.etcd.user.as_deref(), Some("u"));

        // A bad URL names where it came from.
        let e = err(load_file("\n\nvassals = [\"etcd://h/p/\"]\n", &[]));
        assert!(
            e.starts_with("rsgid.toml:3: vassals: \"etcd://h/p/\""),
            "{e}"
        );
        let e = err(load(&["--vassals", "etcd://h:1"]));
        assert!(e.starts_with("command line: --vassals: "), "{e}");
        let e = err(load_file("[etcd]\npasword = \"x\"\n", &[]));
        assert!(e.contains("pasword"), "{e}");
    }

    const FULL: &str = r#"
vassals = "/srv/vassals"
run_dir = "/run/x"
control_socket = "/run/x/ctl.sock"
metrics_listen = "0.0.0.0:9300"
stats = "run/stats.sock"
rsgi = "/opt/rsgi/bin/rsgi"
uid = "www-data"
gid = 33
tyrant = true
rescan_interval = 1.5
log_lines = 1000
on_demand = true
start_timeout = 60
stop_timeout = 5

[backoff]
base = 1
max = 60.0
max_attempts = 3
loyal_after = 0
"#;

    #[test]
    fn the_kubernetes_example_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes/rsgid.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let s = load_file(&text, &[]).unwrap();
        assert_eq!(s.metrics_listen, Some("0.0.0.0:9192".parse().unwrap()));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.policy.stop_timeout, Duration::from_secs(25));
        assert_eq!(s.vassals, PathBuf::from("/etc/rsgi/vassals"));
        assert_eq!(s.run_dir, PathBuf::from("/run/rsgi"));
    }

    #[test]
    fn a_full_file() {
        let s = load_file(FULL, &[]).unwrap();
        assert_eq!(
            s,
            Settings {
                config_file: Some("/etc/rsgi/rsgid.toml".into()),
                vassals: "/srv/vassals".into(),
                sources: vec![SourceSpec::Dir("/srv/vassals".into())],
                state_dir: "/run/x/state".into(),
                etcd: EtcdOptions::default(),
                run_dir: "/run/x".into(),
                control_socket: "/run/x/ctl.sock".into(),
                metrics_listen: Some("0.0.0.0:9300".parse().unwrap()),
                stats: Some(StatsAddr::Unix("/etc/rsgi/run/stats.sock".into())),
                rsgi: Some("/opt/rsgi/bin/rsgi".into()),
                uid: Some("www-data".into()),
                gid: Some("33".into()),
                tyrant: true,
                rescan_interval: Duration::from_millis(1500),
                log_lines: 1000,
                ready_vassals: None,
                log_format: LogFormat::Text,
                on_demand: true,
                policy: Policy {
                    backoff_base: Duration::from_secs(1),
                    backoff_max: Duration::from_secs(60),
                    max_attempts: 3,
                    loyal_after: Duration::ZERO,
                    start_timeout: Duration::from_secs(60),
                    stop_timeout: Duration::from_secs(5),
                },
            }
        );
    }

    #[test]
    fn flags_override_the_file() {
        let s = load_file(
            FULL,
            &[
                "--vassals=/v",
                "--metrics",
                "off",
                "--tyrant=false",
                "--backoff-max",
                "2",
                "--max-attempts",
                "9",
                "--uid",
                "nobody",
                "--rescan",
                "0.25",
            ],
        )
        .unwrap();
        assert_eq!(s.vassals, Path::new("/v"));
        assert_eq!(s.metrics_listen, None);
        assert!(!s.tyrant);
        assert_eq!(s.policy.backoff_max, Duration::from_secs(2));
        assert_eq!(
            s.policy.backoff_base,
            Duration::from_secs(1),
            "from the file"
        );
        assert_eq!(s.policy.max_attempts, 9);
        assert_eq!(s.uid.as_deref(), Some("nobody"));
        assert_eq!(s.gid.as_deref(), Some("33"), "from the file");
        assert_eq!(s.rescan_interval, Duration::from_millis(250));
        assert!(args(&["--tyrant"]).tyrant == Some(true));
    }

    #[test]
    fn the_last_of_a_repeated_flag_wins() {
        let s = load(&["--metrics", "off", "--metrics", "127.0.0.1:9300"]).unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9300".parse().unwrap()));
        let s = load(&["--metrics", "127.0.0.1:9300", "--metrics", "off"]).unwrap();
        assert_eq!(s.metrics_listen, None);
    }

    #[test]
    fn stats_addresses() {
        let ok = |v: &str| StatsAddr::parse(v).unwrap();
        assert_eq!(
            ok("127.0.0.1:9191"),
            StatsAddr::Tcp("127.0.0.1:9191".parse().unwrap())
        );
        assert_eq!(ok(":9191"), StatsAddr::Tcp("0.0.0.0:9191".parse().unwrap()));
        assert_eq!(
            ok("[::1]:9191"),
            StatsAddr::Tcp("[::1]:9191".parse().unwrap())
        );
        assert_eq!(
            ok("/run/rsgi/s.sock"),
            StatsAddr::Unix("/run/rsgi/s.sock".into())
        );
        assert_eq!(ok("unix:s.sock"), StatsAddr::Unix("s.sock".into()));
        assert_eq!(ok("./s.sock"), StatsAddr::Unix("./s.sock".into()));
        for bad in ["", "localhost", ":x", "unix:", "9191"] {
            assert!(StatsAddr::parse(bad).is_err(), "{bad:?}");
        }
        // A flag's relative path stays relative to the working directory.
        let s = load_file(FULL, &["--stats", "here.sock"]);
        assert!(s.is_err(), "no slash, no colon: not an address");
        let s = load_file(FULL, &["--stats", "./here.sock"]).unwrap();
        assert_eq!(s.stats, Some(StatsAddr::Unix("./here.sock".into())));
        let e = err(load_file("stats = \"nowhere\"\n", &[]));
        assert!(
            e.starts_with("rsgid.toml:1: stats: expected HOST:PORT"),
            "{e}"
        );
        assert_eq!(load(&[]).unwrap().stats, None);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let e = err(load_file("run_dir = \"/run\"\n\n\nvasals = \"/v\"\n", &[]));
        assert!(
            e.starts_with("rsgid.toml:4: unknown field `vasals`, expected one of")
                || e.starts_with("/etc/rsgi/rsgid.toml:4: unknown field `vasals`, expected one of"),
            "{e}"
        );
        assert!(e.contains("`vassals`"), "{e}");
        let e = err(load_file("[backoff]\nbase = 1\nmaximum = 3\n", &[]));
        assert!(
            e.starts_with("/etc/rsgi/rsgid.toml:3: unknown field `maximum`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = "vassals = \"/v\"\n\n[backoff]\nmax_attempts = 3\n\n\nbase = \"fast\"\n";
        let e = err(load_file(text, &[]));
        assert!(
            e.starts_with("/etc/rsgi/rsgid.toml:7: backoff.base: invalid type: string \"fast\""),
            "{e}"
        );
        let e = err(load_file("tyrant = 1\n", &[]));
        assert!(
            e.starts_with("/etc/rsgi/rsgid.toml:1: tyrant: invalid type: integer"),
            "{e}"
        );
        let e = err(load_file("vassals = \n", &[]));
        assert!(e.starts_with("/etc/rsgi/rsgid.toml:1: "), "{e}");
    }

    #[test]
    fn bad_values_are_all_named() {
        let text = "stop_timeout = 0\n[backoff]\nbase = -1\nmax_attempts = 0\n";
        match load_file(text, &["--start-timeout=-3", "--metrics", "localhost"]) {
            Err(SettingsError::Invalid(problems)) => {
                let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
                assert_eq!(
                    got,
                    [
                        "command line: --metrics: expected ADDR:PORT (like 127.0.0.1:9192) or \"off\", got \"localhost\"",
                        "rsgid.toml:3: backoff.base: must be more than 0 seconds (got -1)",
                        "command line: --start-timeout: must be more than 0 seconds (got -3)",
                        "rsgid.toml:1: stop_timeout: must be more than 0 seconds (got 0)",
                        "rsgid.toml:4: backoff.max_attempts: must be at least 1",
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let e = err(load_file("[backoff]\nbase = 10\nmax = 2\n", &[]));
        assert_eq!(
            e,
            "rsgid.toml:3: backoff.max: 2 s is less than backoff.base (10 s)"
        );
        let e = err(load(&["--backoff-base", "60"]));
        assert_eq!(
            e,
            "command line: --backoff-base: 60 s is more than backoff.max (30 s)"
        );
        let e = err(load(&["--loyal-after", "0", "--rescan", "inf"]));
        assert_eq!(
            e,
            "command line: --rescan: must be a number of seconds (got inf)"
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        fs::create_dir(&etc).unwrap();
        let file = etc.join("rsgid.toml");
        fs::write(
            &file,
            "vassals = \"vassals\"\nrun_dir = \"../run\"\nrsgi = \"/usr/bin/rsgi\"\n",
        )
        .unwrap();
        let s = Settings::load_with(
            &args(&["--config", file.to_str().unwrap()]),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(s.vassals, etc.join("vassals"));
        assert_eq!(s.run_dir, etc.join("../run"));
        assert_eq!(s.control_socket, etc.join("../run/control.sock"));
        assert_eq!(s.rsgi, Some(PathBuf::from("/usr/bin/rsgi")));
        assert_eq!(s.config_file, Some(file.clone()));

        // The default path is read when present; flags stay relative to the cwd.
        let s = Settings::load_with(&args(&["--run-dir", "rel"]), &file).unwrap();
        assert_eq!(s.vassals, etc.join("vassals"));
        assert_eq!(s.run_dir, Path::new("rel"));
    }

    #[test]
    fn an_explicit_config_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.toml");
        let e = err(Settings::load_with(
            &args(&["--config", missing.to_str().unwrap()]),
            Path::new("/nonexistent"),
        ));
        assert!(
            e.starts_with(&format!("cannot read {}: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn help_lists_every_flag() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for flag in [
            "--config",
            "--vassals",
            "--run-dir",
            "--control",
            "--metrics",
            "--stats",
            "--rsgi",
            "--uid",
            "--gid",
            "--tyrant",
            "--backoff-base",
            "--backoff-max",
            "--max-attempts",
            "--loyal-after",
            "--start-timeout",
            "--stop-timeout",
            "--rescan",
            "--log-lines",
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
        Args::command().debug_assert();
    }
}
