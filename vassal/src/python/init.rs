//! Starting the embedded interpreter: virtualenv checks, `PyConfig`, `sys.path`.
//!
//! The interpreter is configured through CPython's `PyConfig` (PEP 587) rather than
//! environment variables, so that:
//! - a virtualenv (`home`/`virtualenv`/`venv`) works the way `<venv>/bin/python` does:
//!   the program name points into the venv, CPython finds its `pyvenv.cfg`, and
//!   `sys.prefix` and the venv's site-packages follow;
//! - CPython installs no signal handlers of its own (the server owns SIGINT and friends);
//! - a venv built for another Python minor version is refused *before* CPython starts,
//!   with both versions named, instead of the bare abort uWSGI users know
//!   ("Fatal Python error: init_fs_encoding").

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::ffi;

use super::PythonError;

/// The Python this binary was built against (`PYO3_PYTHON` at build time), used as the
/// program name when no virtualenv is configured so that `sys.executable` is a real
/// interpreter.
const BUILD_PYTHON: Option<&str> = option_env!("PYO3_PYTHON");

/// `major.minor` of the libpython actually loaded (e.g. `"3.11"`).
pub fn running_version() -> String {
    // SAFETY: Py_GetVersion returns a pointer to a static NUL-terminated string built
    // into libpython; it may be called before the interpreter is initialized.
    let full = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    major_minor(&full).unwrap_or_default()
}

/// The `major.minor` prefix of a version string such as `3.11.2 (main, ...)`.
fn major_minor(version: &str) -> Option<String> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().filter(|s| !s.is_empty())?;
    let minor = parts.next().filter(|s| !s.is_empty())?;
    Some(format!("{major}.{minor}"))
}

/// The Python version a virtualenv was made for, read from its `pyvenv.cfg`
/// (`version = 3.11.2` from venv, `version_info = 3.11.7.final.0` from virtualenv).
pub fn venv_version(pyvenv_cfg: &str) -> Option<String> {
    pyvenv_cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        match key.trim() {
            "version" | "version_info" => major_minor(value.trim()),
            _ => None,
        }
    })
}

/// Check that the virtualenv at `home` was made for `running` (`major.minor`).
///
/// A venv is recognised by its `pyvenv.cfg`; without one (an old-style virtualenv or a
/// plain prefix), by the `lib/pythonX.Y` directories it holds.
pub fn check_venv(home: &Path, running: &str) -> Result<(), PythonError> {
    if !home.is_dir() {
        return Err(PythonError::Venv {
            home: home.to_owned(),
            msg: "no such directory".into(),
        });
    }
    let made_for = match std::fs::read_to_string(home.join("pyvenv.cfg")) {
        Ok(text) => venv_version(&text),
        Err(_) => lib_python_versions(home).into_iter().next(),
    };
    match made_for {
        Some(v) if v != running => Err(PythonError::Venv {
            home: home.to_owned(),
            msg: format!(
                "this virtualenv was made for Python {v}, but rsgi embeds Python {running}; \
                 recreate it with python{running} -m venv {}",
                home.display()
            ),
        }),
        Some(_) => Ok(()),
        None => Err(PythonError::Venv {
            home: home.to_owned(),
            msg: "not a virtualenv (no pyvenv.cfg and no lib/pythonX.Y)".into(),
        }),
    }
}

/// The `X.Y` of every `lib/pythonX.Y` directory under `home`.
fn lib_python_versions(home: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(home.join("lib")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("python").and_then(major_minor)
        })
        .collect()
}

/// The program name CPython derives its paths from.
fn program_name(home: Option<&Path>) -> Option<PathBuf> {
    match home {
        Some(home) => {
            let bin = home.join("bin");
            ["python3", "python"]
                .iter()
                .map(|n| bin.join(n))
                .find(|p| p.exists())
                .or_else(|| Some(bin.join("python3")))
        }
        None => BUILD_PYTHON.map(PathBuf::from).filter(|p| p.exists()),
    }
}

