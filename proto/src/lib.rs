//! rsgi-proto: the contracts shared by rsgi's programs.
//!
//! No tokio, no pyo3: everything here is plain data and pure functions (the only I/O is
//! reading config files, and binding the listening sockets both the emperor and the
//! vassal bind), so the emperor (`rsgid`), the app server (`rsgi`) and the
//! control client (`rsgictl`) agree on one definition.
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
//! - [`cli`]: the `rsgi` command line ([`parse_args`]) and config-file loading
//!   ([`load_file`]).
//! - [`backoff`]: exponential backoff, shared by rsgid's lifecycle and the vassal master.
//! - [`bounds`]: the one function that reads a config file (regular files only, never
//!   blocking, size-capped) and the caps on includes, placeholders and expanded values.
//! - [`error`]: [`ConfigError`], with `file:line` and exit codes.
//! - [`notify`]: vassal -> supervisor notify messages and exit-code constants.
//! - [`control`]: the control API types shared by `rsgid` and `rsgictl`.
//! - [`shm`]: a vassal's per-worker counters in shared memory (written by its workers,
//!   read by its master and, through the fd it passes over the notify socket, by rsgid).
//! - [`stats`]: those counters as uWSGI's stats JSON (uwsgitop works unchanged).
//! - [`listen`]: binding a vassal's listening sockets (`chmod-socket`, stale unix
//!   sockets, ...) or taking them from `LISTEN_FDS`; the emperor binds them with the
//!   same code the standalone vassal uses.
//!
//! # How configuration is read
//!
//! 1. [`parse_args`] splits the command line into options (`--name value`, `--name=value`,
//!    `-p 4`, bare flags) and config files (`--ini`, `-x`, positional `*.ini`/`*.xml`),
//!    using the table to know which options take values. `--help`, `--version`, `--stop`
//!    and `--reload` short-circuit into an [`Invocation`].
//! 2. Each config file is read (through [`bounds::read_config_file`]) by [`ini`] or [`xml`]
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
//! The emperor calls [`load_file`] for one vassal file; `rsgi` calls [`parse_args`].
#![deny(missing_docs)]

pub mod backoff;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod control;
pub mod error;
pub mod expand;
pub mod ini;
pub mod listen;
pub mod logic;
pub mod notify;
pub mod options;
pub mod shm;
pub mod stats;
pub mod xml;

pub use cli::{load_file, parse_args, Invocation};
pub use error::ConfigError;
