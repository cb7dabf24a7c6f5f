//! The program flow of `rsgi`: command line to serving, and the exit codes.
//!
//! Order matters and is kept here in one place: notices, daemonize (before any thread),
//! the log, sockets (bound or inherited), `env`, `chdir`, pidfile, CPython, the app
//! import, then the worker. Every failure maps to a documented exit code
//! (see `rsgi_proto::notify`).

use std::sync::Arc;
use std::time::Duration;

use rsgi_proto::config::VassalConfig;
use rsgi_proto::notify::{self, Message};
use rsgi_proto::Invocation;

use crate::server::{self, Stop, Worker};

/// A failure that ends the process with `code`.
#[derive(Debug)]
pub struct Fatal {
    /// The exit code.
    pub code: i32,
    /// What to print.
    pub message: String,
}

impl Fatal {
    fn new(code: i32, message: impl std::fmt::Display) -> Fatal {
        Fatal {
            code,
            message: message.to_string(),
        }
    }
}

/// Run `rsgi` with `args` (without argv[0]); returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    let env = |key: &str| std::env::var(key).ok();
    let invocation = match rsgi_proto::parse_args(args, &env) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("rsgi: {e}");
            return e.exit_code();
        }
    };
    let result = match invocation {
        Invocation::Help(text) => {
            print!("{text}");
            Ok(())
        }
        Invocation::Version => {
            println!("rsgi {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Invocation::Stop(pidfile) => signal_pidfile(&pidfile, nix::sys::signal::Signal::SIGTERM),
        Invocation::Reload(pidfile) => signal_pidfile(&pidfile, nix::sys::signal::Signal::SIGHUP),
        Invocation::Serve(config) => serve(*config),
    };
    match result {
        Ok(()) => notify::EXIT_OK,
        Err(fatal) => {
            crate::log::line(format_args!("rsgi: {}", fatal.message));
            fatal.code
        }
    }
}

fn signal_pidfile(path: &std::path::Path, sig: nix::sys::signal::Signal) -> Result<(), Fatal> {
    crate::process::signal_pidfile(path, sig)
        .map(|pid| eprintln!("rsgi: sent {sig} to {pid}"))
        .map_err(|e| Fatal::new(notify::EXIT_FAILURE, e))
}

/// The signals that stop or reload the server. They are blocked from the first moment
/// and unblocked once handlers exist, so a SIGTERM that arrives while the app is still
/// importing is kept pending and honoured (gracefully) instead of killing the process.
fn control_signals() -> nix::sys::signal::SigSet {
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

/// Serve until stopped.
fn serve(config: VassalConfig) -> Result<(), Fatal> {
    if let Err(e) = control_signals().thread_block() {
        return Err(Fatal::new(notify::EXIT_OS, format!("sigprocmask: {e}")));
    }
    for n in &config.notices {
        eprintln!(
            "rsgi: notice: {}: option '{}' ignored: {}",
            n.origin, n.option, n.why
        );
    }
    if let Some(log) = &config.daemonize {
        crate::process::daemonize(log).map_err(|e| Fatal::new(notify::EXIT_OS, e))?;
    }
    crate::log::init(&config).map_err(|e| Fatal::new(notify::EXIT_OS, e))?;
    crate::log::set_access_enabled(!config.disable_logging);
    let sockets = crate::listen::open_all(&config).map_err(|e| {
        let code = match e {
            crate::listen::ListenError::NoSockets => notify::EXIT_CONFIG,
            _ => notify::EXIT_OS,
        };
        Fatal::new(code, e)
    })?;
    for (key, value) in &config.env {
        // SAFETY-free: std::env::set_var is safe in edition 2021; no other thread
        // exists yet, so nothing can read the environment concurrently.
        std::env::set_var(key, value);
    }
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            Fatal::new(notify::EXIT_CONFIG, format!("chdir {}: {e}", dir.display()))
        })?;
    }
    let pid = std::process::id();
    let pidfiles: Vec<(&std::path::Path, bool)> = [
        config.pidfile.as_deref().map(|p| (p, false)),
        config.safe_pidfile.as_deref().map(|p| (p, true)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (path, safe) in &pidfiles {
        crate::process::write_pidfile(path, pid, *safe)
            .map_err(|e| Fatal::new(notify::EXIT_OS, e))?;
    }
    let result = serve_app(&config, &sockets);
    if config.vacuum {
        crate::listen::vacuum(&sockets);
        for (path, _) in &pidfiles {
            crate::process::remove_pidfile(path);
        }
    }
    result
}

fn serve_app(config: &VassalConfig, sockets: &[crate::listen::BoundSocket]) -> Result<(), Fatal> {
    crate::python::initialize(config.home.as_deref()).map_err(|e| Fatal::new(e.exit_code(), e))?;
    let multiprocess = config.processes > 1;
    let multithread = config.threads > 1;
    let app = crate::python::load_app(config, multithread, multiprocess)
        .map_err(|e| Fatal::new(e.exit_code(), e))?;
    let static_map = crate::static_files::StaticMap::new(&config.static_map)
        .map_err(|e| Fatal::new(notify::EXIT_CONFIG, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("tokio runtime: {e}")))?;
    let executor = crate::python::Executor::new(Arc::new(app), config.threads)
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("app threads: {e}")))?;
    let worker = Arc::new(Worker {
        executor,
        static_map,
        buffer_size: config.buffer_size,
        limit_post: config.limit_post,
        mercy: Duration::from_secs(config.reload_mercy),
        pid: std::process::id(),
        counters: None,
    });
    let notifier = crate::notify::Notifier::from_env();
    for s in sockets {
        crate::log::line(format_args!(
            "rsgi: {} {} listening on {}",
            std::process::id(),
            s.protocol.as_str(),
            s.addr
        ));
    }
    runtime
        .block_on(async {
            let signals = StopSignals::install()?;
            // Handlers exist: let pending and future signals in.
            control_signals()
                .thread_unblock()
                .map_err(|e| std::io::Error::other(format!("sigprocmask: {e}")))?;
            let stop = async {
                let stop = signals.wait().await;
                notifier.send(&[Message::Stopping]);
                stop
            };
            notifier.send(&[
                Message::Ready,
                Message::Status(format!("serving on {} socket(s)", sockets.len())),
            ]);
            server::serve(sockets, worker, stop).await
        })
        .map_err(|e| Fatal::new(notify::EXIT_OS, e))
}

/// The stop signals of a single-process server: TERM is a graceful stop, INT and QUIT
/// a fast one; USR1 reopens the log.
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
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(mut self) -> Stop {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    crate::log::line(format_args!("rsgi: SIGTERM: graceful stop"));
                    return Stop::Graceful;
                }
                _ = self.int.recv() => {
                    crate::log::line(format_args!("rsgi: SIGINT: fast stop"));
                    return Stop::Fast;
                }
                _ = self.quit.recv() => {
                    crate::log::line(format_args!("rsgi: SIGQUIT: fast stop"));
                    return Stop::Fast;
                }
                _ = self.usr1.recv() => {
                    if let Err(e) = crate::log::reopen() {
                        crate::log::line(format_args!("rsgi: SIGUSR1: cannot reopen the log: {e}"));
                    }
                }
                _ = self.hup.recv() => {
                    crate::log::line(format_args!(
                        "rsgi: SIGHUP ignored: reloads need the master (master = true)"
                    ));
                }
            }
        }
    }
}
