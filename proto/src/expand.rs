//! Placeholder expansion in config values, shared by the ini and XML readers.
//!
//! uWSGI expands these in every value it reads from a config file (`Configuration.rst`,
//! "Magic variables" and "Placeholders"):
//!
//! | form        | expands to                                                          |
//! |-------------|---------------------------------------------------------------------|
//! | `%(name)`   | the value of option or placeholder `name` set earlier (last value)   |
//! | `%d`        | the absolute directory of the config file, **with** a trailing `/`  |
//! | `%p`        | the absolute path of the config file                                |
//! | `%s`        | the file name with extension (`app.ini`)                            |
//! | `%n`        | the file name without extension (`app`)                             |
//! | `%e`        | the extension without the dot (`ini`)                               |
//! | `%c`        | the name of the directory holding the file                          |
//! | `%h`        | the host name                                                       |
//! | `%%`        | a literal `%`                                                       |
//! | `$(NAME)`   | environment variable `NAME`; empty if unset (as uWSGI)               |
//!
//! Any other `%x` is kept as written (uWSGI has many more magic variables; rsgi knows the
//! common ones). An expanded value is not scanned again. `%(name)` for a name nobody set
//! is an error: a literal `%(base)/app` path would only fail later and further away.
//!
//! Expansion is bounded ([`crate::bounds::Limits`]): one value may expand to at most
//! `value_bytes`, all values of a configuration together to at most `total_bytes`; the
//! check comes before each piece is added, so a placeholder bomb fails at its line without
//! allocating what it asks for.
//!
//! "The config file" is the real file: the reader canonicalizes the path first, so `%d`
//! of a vassal ini that is a symlink names the directory of the symlink's target, as in
//! uWSGI (which uses `realpath`). That is what makes the common "symlink the project's ini
//! into the vassals dir, use `%d` inside" idiom work.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::bounds::Limits;

/// The environment lookup injected into the readers: `|name| std::env::var(name).ok()` in
/// the programs, a closure over a fixed table in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The magic variables of one config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Magic {
    /// `%d`: directory with trailing slash.
    dir: String,
    /// `%p`: full path.
    path: String,
    /// `%s`: file name.
    name: String,
    /// `%n`: file name without extension.
    stem: String,
    /// `%e`: extension without the dot.
    ext: String,
    /// `%c`: name of the containing directory.
    parent: String,
}

impl Magic {
    fn of(real: &Path) -> Magic {
        let lossy = |s: Option<&std::ffi::OsStr>| {
            s.map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let parent = real.parent();
        let mut dir = parent
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        Magic {
            dir,
            path: real.to_string_lossy().into_owned(),
            name: lossy(real.file_name()),
            stem: lossy(real.file_stem()),
            ext: lossy(real.extension()),
            parent: lossy(parent.and_then(Path::file_name)),
        }
    }
}

/// Placeholder state while configuration is read: the environment lookup, every value set
/// so far (for `%(name)`), which names were referenced, and the magic variables of the file
/// being read.
///
/// One `Placeholders` lives for a whole command line, so a file read after another (or
/// after `--option value` on the command line) can refer to values set before it, as in
/// uWSGI.
pub struct Placeholders<'a> {
    env: EnvLookup<'a>,
    values: HashMap<String, String>,
    referenced: BTreeSet<String>,
    /// Magic variables of the files being read, innermost last (`ini = other.ini` nests).
    magic: Vec<Magic>,
    /// The caps on this configuration.
    limits: Limits,
    /// Bytes of expanded values so far, against [`Limits::total_bytes`].
    total: usize,
}

