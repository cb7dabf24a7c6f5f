//! Placeholders and magic variables in config values, shared by the ini and XML readers,
//! in the two steps uWSGI takes (`ParsingOrder.rst`, `core/config.c`):
//!
//! 1. **While a file is read**, its magic variables are replaced (`Placeholders::read_value`,
//!    uWSGI's `magic_sub` in `uwsgi_open_and_read`), so `%d` always names the file the line
//!    is in, even in an included file.
//! 2. **After the whole configuration is read** (every file, every include), references are
//!    resolved ([`Placeholders::resolve`], uWSGI's `uwsgi_apply_config_pass` for `$`, `@`
//!    and `%`): a value may refer to a key set later or in another file.
//!
//! | form               | step | expands to                                                     |
//! |--------------------|------|----------------------------------------------------------------|
//! | `%d`               | 1    | absolute directory of the config file, **with** a trailing `/` |
//! | `%p`               | 1    | absolute path of the config file                               |
//! | `%s`               | 1    | file name with extension (`app.ini`)                           |
//! | `%n`               | 1    | file name without extension (`app`)                            |
//! | `%e`               | 1    | extension without the dot (`ini`)                              |
//! | `%c`               | 1    | name of the directory holding the file                         |
//! | `%o`               | 1    | the file as it was named (`--ini app.ini` gives `app.ini`)     |
//! | `%x`               | 1    | the file as named, with `:section` when a section was asked    |
//! | `%0` .. `%9`       | 1    | the components of `%d` (`/srv/app/` gives `%0`=`srv`, `%1`=`app`) |
//! | `%D %P %S %N %E %C %O %X` | 1 | the same for the first (top-level) config file          |
//! | `%v`               | 1    | the working directory                                          |
//! | `%h`               | 1    | the host name                                                  |
//! | `%k`               | 1    | the number of CPU cores                                        |
//! | `%u %U`, `%g %G`   | 1    | uid and user name, gid and group name of the process           |
//! | `%t`, `%T`         | 1    | unix time at start, in seconds and in microseconds             |
//! | `%V`               | 1    | the version (rsgi's)                                           |
//! | `%[`               | 1    | the ANSI escape character (`\x1b`), for colours                |
//! | `$(NAME)`          | 2    | environment variable `NAME`; `$(NAME:-DEF)` gives `DEF` when it is unset or empty, `$(NAME-DEF)` when unset |
//! | `@(FILE)`          | 2    | the contents of `FILE` (one trailing newline dropped), read with the config-file bounds |
//! | `%(name)`          | 2    | the value of option or placeholder `name`: its **first** definition, itself resolved |
//! | `%(a b + 3)`       | 2    | uWSGI's placeholder math: a pipeline left to right; no operator between two items concatenates them |
//! | `%%`               | 2    | a literal `%`                                                  |
//!
//! What is not set stays as written, as in uWSGI, and the loader adds a notice: `%(x)`
//! (that is also how `log-format`'s request variables pass through), `$(X)`, `@(missing)`.
//! Any other `%x` is kept as written too (uWSGI turns an unknown `%x` into nothing; see
//! `docs/migration.md`).
//!
//! Expansion is bounded ([`crate::bounds::Limits`]): one value may expand to at most
//! `value_bytes`, all values of a configuration together to at most `total_bytes`, and a
//! `%(name)` may lead through at most `nesting_depth` other names (a name that refers to
//! itself is an error; uWSGI loops forever on it). The size checks come before each piece is
//! added, so a placeholder bomb fails at its line without allocating what it asks for, and
//! each name is resolved once.
//!
//! "The config file" is the real file: the reader canonicalizes the path first, so `%d`
//! of a vassal ini that is a symlink names the directory of the symlink's target. That is
//! what makes the common "symlink the project's ini into the vassals dir, use `%d` inside"
//! idiom work.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::bounds::{read_config_file, Limits};
use crate::error::ConfigError;
use crate::system::{Host, System};

