//! The master process: forks workers, replaces them, stops and reloads them.
//!
//! # Layout
//!
//! Every decision lives in [`policy`]: a pure `step(state, event, now) -> actions`
//! with table tests (which worker to spawn in which slot, when to recycle, harakiri,
//! the reload generation swap, the stop sequence, backoff). This file is the shell
//! around it: it turns poll(2), the signalfd, waitpid, the ready pipe
//! ([`crate::master_pipe`]) and the shared counters into events, and performs the
//! actions (kill, fork, re-exec, notify, log, count). The stats server is
//! [`crate::stats_server`]; a forked worker runs [`crate::worker`].
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

pub mod cheaper;
pub mod cron;
pub mod daemons;
pub mod policy;
pub mod touch;

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

use cron::{CronAction, Crons};
use daemons::{DaemonAction, DaemonEvent, Daemons};
use policy::{Action, Event, ExitStatus, Sample, Settings, State};
use touch::{Seen, Touch, Touches};

use crate::fatal::Fatal;
use crate::listen::BoundSocket;
use crate::master_pipe::Record;
use crate::notify::Notifier;
use crate::python::App;
use crate::shm::{self, Shm, WorkerId};
use crate::stats_server::{socket_infos, StatsListener};
use crate::worker::WorkerStart;

/// Environment variable naming the workers that keep running across a re-exec
/// (`id:pid,id:pid`).
pub const OLD_WORKERS_ENV: &str = "RSGI_OLD_WORKERS";
/// Set in the environment of a master that re-executed itself for a reload.
pub const REEXEC_ENV: &str = rsgi_proto::cli::REEXEC_ENV;

/// Run the master until it is stopped. The app is imported first unless `lazy-apps`.
pub fn run(
    config: &VassalConfig,
    sockets: &[BoundSocket],
    notifier: &Notifier,
) -> Result<(), Fatal> {
    let slots = config.processes.max(1) as usize * 2;
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

    let settings = Settings::new(config, shm.workers());
    let mut master = Master {
        config,
        sockets,
        notifier,
        shm,
        app: None,
        state: State::new(&settings),
        settings,
        exiting: false,
        sigfd,
        ready_rd,
        ready_wr,
        stats,
        started_epoch: shm::epoch_secs(),
        touches: watched_files(config),
        daemons: Daemons::new(&config.daemons),
        crons: Crons::new(&config.crons),
    };
    master.adopt_old_workers();
    master.start_daemons();
    if !config.lazy_apps {
        master.load_app()?;
    }
    crate::hooks::run(config, rsgi_proto::hooks::Phase::MasterStart)?;
    master.run_loop();
    Ok(())
}

/// The shell around [`policy::step`]: it turns OS happenings into [`Event`]s and
/// performs the [`Action`]s.
struct Master<'a> {
    config: &'a VassalConfig,
    sockets: &'a [BoundSocket],
    notifier: &'a Notifier,
    shm: Arc<Shm>,
    /// The app imported in the master (not in lazy mode).
    app: Option<Arc<App>>,
    /// The policy's state: the workers, the generation, reload and stop.
    state: State,
    settings: Settings,
    /// [`Action::Exit`] was performed.
    exiting: bool,
    sigfd: SignalFd,
    ready_rd: OwnedFd,
    ready_wr: OwnedFd,
    stats: Option<StatsListener>,
    started_epoch: u64,
    /// `touch-reload` and friends.
    touches: Touches,
    /// `attach-daemon` and friends.
    daemons: Daemons,
    /// `cron` and friends.
    crons: Crons,
}

/// The files of `touch-reload`, `touch-chain-reload`, `touch-workers-reload` and
/// `touch-logreopen`.
fn watched_files(config: &VassalConfig) -> Touches {
    let lists = [
        (&config.touch_reload, Touch::Reload),
        (&config.touch_chain_reload, Touch::ChainReload),
        (&config.touch_workers_reload, Touch::WorkersReload),
        (&config.touch_logreopen, Touch::LogReopen),
        (&config.touch_logrotate, Touch::LogRotate),
    ];
    Touches::new(
        lists
            .into_iter()
            .flat_map(|(files, touch)| files.iter().map(move |f| (f.clone(), touch))),
    )
}

