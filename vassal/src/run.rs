//! The program flow of `rsgi`: command line to serving, and the exit codes.
//!
//! Order matters and is kept here in one place: notices, daemonize (before any
//! thread), the log, sockets (bound or inherited), the supervisor's notify socket,
//! `env`, `chdir`, pidfile; then either
//!
//! - a single process (`master = false` and one process): CPython, the app, serve; or
//! - the master ([`crate::master`]), which imports the app (unless `lazy-apps`) and
//!   forks the workers, each running [`crate::worker`]'s body.
//!
//! Every failure maps to a documented exit code (see `rsgi_proto::notify`).

use std::sync::Arc;

use rsgi_proto::config::VassalConfig;
use rsgi_proto::hooks::Phase;
use rsgi_proto::notify::{self, Message};
use rsgi_proto::Invocation;

use crate::fatal::Fatal;
use crate::listen::BoundSocket;
use crate::server::Counters;
use crate::stats_server::SingleStats;
use crate::worker::{control_signals, load, serve_worker};

/// Run `rsgi` with `args` (without `argv[0]`); returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    let env = |key: &str| std::env::var(key).ok();
    let invocation = match rsgi_os::parse_args(args, &env) {
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
        Invocation::CheckApp(config) => check_app(&config),
        Invocation::CheckConfig(config) => check_config(&config),
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
        .map_err(|e| Fatal::from_error(notify::EXIT_FAILURE, &e))
}

