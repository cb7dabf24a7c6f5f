//! [`ConfigError`]: everything that can be wrong with a configuration, with where it was
//! wrong (`file:line`, `file`, or the command line) and the exit code it maps to.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::notify::{EXIT_CONFIG, EXIT_USAGE};

/// A configuration problem. Its `Display` says where, then what:
///
/// - `app.ini:7: unknown option 'proccesses' (did you mean 'processes'?)` ([`Self::Line`]),
/// - `app.ini: no [uwsgi] or [rsgi] section` ([`Self::File`]),
/// - `app.ini: cannot read: No such file or directory (os error 2)` ([`Self::Read`]),
/// - `--processes: 'four' is not a number` or `command line: unknown option '--bogus'`
///   ([`Self::CommandLine`]).
///
/// [`ConfigError::exit_code`] maps it to `EXIT_USAGE` (64) for command-line mistakes and
/// `EXIT_CONFIG` (78) for everything found in a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Something is wrong on one line of a config file.
    #[error("{}:{line}: {msg}", path.display())]
    Line {
        /// The file, as it was named (on the command line, in the vassal dir, in `ini =`).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Something is wrong with a config file as a whole (a missing section, no root element).
    #[error("{}: {msg}", path.display())]
    File {
        /// The file, as it was named.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A config file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file, as it was named.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The command line is wrong: an unknown option, a missing or bad value.
    #[error("{}: {msg}", CliWhere(option.as_deref()))]
    CommandLine {
        /// The option as it was typed, without dashes (`processes`, `p`), if the problem is
        /// about one option; `None` for the command line as a whole.
        option: Option<String>,
        /// What is wrong.
        msg: String,
    },
}

/// Formats the "where" of a command-line error: `--name`, `-p`, or `command line`.
struct CliWhere<'a>(Option<&'a str>);

impl fmt::Display for CliWhere<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) if name.chars().count() == 1 => write!(f, "-{name}"),
            Some(name) => write!(f, "--{name}"),
            None => f.write_str("command line"),
        }
    }
}

impl ConfigError {
    /// The process exit code for this error: [`EXIT_USAGE`] (64) for command-line mistakes,
    /// [`EXIT_CONFIG`] (78) for problems in (or reading) a config file. The emperor marks a
    /// vassal that exits with 78 Failed at once: retrying cannot help.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::CommandLine { .. } => EXIT_USAGE,
            ConfigError::Line { .. } | ConfigError::File { .. } | ConfigError::Read { .. } => {
                EXIT_CONFIG
            }
        }
    }

    /// Shorthand for [`ConfigError::Line`].
    pub(crate) fn line(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        ConfigError::Line {
            path: path.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    /// Shorthand for [`ConfigError::File`].
    pub(crate) fn file(path: &Path, msg: impl Into<String>) -> Self {
        ConfigError::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`ConfigError::CommandLine`].
    pub(crate) fn cli(option: Option<&str>, msg: impl Into<String>) -> Self {
        ConfigError::CommandLine {
            option: option.map(str::to_owned),
            msg: msg.into(),
        }
    }
}

/// An error and its causes on one line: `cannot bind 0.0.0.0:80: Permission denied`.
/// A cause whose text is already part of the line is not repeated.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_exit_codes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let cases: Vec<(ConfigError, &str, i32)> = vec![
            (
                ConfigError::line(Path::new("path/to/app.ini"), 7, "no '=' in line"),
                "path/to/app.ini:7: no '=' in line",
                EXIT_CONFIG,
            ),
            (
                ConfigError::file(Path::new("app.ini"), "no [uwsgi] or [rsgi] section"),
                "app.ini: no [uwsgi] or [rsgi] section",
                EXIT_CONFIG,
            ),
            (
                ConfigError::Read {
                    path: "x.ini".into(),
                    source: io,
                },
                "x.ini: cannot read: gone",
                EXIT_CONFIG,
            ),
            (
                ConfigError::cli(Some("processes"), "'four' is not a number"),
                "--processes: 'four' is not a number",
                EXIT_USAGE,
            ),
            (
                ConfigError::cli(Some("p"), "missing value"),
                "-p: missing value",
                EXIT_USAGE,
            ),
            (
                ConfigError::cli(None, "unexpected argument 'x'"),
                "command line: unexpected argument 'x'",
                EXIT_USAGE,
            ),
        ];
        for (err, text, code) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(err.exit_code(), code, "{text}");
        }
    }

    #[test]
    fn chain_appends_causes_not_already_in_the_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Outer(&'static str, #[source] std::io::Error);
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            chain(&Outer("cannot bind 0.0.0.0:80", io())),
            "cannot bind 0.0.0.0:80: permission denied"
        );
        assert_eq!(
            chain(&Outer("cannot bind 0.0.0.0:80: permission denied", io())),
            "cannot bind 0.0.0.0:80: permission denied"
        );
    }
}
