//! The program flow of `rsgi`: command line to serving, and the exit codes.
//!
//! Order matters and is kept here in one place: notices, daemonize (before any
//! thread), the log, sockets (bound or inherited), the supervisor's notify socket,
//! `env`, `chdir`, pidfile; then either
//!
//! - a single process (`master = false` and one process): CPython, the app, serve; or
//! - the master ([`crate::master`]), which imports the app (unless `lazy-apps`) and
//!   forks the workers, each running [`worker_main`].
//!
//! Every failure maps to a documented exit code (see `rsgi_proto::notify`).

use std::sync::Arc;
use std::time::Duration;

use rsgi_proto::config::VassalConfig;
use rsgi_proto::notify::{self, Message};
use rsgi_proto::Invocation;

use crate::listen::BoundSocket;
use crate::master::{StatsListener, WorkerStart};
use crate::python::App;
use crate::server::{self, Counters, Stop, Worker};

/// A failure that ends the process with `code`.
#[derive(Debug)]
pub struct Fatal {
    /// The exit code.
    pub code: i32,
    /// What to print.
    pub message: String,
}

impl Fatal {
    /// A failure with `code`; the message includes every `source()` of an error.
    pub(crate) fn new(code: i32, message: impl std::fmt::Display) -> Fatal {
        Fatal {
            code,
            message: message.to_string(),
        }
    }

    /// A failure from an error, with its chain of causes (`cannot bind ...: Address
    /// already in use`).
    pub(crate) fn from_error(code: i32, err: &dyn std::error::Error) -> Fatal {
        Fatal {
            code,
            message: rsgi_proto::error::chain(err),
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
        Invocation::CheckApp(config) => check_app(&config),
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

/// Whether `config` asks for a master process.
fn wants_master(config: &VassalConfig) -> bool {
    config.master || config.processes > 1
}

/// Serve until stopped.
fn serve(config: VassalConfig) -> Result<(), Fatal> {
    if let Err(e) = control_signals().thread_block() {
        return Err(Fatal::new(notify::EXIT_OS, format!("sigprocmask: {e}")));
    }
    let reexec = std::env::var_os(crate::master::REEXEC_ENV).is_some();
    if !reexec {
        for n in &config.notices {
            eprintln!(
                "rsgi: notice: {}: option '{}' ignored: {}",
                n.origin, n.option, n.why
            );
        }
        if let Some(log) = &config.daemonize {
            crate::process::daemonize(log).map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
        }
    }
    crate::log::init(&config).map_err(|e| Fatal::from_error(notify::EXIT_OS, &e))?;
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
    drop_privileges(&config)?;
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
    use nix::unistd::{getgid, getuid, setgid, setgroups, setuid, Gid, Group, Uid, User};
    // As uWSGI: only root switches users; for anyone else `uid`/`gid` mean nothing.
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let fail = |what: String| Fatal::new(notify::EXIT_CONFIG, what);
    let user = match &config.uid {
        None => None,
        Some(spec) => {
            let found = match spec.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n)),
                Err(_) => User::from_name(spec),
            }
            .map_err(|e| fail(format!("uid {spec}: {e}")))?;
            Some(found.ok_or_else(|| fail(format!("uid {spec}: no such user")))?)
        }
    };
    let gid = match &config.gid {
        None => user.as_ref().map(|u| u.gid),
        Some(spec) => Some(match spec.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(spec)
                    .map_err(|e| fail(format!("gid {spec}: {e}")))?
                    .ok_or_else(|| fail(format!("gid {spec}: no such group")))?
                    .gid
            }
        }),
    };
    if let Some(gid) = gid {
        if gid != getgid() {
            setgroups(&[gid]).map_err(|e| fail(format!("setgroups({gid}): {e}")))?;
            setgid(gid).map_err(|e| fail(format!("setgid({gid}): {e}")))?;
        }
    }
    if let Some(user) = user {
        if user.uid != getuid() {
            setuid(user.uid).map_err(|e| fail(format!("setuid({}): {e}", user.name)))?;
        }
    }
    Ok(())
}

/// Import the app in this process.
fn load(config: &VassalConfig) -> Result<App, Fatal> {
    crate::python::initialize(config.home.as_deref()).map_err(|e| Fatal::new(e.exit_code(), e))?;
    let app = crate::python::load_app(config, config.threads > 1, config.processes > 1)
        .map_err(|e| Fatal::new(e.exit_code(), e))?;
    crate::python::enable_stack_dumps(nix::sys::signal::Signal::SIGUSR2 as i32);
    Ok(app)
}

/// One process that is its own worker (no master).
fn serve_single(
    config: &VassalConfig,
    sockets: &[BoundSocket],
    notifier: &crate::notify::Notifier,
) -> Result<(), Fatal> {
    let app = Arc::new(load(config)?);
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
    serve_worker(config, sockets, app, Some(counters), || {
        if let Some(stats) = stats {
            tokio::spawn(stats.serve());
        }
        notifier.send(&[
            Message::Ready,
            Message::Status(format!("serving on {} socket(s)", sockets.len())),
        ]);
    })
}

