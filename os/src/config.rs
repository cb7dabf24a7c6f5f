//! The system side of reading a configuration ([`rsgi_proto::System`]): [`Os`] opens
//! config files without blocking and asks the system for the [`Host`] facts; [`parse_args`],
//! [`load_file`] and [`read_config_bytes`] are proto's readers with [`Os`] passed in, the
//! entry points the programs call.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rsgi_proto::bounds::{Included, Limits};
use rsgi_proto::config::VassalConfig;
use rsgi_proto::expand::EnvLookup;
use rsgi_proto::{ConfigError, Host, Invocation, PathKind, System};

/// The real system: see the module doc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Os;

impl System for Os {
    /// std opens with `O_CLOEXEC` already; `O_NONBLOCK` makes opening a FIFO without a
    /// writer return at once, `O_NOCTTY` keeps a terminal from becoming ours.
    fn open_config(&self, path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
    }

    /// `%k` is the CPUs this process may run on (affinity and cgroup limits honoured, as
    /// [`std::thread::available_parallelism`]); names come from [`crate::users`] (the
    /// number when there is no entry).
    fn host(&self) -> Host {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        Host {
            cwd: std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            uid,
            user: crate::users::user_by_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name),
            gid,
            group: crate::users::group_name(gid)
                .ok()
                .flatten()
                .unwrap_or_else(|| gid.to_string()),
            started: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// `realpath(3)`, as uWSGI resolves the config file's path for `%d` and friends.
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }

    /// `stat(2)` (symlinks followed).
    fn path_kind(&self, path: &Path) -> Option<PathKind> {
        std::fs::metadata(path).ok().map(|m| PathKind::from(&m))
    }

    /// The `glob` crate (a well-kept crate of the Rust project) with glob(3)'s defaults:
    /// `*` never matches a `/` or a leading `.`, case matters.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let paths = glob::glob_with(pattern, options).map_err(|e| format!("bad pattern: {e}"))?;
        Ok(paths.filter_map(Result::ok).collect())
    }
}

/// `rsgi`'s command line: [`rsgi_proto::parse_args_with`] with [`Os`].
///
/// # Errors
/// As [`rsgi_proto::parse_args_with`].
pub fn parse_args(args: &[String], env: EnvLookup<'_>) -> Result<Invocation, ConfigError> {
    rsgi_proto::parse_args_with(args, env, &Os)
}

/// One vassal file: [`rsgi_proto::load_file_with`] with [`Os`].
///
/// # Errors
/// As [`rsgi_proto::load_file_with`].
pub fn load_file(
    path_with_optional_section: &str,
    env: EnvLookup<'_>,
) -> Result<VassalConfig, ConfigError> {
    rsgi_proto::load_file_with(path_with_optional_section, env, &Os)
}

/// One vassal file, and every file the load read or tried to read besides it, whether the
/// load succeeded or not: [`rsgi_proto::load_file_reads`] with [`Os`].
pub fn load_file_reads(
    path_with_optional_section: &str,
    env: EnvLookup<'_>,
) -> (Result<VassalConfig, ConfigError>, Vec<Included>) {
    rsgi_proto::load_file_reads(path_with_optional_section, env, &Os)
}

