//! The `rsgi` command line and config-file loading, both driven by the option table.
//!
//! ```text
//! rsgi --ini app.ini                      rsgi app.ini          (positional *.ini / *.xml)
//! rsgi --ini app.ini:staging              rsgi -x app.xml       rsgi --xml app.xml:id
//! rsgi --http :8000 --module mysite.wsgi --master --processes=4 -T
//! rsgi --ini app.ini --processes 8        (later options override the file's values)
//! rsgi app.py                             (positional *.py / *.wsgi is the wsgi-file)
//! rsgi --stop /run/app.pid                rsgi --reload /run/app.pid
//! rsgi --help | -h                        rsgi --version
//! ```
//!
//! How an argument is read (uWSGI's getopt rules, with friendlier errors):
//!
//! - `--name value` and `--name=value` for options that take a value. A following
//!   argument that starts with `-` is not taken as the value (`--socket --master` is a
//!   "missing value" error, not a socket named `--master`); use `--name=-x` for that.
//! - Flags (booleans, the ignored uWSGI flags) never take the next argument: `--master`,
//!   `--master=false`. `--chmod-socket` alone means 666; `--chmod-socket=660` and
//!   `--chmod-socket 660` (an octal number) set the mode.
//! - Short flags: `-s :3030`, `-s:3030`, `-p 4`, `-p4`, `-M`, clusters like `-MT`; `-C660`.
//! - `--` ends the options; later arguments are positional.
//! - `--help`, `--version`, `--stop`, `--reload` win over everything else on the line (help
//!   first), even over errors in other arguments, so `rsgi --bogus --help` prints the help.
//!
//! Everything else is applied in command-line order: a config file's entries where the file
//! is named, options where they stand. Non-repeatable options keep the last value,
//! repeatable ones (`socket`, `env`, `pythonpath`, ...) add up, as in uWSGI.
//!
//! Config files may name other files (`ini = base.ini`, `ini = :section`, `xml = x.xml`);
//! those are read where they are named, before the following lines are expanded. Relative
//! paths are relative to the process's working directory (as uWSGI; use `%d` to be
//! relative to the including file). Every file is read through
//! [`crate::bounds::read_config_file`]; nesting deeper than [`Limits::include_depth`] (a
//! loop) or reading more than [`Limits::include_files`] files is an error naming the
//! `ini = ...` line.

use std::path::{Path, PathBuf};

use crate::bounds::{Included, Limits};
use crate::config::{Notice, VassalConfig};
use crate::error::ConfigError;
use crate::expand::{EnvLookup, Placeholders};
use crate::ini::{self, define, Entry};
use crate::logic::{Blocks, SystemFacts};
use crate::options::{self, Action, Applied, Arity, Format, Kind, OptionSpec};
use crate::system::System;
use crate::uwsgi_names;
use crate::xml;

/// Set in the environment of an `rsgi` master that re-executed itself for a reload
/// (SIGHUP, `--reload`): the config it reads then is a reload's (`if-reload`).
pub const REEXEC_ENV: &str = "RSGI_REEXEC";

/// What the command line asks `rsgi` to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// Serve with this configuration (options and config files applied in order). Boxed:
    /// the config is large and the other variants are small.
    Serve(Box<VassalConfig>),
    /// `--stop PIDFILE`: send a graceful stop to the master whose pid is in the file.
    Stop(PathBuf),
    /// `--reload PIDFILE`: send a graceful reload to the master whose pid is in the file.
    Reload(PathBuf),
    /// `--help`/`-h`: print this text (generated from the option table) to stdout, exit 0.
    Help(String),
    /// `--version`: print the version, exit 0.
    Version,
    /// `--check-app`: with this configuration, import the app and exit.
    CheckApp(Box<VassalConfig>),
    /// `--check-config`: with this configuration, report what would be served and exit.
    CheckConfig(Box<VassalConfig>),
}

/// Parse `rsgi`'s command line (`args` without `argv[0]`). Config files named on it are
/// read through `system` (and only they: nothing else touches the filesystem). `env` looks
/// up environment variables for `$(NAME)` in config files; pass
/// `&|k| std::env::var(k).ok()`. The programs call `rsgi_os::config::parse_args`, which
/// passes the real system.
///
/// No arguments at all gives `Serve` with the defaults; whether a config without an app is
/// acceptable is the caller's decision (the emperor reads socket-only configs too).
///
/// Errors: [`ConfigError::CommandLine`] (exit code 64) for the command line itself,
/// the file variants (exit code 78) for problems inside config files.
pub fn parse_args_with(
    args: &[String],
    env: EnvLookup<'_>,
    system: &dyn System,
) -> Result<Invocation, ConfigError> {
    let (tokens, first_error) = tokenize(args);
    // Actions win, help first, even over errors elsewhere on the line.
    let action = |wanted: &[Action]| {
        tokens.iter().find_map(|t| match t.spec.kind {
            Kind::Action(a) if wanted.contains(&a) => Some((a, t.value.clone())),
            _ => None,
        })
    };
    if action(&[Action::Help]).is_some() {
        return Ok(Invocation::Help(options::help_text()));
    }
    if action(&[Action::Version]).is_some() {
        return Ok(Invocation::Version);
    }
    if let Some((a, Some(pidfile))) = action(&[Action::Stop, Action::Reload]) {
        return Ok(match a {
            Action::Stop => Invocation::Stop(PathBuf::from(pidfile)),
            _ => Invocation::Reload(PathBuf::from(pidfile)),
        });
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let check = action(&[Action::CheckApp]).is_some();
    let check_config = action(&[Action::CheckConfig]).is_some();
    let mut loader = Loader::new(env, system);
    for token in tokens {
        loader.collect_arg(token)?;
    }
    loader.finish()?;
    if check {
        return Ok(Invocation::CheckApp(Box::new(loader.config)));
    }
    if check_config {
        return Ok(Invocation::CheckConfig(Box::new(loader.config)));
    }
    Ok(Invocation::Serve(Box::new(loader.config)))
}

/// Load one config file: `app.ini`, `app.ini:section`, `app.xml`, `app.xml:id`. The format
/// follows the extension (`.xml` is XML; `.json`, `.yaml`, `.yml`, `.js` and `.lua` are
/// refused; anything else is read as ini). [`VassalConfig::source`] is set to the file's path.
/// Used by the emperor for vassal files, through `rsgi_os::config::load_file` (which
/// passes the real system).
pub fn load_file_with(
    path_with_optional_section: &str,
    env: EnvLookup<'_>,
    system: &dyn System,
) -> Result<VassalConfig, ConfigError> {
    load_file_reads(path_with_optional_section, env, system).0
}

/// [`load_file_with`], and every file the load read or tried to read besides the top
/// file (as [`VassalConfig::includes`] lists them), whether it succeeded or not: the
/// include that is missing or does not parse is among them. rsgid tries a failed load
/// again when one of these files changes, appears or goes.
pub fn load_file_reads(
    path_with_optional_section: &str,
    env: EnvLookup<'_>,
    system: &dyn System,
) -> (Result<VassalConfig, ConfigError>, Vec<Included>) {
    let (path, _) = split_section(path_with_optional_section);
    let format = match format_of(Path::new(path)) {
        Ok(format) => format.unwrap_or(Format::Ini),
        Err(msg) => return (Err(ConfigError::file(Path::new(path), msg)), Vec::new()),
    };
    let recording = crate::bounds::Recording::new(system);
    let loaded = {
        let mut loader = Loader::new(env, &recording);
        loader
            .load(path_with_optional_section, format)
            .and_then(|()| loader.finish())
            .map(|()| loader.config)
    };
    let read = recording.into_included(Path::new(path));
    match loaded {
        Ok(mut config) => {
            config.includes.clone_from(&read);
            (Ok(config), read)
        }
        Err(e) => (Err(e), read),
    }
}

/// Split `file:section` at the last `:`, if what follows it is a plausible section name
/// (not empty, no `/`). `app.ini:prod` gives `("app.ini", Some("prod"))`, `:base` gives
/// `("", Some("base"))`, `/a:b/app.ini` gives `("/a:b/app.ini", None)`.
pub fn split_section(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((path, section)) if !section.is_empty() && !section.contains('/') => {
            (path, Some(section))
        }
        _ => (spec, None),
    }
}

