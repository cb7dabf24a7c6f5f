//! The uWSGI ini dialect, read by hand (uWSGI's `core/ini.c` rules, not Python's
//! `configparser`). Each rule names the uWSGI behaviour it copies; where rsgi differs on
//! purpose, `docs/migration.md` ("Dialect") says why.
//!
//! - Only the chosen section is read: by default `[uwsgi]` **and** `[rsgi]` (every such
//!   section, in file order, so a file may hold both and a tool that only knows uWSGI sees
//!   only `[uwsgi]`); with `file.ini:name`, only `[name]`. Lines outside it are ignored.
//!   Lines before the first header belong to no section.
//! - A line whose first non-blank character is `;` or `#` is a comment. There are **no
//!   inline comments** (uWSGI has none): `socket = :80 ; http` sets the socket to
//!   `:80 ; http`. Numbers are read from their leading digits and booleans as uWSGI reads
//!   them, so `max-requests = 1000 ; comment` and `master = true # comment` work (see
//!   [`crate::options::read_bool`]).
//! - `key = value` is split at the **first** `=` (uWSGI's `ini_get_key`); spaces, tabs and
//!   CRs (and other Unicode white space, e.g. pasted no-break spaces) around key and value
//!   are trimmed. There is **no quoting and no escaping**: `"abc"` keeps its quotes and
//!   backslashes stay as they are.
//! - A line without `=` is the key with an empty value (`ini_get_key` again), which turns a
//!   flag on: a bare `master` is `master = true`. (A line that cannot be an option name,
//!   such as a blog's `...`, is skipped by the loader with a notice.)
//! - Keys are case-sensitive. A repeated key gives one [`Entry`] per line, in order (the
//!   option table decides whether that appends or overrides).
//! - Magic variables (`%d`, `%n`, `%k`, ...) are replaced as the line is read; references
//!   (`%(name)`, `$(ENV)`, `@(file)`) once the whole configuration is read, so `%(x)` may
//!   name a key set later or in another file. See [`crate::expand`]. Every entry (also keys
//!   that are no option) defines `%(key)`; `set-placeholder = name=value` (alias `set-ph`)
//!   defines `%(name)` only.
//! - A UTF-8 byte-order mark at the start of the file is skipped.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::expand::Placeholders;

/// One `key = value` line of a config file (ini or XML). From [`parse_str`] and [`read`] the
/// value is fully expanded; inside the loader it holds the magic-expanded text until the
/// whole configuration is read and its references are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The option name as written (case kept). For a line without `=`, the whole line
    /// (with an empty value).
    pub key: String,
    /// The value, trimmed and expanded. Empty for `key =` or an empty XML element, which the
    /// option table reads as "given without a value" (`true` for booleans).
    pub value: String,
    /// 1-based line number.
    pub line: usize,
    /// The file, as it was named by whoever asked to read it.
    pub file: PathBuf,
}

/// Whether `name` is a section [`parse_str`] reads when no section was asked for.
pub fn is_default_section(name: &str) -> bool {
    name == "uwsgi" || name == "rsgi"
}

/// Called with each entry as soon as its line is read (so `ini = other.ini` can be read
/// in place, before the lines after it). The visitor defines the entry for `%(key)`
/// ([`define`]) if it takes it.
pub(crate) type Visitor<'v, 'e> =
    &'v mut dyn FnMut(Entry, &mut Placeholders<'e>) -> Result<(), ConfigError>;

/// Parse ini text. `path` names the file in entries and errors and is the base of the magic
/// variables (pass an absolute path for `%d`/`%p` to be absolute). `section` is `None` for
/// the default `[uwsgi]`/`[rsgi]` sections.
pub fn parse_str(
    text: &str,
    path: &Path,
    section: Option<&str>,
    ph: &mut Placeholders<'_>,
) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    parse_with(text, path, path, section, ph, &mut |e, ph| {
        define(ph, &e.key, &e.value).map_err(|msg| ConfigError::line(&e.file, e.line, msg))?;
        entries.push(e);
        Ok(())
    })?;
    resolve_all(entries, ph)
}

/// Read and parse an ini file. Errors and entries name the file as `path` was given; the
/// magic variables use its canonical path (so `%d` of a symlinked vassal ini is the
/// directory of the real file, as uWSGI's `realpath`).
pub fn read(
    path: &Path,
    section: Option<&str>,
    ph: &mut Placeholders<'_>,
) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    visit_file(path, section, ph, &mut |e, ph| {
        define(ph, &e.key, &e.value).map_err(|msg| ConfigError::line(&e.file, e.line, msg))?;
        entries.push(e);
        Ok(())
    })?;
    resolve_all(entries, ph)
}