impl std::fmt::Debug for Placeholders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placeholders")
            .field("values", &self.values)
            .field("referenced", &self.referenced)
            .field("magic", &self.magic)
            .field("limits", &self.limits)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<'a> Placeholders<'a> {
    /// Empty state that reads environment variables through `env`, with the default caps
    /// ([`Limits::DEFAULT`]).
    pub fn new(env: EnvLookup<'a>) -> Self {
        Self::with_limits(env, Limits::DEFAULT)
    }

    /// [`Placeholders::new`] with other caps (tests use small ones).
    pub fn with_limits(env: EnvLookup<'a>, limits: Limits) -> Self {
        Placeholders {
            env,
            values: HashMap::new(),
            referenced: BTreeSet::new(),
            magic: Vec::new(),
            limits,
            total: 0,
        }
    }

    /// The caps on the configuration being read (the readers take the file size cap,
    /// the loader the include caps from here).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Record `name = value`, so a later `%(name)` expands to `value` (the last value wins).
    pub fn define(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_owned(), value.to_owned());
    }

    /// Whether some value so far used `%(name)`. An ini key that is not an option but is
    /// used this way is a user placeholder (uWSGI's `base = /srv` ... `chdir = %(base)/app`
    /// idiom), not a typo.
    pub fn is_referenced(&self, name: &str) -> bool {
        self.referenced.contains(name)
    }

    /// Start reading a file: the next values use its magic variables (`%d`, `%n`, ...).
    /// `real` should be absolute (the readers pass the canonical path).
    pub(crate) fn enter_file(&mut self, real: &Path) {
        self.magic.push(Magic::of(real));
    }

    /// Done reading the innermost file: back to the magic variables of the file around it.
    pub(crate) fn leave_file(&mut self) {
        self.magic.pop();
    }

    /// Expand the placeholders in `raw`. The error is a message without location; the reader
    /// adds `file:line`.
    pub(crate) fn expand(&mut self, raw: &str) -> Result<String, String> {
        let out = self.expand_value(raw)?;
        let total = self.total.saturating_add(out.len());
        if total > self.limits.total_bytes {
            return Err(format!(
                "the configuration's values expand to more than {} bytes in all",
                self.limits.total_bytes
            ));
        }
        self.total = total;
        Ok(out)
    }

    /// [`Self::expand`] within [`Limits::value_bytes`], not counted in the total.
    fn expand_value(&mut self, raw: &str) -> Result<String, String> {
        let cap = self.limits.value_bytes;
        let mut out = Bounded {
            text: String::with_capacity(raw.len().min(cap)),
            cap,
        };
        let mut rest = raw;
        while let Some(pos) = rest.find(['%', '$']) {
            out.push_str(&rest[..pos])?;
            let tail = &rest[pos..];
            let mut chars = tail.chars();
            let sigil = chars.next();
            let next = chars.next();
            match (sigil, next) {
                (Some('$'), Some('(')) => {
                    if let Some(end) = tail.find(')') {
                        let name = &tail[2..end];
                        out.push_str(&(self.env)(name).unwrap_or_default())?;
                        rest = &tail[end + 1..];
                        continue;
                    }
                    // Unterminated: keep it as written.
                    out.push('$')?;
                }
                (Some('%'), Some('(')) => {
                    if let Some(end) = tail.find(')') {
                        let name = &tail[2..end];
                        self.referenced.insert(name.to_owned());
                        match self.values.get(name) {
                            Some(value) => out.push_str(value)?,
                            None => {
                                return Err(format!(
                                "%({name}) refers to '{name}', which is not set before this line"
                            ))
                            }
                        }
                        rest = &tail[end + 1..];
                        continue;
                    }
                    out.push('%')?;
                }
                (Some('%'), Some(c)) => {
                    let file = self.magic.last().cloned().unwrap_or_default();
                    let magic = match c {
                        'd' => Some(file.dir),
                        'p' => Some(file.path),
                        's' => Some(file.name),
                        'n' => Some(file.stem),
                        'e' => Some(file.ext),
                        'c' => Some(file.parent),
                        'h' => Some(self.hostname()),
                        '%' => Some("%".to_owned()),
                        _ => None,
                    };
                    match magic {
                        Some(text) => {
                            out.push_str(&text)?;
                            rest = &tail[2..];
                            continue;
                        }
                        // Unknown `%x`: keep the `%`; `x` is copied on the next round.
                        None => out.push('%')?,
                    }
                }
                (Some(c), _) => out.push(c)?,
                (None, _) => break,
            }
            rest = &tail[1..];
        }
        out.push_str(rest)?;
        Ok(out.text)
    }

    /// `%h`: the kernel's host name, else `$HOSTNAME`, else empty.
    fn hostname(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| (self.env)("HOSTNAME"))
            .unwrap_or_default()
    }
}

