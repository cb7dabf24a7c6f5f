//! The master process: forks workers, replaces them, stops and reloads them.
//!
//! # Theory of operation
//!
//! The master is single-threaded for its whole life: no tokio runtime and no Python
//! thread, so `fork()` is always safe. It owns the listening sockets (workers inherit
//! them and all accept on them; the kernel spreads connections) and the shared
//! counters ([`crate::shm`]). It waits in one `poll(2)` on:
//!
//! - a `signalfd` for SIGCHLD, TERM, INT, QUIT, HUP and USR1;
//! - a pipe on which each worker writes one "ready" record once it accepts;
//! - the emperor's notify socket (EOF means the emperor died: stop, leave no orphan);
//! - the `stats` listener (uWSGI's JSON, written and closed).
//!
//! and wakes on its own for deadlines: a respawn backoff, a stop's mercy, and a 1 s tick
//! for harakiri, recycling and memory checks and the accept queues: a full queue (new
//! connections refused; nginx answers 502) is counted (`listen_queue_errors`) and
//! logged, as uWSGI's "listen queue of socket ... full", for unix sockets too.
//!
//! Workers belong to a *generation*. The master keeps `processes` ready workers of the
//! current generation alive:
//!
//! - a worker that dies is replaced at once (counted as a crash); one that dies before
//!   it was ever ready (an import error in lazy mode) is retried with exponential
//!   backoff, with the reason in the log, instead of a tight loop;
//! - a worker due for recycling (`max-requests`, `reload-on-rss`,
//!   `max-worker-lifetime`) gets its replacement first; only when that one accepts is
//!   the old one told to stop gracefully (it finishes its requests), so capacity never
//!   drops and no request fails;
//! - `harakiri`: a request running too long gets SIGUSR2 to its worker (faulthandler
//!   writes every thread's Python stack to the log), then SIGKILL, and a replacement
//!   once it is gone.
//!
//! A replacement for a worker that died (crash, harakiri) takes the dead worker's slot,
//! so "worker N" in the stats keeps its history (`harakiri_count`, `respawn_count`), as
//! in uWSGI; a recycled worker's replacement runs beside it, so it takes another slot.
//!
//! Signals: TERM is a graceful stop (workers finish their requests; after
//! `reload-mercy` the rest is killed; exit 0). INT and QUIT are a fast stop. HUP is a
//! graceful reload: a new generation starts with freshly imported code while the old
//! one keeps serving; once every new worker accepts, the old ones stop gracefully. The
//! listening sockets are never closed, so no connection is refused. If the new code
//! fails, the new workers are killed and the old ones go on serving.
//!
//! With the app preloaded in the master (the default), fresh code needs a fresh
//! interpreter: on HUP the master re-executes itself (same pid) and passes down its
//! sockets (`LISTEN_FDS`), its shared counters (`RSGI_SHM_FD`) and the pids of the
//! running workers (`RSGI_OLD_WORKERS`), which keep serving until the new image's
//! workers accept. With `lazy-apps`, each worker imports the app itself and the
//! master just forks a new generation.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use rsgi_proto::config::VassalConfig;
use rsgi_proto::notify::{self, Message};

use crate::fatal::Fatal;
use crate::listen::BoundSocket;
use crate::master_pipe::Record;
use crate::notify::Notifier;
use crate::python::App;
use crate::shm::{self, RespawnCause, Shm, WorkerId};
use crate::stats_server::{socket_infos, StatsListener};
use crate::worker::WorkerStart;

/// Environment variable naming the workers that keep running across a re-exec
/// (`id:pid,id:pid`).
pub const OLD_WORKERS_ENV: &str = "RSGI_OLD_WORKERS";
/// Set in the environment of a master that re-executed itself for a reload.
pub const REEXEC_ENV: &str = "RSGI_REEXEC";