/// Resolve the references in every entry's value ([`Placeholders::resolve`]), once all of
/// them are read. What stays as written is kept without a notice here; the loader adds
/// notices. Shared with the XML reader.
pub(crate) fn resolve_all(
    mut entries: Vec<Entry>,
    ph: &mut Placeholders<'_>,
) -> Result<Vec<Entry>, ConfigError> {
    for e in &mut entries {
        e.value = ph
            .resolve(&e.value)
            .map_err(|msg| ConfigError::line(&e.file, e.line, msg))?
            .value;
    }
    Ok(entries)
}

/// [`read`], handing each entry to `visit` as it is read.
pub(crate) fn visit_file<'e>(
    path: &Path,
    section: Option<&str>,
    ph: &mut Placeholders<'e>,
    visit: Visitor<'_, 'e>,
) -> Result<(), ConfigError> {
    let text = ph.read_file(path)?;
    let real = ph.real_path(path);
    parse_with(&text, path, &real, section, ph, visit)
}

/// The characters trimmed around lines, keys and values: spaces, tabs, CRs, and other
/// Unicode white space such as the no-break space (U+00A0) that copying a config from a web
/// page leaves behind (seed 003's `\t\u{a0}[uwsgi]`). uWSGI trims only ASCII blanks and
/// would miss that section header.
const BLANKS: fn(char) -> bool = char::is_whitespace;

fn parse_with<'e>(
    text: &str,
    shown: &Path,
    real: &Path,
    section: Option<&str>,
    ph: &mut Placeholders<'e>,
    visit: Visitor<'_, 'e>,
) -> Result<(), ConfigError> {
    ph.enter_file(real, shown, section);
    let result = parse_lines(text, shown, section, ph, visit);
    ph.leave_file();
    result
}

fn parse_lines<'e>(
    text: &str,
    shown: &Path,
    section: Option<&str>,
    ph: &mut Placeholders<'e>,
    visit: Visitor<'_, 'e>,
) -> Result<(), ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let wanted = |name: &str| match section {
        Some(s) => name == s,
        None => is_default_section(name),
    };
    let mut inside = false;
    let mut found = false;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_matches(BLANKS);
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err(ConfigError::line(
                    shown,
                    line,
                    format!("section header without ']': {trimmed}"),
                ));
            };
            inside = wanted(name.trim_matches(BLANKS));
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        // A line without '=' is the key with an empty value, which turns a flag on (uWSGI's
        // `ini_get_key` returns the empty rest of the line as the value: a bare `master`).
        let (key, value) = trimmed.split_once('=').unwrap_or((trimmed, ""));
        let key = key.trim_matches(BLANKS);
        if key.is_empty() {
            return Err(ConfigError::line(
                shown,
                line,
                "option name missing before '='",
            ));
        }
        let value = ph
            .read_value(value.trim_matches(BLANKS))
            .map_err(|msg| ConfigError::line(shown, line, msg))?;
        let entry = Entry {
            key: key.to_owned(),
            value,
            line,
            file: shown.to_path_buf(),
        };
        visit(entry, ph)?;
    }
    if !found {
        let msg = match section {
            Some(s) => format!("no [{s}] section"),
            None => "no [uwsgi] or [rsgi] section".to_owned(),
        };
        return Err(ConfigError::file(shown, msg));
    }
    Ok(())
}