/// The format a file name implies: `Some` for `.ini`/`.xml`, `None` for other names, an
/// error for config formats uWSGI has and rsgi does not read.
fn format_of(path: &Path) -> Result<Option<Format>, String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("ini") => Ok(Some(Format::Ini)),
        Some("xml") => Ok(Some(Format::Xml)),
        Some(e @ ("json" | "yaml" | "yml" | "js" | "lua")) => {
            Err(format!("rsgi reads ini and XML config files, not .{e}"))
        }
        _ => Ok(None),
    }
}

/// One option from the command line, with the value it was given.
struct Arg {
    spec: &'static OptionSpec,
    /// The name as typed, without dashes (`process`, `p`), for error messages.
    given: String,
    value: Option<String>,
}

/// Split the command line into options with values. Returns every option it could read and
/// the first syntax error, if any (reported only if no action is on the line).
fn tokenize(args: &[String]) -> (Vec<Arg>, Option<ConfigError>) {
    let mut tokens: Vec<Arg> = Vec::new();
    let mut error: Option<ConfigError> = None;
    let mut fail = |e: ConfigError| {
        error.get_or_insert(e);
    };
    let is_option_like = |s: &str| s.len() > 1 && s.starts_with('-');
    let mut positional_only = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if !positional_only && arg == "--" {
            positional_only = true;
        } else if let Some(body) = arg.strip_prefix("--").filter(|_| !positional_only) {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(spec) = options::find(name) else {
                let hint = options::suggest(name)
                    .map(|s| format!(" (did you mean '--{s}'?)"))
                    .unwrap_or_default();
                fail(ConfigError::cli(
                    None,
                    format!("unknown option '--{name}'{hint}"),
                ));
                continue;
            };
            let value = match (spec.kind.arity(), inline) {
                (Arity::None, Some(_)) => {
                    fail(ConfigError::cli(Some(name), "takes no value"));
                    continue;
                }
                (Arity::None, None) => None,
                (_, Some(v)) => Some(v.to_owned()),
                (Arity::Required, None) => match args.get(i) {
                    Some(next) if !is_option_like(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    _ => {
                        fail(ConfigError::cli(Some(name), "missing value"));
                        continue;
                    }
                },
                (Arity::Optional, None) => match args.get(i) {
                    Some(next) if takes_next_as_mode(spec, next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    _ => None,
                },
            };
            tokens.push(Arg {
                spec,
                given: name.to_owned(),
                value,
            });
        } else if let Some(cluster) = arg
            .strip_prefix('-')
            .filter(|c| !c.is_empty() && !positional_only)
        {
            for (offset, c) in cluster.char_indices() {
                let rest = &cluster[offset + c.len_utf8()..];
                let Some(spec) = options::find_short(c) else {
                    fail(ConfigError::cli(None, format!("unknown option '-{c}'")));
                    break;
                };
                let given = c.to_string();
                let flag = matches!(
                    spec.kind,
                    Kind::Bool(_)
                        | Kind::Ignored {
                            takes_value: false,
                            ..
                        }
                        | Kind::Action(_)
                ) && spec.kind.arity() != Arity::Required;
                if flag {
                    tokens.push(Arg {
                        spec,
                        given,
                        value: None,
                    });
                    continue;
                }
                let value = if !rest.is_empty() {
                    Some(rest.to_owned())
                } else if spec.kind.arity() == Arity::Optional {
                    match args.get(i) {
                        Some(next) if takes_next_as_mode(spec, next) => {
                            i += 1;
                            Some(next.clone())
                        }
                        _ => None,
                    }
                } else {
                    match args.get(i) {
                        Some(next) if !is_option_like(next) => {
                            i += 1;
                            Some(next.clone())
                        }
                        _ => {
                            fail(ConfigError::cli(Some(&given), "missing value"));
                            break;
                        }
                    }
                };
                tokens.push(Arg { spec, given, value });
                break;
            }
        } else {
            match positional(arg) {
                Ok(token) => tokens.push(token),
                Err(msg) => {
                    let previous_flag = tokens
                        .last()
                        .filter(|t| t.value.is_none() && t.spec.kind.arity() == Arity::Optional);
                    let hint = match previous_flag {
                        Some(t) if options::parse_bool(arg).is_ok() => {
                            format!(
                                " (flags take their value after '=': --{}={arg})",
                                t.spec.name
                            )
                        }
                        _ => msg,
                    };
                    fail(ConfigError::cli(
                        None,
                        format!("unexpected argument '{arg}'{hint}"),
                    ));
                }
            }
        }
    }
    (tokens, error)
}

/// `--chmod-socket 660`: an optional-value option takes the next argument only if it is an
/// octal mode, so `--chmod-socket app.ini` still reads `app.ini` as a config file.
fn takes_next_as_mode(spec: &OptionSpec, next: &str) -> bool {
    matches!(spec.kind, Kind::Mode(_))
        && (3..=4).contains(&next.len())
        && next.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// A positional argument: a config file by extension, or the WSGI file.
fn positional(arg: &str) -> Result<Arg, String> {
    let (path, _) = split_section(arg);
    let as_option = |name: &str| {
        options::find(name).map(|spec| Arg {
            spec,
            given: name.to_owned(),
            value: Some(arg.to_owned()),
        })
    };
    let found = match format_of(Path::new(path)) {
        Err(msg) => return Err(format!(": {msg}")),
        Ok(Some(Format::Ini | Format::ByName)) => as_option("ini"),
        Ok(Some(Format::Xml)) => as_option("xml"),
        Ok(None) if arg.ends_with(".py") || arg.ends_with(".wsgi") => as_option("wsgi-file"),
        Ok(None) => None,
    };
    found.ok_or_else(|| {
        " (config files end in .ini or .xml, apps in .py; everything else needs an option, e.g. --http-socket :8000)"
            .to_owned()
    })
}

/// One setting in command-line order: an option from the command line, or an entry of a
/// config file named there.
enum Item {
    Arg(Arg),
    Entry(Entry),
}

/// Applies command-line options and config files, in order, to one [`VassalConfig`], in
/// uWSGI's order: every file is read first (includes in place), then every reference in
/// every value is resolved, then the settings are applied in order.
struct Loader<'e> {
    config: VassalConfig,
    ph: Placeholders<'e>,
    /// Config files read so far, against [`Limits::include_files`].
    files: usize,
    /// The settings, in order, until [`Loader::finish`] applies them.
    items: Vec<Item>,
    /// Keys config files set that are neither rsgi's options nor uWSGI's (a config's own
    /// variables, which uWSGI ignores), with where: errors under `strict`.
    foreign: Vec<(PathBuf, usize, String)>,
}

impl<'e> Loader<'e> {
    fn new(env: EnvLookup<'e>, system: &'e dyn System) -> Self {
        Self::with_limits(env, system, Limits::DEFAULT)
    }

    fn with_limits(env: EnvLookup<'e>, system: &'e dyn System, limits: Limits) -> Self {
        Loader {
            config: VassalConfig::default(),
            ph: Placeholders::with_limits(env, system, limits),
            files: 0,
            items: Vec::new(),
            foreign: Vec::new(),
        }
    }

    /// Take one command-line option: a config file is read now, a placeholder defined now,
    /// anything else kept for [`Loader::finish`].
    fn collect_arg(&mut self, arg: Arg) -> Result<(), ConfigError> {
        match (arg.spec.kind, arg.value.as_deref()) {
            (Kind::Config(format), Some(spec)) => {
                if split_section(spec).0.is_empty() {
                    return Err(ConfigError::cli(
                        Some(&arg.given),
                        format!("'{spec}' names no file"),
                    ));
                }
                self.load(spec, format)
            }
            (Kind::Placeholder, Some(v)) => {
                if let Ok(Applied::Placeholder(name, value)) =
                    options::apply(arg.spec, Some(v), &mut self.config)
                {
                    self.ph.define(&name, &value);
                }
                self.items.push(Item::Arg(arg));
                Ok(())
            }
            (_, value) => {
                if let Some(v) = value {
                    self.ph.define(&arg.given, v);
                }
                self.items.push(Item::Arg(arg));
                Ok(())
            }
        }
    }

    /// Read a top-level config file; its entries join the settings.
    fn load(&mut self, spec: &str, format: Format) -> Result<(), ConfigError> {
        let mut entries = Vec::new();
        let mut blocks = Blocks::default();
        let mut reading = Reading {
            ph: &mut self.ph,
            files: &mut self.files,
            blocks: &mut blocks,
        };
        reading.collect(spec, format, None, 0, &mut entries)?;
        if self.config.source.is_none() {
            self.config.source = Some(PathBuf::from(split_section(spec).0));
        }
        self.items.extend(entries.into_iter().map(Item::Entry));
        Ok(())
    }

    /// Resolve every entry's references, then apply every setting in order. (All values
    /// are resolved before any is applied, so a key used only as `%(key)`, even on a later
    /// line, is known to be a placeholder, not a misspelt option.)
    fn finish(&mut self) -> Result<(), ConfigError> {
        let mut items = std::mem::take(&mut self.items);
        for item in &mut items {
            let Item::Entry(entry) = item else { continue };
            let resolved = self
                .ph
                .resolve(&entry.value)
                .map_err(|msg| ConfigError::line(&entry.file, entry.line, msg))?;
            entry.value = resolved.value;
            if lists_request_variables(&entry.key) {
                continue;
            }
            for why in resolved.notes {
                self.config.notices.push(Notice {
                    origin: format!("{}:{}", entry.file.display(), entry.line),
                    option: entry.key.clone(),
                    why,
                });
            }
        }
        for item in &items {
            match item {
                Item::Arg(arg) => self.apply_arg(arg)?,
                Item::Entry(entry) => self.apply_entry(entry)?,
            }
        }
        // `protocol = http` makes the `socket` lines HTTP sockets, wherever it was set
        // (uWSGI applies it to every socket given without a protocol).
        if let Some(protocol) = self.config.protocol {
            for socket in &mut self.config.sockets {
                if socket.protocol == crate::config::Protocol::Uwsgi {
                    socket.protocol = protocol;
                }
            }
        }
        if self.config.strict {
            if let Some((file, line, key)) = self.foreign.first() {
                return Err(ConfigError::line(
                    file,
                    *line,
                    format!("unknown option '{key}' (strict = true: unknown keys are errors)"),
                ));
            }
        }
        Ok(())
    }

    /// Apply one command-line option.
    fn apply_arg(&mut self, arg: &Arg) -> Result<(), ConfigError> {
        // `--master=` is bare `--master`, as `master =` in a file.
        let value = arg.value.as_deref().filter(|v| !v.is_empty());
        let applied = options::apply(arg.spec, value, &mut self.config)
            .map_err(|msg| ConfigError::cli(Some(&arg.given), msg))?;
        self.note("command line".to_owned(), &arg.given, applied);
        Ok(())
    }

    fn apply_entry(&mut self, entry: &Entry) -> Result<(), ConfigError> {
        let here = |msg: String| ConfigError::line(&entry.file, entry.line, msg);
        let Some(spec) = options::find(&entry.key) else {
            if self.ph.is_referenced(&entry.key) {
                return Ok(()); // a user placeholder: `base = /srv` ... `%(base)`
            }
            if entry.value.is_empty() && !is_option_like(&entry.key) {
                // A line of prose (a blog's "...", `processes 4`): uWSGI takes it for an
                // unknown option and ignores it; rsgi skips it too, and says so.
                self.config.notices.push(Notice {
                    origin: format!("{}:{}", entry.file.display(), entry.line),
                    option: entry.key.clone(),
                    why: "not 'option = value' and not an option name: line skipped (uWSGI \
                          ignores it as an unknown option)"
                        .to_owned(),
                });
                return Ok(());
            }
            if uwsgi_names::is_uwsgi_option(&entry.key) {
                return Err(here(format!(
                    "'{}' is a uWSGI option rsgi does not have (docs/migration.md lists what \
                     rsgi supports and what to use instead)",
                    entry.key
                )));
            }
            // Short names are too close to everything to call a typo (`app`, `pp`).
            if let Some(s) = options::suggest(&entry.key).filter(|_| entry.key.len() >= 4) {
                return Err(here(format!(
                    "unknown option '{}' (did you mean '{s}'?)",
                    entry.key
                )));
            }
            // Neither rsgi's nor uWSGI's, and no typo of one: a config's own variable
            // (`base = /srv/app`, `project = blog`), which uWSGI ignores. So does rsgi, with
            // a notice; `strict = true` makes it an error, as in uWSGI.
            self.foreign
                .push((entry.file.clone(), entry.line, entry.key.clone()));
            self.config.notices.push(Notice {
                origin: format!("{}:{}", entry.file.display(), entry.line),
                option: entry.key.clone(),
                why: "ignored: not an option of rsgi or uWSGI (uWSGI ignores unknown keys; \
                      usable as %(name); strict = true makes it an error)"
                    .to_owned(),
            });
            return Ok(());
        };
        let value = Some(entry.value.as_str()).filter(|v| !v.is_empty());
        let applied = options::apply(spec, value, &mut self.config)
            .map_err(|msg| here(format!("{}: {msg}", entry.key)))?;
        if let Applied::Action(..) = applied {
            return Err(here(format!(
                "'{}' can only be given on the command line",
                entry.key
            )));
        }
        let origin = format!("{}:{}", entry.file.display(), entry.line);
        self.note(origin, &entry.key, applied);
        Ok(())
    }

    /// Record the notice an applied setting asks for, if any.
    fn note(&mut self, origin: String, option: &str, applied: Applied) {
        let why = match applied {
            Applied::Ignored(why) => format!("ignored: {why}"),
            Applied::Noted(why) => why,
            // Includes were read and placeholders defined while collecting; actions are
            // handled before anything is applied.
            Applied::Set
            | Applied::Include(..)
            | Applied::Placeholder(..)
            | Applied::Action(..) => return,
        };
        self.config.notices.push(Notice {
            origin,
            option: option.to_owned(),
            why,
        });
    }
}

/// Whether `key` could be an option name (a letter, then letters, digits, `-` and `_`), so
/// that a bare unknown one is a typo, not prose.
fn is_option_like(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Options whose values hold uWSGI's request variables (`%(addr)`, `%(status)`), which are
/// meant to stay as written: no notice for them.
fn lists_request_variables(key: &str) -> bool {
    matches!(key, "log-format" | "logformat" | "log-req-format")
}

/// The state of reading one configuration's files: placeholders, the count of files, and
/// the config-logic blocks.
struct Reading<'r, 'e> {
    ph: &'r mut Placeholders<'e>,
    files: &'r mut usize,
    blocks: &'r mut Blocks,
}

impl<'e> Reading<'_, 'e> {
    /// Read the config file `spec` (`path`, `path:section`, or `:section` of `current`) and
    /// append its entries to `out`, reading included files in place. `depth` is 0 for a
    /// file named on the command line or given to [`load_file`].
    fn collect(
        &mut self,
        spec: &str,
        format: Format,
        current: Option<&Path>,
        depth: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), ConfigError> {
        let (path, section) = split_section(spec);
        let path = match (path, current) {
            ("", Some(current)) => current.to_path_buf(),
            _ => PathBuf::from(path),
        };
        let format = match format {
            Format::ByName => format_of(&path)
                .map_err(|msg| ConfigError::file(&path, msg))?
                .unwrap_or(Format::Ini),
            known => known,
        };
        *self.files += 1;
        let files = &mut *self.files;
        let blocks = &mut *self.blocks;
        let mut visit = |entry: Entry, ph: &mut Placeholders<'e>| -> Result<(), ConfigError> {
            for entry in config_logic(entry, blocks, ph)? {
                define(ph, &entry.key, &entry.value)
                    .map_err(|msg| ConfigError::line(&entry.file, entry.line, msg))?;
                take_entry(entry, ph, files, blocks, depth, out)?;
            }
            Ok(())
        };
        match format {
            Format::Xml => xml::visit_file(&path, section, self.ph, &mut visit),
            Format::Ini | Format::ByName => ini::visit_file(&path, section, self.ph, &mut visit),
        }
    }
}