/// How long a new worker may take to become ready during a reload.
const RELOAD_DEADLINE: Duration = Duration::from_secs(60);
/// How long a fast stop waits before SIGKILL.
const FAST_STOP_GRACE: Duration = Duration::from_secs(3);
/// How often the master wakes without an event: harakiri, recycling and memory
/// checks, and the accept queues.
const TICK: Duration = Duration::from_secs(1);
/// How often a full accept queue is logged while it stays full (each sample counts).
const QUEUE_FULL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Between SIGUSR2 (stack dump) and SIGKILL for harakiri.
const HARAKIRI_DUMP_GRACE: Duration = Duration::from_millis(300);
/// The most a failing worker start is delayed.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One worker process.
#[derive(Debug)]
struct Proc {
    id: WorkerId,
    pid: Pid,
    generation: u64,
    spawned: Instant,
    ready: bool,
    /// Being replaced for this reason; stopped once its replacement accepts.
    replace: Option<RespawnCause>,
    /// When it was told to stop.
    stopping_since: Option<Instant>,
    /// Harakiri: when the stack dump was asked for (SIGKILL follows).
    harakiri_at: Option<Instant>,
    /// Whether SIGKILL was sent.
    killed: bool,
}

/// A reload in progress.
#[derive(Debug)]
struct Reload {
    /// The generation serving before the reload.
    previous: u64,
    deadline: Instant,
}

/// How the master is stopping.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    graceful: bool,
    deadline: Instant,
    killed: bool,
}

/// Run the master until it is stopped. The app is imported first unless `lazy-apps`.
pub fn run(
    config: &VassalConfig,
    sockets: &[BoundSocket],
    notifier: &Notifier,
) -> Result<(), Fatal> {
    let workers = config.processes.max(1) as usize;
    let slots = workers * 2;
    let shm = match Shm::from_env(slots) {
        Ok(Some(shm)) => shm,
        _ => Shm::create(slots).map_err(|e| Fatal::new(notify::EXIT_OS, e))?,
    };
    shm.set_master_pid(nix::unistd::getpid());
    notifier.send_shm(shm.fd().as_raw_fd(), slots);
    let shm = Arc::new(shm);

    let mut mask = crate::worker::control_signals();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("sigprocmask: {e}")))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Fatal::new(notify::EXIT_OS, format!("signalfd: {e}")))?;
    let (ready_rd, ready_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| Fatal::new(notify::EXIT_OS, format!("pipe: {e}")))?;
    let reexec = std::env::var_os(REEXEC_ENV).is_some();
    let stats = match &config.stats {
        Some(addr) => match StatsListener::bind(addr) {
            Ok(l) => Some(l),
            // After a re-exec the old workers still serve: do not give up on them.
            Err(e) if reexec => {
                crate::log::line(format_args!("rsgi: stats {addr}: {e}; no stats server"));
                None
            }
            Err(e) => return Err(Fatal::new(notify::EXIT_OS, format!("stats {addr}: {e}"))),
        },
        None => None,
    };

    let mut master = Master {
        config,
        sockets,
        notifier,
        shm,
        app: None,
        app_error: None,
        procs: Vec::new(),
        generation: 1,
        reload: None,
        stopping: None,
        startup_failures: 0,
        next_spawn: None,
        announced_ready: false,
        sigfd,
        ready_rd,
        ready_wr,
        stats,
        started_epoch: shm::epoch_secs(),
        workers,
        reexec_pending: false,
        reuse_slots: Vec::new(),
        queues_checked: None,
        queue_full_logged: None,
    };
    master.adopt_old_workers();
    if !config.lazy_apps {
        master.load_app()?;
    }
    master.run_loop();
    Ok(())
}

struct Master<'a> {
    config: &'a VassalConfig,
    sockets: &'a [BoundSocket],
    notifier: &'a Notifier,
    shm: Arc<Shm>,
    /// The app imported in the master (not in lazy mode).
    app: Option<Arc<App>>,
    /// Why the preloaded app failed to import after a re-exec (old workers still serve).
    app_error: Option<String>,
    procs: Vec<Proc>,
    generation: u64,
    reload: Option<Reload>,
    stopping: Option<Stopping>,
    startup_failures: u32,
    next_spawn: Option<Instant>,
    announced_ready: bool,
    sigfd: SignalFd,
    ready_rd: OwnedFd,
    ready_wr: OwnedFd,
    stats: Option<StatsListener>,
    started_epoch: u64,
    workers: usize,
    /// A HUP arrived in preload mode: re-exec as soon as it is safe.
    reexec_pending: bool,
    /// Slots of workers that died (crash, harakiri), for their replacements: a slot is
    /// "worker N" in the stats, so its history (`harakiri_count`, `respawn_count`)
    /// stays with one id, as in uWSGI.
    reuse_slots: Vec<WorkerId>,
    /// When the accept queues were last sampled, and when a full one was last logged.
    queues_checked: Option<Instant>,
    queue_full_logged: Option<Instant>,
}

