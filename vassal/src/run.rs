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

/// Serve until stopped.
fn serve(config: VassalConfig) -> Result<(), Fatal> {
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
            let stop = async {
                let stop = wait_for_stop().await;
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

/// TERM: graceful stop. INT and QUIT: fast stop.
async fn wait_for_stop() -> Stop {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        crate::log::line(format_args!("rsgi: cannot install signal handlers"));
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {
            crate::log::line(format_args!("rsgi: SIGTERM: graceful stop"));
            Stop::Graceful
        }
        _ = int.recv() => {
            crate::log::line(format_args!("rsgi: SIGINT: fast stop"));
            Stop::Fast
        }
        _ = quit.recv() => {
            crate::log::line(format_args!("rsgi: SIGQUIT: fast stop"));
            Stop::Fast
        }
    }
}
