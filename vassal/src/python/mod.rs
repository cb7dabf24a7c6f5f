//! Everything that touches CPython. This is the only module of rsgi that uses pyo3.
//!
//! # Layout
//!
//! - [`init`]: starting the interpreter (`PyConfig`, virtualenv checks).
//! - [`wsgi`]: the WSGI call: environ, `start_response`, `wsgi.input`, `wsgi.errors`,
//!   `wsgi.file_wrapper`, and turning the app's iterable into a [`Response`].
//! - [`executor`]: where app calls run: inline on the I/O thread (`threads = 1`) or on
//!   a pool of app threads (`threads > 1`).
//!
//! # How it works
//!
//! [`initialize`] runs once per process before any thread exists. [`load_app`] imports
//! the app (`module`, `wsgi-file`) and returns an [`App`] holding the callable and the
//! objects reused by every request (a template environ, the `wsgi.errors` stream). A
//! Python exception never leaves this module: it becomes a traceback in the log and,
//! for a request, a 500.

pub mod executor;
pub mod init;
mod output;
mod wsgi;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rsgi_proto::config::VassalConfig;
use rsgi_proto::notify;

use crate::cgi::CgiVars;
use crate::response::Response;

pub use executor::{Executor, Reservation};
pub use init::initialize;

/// What can go wrong while starting Python or loading the app.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// The configured virtualenv is missing or was made for another Python.
    #[error("virtualenv {}: {msg}", home.display())]
    Venv {
        /// The `home`/`virtualenv` directory.
        home: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// CPython itself failed to start.
    #[error("python: {0}")]
    Init(String),
    /// No app is configured.
    #[error("no app to load: {}", rsgi_proto::config::APP_HINT)]
    NoApp,
    /// Importing the app raised, or the callable is missing.
    #[error("failed to load the app from {what}:\n{traceback}")]
    AppLoad {
        /// `module mysite.wsgi` or `wsgi-file /srv/app.py`.
        what: String,
        /// The Python traceback, or the reason.
        traceback: String,
    },
}

impl PythonError {
    /// The documented exit code for this failure (see `rsgi_proto::notify`).
    pub fn exit_code(&self) -> i32 {
        match self {
            PythonError::Venv { .. } | PythonError::NoApp => notify::EXIT_CONFIG,
            PythonError::Init(_) => notify::EXIT_FAILURE,
            PythonError::AppLoad { .. } => notify::EXIT_APP_LOAD,
        }
    }
}

/// One request, completely read, ready for the app.
#[derive(Debug)]
pub struct Request {
    /// The CGI variables.
    pub cgi: CgiVars,
    /// The whole request body.
    pub body: Bytes,
    /// Whether this is a HEAD request (the body is dropped, but the app still runs and
    /// its `close()` is still called).
    pub head: bool,
}

/// A loaded WSGI app and the objects every request reuses.
pub struct App {
    /// The WSGI callable of the default app (`module`/`wsgi-file`, else the first
    /// `mount`).
    callable: Py<PyAny>,
    /// The `mount` apps: (mountpoint, callable), chosen by `SCRIPT_NAME`
    /// ([`crate::mount::app_for`]).
    mounts: Vec<(Bytes, Py<PyAny>)>,
    /// The environ entries that never change (wsgi.version, wsgi.errors, ...); each
    /// request starts from a copy.
    template: Py<PyDict>,
    /// The types of `iter([])` and `iter(())`: an app iterable whose iterator is one of
    /// these holds its whole body in memory (Django's `HttpResponse`), so it is
    /// collected at once instead of streamed.
    in_memory_iters: [Py<pyo3::types::PyType>; 2],
}

impl App {
    /// Call the app for one request. Never fails: an exception becomes a 500 with the
    /// traceback in the log.
    pub fn call(&self, py: Python<'_>, req: Request) -> Response {
        wsgi::call(py, self, req)
    }

    /// The callable for a request: the mounted app whose mountpoint is its
    /// `SCRIPT_NAME`, else the default app.
    fn callable_for(&self, cgi: &CgiVars) -> &Py<PyAny> {
        if self.mounts.is_empty() {
            return &self.callable;
        }
        let script_name = cgi.get(b"SCRIPT_NAME").map_or(&[][..], |s| &s[..]);
        match crate::mount::app_for(script_name, self.mounts.iter().map(|(m, _)| &m[..])) {
            Some(i) => &self.mounts[i].1,
            None => &self.callable,
        }
    }
}

/// How the app is found: the module (and callable) or the file.
fn app_source(config: &VassalConfig) -> Result<(AppSource, String), PythonError> {
    if let Some(module) = &config.module {
        let (module, callable) = match module.split_once(':') {
            Some((m, c)) => (m.to_owned(), c.to_owned()),
            None => (module.clone(), config.callable.clone()),
        };
        return Ok((AppSource::Module(module), callable));
    }
    if let Some(file) = &config.wsgi_file {
        return Ok((AppSource::File(file.clone()), config.callable.clone()));
    }
    Err(PythonError::NoApp)
}

enum AppSource {
    Module(String),
    File(PathBuf),
}

