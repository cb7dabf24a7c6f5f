//! The worker body: what a forked worker (or the single-process server) runs from the
//! app import to its exit. One current-thread tokio runtime serves the listening
//! sockets ([`crate::server`]) until a stop signal (`StopSignals`); a forked worker
//! tells its master when it accepts ([`crate::master_pipe`]).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use rsgi_proto::config::VassalConfig;
use rsgi_proto::hooks::Phase;
use rsgi_proto::notify;

use crate::fatal::Fatal;
use crate::listen::BoundSocket;
use crate::python::App;
use crate::server::{self, Counters, Stop, Worker};
use crate::shm::{Shm, WorkerId};

/// What the worker child needs, captured before the fork.
pub struct WorkerStart<'a> {
    /// The configuration.
    pub config: &'a VassalConfig,
    /// The listening sockets.
    pub sockets: &'a [BoundSocket],
    /// The preloaded app, if any.
    pub app: Option<Arc<App>>,
    /// The shared counters.
    pub shm: Arc<Shm>,
    /// This worker's slot.
    pub id: WorkerId,
    /// Write end of the ready pipe.
    pub ready_fd: RawFd,
}

/// The signals that stop or reload the server. They are blocked from the first moment
/// and unblocked once handlers exist, so a SIGTERM that arrives while the app is still
/// importing is kept pending and honoured (gracefully) instead of killing the process.
pub(crate) fn control_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        set.add(sig);
    }
    set
}

/// Import the app in this process.
pub(crate) fn load(config: &VassalConfig) -> Result<App, Fatal> {
    let app = crate::python::start_app(config, config.threads > 1, config.processes > 1)
        .map_err(|e| Fatal::new(e.exit_code(), e))?;
    after_load(config)?;
    crate::python::enable_stack_dumps(nix::sys::signal::Signal::SIGUSR2 as i32);
    Ok(app)
}

