//! uWSGI's config logic (`ConfigLogic.rst`; `add_exported_option` and the
//! `uwsgi_logic_opt_*` functions in `core/config.c`), as a state machine over the entries of
//! a configuration, in reading order (includes in place):
//!
//! ```ini
//! if-env = DJANGO_DEBUG        ; if-not-env, if-opt, if-exists, if-file, if-dir, if-hostname, ...
//! py-autoreload = 1
//! else
//! processes = 8
//! endif                        ; also end-if, endfor, end-for, end
//! for = 8001 8002
//! http-socket = :%(_)          ; %(_) is the condition's value or the loop's item
//! endfor
//! ```
//!
//! As in uWSGI: a block's lines apply only if its condition holds (`for`: once per item);
//! `%(_)` in them becomes the condition's value; `else` applies its lines when the last
//! `if-*` did not hold; blocks do not nest (uWSGI exits with "recursive logic in options is
//! not supported"; rsgi names the line); a block left open runs to the end of the
//! configuration. Conditions are checked when their line is read, against what is set so
//! far (the environment, earlier options, the filesystem, the host name).

use std::path::Path;

use crate::error::ConfigError;
use crate::ini::Entry;
use crate::options::LogicOp;
use crate::system::{PathKind, System};

/// What the conditions look at, injected so the state machine is a pure function.
pub(crate) trait Facts {
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// The first value set so far for option or placeholder `name`.
    fn opt(&self, name: &str) -> Option<String>;
    /// The host name.
    fn hostname(&self) -> String;
    /// Whether `path` exists (`exists`), is a regular file (`file`) or a directory (`dir`).
    fn path_is(&self, path: &str, what: PathTest) -> bool;
    /// The paths `pattern` matches, as glob(3) with `GLOB_MARK | GLOB_NOCHECK` gives them
    /// (`for-glob`): sorted, directories with a trailing `/`, the pattern itself when
    /// nothing matches. An error for a pattern glob cannot read.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String>;
    /// The text of the file at `path`, read through the bounded config reader
    /// (`for-readline`).
    fn read(&self, path: &str) -> Result<String, String>;
    /// Whether the configuration is being read again for a reload (`if-reload`).
    fn is_reload(&self) -> bool;
}

/// What [`Facts::path_is`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathTest {
    /// Anything is there.
    Exists,
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// [`Facts`] about this system: the filesystem through the injected [`System`] (the only
/// way this crate looks at it), and the given environment, options and host.
pub(crate) struct SystemFacts<'f> {
    /// Paths and globs (`rsgi_os::config::Os` in the programs).
    pub system: &'f dyn System,
    /// Environment lookup.
    pub env: &'f dyn Fn(&str) -> Option<String>,
    /// Option lookup.
    pub opt: &'f dyn Fn(&str) -> Option<String>,
    /// The host name.
    pub hostname: &'f dyn Fn() -> String,
    /// Read a file through the bounded config reader.
    pub read: &'f dyn Fn(&str) -> Result<String, String>,
    /// Whether this is a reload (the master re-executed itself).
    pub reload: bool,
}

impl Facts for SystemFacts<'_> {
    fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }
    fn opt(&self, name: &str) -> Option<String> {
        (self.opt)(name)
    }
    fn hostname(&self) -> String {
        (self.hostname)()
    }
    fn path_is(&self, path: &str, what: PathTest) -> bool {
        let kind = self.system.path_kind(Path::new(path));
        match what {
            PathTest::Exists => kind.is_some(),
            PathTest::File => kind == Some(PathKind::File),
            PathTest::Dir => kind == Some(PathKind::Dir),
        }
    }
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        // The matches as glob(3) with `GLOB_MARK | GLOB_NOCHECK` gives them: sorted,
        // directories marked with a `/`, the pattern itself when nothing matches.
        let mut found: Vec<String> = self
            .system
            .glob(pattern)?
            .into_iter()
            .map(|p| {
                let mut s = p.display().to_string();
                if self.system.path_kind(&p) == Some(PathKind::Dir) && !s.ends_with('/') {
                    s.push('/');
                }
                s
            })
            .collect();
        found.sort();
        if found.is_empty() {
            found.push(pattern.to_owned());
        }
        Ok(found)
    }
    fn read(&self, path: &str) -> Result<String, String> {
        (self.read)(path)
    }
    fn is_reload(&self) -> bool {
        self.reload
    }
}