impl std::fmt::Display for AppSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppSource::Module(m) => write!(f, "module {m}"),
            AppSource::File(p) => write!(f, "wsgi-file {}", p.display()),
        }
    }
}

/// Import the app described by `config` (after [`initialize`], with the working
/// directory already changed to `chdir`). `multithread`/`multiprocess` become the
/// environ's `wsgi.multithread`/`wsgi.multiprocess`.
pub fn load_app(
    config: &VassalConfig,
    multithread: bool,
    multiprocess: bool,
) -> Result<App, PythonError> {
    let mut sources = Vec::new();
    match app_source(config) {
        Ok(source) => sources.push((None, source)),
        Err(PythonError::NoApp) if !config.mount.is_empty() => {}
        Err(e) => return Err(e),
    }
    for value in &config.mount {
        let mount =
            crate::mount::parse(value, &config.callable).map_err(|why| PythonError::AppLoad {
                what: format!("mount {value}"),
                traceback: why,
            })?;
        let source = match mount.app {
            crate::mount::MountApp::File(p, c) => (AppSource::File(p), c),
            crate::mount::MountApp::Module(m, c) => (AppSource::Module(m), c),
        };
        sources.push((Some(mount.mountpoint), source));
    }
    Python::attach(|py| {
        let fail_path = |err: PyErr| PythonError::AppLoad {
            what: "pythonpath".to_owned(),
            traceback: format_exception(py, &err),
        };
        set_sys_path(py, &config.pythonpath).map_err(fail_path)?;
        let mut default = None;
        let mut mounts = Vec::new();
        for (mountpoint, (source, callable_name)) in &sources {
            let callable = load_callable(py, source, callable_name)?;
            match mountpoint {
                None => default = Some(callable),
                Some(m) => {
                    if default.is_none() && mounts.is_empty() {
                        default = Some(callable.clone_ref(py));
                    }
                    mounts.push((Bytes::from(m.clone().into_bytes()), callable));
                }
            }
        }
        let callable = default.ok_or(PythonError::NoApp)?;
        let fail = |py: Python<'_>, err: PyErr| PythonError::AppLoad {
            what: "the WSGI environ".to_owned(),
            traceback: format_exception(py, &err),
        };
        let template = wsgi::environ_template(
            py,
            multithread,
            multiprocess,
            !config.wsgi_disable_file_wrapper,
        )
        .map_err(|e| fail(py, e))?;
        let iter_type = |o: Bound<'_, PyAny>| -> PyResult<Py<pyo3::types::PyType>> {
            Ok(o.try_iter()?.get_type().unbind())
        };
        let in_memory_iters = [
            iter_type(PyList::empty(py).into_any()).map_err(|e| fail(py, e))?,
            iter_type(pyo3::types::PyTuple::empty(py).into_any()).map_err(|e| fail(py, e))?,
        ];
        Ok(App {
            callable,
            mounts,
            template: template.unbind(),
            in_memory_iters,
        })
    })
}

/// Start Python with the vassal's virtualenv ([`initialize`]), run its `import` list
/// ([`import_modules`]) and import the app ([`load_app`]): what a worker, or the master
/// when it preloads, does before serving.
pub fn start_app(
    config: &VassalConfig,
    multithread: bool,
    multiprocess: bool,
) -> Result<App, PythonError> {
    initialize(config.home.as_deref())?;
    import_modules(config)?;
    load_app(config, multithread, multiprocess)
}

/// `import` (`pyimport`): import each module, or run each `.py` file as a module, in
/// order, after `sys.path` is set and before the app is loaded (uWSGI's python plugin
/// imports them the same way: a name ending in `.py` is a file). The first failure stops
/// the start with its traceback.
pub fn import_modules(config: &VassalConfig) -> Result<(), PythonError> {
    if config.import.is_empty() {
        return Ok(());
    }
    Python::attach(|py| {
        set_sys_path(py, &config.pythonpath).map_err(|e| PythonError::AppLoad {
            what: "sys.path".to_owned(),
            traceback: format_exception(py, &e),
        })?;
        for name in &config.import {
            let imported = if name.ends_with(".py") {
                import_file(py, Path::new(name)).map(drop)
            } else {
                py.import(name.as_str()).map(drop)
            };
            imported.map_err(|e| PythonError::AppLoad {
                what: format!("import {name}"),
                traceback: format_exception(py, &e),
            })?;
        }
        Ok(())
    })
}

/// Import one app and return its callable.
fn load_callable(
    py: Python<'_>,
    source: &AppSource,
    callable_name: &str,
) -> Result<Py<PyAny>, PythonError> {
    let what = format!("{source} (callable {callable_name})");
    let fail = |py: Python<'_>, err: PyErr| PythonError::AppLoad {
        what: what.clone(),
        traceback: format_exception(py, &err),
    };
    let namespace = match source {
        AppSource::Module(m) => py.import(m.as_str()).map(Bound::into_any),
        AppSource::File(p) => import_file(py, p),
    }
    .map_err(|e| fail(py, e))?;
    match namespace.getattr_opt(callable_name) {
        Ok(Some(c)) if c.is_callable() => Ok(c.unbind()),
        Ok(Some(_)) => Err(PythonError::AppLoad {
            what: what.clone(),
            traceback: format!("'{callable_name}' is not callable"),
        }),
        Ok(None) => Err(PythonError::AppLoad {
            what: what.clone(),
            traceback: format!(
                "{source} has no attribute '{callable_name}' \
                 (set callable = <name>, e.g. callable = app for Flask)"
            ),
        }),
        Err(e) => Err(fail(py, e)),
    }
}