/// The bytes of a config file within `limits`, never blocking:
/// [`rsgi_proto::bounds::read_config_bytes`] with [`Os`] (rsgid fingerprints vassal files
/// with it).
///
/// # Errors
/// As [`rsgi_proto::bounds::read_config_bytes`].
pub fn read_config_bytes(path: &Path, limits: &Limits) -> Result<Vec<u8>, ConfigError> {
    rsgi_proto::bounds::read_config_bytes(path, limits, &Os)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn current_host_is_plausible() {
        let h = Os.host();
        assert!(h.cpus >= 1);
        assert!(!h.hostname.is_empty());
        assert!(h.started > Duration::from_secs(1_600_000_000));
        assert_eq!(h.uid, nix::unistd::getuid().as_raw());
        assert!(!h.user.is_empty() && !h.group.is_empty());
    }

    /// Config logic on a real directory through [`Os`]: `for-glob` sorted, directories
    /// marked, dot files left out, no match gives the pattern; `if-exists`, `if-file`,
    /// `if-dir` as `stat` says (a symlink followed).
    #[test]
    fn config_logic_looks_at_the_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["b.ini", "a.ini", ".hidden.ini", "c.txt"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::create_dir(d.join("d.ini")).unwrap();
        std::os::unix::fs::symlink(d.join("d.ini"), d.join("link")).unwrap();
        let base = d.display().to_string();
        let mut raw = Os.glob(&format!("{base}/*.ini")).unwrap();
        raw.sort();
        assert_eq!(
            raw,
            ["a.ini", "b.ini", "d.ini"].map(|n| d.join(n)).to_vec(),
            "glob(3)'s rules: no dot files"
        );
        assert!(Os.glob("[").unwrap_err().starts_with("bad pattern: "));
        let kinds = [
            ("a.ini", Some(PathKind::File)),
            ("d.ini", Some(PathKind::Dir)),
            ("link", Some(PathKind::Dir)),
            ("nope", None),
        ];
        for (name, want) in kinds {
            assert_eq!(Os.path_kind(&d.join(name)), want, "{name}");
        }
        let ini = d.join("app.ini.conf");
        std::fs::write(
            &ini,
            format!(
                "[uwsgi]\nmodule = app\n\
                 for-glob = {base}/*.ini\npythonpath = %(_)\nendfor\n\
                 for-glob = {base}/*.xml\npythonpath = %(_)\nendfor\n\
                 if-file = {base}/a.ini\nenv = FILE=1\nendif\n\
                 if-dir = {base}/link\nenv = DIR=1\nendif\n\
                 if-exists = {base}/nope\nenv = NOPE=1\nendif\n"
            ),
        )
        .unwrap();
        let config = load_file(&ini.display().to_string(), &|_: &str| None).unwrap();
        let paths: Vec<String> = config
            .pythonpath
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                format!("{base}/a.ini"),
                format!("{base}/b.ini"),
                format!("{base}/d.ini/"),
                format!("{base}/*.xml"),
            ]
        );
        assert_eq!(
            config.env,
            [
                ("FILE".to_owned(), "1".to_owned()),
                ("DIR".to_owned(), "1".to_owned())
            ]
        );
    }

    /// A FIFO (no writer) is refused without blocking, read directly, named by `ini = `
    /// in a file, or named on the command line; a terminal-like device is refused too.
    #[test]
    fn a_fifo_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.ini");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let fifo = fifo.display().to_string();
        let include = dir.path().join("include.ini");
        std::fs::write(&include, format!("[uwsgi]\nthreads = 1\nini = {fifo}\n")).unwrap();
        let include = include.display().to_string();
        let no_env = |_: &str| None;
        let not_regular = format!("{fifo}: not a regular file (a FIFO)");
        let cases: Vec<(&str, String, String)> = vec![
            (
                "read_config_bytes",
                read_config_bytes(Path::new(&fifo), &Limits::DEFAULT)
                    .unwrap_err()
                    .to_string(),
                not_regular.clone(),
            ),
            (
                "load_file",
                load_file(&fifo, &no_env).unwrap_err().to_string(),
                not_regular.clone(),
            ),
            (
                "include",
                load_file(&include, &no_env).unwrap_err().to_string(),
                format!("{include}:3: ini = {fifo}: {not_regular}"),
            ),
            (
                "--ini",
                parse_args(&["--ini".to_owned(), fifo.clone()], &no_env)
                    .unwrap_err()
                    .to_string(),
                not_regular.clone(),
            ),
            (
                "/dev/null",
                read_config_bytes(Path::new("/dev/null"), &Limits::DEFAULT)
                    .unwrap_err()
                    .to_string(),
                "/dev/null: not a regular file (a character device)".to_owned(),
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }
}