/// Make an entry visible to `%(...)`: `%(key)` for every entry, and `%(name)` for
/// `set-placeholder = name=value`. Called by whoever takes the entries (the loader skips the
/// lines of a config-logic block whose condition does not hold, as uWSGI does).
pub(crate) fn define(ph: &mut Placeholders<'_>, key: &str, value: &str) -> Result<(), String> {
    if key == "set-placeholder" || key == "set-ph" {
        match value.split_once('=') {
            Some((name, val)) if !name.trim().is_empty() => ph.define(name.trim(), val.trim()),
            _ => return Err(format!("{key} needs 'name=value', found '{value}'")),
        }
    }
    ph.define(key, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str, section: Option<&str>) -> Result<Vec<(String, String, usize)>, String> {
        let mut ph = Placeholders::new(&no_env, &crate::system::testing::FIXED);
        parse_str(text, Path::new("/etc/app/site.ini"), section, &mut ph)
            .map(|es| es.into_iter().map(|e| (e.key, e.value, e.line)).collect())
            .map_err(|e| e.to_string())
    }

    /// `case!(input => [(key, value, line), ...])` or `case!(input => err "message")`.
    macro_rules! case {
        ($text:expr => [$(($k:expr, $v:expr, $l:expr)),* $(,)?]) => {
            case!($text, None => [$(($k, $v, $l)),*])
        };
        ($text:expr, $section:expr => [$(($k:expr, $v:expr, $l:expr)),* $(,)?]) => {
            assert_eq!(
                parse($text, $section),
                Ok(vec![$(($k.to_string(), $v.to_string(), $l)),*]),
                "input {:?}", $text
            )
        };
        ($text:expr => err $msg:expr) => {
            case!($text, None => err $msg)
        };
        ($text:expr, $section:expr => err $msg:expr) => {
            assert_eq!(parse($text, $section), Err($msg.to_string()), "input {:?}", $text)
        };
    }

    #[test]
    fn comments_and_blanks() {
        case!("[uwsgi]\n; semi\n# hash\n   ; indented\n\t# tab\n\nmaster = true\n" =>
            [("master", "true", 7)]);
        // No inline comments: the rest of the line is the value.
        case!("[uwsgi]\nsocket = :80 ; http\nchdir = /srv # x\n" =>
            [("socket", ":80 ; http", 2), ("chdir", "/srv # x", 3)]);
    }

    #[test]
    fn split_and_trim() {
        case!("[uwsgi]\nenv = A=B=C\n" => [("env", "A=B=C", 2)]);
        case!("[uwsgi]\n  static-map=/s=/d  \r\n" => [("static-map", "/s=/d", 2)]);
        case!("[uwsgi]\r\n\tkey\t=\tvalue\t\r\n" => [("key", "value", 2)]);
        case!("[uwsgi]\nmaster =\n" => [("master", "", 2)]);
        case!("[uwsgi]\nx = a = b\n" => [("x", "a = b", 2)]);
    }

    #[test]
    fn no_quoting_no_escapes() {
        case!("[uwsgi]\ncallable = \"app\"\n" => [("callable", "\"app\"", 2)]);
        case!("[uwsgi]\nchdir = 'C:\\srv\\app'\n" => [("chdir", "'C:\\srv\\app'", 2)]);
        case!("[uwsgi]\nenv = A=\\n\\t\n" => [("env", "A=\\n\\t", 2)]);
    }

    #[test]
    fn repeated_keys_append_in_order() {
        case!("[uwsgi]\nsocket = :1\nhttp = :2\nsocket = :3\n" =>
            [("socket", ":1", 2), ("http", ":2", 3), ("socket", ":3", 4)]);
    }

    #[test]
    fn keys_are_case_sensitive() {
        case!("[uwsgi]\nMaster = 1\nmaster = 0\n" => [("Master", "1", 2), ("master", "0", 3)]);
    }

    #[test]
    fn sections() {
        let text = "top = 0\n[app]\na = 1\n[uwsgi]\nb = 2\n[other]\nc = 3\n[rsgi]\nd = 4\n[uwsgi]\ne = 5\n";
        case!(text => [("b", "2", 5), ("d", "4", 9), ("e", "5", 11)]);
        case!(text, Some("app") => [("a", "1", 3)]);
        case!(text, Some("other") => [("c", "3", 7)]);
        case!(text, Some("rsgi") => [("d", "4", 9)]);
        case!(text, Some("nope") => err "/etc/app/site.ini: no [nope] section");
        case!("[rsgi]\nx = 1\n" => [("x", "1", 2)]);
        case!("[ uwsgi ]\nx = 1\n" => [("x", "1", 2)]);
        case!("[UWSGI]\nx = 1\n" => err "/etc/app/site.ini: no [uwsgi] or [rsgi] section");
        case!("" => err "/etc/app/site.ini: no [uwsgi] or [rsgi] section");
        case!("x = 1\n" => err "/etc/app/site.ini: no [uwsgi] or [rsgi] section");
        // Lines outside the section may be anything.
        case!("[other]\nno equals here\n[uwsgi]\nx = 1\n" => [("x", "1", 4)]);
    }

    #[test]
    fn errors_name_file_and_line() {
        // uWSGI's ini_get_key: a line without '=' is the key with an empty value.
        case!("[uwsgi]\nmaster = true\n\nlazy-apps\nprocesses 4\n" =>
            [("master", "true", 2), ("lazy-apps", "", 4), ("processes 4", "", 5)]);
        case!("[uwsgi]\n = 4\n" => err "/etc/app/site.ini:2: option name missing before '='");
        case!("[uwsgi\nx = 1\n" => err "/etc/app/site.ini:1: section header without ']': [uwsgi");
        case!("[uwsgi]\nchdir = %(base)/app\n" => [("chdir", "%(base)/app", 2)]);
        case!("[uwsgi]\na = %(a)\n" => err "/etc/app/site.ini:2: %(a) refers to itself: a -> a");
        case!("[uwsgi]\nset-ph = novalue\n" =>
            err "/etc/app/site.ini:2: set-ph needs 'name=value', found 'novalue'");
    }

    #[test]
    fn placeholders() {
        case!("[uwsgi]\nbase = /srv\nproject = blog\nchdir = %(base)/%(project)\n" =>
            [("base", "/srv", 2), ("project", "blog", 3), ("chdir", "/srv/blog", 4)]);
        case!("[uwsgi]\nsocket = :1\nsocket = :2\nstats = %(socket)0\n" =>
            [("socket", ":1", 2), ("socket", ":2", 3), ("stats", ":10", 4)]);
        // Resolved after the whole file is read: a later key counts (uWSGI's config pass).
        case!("[uwsgi]\nchdir = %(base)/app\nbase = /srv\n" =>
            [("chdir", "/srv/app", 2), ("base", "/srv", 3)]);
        case!("[uwsgi]\nset-placeholder = app = blog\nmodule = %(app).wsgi\n" =>
            [("set-placeholder", "app = blog", 2), ("module", "blog.wsgi", 3)]);
        case!("[uwsgi]\nsocket = %d%n.sock\nlogto = /var/log/%c/%s.%e.log\npidfile = %p.pid\nx = 100%%\n" => [
            ("socket", "/etc/app/site.sock", 2),
            ("logto", "/var/log/app/site.ini.ini.log", 3),
            ("pidfile", "/etc/app/site.ini.pid", 4),
            ("x", "100%", 5),
        ]);
        // Placeholders from another section are not seen; unknown ones stay as written.
        case!("[other]\nbase = /o\n[uwsgi]\nchdir = %(base)\n" => [("chdir", "%(base)", 4)]);
    }

    #[test]
    fn env_lookup_is_injected() {
        let env = |name: &str| (name == "APP_HOME").then(|| "/home/app".to_owned());
        let mut ph = Placeholders::new(&env, &crate::system::testing::FIXED);
        let entries = parse_str(
            "[uwsgi]\nhome = $(APP_HOME)/venv\nchdir = $(NOPE)/x\n",
            Path::new("a.ini"),
            None,
            &mut ph,
        )
        .unwrap();
        assert_eq!(entries[0].value, "/home/app/venv");
        assert_eq!(entries[1].value, "$(NOPE)/x");
        assert_eq!(entries[1].file, Path::new("a.ini"));
    }

    #[test]
    fn bom_is_skipped() {
        case!("\u{feff}[uwsgi]\nx = 1\n" => [("x", "1", 2)]);
    }

    #[test]
    fn pasted_no_break_spaces_are_blanks() {
        case!("\t \u{a0}[uwsgi]\n\u{a0}x\u{a0}=\u{a0}1\u{a0}\n" => [("x", "1", 2)]);
        // Inside a value they stay.
        case!("[uwsgi]\nx = a\u{a0}b\n" => [("x", "a\u{a0}b", 2)]);
    }

    /// The magic variables name the file [`System::real_path`] resolves to (a vassal
    /// ini symlinked from the vassals dir into a project), `%n`'s name included; a path
    /// that does not resolve is used as given.
    #[test]
    fn magic_variables_follow_the_real_path() {
        use crate::system::{Host, PathKind, System};
        use std::path::PathBuf;
        struct Linked(Option<&'static str>);
        impl System for Linked {
            fn open_config(&self, path: &Path) -> std::io::Result<std::fs::File> {
                crate::system::testing::FIXED.open_config(path)
            }
            fn host(&self) -> Host {
                crate::system::testing::host()
            }
            fn path_kind(&self, _: &Path) -> Option<PathKind> {
                None
            }
            fn glob(&self, _: &str) -> Result<Vec<PathBuf>, String> {
                Ok(Vec::new())
            }
            fn real_path(&self, _: &Path) -> Option<PathBuf> {
                self.0.map(PathBuf::from)
            }
        }
        let dir = std::env::temp_dir().join(format!("rsgi-proto-real-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vassal.ini");
        std::fs::write(&file, "[uwsgi]\nchdir = %d\nname = %n\n").unwrap();
        for (real, want_dir, want_name) in [
            (
                Some("/srv/project/deploy/site.ini"),
                "/srv/project/deploy/".to_owned(),
                "site",
            ),
            (None, format!("{}/", dir.display()), "vassal"),
        ] {
            let system = Linked(real);
            let mut ph = Placeholders::new(&no_env, &system);
            let got: Vec<(String, String)> = read(&file, None, &mut ph)
                .unwrap()
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect();
            assert_eq!(
                got,
                [
                    ("chdir".to_owned(), want_dir),
                    ("name".to_owned(), want_name.to_owned())
                ],
                "real path {real:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_reports_unreadable_and_bad_utf8() {
        let mut ph = Placeholders::new(&no_env, &crate::system::testing::FIXED);
        let err = read(Path::new("/nonexistent/rsgi-test.ini"), None, &mut ph).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/rsgi-test.ini: cannot read: "),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("rsgi-proto-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.ini");
        std::fs::write(&bad, b"[uwsgi]\nchdir = /ok\nmodule = \xff\n").unwrap();
        let err = read(&bad, None, &mut ph).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:3: not valid UTF-8", bad.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