/// Whether uWSGI would have plugin `name` loaded, for `if-plugin`: rsgi has Python built
/// in, so `python`, `python3` and versioned names (`python311`, `python3.11`) hold; every
/// other plugin (gevent, router_*, ...) is absent, as in a uWSGI without it.
pub(crate) fn plugin_built_in(name: &str) -> bool {
    let name = name.trim();
    let name = name.strip_suffix("_plugin").unwrap_or(name);
    name.strip_prefix("python")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// An open block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    /// `if-*` or `else`: its lines apply if `holds`, with `%(_)` as `value`.
    If { holds: bool, value: String },
    /// `for`, `for-times`: its lines apply once per item.
    For { items: Vec<String> },
}

/// The config-logic state of one configuration.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    open: Option<(Block, String)>,
    /// Whether the last `if-*` did not hold (for `else`).
    last_if_failed: bool,
}

impl Blocks {
    /// Take one entry in reading order: a logic line changes the state and gives nothing;
    /// any other line gives itself, nothing (in a block whose condition does not hold) or
    /// one copy per loop item, with `%(_)` replaced. `op` is the entry's logic operation,
    /// if its key is one.
    pub(crate) fn take(
        &mut self,
        entry: Entry,
        op: Option<LogicOp>,
        facts: &dyn Facts,
    ) -> Result<Vec<Entry>, ConfigError> {
        let Some(op) = op else {
            return Ok(match &self.open {
                None => vec![entry],
                Some((Block::If { holds: false, .. }, _)) => Vec::new(),
                Some((Block::If { holds: true, value }, _)) => vec![with_item(&entry, value)],
                Some((Block::For { items }, _)) => {
                    items.iter().map(|item| with_item(&entry, item)).collect()
                }
            });
        };
        if op == LogicOp::End {
            self.open = None;
            return Ok(Vec::new());
        }
        if let Some((_, opened_by)) = &self.open {
            if op != LogicOp::Else {
                return Err(ConfigError::line(
                    &entry.file,
                    entry.line,
                    format!(
                        "{} inside the block opened by {opened_by}: config logic does not nest \
                         (end that block with endif first)",
                        entry.key
                    ),
                ));
            }
        }
        let block = match op {
            LogicOp::Else => Block::If {
                holds: self.last_if_failed,
                value: String::new(),
            },
            LogicOp::For => Block::For {
                items: entry
                    .value
                    .split(' ')
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            LogicOp::ForGlob => Block::For {
                items: facts.glob(entry.value.trim()).map_err(|msg| {
                    ConfigError::line(&entry.file, entry.line, format!("{}: {msg}", entry.key))
                })?,
            },
            LogicOp::ForReadline => {
                let text = facts.read(entry.value.trim()).map_err(|msg| {
                    ConfigError::line(&entry.file, entry.line, format!("{}: {msg}", entry.key))
                })?;
                // fgets + uwsgi_chomp: each line without its line ending; a last line
                // without a newline counts; an empty file gives no items.
                Block::For {
                    items: text
                        .lines()
                        .map(|l| l.trim_end_matches(['\r', '\n']).to_owned())
                        .collect(),
                }
            }
            LogicOp::ForTimes => {
                let n: u32 = entry.value.trim().parse().map_err(|_| {
                    ConfigError::line(
                        &entry.file,
                        entry.line,
                        format!("{}: '{}' is not a whole number", entry.key, entry.value),
                    )
                })?;
                Block::For {
                    items: (1..=n).map(|i| i.to_string()).collect(),
                }
            }
            _ => {
                let (holds, value) = condition(op, &entry.value, facts).map_err(|msg| {
                    ConfigError::line(&entry.file, entry.line, format!("{}: {msg}", entry.key))
                })?;
                self.last_if_failed = !holds;
                Block::If { holds, value }
            }
        };
        self.open = Some((block, format!("{}:{}", entry.file.display(), entry.line)));
        Ok(Vec::new())
    }
}

/// `entry` with `%(_)` in its value replaced by `item`.
fn with_item(entry: &Entry, item: &str) -> Entry {
    Entry {
        value: entry.value.replace("%(_)", item),
        ..entry.clone()
    }
}

/// Whether an `if-*` condition holds, and the value `%(_)` takes (uWSGI's
/// `uwsgi_logic_opt_if_*`); an error (without location) for an argument that is not one
/// (a bad regexp).
fn condition(op: LogicOp, arg: &str, facts: &dyn Facts) -> Result<(bool, String), String> {
    // `NAME=value` compares; a bare `NAME` asks whether it is set.
    let named = |get: &dyn Fn(&str) -> Option<String>, negate: bool| {
        let (name, wanted) = match arg.split_once('=') {
            Some((n, w)) => (n, Some(w)),
            None => (arg, None),
        };
        let found = get(name);
        let positive = match (&found, wanted) {
            (Some(v), Some(w)) => v == w,
            (Some(_), None) => true,
            (None, _) => false,
        };
        (positive != negate, found.unwrap_or_default())
    };
    let path = |what: PathTest, negate: bool| (facts.path_is(arg, what) != negate, arg.to_owned());
    Ok(match op {
        LogicOp::IfEnv => named(&|n| facts.env(n), false),
        LogicOp::IfNotEnv => named(&|n| facts.env(n), true),
        LogicOp::IfOpt => named(&|n| facts.opt(n), false),
        LogicOp::IfNotOpt => named(&|n| facts.opt(n), true),
        LogicOp::IfExists => path(PathTest::Exists, false),
        LogicOp::IfNotExists => path(PathTest::Exists, true),
        LogicOp::IfFile => path(PathTest::File, false),
        LogicOp::IfNotFile => path(PathTest::File, true),
        LogicOp::IfDir => path(PathTest::Dir, false),
        LogicOp::IfNotDir => path(PathTest::Dir, true),
        LogicOp::IfHostname => (facts.hostname() == arg, arg.to_owned()),
        LogicOp::IfNotHostname => (facts.hostname() != arg, arg.to_owned()),
        LogicOp::IfHostnameMatch => (hostname_matches(arg, facts)?, arg.to_owned()),
        LogicOp::IfNotHostnameMatch => (!hostname_matches(arg, facts)?, arg.to_owned()),
        LogicOp::IfReload => (facts.is_reload(), String::new()),
        LogicOp::IfNotReload => (!facts.is_reload(), String::new()),
        LogicOp::IfPlugin => (plugin_built_in(arg), arg.to_owned()),
        LogicOp::IfNotPlugin => (!plugin_built_in(arg), arg.to_owned()),
        LogicOp::For
        | LogicOp::ForTimes
        | LogicOp::ForGlob
        | LogicOp::ForReadline
        | LogicOp::Else
        | LogicOp::End => (false, String::new()),
    })
}

/// The most memory one `if-hostname-match` pattern may compile to: a host name check
/// needs a few KiB; this keeps a hostile pattern from costing more.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Whether the host name matches `pattern` (uWSGI's `uwsgi_regexp_match_pattern`: a PCRE
/// search, not anchored). With the `regex` crate (the Rust project's, well kept; no PCRE
/// to link): its syntax is Perl's without look-around and back-references, which are
/// refused. uWSGI logs a pattern PCRE cannot compile and treats it as a match; rsgi
/// stops with the error.
fn hostname_matches(pattern: &str, facts: &dyn Facts) -> Result<bool, String> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad regexp '{pattern}': {}", regex_error(&e)))?;
    Ok(re.is_match(&facts.hostname()))
}