/// Run one entry through the config-logic blocks ([`Blocks::take`]): the entries it gives
/// (none, itself, or one per loop item). A condition's argument is resolved first, with what
/// is set so far.
fn config_logic(
    mut entry: Entry,
    blocks: &mut Blocks,
    ph: &mut Placeholders<'_>,
) -> Result<Vec<Entry>, ConfigError> {
    let op = options::find(&entry.key).and_then(|o| match o.kind {
        Kind::Logic(op) => Some(op),
        _ => None,
    });
    if op.is_some() {
        entry.value = ph
            .resolve(&entry.value)
            .map_err(|msg| ConfigError::line(&entry.file, entry.line, msg))?
            .value;
    }
    let ph: &Placeholders<'_> = ph;
    let env = |n: &str| ph.env_var(n);
    let opt = |n: &str| ph.defined(n);
    let hostname = || ph.hostname();
    let read = |path: &str| ph.read_file(Path::new(path)).map_err(|e| e.to_string());
    let facts = SystemFacts {
        system: ph.system(),
        env: &env,
        opt: &opt,
        hostname: &hostname,
        read: &read,
        reload: ph.env_var(REEXEC_ENV).is_some(),
    };
    blocks.take(entry, op, &facts)
}

/// Take one entry that config logic let through: read it in place if it names a config
/// file, else add it to `out`.
fn take_entry<'e>(
    entry: Entry,
    ph: &mut Placeholders<'e>,
    files: &mut usize,
    blocks: &mut Blocks,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), ConfigError> {
    let include = options::find(&entry.key).and_then(|o| match o.kind {
        Kind::Config(format) => Some(format),
        _ => None,
    });
    let Some(format) = include else {
        out.push(entry);
        return Ok(());
    };
    if entry.value.is_empty() {
        return Err(ConfigError::line(
            &entry.file,
            entry.line,
            format!("{}: needs a file name", entry.key),
        ));
    }
    // The file name is resolved now, with what is defined so far (uWSGI reads an
    // include at once and would look for a file literally named `%(base)/x.ini`).
    let name = ph
        .resolve(&entry.value)
        .map_err(|msg| ConfigError::line(&entry.file, entry.line, msg))?
        .value;
    let here = |msg: String| {
        ConfigError::line(
            &entry.file,
            entry.line,
            format!("{} = {name}: {msg}", entry.key),
        )
    };
    let limits = ph.limits();
    if depth + 1 >= limits.include_depth {
        return Err(here(format!(
            "config files nest more than {} deep (do they include each other?)",
            limits.include_depth
        )));
    }
    if *files >= limits.include_files {
        return Err(here(format!(
            "more than {} config files in one configuration",
            limits.include_files
        )));
    }
    let mut inner = Reading { ph, files, blocks };
    inner
        .collect(&name, format, Some(&entry.file), depth + 1, out)
        .map_err(|e| match e {
            // Whatever is wrong with the included file as a whole (it cannot be
            // read, is a FIFO, too big, has no section) is reported at the line that
            // names it; errors inside it keep their own `file:line`.
            ConfigError::File { .. } | ConfigError::Read { .. } => here(e.to_string()),
            other => other,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{ListenAddr, Protocol, SocketSpec};
    use crate::notify::{EXIT_CONFIG, EXIT_USAGE};
    use crate::system::testing::{TempDir, FIXED};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// [`parse_args_with`] with the tests' fixed system.
    fn parse_args(args: &[String], env: EnvLookup<'_>) -> Result<Invocation, ConfigError> {
        parse_args_with(args, env, &FIXED)
    }

    /// [`load_file_with`] with the tests' fixed system.
    fn load_file(path: &str, env: EnvLookup<'_>) -> Result<VassalConfig, ConfigError> {
        load_file_with(path, env, &FIXED)
    }

    /// A loaded file lists every other file it read, once, with what each held; the top
    /// file is not among them, and a file that could not be read has no digest.
    #[test]
    fn a_loaded_file_lists_what_it_included() {
        let dir = TempDir::new("included");
        let base = dir.write("base.ini", "[uwsgi]\nprocesses = 2\n");
        let secret = dir.write("secret.txt", "s3cret\n");
        let top = dir.write(
            "app.ini",
            "[uwsgi]\nini = %dbase.ini\nini = %dbase.ini\nmodule = app\nenv = K=@(%dsecret.txt)\nenv = M=@(%dmissing.txt)\n",
        );
        let cfg = load_file(&top, &no_env).unwrap();
        let paths: Vec<String> = cfg
            .includes
            .iter()
            .map(|i| i.path.display().to_string())
            .collect();
        let missing = dir.0.join("missing.txt");
        assert_eq!(
            paths,
            [base.clone(), secret.clone(), missing.display().to_string()]
        );
        let digest = |text: &str| {
            Some((
                text.len() as u64,
                crate::bounds::Included::of_file(Path::new("x"), &{
                    let p = dir.write("probe", text);
                    std::fs::File::open(p).unwrap()
                })
                .digest
                .unwrap()
                .1,
            ))
        };
        assert_eq!(cfg.includes[0].digest, digest("[uwsgi]\nprocesses = 2\n"));
        assert_eq!(cfg.includes[1].digest, digest("s3cret\n"));
        assert_eq!(cfg.includes[2].digest, None);
        assert!(cfg.includes.iter().all(|i| !i.changed(&FIXED)));
        std::fs::write(&base, "[uwsgi]\nprocesses = 3\n").unwrap();
        assert!(cfg.includes[0].changed(&FIXED));
        std::fs::write(&missing, "now here").unwrap();
        assert!(cfg.includes[2].changed(&FIXED));
        assert!(!cfg.includes[1].changed(&FIXED));
        // Nothing included: nothing listed.
        let alone = dir.write("alone.ini", "[uwsgi]\nmodule = app\n");
        assert!(load_file(&alone, &no_env).unwrap().includes.is_empty());
    }

    /// A load that fails still says what it read: the include that is missing (no
    /// digest) or does not parse, and what was read before it; a load that stops at the
    /// top file read nothing else. Each row: the top file's text, the files beside it,
    /// and the files listed (by name, with whether they had a digest).
    #[test]
    fn a_failed_load_lists_what_it_read() {
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, bool)]);
        let rows: &[Row<'_>] = &[
            // The include is missing.
            ("[uwsgi]\nini = %dother.ini\n", &[], &[("other.ini", false)]),
            // The include does not parse; what was read before it is listed too.
            (
                "[uwsgi]\nini = %dbase.ini\nini = %dother.ini\nmodule = app\n",
                &[
                    ("base.ini", "[uwsgi]\nprocesses = 2\n"),
                    ("other.ini", "[uwsgi]\nharakri = 5\n"),
                ],
                &[("base.ini", true), ("other.ini", true)],
            ),
            // Reading stops in the top file before the include: nothing else was read.
            ("[uwsgi]\nfor-times = x\nini = %dother.ini\n", &[], &[]),
            // An unknown option is found once everything is read: the include is listed.
            (
                "[uwsgi]\nharakri = 5\nini = %dother.ini\n",
                &[("other.ini", "[uwsgi]\n")],
                &[("other.ini", true)],
            ),
            // A load that fails after reading (no app is no error here; a bad value is).
            (
                "[uwsgi]\nini = %dbase.ini\nprocesses = many\n",
                &[("base.ini", "[uwsgi]\n")],
                &[("base.ini", true)],
            ),
        ];
        for (top, beside, want) in rows {
            let dir = TempDir::new("failed-reads");
            for (name, text) in *beside {
                dir.write(name, text);
            }
            let top_path = dir.write("app.ini", top);
            let (result, read) = load_file_reads(&top_path, &no_env, &FIXED);
            assert!(result.is_err(), "{top:?} loaded");
            let got: Vec<(String, bool)> = read
                .iter()
                .map(|i| {
                    let name = i.path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, i.digest.is_some())
                })
                .collect();
            let want: Vec<(String, bool)> =
                want.iter().map(|(n, d)| ((*n).to_owned(), *d)).collect();
            assert_eq!(got, want, "{top:?}");
        }
        // A load that succeeds lists the same files as its config's includes.
        let dir = TempDir::new("ok-reads");
        dir.write("base.ini", "[uwsgi]\nprocesses = 2\n");
        let top = dir.write("app.ini", "[uwsgi]\nini = %dbase.ini\nmodule = app\n");
        let (result, read) = load_file_reads(&top, &no_env, &FIXED);
        assert_eq!(result.unwrap().includes, read);
        assert_eq!(read.len(), 1);
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn serve(line: &str) -> VassalConfig {
        match parse_args(&args(line), &no_env) {
            Ok(Invocation::Serve(c)) => *c,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn error(line: &str) -> (String, i32) {
        let e = parse_args(&args(line), &no_env).unwrap_err();
        (e.to_string(), e.exit_code())
    }

    fn tcp(protocol: Protocol, host: &str, port: u16) -> SocketSpec {
        SocketSpec {
            protocol,
            addr: ListenAddr::Tcp {
                host: host.into(),
                port,
            },
        }
    }

    #[test]
    fn option_forms() {
        type Check = fn(&VassalConfig) -> bool;
        let cases: &[(&str, Check)] = &[
            ("--processes 4", |c| c.processes == 4),
            ("--processes=4", |c| c.processes == 4),
            ("--process 4", |c| c.processes == 4),
            ("--workers=3", |c| c.processes == 3),
            ("-p 4", |c| c.processes == 4),
            ("-p4", |c| c.processes == 4),
            ("-M", |c| c.master),
            ("--master", |c| c.master),
            ("--master --master=false", |c| !c.master),
            ("--master=off", |c| !c.master),
            ("--master=", |c| c.master),
            ("-MT", |c| c.master && c.notices.len() == 1),
            ("-Mp 2", |c| c.master && c.processes == 2),
            ("-s :3030", |c| {
                c.sockets == [tcp(Protocol::Uwsgi, "", 3030)]
            }),
            ("-s:3030", |c| c.sockets == [tcp(Protocol::Uwsgi, "", 3030)]),
            (
                "--socket=127.0.0.1:1 --http :2 --http-socket=[::1]:3",
                |c| {
                    c.sockets
                        == [
                            tcp(Protocol::Uwsgi, "127.0.0.1", 1),
                            tcp(Protocol::Http, "", 2),
                            tcp(Protocol::Http, "::1", 3),
                        ]
                },
            ),
            ("--chmod-socket", |c| c.chmod_socket == Some(0o666)),
            ("--chmod-socket=660", |c| c.chmod_socket == Some(0o660)),
            ("--chmod-socket 660", |c| c.chmod_socket == Some(0o660)),
            ("-C", |c| c.chmod_socket == Some(0o666)),
            ("-C660", |c| c.chmod_socket == Some(0o660)),
            ("-C 600", |c| c.chmod_socket == Some(0o600)),
            ("-w mysite.wsgi", |c| {
                c.module.as_deref() == Some("mysite.wsgi")
            }),
            ("-H /srv/venv", |c| {
                c.home == Some(PathBuf::from("/srv/venv"))
            }),
            ("-b 32768 -t 30 -R 1000 -l 50", |c| {
                c.buffer_size == 32768
                    && c.harakiri == Some(30)
                    && c.max_requests == Some(1000)
                    && c.listen == 50
            }),
            ("-L -d /var/log/x.log", |c| {
                c.disable_logging && c.daemonize == Some(PathBuf::from("/var/log/x.log"))
            }),
            ("--env A=1 --env B=2=3", |c| {
                c.env == [("A".into(), "1".into()), ("B".into(), "2=3".into())]
            }),
            ("--pythonpath /a --pp /b --python-path=/c", |c| {
                c.pythonpath
                    == [
                        PathBuf::from("/a"),
                        PathBuf::from("/b"),
                        PathBuf::from("/c"),
                    ]
            }),
            ("--stats :9191 --stats-http", |c| {
                c.stats.as_deref() == Some(":9191") && c.stats_http
            }),
            ("--logdate=%Y", |c| {
                c.logdate && c.logdate_format.as_deref() == Some("%Y")
            }),
            ("--plugins python --enable-threads", |c| {
                c.notices
                    .iter()
                    .map(|n| n.option.as_str())
                    .collect::<Vec<_>>()
                    == ["plugins", "enable-threads"]
                    && c.notices.iter().all(|n| n.origin == "command line")
            }),
            ("app.py", |c| c.wsgi_file == Some(PathBuf::from("app.py"))),
            ("--master -- app.py", |c| {
                c.master && c.wsgi_file == Some(PathBuf::from("app.py"))
            }),
            ("--env=X=-1", |c| c.env == [("X".into(), "-1".into())]),
            ("", |c| *c == VassalConfig::default()),
        ];
        for (line, check) in cases {
            let c = serve(line);
            assert!(check(&c), "{line}: {c:?}");
        }
    }

    #[test]
    fn actions() {
        let p = |line: &str| parse_args(&args(line), &no_env).unwrap();
        assert_eq!(
            p("--stop /path/to/uwsgi-master.pid"),
            Invocation::Stop("/path/to/uwsgi-master.pid".into())
        );
        assert_eq!(
            p("--reload=/run/a.pid"),
            Invocation::Reload("/run/a.pid".into())
        );
        assert_eq!(p("--version"), Invocation::Version);
        assert!(matches!(p("--help"), Invocation::Help(h) if h.contains("--processes")));
        assert!(matches!(p("-h"), Invocation::Help(_)));
        // Help wins over errors and other actions anywhere on the line.
        assert!(matches!(p("--bogus --stop x --help"), Invocation::Help(_)));
        assert!(matches!(p("--processes four -h"), Invocation::Help(_)));
        assert_eq!(
            p("--ini /nonexistent.ini --stop /x.pid"),
            Invocation::Stop("/x.pid".into())
        );
    }

    #[test]
    fn command_line_errors() {
        let cases: &[(&str, &str)] = &[
            ("--proccesses 4", "command line: unknown option '--proccesses' (did you mean '--processes'?)"),
            ("--xyzzy", "command line: unknown option '--xyzzy'"),
            ("-q", "command line: unknown option '-q'"),
            ("--processes", "--processes: missing value"),
            ("--socket --master", "--socket: missing value"),
            ("-p", "-p: missing value"),
            ("--processes four", "--processes: 'four' is not a whole number"),
            ("--process 0", "--process: 0 is too small (at least 1)"),
            ("-p x", "-p: 'x' is not a whole number"),
            ("--buffer-size=65536", "--buffer-size: 65536 is too large (at most 65535)"),
            ("--master false", "command line: unexpected argument 'false' (flags take their value after '=': --master=false)"),
            ("--version=2", "--version: takes no value"),
            ("--env NOEQ", "--env: expected KEY=VALUE, found 'NOEQ'"),
            ("--socket 8000", "--socket: '8000' would be a unix socket file named 8000; for TCP port 8000 write ':8000'"),
            (":port", "command line: unexpected argument ':port' (config files end in .ini or .xml, apps in .py; everything else needs an option, e.g. --http-socket :8000)"),
            ("app.yaml", "command line: unexpected argument 'app.yaml': rsgi reads ini and XML config files, not .yaml"),
            ("--ini :sect", "--ini: ':sect' names no file"),
            ("--stop", "--stop: missing value"),
            ("--socket=", "--socket: needs a value"),
        ];
        for (line, want) in cases {
            assert_eq!(error(line), (want.to_string(), EXIT_USAGE), "{line}");
        }
    }

    #[test]
    fn files_and_options_apply_in_order() {
        let dir = TempDir::new("order");
        let ini = dir.write(
            "app.ini",
            "[uwsgi]\nsocket = :1\nprocesses = 2\nmaster = true\nplugins = python\n\n[prod]\nprocesses = 16\n",
        );
        let xml = dir.write(
            "app.xml",
            "<uwsgi>\n  <socket>:3</socket>\n  <threads>4</threads>\n</uwsgi>\n",
        );
        let c = serve(&format!(
            "--processes 8 --ini {ini} --socket :2 {xml} --threads=5"
        ));
        assert_eq!(c.processes, 2, "the ini comes after --processes 8");
        assert_eq!(c.threads, 5);
        assert!(c.master);
        let ports: Vec<String> = c.sockets.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(ports, [":1", ":2", ":3"]);
        assert_eq!(c.source, Some(PathBuf::from(&ini)));
        assert_eq!(
            c.notices,
            [Notice {
                origin: format!("{ini}:5"),
                option: "plugins".into(),
                why: "ignored: rsgi has Python built in; there are no plugins".into()
            }]
        );
        let c = serve(&format!("{ini} -p 3"));
        assert_eq!(c.processes, 3);
        let c = serve(&format!("{ini}:prod"));
        assert_eq!((c.processes, c.sockets.len()), (16, 0));
        let c = serve(&format!("-x {xml}"));
        assert_eq!(c.threads, 4);
        // Options on the command line are placeholders for later files.
        let uses = dir.write("uses.ini", "[uwsgi]\nchdir = /srv/%(project)\n");
        let c = serve(&format!("--set-ph project=blog --ini {uses}"));
        assert_eq!(c.chdir, Some(PathBuf::from("/srv/blog")));
        // ... and, as in uWSGI, also for files before them: references are resolved once
        // the whole command line is read.
        let c = serve(&format!("--ini {uses} --set-ph project=x"));
        assert_eq!(c.chdir, Some(PathBuf::from("/srv/x")));
    }

    #[test]
    fn file_errors_name_file_and_line() {
        let dir = TempDir::new("errors");
        let cases: &[(&str, &str, &str)] = &[
            ("typo.ini", "[uwsgi]\nmaster = true\n\n\n\n\nproccesses = 4\n", ":7: unknown option 'proccesses' (did you mean 'processes'?)"),
            ("gevent.ini", "[uwsgi]\ngevent = 100\n", ":2: gevent: not supported by rsgi: rsgi serves requests on threads, not greenlets: use threads = N (and processes = N)"),
            ("int-glued.ini", "[uwsgi]\nbuffer-size = 32k\n", ":2: buffer-size: '32k' is not a whole number (uWSGI would read 32 and drop 'k')"),
            ("int.ini", "[uwsgi]\n\nbuffer-size = 65536\n", ":3: buffer-size: 65536 is too large (at most 65535)"),
            ("case.ini", "[uwsgi]\nSocket = :1\n", ":2: unknown option 'Socket' (did you mean 'socket'?)"),
            ("action.ini", "[uwsgi]\nstop = /x.pid\n", ":2: 'stop' can only be given on the command line"),
            ("empty.ini", "[uwsgi]\nsocket =\n", ":2: socket: needs a value"),
            ("vhost.ini", "[uwsgi]\nvhost = true\n", ":2: vhost: not supported: rsgi serves one app per vassal; vhost = true (apps chosen per request) is not supported"),
            ("nosection.ini", "socket = :1\n", ": no [uwsgi] or [rsgi] section"),
            ("bad.xml", "<uwsgi>\n<processes>x</processes>\n</uwsgi>", ":2: processes: 'x' is not a whole number"),
            ("unknown.xml", "<uwsgi>\n\n<sockets>:1</sockets>\n</uwsgi>", ":3: unknown option 'sockets' (did you mean 'socket'?)"),
        ];
        for (name, text, want) in cases {
            let path = dir.write(name, text);
            let flag = if name.ends_with(".xml") {
                "-x"
            } else {
                "--ini"
            };
            for line in [path.clone(), format!("{flag} {path}")] {
                let (msg, code) = error(&line);
                assert_eq!(msg, format!("{path}{want}"), "{line}");
                assert_eq!(code, EXIT_CONFIG, "{line}");
            }
            let err = load_file(&path, &no_env).unwrap_err();
            assert_eq!(err.to_string(), format!("{path}{want}"), "load_file {name}");
        }
        // A line without '=' is the key with an empty value: a flag turned on (uWSGI).
        let path = dir.write("noeq.ini", "[uwsgi]\nmaster\nprocesses = 2\n");
        let config = load_file(&path, &no_env).unwrap();
        assert_eq!(config.processes, 2);
        assert!(config.master);
        assert!(config.notices.is_empty(), "{:?}", config.notices);
        // ... and an unknown option without '=' is an unknown option.
        let path = dir.write("noeq-typo.ini", "[uwsgi]\nmastre\n");
        assert_eq!(
            load_file(&path, &no_env).unwrap_err().to_string(),
            format!("{path}:2: unknown option 'mastre' (did you mean 'master'?)")
        );
        let (msg, code) = error("--ini /nonexistent/x.ini");
        assert!(
            msg.starts_with("/nonexistent/x.ini: cannot read: "),
            "{msg}"
        );
        assert_eq!(code, EXIT_CONFIG);
    }

    #[test]
    fn user_placeholders_are_not_unknown_options() {
        let dir = TempDir::new("ph");
        let ok = dir.write(
            "ok.ini",
            "[uwsgi]\nproject = blog\nbase = /srv\nchdir = %(base)/%(project)\nmodule = %(project).wsgi\n",
        );
        let c = load_file(&ok, &no_env).unwrap();
        assert_eq!(c.chdir, Some(PathBuf::from("/srv/blog")));
        assert_eq!(c.module.as_deref(), Some("blog.wsgi"));
    }

    #[test]
    fn protocol_applies_to_socket_lines_wherever_it_is() {
        let dir = TempDir::new("protocol");
        for (lines, want) in [
            (
                "protocol = http\nsocket = :1\nhttp-socket = :2",
                Ok(["http", "http"]),
            ),
            (
                "socket = :1\nhttp-socket = :2\nprotocol = http",
                Ok(["http", "http"]),
            ),
            (
                "socket = :1\nhttp-socket = :2\nprotocol = uwsgi",
                Ok(["uwsgi", "http"]),
            ),
            ("socket = :1\nhttp-socket = :2", Ok(["uwsgi", "http"])),
            (
                "socket = :1\nprotocol = fastcgi",
                Err(":3: protocol: rsgi speaks uwsgi and http, not 'fastcgi'"),
            ),
        ] {
            let ini = dir.write("p.ini", &format!("[uwsgi]\n{lines}\n"));
            match (load_file(&ini, &no_env), want) {
                (Ok(c), Ok(want)) => {
                    let got: Vec<&str> = c.sockets.iter().map(|s| s.protocol.as_str()).collect();
                    assert_eq!(got, want, "{lines}");
                }
                (Err(e), Err(msg)) => {
                    assert!(
                        e.to_string().starts_with(&format!("{ini}{msg}")),
                        "{lines}: {e}"
                    )
                }
                (got, _) => panic!("{lines}: {got:?}"),
            }
        }
    }

    /// Keys that are not rsgi's options, by what they are (uWSGI's own rule is "ignore
    /// unknown keys"; rsgi keeps that only for keys that are no option anywhere).
    #[test]
    fn unknown_keys_by_what_they_are() {
        let dir = TempDir::new("unknown");
        // (lines, Ok(notice for the key) | Err(message after file:line))
        let rows: &[(&str, Result<&str, &str>)] = &[
            // Neither rsgi's nor uWSGI's, never used: a config's own variable, ignored
            // with a notice (uWSGI ignores it silently).
            ("projet = blog", Ok("projet")),
            ("app = bos", Ok("app")),
            ("RuntimeDirectory = uwsgi", Ok("RuntimeDirectory")),
            // ... unless strict, as uWSGI's strict.
            ("strict = true\nprojet = blog", Err(":3: unknown option 'projet' (strict = true: unknown keys are errors)")),
            ("projet = blog\nstrict", Err(":2: unknown option 'projet' (strict = true: unknown keys are errors)")),
            // A typo of a real option is an error, whatever strict says.
            ("proccesses = 4", Err(":2: unknown option 'proccesses' (did you mean 'processes'?)")),
            ("vaccum = true", Err(":2: unknown option 'vaccum' (did you mean 'vacuum'?)")),
            // A real uWSGI option rsgi lacks is never "unknown".
            ("tuntap-router = tun0", Err(":2: 'tuntap-router' is a uWSGI option rsgi does not have (docs/migration.md lists what rsgi supports and what to use instead)")),
        ];
        for (i, (lines, want)) in rows.iter().enumerate() {
            let ini = dir.write(&format!("u{i}.ini"), &format!("[uwsgi]\n{lines}\n"));
            match (load_file(&ini, &no_env), want) {
                (Ok(c), Ok(key)) => {
                    assert_eq!(c.notices.len(), 1, "{lines}: {:?}", c.notices);
                    assert_eq!(c.notices[0].option, *key, "{lines}");
                    assert!(
                        c.notices[0].why.starts_with("ignored: not an option"),
                        "{lines}"
                    );
                }
                (Err(e), Err(msg)) => assert_eq!(e.to_string(), format!("{ini}{msg}"), "{lines}"),
                (got, _) => panic!("{lines}: {got:?}"),
            }
        }
    }

    #[test]
    fn includes() {
        let dir = TempDir::new("incl");
        let base = dir.write(
            "base.ini",
            "[uwsgi]\nmaster = true\nroot = %d\nprocesses = 2\n",
        );
        let main = dir.write(
            "main.ini",
            &format!("[uwsgi]\nini = {base}\nchdir = %(root)app\nprocesses = 4\nini = :extra\nsocket = %d%n.sock\n\n[extra]\nthreads = 3\n"),
        );
        let c = load_file(&main, &no_env).unwrap();
        assert!(c.master);
        assert_eq!(
            c.processes, 4,
            "main's later line overrides the included value"
        );
        assert_eq!(c.threads, 3);
        let d = format!("{}/", std::fs::canonicalize(&dir.0).unwrap().display());
        assert_eq!(c.chdir, Some(PathBuf::from(format!("{d}app"))));
        assert_eq!(
            c.sockets[0].addr,
            ListenAddr::Unix(PathBuf::from(format!("{d}main.sock"))),
            "magic vars are the includer's again after an include"
        );
        assert_eq!(c.source, Some(PathBuf::from(&main)));
        let xml = dir.write(
            "inc.xml",
            &format!("<uwsgi><ini>{main}</ini><threads>9</threads></uwsgi>"),
        );
        let c = load_file(&xml, &no_env).unwrap();
        assert_eq!((c.processes, c.threads), (4, 9));
        let looped = dir.write("loop.ini", "[uwsgi]\nini = %p\n");
        let err = load_file(&looped, &no_env).unwrap_err().to_string();
        assert!(err.contains("nest more than 16 deep"), "{err}");
        assert!(err.starts_with(&format!("{looped}:2: ini = ")), "{err}");
    }

    /// Load `file` with `limits`, as [`load_file`] does with the defaults.
    fn load_with(file: &str, limits: Limits) -> Result<VassalConfig, String> {
        let mut loader = Loader::with_limits(&no_env, &FIXED, limits);
        loader.load(file, Format::Ini).map_err(|e| e.to_string())?;
        loader.finish().map_err(|e| e.to_string())?;
        Ok(loader.config)
    }

    #[test]
    fn every_cap_is_an_error_naming_file_and_line() {
        let dir = TempDir::new("caps");
        let small = Limits {
            file_bytes: 200,
            value_bytes: 64,
            total_bytes: 4096,
            include_depth: 3,
            include_files: 4,
            nesting_depth: 16,
        };
        let leaf = dir.write(
            "leaf.ini",
            "[uwsgi]
threads = 2
",
        );
        let big = dir.write(
            "big.ini",
            &format!(
                "[uwsgi]
; {}
",
                "x".repeat(300)
            ),
        );
        // Not a regular file (a FIFO needs the real, non-blocking opening: `rsgi-os` tests
        // it through this loader).
        let odd = dir.0.join("dir.ini");
        std::fs::create_dir(&odd).unwrap();
        let odd = odd.display().to_string();
        // (name, text, Ok(threads) or Err(message after the path))
        let cases: Vec<(&str, String, Result<u32, String>)> = vec![
            ("value-ok.ini", format!("[uwsgi]\nchdir = {}\nthreads = 3\n", "x".repeat(64)), Ok(3)),
            (
                "value.ini",
                format!("[uwsgi]\nset-ph = a={}\nchdir = %(a)%(a)\n", "x".repeat(40)),
                Err(":3: the value expands to more than 64 bytes (placeholders repeating placeholders?)".into()),
            ),
            (
                "bomb.ini",
                "[uwsgi]\nset-ph = a=xxxxxxxx\nset-ph = b=%(a)%(a)%(a)%(a)\nset-ph = c=%(b)%(b)%(b)%(b)\n".into(),
                Err(":4: the value expands to more than 64 bytes (placeholders repeating placeholders?)".into()),
            ),
            (
                "total.ini",
                format!("[uwsgi]\nset-ph = a={}\nchdir = %(a)\nchdir = %(a)\n", "y".repeat(50)), // with total_bytes 150
                Err(":3: the configuration's values expand to more than 150 bytes in all".into()),
            ),
            ("include-ok.ini", format!("[uwsgi]\nini = {leaf}\n"), Ok(2)),
            (
                "dir-include.ini",
                format!("[uwsgi]\nthreads = 1\nini = {odd}\n"),
                Err(format!(":3: ini = {odd}: {odd}: not a regular file (a directory)")),
            ),
            (
                "zero.ini",
                "[uwsgi]\nini = /dev/zero\n".into(),
                Err(":2: ini = /dev/zero: /dev/zero: not a regular file (a character device)".into()),
            ),
            (
                "big-include.ini",
                format!("[uwsgi]\nini = {big}\n"),
                Err(format!(":2: ini = {big}: {big}: 311 bytes; a config file may hold at most 200")),
            ),
            (
                "count.ini",
                format!("[uwsgi]\nini = {leaf}\nini = {leaf}\nini = {leaf}\nini = {leaf}\n"),
                Err(format!(":5: ini = {leaf}: more than 4 config files in one configuration")),
            ),
            (
                "loop.ini",
                "[uwsgi]\nini = %p\n".into(),
                Err(format!(":2: ini = {}/loop.ini: config files nest more than 3 deep (do they include each other?)", dir.0.display())),
            ),
        ];
        for (name, text, want) in cases {
            let path = dir.write(name, &text);
            let limits = match name {
                "total.ini" => Limits {
                    total_bytes: 150,
                    ..small
                },
                _ => small,
            };
            let got = load_with(&path, limits).map(|c| c.threads);
            let want = want.map_err(|tail| format!("{path}{tail}"));
            assert_eq!(got, want, "{name}");
        }
        // The main file itself.
        assert_eq!(
            load_with(&big, small).unwrap_err(),
            format!("{big}: 311 bytes; a config file may hold at most 200")
        );
        assert_eq!(
            load_with(&odd, small).unwrap_err(),
            format!("{odd}: not a regular file (a directory)")
        );
        // And through the command line, with the default caps.
        let (msg, code) = error(&format!("--ini {odd}"));
        assert_eq!(msg, format!("{odd}: not a regular file (a directory)"));
        assert_eq!(code, EXIT_CONFIG);
    }

    /// uWSGI's `include` (format by name) and config logic across files: a block's
    /// condition sees what is set so far, a skipped line defines no placeholder, and an
    /// include inside a block that holds is read.
    #[test]
    fn include_and_config_logic() {
        let dir = TempDir::new("logic");
        let xml = dir.write("extra.xml", "<uwsgi><threads>3</threads></uwsgi>");
        let main = dir.write(
            "main.ini",
            &format!(
                "[uwsgi]\nprocesses = 2\nif-opt = processes=2\ninclude = {xml}\nelse\nthreads = 9\nendif\n\
                 if-env = NOPE\nproject = skipped\nendif\nchdir = /srv/%(project)\n\
                 for = a b\npythonpath = /lib/%(_)\nendfor\n\
                 if-exists = %p\nenv = SELF=%(_)\nendif\n"
            ),
        );
        let c = load_file(&main, &no_env).unwrap();
        assert_eq!((c.processes, c.threads), (2, 3));
        assert_eq!(c.chdir, Some(PathBuf::from("/srv/%(project)")));
        assert_eq!(
            c.pythonpath,
            [PathBuf::from("/lib/a"), PathBuf::from("/lib/b")]
        );
        let real = std::fs::canonicalize(&main).unwrap();
        assert_eq!(c.env, [("SELF".into(), real.display().to_string())]);
        // Config logic is for files; on the command line it is refused.
        let (msg, code) = error("--if-env HOME");
        assert_eq!(
            msg,
            "--if-env: config logic (if-*, for, else, endif) works only in config files"
        );
        assert_eq!(code, EXIT_USAGE);
    }

    /// `if-hostname-match` asks the injected [`System`] for the host name (the tests'
    /// is `web1`), and a bad regexp is an error at its `file:line`.
    #[test]
    fn hostname_match_asks_the_system() {
        let dir = TempDir::new("hostmatch");
        let ini = dir.write(
            "h.ini",
            "[uwsgi]\nmodule = app\nif-hostname-match = ^web[0-9]$\nprocesses = 4\nendif\n\
             if-not-hostname-match = ^web\nthreads = 8\nendif\n",
        );
        let c = load_file(&ini, &no_env).unwrap();
        assert_eq!((c.processes, c.threads), (4, 1));
        let bad = dir.write(
            "bad.ini",
            "[uwsgi]\nmodule = app\nif-hostname-match = web(\n",
        );
        assert_eq!(
            load_file(&bad, &no_env).unwrap_err().to_string(),
            format!(
                "{bad}:3: if-hostname-match: bad regexp 'web(': unclosed group (at character 4)"
            )
        );
    }

    #[test]
    fn load_file_formats_and_sections() {
        let dir = TempDir::new("load");
        let ini = dir.write("v.ini", "[uwsgi]\nsocket = :1\n[b]\nsocket = :2\n");
        let xml = dir.write("v.xml", "<uwsgi id=\"x\"><socket>:3</socket></uwsgi>");
        let noext = dir.write("vassal", "[rsgi]\nsocket = :4\n");
        let port = |spec: &str| {
            load_file(spec, &no_env).unwrap().sockets[0]
                .addr
                .to_string()
        };
        assert_eq!(port(&ini), ":1");
        assert_eq!(port(&format!("{ini}:b")), ":2");
        assert_eq!(port(&format!("{xml}:x")), ":3");
        assert_eq!(port(&xml), ":3");
        assert_eq!(port(&noext), ":4");
        assert_eq!(
            load_file(&ini, &no_env).unwrap().source,
            Some(PathBuf::from(&ini))
        );
        let json = dir.write("v.json", "{}");
        assert_eq!(
            load_file(&json, &no_env).unwrap_err().to_string(),
            format!("{json}: rsgi reads ini and XML config files, not .json")
        );
        assert_eq!(
            load_file(&format!("{ini}:nope"), &no_env)
                .unwrap_err()
                .to_string(),
            format!("{ini}: no [nope] section")
        );
    }

    #[test]
    fn env_is_injected() {
        let dir = TempDir::new("env");
        let ini = dir.write("e.ini", "[uwsgi]\nhome = $(VENV)\nenv = HOME=$(HOME)\n");
        let env = |k: &str| (k == "VENV").then(|| "/opt/venv".to_owned());
        let c = load_file(&ini, &env).unwrap();
        assert_eq!(c.home, Some(PathBuf::from("/opt/venv")));
        // An unset variable stays as written, with a notice (uWSGI's `$` pass keeps it).
        assert_eq!(c.env, [("HOME".into(), "$(HOME)".to_owned())]);
        assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
        assert_eq!(c.notices[0].origin, format!("{ini}:3"));
    }

    #[test]
    fn split_section_table() {
        let cases: &[(&str, (&str, Option<&str>))] = &[
            ("app.ini", ("app.ini", None)),
            ("app.ini:prod", ("app.ini", Some("prod"))),
            (":base", ("", Some("base"))),
            ("/a:b/app.ini", ("/a:b/app.ini", None)),
            ("/a:b/app.ini:s", ("/a:b/app.ini", Some("s"))),
            ("app.ini:", ("app.ini:", None)),
        ];
        for (input, want) in cases {
            assert_eq!(split_section(input), *want, "{input}");
        }
    }
}