/// `env` and `chdir`, before Python starts (it copies the environment at start-up).
/// Called while the process is single-threaded, so nothing reads the environment
/// concurrently.
fn apply_env_and_chdir(config: &VassalConfig) -> Result<(), Fatal> {
    for (key, value) in &config.env {
        std::env::set_var(key, value);
    }
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            Fatal::new(notify::EXIT_CONFIG, format!("chdir {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// `--check-app`: import the app as a worker would, without binding anything.
fn check_app(config: &VassalConfig) -> Result<(), Fatal> {
    apply_env_and_chdir(config)?;
    load(config)?;
    println!("rsgi: the app imports");
    Ok(())
}

/// `--check-config`: the config stage only. Prints the notices a start would print, what
/// would be served, and what is missing; binds nothing and starts no Python.
fn check_config(config: &VassalConfig) -> Result<(), Fatal> {
    print_startup_lines(config);
    for socket in &config.sockets {
        println!(
            "rsgi: would listen on {} ({})",
            socket.addr,
            socket.protocol.as_str()
        );
    }
    match (&config.module, &config.wsgi_file) {
        (Some(module), _) => println!("rsgi: would load module {module}"),
        (None, Some(file)) => println!("rsgi: would load wsgi-file {}", file.display()),
        (None, None) => {}
    }
    for mount in &config.mount {
        println!("rsgi: would mount {mount}");
    }
    let problems = config.incomplete();
    if problems.is_empty() {
        println!("rsgi: the configuration is complete");
        return Ok(());
    }
    let origin = config
        .source
        .as_ref()
        .map_or_else(|| "command line".to_owned(), |p| p.display().to_string());
    Err(Fatal::new(
        notify::EXIT_CONFIG,
        format!("{origin}: {}", problems.join("; ")),
    ))
}

/// One `notice:` line per accepted option that means nothing here, then the `print`
/// lines (uWSGI prints those while it reads the config).
fn print_startup_lines(config: &VassalConfig) {
    for line in &config.print {
        eprintln!("{line}");
    }
    for n in &config.notices {
        eprintln!("rsgi: notice: {}: {}: {}", n.origin, n.option, n.why);
    }
}

/// Whether `config` asks for a master process: `master`, several workers, or a job only
/// a master does (`touch-*` checks, attached daemons; uWSGI needs `master` for them and
/// silently does nothing without it).
fn wants_master(config: &VassalConfig) -> bool {
    config.master
        || config.processes > 1
        || !config.touch_reload.is_empty()
        || !config.touch_chain_reload.is_empty()
        || !config.touch_workers_reload.is_empty()
        || !config.touch_logreopen.is_empty()
        || !config.touch_logrotate.is_empty()
        || !config.daemons.is_empty()
        || !config.crons.is_empty()
        || config.py_autoreload > 0
}

/// Serve until stopped.
fn serve(mut config: VassalConfig) -> Result<(), Fatal> {
    // Relative paths as uWSGI resolves them (`rsgi_proto::paths`).
    if let Ok(cwd) = std::env::current_dir() {
        rsgi_proto::paths::resolve(&mut config, &cwd);
        let _ = crate::process::START_DIR.set(cwd);
    }
    if let Err(e) = control_signals().thread_block() {
        return Err(Fatal::new(notify::EXIT_OS, format!("sigprocmask: {e}")));
    }
    let reexec = std::env::var_os(crate::master::REEXEC_ENV).is_some();
    crate::hooks::run(&config, Phase::Asap)?;
    if !reexec {
        print_startup_lines(&config);
        if let Some(log) = &config.daemonize {
            crate::process::daemonize(log).map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
        }
    }
    crate::log::check_loggers(&config).map_err(|e| Fatal::from_error(notify::EXIT_CONFIG, &e))?;
    crate::server::set_add_headers(&config.add_header)
        .map_err(|e| Fatal::new(notify::EXIT_CONFIG, e))?;
    crate::log::init(&config).map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
    if let Some(mask) = config.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if let Some(n) = config.max_fd {
        rsgi_os::limits::set_nofile(n).map_err(|e| {
            Fatal::new(
                notify::EXIT_OS,
                format!("max-fd {n}: setrlimit(RLIMIT_NOFILE): {e}"),
            )
        })?;
    } else if let Err(e) = rsgi_os::limits::raise_nofile() {
        // Room for `worker-connections` (4096 by default) above the soft default of 1024.
        crate::log::line(format_args!("rsgi: cannot raise the open files limit: {e}"));
    }
    let mut sockets = crate::listen::open_all(&config).map_err(|e| {
        let code = match e {
            crate::listen::ListenError::NoSockets => notify::EXIT_CONFIG,
            _ => notify::EXIT_OS,
        };
        Fatal::from_error(code, &e)
    })?;
    if reexec {
        // Our own sockets, passed across the re-exec: still ours to vacuum.
        for s in &mut sockets {
            if let rsgi_proto::config::ListenAddr::Unix(path) = &s.addr {
                s.created_path = Some(path.clone());
            }
        }
    }
    // Before `env` and Python: the notify variables must not leak into the app.
    let notifier = crate::notify::Notifier::from_env();
    apply_env_and_chdir(&config)?;
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
            .map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
    }
    crate::hooks::run(&config, Phase::AsRoot)?;
    drop_privileges(&config)?;
    crate::hooks::run(&config, Phase::AsUser)?;
    if let Some(path) = &config.logto2 {
        // As uWSGI's `uwsgi_start`: after the privileges drop (and the as-user hooks),
        // so the file is created by the user the server runs as.
        crate::log::open_logto2(path).map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
    }
    for s in &sockets {
        crate::log::line(format_args!(
            "rsgi: {pid} {} listening on {}",
            s.protocol.as_str(),
            s.addr
        ));
    }
    let result = if wants_master(&config) {
        crate::master::run(&config, &sockets, &notifier)
    } else {
        serve_single(&config, &sockets, &notifier)
    };
    // Not fatal: the server is done either way.
    let _ = crate::hooks::run(&config, Phase::AtExit);
    if config.vacuum {
        crate::listen::vacuum(&sockets);
        for (path, _) in &pidfiles {
            crate::process::remove_pidfile(path);
        }
    }
    result
}

/// `uid`/`gid`: when started as root, become the configured user and group once the
/// sockets and pidfile exist (as uWSGI does). An unknown user or group is an error.
fn drop_privileges(config: &VassalConfig) -> Result<(), Fatal> {
    use nix::unistd::{getgid, getuid, setgid, setgroups, setuid, Gid, Uid};
    // As uWSGI: only root switches users; for anyone else `uid`/`gid` mean nothing.
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let fail = |what: String| Fatal::new(notify::EXIT_CONFIG, what);
    let user = match &config.uid {
        None => None,
        Some(spec) => Some(
            rsgi_os::users::user(spec)
                .map_err(|e| fail(format!("uid {spec}: {e}")))?
                .ok_or_else(|| fail(format!("uid {spec}: no such user")))?,
        ),
    };
    let gid = match &config.gid {
        None => user.as_ref().map(|u| u.gid),
        Some(spec) => Some(
            rsgi_os::users::gid_of(spec)
                .map_err(|e| fail(format!("gid {spec}: {e}")))?
                .ok_or_else(|| fail(format!("gid {spec}: no such group")))?,
        ),
    }
    .map(Gid::from_raw);
    if let Some(gid) = gid {
        if gid != getgid() {
            setgroups(&[gid]).map_err(|e| fail(format!("setgroups({gid}): {e}")))?;
            setgid(gid).map_err(|e| fail(format!("setgid({gid}): {e}")))?;
        }
    }
    if let Some(user) = user {
        let uid = Uid::from_raw(user.uid);
        if uid != getuid() {
            setuid(uid).map_err(|e| fail(format!("setuid({}): {e}", user.name)))?;
        }
    }
    Ok(())
}

/// One process that is its own worker (no master).
fn serve_single(
    config: &VassalConfig,
    sockets: &[BoundSocket],
    notifier: &crate::notify::Notifier,
) -> Result<(), Fatal> {
    crate::hooks::run(config, Phase::PreApp)?;
    let app = Arc::new(load(config)?);
    crate::hooks::run(config, Phase::PostApp)?;
    // One slot of counters, as a worker of a master would have: the emperor's metrics
    // and the stats read the same layout either way.
    let shm = crate::shm::Shm::create(1).map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
    let pid = nix::unistd::getpid();
    shm.set_master_pid(pid);
    let id =
        crate::shm::WorkerId::new(1).ok_or_else(|| Fatal::new(notify::EXIT_FAILURE, "slot 1"))?;
    if let Some(slot) = shm.slot(id) {
        slot.reset_for_spawn(crate::shm::epoch_secs());
        slot.set_pid(pid);
    }
    notifier.send_shm(std::os::fd::AsRawFd::as_raw_fd(&shm.fd()), 1);
    let shm = Arc::new(shm);
    // The `stats` server: with no master, this process serves it itself, on a task of
    // its runtime (started once the accept loops run).
    let stats = match &config.stats {
        Some(addr) => Some(
            SingleStats::bind(addr, config, sockets, Arc::clone(&shm), id)
                .map_err(|e| Fatal::new(notify::EXIT_OS, format!("stats {addr}: {e}")))?,
        ),
        None => None,
    };
    let counters = Counters {
        shm,
        id,
        recycle_after: None,
        master_pipe: None,
        recycle_sent: std::sync::atomic::AtomicBool::new(false),
    };
    serve_worker(
        config,
        sockets,
        app,
        Some(counters),
        // This process is worker 1.
        || crate::hooks::run_accepting(config, true),
        || {
            if let Some(stats) = stats {
                tokio::spawn(stats.serve());
            }
            notifier.send(&[
                Message::Ready,
                Message::Status(format!("serving on {} socket(s)", sockets.len())),
            ]);
        },
    )
}