/// The `stats` server of a single-process server (no master): uWSGI's JSON with this
/// process as the master and its one worker, written to each client, then closed (as
/// uWSGI does; uwsgitop reads until EOF). With `stats-http`, uWSGI's HTTP header first.
struct SingleStats {
    listener: StatsListener,
    http: bool,
    shm: Arc<crate::shm::Shm>,
    id: crate::shm::WorkerId,
    threads: usize,
    start: u64,
    /// The listening sockets (name, protocol, a duplicate of the fd for `TCP_INFO`).
    sockets: Vec<(String, String, Option<std::os::fd::OwnedFd>)>,
}

impl SingleStats {
    /// Bind `addr` (see [`StatsListener::bind`]).
    fn bind(
        addr: &str,
        config: &VassalConfig,
        sockets: &[BoundSocket],
        shm: Arc<crate::shm::Shm>,
        id: crate::shm::WorkerId,
    ) -> std::io::Result<SingleStats> {
        use std::os::fd::AsFd;
        Ok(SingleStats {
            listener: StatsListener::bind(addr)?,
            http: config.stats_http,
            shm,
            id,
            threads: config.threads as usize,
            start: crate::shm::epoch_secs(),
            sockets: sockets
                .iter()
                .map(|s| {
                    (
                        s.addr.to_string(),
                        s.protocol.as_str().to_owned(),
                        s.listener.as_fd().try_clone_to_owned().ok(),
                    )
                })
                .collect(),
        })
    }

    /// The document, with fresh memory and accept-queue samples.
    fn render(&self) -> Vec<u8> {
        use std::os::fd::AsFd;
        let sockets = crate::master::socket_infos(
            &self.shm,
            self.sockets.iter().map(|(name, proto, fd)| {
                (
                    name.clone(),
                    proto.clone(),
                    fd.as_ref().map(|fd| fd.as_fd()),
                )
            }),
        );
        if let (Some(slot), Some(m)) = (
            self.shm.slot(self.id),
            crate::stats::proc_memory(nix::unistd::getpid()),
        ) {
            slot.set_memory(m.rss, m.vsz);
        }
        let info = crate::stats::MasterInfo::for_this_process(
            self.start,
            self.threads,
            sockets,
            self.shm.master().snapshot(),
        );
        let json = crate::stats::render(&info, &self.shm.snapshots());
        if self.http {
            crate::stats::http_wrap(&json)
        } else {
            json.into_bytes()
        }
    }

    /// Answer every client until the runtime ends.
    async fn serve(self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        trait StatsStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
        impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> StatsStream for T {}
        enum Listener {
            Tcp(tokio::net::TcpListener),
            Unix(tokio::net::UnixListener),
        }
        let listener = match &self.listener {
            StatsListener::Tcp(l) => l
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std)
                .map(Listener::Tcp),
            StatsListener::Unix(l) => l
                .try_clone()
                .and_then(tokio::net::UnixListener::from_std)
                .map(Listener::Unix),
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                crate::log::line(format_args!("rsgi: stats: {e}; no stats server"));
                return;
            }
        };
        loop {
            let accepted: std::io::Result<Box<dyn StatsStream>> = match &listener {
                Listener::Tcp(l) => l.accept().await.map(|(s, _)| Box::new(s) as _),
                Listener::Unix(l) => l.accept().await.map(|(s, _)| Box::new(s) as _),
            };
            let Ok(mut stream) = accepted else {
                // EMFILE and friends: wait a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let body = self.render();
            let http = self.http;
            tokio::spawn(async move {
                let write = async {
                    if http {
                        // As uWSGI: read the request first. Closing a TCP socket with
                        // unread bytes resets it, and the client loses the answer.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !crate::master::request_head_read(&head) {
                            match stream.read(&mut buf).await? {
                                0 => break,
                                n => head.extend_from_slice(&buf[..n]),
                            }
                        }
                    }
                    stream.write_all(&body).await?;
                    stream.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
            });
        }
    }
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
        None => Arc::new(load(start.config)?),
    };
    let counters = Counters {
        shm: Arc::clone(&start.shm),
        id: start.id,
        recycle_after: crate::master::recycle_after(start.config, start.id),
        master_pipe: Some(start.ready_fd),
        recycle_sent: std::sync::atomic::AtomicBool::new(false),
    };
    let (ready_fd, id) = (start.ready_fd, start.id);
    serve_worker(
        start.config,
        start.sockets,
        app,
        Some(counters),
        move || {
            crate::master::send_ready(ready_fd, id);
        },
    )
}

/// Serve `sockets` with `app` until a stop signal; `on_ready` runs once the accept
/// loops run.
fn serve_worker(
    config: &VassalConfig,
    sockets: &[BoundSocket],
    app: Arc<App>,
    counters: Option<Counters>,
    on_ready: impl FnOnce(),
) -> Result<(), Fatal> {
    let static_map = crate::static_files::StaticMap::new(&config.static_map)
        .map_err(|e| Fatal::from_error(notify::EXIT_CONFIG, &e))?;
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
        buffer_size: config.buffer_size,
        limit_post: config.limit_post,
        mercy: Duration::from_secs(config.reload_mercy),
        pid: std::process::id(),
        counters,
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