/// Initialize CPython once for this process. Must run before any other thread exists
/// and before anything else touches Python.
pub fn initialize(home: Option<&Path>) -> Result<(), PythonError> {
    let running = running_version();
    if let Some(home) = home {
        check_venv(home, &running)?;
    }
    let program = program_name(home);
    let program_c = program
        .as_ref()
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
        .transpose()
        .map_err(|_| PythonError::Init("program name contains a NUL byte".into()))?;

    // SAFETY: PyConfig is a plain C struct that PyConfig_InitPythonConfig fully
    // initializes; we only set documented fields, pass pointers to NUL-terminated
    // strings that outlive the calls, and clear the config before it goes out of scope.
    // The interpreter is not yet running and no other thread exists.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config_ptr = config.as_mut_ptr();
        (*config_ptr).install_signal_handlers = 0;
        (*config_ptr).parse_argv = 0;
        let mut status_ok = true;
        if let Some(program_c) = &program_c {
            let status = ffi::PyConfig_SetBytesString(
                config_ptr,
                &raw mut (*config_ptr).program_name,
                program_c.as_ptr(),
            );
            status_ok = ffi::PyStatus_Exception(status) == 0;
        }
        if status_ok {
            let argv0 = c"rsgi";
            let mut argv = [argv0.as_ptr()];
            let status = ffi::PyConfig_SetBytesArgv(config_ptr, 1, argv.as_mut_ptr());
            status_ok = ffi::PyStatus_Exception(status) == 0;
        }
        let init_ok = status_ok && {
            let status = ffi::Py_InitializeFromConfig(config_ptr);
            ffi::PyStatus_Exception(status) == 0
        };
        ffi::PyConfig_Clear(config_ptr);
        if !init_ok {
            return Err(PythonError::Init(format!(
                "CPython {running} failed to initialize (program name {:?})",
                program
            )));
        }
        // Release the GIL that initialization left with this thread: from now on every
        // user takes it through Python::attach.
        ffi::PyEval_SaveThread();
    }
    if crate::log::nonblocking() || crate::log::has_loggers() {
        pyo3::Python::attach(super::output::install)
            .map_err(|e| PythonError::Init(format!("cannot set up sys.stdout/sys.stderr: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_from_pyvenv_cfg() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n",
                Some("3.11"),
            ),
            ("home=/x\nversion_info = 3.9.18.final.0\n", Some("3.9")),
            ("version = 3.12.0rc1", Some("3.12")),
            ("home = /usr/bin\n", None),
            ("version = garbage", None),
        ];
        for (text, want) in cases {
            assert_eq!(venv_version(text).as_deref(), *want, "{text:?}");
        }
    }

    #[test]
    fn major_minor_table() {
        assert_eq!(
            major_minor("3.11.2 (main, Mar 13 2023)").as_deref(),
            Some("3.11")
        );
        assert_eq!(major_minor("3").as_deref(), None);
        assert_eq!(major_minor("").as_deref(), None);
    }

    #[test]
    fn venv_mismatch_names_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyvenv.cfg"), "version = 3.9.2\n").unwrap();
        let err = check_venv(dir.path(), "3.11").unwrap_err().to_string();
        assert!(err.contains("3.9") && err.contains("3.11"), "{err}");
        std::fs::write(dir.path().join("pyvenv.cfg"), "version = 3.11.7\n").unwrap();
        check_venv(dir.path(), "3.11").unwrap();
    }

    #[test]
    fn old_style_virtualenv_by_lib_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/python3.8/site-packages")).unwrap();
        let err = check_venv(dir.path(), "3.11").unwrap_err().to_string();
        assert!(err.contains("3.8"), "{err}");
        let missing = check_venv(&dir.path().join("nope"), "3.11").unwrap_err();
        assert!(missing.to_string().contains("no such directory"));
    }
}
