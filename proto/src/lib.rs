//! rsgi-proto: the contracts shared by rsgi's programs.
//!
//! No tokio, no pyo3, no nix/libc, only safe Rust: everything here is plain data and pure
//! functions (the only I/O is reading config files), so the emperor (`rsgid`), the app
//! server (`rsgi`) and the control client (`rsgictl`) agree on one definition. What makes
//! system calls (binding sockets, shared counters, stats sampling, user lookup, ...) lives
//! in the `rsgi-os` crate.
//!
//! # Layout
//!
//! - [`config`]: the typed vassal configuration ([`config::VassalConfig`]).
//! - [`options`]: the option table ([`options::OPTIONS`]): uWSGI's names, aliases, short
//!   flags, value kinds, setters, help text, and the uWSGI options accepted as no-ops.
//! - [`ini`]: the uWSGI ini dialect (`[uwsgi]`/`[rsgi]` sections, repeated keys, no quoting).
//! - [`logic`]: uWSGI's config logic (`if-env`, `if-exists`, `for`, `else`, `endif`, ...)
//!   over the entries as they are read.
//! - [`xml`]: uWSGI's XML config form (`<uwsgi><socket>...</socket></uwsgi>`).
//! - [`expand`]: magic variables (`%d %n %k ...`, replaced as a file is read) and
//!   references (`%(option)`, `$(ENV)`, `@(file)`, resolved once everything is read).
//! - [`cli`]: the `rsgi` command line ([`parse_args_with`]) and config-file loading
//!   ([`load_file_with`]).
//! - [`backoff`]: exponential backoff, shared by rsgid's lifecycle and the vassal master.
//! - [`stats_addr`]: the stats address grammar (`stats`, rsgid's `--stats`).
//! - [`bounds`]: the one function that reads a config file (regular files only, never
//!   blocking, size-capped) and the caps on includes, placeholders and expanded values.
//! - [`system`]: what reading a configuration needs from the system, injected
//!   ([`System`]: how a config file is opened, the [`Host`] facts of magic variables);
//!   `rsgi-os` gives the real one, tests a fixed one.
//! - [`error`]: [`ConfigError`], with `file:line` and exit codes.
//! - [`notify`]: vassal -> supervisor notify messages and exit-code constants.
//! - [`control`]: the control API types shared by `rsgid` and `rsgictl`.
//!
//! # How configuration is read
//!
//! 1. [`parse_args_with`] splits the command line into options (`--name value`, `--name=value`,
//!    `-p 4`, bare flags) and config files (`--ini`, `-x`, positional `*.ini`/`*.xml`),
//!    using the table to know which options take values. `--help`, `--version`, `--stop`
//!    and `--reload` short-circuit into an [`Invocation`].
//! 2. Each config file is read (through [`bounds::read_config_file`], opened by the
//!    [`System`]) by [`ini`] or [`xml`]
//!    into [`ini::Entry`]s (`key`, `value`, `line`, `file`), magic variables replaced as
//!    each line is read; files named inside files (`ini = base.ini`) are read in place.
//! 3. Once everything is read, every value's references (`%(name)`, `$(ENV)`, `@(file)`)
//!    are resolved ([`expand::Placeholders::resolve`]), so a value may use a key set later.
//! 4. Options and entries are applied in command-line order through
//!    [`options::apply`]: the table entry parses and checks the value and calls its setter on
//!    a [`config::VassalConfig`] that starts from the defaults. Repeatable options append,
//!    others keep the last value. Unknown names are errors with a "did you mean"; uWSGI
//!    options that mean nothing here, and values read in a way worth telling, become
//!    [`config::Notice`]s.
//!
//! The emperor calls [`load_file_with`] for one vassal file and `rsgi` calls
//! [`parse_args_with`], both through `rsgi_os::config` (which passes the real [`System`]).
#![deny(missing_docs)]

pub mod backoff;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod control;
pub mod cron;
pub mod daemons;
pub mod error;
pub mod expand;
pub mod fuzzing;
pub mod hooks;
pub mod ini;
pub mod log_encoder;
pub mod logic;
pub mod notify;
pub mod options;
pub mod paths;
pub mod stats_addr;
pub mod system;
pub mod uwsgi_names;
pub mod xml;

pub use cli::{load_file_reads, load_file_with, parse_args_with, Invocation};
pub use error::ConfigError;
pub use system::{Host, PathKind, System};