/// The environment lookup injected into the readers: `|name| std::env::var(name).ok()` in
/// the programs, a closure over a fixed table in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The magic variables of one config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Magic {
    /// `%o`: the file as named.
    named: String,
    /// `%x`: the file as named, `:section` added when one was asked for.
    section_id: String,
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
    /// `%0`..`%9`: the components of the directory.
    parts: Vec<String>,
}

impl Magic {
    fn of(real: &Path, named: &Path, section: Option<&str>) -> Magic {
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
        let named = named.to_string_lossy().into_owned();
        Magic {
            section_id: match section {
                Some(s) => format!("{named}:{s}"),
                None => named.clone(),
            },
            parts: dir
                .split('/')
                .filter(|p| !p.is_empty())
                .take(10)
                .map(str::to_owned)
                .collect(),
            named,
            dir,
            path: real.to_string_lossy().into_owned(),
            name: lossy(real.file_name()),
            stem: lossy(real.file_stem()),
            ext: lossy(real.extension()),
            parent: lossy(parent.and_then(Path::file_name)),
        }
    }

    /// The file variable `c` (lowercase letter or digit) of this file.
    fn get(&self, c: char) -> Option<String> {
        Some(match c {
            'o' => self.named.clone(),
            'x' => self.section_id.clone(),
            'd' => self.dir.clone(),
            'p' => self.path.clone(),
            's' => self.name.clone(),
            'n' => self.stem.clone(),
            'e' => self.ext.clone(),
            'c' => self.parent.clone(),
            '0'..='9' => {
                let i = c.to_digit(10).and_then(|i| usize::try_from(i).ok())?;
                self.parts.get(i).cloned().unwrap_or_default()
            }
            _ => return None,
        })
    }
}

/// The magic variable `%c`, if `c` names one: file variables from `file` (the file being
/// read) or `first` (the top-level file, for the uppercase forms), process facts from
/// `host`. `None` for anything else (kept as written).
fn magic(c: char, file: &Magic, first: &Magic, host: &Host) -> Option<String> {
    Some(match c {
        'o' | 'x' | 'd' | 'p' | 's' | 'n' | 'e' | 'c' | '0'..='9' => return file.get(c),
        'O' | 'X' | 'D' | 'P' | 'S' | 'N' | 'E' | 'C' => return first.get(c.to_ascii_lowercase()),
        'v' => host.cwd.clone(),
        'h' => host.hostname.clone(),
        'k' => host.cpus.to_string(),
        'u' => host.uid.to_string(),
        'U' => host.user.clone(),
        'g' => host.gid.to_string(),
        'G' => host.group.clone(),
        't' => host.started.as_secs().to_string(),
        'T' => host.started.as_micros().to_string(),
        'V' => env!("CARGO_PKG_VERSION").to_owned(),
        '[' => "\x1b".to_owned(),
        _ => return None,
    })
}

/// A resolved value and what the loader should tell about it (references that stayed as
/// written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The value with every reference resolved.
    pub value: String,
    /// One line per reference that stayed as written (`%(x) is not set ...`).
    pub notes: Vec<String>,
}

