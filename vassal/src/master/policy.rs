//! The master's policy as a pure transition function.
//!
//! [`step`] takes the master's [`State`], one [`Event`], the time `now` and the
//! [`Settings`], updates the state and returns the [`Action`]s the shell
//! (`master.rs`) must perform, in order. It never reads a clock (time comes in as
//! `now`, and the shared counters' clock as [`Event::Tick`]'s `now_ms`), never makes a
//! syscall, never forks, so every rule is a row in a table test.
//!
//! # Contract with the shell
//!
//! - Perform actions in order. [`Action::Spawn`] is answered with [`Event::Spawned`]
//!   or [`Event::SpawnFailed`] for that slot, [`Action::SampleQueues`] with
//!   [`Event::QueuesSampled`], a failed [`Action::ReExec`] with [`Event::ReExecFailed`],
//!   each fed back at once, before the actions that follow it. `step` asks for one
//!   spawn at a time, as its last action; the answer asks for the next, and the rest
//!   of the tick runs in the answer to the last one.
//! - Feed one [`Event::Tick`] (with fresh samples of the shared counters) on every
//!   wake-up, after the events that woke it: the checks (harakiri, recycling, stop
//!   deadline, reload deadline, spawning what is missing) run there. Wake up no later
//!   than [`State::next_wakeup`].
//! - After [`Action::Exit`], return: every worker has exited.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rsgi_proto::config::VassalConfig;
use rsgi_proto::notify::{Message, EXIT_APP_LOAD};

use crate::master_pipe::recycle_limit;
use crate::shm::{RespawnCause, WorkerId};

use super::cheaper::{Cheaper, Decision, Spare};
use super::touch::Touch;

/// How long a new worker may take to become ready during a reload.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(60);
/// How long a fast stop waits before SIGKILL.
pub const FAST_STOP_GRACE: Duration = Duration::from_secs(3);
/// How often the master wakes without an event: harakiri, recycling and memory
/// checks, and the accept queues.
pub const TICK: Duration = Duration::from_secs(1);
/// How often a full accept queue is logged while it stays full (each sample counts).
pub const QUEUE_FULL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Between SIGUSR2 (stack dump) and SIGKILL for harakiri.
pub const HARAKIRI_DUMP_GRACE: Duration = Duration::from_millis(300);
/// The delay after a worker's first failed start.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The most a failing worker start is delayed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the master waits before forking again after a failed fork.
pub const FORK_RETRY: Duration = Duration::from_secs(1);

pub use rsgi_proto::backoff::backoff;

/// The delay before a worker start is retried after `failures` failed starts in a
/// row (at least 1): 0.1 s, 0.2 s, ... up to 10 s.
fn startup_backoff(failures: u32) -> Duration {
    backoff(BACKOFF_BASE, MAX_BACKOFF, failures.saturating_sub(1))
}

/// The rules, from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `processes`: how many ready workers the current generation keeps.
    pub workers: usize,
    /// Slots in the shared counters (ids `1..=slots`).
    pub slots: usize,
    /// `lazy-apps`: each worker imports the app (a reload forks a new generation);
    /// otherwise the master does (a reload re-executes the master).
    pub lazy_apps: bool,
    /// `reload-mercy`: how long a graceful stop waits before SIGKILL.
    pub reload_mercy: Duration,
    /// `harakiri`, in ms.
    pub harakiri_ms: Option<u64>,
    /// `reload-on-rss`, in bytes.
    pub rss_limit: Option<u64>,
    /// `max-worker-lifetime`.
    pub lifetime: Option<Duration>,
    /// `max-requests`.
    pub max_requests: Option<u64>,
    /// `max-requests-delta`.
    pub max_requests_delta: u64,
    /// `cheaper`: the adaptive worker count (`workers` is then the most).
    pub cheaper: Option<Cheaper>,
    /// Attached daemons exist: a stop stops them, a reload that keeps the master's
    /// image restarts them ([`Action::StopDaemons`], [`Action::RestartDaemons`]).
    pub daemons: bool,
}

impl Settings {
    /// The settings of `config`, with `slots` slots of shared counters.
    pub fn new(config: &VassalConfig, slots: usize) -> Settings {
        Settings {
            workers: config.processes.max(1) as usize,
            slots,
            lazy_apps: config.lazy_apps,
            reload_mercy: Duration::from_secs(config.reload_mercy),
            harakiri_ms: config.harakiri.map(|h| u64::from(h) * 1000),
            rss_limit: config.reload_on_rss.map(|mb| mb * 1024 * 1024),
            lifetime: config.max_worker_lifetime.map(Duration::from_secs),
            max_requests: config.max_requests,
            max_requests_delta: config.max_requests_delta,
            daemons: !config.daemons.is_empty(),
            cheaper: cheaper_of(config),
        }
    }
}

/// The `cheaper` settings of `config`, if it has them: `cheaper` is kept below
/// `processes` (at most `processes - 1`, as uWSGI needs room to add one), and
/// `cheaper-initial` between the two.
fn cheaper_of(config: &VassalConfig) -> Option<Cheaper> {
    let max = config.processes.max(1) as usize;
    let min = (config.cheaper as usize).min(max.saturating_sub(1));
    if min == 0 {
        return None;
    }
    let initial = config
        .cheaper_initial
        .map_or(min, |i| i as usize)
        .clamp(min, max);
    Some(Cheaper {
        min,
        initial,
        step: (config.cheaper_step as usize).max(1),
        overload: config.cheaper_overload.max(1),
    })
}

/// One worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Its slot ("worker N" in the stats).
    pub id: WorkerId,
    /// Its process.
    pub pid: Pid,
    /// The generation it belongs to (0: adopted across a re-exec).
    pub generation: u64,
    /// When it was forked.
    pub spawned: Instant,
    /// It accepts (its READY record arrived).
    pub ready: bool,
    /// Being replaced for this reason; stopped once its replacement accepts.
    pub replace: Option<RespawnCause>,
    /// When it was told to stop.
    pub stopping_since: Option<Instant>,
    /// Harakiri: when the stack dump was asked for (SIGKILL follows).
    pub harakiri_at: Option<Instant>,
    /// Whether SIGKILL was sent for harakiri.
    pub killed: bool,
}

/// A reload in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// The generation serving before the reload.
    pub previous: u64,
    /// When the new generation must accept by.
    pub deadline: Instant,
}

/// How the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopping {
    /// TERM (finish the requests) rather than INT/QUIT.
    pub graceful: bool,
    /// When the workers still alive get SIGKILL.
    pub deadline: Instant,
    /// SIGKILL was sent.
    pub killed: bool,
}

/// Everything the master knows about its workers.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The worker processes alive (forked and not yet reaped).
    pub workers: Vec<Worker>,
    /// The serving generation (new workers belong to it).
    pub generation: u64,
    /// A reload in progress.
    pub reload: Option<Reload>,
    /// A stop in progress.
    pub stopping: Option<Stopping>,
    /// Workers in a row that died before they were ever ready.
    pub startup_failures: u32,
    /// No spawn before this instant (backoff, fork retry).
    pub next_spawn: Option<Instant>,
    /// READY was sent to the supervisor.
    pub announced_ready: bool,
    /// Workers can be forked: the app is imported in the master, or `lazy-apps`.
    pub can_spawn: bool,
    /// A HUP arrived in preload mode: re-exec as soon as it is safe.
    pub reexec_pending: bool,
    /// Slots of workers that died (crash, harakiri), for their replacements: a slot is
    /// "worker N" in the stats, so its history (`harakiri_count`, `respawn_count`)
    /// stays with one id, as in uWSGI.
    pub reuse_slots: Vec<WorkerId>,
    /// When the accept queues were last sampled.
    pub queues_checked: Option<Instant>,
    /// When a full accept queue was last logged.
    pub queue_full_logged: Option<Instant>,
    /// A chain reload in progress (`touch-chain-reload`): the workers still to replace,
    /// one at a time, each once the previous one's replacement accepts.
    pub chain: Option<Vec<Pid>>,
    /// How many workers the current generation keeps: `processes`, or with `cheaper`
    /// what the algorithm decided (between `cheaper` and `processes`).
    pub target: usize,
    /// The cheaper algorithm's memory.
    pub spare: Spare,
    /// When the cheaper algorithm last ran (once per [`TICK`]).
    pub cheaper_checked: Option<Instant>,
}

impl State {
    /// The state at start: generation 1, no worker; workers can be forked at once in
    /// lazy mode, else after [`Event::AppLoaded`].
    pub fn new(settings: &Settings) -> State {
        State {
            workers: Vec::new(),
            generation: 1,
            reload: None,
            stopping: None,
            startup_failures: 0,
            next_spawn: None,
            announced_ready: false,
            can_spawn: settings.lazy_apps,
            reexec_pending: false,
            reuse_slots: Vec::new(),
            queues_checked: None,
            queue_full_logged: None,
            chain: None,
            target: settings.cheaper.map_or(settings.workers, |c| c.initial),
            spare: Spare::default(),
            cheaper_checked: None,
        }
    }

    /// When the shell must wake up at the latest (a [`Event::Tick`] then): the next
    /// [`TICK`], a spawn backoff's end, the stop or reload deadline, a harakiri kill.
    pub fn next_wakeup(&self, now: Instant) -> Instant {
        let mut wake = now + TICK;
        // A backoff that is over has done its work (the tick spawned, or nothing
        // was missing): waking for it again would spin.
        if let Some(t) = self.next_spawn.filter(|t| *t > now) {
            wake = wake.min(t);
        }
        if let Some(s) = self.stopping {
            if !s.killed {
                wake = wake.min(s.deadline);
            }
        }
        // A stop ends a reload's checks: its deadline no longer matters.
        if let (Some(r), None) = (&self.reload, self.stopping) {
            wake = wake.min(r.deadline);
        }
        // While stopping, the stop's deadline kills what is left.
        for w in self.workers.iter().filter(|_| self.stopping.is_none()) {
            if let (Some(at), false) = (w.harakiri_at, w.killed) {
                wake = wake.min(at + HARAKIRI_DUMP_GRACE);
            }
        }
        wake
    }

    /// The workers of the current generation that count towards `processes`.
    fn active(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(move |w| {
            w.generation == self.generation
                && w.replace.is_none()
                && w.stopping_since.is_none()
                && w.harakiri_at.is_none()
        })
    }
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// One worker's shared counters, read by the shell for [`Event::Tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The worker's slot.
    pub id: WorkerId,
    /// Requests served since it was forked.
    pub requests: u64,
    /// When its oldest running request started (the shared counters' ms clock).
    pub oldest_request_start_ms: Option<u64>,
    /// Its resident memory in bytes, when `reload-on-rss` is set and it was read.
    pub rss: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// After a re-exec: the previous image's workers, still our children and serving.
    Adopt(Vec<(WorkerId, Pid)>),
    /// The app is imported in the master: workers can be forked.
    AppLoaded,
    /// The app failed to import in a re-executed master whose adopted workers serve
    /// (the shell treats a failure without workers as fatal).
    AppLoadFailed(String),
    /// TERM, INT, QUIT, HUP or USR1 (others are ignored).
    Signal(Signal),
    /// A worker process was reaped.
    Exited {
        /// Its pid.
        pid: Pid,
        /// How it ended.
        status: ExitStatus,
    },
    /// The worker in this slot wrote READY: it accepts.
    Ready(u32),
    /// The emperor's notify socket reached EOF: the emperor is gone.
    EmperorGone,
    /// A wake-up: every periodic check runs here.
    Tick {
        /// The shared counters' clock (`shm::monotonic_ms`), for request start times.
        now_ms: u64,
        /// The counters of the live workers.
        samples: Vec<Sample>,
    },
    /// Answer to [`Action::Spawn`]: the fork worked.
    Spawned {
        /// The slot.
        id: WorkerId,
        /// The child.
        pid: Pid,
    },
    /// Answer to [`Action::Spawn`]: the fork failed.
    SpawnFailed {
        /// The slot.
        id: WorkerId,
        /// Why.
        error: String,
    },
    /// Answer to [`Action::SampleQueues`]: the sockets whose accept queue is full, as
    /// `name (queue/max)`.
    QueuesSampled(Vec<String>),
    /// Answer to [`Action::ReExec`]: the master could not re-execute itself.
    ReExecFailed(String),
    /// A watched file changed (`touch-reload` and friends): the file, and what it asks.
    Touched(Touch, String),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Log one line (prefixed with `rsgi master PID: `).
    Log(String),
    /// Send these to the supervisor's notify socket.
    Notify(Vec<Message>),
    /// Send `RELOADING=1` and `MONOTONIC_USEC=` (the shell reads that clock).
    NotifyReloading,
    /// Send `sig` to a worker.
    Signal {
        /// The worker.
        pid: Pid,
        /// The signal.
        sig: Signal,
    },
    /// Reopen the log file (USR1).
    ReopenLog,
    /// Rotate the log file now (`touch-logrotate`): rename it, open a new one.
    RotateLog,
    /// Fork a worker into slot `id` for generation `generation`; answer with
    /// [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn {
        /// The slot.
        id: WorkerId,
        /// Its generation.
        generation: u64,
    },
    /// The worker in this slot is gone (stats).
    MarkDead(WorkerId),
    /// Count a respawn of this slot for `cause`.
    CountRespawn {
        /// The slot.
        id: WorkerId,
        /// Why.
        cause: RespawnCause,
    },
    /// Count a finished reload.
    CountReload,
    /// Count a failed reload.
    CountReloadFailed,
    /// Count this many full accept queues (`listen_queue_errors`).
    CountListenQueueErrors(usize),
    /// Sample the accept queues; answer with [`Event::QueuesSampled`].
    SampleQueues,
    /// Re-execute the master for a reload, passing down these running workers;
    /// answer a failure with [`Event::ReExecFailed`].
    ReExec(Vec<(WorkerId, Pid)>),
    /// The vassal stops: stop the attached daemons.
    StopDaemons,
    /// A reload without a re-exec (lazy-apps): restart the attached daemons, as
    /// uWSGI's reload (a re-exec) does. (A re-exec stops them itself.)
    RestartDaemons,
    /// Every worker has exited after a stop: leave.
    Exit,
}