/// An expanded value that refuses to grow past its cap (checked before each piece is
/// added, so a value never holds more than the cap).
struct Bounded {
    text: String,
    cap: usize,
}

impl Bounded {
    fn push_str(&mut self, piece: &str) -> Result<(), String> {
        if self.text.len().saturating_add(piece.len()) > self.cap {
            return Err(format!(
                "the value expands to more than {} bytes (placeholders repeating placeholders?)",
                self.cap
            ));
        }
        self.text.push_str(piece);
        Ok(())
    }

    fn push(&mut self, c: char) -> Result<(), String> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_table() {
        let mut ph = Placeholders::new(&env);
        ph.enter_file(Path::new("/srv/mysite/deploy/app.ini"));
        ph.define("base", "/srv/mysite");
        ph.define("project", "mysite");
        ph.define("project", "blog"); // last value wins
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("%d", "/srv/mysite/deploy/"),
            ("%dapp.sock", "/srv/mysite/deploy/app.sock"),
            ("%p", "/srv/mysite/deploy/app.ini"),
            ("%s", "app.ini"),
            ("%n", "app"),
            ("%e", "ini"),
            ("%c", "deploy"),
            ("%%", "%"),
            ("100%%d", "100%d"),
            ("%x %y", "%x %y"),
            ("50%", "50%"),
            ("%", "%"),
            ("%(base)/%(project)", "/srv/mysite/blog"),
            ("%(base", "%(base"),
            ("$(HOME)/x", "/home/me/x"),
            ("[$(UNSET)]", "[]"),
            ("[$(EMPTY)]", "[]"),
            ("$HOME", "$HOME"),
            ("$(HOME", "$(HOME"),
            ("cost $5", "cost $5"),
            ("%(project)%n", "blogapp"),
            ("项目/%n", "项目/app"),
        ];
        for (raw, want) in cases {
            assert_eq!(ph.expand(raw).unwrap(), *want, "raw {raw:?}");
        }
        assert!(ph.is_referenced("base"));
        assert!(!ph.is_referenced("HOME"));
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let mut ph = Placeholders::new(&env);
        let err = ph.expand("%(nope)/x").unwrap_err();
        assert!(err.contains("'nope'"), "{err}");
    }

    #[test]
    fn value_and_total_caps() {
        let limits = Limits {
            value_bytes: 10,
            total_bytes: 25,
            ..Limits::DEFAULT
        };
        let mut ph = Placeholders::with_limits(&env, limits);
        ph.define("five", "12345");
        let value =
            "the value expands to more than 10 bytes (placeholders repeating placeholders?)";
        let total = "the configuration's values expand to more than 25 bytes in all";
        // (raw, result); the total runs on from case to case.
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("0123456789", Ok("0123456789")),     // total 10
            ("01234567890", Err(value)),          // not counted
            ("%(five)%(five)", Ok("1234512345")), // total 20
            ("%(five)%(five)x", Err(value)),
            ("$(HOME)/abc", Err(value)), // /home/me/abc: 12
            ("%(five)", Ok("12345")),    // total 25
            ("x", Err(total)),
            ("", Ok("")),
        ];
        for (raw, want) in cases {
            let want = want.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(ph.expand(raw), want, "raw {raw:?}");
        }
    }

    #[test]
    fn expansion_is_not_recursive() {
        let mut ph = Placeholders::new(&env);
        ph.define("a", "%(b)");
        assert_eq!(ph.expand("%(a)").unwrap(), "%(b)");
    }

    #[test]
    fn magic_of_root_file() {
        let mut ph = Placeholders::new(&env);
        ph.enter_file(Path::new("/app.ini"));
        assert_eq!(ph.expand("%d|%c|%n|%e").unwrap(), "/||app|ini");
        ph.enter_file(Path::new("/etc/rsgi/noext"));
        assert_eq!(ph.expand("%d|%c|%n|%e").unwrap(), "/etc/rsgi/|rsgi|noext|");
        ph.leave_file();
        assert_eq!(ph.expand("%n").unwrap(), "app");
    }

    #[test]
    fn hostname_is_not_empty_or_literal() {
        let mut ph = Placeholders::new(&|_| Some("fallback".into()));
        let h = ph.expand("%h").unwrap();
        assert!(!h.is_empty() && h != "%h");
    }
}