impl Master<'_> {
    fn log(&self, args: std::fmt::Arguments<'_>) {
        crate::log::line(format_args!("rsgi master {}: {args}", std::process::id()));
    }

    /// Feed `event` to the policy now, and perform what it asks (answers first).
    fn feed(&mut self, event: Event) {
        let actions = policy::step(&mut self.state, &self.settings, event, Instant::now());
        for action in actions {
            if let Some(answer) = self.perform(action) {
                self.feed(answer);
            }
        }
    }

    /// Perform one action; some have an answer for the policy.
    fn perform(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Log(line) => self.log(format_args!("{line}")),
            Action::Notify(messages) => self.notifier.send(&messages),
            Action::NotifyReloading => self.notifier.send(&[
                Message::Reloading,
                Message::Other(format!(
                    "MONOTONIC_USEC={}",
                    shm::monotonic_ms().saturating_mul(1000)
                )),
            ]),
            Action::Signal { pid, sig } => {
                let _ = kill(pid, sig);
            }
            Action::ReopenLog => {
                if let Err(e) = crate::log::reopen() {
                    self.log(format_args!("SIGUSR1: cannot reopen the log: {e}"));
                }
            }
            Action::RotateLog => match crate::log::rotate() {
                Some(to) => self.log(format_args!("log rotated to {}", to.display())),
                None => self.log(format_args!(
                    "touch-logrotate: no log file to rotate (logto, logto2 or daemonize)"
                )),
            },
            Action::Spawn { id, .. } => return Some(self.spawn(id)),
            Action::MarkDead(id) => {
                if let Some(slot) = self.shm.slot(id) {
                    slot.mark_dead();
                }
            }
            Action::CountRespawn { id, cause } => self.shm.count_respawn(id, cause),
            Action::CountReload => self.shm.master().count_reload(),
            Action::CountReloadFailed => self.shm.master().count_reload_failed(),
            Action::CountListenQueueErrors(n) => {
                for _ in 0..n {
                    self.shm.master().count_listen_queue_error();
                }
            }
            Action::SampleQueues => {
                let full = self
                    .sample_sockets()
                    .into_iter()
                    .filter(|s| s.max_queue > 0 && s.queue >= s.max_queue)
                    .map(|s| format!("{} ({}/{})", s.name, s.queue, s.max_queue))
                    .collect();
                return Some(Event::QueuesSampled(full));
            }
            Action::ReExec(keep) => {
                // The new image starts its own daemons: ours stop first (as uWSGI's
                // reload does).
                self.drain_daemons();
                match self.prepare_and_exec(&keep) {
                    Ok(never) => match never {},
                    Err(e) => {
                        self.daemons = Daemons::new(&self.config.daemons);
                        self.start_daemons();
                        return Some(Event::ReExecFailed(e));
                    }
                }
            }
            Action::StopDaemons => self.feed_daemons(DaemonEvent::Stop),
            Action::RestartDaemons => self.feed_daemons(DaemonEvent::Restart),
            Action::Exit => {
                self.drain_daemons();
                self.exiting = true;
            }
        }
        None
    }

    /// Start the attached daemons (smart ones only if their pidfile names no live pid).
    fn start_daemons(&mut self) {
        if self.daemons.list.is_empty() {
            return;
        }
        let pids = self.pidfile_pids();
        self.feed_daemons(DaemonEvent::Start(pids));
    }

    /// The live pid in each daemon's pidfile (`None` for dumb daemons).
    fn pidfile_pids(&self) -> Vec<Option<Pid>> {
        self.daemons
            .list
            .iter()
            .map(|d| {
                d.spec
                    .pidfile
                    .as_deref()
                    .and_then(rsgi_os::spawn::live_pid_in)
            })
            .collect()
    }

    /// Feed the daemons' policy and perform what it asks.
    fn feed_daemons(&mut self, event: DaemonEvent) {
        let actions = self.daemons.step(event, Instant::now());
        for action in actions {
            match action {
                DaemonAction::Log(line) => self.log(format_args!("{line}")),
                DaemonAction::Kill(pid, sig) => {
                    // Its process group: uWSGI's daemons run in a session of their own.
                    let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
                }
                DaemonAction::StopVassal => self.feed(Event::Signal(Signal::SIGTERM)),
                DaemonAction::Spawn(i) => {
                    let answer = match self.daemons.list.get(i) {
                        Some(d) => {
                            let opts = rsgi_os::spawn::ShellOptions {
                                die_with_parent: d.spec.pidfile.is_none(),
                                daemonize_pidfile: d
                                    .spec
                                    .pidfile
                                    .as_deref()
                                    .filter(|_| d.spec.daemonize),
                            };
                            rsgi_os::spawn::shell(&d.spec.command, opts).map_err(|e| e.to_string())
                        }
                        None => continue,
                    };
                    self.feed_daemons(DaemonEvent::Spawned(i, answer));
                }
            }
        }
    }

    /// Stop the dumb daemons and wait until they are gone (SIGKILL after the mercy):
    /// before the master exits or re-executes. Only daemon pids are reaped here.
    fn drain_daemons(&mut self) {
        self.feed_daemons(DaemonEvent::Stop);
        while !self.daemons.all_stopped() {
            let pids: Vec<Pid> = self
                .daemons
                .list
                .iter()
                .filter(|d| d.spec.pidfile.is_none())
                .filter_map(|d| d.pid)
                .collect();
            for pid in pids {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    // Gone (or not ours any more): either way it no longer runs.
                    _ => self.feed_daemons(DaemonEvent::Exited(pid)),
                }
            }
            let pids = self.pidfile_pids();
            self.feed_daemons(DaemonEvent::Check(pids));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Import the app in the master (preload). After a re-exec with old workers still
    /// serving, a failure is not fatal: they go on while the error is reported.
    fn load_app(&mut self) -> Result<(), Fatal> {
        crate::hooks::run(self.config, rsgi_proto::hooks::Phase::PreApp)?;
        let loaded = crate::python::start_app(
            self.config,
            self.config.threads > 1,
            self.config.processes > 1,
        );
        match loaded {
            Ok(app) => {
                crate::worker::after_load(self.config)?;
                crate::python::enable_stack_dumps(Signal::SIGUSR2 as i32);
                self.app = Some(Arc::new(app));
                crate::hooks::run(self.config, rsgi_proto::hooks::Phase::PostApp)?;
                self.feed(Event::AppLoaded);
                Ok(())
            }
            Err(e) if !self.state.workers.is_empty() => {
                self.feed(Event::AppLoadFailed(e.to_string()));
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
        let workers = list
            .split(',')
            .filter_map(|entry| {
                let (id, pid) = entry.split_once(':')?;
                let id = id.parse().ok().and_then(WorkerId::new)?;
                let pid = pid.parse::<i32>().ok()?;
                Some((id, Pid::from_raw(pid)))
            })
            .collect();
        self.feed(Event::Adopt(workers));
    }

    fn run_loop(&mut self) {
        loop {
            self.check_touches();
            if !self.daemons.list.is_empty() {
                let pids = self.pidfile_pids();
                self.feed_daemons(DaemonEvent::Check(pids));
            }
            if self.state.stopping.is_none() {
                self.run_crons();
            }
            let tick = self.tick();
            self.feed(tick);
            if self.exiting {
                return;
            }
            let now = Instant::now();
            let mut wake = self.state.next_wakeup(now);
            if let Some(t) = self.daemons.next_wakeup() {
                wake = wake.min(t.max(now));
            }
            let timeout = wake.saturating_duration_since(now);
            self.wait(timeout);
        }
    }

    /// Run the crons that are due now (local time).
    fn run_crons(&mut self) {
        if self.crons.jobs.is_empty() {
            return;
        }
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let Some(tm) = rsgi_os::spawn::local_time(epoch) else {
            return;
        };
        for action in self.crons.tick(epoch, &tm) {
            let action = match action {
                CronAction::Run(i) => {
                    let Some(job) = self.crons.jobs.get(i) else {
                        continue;
                    };
                    let opts = rsgi_os::spawn::ShellOptions {
                        die_with_parent: true,
                        daemonize_pidfile: None,
                    };
                    let result =
                        rsgi_os::spawn::shell(&job.spec.command, opts).map_err(|e| e.to_string());
                    self.crons.started(i, result, epoch)
                }
                other => other,
            };
            self.perform_cron(action);
        }
    }

    fn perform_cron(&self, action: CronAction) {
        match action {
            CronAction::Log(line) => self.log(format_args!("{line}")),
            CronAction::Kill(pid, sig) => {
                let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
            }
            CronAction::Run(_) => {}
        }
    }

    /// Stat the `touch-*` files; feed what changed.
    fn check_touches(&mut self) {
        if self.touches.is_empty() {
            return;
        }
        let seen = self
            .touches
            .check(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        for s in seen {
            match s {
                Seen::Changed(touch, path) => {
                    self.feed(Event::Touched(touch, path.display().to_string()));
                }
                Seen::Missing(touch, path) => self.log(format_args!(
                    "{}: cannot stat {}; it triggers once it is created",
                    touch.option(),
                    path.display()
                )),
            }
        }
    }

    /// A [`Event::Tick`] with fresh samples of every worker's shared counters.
    fn tick(&self) -> Event {
        let samples = self
            .state
            .workers
            .iter()
            .filter_map(|w| {
                let slot = self.shm.slot(w.id)?;
                Some(Sample {
                    id: w.id,
                    requests: slot.requests_since_spawn(),
                    oldest_request_start_ms: slot.oldest_request_start_ms(),
                    rss: self
                        .settings
                        .rss_limit
                        .and_then(|_| crate::stats::proc_memory(w.pid))
                        .map(|m| m.rss),
                })
            })
            .collect();
        Event::Tick {
            now_ms: shm::monotonic_ms(),
            samples,
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
        if emperor_ready && self.notifier.emperor_gone() {
            self.feed(Event::EmperorGone);
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
            if sig != Signal::SIGCHLD {
                self.feed(Event::Signal(sig));
            }
        }
        self.reap();
    }

    /// Collect every exited worker.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if let Some(line) = self.crons.exited(status.0, &status.1.to_string()) {
                self.perform_cron(line);
                continue;
            }
            if self.daemons.owns(status.0) {
                self.feed_daemons(DaemonEvent::Exited(status.0));
                continue;
            }
            self.feed(Event::Exited {
                pid: status.0,
                status: status.1,
            });
        }
    }

    fn handle_ready_records(&mut self) {
        let mut buf = [0u8; crate::master_pipe::RECORD_LEN * 64];
        loop {
            match nix::unistd::read(&self.ready_rd, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let ready: Vec<u32> = crate::master_pipe::decode(&buf[..n])
                        .filter_map(|rec| match rec {
                            Record::Ready(id) => Some(id),
                            // DUE needs nothing more: it woke the master, whose next
                            // tick recycles.
                            Record::Due(_) | Record::Unknown => None,
                        })
                        .collect();
                    for id in ready {
                        self.feed(Event::Ready(id));
                    }
                }
            }
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

    /// Fork a worker into slot `id`: the answer to [`Action::Spawn`].
    fn spawn(&mut self, id: WorkerId) -> Event {
        let Some(slot) = self.shm.slot(id) else {
            return Event::SpawnFailed {
                id,
                error: format!("no slot {}", id.get()),
            };
        };
        slot.reset_for_spawn(shm::epoch_secs());
        match crate::python::fork() {
            Ok(ForkResult::Child) => {
                let code = self.worker_child(id);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                slot.set_pid(child);
                Event::Spawned { id, pid: child }
            }
            Err(e) => Event::SpawnFailed {
                id,
                error: e.to_string(),
            },
        }
    }

    fn worker_child(&self, id: WorkerId) -> i32 {
        // Die with the master: no orphan workers.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        if nix::unistd::getppid() != self.shm.master_pid() {
            return notify::EXIT_OK;
        }
        let _ = crate::hooks::run(self.config, rsgi_proto::hooks::Phase::PostFork);
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

    /// Re-execute the master binary for a reload in preload mode (see module docs),
    /// passing down the workers in `keep`. Returns only if nothing was committed yet.
    fn prepare_and_exec(
        &self,
        keep: &[(WorkerId, Pid)],
    ) -> Result<std::convert::Infallible, String> {
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

        // Move the other fds that must survive to a high number first, so placing the
        // listeners at 3.. cannot clobber them.
        let high = |fd: RawFd| -> Result<RawFd, String> {
            nix::fcntl::fcntl(
                // SAFETY: fd is open (owned by this process) for the duration of the call.
                unsafe { BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_DUPFD(1000),
            )
            .map_err(|e| format!("dup {fd}: {e}"))
        };
        // The listeners are placed at 3.. below (rsgi_os::fds::place_at lifts them
        // first itself); the counters and the notify socket keep high numbers.
        let listener_fds: Vec<RawFd> = self
            .sockets
            .iter()
            .map(|s| s.listener.as_raw_fd())
            .collect();
        let shm_fd = high(self.shm.fd().as_raw_fd())?;
        let notify_fd = match self.notifier.emperor_fd() {
            Some(fd) => Some(high(fd)?),
            None => None,
        };
        let names: Vec<&str> = self.sockets.iter().map(|s| s.protocol.as_str()).collect();
        let old: Vec<String> = keep
            .iter()
            .map(|(id, pid)| format!("{}:{pid}", id.get()))
            .collect();
        // From here on the process is committed: fds 3.. are overwritten.
        if rsgi_os::fds::place_at(&listener_fds, 3).is_err() {
            std::process::exit(notify::EXIT_OS);
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
        // Back to the starting directory, as uWSGI's reload: relative arguments
        // (`--ini app.ini`) and paths read the same in the new image.
        if let Some(dir) = crate::process::START_DIR.get() {
            let _ = std::env::set_current_dir(dir);
        }
        let err = nix::unistd::execv(&exe_c, &args).err();
        // exec failed after fds 3.. were overwritten: the workers die with us
        // (PDEATHSIG) and a supervisor restarts us.
        self.log(format_args!("execv failed: {err:?}"));
        std::process::exit(notify::EXIT_OS);
    }

    fn serve_stats(&self) {
        let Some(stats) = &self.stats else { return };
        let sockets = self.sample_sockets();
        let mut workers = Vec::new();
        for p in &self.state.workers {
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