/// Apply `event` at `now` to `state`; return what the shell must do, in order.
pub fn step(state: &mut State, settings: &Settings, event: Event, now: Instant) -> Vec<Action> {
    let mut m = Step {
        s: state,
        cfg: settings,
        now,
        out: Vec::new(),
    };
    m.event(event);
    m.out
}

/// One step in progress: the state, and the actions so far.
struct Step<'a> {
    s: &'a mut State,
    cfg: &'a Settings,
    now: Instant,
    out: Vec<Action>,
}

impl Step<'_> {
    fn log(&mut self, line: String) {
        self.out.push(Action::Log(line));
    }

    fn signal(&mut self, pid: Pid, sig: Signal) {
        self.out.push(Action::Signal { pid, sig });
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Adopt(list) => self.adopt(list),
            Event::AppLoaded => self.s.can_spawn = true,
            Event::AppLoadFailed(error) => self.app_load_failed(&error),
            Event::Signal(sig) => self.signal_received(sig),
            Event::Exited { pid, status } => self.exited(pid, status),
            Event::Ready(id) => {
                if let Some(w) = self.s.workers.iter_mut().find(|w| w.id.get() == id) {
                    w.ready = true;
                    self.s.startup_failures = 0;
                    self.s.next_spawn = None;
                }
            }
            Event::EmperorGone => {
                if self.s.stopping.is_none() {
                    self.log("the emperor is gone: stopping".into());
                    self.begin_stop(false);
                }
            }
            Event::Tick { now_ms, samples } => self.tick(now_ms, &samples),
            Event::Spawned { id, pid } => {
                self.s.workers.push(Worker {
                    id,
                    pid,
                    generation: self.s.generation,
                    spawned: self.now,
                    ready: false,
                    replace: None,
                    stopping_since: None,
                    harakiri_at: None,
                    killed: false,
                });
                self.settle();
            }
            Event::SpawnFailed { error, .. } => {
                self.log(format!(
                    "fork failed: {error}; retrying in {} s",
                    FORK_RETRY.as_secs()
                ));
                self.s.next_spawn = Some(self.now + FORK_RETRY);
                self.settle();
            }
            Event::QueuesSampled(full) => self.queues_sampled(full),
            Event::Touched(touch, file) => self.touched(touch, &file),
            Event::ReExecFailed(error) => {
                self.log(format!(
                    "reload failed: cannot re-execute the master: {error}; the workers keep serving"
                ));
                self.out.push(Action::CountReloadFailed);
                self.out.push(Action::Notify(vec![
                    Message::Ready,
                    Message::Status("reload failed: cannot re-execute".into()),
                ]));
            }
        }
    }

    /// After a re-exec: the workers of the previous image are still our children.
    fn adopt(&mut self, list: Vec<(WorkerId, Pid)>) {
        for (id, pid) in list {
            if usize::try_from(id.get()).map_or(true, |i| i > self.cfg.slots) {
                continue;
            }
            self.s.workers.push(Worker {
                id,
                pid,
                generation: 0,
                spawned: self.now,
                ready: true,
                replace: None,
                stopping_since: None,
                harakiri_at: None,
                killed: false,
            });
        }
        if !self.s.workers.is_empty() {
            self.s.reload = Some(Reload {
                previous: 0,
                deadline: self.now + RELOAD_DEADLINE,
            });
            self.s.announced_ready = true;
            self.log(format!(
                "re-executed for a reload; {} old worker(s) serve until the new ones accept",
                self.s.workers.len()
            ));
        }
    }

    /// The re-executed master cannot import the new code: the adopted workers go on.
    fn app_load_failed(&mut self, error: &str) {
        self.log(format!(
            "reload failed: the new code does not load; the running workers keep serving:\n{error}"
        ));
        self.out.push(Action::CountReloadFailed);
        // The reload is over: the adopted workers (generation 0) stay the serving
        // generation, and the next HUP may try again (it re-executes once more)
        // instead of being refused as "already in progress".
        self.s.reload = None;
        self.s.generation = 0;
        self.out.push(Action::Notify(vec![
            Message::Ready,
            Message::Status("reload failed: the app does not load".into()),
        ]));
    }

    fn signal_received(&mut self, sig: Signal) {
        match sig {
            Signal::SIGTERM => {
                self.log("SIGTERM: graceful stop".into());
                self.begin_stop(true);
            }
            Signal::SIGINT | Signal::SIGQUIT => {
                self.log(format!("{sig}: fast stop"));
                self.begin_stop(false);
            }
            Signal::SIGHUP => self.begin_reload("SIGHUP", false),
            Signal::SIGUSR1 => {
                self.out.push(Action::ReopenLog);
                let pids: Vec<Pid> = self.s.workers.iter().map(|w| w.pid).collect();
                for pid in pids {
                    self.signal(pid, Signal::SIGUSR1);
                }
            }
            _ => {}
        }
    }

    fn begin_stop(&mut self, graceful: bool) {
        if let Some(s) = self.s.stopping {
            if s.graceful && !graceful {
                // A fast stop overrides a graceful one in progress.
                self.s.stopping = None;
            } else {
                return;
            }
        }
        self.out.push(Action::Notify(vec![Message::Stopping]));
        if self.cfg.daemons {
            self.out.push(Action::StopDaemons);
        }
        let (sig, grace) = if graceful {
            (Signal::SIGTERM, self.cfg.reload_mercy)
        } else {
            (Signal::SIGINT, FAST_STOP_GRACE)
        };
        let pids: Vec<Pid> = self.s.workers.iter().map(|w| w.pid).collect();
        for pid in pids {
            self.signal(pid, sig);
        }
        self.s.stopping = Some(Stopping {
            graceful,
            deadline: self.now + grace,
            killed: false,
        });
    }

    /// A watched file changed: what its option asks.
    fn touched(&mut self, touch: Touch, file: &str) {
        let why = format!("{} {file} changed", touch.option());
        match touch {
            Touch::Reload => self.begin_reload(&why, false),
            Touch::WorkersReload => self.begin_reload(&why, true),
            Touch::LogReopen => {
                self.log(format!("{why}: reopening the log"));
                self.signal_received(Signal::SIGUSR1);
            }
            Touch::LogRotate => {
                // The master renames the file and opens a new one; the workers then
                // reopen the path, as on SIGUSR1.
                self.log(format!("{why}: rotating the log"));
                self.out.push(Action::RotateLog);
                let pids: Vec<Pid> = self.s.workers.iter().map(|w| w.pid).collect();
                for pid in pids {
                    self.signal(pid, Signal::SIGUSR1);
                }
            }
            Touch::ChainReload => self.begin_chain(&why),
        }
    }

    /// A graceful reload for `why`: a new generation of workers (lazy mode, or
    /// `workers_only`: the master keeps its image) or a re-exec of the master.
    fn begin_reload(&mut self, why: &str, workers_only: bool) {
        if self.s.stopping.is_some() {
            return;
        }
        if self.s.reload.is_some() {
            self.log(format!("{why}: a reload is already in progress"));
            return;
        }
        let what = if workers_only {
            "workers reload"
        } else {
            "graceful reload"
        };
        self.log(format!("{why}: {what}"));
        self.out.push(Action::NotifyReloading);
        if self.cfg.daemons && self.cfg.lazy_apps && !workers_only {
            self.out.push(Action::RestartDaemons);
        }
        if self.cfg.lazy_apps || workers_only {
            let previous = self.s.generation;
            self.s.generation += 1;
            self.s.reload = Some(Reload {
                previous,
                deadline: self.now + RELOAD_DEADLINE,
            });
            self.s.next_spawn = None;
        } else {
            self.s.reexec_pending = true;
        }
    }

    /// `touch-chain-reload`: replace the current workers one at a time.
    fn begin_chain(&mut self, why: &str) {
        if self.s.stopping.is_some() {
            return;
        }
        if self.s.reload.is_some() || self.s.chain.is_some() {
            self.log(format!("{why}: a reload is already in progress"));
            return;
        }
        let pids: Vec<Pid> = self.s.active().map(|w| w.pid).collect();
        self.log(format!(
            "{why}: chain reload of {} worker(s), one at a time",
            pids.len()
        ));
        self.s.chain = Some(pids);
        self.settle();
    }

    /// The next step of a chain reload: while no chained worker awaits its replacement,
    /// mark the next one for replacement (the spawn and the stop follow the recycling
    /// rules: the replacement first, the old one stopped once it accepts).
    fn chain_next(&mut self) {
        let Some(chain) = &mut self.s.chain else {
            return;
        };
        let in_progress = self
            .s
            .workers
            .iter()
            .any(|w| w.replace == Some(RespawnCause::Reload) && w.stopping_since.is_none());
        if in_progress {
            return;
        }
        let generation = self.s.generation;
        while !chain.is_empty() {
            let pid = chain.remove(0);
            let Some(w) = self.s.workers.iter_mut().find(|w| {
                w.pid == pid
                    && w.generation == generation
                    && w.replace.is_none()
                    && w.stopping_since.is_none()
                    && w.harakiri_at.is_none()
            }) else {
                continue;
            };
            w.replace = Some(RespawnCause::Reload);
            let (id, left) = (w.id, chain.len());
            self.out.push(Action::CountRespawn {
                id,
                cause: RespawnCause::Reload,
            });
            self.log(format!(
                "chain reload: replacing worker {} (pid {pid}); {left} left after it",
                id.get()
            ));
            return;
        }
        self.s.chain = None;
        self.log("chain reload done".into());
    }

    /// Give up a reload: kill the new generation, go back to `previous`.
    fn abort_reload(&mut self, previous: u64) {
        let failed = self.s.generation;
        let now = self.now;
        let mut kill = Vec::new();
        for w in &mut self.s.workers {
            if w.generation == failed && w.stopping_since.is_none() {
                kill.push(w.pid);
                w.stopping_since = Some(now);
            }
        }
        for pid in kill {
            self.signal(pid, Signal::SIGKILL);
        }
        self.s.generation = previous;
        self.s.reload = None;
        self.out.push(Action::CountReloadFailed);
        self.out.push(Action::Notify(vec![
            Message::Ready,
            Message::Status("reload failed; the previous workers keep serving".into()),
        ]));
        // The failing code should not be retried in a loop by respawns of the old
        // generation: they run the old, working code.
        self.s.next_spawn = None;
    }

    fn exited(&mut self, pid: Pid, status: ExitStatus) {
        let Some(index) = self.s.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        let w = self.s.workers.remove(index);
        self.out.push(Action::MarkDead(w.id));
        if self.s.stopping.is_some() || w.stopping_since.is_some() {
            // Stopping, or retired on purpose (recycling, reload): its replacement
            // already runs.
            return;
        }
        let id = w.id.get();
        if w.generation == self.s.generation && (w.ready || w.harakiri_at.is_some()) {
            self.s.reuse_slots.push(w.id);
        }
        if w.harakiri_at.is_some() {
            self.log(format!(
                "worker {id} (pid {pid}) killed by harakiri; respawning"
            ));
            return;
        }
        // A new-generation worker died before accepting during a reload: the reload
        // failed; keep the old generation.
        if let Some(reload) = self.s.reload {
            if w.generation == self.s.generation && !w.ready {
                self.log(format!(
                    "reload failed: new worker {id} (pid {pid}) exited with {status} before it \
                     accepted (its error is above); the previous workers keep serving"
                ));
                self.abort_reload(reload.previous);
                return;
            }
        }
        if !w.ready {
            self.s.startup_failures += 1;
            let delay = startup_backoff(self.s.startup_failures);
            self.s.next_spawn = Some(self.now + delay);
            let hint = if status == ExitStatus::Code(EXIT_APP_LOAD) {
                ": the app failed to import (traceback above)"
            } else {
                ""
            };
            self.log(format!(
                "worker {id} (pid {pid}) exited with {status} before it accepted{hint}; \
                 retrying in {:.1} s (attempt {})",
                delay.as_secs_f64(),
                self.s.startup_failures
            ));
            return;
        }
        self.out.push(Action::CountRespawn {
            id: w.id,
            cause: RespawnCause::Crash,
        });
        if !self.s.can_spawn {
            self.log(format!(
                "worker {id} (pid {pid}) died with {status}; it cannot be replaced until the app \
                 loads again: fix it and send SIGHUP"
            ));
            return;
        }
        self.log(format!(
            "worker {id} (pid {pid}) died with {status}; respawning"
        ));
    }

    fn tick(&mut self, now_ms: u64, samples: &[Sample]) {
        if let Some(stop) = self.s.stopping {
            if !stop.killed && self.now >= stop.deadline {
                self.log(format!(
                    "stop deadline passed: killing {} worker(s)",
                    self.s.workers.len()
                ));
                let pids: Vec<Pid> = self.s.workers.iter().map(|w| w.pid).collect();
                for pid in pids {
                    self.signal(pid, Signal::SIGKILL);
                }
                if let Some(s) = &mut self.s.stopping {
                    s.killed = true;
                }
            }
            self.finish();
        } else {
            self.check_workers(now_ms, samples);
            self.cheaper_cycle(samples);
            if self.s.queues_checked.is_none_or(|t| self.now >= t + TICK) {
                self.s.queues_checked = Some(self.now);
                self.out.push(Action::SampleQueues);
            }
            self.settle();
        }
    }

    /// The end of a tick (after the spawns it asked for): leave once every worker is
    /// gone after a stop; re-execute for a pending reload.
    fn finish(&mut self) {
        if self.s.stopping.is_some() && self.s.workers.is_empty() {
            self.log("every worker has exited; bye".into());
            self.out.push(Action::Exit);
            return;
        }
        if self.s.reexec_pending && self.s.stopping.is_none() {
            self.s.reexec_pending = false;
            let keep = self
                .s
                .workers
                .iter()
                .filter(|w| w.stopping_since.is_none())
                .map(|w| (w.id, w.pid))
                .collect();
            self.out.push(Action::ReExec(keep));
        }
    }

    /// Harakiri, recycling and memory checks.
    fn check_workers(&mut self, now_ms: u64, samples: &[Sample]) {
        let now = self.now;
        let cfg = self.cfg;
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for w in &mut self.s.workers {
            let Some(sample) = samples.iter().find(|s| s.id == w.id) else {
                continue;
            };
            if let Some(at) = w.harakiri_at {
                if !w.killed && now >= at + HARAKIRI_DUMP_GRACE {
                    out.push(Action::Signal {
                        pid: w.pid,
                        sig: Signal::SIGKILL,
                    });
                    w.killed = true;
                }
                continue;
            }
            if let (Some(limit), Some(start)) = (cfg.harakiri_ms, sample.oldest_request_start_ms) {
                let running = now_ms.saturating_sub(start);
                if running > limit {
                    notes.push(format!(
                        "worker {} (pid {}): harakiri: a request has run {:.1} s (limit {} s); \
                         its Python stacks follow, then it is killed",
                        w.id.get(),
                        w.pid,
                        running as f64 / 1000.0,
                        limit / 1000
                    ));
                    out.push(Action::Signal {
                        pid: w.pid,
                        sig: Signal::SIGUSR2,
                    });
                    w.harakiri_at = Some(now);
                    out.push(Action::CountRespawn {
                        id: w.id,
                        cause: RespawnCause::Harakiri,
                    });
                    continue;
                }
            }
            if w.replace.is_some() || w.stopping_since.is_some() || !w.ready {
                continue;
            }
            let cause = if recycle_limit(cfg.max_requests, cfg.max_requests_delta, w.id)
                .is_some_and(|m| sample.requests >= m)
            {
                Some(RespawnCause::MaxRequests)
            } else if cfg
                .lifetime
                .is_some_and(|l| now.saturating_duration_since(w.spawned) >= l)
            {
                Some(RespawnCause::Lifetime)
            } else if let Some(limit) = cfg.rss_limit {
                sample
                    .rss
                    .filter(|rss| *rss > limit)
                    .map(|_| RespawnCause::Rss)
            } else {
                None
            };
            if let Some(cause) = cause {
                notes.push(format!(
                    "worker {} (pid {}): recycling ({}); its replacement starts first",
                    w.id.get(),
                    w.pid,
                    cause.as_str()
                ));
                out.push(Action::CountRespawn { id: w.id, cause });
                w.replace = Some(cause);
            }
        }
        self.out.append(&mut out);
        for n in notes {
            self.log(n);
        }
    }

    /// `cheaper`: once per [`TICK`], while the current generation is steady (no reload,
    /// no chain reload, every wanted worker accepting), let the spare algorithm add
    /// workers (up to `processes`) or retire an idle one (down to `cheaper`).
    fn cheaper_cycle(&mut self, samples: &[Sample]) {
        let Some(c) = self.cfg.cheaper else {
            return;
        };
        if self.s.reload.is_some() || self.s.chain.is_some() || self.s.reexec_pending {
            return;
        }
        if self.s.cheaper_checked.is_some_and(|t| self.now < t + TICK) {
            return;
        }
        self.s.cheaper_checked = Some(self.now);
        let running: Vec<(WorkerId, Pid, bool)> = self
            .s
            .active()
            .filter(|w| w.ready)
            .map(|w| {
                let busy = samples
                    .iter()
                    .any(|s| s.id == w.id && s.oldest_request_start_ms.is_some());
                (w.id, w.pid, busy)
            })
            .collect();
        if running.len() != self.s.target || self.s.active().count() != self.s.target {
            return;
        }
        let busy = running.iter().filter(|r| r.2).count();
        match self
            .s
            .spare
            .cycle(&c, running.len(), busy, self.cfg.workers)
        {
            Decision::Keep => {}
            Decision::Add(n) => {
                self.s.target += n;
                self.log(format!(
                    "cheaper: all {} worker(s) busy for {} s; adding {n} (now {} of at most {})",
                    running.len(),
                    c.overload + 1,
                    self.s.target,
                    self.cfg.workers
                ));
            }
            Decision::RetireOne => {
                // The idle worker in the highest slot, as uWSGI picks it.
                let Some(&(id, pid, _)) = running.iter().filter(|r| !r.2).max_by_key(|r| r.0)
                else {
                    return;
                };
                if let Some(w) = self.s.workers.iter_mut().find(|w| w.pid == pid) {
                    w.stopping_since = Some(self.now);
                }
                self.s.target -= 1;
                self.signal(pid, Signal::SIGTERM);
                self.log(format!(
                    "cheaper: idle; retiring worker {} (pid {pid}) (now {} of at least {})",
                    id.get(),
                    self.s.target,
                    c.min
                ));
            }
        }
    }

    /// A full accept queue is counted (`listen_queue_errors`, every sample) and logged
    /// (at most every [`QUEUE_FULL_LOG_EVERY`]).
    fn queues_sampled(&mut self, full: Vec<String>) {
        if full.is_empty() {
            return;
        }
        self.out.push(Action::CountListenQueueErrors(full.len()));
        if self
            .s
            .queue_full_logged
            .is_none_or(|t| self.now >= t + QUEUE_FULL_LOG_EVERY)
        {
            self.s.queue_full_logged = Some(self.now);
            self.log(format!(
                "listen queue of socket {} full: new connections are refused (nginx answers \
                 502); the workers are too few or too slow, or `listen` is too small (the \
                 kernel caps it at net.core.somaxconn)",
                full.join(", ")
            ));
        }
    }

    /// The slot for the next worker: a dead worker's slot first, else the lowest free.
    fn free_slot(&mut self) -> Option<WorkerId> {
        let workers = &self.s.workers;
        let free = |id: &WorkerId| !workers.iter().any(|w| w.id == *id);
        let id = match self.s.reuse_slots.iter().position(free) {
            Some(i) => Some(self.s.reuse_slots.swap_remove(i)),
            None => (1..=self.cfg.slots)
                .filter_map(|i| u32::try_from(i).ok().and_then(WorkerId::new))
                .find(free),
        }?;
        self.s.reuse_slots.retain(|r| *r != id);
        Some(id)
    }

    /// Spawn what is missing, one at a time: the answer to [`Action::Spawn`] settles
    /// again, so the rest of the tick runs once every missing worker is forked. Then
    /// stop the workers whose replacements accept, finish or give up a reload,
    /// announce READY once, and [`Self::finish`] the tick.
    fn settle(&mut self) {
        if self.s.stopping.is_none() {
            self.chain_next();
        }
        let now = self.now;
        // A worker killed by harakiri still holds its place until it is gone (its
        // stack dump takes a moment); its replacement then takes its slot
        // (`reuse_slots`).
        let dying = self
            .s
            .workers
            .iter()
            .filter(|w| w.generation == self.s.generation && w.harakiri_at.is_some())
            .count();
        if self.s.can_spawn
            && self.s.active().count() + dying < self.s.target
            && self.s.next_spawn.is_none_or(|t| now >= t)
        {
            if let Some(id) = self.free_slot() {
                self.out.push(Action::Spawn {
                    id,
                    generation: self.s.generation,
                });
                return;
            }
        }
        let ready = self.s.active().filter(|w| w.ready).count();
        let workers = self.s.target;
        // Replacements accept: stop the workers they replace.
        if ready >= workers {
            let mut term = Vec::new();
            for w in &mut self.s.workers {
                if w.replace.is_some() && w.stopping_since.is_none() {
                    term.push(w.pid);
                    w.stopping_since = Some(now);
                }
            }
            for pid in term {
                self.signal(pid, Signal::SIGTERM);
            }
        }
        // A reload completes when the whole new generation accepts.
        if let Some(reload) = self.s.reload {
            if ready >= workers {
                let generation = self.s.generation;
                let mut old = Vec::new();
                for w in &mut self.s.workers {
                    if w.generation != generation && w.stopping_since.is_none() {
                        old.push((w.id, w.pid));
                        w.stopping_since = Some(now);
                    }
                }
                for (id, pid) in old {
                    self.out.push(Action::CountRespawn {
                        id,
                        cause: RespawnCause::Reload,
                    });
                    self.signal(pid, Signal::SIGTERM);
                }
                self.s.reload = None;
                self.out.push(Action::CountReload);
                self.log(format!("reload done: generation {generation} serves"));
                self.out.push(Action::Notify(vec![
                    Message::Ready,
                    Message::Status(format!("{workers} workers ready (reloaded)")),
                ]));
            } else if now >= reload.deadline {
                self.log(format!(
                    "reload failed: the new workers did not accept within {} s; \
                     the previous workers keep serving",
                    RELOAD_DEADLINE.as_secs()
                ));
                self.abort_reload(reload.previous);
            }
        }
        if !self.s.announced_ready && ready >= workers {
            self.s.announced_ready = true;
            self.log(format!("{workers} worker(s) ready"));
            self.out.push(Action::Notify(vec![
                Message::Ready,
                Message::Status(format!("{workers} workers ready")),
            ]));
        }
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::OnceLock;

    use super::*;

    /// The instant `secs` after a fixed origin.
    fn t(secs: f64) -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs_f64(secs)
    }

    fn id(n: u32) -> WorkerId {
        WorkerId::new(n).unwrap()
    }

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    /// Two workers, four slots, preloaded, harakiri 10 s, reload-mercy 5 s.
    fn settings() -> Settings {
        Settings {
            workers: 2,
            slots: 4,
            lazy_apps: false,
            reload_mercy: Duration::from_secs(5),
            harakiri_ms: Some(10_000),
            rss_limit: None,
            lifetime: None,
            max_requests: None,
            max_requests_delta: 0,
            daemons: false,
            cheaper: None,
        }
    }

    fn lazy() -> Settings {
        Settings {
            lazy_apps: true,
            ..settings()
        }
    }

    fn recycling() -> Settings {
        Settings {
            max_requests: Some(100),
            max_requests_delta: 10,
            lifetime: Some(Duration::from_secs(3600)),
            rss_limit: Some(200 << 20),
            ..settings()
        }
    }

    /// A ready worker of generation `gen` in slot `n` (pid `100 + n`), forked at 0.
    fn w(n: u32, gen: u64) -> Worker {
        Worker {
            id: id(n),
            pid: pid(100 + n as i32),
            generation: gen,
            spawned: t(0.0),
            ready: true,
            replace: None,
            stopping_since: None,
            harakiri_at: None,
            killed: false,
        }
    }

    fn starting(n: u32, gen: u64) -> Worker {
        Worker {
            ready: false,
            spawned: t(9.0),
            ..w(n, gen)
        }
    }

    fn replaced(n: u32, cause: RespawnCause) -> Worker {
        Worker {
            replace: Some(cause),
            ..w(n, 1)
        }
    }

    fn retiring(n: u32, gen: u64) -> Worker {
        Worker {
            stopping_since: Some(t(5.0)),
            ..w(n, gen)
        }
    }

    fn harakiri(n: u32, at: f64, killed: bool) -> Worker {
        Worker {
            harakiri_at: Some(t(at)),
            killed,
            ..w(n, 1)
        }
    }

    /// Serving generation 1 with `workers`, announced, queues sampled at 10.
    fn st(workers: Vec<Worker>) -> State {
        State {
            workers,
            can_spawn: true,
            announced_ready: true,
            queues_checked: Some(t(10.0)),
            ..State::new(&settings())
        }
    }

    /// The two workers serve (slots 1 and 2).
    fn serving() -> State {
        st(vec![w(1, 1), w(2, 1)])
    }

    /// Generation 2 started at 5 with a 60 s deadline; the old workers are `old`.
    fn reloading(workers: Vec<Worker>) -> State {
        State {
            generation: 2,
            reload: Some(Reload {
                previous: 1,
                deadline: t(65.0),
            }),
            ..st(workers)
        }
    }

    fn stopping(workers: Vec<Worker>, graceful: bool, deadline: f64, killed: bool) -> State {
        State {
            stopping: Some(Stopping {
                graceful,
                deadline: t(deadline),
                killed,
            }),
            ..st(workers)
        }
    }

    fn tick() -> Event {
        tick_with(vec![])
    }

    /// A tick at shared-counter time 100 s with these samples, and idle ones for the
    /// other slots.
    fn tick_with(samples: Vec<Sample>) -> Event {
        let mut all = samples;
        for n in 1..=4 {
            if !all.iter().any(|s| s.id == id(n)) {
                all.push(idle(n));
            }
        }
        Event::Tick {
            now_ms: 100_000,
            samples: all,
        }
    }

    fn idle(n: u32) -> Sample {
        Sample {
            id: id(n),
            requests: 0,
            oldest_request_start_ms: None,
            rss: Some(50 << 20),
        }
    }

    fn requests(n: u32, count: u64) -> Sample {
        Sample {
            requests: count,
            ..idle(n)
        }
    }

    /// A request in slot `n` that started `secs` ago (counters' clock at 100 s).
    fn running(n: u32, secs: f64) -> Sample {
        Sample {
            oldest_request_start_ms: Some(100_000 - (secs * 1000.0) as u64),
            ..idle(n)
        }
    }

    fn rss(n: u32, mb: u64) -> Sample {
        Sample {
            rss: Some(mb << 20),
            ..idle(n)
        }
    }

    fn exited(n: u32, code: i32) -> Event {
        Event::Exited {
            pid: pid(100 + n as i32),
            status: ExitStatus::Code(code),
        }
    }

    fn killed_by(n: u32, sig: Signal) -> Event {
        Event::Exited {
            pid: pid(100 + n as i32),
            status: ExitStatus::Signal(sig),
        }
    }

    fn log(s: &str) -> Action {
        Action::Log(s.into())
    }

    fn sig(n: u32, sig: Signal) -> Action {
        Action::Signal {
            pid: pid(100 + n as i32),
            sig,
        }
    }

    fn spawn(n: u32, generation: u64) -> Action {
        Action::Spawn {
            id: id(n),
            generation,
        }
    }

    fn respawn(n: u32, cause: RespawnCause) -> Action {
        Action::CountRespawn { id: id(n), cause }
    }

    fn dead(n: u32) -> Action {
        Action::MarkDead(id(n))
    }

    fn ready_status(status: &str) -> Action {
        Action::Notify(vec![Message::Ready, Message::Status(status.into())])
    }

    fn stopping_note() -> Action {
        Action::Notify(vec![Message::Stopping])
    }

    fn ids(state: &State) -> Vec<u32> {
        state.workers.iter().map(|w| w.id.get()).collect()
    }

    /// `row!(name: settings, state, event, now => [actions])`, optionally followed by
    /// `, |next| { more assertions on the next state }`. One `#[test]` per row.
    macro_rules! row {
        ($name:ident: $settings:expr, $state:expr, $event:expr, $now:expr => [$($a:expr),* $(,)?]
         $(, |$next:ident| $check:block)?) => {
            #[test]
            fn $name() {
                let mut state: State = $state;
                let actions = step(&mut state, &$settings, $event, t($now));
                assert_eq!(actions, vec![$($a),*], "actions");
                $( let $next = &state; $check )?
            }
        };
    }

    // --- Start-up ---
    row!(lazy_start_samples_the_queues_and_forks_slot_1:
        lazy(), State::new(&lazy()), tick(), 10.0 => [Action::SampleQueues, spawn(1, 1)],
        |s| { assert_eq!(s.queues_checked, Some(t(10.0))); assert!(s.workers.is_empty()); });
    row!(spawned_worker_is_tracked_and_the_next_is_forked:
        lazy(), State::new(&lazy()), Event::Spawned { id: id(1), pid: pid(101) }, 10.0
        => [spawn(2, 1)],
        |s| { assert_eq!(s.workers, vec![Worker { spawned: t(10.0), ..starting(1, 1) }]); });
    row!(last_spawn_ends_the_tick_without_announcing:
        lazy(), State { workers: vec![starting(1, 1)], ..State::new(&lazy()) },
        Event::Spawned { id: id(2), pid: pid(102) }, 10.0 => [],
        |s| { assert_eq!(ids(s), [1, 2]); assert!(!s.announced_ready); });
    row!(preload_forks_nothing_before_the_app_loads:
        settings(), State::new(&settings()), tick(), 10.0 => [Action::SampleQueues]);
    row!(app_loaded_allows_spawning:
        settings(), State::new(&settings()), Event::AppLoaded, 10.0 => [],
        |s| { assert!(s.can_spawn); });
    row!(preload_start_forks_once_loaded:
        settings(), State { can_spawn: true, ..State::new(&settings()) }, tick(), 10.0
        => [Action::SampleQueues, spawn(1, 1)]);
    row!(ready_record_marks_the_worker_and_ends_the_backoff:
        settings(),
        State { startup_failures: 3, next_spawn: Some(t(12.0)), ..st(vec![starting(1, 1)]) },
        Event::Ready(1), 10.0 => [],
        |s| { assert!(s.workers[0].ready); assert_eq!(s.startup_failures, 0);
              assert_eq!(s.next_spawn, None); });
    row!(ready_record_of_an_unknown_slot_changes_nothing:
        settings(), State { startup_failures: 3, ..st(vec![starting(1, 1)]) },
        Event::Ready(3), 10.0 => [],
        |s| { assert!(!s.workers[0].ready); assert_eq!(s.startup_failures, 3); });
    row!(all_ready_announces_once:
        settings(), State { announced_ready: false, ..serving() }, tick(), 10.0
        => [log("2 worker(s) ready"), ready_status("2 workers ready")],
        |s| { assert!(s.announced_ready); });
    row!(already_announced_serving_tick_does_nothing:
        settings(), serving(), tick(), 10.0 => []);
    row!(one_of_two_ready_is_not_announced:
        settings(), State { announced_ready: false, ..st(vec![w(1, 1), starting(2, 1)]) },
        tick(), 10.0 => [],
        |s| { assert!(!s.announced_ready); });
    row!(queues_are_sampled_once_a_tick:
        settings(), serving(), tick(), 11.0 => [Action::SampleQueues],
        |s| { assert_eq!(s.queues_checked, Some(t(11.0))); });
    row!(queues_are_not_sampled_twice_within_a_tick:
        settings(), serving(), tick(), 10.9 => []);

    // --- touch-reload and friends ---
    fn touched(touch: Touch) -> Event {
        Event::Touched(touch, "/app/reload".into())
    }
    row!(touch_reload_in_preload_mode_re_executes_like_hup:
        settings(), serving(), touched(Touch::Reload), 10.0
        => [log("touch-reload /app/reload changed: graceful reload"), Action::NotifyReloading],
        |s| { assert!(s.reexec_pending); });
    row!(touch_reload_in_lazy_mode_starts_a_generation:
        lazy(), serving(), touched(Touch::Reload), 10.0
        => [log("touch-reload /app/reload changed: graceful reload"), Action::NotifyReloading],
        |s| { assert_eq!(s.generation, 2); assert!(s.reload.is_some()); });
    row!(touch_workers_reload_forks_a_generation_even_when_preloaded:
        settings(), serving(), touched(Touch::WorkersReload), 10.0
        => [log("touch-workers-reload /app/reload changed: workers reload"),
            Action::NotifyReloading],
        |s| { assert_eq!(s.generation, 2); assert!(!s.reexec_pending); assert!(s.reload.is_some()); });
    row!(touch_logreopen_reopens_like_usr1:
        settings(), serving(), touched(Touch::LogReopen), 10.0
        => [log("touch-logreopen /app/reload changed: reopening the log"), Action::ReopenLog,
            sig(1, Signal::SIGUSR1), sig(2, Signal::SIGUSR1)]);
    row!(touch_logrotate_rotates_then_the_workers_reopen:
        settings(), serving(), touched(Touch::LogRotate), 10.0
        => [log("touch-logrotate /app/reload changed: rotating the log"), Action::RotateLog,
            sig(1, Signal::SIGUSR1), sig(2, Signal::SIGUSR1)]);
    row!(touch_while_stopping_does_nothing:
        settings(), State { stopping: Some(Stopping { graceful: true, deadline: t(60.0), killed: false }), ..serving() },
        touched(Touch::Reload), 10.0 => []);
    row!(touch_chain_reload_replaces_the_first_worker_only:
        settings(), serving(), touched(Touch::ChainReload), 10.0
        => [log("touch-chain-reload /app/reload changed: chain reload of 2 worker(s), one at a time"),
            respawn(1, RespawnCause::Reload),
            log("chain reload: replacing worker 1 (pid 101); 1 left after it"),
            spawn(3, 1)],
        |s| { assert_eq!(s.chain, Some(vec![pid(102)]));
              assert_eq!(s.workers[0].replace, Some(RespawnCause::Reload));
              assert_eq!(s.workers[1].replace, None); });
    row!(chain_waits_while_the_replacement_starts:
        settings(),
        State { chain: Some(vec![pid(102)]),
                ..st(vec![replaced(1, RespawnCause::Reload), w(2, 1), starting(3, 1)]) },
        tick(), 10.0 => [],
        |s| { assert_eq!(s.chain, Some(vec![pid(102)])); });
    row!(chain_replacement_accepts_old_one_stops_and_the_next_is_replaced:
        settings(),
        State { chain: Some(vec![pid(102)]),
                ..st(vec![replaced(1, RespawnCause::Reload), w(2, 1), starting(3, 1)]) },
        Event::Ready(3), 10.0 => [],
        |s| { assert!(s.workers[2].ready); });
    row!(chain_moves_on_at_the_tick_after_the_replacement_accepts:
        settings(),
        State { chain: Some(vec![pid(102)]),
                ..st(vec![replaced(1, RespawnCause::Reload), w(2, 1), w(3, 1)]) },
        tick(), 10.0
        => [sig(1, Signal::SIGTERM)],
        |s| { assert!(s.workers[0].stopping_since.is_some()); });
    row!(chain_marks_the_next_once_the_previous_is_stopping:
        settings(),
        State { chain: Some(vec![pid(102)]),
                ..st(vec![Worker { stopping_since: Some(t(9.0)), ..replaced(1, RespawnCause::Reload) },
                          w(2, 1), w(3, 1)]) },
        tick(), 10.0
        => [respawn(2, RespawnCause::Reload),
            log("chain reload: replacing worker 2 (pid 102); 0 left after it"),
            spawn(4, 1)]);
    row!(chain_ends_once_the_last_replacement_accepts:
        settings(),
        State { chain: Some(vec![]),
                ..st(vec![Worker { stopping_since: Some(t(9.0)), ..replaced(2, RespawnCause::Reload) },
                          w(3, 1), w(4, 1)]) },
        tick(), 10.0 => [log("chain reload done")],
        |s| { assert_eq!(s.chain, None); });
    row!(chain_skips_a_worker_that_died_meanwhile:
        settings(),
        State { chain: Some(vec![pid(109), pid(102)]), ..serving() },
        tick(), 10.0
        => [respawn(2, RespawnCause::Reload),
            log("chain reload: replacing worker 2 (pid 102); 0 left after it"),
            spawn(3, 1)]);
    row!(second_chain_while_one_runs_is_refused:
        settings(), State { chain: Some(vec![pid(102)]), ..serving() },
        touched(Touch::ChainReload), 10.0
        => [log("touch-chain-reload /app/reload changed: a reload is already in progress")]);

    // --- cheaper ---
    /// cheaper 1 (initial 1), step 1, overload 1, processes 3; no harakiri.
    fn cheap() -> Settings {
        Settings {
            workers: 3,
            slots: 6,
            harakiri_ms: None,
            cheaper: Some(Cheaper {
                min: 1,
                initial: 1,
                step: 1,
                overload: 1,
            }),
            ..settings()
        }
    }

    fn busy(n: u32) -> Sample {
        Sample {
            oldest_request_start_ms: Some(99_000),
            ..idle(n)
        }
    }

    fn cheap_serving(workers: Vec<Worker>) -> State {
        let target = workers.len();
        State {
            target,
            queues_checked: Some(t(10.0)),
            ..st(workers)
        }
    }

    row!(cheaper_starts_with_cheaper_initial_workers:
        cheap(), State { can_spawn: true, ..State::new(&cheap()) }, tick(), 10.0
        => [Action::SampleQueues, spawn(1, 1)],
        |s| { assert_eq!(s.target, 1); });
    row!(cheaper_one_busy_cycle_is_not_overload_yet:
        cheap(), cheap_serving(vec![w(1, 1)]), tick_with(vec![busy(1)]), 10.0 => [],
        |s| { assert_eq!(s.spare.overload_count, 1); assert_eq!(s.target, 1); });
    row!(cheaper_overload_adds_a_worker:
        cheap(),
        State { spare: Spare { overload_count: 1, idle_count: 0 }, ..cheap_serving(vec![w(1, 1)]) },
        tick_with(vec![busy(1)]), 10.0
        => [log("cheaper: all 1 worker(s) busy for 2 s; adding 1 (now 2 of at most 3)"), spawn(2, 1)],
        |s| { assert_eq!(s.target, 2); });
    row!(cheaper_never_goes_above_processes:
        cheap(),
        State { spare: Spare { overload_count: 5, idle_count: 0 }, ..cheap_serving(vec![w(1, 1), w(2, 1), w(3, 1)]) },
        tick_with(vec![busy(1), busy(2), busy(3)]), 10.0 => [],
        |s| { assert_eq!(s.target, 3); });
    row!(cheaper_idle_retires_the_highest_idle_slot:
        cheap(), cheap_serving(vec![w(1, 1), w(2, 1), w(3, 1)]),
        tick_with(vec![idle(1), idle(2), busy(3)]), 10.0
        => [sig(2, Signal::SIGTERM),
            log("cheaper: idle; retiring worker 2 (pid 102) (now 2 of at least 1)")],
        |s| { assert_eq!(s.target, 2); assert!(s.workers[1].stopping_since.is_some()); });
    row!(cheaper_retired_worker_is_not_respawned:
        cheap(),
        State { target: 1, ..cheap_serving(vec![w(1, 1), retiring(2, 1)]) },
        exited(2, 0), 10.0 => [dead(2)]);
    row!(cheaper_waits_while_workers_start:
        cheap(),
        State { target: 2, spare: Spare { overload_count: 9, idle_count: 0 }, ..cheap_serving(vec![w(1, 1), starting(2, 1)]) },
        tick_with(vec![busy(1), busy(2)]), 10.0 => [],
        |s| { assert_eq!(s.spare.overload_count, 9); });
    row!(cheaper_keeps_at_least_cheaper:
        cheap(), cheap_serving(vec![w(1, 1)]), tick_with(vec![idle(1)]), 10.0 => []);
    row!(cheaper_reload_forks_the_current_target:
        Settings { lazy_apps: true, ..cheap() },
        State { target: 2, ..cheap_serving(vec![w(1, 1), w(2, 1)]) },
        Event::Signal(Signal::SIGHUP), 10.0
        => [log("SIGHUP: graceful reload"), Action::NotifyReloading],
        |s| { assert_eq!(s.target, 2); assert_eq!(s.generation, 2); });

    // --- Crash and respawn ---
    row!(ready_worker_crash_is_counted_and_keeps_its_slot:
        settings(), serving(), killed_by(1, Signal::SIGSEGV), 10.0
        => [dead(1), respawn(1, RespawnCause::Crash),
            log("worker 1 (pid 101) died with signal SIGSEGV; respawning")],
        |s| { assert_eq!(ids(s), [2]); assert_eq!(s.reuse_slots, vec![id(1)]); });
    row!(ready_worker_exit_code_is_reported:
        settings(), serving(), exited(2, 1), 10.0
        => [dead(2), respawn(2, RespawnCause::Crash),
            log("worker 2 (pid 102) died with exit code 1; respawning")]);
    row!(respawn_takes_the_dead_workers_slot:
        settings(), State { reuse_slots: vec![id(3)], ..st(vec![w(2, 1)]) }, tick(), 10.0
        => [spawn(3, 1)],
        |s| { assert!(s.reuse_slots.is_empty()); });
    row!(without_a_dead_slot_the_lowest_free_one_is_taken:
        settings(), st(vec![w(1, 1), replaced(2, RespawnCause::MaxRequests)]), tick(), 10.0
        => [spawn(3, 1)]);
    row!(dead_slot_in_use_falls_back_to_the_lowest_free:
        settings(), State { reuse_slots: vec![id(1)], ..st(vec![w(1, 1)]) }, tick(), 10.0
        => [spawn(2, 1)],
        |s| { assert_eq!(s.reuse_slots, vec![id(1)]); });
    row!(no_free_slot_spawns_nothing:
        settings(),
        st(vec![replaced(1, RespawnCause::Rss), replaced(2, RespawnCause::Rss),
                retiring(3, 1), retiring(4, 1)]),
        tick(), 10.0 => []);
    row!(crash_without_a_loaded_app_cannot_be_replaced:
        settings(), State { can_spawn: false, ..serving() }, exited(1, 1), 10.0
        => [dead(1), respawn(1, RespawnCause::Crash),
            log("worker 1 (pid 101) died with exit code 1; it cannot be replaced until the \
                 app loads again: fix it and send SIGHUP")]);
    row!(exit_of_an_unknown_pid_is_ignored:
        settings(), serving(),
        Event::Exited { pid: pid(999), status: ExitStatus::Code(0) }, 10.0 => [],
        |s| { assert_eq!(ids(s), [1, 2]); });
    row!(old_generation_crash_does_not_keep_its_slot:
        settings(), reloading(vec![w(1, 1), w(2, 1), starting(3, 2)]), exited(1, 1), 10.0
        => [dead(1), respawn(1, RespawnCause::Crash),
            log("worker 1 (pid 101) died with exit code 1; respawning")],
        |s| { assert!(s.reuse_slots.is_empty()); assert!(s.reload.is_some()); });

    // --- Backoff for workers that never became ready ---
    row!(first_failed_start_retries_in_100ms_with_the_import_hint:
        lazy(), st(vec![starting(1, 1), w(2, 1)]), exited(1, EXIT_APP_LOAD), 10.0
        => [dead(1), log("worker 1 (pid 101) exited with exit code 22 before it accepted: \
                          the app failed to import (traceback above); retrying in 0.1 s \
                          (attempt 1)")],
        |s| { assert_eq!(s.startup_failures, 1); assert_eq!(s.next_spawn, Some(t(10.1)));
              assert!(s.reuse_slots.is_empty()); });
    row!(fourth_failed_start_waits_800ms:
        lazy(), State { startup_failures: 3, ..st(vec![starting(1, 1)]) },
        killed_by(1, Signal::SIGKILL), 10.0
        => [dead(1), log("worker 1 (pid 101) exited with signal SIGKILL before it accepted; \
                          retrying in 0.8 s (attempt 4)")],
        |s| { assert_eq!(s.next_spawn, Some(t(10.8))); });
    row!(backoff_is_capped_at_10s:
        lazy(), State { startup_failures: 40, ..st(vec![starting(1, 1)]) }, exited(1, 1), 10.0
        => [dead(1), log("worker 1 (pid 101) exited with exit code 1 before it accepted; \
                          retrying in 10.0 s (attempt 41)")],
        |s| { assert_eq!(s.next_spawn, Some(t(20.0))); });
    row!(no_spawn_before_the_backoff_ends:
        lazy(), State { next_spawn: Some(t(10.4)), ..st(vec![w(2, 1)]) }, tick(), 10.3 => []);
    row!(spawn_once_the_backoff_ends:
        lazy(), State { next_spawn: Some(t(10.4)), ..st(vec![w(2, 1)]) }, tick(), 10.4
        => [spawn(1, 1)]);
    row!(failed_fork_retries_in_a_second:
        lazy(), st(vec![w(2, 1)]),
        Event::SpawnFailed { id: id(1), error: "EAGAIN: Try again".into() }, 10.0
        => [log("fork failed: EAGAIN: Try again; retrying in 1 s")],
        |s| { assert_eq!(s.next_spawn, Some(t(11.0))); assert_eq!(ids(s), [2]); });

    // --- Recycling: the replacement first, the old one stopped once it is ready ---
    row!(max_requests_recycles_with_the_replacement_first:
        recycling(), serving(), tick_with(vec![requests(1, 110)]), 10.0
        => [respawn(1, RespawnCause::MaxRequests),
            log("worker 1 (pid 101): recycling (max_requests); its replacement starts first"),
            spawn(3, 1)],
        |s| { assert_eq!(s.workers[0].replace, Some(RespawnCause::MaxRequests)); });
    row!(max_requests_is_staggered_by_the_delta:
        recycling(), serving(), tick_with(vec![requests(2, 119)]), 10.0 => []);
    row!(max_requests_staggered_limit_reached:
        recycling(), serving(), tick_with(vec![requests(2, 120)]), 10.0
        => [respawn(2, RespawnCause::MaxRequests),
            log("worker 2 (pid 102): recycling (max_requests); its replacement starts first"),
            spawn(3, 1)]);
    row!(max_worker_lifetime_recycles:
        recycling(), serving(), tick(), 3600.0
        => [respawn(1, RespawnCause::Lifetime), respawn(2, RespawnCause::Lifetime),
            log("worker 1 (pid 101): recycling (lifetime); its replacement starts first"),
            log("worker 2 (pid 102): recycling (lifetime); its replacement starts first"),
            Action::SampleQueues, spawn(3, 1)]);
    row!(reload_on_rss_recycles:
        recycling(), serving(), tick_with(vec![rss(2, 201)]), 10.0
        => [respawn(2, RespawnCause::Rss),
            log("worker 2 (pid 102): recycling (rss); its replacement starts first"),
            spawn(3, 1)]);
    row!(rss_at_the_limit_is_not_recycled:
        recycling(), serving(), tick_with(vec![rss(2, 200)]), 10.0 => []);
    row!(rss_unknown_is_not_recycled:
        recycling(), serving(), tick_with(vec![Sample { rss: None, ..idle(1) }]), 10.0 => []);
    row!(max_requests_wins_over_the_other_causes:
        recycling(), serving(), tick_with(vec![Sample { requests: 500, ..rss(1, 900) }]), 3600.0
        => [respawn(1, RespawnCause::MaxRequests), respawn(2, RespawnCause::Lifetime),
            log("worker 1 (pid 101): recycling (max_requests); its replacement starts first"),
            log("worker 2 (pid 102): recycling (lifetime); its replacement starts first"),
            Action::SampleQueues, spawn(3, 1)]);
    row!(a_worker_not_yet_ready_is_not_recycled:
        recycling(), st(vec![w(1, 1), starting(2, 1)]), tick_with(vec![requests(2, 500)]), 10.0
        => []);
    row!(a_worker_being_replaced_is_not_counted_twice:
        recycling(), st(vec![replaced(1, RespawnCause::MaxRequests), w(2, 1), starting(3, 1)]),
        tick_with(vec![requests(1, 500)]), 10.0 => []);
    row!(a_worker_without_a_sample_is_not_checked:
        recycling(), serving(),
        Event::Tick { now_ms: 100_000, samples: vec![requests(2, 1)] }, 3600.0
        => [respawn(2, RespawnCause::Lifetime),
            log("worker 2 (pid 102): recycling (lifetime); its replacement starts \
                 first"),
            Action::SampleQueues, spawn(3, 1)]);
    row!(replacement_ready_stops_the_old_worker:
        recycling(), st(vec![replaced(1, RespawnCause::MaxRequests), w(2, 1), w(3, 1)]),
        tick(), 10.0 => [sig(1, Signal::SIGTERM)],
        |s| { assert_eq!(s.workers[0].stopping_since, Some(t(10.0))); });
    row!(replacement_not_ready_keeps_the_old_worker:
        recycling(), st(vec![replaced(1, RespawnCause::MaxRequests), w(2, 1), starting(3, 1)]),
        tick(), 10.0 => [],
        |s| { assert_eq!(s.workers[0].stopping_since, None); });
    row!(recycled_worker_exit_is_quiet:
        recycling(), st(vec![retiring(1, 1), w(2, 1), w(3, 1)]), exited(1, 0), 10.0
        => [dead(1)],
        |s| { assert!(s.reuse_slots.is_empty()); });

    // --- Harakiri ---
    row!(harakiri_dumps_the_stacks_first:
        settings(), serving(), tick_with(vec![running(2, 10.5)]), 10.0
        => [sig(2, Signal::SIGUSR2), respawn(2, RespawnCause::Harakiri),
            log("worker 2 (pid 102): harakiri: a request has run 10.5 s (limit 10 s); its \
                 Python stacks follow, then it is killed")],
        |s| { assert_eq!(s.workers[1].harakiri_at, Some(t(10.0))); });
    row!(harakiri_limit_itself_is_allowed:
        settings(), serving(), tick_with(vec![running(2, 10.0)]), 10.0 => []);
    row!(harakiri_off_lets_requests_run:
        Settings { harakiri_ms: None, ..settings() }, serving(),
        tick_with(vec![running(2, 90.0)]), 10.0 => []);
    row!(harakiri_waits_for_the_dump:
        settings(), st(vec![w(1, 1), harakiri(2, 10.0, false)]), tick(), 10.299 => []);
    row!(harakiri_kills_after_the_dump_grace:
        settings(), st(vec![w(1, 1), harakiri(2, 10.0, false)]), tick(), 10.3
        => [sig(2, Signal::SIGKILL)],
        |s| { assert!(s.workers[1].killed); });
    row!(harakiri_kills_once:
        settings(), st(vec![w(1, 1), harakiri(2, 10.0, true)]), tick(), 12.0
        => [Action::SampleQueues]);
    row!(harakiri_worker_gone_is_replaced_in_its_slot:
        settings(), st(vec![w(1, 1), harakiri(2, 10.0, true)]),
        killed_by(2, Signal::SIGKILL), 10.5
        => [dead(2), log("worker 2 (pid 102) killed by harakiri; respawning")],
        |s| { assert_eq!(s.reuse_slots, vec![id(2)]); });
    row!(harakiri_replacement_waits_until_the_worker_is_gone:
        settings(), State { reuse_slots: vec![], ..st(vec![w(1, 1), harakiri(2, 10.0, true)]) },
        tick(), 10.5 => []);
    row!(harakiri_replacement_takes_the_slot:
        settings(), State { reuse_slots: vec![id(2)], ..st(vec![w(1, 1)]) }, tick(), 10.5
        => [spawn(2, 1)]);
    row!(harakiri_of_a_worker_that_never_was_ready_still_keeps_the_slot:
        settings(), st(vec![w(1, 1), Worker { ready: false, ..harakiri(2, 1.0, true) }]),
        exited(2, 1), 10.0
        => [dead(2), log("worker 2 (pid 102) killed by harakiri; respawning")],
        |s| { assert_eq!(s.reuse_slots, vec![id(2)]); assert_eq!(s.startup_failures, 0); });

    // --- Stop ---
    row!(term_is_a_graceful_stop_with_reload_mercy:
        settings(), serving(), Event::Signal(Signal::SIGTERM), 10.0
        => [log("SIGTERM: graceful stop"), stopping_note(),
            sig(1, Signal::SIGTERM), sig(2, Signal::SIGTERM)],
        |s| { assert_eq!(s.stopping, Some(Stopping { graceful: true, deadline: t(15.0),
                                                     killed: false })); });
    row!(int_is_a_fast_stop:
        settings(), serving(), Event::Signal(Signal::SIGINT), 10.0
        => [log("SIGINT: fast stop"), stopping_note(),
            sig(1, Signal::SIGINT), sig(2, Signal::SIGINT)],
        |s| { assert_eq!(s.stopping, Some(Stopping { graceful: false, deadline: t(13.0),
                                                     killed: false })); });
    row!(quit_is_a_fast_stop:
        settings(), serving(), Event::Signal(Signal::SIGQUIT), 10.0
        => [log("SIGQUIT: fast stop"), stopping_note(),
            sig(1, Signal::SIGINT), sig(2, Signal::SIGINT)]);
    row!(term_during_a_graceful_stop_only_logs:
        settings(), stopping(vec![w(1, 1)], true, 15.0, false),
        Event::Signal(Signal::SIGTERM), 11.0 => [log("SIGTERM: graceful stop")],
        |s| { assert_eq!(s.stopping.unwrap().deadline, t(15.0)); });
    row!(int_overrides_a_graceful_stop:
        settings(), stopping(vec![w(1, 1)], true, 15.0, false),
        Event::Signal(Signal::SIGINT), 11.0
        => [log("SIGINT: fast stop"), stopping_note(), sig(1, Signal::SIGINT)],
        |s| { assert_eq!(s.stopping, Some(Stopping { graceful: false, deadline: t(14.0),
                                                     killed: false })); });
    row!(term_during_a_fast_stop_only_logs:
        settings(), stopping(vec![w(1, 1)], false, 13.0, false),
        Event::Signal(Signal::SIGTERM), 11.0 => [log("SIGTERM: graceful stop")]);
    row!(quit_during_a_fast_stop_only_logs:
        settings(), stopping(vec![w(1, 1)], false, 13.0, false),
        Event::Signal(Signal::SIGQUIT), 11.0 => [log("SIGQUIT: fast stop")],
        |s| { assert_eq!(s.stopping.unwrap().deadline, t(13.0)); });
    row!(stopping_spawns_and_checks_nothing:
        settings(), stopping(vec![w(1, 1)], true, 15.0, false),
        tick_with(vec![running(1, 60.0)]), 11.0 => []);
    row!(stop_deadline_kills_the_rest:
        settings(), stopping(vec![w(1, 1), w(2, 1)], true, 15.0, false), tick(), 15.0
        => [log("stop deadline passed: killing 2 worker(s)"),
            sig(1, Signal::SIGKILL), sig(2, Signal::SIGKILL)],
        |s| { assert!(s.stopping.unwrap().killed); });
    row!(stop_deadline_kills_once:
        settings(), stopping(vec![w(1, 1)], true, 15.0, true), tick(), 20.0 => []);
    row!(worker_exit_during_a_stop_is_quiet:
        settings(), stopping(vec![w(1, 1), w(2, 1)], true, 15.0, false), exited(1, 0), 11.0
        => [dead(1)],
        |s| { assert_eq!(ids(s), [2]); assert!(s.reuse_slots.is_empty()); });
    row!(last_worker_gone_exits:
        settings(), stopping(vec![], true, 15.0, false), tick(), 11.0
        => [log("every worker has exited; bye"), Action::Exit]);
    row!(emperor_gone_is_a_fast_stop:
        settings(), serving(), Event::EmperorGone, 10.0
        => [log("the emperor is gone: stopping"), stopping_note(),
            sig(1, Signal::SIGINT), sig(2, Signal::SIGINT)],
        |s| { assert!(!s.stopping.unwrap().graceful); });
    row!(emperor_gone_while_stopping_changes_nothing:
        settings(), stopping(vec![w(1, 1)], true, 15.0, false), Event::EmperorGone, 11.0
        => [],
        |s| { assert!(s.stopping.unwrap().graceful); });
    row!(hup_while_stopping_is_ignored:
        lazy(), stopping(vec![w(1, 1)], true, 15.0, false), Event::Signal(Signal::SIGHUP), 11.0
        => [],
        |s| { assert_eq!(s.generation, 1); assert!(s.reload.is_none()); });
    row!(usr1_reopens_the_log_and_tells_the_workers:
        settings(), serving(), Event::Signal(Signal::SIGUSR1), 10.0
        => [Action::ReopenLog, sig(1, Signal::SIGUSR1), sig(2, Signal::SIGUSR1)]);
    row!(other_signals_are_ignored:
        settings(), serving(), Event::Signal(Signal::SIGUSR2), 10.0 => []);

    // --- Reload, lazy: a new generation ---
    row!(hup_lazy_starts_a_new_generation:
        lazy(), State { next_spawn: Some(t(12.0)), ..serving() },
        Event::Signal(Signal::SIGHUP), 10.0
        => [log("SIGHUP: graceful reload"), Action::NotifyReloading],
        |s| { assert_eq!(s.generation, 2);
              assert_eq!(s.reload, Some(Reload { previous: 1, deadline: t(70.0) }));
              assert_eq!(s.next_spawn, None); });
    row!(hup_during_a_reload_is_refused:
        lazy(), reloading(vec![w(1, 1), w(2, 1)]), Event::Signal(Signal::SIGHUP), 10.0
        => [log("SIGHUP: a reload is already in progress")],
        |s| { assert_eq!(s.generation, 2); });
    row!(new_generation_is_forked_beside_the_old:
        lazy(), reloading(vec![w(1, 1), w(2, 1)]), tick(), 10.0 => [spawn(3, 2)]);
    row!(new_generation_spawned_worker_belongs_to_it:
        lazy(), reloading(vec![w(1, 1), w(2, 1)]),
        Event::Spawned { id: id(3), pid: pid(103) }, 10.0 => [spawn(4, 2)],
        |s| { assert_eq!(s.workers[2].generation, 2); });
    row!(new_generation_half_ready_waits:
        lazy(), reloading(vec![w(1, 1), w(2, 1), w(3, 2), starting(4, 2)]), tick(), 10.0
        => [],
        |s| { assert!(s.reload.is_some()); });
    row!(new_generation_ready_stops_the_old:
        lazy(), reloading(vec![w(1, 1), w(2, 1), w(3, 2), w(4, 2)]), tick(), 10.0
        => [respawn(1, RespawnCause::Reload), sig(1, Signal::SIGTERM),
            respawn(2, RespawnCause::Reload), sig(2, Signal::SIGTERM),
            Action::CountReload, log("reload done: generation 2 serves"),
            ready_status("2 workers ready (reloaded)")],
        |s| { assert_eq!(s.reload, None);
              assert!(s.workers[..2].iter().all(|w| w.stopping_since == Some(t(10.0)))); });
    row!(reload_done_skips_old_workers_already_retiring:
        lazy(), reloading(vec![retiring(1, 1), w(2, 1), w(3, 2), w(4, 2)]), tick(), 10.0
        => [respawn(2, RespawnCause::Reload), sig(2, Signal::SIGTERM),
            Action::CountReload, log("reload done: generation 2 serves"),
            ready_status("2 workers ready (reloaded)")]);
    row!(new_code_failing_aborts_the_reload:
        lazy(), reloading(vec![w(1, 1), w(2, 1), starting(3, 2), starting(4, 2)]),
        exited(3, EXIT_APP_LOAD), 10.0
        => [dead(3),
            log("reload failed: new worker 3 (pid 103) exited with exit code 22 before it \
                 accepted (its error is above); the previous workers keep serving"),
            sig(4, Signal::SIGKILL), Action::CountReloadFailed,
            ready_status("reload failed; the previous workers keep serving")],
        |s| { assert_eq!(s.generation, 1); assert_eq!(s.reload, None);
              assert_eq!(s.next_spawn, None); assert_eq!(s.startup_failures, 0);
              assert_eq!(s.workers[2].stopping_since, Some(t(10.0))); });
    row!(reload_deadline_aborts_the_reload:
        lazy(), reloading(vec![w(1, 1), w(2, 1), w(3, 2), starting(4, 2)]), tick(), 65.0
        => [Action::SampleQueues,
            log("reload failed: the new workers did not accept within 60 s; the previous \
                 workers keep serving"),
            sig(3, Signal::SIGKILL), sig(4, Signal::SIGKILL), Action::CountReloadFailed,
            ready_status("reload failed; the previous workers keep serving")],
        |s| { assert_eq!(s.generation, 1); });
    row!(killed_new_worker_exit_after_an_abort_is_quiet:
        lazy(), st(vec![w(1, 1), w(2, 1), retiring(3, 2)]), killed_by(3, Signal::SIGKILL), 10.0
        => [dead(3)]);
    row!(after_an_abort_the_old_generation_serves:
        lazy(), st(vec![w(1, 1), w(2, 1), retiring(3, 2)]), tick(), 10.0 => []);

    // --- Reload, preloaded: re-exec ---
    row!(hup_preloaded_asks_for_a_reexec:
        settings(), serving(), Event::Signal(Signal::SIGHUP), 10.0
        => [log("SIGHUP: graceful reload"), Action::NotifyReloading],
        |s| { assert!(s.reexec_pending); assert_eq!(s.generation, 1); });
    row!(reexec_passes_the_serving_workers_down:
        settings(), State { reexec_pending: true, ..st(vec![w(1, 1), retiring(2, 1), w(3, 1)]) },
        tick(), 10.0
        => [Action::ReExec(vec![(id(1), pid(101)), (id(3), pid(103))])],
        |s| { assert!(!s.reexec_pending); });
    row!(reexec_waits_for_the_spawns_of_the_tick:
        settings(), State { reexec_pending: true, ..st(vec![w(1, 1)]) }, tick(), 10.0
        => [spawn(2, 1)],
        |s| { assert!(s.reexec_pending); });
    row!(reexec_follows_the_last_spawn:
        settings(), State { reexec_pending: true, ..st(vec![w(1, 1)]) },
        Event::Spawned { id: id(2), pid: pid(102) }, 10.0
        => [Action::ReExec(vec![(id(1), pid(101)), (id(2), pid(102))])]);
    row!(no_reexec_once_stopping:
        settings(),
        State { reexec_pending: true, ..stopping(vec![w(1, 1)], true, 15.0, false) },
        tick(), 11.0 => [],
        |s| { assert!(s.reexec_pending); });
    row!(failed_reexec_keeps_the_workers:
        settings(), serving(), Event::ReExecFailed("current_exe: gone".into()), 10.0
        => [log("reload failed: cannot re-execute the master: current_exe: gone; the workers \
                 keep serving"),
            Action::CountReloadFailed, ready_status("reload failed: cannot re-execute")]);
    row!(reexecuted_master_adopts_the_old_workers:
        settings(), State::new(&settings()),
        Event::Adopt(vec![(id(1), pid(101)), (id(2), pid(102)), (id(9), pid(109))]), 10.0
        => [log("re-executed for a reload; 2 old worker(s) serve until the new ones accept")],
        |s| { assert_eq!(s.workers, vec![Worker { spawned: t(10.0), ..w(1, 0) },
                                         Worker { spawned: t(10.0), ..w(2, 0) }]);
              assert_eq!(s.reload, Some(Reload { previous: 0, deadline: t(70.0) }));
              assert!(s.announced_ready); assert_eq!(s.generation, 1); });
    row!(fresh_master_adopts_nothing:
        settings(), State::new(&settings()), Event::Adopt(vec![]), 10.0 => [],
        |s| { assert_eq!(s.reload, None); assert!(!s.announced_ready); });
    row!(new_image_forks_its_generation_beside_the_adopted:
        settings(),
        State { generation: 1, reload: Some(Reload { previous: 0, deadline: t(70.0) }),
                ..st(vec![w(1, 0), w(2, 0)]) },
        tick(), 10.0 => [spawn(3, 1)]);
    row!(new_image_ready_stops_the_adopted:
        settings(),
        State { generation: 1, reload: Some(Reload { previous: 0, deadline: t(70.0) }),
                ..st(vec![w(1, 0), w(2, 0), w(3, 1), w(4, 1)]) },
        tick(), 10.0
        => [respawn(1, RespawnCause::Reload), sig(1, Signal::SIGTERM),
            respawn(2, RespawnCause::Reload), sig(2, Signal::SIGTERM),
            Action::CountReload, log("reload done: generation 1 serves"),
            ready_status("2 workers ready (reloaded)")]);
    row!(new_image_without_the_app_keeps_the_adopted:
        settings(),
        State { reload: Some(Reload { previous: 0, deadline: t(70.0) }),
                ..st(vec![w(1, 0), w(2, 0)]) },
        Event::AppLoadFailed("SyntaxError: invalid syntax".into()), 10.0
        => [log("reload failed: the new code does not load; the running workers keep \
                 serving:\nSyntaxError: invalid syntax"),
            Action::CountReloadFailed, ready_status("reload failed: the app does not load")],
        |s| { assert_eq!(s.generation, 0); assert_eq!(s.reload, None); });
    row!(adopted_worker_crash_without_the_app_is_not_replaced:
        settings(), State { generation: 0, can_spawn: false, ..st(vec![w(1, 0), w(2, 0)]) },
        exited(2, 1), 10.0
        => [dead(2), respawn(2, RespawnCause::Crash),
            log("worker 2 (pid 102) died with exit code 1; it cannot be replaced until the \
                 app loads again: fix it and send SIGHUP")]);
    row!(hup_after_a_failed_new_image_tries_again:
        settings(), State { generation: 0, can_spawn: false, ..st(vec![w(1, 0), w(2, 0)]) },
        Event::Signal(Signal::SIGHUP), 10.0
        => [log("SIGHUP: graceful reload"), Action::NotifyReloading],
        |s| { assert!(s.reexec_pending); });

    // --- Full accept queues ---
    row!(no_full_queue_is_quiet:
        settings(), serving(), Event::QueuesSampled(vec![]), 10.0 => []);
    row!(full_queues_are_counted_and_logged:
        settings(), serving(), Event::QueuesSampled(vec!["a (5/5)".into(), "b (9/8)".into()]),
        10.0
        => [Action::CountListenQueueErrors(2),
            log("listen queue of socket a (5/5), b (9/8) full: new connections are refused \
                 (nginx answers 502); the workers are too few or too slow, or `listen` is too \
                 small (the kernel caps it at net.core.somaxconn)")],
        |s| { assert_eq!(s.queue_full_logged, Some(t(10.0))); });
    row!(full_queue_is_logged_at_most_every_10s:
        settings(), State { queue_full_logged: Some(t(1.0)), ..serving() },
        Event::QueuesSampled(vec!["a (5/5)".into()]), 10.9
        => [Action::CountListenQueueErrors(1)]);
    row!(full_queue_is_logged_again_after_10s:
        settings(), State { queue_full_logged: Some(t(1.0)), ..serving() },
        Event::QueuesSampled(vec!["a (5/5)".into()]), 11.0
        => [Action::CountListenQueueErrors(1),
            log("listen queue of socket a (5/5) full: new connections are refused (nginx \
                 answers 502); the workers are too few or too slow, or `listen` is too small \
                 (the kernel caps it at net.core.somaxconn)")]);

    #[test]
    fn next_wakeup_is_the_earliest_deadline() {
        let base = serving();
        let cases = [
            (base.clone(), 11.0),
            (
                State {
                    next_spawn: Some(t(10.2)),
                    ..base.clone()
                },
                10.2,
            ),
            (stopping(vec![w(1, 1)], true, 10.5, false), 10.5),
            (stopping(vec![w(1, 1)], true, 10.5, true), 11.0),
            (reloading(vec![w(1, 1)]), 11.0),
            (
                State {
                    reload: Some(Reload {
                        previous: 1,
                        deadline: t(10.4),
                    }),
                    ..base.clone()
                },
                10.4,
            ),
            (st(vec![harakiri(1, 10.0, false)]), 10.3),
            (st(vec![harakiri(1, 10.0, true)]), 11.0),
            (
                stopping(vec![harakiri(1, 9.0, false)], true, 30.0, false),
                11.0,
            ),
            // Past the backoff, and a reload's deadline during a stop: a tick away.
            (
                State {
                    next_spawn: Some(t(9.0)),
                    ..base.clone()
                },
                11.0,
            ),
            (
                State {
                    next_spawn: Some(t(10.0)),
                    ..base.clone()
                },
                11.0,
            ),
            (
                State {
                    reload: Some(Reload {
                        previous: 1,
                        deadline: t(10.4),
                    }),
                    ..stopping(vec![w(1, 1)], true, 30.0, false)
                },
                11.0,
            ),
        ];
        for (i, (state, want)) in cases.into_iter().enumerate() {
            assert_eq!(state.next_wakeup(t(10.0)), t(want), "case {i}");
        }
    }

    /// splitmix64: a small deterministic generator for the random sequences.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n.max(1)
        }
    }

    /// A model of the shell: processes that live until reaped, one wake-up timer,
    /// actions performed and answered, and the invariants checked after every event.
    struct Sim {
        settings: Settings,
        state: State,
        origin: Instant,
        now: Instant,
        /// Workers the policy tracks, alive until their exit is fed.
        alive: Vec<Pid>,
        /// Children left untracked by a re-exec (retiring ones): reaped as unknown.
        orphans: Vec<Pid>,
        /// Pids that got SIGKILL, SIGTERM or SIGINT.
        killed: Vec<Pid>,
        told_to_stop: Vec<Pid>,
        next_pid: i32,
        dice: Dice,
        stop_began: bool,
        exited: bool,
        /// What the sequences reached (so the generator is known to cover the corners).
        seen: std::collections::BTreeMap<&'static str, usize>,
    }

    impl Sim {
        fn new(seed: u64, lazy_apps: bool) -> Sim {
            let settings = Settings {
                workers: 1 + (seed % 3) as usize,
                slots: 2 * (1 + (seed % 3) as usize),
                lazy_apps,
                reload_mercy: Duration::from_secs(4),
                harakiri_ms: Some(3_000),
                rss_limit: Some(1000),
                lifetime: Some(Duration::from_secs(20)),
                max_requests: Some(50),
                max_requests_delta: 1,
                daemons: seed % 2 == 0,
                // Some seeds with room for it adapt their worker count.
                cheaper: (seed % 4 < 2 && seed % 3 > 0).then_some(Cheaper {
                    min: 1,
                    initial: 1,
                    step: 1 + (seed % 2) as usize,
                    overload: 1 + seed % 2,
                }),
            };
            let origin = t(0.0);
            Sim {
                state: State::new(&settings),
                settings,
                origin,
                now: origin,
                alive: Vec::new(),
                orphans: Vec::new(),
                killed: Vec::new(),
                told_to_stop: Vec::new(),
                next_pid: 1000,
                dice: Dice(seed),
                stop_began: false,
                exited: false,
                seen: Default::default(),
            }
        }

        fn see(&mut self, what: &'static str) {
            *self.seen.entry(what).or_default() += 1;
        }

        fn feed(&mut self, event: Event) {
            let desc = format!("{event:?}");
            let actions = step(&mut self.state, &self.settings, event, self.now);
            for action in actions {
                if let Some(answer) = self.perform(action) {
                    self.feed(answer);
                }
            }
            self.check(&desc);
        }

        fn perform(&mut self, action: Action) -> Option<Event> {
            match action {
                Action::Spawn { id, generation } => {
                    assert!(!self.stop_began, "spawn after the stop began");
                    assert!(!self.exited, "spawn after exit");
                    assert_eq!(generation, self.state.generation);
                    assert!(id.get() as usize <= self.settings.slots, "slot {id:?}");
                    assert!(
                        !self.state.workers.iter().any(|w| w.id == id),
                        "slot {id:?} in use: {:?}",
                        self.state
                    );
                    if self.dice.roll(20) == 0 {
                        self.see("fork failed");
                        return Some(Event::SpawnFailed {
                            id,
                            error: "EAGAIN".into(),
                        });
                    }
                    self.see("spawn");
                    self.next_pid += 1;
                    let pid = Pid::from_raw(self.next_pid);
                    self.alive.push(pid);
                    Some(Event::Spawned { id, pid })
                }
                Action::Signal { pid, sig } => {
                    assert!(
                        self.alive.contains(&pid),
                        "{sig} to {pid}, which is not a live worker"
                    );
                    match sig {
                        Signal::SIGKILL => {
                            self.see("kill");
                            self.killed.push(pid);
                        }
                        Signal::SIGTERM | Signal::SIGINT => self.told_to_stop.push(pid),
                        Signal::SIGUSR2 => self.see("harakiri"),
                        _ => {}
                    }
                    None
                }
                Action::SampleQueues => Some(Event::QueuesSampled(
                    (0..self.dice.roll(3))
                        .map(|i| format!("s{i} (1/1)"))
                        .collect(),
                )),
                Action::ReExec(keep) => {
                    for (_, pid) in &keep {
                        assert!(self.alive.contains(pid), "re-exec keeps a dead {pid}");
                    }
                    if self.dice.roll(4) == 0 {
                        self.see("re-exec failed");
                        return Some(Event::ReExecFailed("ENOENT".into()));
                    }
                    self.see("re-exec");
                    // The new image: fresh state, the kept workers adopted, the rest of
                    // the children untracked.
                    let kept: Vec<Pid> = keep.iter().map(|(_, pid)| *pid).collect();
                    let (stay, orphans): (Vec<Pid>, Vec<Pid>) =
                        self.alive.iter().partition(|p| kept.contains(p));
                    self.alive = stay;
                    self.orphans.extend(orphans);
                    self.state = State::new(&self.settings);
                    self.feed(Event::Adopt(keep));
                    if self.dice.roll(4) == 0 && !self.state.workers.is_empty() {
                        self.see("new image without the app");
                        Some(Event::AppLoadFailed("SyntaxError".into()))
                    } else {
                        Some(Event::AppLoaded)
                    }
                }
                Action::Log(line) => {
                    if line.starts_with("cheaper: all") {
                        self.see("cheaper added");
                    } else if line.starts_with("cheaper: idle") {
                        self.see("cheaper retired");
                    } else if line.starts_with("chain reload: replacing") {
                        self.see("chain step");
                    }
                    None
                }
                Action::StopDaemons => {
                    assert!(self.settings.daemons);
                    self.see("daemons stopped");
                    None
                }
                Action::RestartDaemons => {
                    assert!(self.settings.daemons && self.settings.lazy_apps);
                    assert!(!self.stop_began, "daemons restarted while stopping");
                    self.see("daemons restarted");
                    None
                }
                Action::Exit => {
                    assert!(self.stop_began, "exit without a stop");
                    assert!(self.state.workers.is_empty(), "exit with workers left");
                    self.exited = true;
                    None
                }
                Action::CountReload => {
                    self.see("reload done");
                    None
                }
                Action::CountReloadFailed => {
                    self.see("reload failed");
                    None
                }
                Action::CountRespawn { cause, .. } => {
                    self.see(cause.as_str());
                    None
                }
                _ => None,
            }
        }

        fn check(&self, after: &str) {
            let s = &self.state;
            let mut tracked: Vec<Pid> = s.workers.iter().map(|w| w.pid).collect();
            tracked.sort();
            let mut alive = self.alive.clone();
            alive.sort();
            assert_eq!(tracked, alive, "tracked vs alive after {after}: {s:?}");
            let mut ids: Vec<u32> = s.workers.iter().map(|w| w.id.get()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), s.workers.len(), "a slot used twice: {s:?}");
            // Generation 0 is what a previous image ran (its replacements too, passed
            // down across the re-exec), kept when the new image cannot load the app.
            if s.generation != 0 {
                let active = s.active().count();
                assert!(active <= self.settings.workers, "too many: {s:?}");
            }
            let min = self
                .settings
                .cheaper
                .map_or(self.settings.workers, |c| c.min);
            assert!(
                (min..=self.settings.workers).contains(&s.target),
                "target out of bounds after {after}: {s:?}"
            );
            assert!(
                s.workers.len() <= self.settings.slots,
                "more workers than slots: {s:?}"
            );
            if self.stop_began {
                assert!(s.stopping.is_some(), "the stop was forgotten after {after}");
            }
        }

        /// After a tick at `now`: nothing is past a kill deadline without SIGKILL.
        fn check_deadlines(&self) {
            let s = &self.state;
            if let Some(stop) = s.stopping {
                if self.now >= stop.deadline {
                    for w in &s.workers {
                        assert!(self.killed.contains(&w.pid), "{} outlived the stop", w.pid);
                    }
                }
            }
            // (While stopping, the stop's own deadline rules.)
            for w in s.workers.iter().filter(|_| s.stopping.is_none()) {
                if w.harakiri_at
                    .is_some_and(|at| self.now >= at + HARAKIRI_DUMP_GRACE)
                {
                    assert!(self.killed.contains(&w.pid), "{} outlived harakiri", w.pid);
                }
            }
            if let (Some(r), None) = (s.reload, s.stopping) {
                assert!(
                    self.now < r.deadline,
                    "a reload outlived its deadline: {s:?}"
                );
            }
            if !self.exited {
                assert!(
                    s.next_wakeup(self.now) > self.now,
                    "the shell would spin: {s:?}"
                );
            }
        }

        fn tick(&mut self) {
            let now_ms = self.now.duration_since(self.origin).as_millis() as u64 + 10_000;
            let cheap = self.settings.cheaper.is_some();
            let samples = self
                .state
                .workers
                .iter()
                .map(|w| w.id)
                .collect::<Vec<_>>()
                .into_iter()
                .map(|id| Sample {
                    id,
                    requests: self.dice.roll(54),
                    // With cheaper, workers are busy half the time (so it adds and
                    // retires); else rarely (harakiri needs a long one now and then).
                    oldest_request_start_ms: match self.dice.roll(if cheap { 2 } else { 8 }) {
                        0 if cheap => Some(now_ms - self.dice.roll(1_000)),
                        0 => Some(now_ms - self.dice.roll(4_000)),
                        _ => None,
                    },
                    rss: Some(self.dice.roll(1030)),
                })
                .collect();
            self.feed(Event::Tick { now_ms, samples });
            self.check_deadlines();
        }

        /// Let `dt` pass, ticking at every wake-up on the way (as the shell does).
        fn advance(&mut self, dt: Duration) {
            let target = self.now + dt;
            loop {
                let wake = self.state.next_wakeup(self.now);
                if wake > target || self.exited {
                    break;
                }
                self.now = wake;
                self.tick();
            }
            self.now = target;
        }

        /// One random happening.
        fn random(&mut self) {
            match self.dice.roll(100) {
                0..=29 => {
                    let dt = Duration::from_millis(self.dice.roll(5_000));
                    self.advance(dt);
                }
                30..=49 => {
                    // A worker exits: killed ones first, then stopped ones, else any.
                    let pick = self
                        .alive
                        .iter()
                        .chain(&self.orphans)
                        .copied()
                        .find(|p| self.killed.contains(p))
                        .or_else(|| {
                            let told = self.told_to_stop.clone();
                            self.alive.iter().copied().find(|p| told.contains(p))
                        });
                    let pick = match pick {
                        Some(p) if self.dice.roll(2) == 0 => Some(p),
                        _ => {
                            let n = self.alive.len() as u64;
                            (n > 0).then(|| self.alive[self.dice.roll(n) as usize])
                        }
                    };
                    if let Some(pid) = pick {
                        self.alive.retain(|p| *p != pid);
                        self.orphans.retain(|p| *p != pid);
                        let status = match self.dice.roll(3) {
                            0 => ExitStatus::Code(0),
                            1 => ExitStatus::Code(EXIT_APP_LOAD),
                            _ => ExitStatus::Signal(Signal::SIGKILL),
                        };
                        self.feed(Event::Exited { pid, status });
                    }
                }
                50..=69 => {
                    let n = self.state.workers.len() as u64;
                    if n > 0 {
                        let id = self.state.workers[self.dice.roll(n) as usize].id.get();
                        self.feed(Event::Ready(id));
                    }
                }
                70..=74 => {
                    let pid = Pid::from_raw(900_000 + self.dice.roll(100) as i32);
                    self.feed(Event::Exited {
                        pid,
                        status: ExitStatus::Code(1),
                    });
                }
                75..=80 => self.feed(Event::Signal(Signal::SIGHUP)),
                81..=84 => {
                    let touch = match self.dice.roll(4) {
                        0 => Touch::ChainReload,
                        1 => Touch::WorkersReload,
                        2 => Touch::LogRotate,
                        _ => Touch::LogReopen,
                    };
                    self.see("touched");
                    self.feed(Event::Touched(touch, "/f".into()));
                }
                85..=87 => self.feed(Event::Signal(Signal::SIGUSR1)),
                88..=97 => self.tick(),
                _ => self.stop(),
            }
        }

        fn stop(&mut self) {
            let event = match self.dice.roll(4) {
                0 => Event::Signal(Signal::SIGTERM),
                1 => Event::Signal(Signal::SIGINT),
                2 => Event::Signal(Signal::SIGQUIT),
                _ => Event::EmperorGone,
            };
            self.stop_began = true;
            self.feed(event);
        }
    }

    /// Many random sequences: the policy tracks exactly the live workers, never uses a
    /// slot twice nor keeps more than `processes` serving, signals only live workers,
    /// never spawns after a stop began, kills whatever outlives a stop or harakiri
    /// deadline on the tick at that deadline, ends every reload by its deadline, and,
    /// once stopped, exits after the last worker is reaped (killed ones die).
    #[test]
    fn random_sequences_keep_the_invariants() {
        let mut seen = std::collections::BTreeMap::new();
        for seed in 1..=1000u64 {
            let mut sim = Sim::new(seed, seed % 2 == 0);
            if !sim.settings.lazy_apps {
                sim.feed(Event::AppLoaded);
            }
            for _ in 0..400 {
                sim.random();
            }
            if !sim.stop_began {
                sim.stop();
            }
            // Every worker dies once killed: the stop ends within its deadline.
            for _ in 0..200 {
                if sim.exited {
                    break;
                }
                let doomed: Vec<Pid> = sim
                    .alive
                    .iter()
                    .copied()
                    .filter(|p| sim.killed.contains(p) || sim.dice.roll(3) == 0)
                    .collect();
                for pid in doomed {
                    sim.alive.retain(|p| *p != pid);
                    sim.feed(Event::Exited {
                        pid,
                        status: ExitStatus::Signal(Signal::SIGKILL),
                    });
                }
                sim.advance(Duration::from_millis(700));
                // The shell ticks after every wake-up (run_loop), not only at deadlines.
                if !sim.exited {
                    sim.tick();
                }
            }
            assert!(
                sim.exited,
                "seed {seed}: no exit after the stop: {:?}",
                sim.state
            );
            for (k, v) in sim.seen {
                *seen.entry(k).or_insert(0) += v;
            }
        }
        // The generator must reach the interesting corners.
        for what in [
            "spawn",
            "fork failed",
            "kill",
            "harakiri",
            "re-exec",
            "re-exec failed",
            "new image without the app",
            "reload done",
            "reload failed",
            "crash",
            "max_requests",
            "rss",
            "lifetime",
            "touched",
            "chain step",
            "cheaper added",
            "cheaper retired",
            "daemons stopped",
            "daemons restarted",
        ] {
            assert!(seen.get(what).is_some_and(|n| *n >= 5), "{what}: {seen:?}");
        }
    }
}