impl Master<'_> {
    fn log(&self, args: std::fmt::Arguments<'_>) {
        crate::log::line(format_args!("rsgi master {}: {args}", std::process::id()));
    }

    /// Import the app in the master (preload). After a re-exec with old workers still
    /// serving, a failure is not fatal: they go on while the error is reported.
    fn load_app(&mut self) -> Result<(), Fatal> {
        let loaded = crate::python::initialize(self.config.home.as_deref()).and_then(|()| {
            crate::python::load_app(
                self.config,
                self.config.threads > 1,
                self.config.processes > 1,
            )
        });
        match loaded {
            Ok(app) => {
                crate::python::enable_stack_dumps(Signal::SIGUSR2 as i32);
                self.app = Some(Arc::new(app));
                Ok(())
            }
            Err(e) if !self.procs.is_empty() => {
                self.log(format_args!(
                    "reload failed: the new code does not load; the running workers keep serving:\n{e}"
                ));
                self.shm.master().count_reload_failed();
                self.app_error = Some(e.to_string());
                // The reload is over: the adopted workers (generation 0) stay the
                // serving generation, and the next HUP may try again (it re-executes
                // once more) instead of being refused as "already in progress".
                self.reload = None;
                self.generation = 0;
                self.notifier.send(&[
                    Message::Ready,
                    Message::Status("reload failed: the app does not load".into()),
                ]);
                Ok(())
            }
            Err(e) => Err(Fatal::new(e.exit_code(), e)),
        }
    }

    /// After a re-exec: the workers of the previous image are still our children.
    fn adopt_old_workers(&mut self) {
        let Ok(list) = std::env::var(OLD_WORKERS_ENV) else {
            return;
        };
        std::env::remove_var(OLD_WORKERS_ENV);
        std::env::remove_var(REEXEC_ENV);
        let now = Instant::now();
        for entry in list.split(',').filter(|e| !e.is_empty()) {
            let Some((id, pid)) = entry.split_once(':') else {
                continue;
            };
            let (Some(id), Ok(pid)) = (id.parse().ok().and_then(WorkerId::new), pid.parse::<i32>())
            else {
                continue;
            };
            if usize::try_from(id.get()).map_or(true, |i| i > self.shm.workers()) {
                continue;
            }
            self.procs.push(Proc {
                id,
                pid: Pid::from_raw(pid),
                generation: 0,
                spawned: now,
                ready: true,
                replace: None,
                stopping_since: None,
                harakiri_at: None,
                killed: false,
            });
        }
        if !self.procs.is_empty() {
            self.reload = Some(Reload {
                previous: 0,
                deadline: now + RELOAD_DEADLINE,
            });
            self.announced_ready = true;
            self.log(format_args!(
                "re-executed for a reload; {} old worker(s) serve until the new ones accept",
                self.procs.len()
            ));
        }
    }

    fn run_loop(&mut self) {
        loop {
            let now = Instant::now();
            self.maintain(now);
            if self.stopping.is_some() && self.procs.is_empty() {
                self.log(format_args!("every worker has exited; bye"));
                return;
            }
            if self.reexec_pending && self.stopping.is_none() {
                self.reexec();
            }
            let timeout = self.next_wakeup(Instant::now());
            self.wait(timeout);
        }
    }

    /// Block in poll(2) until something happens or `timeout` passes, then handle it.
    fn wait(&mut self, timeout: Duration) {
        let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
        let emperor = self
            .notifier
            .emperor_fd()
            // SAFETY: the notifier owns this fd for the whole life of the master.
            .map(|fd| unsafe { BorrowedFd::borrow_raw(fd) });
        let (sig_ready, pipe_ready, emperor_ready, stats_ready) = {
            let mut fds = vec![
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.ready_rd.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(e) = emperor {
                fds.push(PollFd::new(e, PollFlags::POLLIN));
            }
            if let Some(s) = &self.stats {
                fds.push(PollFd::new(s.fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return,
                Err(e) => {
                    self.log(format_args!("poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
            let hit = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            let mut i = 2;
            let emperor_ready = emperor.is_some() && {
                i += 1;
                hit(&fds[i - 1])
            };
            let stats_ready = self.stats.is_some() && hit(&fds[i]);
            (hit(&fds[0]), hit(&fds[1]), emperor_ready, stats_ready)
        };
        if sig_ready {
            self.handle_signals();
        }
        if pipe_ready {
            self.handle_ready_records();
        }
        if emperor_ready && self.notifier.emperor_gone() && self.stopping.is_none() {
            self.log(format_args!("the emperor is gone: stopping"));
            self.begin_stop(false);
        }
        if stats_ready {
            self.serve_stats();
        }
    }

    fn handle_signals(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {}
                Signal::SIGTERM => {
                    self.log(format_args!("SIGTERM: graceful stop"));
                    self.begin_stop(true);
                }
                Signal::SIGINT | Signal::SIGQUIT => {
                    self.log(format_args!("{sig}: fast stop"));
                    self.begin_stop(false);
                }
                Signal::SIGHUP => self.begin_reload(),
                Signal::SIGUSR1 => {
                    if let Err(e) = crate::log::reopen() {
                        self.log(format_args!("SIGUSR1: cannot reopen the log: {e}"));
                    }
                    for p in &self.procs {
                        let _ = kill(p.pid, Signal::SIGUSR1);
                    }
                }
                _ => {}
            }
        }
        self.reap();
    }

    /// Collect every exited worker.
    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.worker_exited(pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.worker_exited(pid, None, Some(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn worker_exited(&mut self, pid: Pid, code: Option<i32>, sig: Option<Signal>) {
        let Some(index) = self.procs.iter().position(|p| p.pid == pid) else {
            return;
        };
        let proc = self.procs.remove(index);
        if let Some(slot) = self.shm.slot(proc.id) {
            slot.mark_dead();
        }
        let how = match (code, sig) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "unknown status".to_owned(),
        };
        if self.stopping.is_some() {
            return;
        }
        if proc.stopping_since.is_some() {
            // Retired on purpose (recycling, reload): its replacement already runs.
            return;
        }
        if proc.generation == self.generation && (proc.ready || proc.harakiri_at.is_some()) {
            self.reuse_slots.push(proc.id);
        }
        if proc.harakiri_at.is_some() {
            self.log(format_args!(
                "worker {} (pid {pid}) killed by harakiri; respawning",
                proc.id.get()
            ));
            return;
        }
        // A new-generation worker died before accepting during a reload: the reload
        // failed; keep the old generation.
        if let Some(reload) = &self.reload {
            if proc.generation == self.generation && !proc.ready {
                let previous = reload.previous;
                self.log(format_args!(
                    "reload failed: new worker {} (pid {pid}) exited with {how} before it accepted \
                     (its error is above); the previous workers keep serving",
                    proc.id.get()
                ));
                self.abort_reload(previous);
                return;
            }
        }
        if !proc.ready {
            self.startup_failures += 1;
            let delay = backoff(self.startup_failures);
            self.next_spawn = Some(Instant::now() + delay);
            let hint = if code == Some(notify::EXIT_APP_LOAD) {
                ": the app failed to import (traceback above)"
            } else {
                ""
            };
            self.log(format_args!(
                "worker {} (pid {pid}) exited with {how} before it accepted{hint}; \
                 retrying in {:.1} s (attempt {})",
                proc.id.get(),
                delay.as_secs_f64(),
                self.startup_failures
            ));
            return;
        }
        self.shm.count_respawn(proc.id, RespawnCause::Crash);
        if !self.can_spawn() {
            self.log(format_args!(
                "worker {} (pid {pid}) died with {how}; it cannot be replaced until the app \
                 loads again: fix it and send SIGHUP",
                proc.id.get()
            ));
            return;
        }
        self.log(format_args!(
            "worker {} (pid {pid}) died with {how}; respawning",
            proc.id.get()
        ));
    }

    fn handle_ready_records(&mut self) {
        let mut buf = [0u8; crate::master_pipe::RECORD_LEN * 64];
        loop {
            match nix::unistd::read(&self.ready_rd, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    for rec in crate::master_pipe::decode(&buf[..n]) {
                        // DUE needs nothing more: the next maintain() recycles.
                        let Record::Ready(id) = rec else {
                            continue;
                        };
                        if let Some(p) = self.procs.iter_mut().find(|p| p.id.get() == id) {
                            p.ready = true;
                            self.startup_failures = 0;
                            self.next_spawn = None;
                        }
                    }
                }
            }
        }
    }

    /// Whether workers can be forked: the app is loaded, or each worker loads it.
    fn can_spawn(&self) -> bool {
        self.app.is_some() || self.config.lazy_apps
    }

    /// The workers of the current generation that count towards `processes`.
    fn active(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(move |p| {
            p.generation == self.generation
                && p.replace.is_none()
                && p.stopping_since.is_none()
                && p.harakiri_at.is_none()
        })
    }

    fn maintain(&mut self, now: Instant) {
        if let Some(stop) = self.stopping {
            if !stop.killed && now >= stop.deadline {
                self.log(format_args!(
                    "stop deadline passed: killing {} worker(s)",
                    self.procs.len()
                ));
                for p in &self.procs {
                    let _ = kill(p.pid, Signal::SIGKILL);
                }
                if let Some(s) = &mut self.stopping {
                    s.killed = true;
                }
            }
            return;
        }
        self.check_workers(now);
        self.check_listen_queues(now);
        // Spawn what is missing. A worker killed by harakiri still holds its slot
        // until it is gone (its stack dump takes a moment); its replacement then takes
        // that slot (`reuse_slots`).
        let dying = |m: &Self| {
            m.procs
                .iter()
                .filter(|p| p.generation == m.generation && p.harakiri_at.is_some())
                .count()
        };
        while self.can_spawn()
            && self.active().count() + dying(self) < self.workers
            && self.next_spawn.is_none_or(|t| now >= t)
        {
            if !self.spawn() {
                break;
            }
        }
        let ready = self.active().filter(|p| p.ready).count();
        // Replacements accept: stop the workers they replace.
        if ready >= self.workers {
            for p in &mut self.procs {
                if p.replace.is_some() && p.stopping_since.is_none() {
                    let _ = kill(p.pid, Signal::SIGTERM);
                    p.stopping_since = Some(now);
                }
            }
        }
        // A reload completes when the whole new generation accepts.
        if let Some(reload) = &self.reload {
            if ready >= self.workers {
                let generation = self.generation;
                for p in &mut self.procs {
                    if p.generation != generation && p.stopping_since.is_none() {
                        self.shm.count_respawn(p.id, RespawnCause::Reload);
                        let _ = kill(p.pid, Signal::SIGTERM);
                        p.stopping_since = Some(now);
                    }
                }
                self.reload = None;
                self.shm.master().count_reload();
                self.log(format_args!("reload done: generation {generation} serves"));
                self.notifier.send(&[
                    Message::Ready,
                    Message::Status(format!("{} workers ready (reloaded)", self.workers)),
                ]);
            } else if now >= reload.deadline {
                let previous = reload.previous;
                self.log(format_args!(
                    "reload failed: the new workers did not accept within {} s; \
                     the previous workers keep serving",
                    RELOAD_DEADLINE.as_secs()
                ));
                self.abort_reload(previous);
            }
        }
        if !self.announced_ready && ready >= self.workers {
            self.announced_ready = true;
            self.log(format_args!("{} worker(s) ready", self.workers));
            self.notifier.send(&[
                Message::Ready,
                Message::Status(format!("{} workers ready", self.workers)),
            ]);
        }
    }

    /// Harakiri, recycling and memory checks.
    fn check_workers(&mut self, now: Instant) {
        let now_ms = shm::monotonic_ms();
        let harakiri_ms = self.config.harakiri.map(|h| u64::from(h) * 1000);
        let rss_limit = self.config.reload_on_rss.map(|mb| mb * 1024 * 1024);
        let lifetime = self.config.max_worker_lifetime.map(Duration::from_secs);
        let mut notes = Vec::new();
        for p in &mut self.procs {
            let Some(slot) = self.shm.slot(p.id) else {
                continue;
            };
            if let Some(at) = p.harakiri_at {
                if !p.killed && now >= at + HARAKIRI_DUMP_GRACE {
                    let _ = kill(p.pid, Signal::SIGKILL);
                    p.killed = true;
                }
                continue;
            }
            if let (Some(limit), Some(start)) = (harakiri_ms, slot.oldest_request_start_ms()) {
                let running = now_ms.saturating_sub(start);
                if running > limit {
                    notes.push(format!(
                        "worker {} (pid {}): harakiri: a request has run {:.1} s (limit {} s); \
                         its Python stacks follow, then it is killed",
                        p.id.get(),
                        p.pid,
                        running as f64 / 1000.0,
                        limit / 1000
                    ));
                    let _ = kill(p.pid, Signal::SIGUSR2);
                    p.harakiri_at = Some(now);
                    self.shm.count_respawn(p.id, RespawnCause::Harakiri);
                    continue;
                }
            }
            if p.replace.is_some() || p.stopping_since.is_some() || !p.ready {
                continue;
            }
            let cause = if crate::master_pipe::recycle_after(self.config, p.id)
                .is_some_and(|m| slot.requests_since_spawn() >= m)
            {
                Some(RespawnCause::MaxRequests)
            } else if lifetime.is_some_and(|l| now.duration_since(p.spawned) >= l) {
                Some(RespawnCause::Lifetime)
            } else if let Some(limit) = rss_limit {
                crate::stats::proc_memory(p.pid)
                    .filter(|m| m.rss > limit)
                    .map(|_| RespawnCause::Rss)
            } else {
                None
            };
            if let Some(cause) = cause {
                notes.push(format!(
                    "worker {} (pid {}): recycling ({}); its replacement starts first",
                    p.id.get(),
                    p.pid,
                    cause.as_str()
                ));
                self.shm.count_respawn(p.id, cause);
                p.replace = Some(cause);
            }
        }
        for n in notes {
            self.log(format_args!("{n}"));
        }
    }

    /// Sample the accept queues (at most once a [`TICK`]) through [`Self::sample_sockets`];
    /// a full one is counted (`listen_queue_errors`, every sample) and logged (at most
    /// every [`QUEUE_FULL_LOG_EVERY`]).
    fn check_listen_queues(&mut self, now: Instant) {
        if self.queues_checked.is_some_and(|t| now < t + TICK) {
            return;
        }
        self.queues_checked = Some(now);
        let full: Vec<String> = self
            .sample_sockets()
            .into_iter()
            .filter(|s| s.max_queue > 0 && s.queue >= s.max_queue)
            .map(|s| format!("{} ({}/{})", s.name, s.queue, s.max_queue))
            .collect();
        for _ in &full {
            self.shm.master().count_listen_queue_error();
        }
        if !full.is_empty()
            && self
                .queue_full_logged
                .is_none_or(|t| now >= t + QUEUE_FULL_LOG_EVERY)
        {
            self.queue_full_logged = Some(now);
            self.log(format_args!(
                "listen queue of socket {} full: new connections are refused (nginx answers \
                 502); the workers are too few or too slow, or `listen` is too small (the \
                 kernel caps it at net.core.somaxconn)",
                full.join(", ")
            ));
        }
    }

    /// The listening sockets with a fresh accept-queue sample each ([`socket_infos`]:
    /// the first one's also becomes the stats' `listen_queue`).
    fn sample_sockets(&self) -> Vec<crate::stats::SocketInfo> {
        socket_infos(
            &self.shm,
            self.sockets.iter().map(|s| {
                (
                    s.addr.to_string(),
                    s.protocol.as_str().to_owned(),
                    Some(s.listener.as_fd()),
                )
            }),
        )
    }

    /// Fork one worker of the current generation. False if no slot is free or the
    /// fork failed.
    fn spawn(&mut self) -> bool {
        let free = |id: &WorkerId| !self.procs.iter().any(|p| p.id == *id);
        let reused = self.reuse_slots.iter().position(free);
        let id = match reused {
            Some(i) => Some(self.reuse_slots.swap_remove(i)),
            None => self.shm.ids().find(free),
        };
        let Some(id) = id else {
            return false;
        };
        self.reuse_slots.retain(|r| *r != id);
        let Some(slot) = self.shm.slot(id) else {
            return false;
        };
        slot.reset_for_spawn(shm::epoch_secs());
        match crate::python::fork() {
            Ok(ForkResult::Child) => {
                let code = self.worker_child(id);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                slot.set_pid(child);
                self.procs.push(Proc {
                    id,
                    pid: child,
                    generation: self.generation,
                    spawned: Instant::now(),
                    ready: false,
                    replace: None,
                    stopping_since: None,
                    harakiri_at: None,
                    killed: false,
                });
                true
            }
            Err(e) => {
                self.log(format_args!("fork failed: {e}; retrying in 1 s"));
                self.next_spawn = Some(Instant::now() + Duration::from_secs(1));
                false
            }
        }
    }

    /// In the forked child: become a worker. Returns the exit code.
    fn worker_child(&self, id: WorkerId) -> i32 {
        // Die with the master: no orphan workers.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        if nix::unistd::getppid() != self.shm.master_pid() {
            return notify::EXIT_OK;
        }
        // SIGCHLD was blocked for the master's signalfd; a worker's own children
        // (subprocess) need it back. The stop signals are unblocked once the
        // worker's handlers exist.
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        let _ = chld.thread_unblock();
        // The master's own fds: a worker must not keep them (the stats port would stay
        // bound across a re-exec, the signalfd and pipe would leak).
        let mut master_fds = vec![self.sigfd.as_raw_fd(), self.ready_rd.as_raw_fd()];
        if let Some(s) = &self.stats {
            master_fds.push(s.fd().as_raw_fd());
        }
        for fd in master_fds {
            // SAFETY: these fds belong to the master's objects, which this forked
            // child never uses or drops again (it leaves through process::exit).
            unsafe { libc::close(fd) };
        }
        let start = WorkerStart {
            config: self.config,
            sockets: self.sockets,
            app: self.app.clone(),
            shm: Arc::clone(&self.shm),
            id,
            ready_fd: self.ready_wr.as_raw_fd(),
        };
        match crate::worker::worker_main(start) {
            Ok(()) => notify::EXIT_OK,
            Err(fatal) => {
                crate::log::line(format_args!("rsgi worker {}: {}", id.get(), fatal.message));
                fatal.code
            }
        }
    }

    fn begin_stop(&mut self, graceful: bool) {
        if let Some(s) = self.stopping {
            if s.graceful && !graceful {
                // A fast stop overrides a graceful one in progress.
                self.stopping = None;
            } else {
                return;
            }
        }
        self.notifier.send(&[Message::Stopping]);
        let (sig, grace) = if graceful {
            (
                Signal::SIGTERM,
                Duration::from_secs(self.config.reload_mercy),
            )
        } else {
            (Signal::SIGINT, FAST_STOP_GRACE)
        };
        for p in &self.procs {
            let _ = kill(p.pid, sig);
        }
        self.stopping = Some(Stopping {
            graceful,
            deadline: Instant::now() + grace,
            killed: false,
        });
    }

    fn begin_reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        if self.reload.is_some() {
            self.log(format_args!("SIGHUP: a reload is already in progress"));
            return;
        }
        self.log(format_args!("SIGHUP: graceful reload"));
        self.notifier.send(&[
            Message::Reloading,
            Message::Other(format!(
                "MONOTONIC_USEC={}",
                shm::monotonic_ms().saturating_mul(1000)
            )),
        ]);
        if self.config.lazy_apps {
            let previous = self.generation;
            self.generation += 1;
            self.reload = Some(Reload {
                previous,
                deadline: Instant::now() + RELOAD_DEADLINE,
            });
            self.next_spawn = None;
        } else {
            self.reexec_pending = true;
        }
    }

    /// Give up a reload: kill the new generation, go back to `previous`.
    fn abort_reload(&mut self, previous: u64) {
        let failed = self.generation;
        for p in &mut self.procs {
            if p.generation == failed && p.stopping_since.is_none() {
                let _ = kill(p.pid, Signal::SIGKILL);
                p.stopping_since = Some(Instant::now());
            }
        }
        self.generation = previous;
        self.reload = None;
        self.shm.master().count_reload_failed();
        self.notifier.send(&[
            Message::Ready,
            Message::Status("reload failed; the previous workers keep serving".into()),
        ]);
        // The failing code should not be retried in a loop by respawns of the old
        // generation: they run the old, working code.
        self.next_spawn = None;
    }

    /// Re-execute the master binary for a reload in preload mode (see module docs).
    fn reexec(&mut self) {
        self.reexec_pending = false;
        match self.prepare_and_exec() {
            Ok(never) => match never {},
            Err(e) => {
                self.log(format_args!(
                    "reload failed: cannot re-execute the master: {e}; the workers keep serving"
                ));
                self.shm.master().count_reload_failed();
                self.notifier.send(&[
                    Message::Ready,
                    Message::Status("reload failed: cannot re-execute".into()),
                ]);
            }
        }
    }

    fn prepare_and_exec(&mut self) -> Result<std::convert::Infallible, String> {
        use std::ffi::CString;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        // A package upgrade replaces the binary: exec the new file, not the old inode.
        let exe = exe
            .to_str()
            .map(|s| s.trim_end_matches(" (deleted)").to_owned())
            .ok_or("binary path is not UTF-8")?;
        let exe_c = CString::new(exe.clone()).map_err(|e| e.to_string())?;
        let args: Vec<CString> = std::env::args_os()
            .map(|a| CString::new(a.into_encoded_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;

        // Move every fd that must survive to a high number first, so placing the
        // listeners at 3.. cannot clobber them.
        let high = |fd: RawFd| -> Result<RawFd, String> {
            nix::fcntl::fcntl(
                // SAFETY: fd is open (owned by this process) for the duration of the call.
                unsafe { BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_DUPFD(1000),
            )
            .map_err(|e| format!("dup {fd}: {e}"))
        };
        let mut listener_fds = Vec::new();
        for s in self.sockets {
            listener_fds.push(high(s.listener.as_raw_fd())?);
        }
        let shm_fd = high(self.shm.fd().as_raw_fd())?;
        let notify_fd = match self.notifier.emperor_fd() {
            Some(fd) => Some(high(fd)?),
            None => None,
        };
        let names: Vec<&str> = self.sockets.iter().map(|s| s.protocol.as_str()).collect();
        let old: Vec<String> = self
            .procs
            .iter()
            .filter(|p| p.stopping_since.is_none())
            .map(|p| format!("{}:{}", p.id.get(), p.pid))
            .collect();
        // From here on the process is committed: fds 3.. are overwritten.
        for (i, fd) in listener_fds.iter().enumerate() {
            let target = 3 + i as RawFd;
            // SAFETY: dup2 onto a low fd number; whatever was there is no longer
            // needed because this process executes a new image right after.
            let r = unsafe { libc::dup2(*fd, target) };
            if r < 0 {
                std::process::exit(notify::EXIT_OS);
            }
        }
        std::env::set_var("LISTEN_FDS", listener_fds.len().to_string());
        std::env::set_var("LISTEN_FDNAMES", names.join(":"));
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var(shm::SHM_FD_ENV, shm_fd.to_string());
        if let Some(fd) = notify_fd {
            std::env::set_var(notify::NOTIFY_FD_ENV, fd.to_string());
        }
        std::env::set_var(OLD_WORKERS_ENV, old.join(","));
        std::env::set_var(REEXEC_ENV, "1");
        self.log(format_args!("re-executing {exe} for the reload"));
        let err = nix::unistd::execv(&exe_c, &args).err();
        // exec failed after fds 3.. were overwritten: the workers die with us
        // (PDEATHSIG) and a supervisor restarts us.
        self.log(format_args!("execv failed: {err:?}"));
        std::process::exit(notify::EXIT_OS);
    }

    fn next_wakeup(&self, now: Instant) -> Duration {
        let mut wake = now + TICK;
        if let Some(t) = self.next_spawn {
            wake = wake.min(t);
        }
        if let Some(s) = self.stopping {
            if !s.killed {
                wake = wake.min(s.deadline);
            }
        }
        if let Some(r) = &self.reload {
            wake = wake.min(r.deadline);
        }
        for p in &self.procs {
            if let (Some(at), false) = (p.harakiri_at, p.killed) {
                wake = wake.min(at + HARAKIRI_DUMP_GRACE);
            }
        }
        wake.saturating_duration_since(now)
    }

    fn serve_stats(&mut self) {
        let Some(stats) = &self.stats else { return };
        let sockets = self.sample_sockets();
        let mut workers = Vec::new();
        for p in &self.procs {
            if let Some(slot) = self.shm.slot(p.id) {
                if let Some(m) = crate::stats::proc_memory(p.pid) {
                    slot.set_memory(m.rss, m.vsz);
                }
            }
            workers.push(self.shm.slot(p.id).map(|s| s.snapshot(p.id)));
        }
        let mut workers: Vec<_> = workers.into_iter().flatten().collect();
        workers.sort_by_key(|w| w.id);
        let info = crate::stats::MasterInfo::for_this_process(
            self.started_epoch,
            self.config.threads as usize,
            sockets,
            self.shm.master().snapshot(),
        );
        let json = crate::stats::render(&info, &workers);
        stats.answer(json.as_bytes(), self.config.stats_http);
    }
}

/// Exponential backoff for workers that fail to start: 0.1 s, 0.2 s, ... up to 10 s.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (Duration::from_millis(100) * factor).min(MAX_BACKOFF)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cases = [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (7, 6400),
            (8, 10_000),
            (50, 10_000),
        ];
        for (failures, ms) in cases {
            assert_eq!(backoff(failures), Duration::from_millis(ms), "{failures}");
        }
    }
}