/// A `regex` error on one line: its own text is several (the pattern, a caret under the
/// place, `error: what`); this keeps `what` and says where.
fn regex_error(e: &regex::Error) -> String {
    let text = match e {
        regex::Error::Syntax(text) => text,
        regex::Error::CompiledTooBig(limit) => {
            return format!("compiles to more than {limit} bytes");
        }
        other => return other.to_string(),
    };
    let lines: Vec<&str> = text.lines().collect();
    let what = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or("not a regular expression");
    // The caret line: four spaces of indent, then the caret under the character.
    let at = lines
        .iter()
        .find(|l| l.trim_start().starts_with('^'))
        .map(|l| {
            l.chars()
                .take_while(|&c| c == ' ')
                .count()
                .saturating_sub(3)
        });
    match at {
        Some(at) => format!("{what} (at character {at})"),
        None => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::options;

    struct Fake;

    impl Facts for Fake {
        fn env(&self, name: &str) -> Option<String> {
            (name == "DEBUG").then(|| "1".to_owned())
        }
        fn opt(&self, name: &str) -> Option<String> {
            (name == "processes").then(|| "4".to_owned())
        }
        fn hostname(&self) -> String {
            "web1".to_owned()
        }
        fn path_is(&self, path: &str, what: PathTest) -> bool {
            match what {
                PathTest::Exists => path == "/etc/app.cfg" || path == "/srv",
                PathTest::File => path == "/etc/app.cfg",
                PathTest::Dir => path == "/srv",
            }
        }
        fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
            match pattern {
                "/etc/vassals/*.ini" => Ok(vec![
                    "/etc/vassals/a.ini".into(),
                    "/etc/vassals/b.ini".into(),
                ]),
                "[" => Err("bad pattern".into()),
                other => Ok(vec![other.to_owned()]),
            }
        }
        fn read(&self, path: &str) -> Result<String, String> {
            match path {
                "/etc/ports" => Ok("8001\r\n8002\n\n8003".into()),
                "/etc/empty" => Ok(String::new()),
                _ => Err(format!("cannot read {path}: No such file or directory")),
            }
        }
        fn is_reload(&self) -> bool {
            false
        }
    }

    /// Run `lines` (`key = value`, or a bare key) through the state machine; the entries
    /// that come out, as `key=value`.
    fn run(lines: &[&str]) -> Result<Vec<String>, String> {
        run_with(lines, &Fake)
    }

    /// [`run`] with the given facts.
    fn run_with(lines: &[&str], facts: &dyn Facts) -> Result<Vec<String>, String> {
        let mut blocks = Blocks::default();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let (key, value) = line.split_once(" = ").unwrap_or((line, ""));
            let entry = Entry {
                key: key.to_owned(),
                value: value.to_owned(),
                line: i + 1,
                file: "c.ini".into(),
            };
            let op = options::find(key).and_then(|o| match o.kind {
                options::Kind::Logic(op) => Some(op),
                _ => None,
            });
            for e in blocks.take(entry, op, facts).map_err(|e| e.to_string())? {
                out.push(format!("{}={}", e.key, e.value));
            }
        }
        Ok(out)
    }

    /// Lines in, and the `key=value` lines that come out or the error.
    type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], &'a str>);

    #[test]
    fn built_in_plugins() {
        for (name, built_in) in [
            ("python", true),
            ("python3", true),
            ("python311", true),
            ("python3.11", true),
            ("python3_plugin", true),
            ("pythonx", false),
            ("http", false),
            ("gevent", false),
            ("", false),
        ] {
            assert_eq!(plugin_built_in(name), built_in, "{name}");
        }
    }

    /// A made-up filesystem behind the [`System`] trait: what is at each path, and what
    /// each pattern matches (unsorted, as a directory lists them).
    struct FakeFs {
        kinds: &'static [(&'static str, PathKind)],
        globs: &'static [(&'static str, Result<&'static [&'static str], &'static str>)],
    }

    impl System for FakeFs {
        fn open_config(&self, _path: &Path) -> std::io::Result<std::fs::File> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn host(&self) -> crate::system::Host {
            crate::system::testing::host()
        }
        fn real_path(&self, path: &Path) -> Option<std::path::PathBuf> {
            Some(path.to_path_buf())
        }
        fn path_kind(&self, path: &Path) -> Option<PathKind> {
            let path = path.to_str()?;
            self.kinds.iter().find(|(p, _)| *p == path).map(|(_, k)| *k)
        }
        fn glob(&self, pattern: &str) -> Result<Vec<std::path::PathBuf>, String> {
            match self.globs.iter().find(|(p, _)| *p == pattern) {
                Some((_, Ok(found))) => Ok(found.iter().map(Into::into).collect()),
                Some((_, Err(e))) => Err((*e).to_owned()),
                None => Ok(Vec::new()),
            }
        }
    }

    static DISK: FakeFs = FakeFs {
        kinds: &[
            ("/etc/app.cfg", PathKind::File),
            ("/srv", PathKind::Dir),
            ("/run/app.sock", PathKind::Other),
            ("/etc/vassals/a.ini", PathKind::File),
            ("/etc/vassals/b.ini", PathKind::File),
            ("/etc/vassals/d.ini", PathKind::Dir),
            ("/srv/x/", PathKind::Dir),
        ],
        globs: &[
            (
                "/etc/vassals/*.ini",
                Ok(&[
                    "/etc/vassals/d.ini",
                    "/etc/vassals/b.ini",
                    "/etc/vassals/a.ini",
                ]),
            ),
            ("/srv/*/", Ok(&["/srv/x/"])),
            ("[", Err("bad pattern: invalid range pattern")),
        ],
    };

    /// [`run`] with [`SystemFacts`] over [`DISK`] (environment, options and host as
    /// [`Fake`]'s).
    fn run_on_disk(lines: &[&str]) -> Result<Vec<String>, String> {
        let env = |n: &str| Fake.env(n);
        let opt = |n: &str| Fake.opt(n);
        let host = || Fake.hostname();
        let read = |p: &str| Fake.read(p);
        let facts = SystemFacts {
            system: &DISK,
            env: &env,
            opt: &opt,
            hostname: &host,
            read: &read,
            reload: false,
        };
        run_with(lines, &facts)
    }

    /// The path conditions and `for-glob` through the [`System`] trait ([`SystemFacts`]):
    /// what `path_kind` says decides, and glob's matches come out sorted, directories
    /// marked, the pattern itself when nothing matches.
    #[test]
    fn system_facts_table() {
        let cases: &[Case<'_>] = &[
            (
                &["if-exists = /etc/app.cfg", "x = %(_)", "endif"],
                Ok(&["x=/etc/app.cfg"]),
            ),
            (&["if-exists = /srv", "x = 1", "endif"], Ok(&["x=1"])),
            (
                &["if-exists = /run/app.sock", "x = 1", "endif"],
                Ok(&["x=1"]),
            ),
            (
                &["if-exists = /nope", "x = 1", "else", "y = 1", "endif"],
                Ok(&["y=1"]),
            ),
            (&["if-not-exists = /nope", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-not-exists = /srv", "x = 1", "endif"], Ok(&[])),
            (&["if-file = /etc/app.cfg", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-file = /srv", "x = 1", "endif"], Ok(&[])),
            (&["if-file = /run/app.sock", "x = 1", "endif"], Ok(&[])),
            (
                &["if-not-file = /run/app.sock", "x = 1", "endif"],
                Ok(&["x=1"]),
            ),
            (&["if-dir = /srv", "x = %(_)", "endif"], Ok(&["x=/srv"])),
            (&["if-dir = /etc/app.cfg", "x = 1", "endif"], Ok(&[])),
            (
                &["if-not-dir = /etc/app.cfg", "x = 1", "endif"],
                Ok(&["x=1"]),
            ),
            (&["if-not-dir = /nope", "x = 1", "endif"], Ok(&["x=1"])),
            (
                &["for-glob = /etc/vassals/*.ini", "include = %(_)", "endfor"],
                Ok(&[
                    "include=/etc/vassals/a.ini",
                    "include=/etc/vassals/b.ini",
                    "include=/etc/vassals/d.ini/",
                ]),
            ),
            // A match that ends with `/` already is not marked twice.
            (
                &["for-glob = /srv/*/", "x = %(_)", "endfor"],
                Ok(&["x=/srv/x/"]),
            ),
            (
                &["for-glob = /nope/*.ini", "x = %(_)", "endfor"],
                Ok(&["x=/nope/*.ini"]),
            ),
            (
                &["for-glob = ["],
                Err("c.ini:1: for-glob: bad pattern: invalid range pattern"),
            ),
        ];
        for (lines, want) in cases {
            let want = want
                .map(|w| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(run_on_disk(lines), want, "{lines:?}");
        }
    }

    /// Each case copies a `uwsgi_logic_opt_*` behaviour of uWSGI's `core/config.c`.
    #[test]
    fn logic_table() {
        let cases: &[Case<'_>] = &[
            (&["a = 1", "b = 2"], Ok(&["a=1", "b=2"])),
            // if-env: set, with a value, unset; %(_) is the value.
            (&["if-env = DEBUG", "x = %(_)", "endif", "y = 1"], Ok(&["x=1", "y=1"])),
            (&["if-env = DEBUG=1", "x = on", "endif"], Ok(&["x=on"])),
            (&["if-env = DEBUG=0", "x = on", "endif"], Ok(&[])),
            (&["if-env = NOPE", "x = on", "end-if", "y = 1"], Ok(&["y=1"])),
            (&["if-not-env = NOPE", "x = on", "endif"], Ok(&["x=on"])),
            (&["if-not-env = DEBUG", "x = on", "endif"], Ok(&[])),
            (&["if-not-env = DEBUG=0", "x = on", "endif"], Ok(&["x=on"])),
            // else: the lines when the if did not hold.
            (&["if-env = NOPE", "x = 1", "else", "x = 2", "endif"], Ok(&["x=2"])),
            (&["if-env = DEBUG", "x = 1", "else", "x = 2", "endif"], Ok(&["x=1"])),
            // if-opt looks at what was set before.
            (&["if-opt = processes=4", "x = %(_)", "endif"], Ok(&["x=4"])),
            (&["if-not-opt = threads", "x = 1", "endif"], Ok(&["x=1"])),
            // Paths and host.
            (&["if-exists = /etc/app.cfg", "ini = %(_)", "endif"], Ok(&["ini=/etc/app.cfg"])),
            (&["if-not-exists = /nope", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-file = /srv", "x = 1", "endif"], Ok(&[])),
            (&["if-dir = /srv", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-not-dir = /srv", "x = 1", "endif"], Ok(&[])),
            (&["if-hostname = web1", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-not-hostname = web1", "x = 1", "endif"], Ok(&[])),
            // if-hostname-match: a regexp search in the host name (web1), %(_) the regexp.
            (&["if-hostname-match = ^web[0-9]+$", "x = %(_)", "endif"], Ok(&["x=^web[0-9]+$"])),
            (&["if-hostname-match = eb", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-hostname-match = ^eb", "x = 1", "else", "y = 1", "endif"], Ok(&["y=1"])),
            (&["if-hostname-match = WEB", "x = 1", "endif"], Ok(&[])),
            (&["if-hostname-match = (?i)WEB", "x = 1", "endif"], Ok(&["x=1"])),
            (&["if-not-hostname-match = ^db", "x = %(_)", "endif"], Ok(&["x=^db"])),
            (&["if-not-hostname-match = web", "x = 1", "else", "y = 1", "endif"], Ok(&["y=1"])),
            (&["if-hostname-match = (", "x = 1", "endif"], Err("c.ini:1: if-hostname-match: bad regexp '(': unclosed group (at character 1)")),
            (&["x = 1", "if-not-hostname-match = web[", "endif"], Err("c.ini:2: if-not-hostname-match: bad regexp 'web[': unclosed character class (at character 4)")),
            (&["if-hostname-match = (?=x)"], Err("c.ini:1: if-hostname-match: bad regexp '(?=x)': look-around, including look-ahead and look-behind, is not supported (at character 1)")),
            (&["if-hostname-match = (a{1000}){1000}"], Err("c.ini:1: if-hostname-match: bad regexp '(a{1000}){1000}': compiles to more than 1048576 bytes")),
            // Loops.
            (&["for = 8001 8002", "http-socket = :%(_)", "endfor"], Ok(&["http-socket=:8001", "http-socket=:8002"])),
            (&["for-times = 3", "x = w%(_)", "end-for"], Ok(&["x=w1", "x=w2", "x=w3"])),
            // A block left open runs to the end.
            (&["if-env = NOPE", "x = 1", "y = 2"], Ok(&[])),
            // Blocks do not nest.
            (&["if-env = DEBUG", "if-env = DEBUG", "endif"], Err("c.ini:2: if-env inside the block opened by c.ini:1: config logic does not nest (end that block with endif first)")),
            (&["for-times = x"], Err("c.ini:1: for-times: 'x' is not a whole number")),
            // for-glob: sorted matches; no match gives the pattern (GLOB_NOCHECK).
            (&["for-glob = /etc/vassals/*.ini", "include = %(_)", "endfor"], Ok(&["include=/etc/vassals/a.ini", "include=/etc/vassals/b.ini"])),
            (&["for-glob = /nope/*.ini", "x = %(_)", "endfor"], Ok(&["x=/nope/*.ini"])),
            (&["for-glob = ["], Err("c.ini:1: for-glob: bad pattern")),
            // for-readline: one item per line, line endings chomped, empty lines kept.
            (&["for-readline = /etc/ports", "http-socket = :%(_)", "endfor"], Ok(&["http-socket=:8001", "http-socket=:8002", "http-socket=:", "http-socket=:8003"])),
            (&["for-readline = /etc/empty", "x = 1", "endfor"], Ok(&[])),
            (&["for-readline = /nope"], Err("c.ini:1: for-readline: cannot read /nope: No such file or directory")),
            // if-reload: a first start is not a reload.
            (&["if-reload", "x = 1", "endif", "if-not-reload", "y = 1", "endif"], Ok(&["y=1"])),
            // if-plugin: python is built in, other plugins are absent.
            (&["if-plugin = python3", "x = %(_)", "endif"], Ok(&["x=python3"])),
            (&["if-plugin = gevent", "x = 1", "else", "y = 1", "endif"], Ok(&["y=1"])),
            (&["if-not-plugin = router_cache", "x = 1", "endif"], Ok(&["x=1"])),
        ];
        for (lines, want) in cases {
            let want = want
                .map(|w| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(run(lines), want, "{lines:?}");
        }
    }
}