/// Put `pythonpath` entries first on `sys.path`, then the working directory (as uWSGI
/// does, so `module = mysite.wsgi` is found after `chdir`).
fn set_sys_path(py: Python<'_>, pythonpath: &[PathBuf]) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut entries: Vec<String> = pythonpath
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    entries.push(cwd);
    for (i, entry) in entries.iter().enumerate() {
        sys_path.insert(i, entry)?;
    }
    Ok(())
}

/// Load a Python file as a module (uWSGI's `wsgi-file`).
fn import_file<'py>(py: Python<'py>, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    let name: String = path
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = format!("rsgi_file_{name}");
    let util = py.import("importlib.util")?;
    let spec = util.call_method1("spec_from_file_location", (name.as_str(), path))?;
    if spec.is_none() {
        return Err(pyo3::exceptions::PyImportError::new_err(format!(
            "cannot load {} as Python code",
            path.display()
        )));
    }
    let module = util.call_method1("module_from_spec", (&spec,))?;
    py.import("sys")?
        .getattr("modules")?
        .set_item(name.as_str(), &module)?;
    spec.getattr("loader")?
        .call_method1("exec_module", (&module,))?;
    Ok(module)
}

/// The full traceback of `err`, as Python prints it.
pub(crate) fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        lines.extract::<Vec<String>>()
    });
    match formatted {
        Ok(lines) => lines.concat(),
        Err(_) => format!("{err}\n"),
    }
}

/// Fork the process, running CPython's fork hooks when the interpreter is up
/// (`PyOS_BeforeFork`, then `PyOS_AfterFork_Child`/`_Parent`), so the child's
/// interpreter state (import lock, thread states) is consistent. The caller must be
/// the only thread of the process.
pub fn fork() -> nix::Result<nix::unistd::ForkResult> {
    use nix::unistd::ForkResult;
    // SAFETY: Py_IsInitialized may be called at any time.
    let initialized = unsafe { pyo3::ffi::Py_IsInitialized() } != 0;
    if !initialized {
        // SAFETY: the caller guarantees this process has a single thread, so the child
        // may run arbitrary code after the fork.
        return unsafe { nix::unistd::fork() };
    }
    Python::attach(|_py| {
        // SAFETY: we hold the GIL, as PyOS_BeforeFork/AfterFork_* require; the process
        // has a single thread (caller's guarantee), so fork() is safe, and each branch
        // runs the matching CPython hook right after it.
        unsafe {
            pyo3::ffi::PyOS_BeforeFork();
            let result = nix::unistd::fork();
            match result {
                Ok(ForkResult::Child) => pyo3::ffi::PyOS_AfterFork_Child(),
                _ => pyo3::ffi::PyOS_AfterFork_Parent(),
            }
            result
        }
    })
}

/// Ask CPython's `faulthandler` to write every thread's Python stack to stderr (the
/// log) when this process gets `signal` — it works even while a stuck thread holds
/// the GIL. The master sends it before a harakiri kill.
pub fn enable_stack_dumps(signal: i32) {
    let result = Python::attach(|py| -> PyResult<()> {
        let faulthandler = py.import("faulthandler")?;
        let sys = py.import("sys")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("file", sys.getattr("stderr")?)?;
        kwargs.set_item("all_threads", true)?;
        faulthandler.call_method("register", (signal,), Some(&kwargs))?;
        Ok(())
    });
    if let Err(e) = result {
        crate::log::line(format_args!(
            "rsgi: cannot enable Python stack dumps for harakiri: {e}"
        ));
    }
}

/// The source files of the loaded modules (`sys.modules`, each module's `__file__`; a
/// `.pyc`/`.pyo`/`.pyd` names its source without the last letter, as uWSGI's
/// `py-autoreload` reads it). Holds the GIL only while it reads `sys.modules`.
pub fn module_files() -> Vec<PathBuf> {
    Python::attach(|py| -> PyResult<Vec<PathBuf>> {
        let modules = py.import("sys")?.getattr("modules")?;
        let modules = modules.cast::<PyDict>()?.copy()?;
        let mut files = Vec::new();
        for (_, module) in modules.iter() {
            let Ok(file) = module.getattr("__file__") else {
                continue;
            };
            let Ok(file) = file.extract::<String>() else {
                continue;
            };
            let source = match file.rsplit_once('.') {
                Some((_, "pyc" | "pyo" | "pyd")) => file[..file.len() - 1].to_owned(),
                _ => file,
            };
            files.push(PathBuf::from(source));
        }
        Ok(files)
    })
    .unwrap_or_default()
}