/// Placeholder state for one configuration: the environment lookup, the facts of the
/// process, every value defined (for `%(name)`), which names were referenced, the magic
/// variables of the files being read, and the bounds.
///
/// One `Placeholders` lives for a whole command line, so a file read after another (or
/// after `--option value` on the command line) sees the values set before it, as in
/// uWSGI.
pub struct Placeholders<'a> {
    env: EnvLookup<'a>,
    /// Opens config files and gives the [`Host`] facts.
    system: &'a dyn System,
    host: OnceCell<Host>,
    /// name -> value as read (step 1 done); the first definition wins, as uWSGI's
    /// `uwsgi_get_exported_opt` returns the first match.
    values: HashMap<String, String>,
    referenced: BTreeSet<String>,
    /// Magic variables of the files being read, innermost last (`ini = other.ini` nests).
    magic: Vec<Magic>,
    /// Magic variables of the first (top-level) file, for `%D`, `%P`, ...
    first: Option<Magic>,
    /// The caps on this configuration.
    limits: Limits,
    /// Bytes of values so far, against [`Limits::total_bytes`].
    total: usize,
    /// `@(FILE)` contents already read.
    files: HashMap<String, Option<String>>,
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
    /// Empty state that reads environment variables through `env` and files through
    /// `system`, with the default caps ([`Limits::DEFAULT`]) and `system`'s [`Host`]
    /// (asked for when first needed).
    pub fn new(env: EnvLookup<'a>, system: &'a dyn System) -> Self {
        Self::with_limits(env, system, Limits::DEFAULT)
    }

    /// [`Placeholders::new`] with other caps (tests use small ones).
    pub fn with_limits(env: EnvLookup<'a>, system: &'a dyn System, limits: Limits) -> Self {
        Placeholders {
            env,
            system,
            host: OnceCell::new(),
            values: HashMap::new(),
            referenced: BTreeSet::new(),
            magic: Vec::new(),
            first: None,
            limits,
            total: 0,
            files: HashMap::new(),
        }
    }

    /// The caps on the configuration being read (the readers take the file size cap,
    /// the loader the include caps from here).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Record `name = value` for `%(name)`. The first definition of a name wins, as in
    /// uWSGI (`socket = :1` then `socket = :2` makes `%(socket)` `:1`).
    pub fn define(&mut self, name: &str, value: &str) {
        self.values
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned());
    }

    /// Whether some value used `%(name)`. An ini key that is not an option but is used this
    /// way is a user placeholder (uWSGI's `base = /srv` ... `chdir = %(base)/app` idiom), not
    /// a typo. Complete once every value is resolved.
    pub fn is_referenced(&self, name: &str) -> bool {
        self.referenced.contains(name)
    }

    /// Start reading a file: the next values use its magic variables (`%d`, `%n`, ...).
    /// `real` should be absolute (the readers pass the canonical path); `named` is the file
    /// as it was named and `section` the section asked for, if any (for `%o` and `%x`).
    pub(crate) fn enter_file(&mut self, real: &Path, named: &Path, section: Option<&str>) {
        let m = Magic::of(real, named, section);
        if self.first.is_none() {
            self.first = Some(m.clone());
        }
        self.magic.push(m);
    }

    /// Done reading the innermost file: back to the magic variables of the file around it.
    pub(crate) fn leave_file(&mut self) {
        self.magic.pop();
    }

    /// Step 1, while a file is read: replace the magic variables in `raw`. References
    /// (`%(`, `$(`, `@(`) and `%%` are left for [`Self::resolve`]; an unknown `%x` is kept.
    /// The error is a message without location; the reader adds `file:line`.
    pub(crate) fn read_value(&mut self, raw: &str) -> Result<String, String> {
        let file = self.magic.last().cloned().unwrap_or_default();
        let first = self.first.clone().unwrap_or_default();
        let mut out = Bounded::new(self.limits.value_bytes, raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find('%') {
            out.push_str(&rest[..pos])?;
            let tail = &rest[pos..];
            let Some(c) = tail[1..].chars().next() else {
                out.push('%')?;
                rest = "";
                break;
            };
            let width = 1 + c.len_utf8();
            let expanded = match c {
                '%' | '(' => None,
                _ => magic(c, &file, &first, self.host()),
            };
            match expanded {
                Some(text) => out.push_str(&text)?,
                None => out.push_str(&tail[..width])?,
            }
            rest = &tail[width..];
        }
        out.push_str(rest)?;
        self.count(out.text.len())?;
        Ok(out.text)
    }

    /// Step 2, once the whole configuration is read: resolve `$(ENV)`, `@(FILE)`,
    /// `%(name)` (recursively) and `%%` in `value` (a value `read_value` returned).
    /// The error is a message without location.
    pub fn resolve(&mut self, value: &str) -> Result<Resolved, String> {
        let mut notes = Vec::new();
        let mut memo = HashMap::new();
        let text = self.resolve_text(value, &mut Vec::new(), &mut memo, &mut notes)?;
        self.count(text.len())?;
        Ok(Resolved { value: text, notes })
    }

    /// Environment variable `name`, through the injected lookup (for `if-env`).
    pub(crate) fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// The first value defined so far for `name`, as read (for `if-opt`).
    pub(crate) fn defined(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// The host name (for `if-hostname`).
    pub(crate) fn hostname(&self) -> String {
        self.host().hostname.clone()
    }

    fn host(&self) -> &Host {
        self.host.get_or_init(|| self.system.host())
    }

    /// The injected [`System`] (config logic looks at the filesystem through it).
    pub(crate) fn system(&self) -> &'a dyn System {
        self.system
    }

    /// Read config file `path` within this configuration's caps, through the injected
    /// [`System`] ([`read_config_file`]).
    pub fn read_file(&self, path: &Path) -> Result<String, ConfigError> {
        read_config_file(path, &self.limits, self.system)
    }

    /// The config file's canonical path ([`System::real_path`]), or `path` itself when
    /// it cannot be resolved.
    pub fn real_path(&self, path: &Path) -> PathBuf {
        self.system
            .real_path(path)
            .unwrap_or_else(|| path.to_path_buf())
    }

    /// Count `len` more bytes of values against [`Limits::total_bytes`].
    fn count(&mut self, len: usize) -> Result<(), String> {
        let total = self.total.saturating_add(len);
        if total > self.limits.total_bytes {
            return Err(format!(
                "the configuration's values expand to more than {} bytes in all",
                self.limits.total_bytes
            ));
        }
        self.total = total;
        Ok(())
    }

    /// Resolve the references in `raw`. `chain` is the names being resolved around this
    /// text (for the nesting cap and loops); `memo` the names resolved so far.
    fn resolve_text(
        &mut self,
        raw: &str,
        chain: &mut Vec<String>,
        memo: &mut HashMap<String, String>,
        notes: &mut Vec<String>,
    ) -> Result<String, String> {
        let mut out = Bounded::new(self.limits.value_bytes, raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find(['%', '$', '@']) {
            out.push_str(&rest[..pos])?;
            let tail = &rest[pos..];
            let sigil = &tail[..1];
            if sigil == "%" && tail[1..].starts_with('%') {
                out.push('%')?;
                rest = &tail[2..];
                continue;
            }
            let inner = tail[1..]
                .strip_prefix('(')
                .and_then(|body| closing(body).map(|end| &body[..end]));
            let Some(inner) = inner else {
                out.push_str(sigil)?;
                rest = &tail[1..];
                continue;
            };
            let written = &tail[..inner.len() + 3];
            rest = &tail[inner.len() + 3..];
            let found = match sigil {
                "$" => self.env_value(inner),
                "@" => self.file_value(inner)?,
                _ if inner.contains(' ') => Some(self.math(inner, chain, memo, notes)?),
                _ => self.name_value(inner, chain, memo, notes)?,
            };
            match found {
                Some(text) => out.push_str(&text)?,
                None => {
                    notes.push(unresolved(sigil, inner));
                    out.push_str(written)?;
                }
            }
        }
        out.push_str(rest)?;
        Ok(out.text)
    }

    /// `%(name)`: the first definition of `name`, resolved; `None` if nothing defines it.
    fn name_value(
        &mut self,
        name: &str,
        chain: &mut Vec<String>,
        memo: &mut HashMap<String, String>,
        notes: &mut Vec<String>,
    ) -> Result<Option<String>, String> {
        self.referenced.insert(name.to_owned());
        if let Some(done) = memo.get(name) {
            return Ok(Some(done.clone()));
        }
        let Some(raw) = self.values.get(name).cloned() else {
            return Ok(None);
        };
        if chain.iter().any(|n| n == name) {
            return Err(format!(
                "%({name}) refers to itself: {} -> {name}",
                chain.join(" -> ")
            ));
        }
        if chain.len() >= self.limits.nesting_depth {
            return Err(format!(
                "placeholders nest more than {} deep: {} -> {name}",
                self.limits.nesting_depth,
                chain.join(" -> ")
            ));
        }
        chain.push(name.to_owned());
        let value = self.resolve_text(&raw, chain, memo, notes);
        chain.pop();
        let value = value?;
        memo.insert(name.to_owned(), value.clone());
        Ok(Some(value))
    }

    /// `%(a b + 3)`: uWSGI's placeholder math (`uwsgi_manage_placeholder`).
    fn math(
        &mut self,
        expr: &str,
        chain: &mut Vec<String>,
        memo: &mut HashMap<String, String>,
        notes: &mut Vec<String>,
    ) -> Result<String, String> {
        let mut items = Vec::new();
        for token in expr.split(' ').filter(|t| !t.is_empty()) {
            let item = match token {
                "+" | "-" | "*" | "/" | "++" | "--" => MathItem::Op(token.to_owned()),
                _ if token.bytes().all(|b| b.is_ascii_digit()) => MathItem::Value(token.to_owned()),
                _ => MathItem::Value(
                    self.name_value(token, chain, memo, notes)?
                        .unwrap_or_default(),
                ),
            };
            items.push(item);
        }
        Ok(placeholder_math(&items))
    }

    /// `$(NAME)`, `$(NAME:-DEFAULT)`, `$(NAME-DEFAULT)`.
    fn env_value(&self, inner: &str) -> Option<String> {
        if let Some((name, default)) = inner.split_once(":-") {
            return Some(
                (self.env)(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default.to_owned()),
            );
        }
        if let Some((name, default)) = inner.split_once('-') {
            return Some((self.env)(name).unwrap_or_else(|| default.to_owned()));
        }
        (self.env)(inner)
    }

    /// `@(FILE)`: its contents without one trailing newline, read with the config-file
    /// bounds; `None` if it does not exist (kept as written, as uWSGI does). Any other
    /// problem (a FIFO, too big, unreadable) is an error.
    fn file_value(&mut self, path: &str) -> Result<Option<String>, String> {
        if let Some(done) = self.files.get(path) {
            return Ok(done.clone());
        }
        if self.files.len() >= self.limits.include_files {
            return Err(format!(
                "@({path}): more than {} files read with @(...)",
                self.limits.include_files
            ));
        }
        let text = match self.read_file(Path::new(path)) {
            Ok(text) => {
                let text = text.strip_suffix('\n').unwrap_or(&text);
                Some(text.strip_suffix('\r').unwrap_or(text).to_owned())
            }
            Err(ConfigError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(format!("@({path}): {e}")),
        };
        self.files.insert(path.to_owned(), text.clone());
        Ok(text)
    }
}

/// The notice for a reference that stayed as written.
fn unresolved(sigil: &str, inner: &str) -> String {
    match sigil {
        "$" => format!("$({inner}): no such environment variable; kept as written (as uWSGI does)"),
        "@" => format!("@({inner}): no such file; kept as written (as uWSGI does)"),
        _ => format!(
            "%({inner}): nothing in this configuration sets '{inner}'; kept as written (as uWSGI does)"
        ),
    }
}

/// The length of the text inside `(...)`, `body` starting after the `(`: up to the `)`
/// that closes it, nested parentheses included (as uWSGI counts them). `None` if unclosed.
fn closing(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in body.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One item of a placeholder math pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MathItem {
    /// A number or the value of a name.
    Value(String),
    /// `+ - * /` (applied to the next value) or `++ --` (applied at once).
    Op(String),
}

/// uWSGI's placeholder math: left to right, no precedence; an item after an item without an
/// operator between them is concatenated (`2 8` is `28`); numbers are read as `strtoll`
/// does (a leading integer, else 0); division by zero gives 0.
fn placeholder_math(items: &[MathItem]) -> String {
    let num = |s: &str| -> i64 {
        let t = s.trim_start();
        let (sign, digits) = match t.strip_prefix('-') {
            Some(d) => (-1, d),
            None => (1, t.strip_prefix('+').unwrap_or(t)),
        };
        let end = digits.bytes().take_while(u8::is_ascii_digit).count();
        digits[..end].parse::<i64>().map_or(0, |n| sign * n)
    };
    let mut current: Option<String> = None;
    let mut op: Option<&str> = None;
    for item in items {
        match item {
            MathItem::Op(o) if o == "++" || o == "--" => {
                if let Some(c) = &current {
                    let delta = if o == "++" { 1 } else { -1 };
                    current = Some(num(c).wrapping_add(delta).to_string());
                }
                op = None;
            }
            MathItem::Op(o) => op = Some(o.as_str()),
            MathItem::Value(v) => {
                let a = current.as_deref().unwrap_or("");
                current = Some(match op {
                    None => format!("{a}{v}"),
                    Some("+") => num(a).wrapping_add(num(v)).to_string(),
                    Some("-") => num(a).wrapping_sub(num(v)).to_string(),
                    Some("*") => num(a).wrapping_mul(num(v)).to_string(),
                    Some(_) => num(a).checked_div(num(v)).unwrap_or(0).to_string(),
                });
                op = None;
            }
        }
    }
    current.unwrap_or_default()
}

/// A value that refuses to grow past its cap (checked before each piece is added, so a
/// value never holds more than the cap).
struct Bounded {
    text: String,
    cap: usize,
}

impl Bounded {
    fn new(cap: usize, hint: usize) -> Self {
        Bounded {
            text: String::with_capacity(hint.min(cap)),
            cap,
        }
    }

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
    use crate::system::testing::FIXED;
    use std::time::Duration;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ph() -> Placeholders<'static> {
        Placeholders::new(&env, &FIXED)
    }

    /// Step 1 then step 2, as the loader does.
    fn full(ph: &mut Placeholders<'_>, raw: &str) -> Result<String, String> {
        let read = ph.read_value(raw)?;
        ph.resolve(&read).map(|r| r.value)
    }

    /// uWSGI's magic variables (`Configuration.rst`, "Magic variables"), each case the
    /// variable it copies.
    #[test]
    fn magic_variables_table() {
        let mut ph = ph();
        ph.enter_file(
            Path::new("/etc/uwsgi/vassals/top.ini"),
            Path::new("vassals/top.ini"),
            None,
        );
        ph.enter_file(
            Path::new("/srv/mysite/deploy/app.ini"),
            Path::new("deploy/app.ini"),
            Some("prod"),
        );
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("%d", "/srv/mysite/deploy/"),
            ("%dapp.sock", "/srv/mysite/deploy/app.sock"),
            ("%p", "/srv/mysite/deploy/app.ini"),
            ("%s", "app.ini"),
            ("%n", "app"),
            ("%e", "ini"),
            ("%c", "deploy"),
            ("%o", "deploy/app.ini"),
            ("%x", "deploy/app.ini:prod"),
            ("%0|%1|%2|%3", "srv|mysite|deploy|"),
            (
                "%D|%N|%C|%O|%X",
                "/etc/uwsgi/vassals/|top|vassals|vassals/top.ini|vassals/top.ini",
            ),
            ("%P|%S|%E", "/etc/uwsgi/vassals/top.ini|top.ini|ini"),
            ("%v", "/run/vassals"),
            ("%h", "web1"),
            ("workers = %k", "workers = 8"),
            ("%u:%g %U:%G", "1000:100 app:users"),
            ("%t", "1700000000"),
            ("%T", "1700000000123456"),
            ("%V", env!("CARGO_PKG_VERSION")),
            ("%[[31m", "\x1b[31m"),
            // Escapes and references are left for step 2; an unknown %x stays.
            ("%%", "%%"),
            ("%(base)", "%(base)"),
            ("%y %Y %*", "%y %Y %*"),
            ("50%", "50%"),
            ("项目/%n", "项目/app"),
        ];
        for (raw, want) in cases {
            assert_eq!(ph.read_value(raw).unwrap(), *want, "raw {raw:?}");
        }
        ph.leave_file();
        assert_eq!(ph.read_value("%n").unwrap(), "top");
    }

    #[test]
    fn magic_of_root_file() {
        let mut ph = ph();
        ph.enter_file(Path::new("/app.ini"), Path::new("/app.ini"), None);
        assert_eq!(ph.read_value("%d|%c|%n|%e|%0").unwrap(), "/||app|ini|");
        ph.enter_file(Path::new("/etc/rsgi/noext"), Path::new("noext"), None);
        assert_eq!(
            ph.read_value("%d|%c|%n|%e").unwrap(),
            "/etc/rsgi/|rsgi|noext|"
        );
    }

    /// Step 2 (uWSGI's config passes for `$`, `@` and `%`, `ParsingOrder.rst`).
    #[test]
    fn references_table() {
        let mut ph = ph();
        ph.define("base", "/srv/mysite");
        ph.define("project", "mysite");
        ph.define("project", "blog"); // uWSGI: the first definition wins
        ph.define("later", "%(base)/x"); // values are resolved in turn
        ph.define("processes", "2");
        ph.define("cores", "8");
        ph.define("n", "29");
        let cases: &[(&str, &str)] = &[
            ("%(base)/%(project)", "/srv/mysite/mysite"),
            ("%(later)", "/srv/mysite/x"),
            ("%(nope)/x", "%(nope)/x"),
            ("%(addr) - %(method) %(uri)", "%(addr) - %(method) %(uri)"),
            ("%(base", "%(base"),
            ("100%%", "100%"),
            ("%%(base)", "%(base)"),
            ("$(HOME)/x", "/home/me/x"),
            ("[$(UNSET)]", "[$(UNSET)]"),
            ("[$(EMPTY)]", "[]"),
            (
                "[$(UNSET:-def)|$(EMPTY:-def)|$(HOME:-def)]",
                "[def|def|/home/me]",
            ),
            ("[$(UNSET-def)|$(EMPTY-def)]", "[def|]"),
            ("$HOME", "$HOME"),
            ("$(HOME", "$(HOME"),
            ("cost $5", "cost $5"),
            ("a@b", "a@b"),
            ("@(/nonexistent/rsgi-file)", "@(/nonexistent/rsgi-file)"),
            // uWSGI's placeholder math (uwsgi_manage_placeholder).
            ("%(processes cores + 2)", "30"),
            ("%(processes + cores * 2)", "20"),
            ("%(n ++)", "30"),
            ("%(n --)", "28"),
            ("%(cores / 0)", "0"),
            ("%(cores - 10)", "-2"),
            ("%(nope + 1)", "1"),
        ];
        for (raw, want) in cases {
            assert_eq!(ph.resolve(raw).unwrap().value, *want, "raw {raw:?}");
        }
        assert!(ph.is_referenced("base") && ph.is_referenced("later"));
        assert!(!ph.is_referenced("HOME"));
    }

    #[test]
    fn what_stays_as_written_is_noted() {
        let mut ph = ph();
        let r = ph.resolve("%(x) $(NOPE) @(/nonexistent/f)").unwrap();
        assert_eq!(r.value, "%(x) $(NOPE) @(/nonexistent/f)");
        assert_eq!(
            r.notes,
            [
                "%(x): nothing in this configuration sets 'x'; kept as written (as uWSGI does)",
                "$(NOPE): no such environment variable; kept as written (as uWSGI does)",
                "@(/nonexistent/f): no such file; kept as written (as uWSGI does)",
            ]
        );
    }

    #[test]
    fn file_contents() {
        let dir = crate::system::testing::TempDir::new("expand");
        let name = dir.0.as_path().join("name");
        std::fs::write(&name, "blog\n").unwrap();
        let mut ph = ph();
        let raw = format!("/srv/@({})/app", name.display());
        assert_eq!(ph.resolve(&raw).unwrap().value, "/srv/blog/app");
        let err = ph.resolve("@(/dev/zero)").unwrap_err();
        assert_eq!(
            err,
            "@(/dev/zero): /dev/zero: not a regular file (a character device)"
        );
    }

    #[test]
    fn loops_and_nesting_are_errors() {
        let limits = Limits {
            nesting_depth: 3,
            ..Limits::DEFAULT
        };
        let mut ph = Placeholders::with_limits(&env, &FIXED, limits);
        ph.define("a", "%(b)");
        ph.define("b", "%(a)");
        ph.define("self", "x%(self)");
        ph.define("d1", "%(d2)");
        ph.define("d2", "%(d3)");
        ph.define("d3", "%(d4)");
        ph.define("d4", "end");
        ph.define("c1", "%(c2)");
        ph.define("c2", "%(c3)");
        ph.define("c3", "end");
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("%(a)", Err("%(a) refers to itself: a -> b -> a")),
            ("%(self)", Err("%(self) refers to itself: self -> self")),
            (
                "%(d1)",
                Err("placeholders nest more than 3 deep: d1 -> d2 -> d3 -> d4"),
            ),
            ("%(c1)", Ok("end")),
        ];
        for (raw, want) in cases {
            let got = ph.resolve(raw).map(|r| r.value);
            assert_eq!(got.as_deref().map_err(String::as_str), *want, "raw {raw:?}");
        }
    }

    #[test]
    fn value_and_total_caps() {
        let limits = Limits {
            value_bytes: 10,
            total_bytes: 25,
            ..Limits::DEFAULT
        };
        let mut ph = Placeholders::with_limits(&env, &FIXED, limits);
        ph.define("f", "12345");
        let value =
            "the value expands to more than 10 bytes (placeholders repeating placeholders?)";
        let total = "the configuration's values expand to more than 25 bytes in all";
        // (raw, result); each value counts twice (as read, then resolved), and the total
        // runs on from case to case.
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("0123", Ok("0123")),        // total 4 + 4 = 8
            ("01234567890", Err(value)), // 11 bytes as read; not counted
            ("%(f)%(f)x", Err(value)),   // 9 as read (total 17), 11 resolved
            ("xy", Ok("xy")),            // total 21
            ("%(f)", Err(total)),        // 4 as read (25), 5 resolved: 30
        ];
        for (raw, want) in cases {
            let got = full(&mut ph, raw);
            assert_eq!(got.as_deref().map_err(String::as_str), *want, "raw {raw:?}");
        }
    }

    #[test]
    fn a_bomb_fails_fast_without_growing() {
        // Each name repeats the one before 16 times: 16^12 bytes if nothing stopped it.
        let mut ph = ph();
        ph.define("p0", "xxxxxxxx");
        for i in 1..=12 {
            ph.define(&format!("p{i}"), &format!("%(p{})", i - 1).repeat(16));
        }
        let started = std::time::Instant::now();
        let err = ph.resolve("%(p12)").unwrap_err();
        assert!(
            err.starts_with("the value expands to more than 65536 bytes"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Many references to an empty value cost one resolution each, not a product.
        let mut ph = ph_with_empties();
        assert_eq!(ph.resolve("%(e6)").unwrap().value, "");
    }

    fn ph_with_empties() -> Placeholders<'static> {
        let mut ph = ph();
        ph.define("e0", "");
        for i in 1..=6 {
            ph.define(&format!("e{i}"), &format!("%(e{})", i - 1).repeat(1000));
        }
        ph
    }
}