/// What follows a successful import of the app, in the process that imported it:
/// `chdir2`.
pub(crate) fn after_load(config: &VassalConfig) -> Result<(), Fatal> {
    if let Some(dir) = &config.chdir2 {
        std::env::set_current_dir(dir).map_err(|e| {
            Fatal::new(
                notify::EXIT_CONFIG,
                format!("chdir2 {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

/// Set to `1` in the environment of `rsgi` (or of `rsgid`, which passes it on), this
/// turns the per-request shared counters off: requests are served without touching
/// the worker's slot. It exists so that the benchmark can measure what counting costs
/// (metrics on against off); it is not a setting for production, since harakiri,
/// max-requests and every request count (stats, Prometheus) depend on the counters.
pub const NO_COUNTERS_ENV: &str = "RSGI_NO_COUNTERS";

/// Whether [`NO_COUNTERS_ENV`] is set to something other than empty or `0`.
fn counting_disabled() -> bool {
    std::env::var_os(NO_COUNTERS_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The body of a forked worker: import the app if the master did not, then serve.
pub(crate) fn worker_main(start: WorkerStart<'_>) -> Result<(), Fatal> {
    let app = match start.app {
        Some(app) => app,
        None => {
            crate::hooks::run(start.config, Phase::PreApp)?;
            let app = Arc::new(load(start.config)?);
            crate::hooks::run(start.config, Phase::PostApp)?;
            app
        }
    };
    let counters = Counters {
        shm: Arc::clone(&start.shm),
        id: start.id,
        recycle_after: crate::master_pipe::recycle_after(start.config, start.id),
        master_pipe: Some(start.ready_fd),
        recycle_sent: std::sync::atomic::AtomicBool::new(false),
    };
    let (ready_fd, id, config) = (start.ready_fd, start.id, start.config);
    serve_worker(
        start.config,
        start.sockets,
        app,
        Some(counters),
        || crate::hooks::run_accepting(config, id.get() == 1),
        move || {
            crate::master_pipe::send_ready(ready_fd, id);
            if config.py_autoreload > 0 {
                crate::autoreload::start(
                    Duration::from_secs(config.py_autoreload),
                    nix::unistd::getppid(),
                );
            }
        },
    )
}

/// Serve `sockets` with `app` until a stop signal. `accepting` runs before the worker
/// starts accepting and before it starts any thread of its own (the app threads of
/// `threads`, `py-autoreload`), so that its hooks (uWSGI's `accepting` phases) may
/// `putenv` while the process has one thread; `on_ready` runs once the accept loops run.
pub(crate) fn serve_worker(
    config: &VassalConfig,
    sockets: &[BoundSocket],
    app: Arc<App>,
    counters: Option<Counters>,
    accepting: impl FnOnce(),
    on_ready: impl FnOnce(),
) -> Result<(), Fatal> {
    let static_map = crate::static_files::StaticMap::from_config(config)
        .map_err(|e| Fatal::from_error(notify::EXIT_CONFIG, &e))?;
    accepting();
    // The harakiri answer (a 504 to the requests still with the app) on the master's
    // SIGUSR2. After faulthandler's own handler for it (`load`, or the master's before
    // the fork), which this one chains to: the stack dump still happens.
    crate::server::inflight::answer_on(nix::sys::signal::Signal::SIGUSR2 as i32)
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("harakiri answer: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("tokio runtime: {e}")))?;
    let executor = crate::python::Executor::new(app, config.threads)
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("app threads: {e}")))?;
    if let Some(c) = &counters {
        if let Some(slot) = c.shm.slot(c.id) {
            slot.set_accepting(true);
        }
    }
    // Benchmarks only (see NO_COUNTERS_ENV): no per-request counting.
    let counters = if counting_disabled() { None } else { counters };
    let worker = Arc::new(Worker {
        executor,
        static_map,
        routes: crate::mount::Routes::new(config),
        buffer_size: config.buffer_size,
        limit_post: config.limit_post,
        socket_timeout: Duration::from_secs(config.socket_timeout),
        http_timeout: Duration::from_secs(config.http_timeout.unwrap_or(config.socket_timeout)),
        keepalive_timeout: Duration::from_secs(config.http_keepalive_timeout),
        proxy_protocol: config.enable_proxy_protocol,
        mercy: Duration::from_secs(config.reload_mercy),
        pid: std::process::id(),
        counters,
        max_connections: usize::try_from(config.worker_connections).unwrap_or(usize::MAX),
        cap_logged: std::sync::atomic::AtomicU64::new(0),
    });
    runtime
        .block_on(async {
            let signals = StopSignals::install()?;
            // Handlers exist: let pending and future signals in.
            control_signals()
                .thread_unblock()
                .map_err(|e| std::io::Error::other(format!("sigprocmask: {e}")))?;
            let stop = signals.wait();
            server::serve(sockets, worker, stop, on_ready).await
        })
        .map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))
}

/// The stop signals of a worker (or single-process server): TERM is a graceful stop,
/// INT and QUIT a fast one; USR1 reopens the log.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        // Each also raises the close path's flag (see `server::note_signal`).
        let watch = |kind: SignalKind| {
            server::note_signal(kind.as_raw_value())?;
            signal(kind)
        };
        Ok(StopSignals {
            term: watch(SignalKind::terminate())?,
            int: watch(SignalKind::interrupt())?,
            quit: watch(SignalKind::quit())?,
            usr1: watch(SignalKind::user_defined1())?,
            hup: watch(SignalKind::hangup())?,
        })
    }

    async fn wait(mut self) -> Stop {
        let pid = std::process::id();
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    crate::log::line(format_args!("rsgi: {pid}: SIGTERM: graceful stop"));
                    return Stop::Graceful;
                }
                _ = self.int.recv() => return Stop::Fast,
                _ = self.quit.recv() => return Stop::Fast,
                _ = self.usr1.recv() => {
                    if let Err(e) = crate::log::reopen() {
                        crate::log::line(format_args!("rsgi: SIGUSR1: cannot reopen the log: {e}"));
                    }
                }
                _ = self.hup.recv() => {
                    crate::log::line(format_args!(
                        "rsgi: {pid}: SIGHUP ignored: reloads need the master (master = true)"
                    ));
                }
            }
        }
    }
}
