//! One vassal's lifecycle as a pure transition function (STYLE §9.3).
//!
//! [`step`] takes the current [`State`], one [`Input`], the time `now` and the
//! [`Policy`], and returns the next state plus the [`Effect`]s the emperor actor must
//! apply, in order. It never reads the clock, never logs and never does I/O, so every
//! rule is a row in a table test.
//!
//! # Contract with the actor
//!
//! - Apply effects in order. [`Effect::Spawn`] is answered with [`Input::Spawned`] or
//!   [`Input::SpawnFailed`] for that generation, fed back before any other input for
//!   this vassal (so `pid: None` is a window no other input normally sees; `step`
//!   tolerates other orders without panicking, and stops a late, unwanted process
//!   gracefully: see [`Input::Spawned`]).
//! - Keep one timer per vassal at the earliest [`Effect::WakeAt`] seen since it last
//!   fired, and send [`Input::Tick`] when it fires. A `Tick` re-emits a `WakeAt` for the
//!   next pending deadline, so the actor may forget later `WakeAt`s once the timer
//!   fired. Extra ticks are harmless. [`State::next_deadline`] gives the same instant.
//! - Log and count [`Effect::Report`]s, and compare [`State::name`] before and after for
//!   the state gauge.
//! - Feed [`Input::Exited`] for every child of this vassal that the reaper collects.
//! - A name that reappears while its state is still `Stopping { then: Retire }` gets
//!   [`Input::ConfigChanged`] (the stop turns into a restart); a new name gets
//!   [`Input::Start`] on a fresh [`State::new`].

use std::fmt;
use std::time::{Duration, Instant};

use rsgi_proto::notify::EXIT_CONFIG;

/// A generation: one process of a vassal. Numbers are assigned by [`step`] from
/// [`State::next_gen`] and never reused within one [`State`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Gen(pub u64);

impl Gen {
    fn succ(self) -> Gen {
        Gen(self.0.saturating_add(1))
    }
}

impl fmt::Display for Gen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A process id. A plain newtype so this module stays free of OS types; the actor
/// converts to `nix::unistd::Pid` at the edge.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Pid(pub i32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a process ended: an exit code or a terminating signal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct ExitInfo {
    /// The exit code, when the process called `exit`.
    pub code: Option<i32>,
    /// The signal number, when a signal killed the process.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// The process exited with `code`.
    pub fn exited(code: i32) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
        }
    }

    /// The process was killed by signal `signal`.
    pub fn signaled(signal: i32) -> ExitInfo {
        ExitInfo {
            code: None,
            signal: Some(signal),
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.signal, self.code) {
            (Some(sig), _) => write!(f, "signal {sig}"),
            (None, Some(code)) => write!(f, "exit code {code}"),
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

/// Timing and retry rules, shared by all vassals (from rsgid's settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// First backoff delay after a failure: `delay(0)`.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
    /// Failures in a row (without becoming loyal in between) before giving up: the
    /// `max_attempts`-th failure goes to [`Phase::Failed`].
    pub max_attempts: u32,
    /// Time `Ready` after which a vassal is loyal: its failure counter resets to 0.
    pub loyal_after: Duration,
    /// How long a new generation may take to send `READY=1`.
    pub start_timeout: Duration,
    /// How long a process may take to exit after SIGTERM before it gets SIGKILL.
    pub stop_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_attempts: 5,
            loyal_after: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(30),
        }
    }
}

/// The backoff delay before retry number `attempt + 1`:
/// `min(backoff_base * 2^attempt, backoff_max)`, saturating.
pub fn delay(policy: &Policy, attempt: u32) -> Duration {
    rsgi_proto::backoff::backoff(policy.backoff_base, policy.backoff_max, attempt)
}

/// What the `idle` check last saw of a serving generation's request counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// The generation.
    pub gen: Gen,
    /// Its requests so far (every worker).
    pub requests: u64,
    /// Since when these numbers have not moved (and no request was in flight).
    pub since: Instant,
}

/// The `idle` rule (uWSGI's `master_check_idle`): a generation is idle when its request
/// count has not moved and no request was in flight for `idle`. Given the last
/// observation and a new sample, returns the observation to keep and whether the
/// generation is now idle. A new generation, a new request or a busy worker starts
/// the count again.
pub fn observe(
    last: Option<Activity>,
    gen: Gen,
    requests: u64,
    busy: bool,
    now: Instant,
    idle: Duration,
) -> (Activity, bool) {
    let fresh = Activity {
        gen,
        requests,
        since: now,
    };
    match last {
        Some(a) if a.gen == gen && a.requests == requests && !busy => {
            (a, now.saturating_duration_since(a.since) >= idle)
        }
        _ => (fresh, false),
    }
}

/// Everything the emperor knows about one vassal's processes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// What the current generation is doing.
    pub phase: Phase,
    /// Old generations told to stop (after a reload, or abandoned starts), each with its
    /// own kill deadline. Never a failure when they exit.
    pub draining: Vec<Draining>,
    /// The generation number the next spawn gets.
    pub next_gen: Gen,
    /// Respawns after failures (counted when a backoff ends and the next generation is
    /// spawned), for `rsgi_vassal_restarts_total`.
    pub restarts: u32,
    /// How the last process of the current or a replaced generation ended.
    pub last_exit: Option<ExitInfo>,
    /// The last problem worth showing in the status (a failed start, a rejected config,
    /// a failed reload). Not cleared by success: it is history.
    pub last_error: Option<String>,
    /// An on-demand vassal (issue 20): a first start and a config change while nothing
    /// runs go to [`Phase::Sleeping`] instead of spawning. Set by the actor from the
    /// config (`on-demand`, or rsgid's `on_demand` setting).
    pub on_demand: bool,
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

/// An old generation that was sent SIGTERM and is expected to exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Draining {
    /// Its generation.
    pub gen: Gen,
    /// Its process.
    pub pid: Pid,
    /// When it gets SIGKILL if still alive.
    #[serde(with = "crate::upgrade::instant_ms")]
    pub deadline: Instant,
    /// SIGKILL was sent (once).
    pub killed: bool,
}

/// Every value of [`State::name`], one per [`Phase`] variant in their order: the words of
/// `rsgictl list` and the `state` label of the `rsgi_vassal_state` metric, which has a
/// series for each.
pub const STATE_NAMES: [&str; 10] = [
    "idle",
    "starting",
    "ready",
    "reloading",
    "stopping",
    "backoff",
    "failed",
    "stopped",
    "retired",
    "sleeping",
];

/// The phase of a vassal's current generation.
///
/// ```text
///                 Start / ConfigChanged / CtlStart / CtlRestart
///   Idle ------------------------------------------------+
///                                                        v
///                 +--------- Tick >= until --------> Starting ---- Ready{gen} ----> Ready
///                 |                                  |  |  ^                        | |  ^
///              Backoff <-- exit, SpawnFailed, -------+  |  |                        | |  |
///                 ^        start timeout (< max)        |  | serving gen exited     | |  |
///                 |                                     |  | mid-reload             | |  |
///                 +------- Ready exits (< max) ---------|--|------------------------+ |  |
///                                                       |  |                          |  |
///              Failed <--- exit 78, or the max-th ------+  |       ConfigChanged,     |  |
///                 |        failure (also from Ready)       |       CtlReload          v  |
///                 |                                        +------------------- Reloading
///                 +-- ConfigChanged / CtlStart /                 Ready{new}: old -> draining
///                     CtlRestart --> Starting                    new exits, SpawnFailed or
///                                                                times out: back to Ready{old}
///
///   Starting, Ready, Reloading --ConfigRemoved / CtlStop / CtlRestart / Shutdown-->
///       Stopping{then} --its process exited--> then = Retire:   Retired (terminal)
///                                              then = Stop:     Stopped
///                                              then = Restart:  Starting (attempt 0)
///                                              then = Shutdown: Stopped (final)
///   Stopping --Tick >= deadline--> SIGKILL (once), still Stopping until the exit
///   Idle, Backoff, Failed, Stopped --ConfigRemoved--> Retired
///   Idle, Backoff, Failed --CtlStop--> Stopped --CtlStart / CtlRestart / ConfigChanged--> Starting
/// ```
///
/// Rules that do not fit the picture:
///
/// - `ConfigBroken` never stops a running process: in `Starting`, `Ready`, `Reloading`
///   and `Stopping` it only records `last_error` and reports `ConfigRejected`; in
///   `Idle`, `Backoff`, `Failed` and `Stopped` it goes to `Failed` with the message.
/// - `ConfigChanged` in `Starting` (or `CtlReload` there) stops the starting generation
///   (SIGTERM, into `draining`) and spawns a new one, attempt 0. In `Reloading` it
///   does the same to the new generation and keeps the old one serving.
/// - A start timeout (in `Starting` or `Reloading`) sends SIGKILL and moves the process
///   to `draining` with `killed = true` at once, so the failure is counted (or the old
///   generation restored) without waiting for the exit; its exit is then ignored.
/// - `Stopping { then: Retire | Shutdown }` must wait for the draining processes too:
///   when its own process exits and some are still draining, the draining one with
///   the earliest deadline takes its place in `Stopping` (it was already signalled).
///   The same happens when `ConfigRemoved` or `Shutdown` finds no current process but
///   draining ones.
/// - `Shutdown` also sends SIGTERM to the draining processes not yet killed. It ends in
///   `Stopped`; the actor sends nothing but exits and ticks after `Shutdown`, so that
///   `Stopped` is final. The actor is done when every vassal is `Stopped` or
///   `Retired` with [`State::pids`] empty.
/// - Inputs that make no sense in a phase (an exit of an unknown pid, `Ready` of an
///   old generation, `Start` when running, anything in `Retired`) change nothing and
///   emit nothing.
///
/// On demand (issue 20):
///
/// ```text
///   Idle --Start (on_demand)--> Sleeping --Wake, CtlStart, CtlRestart--> Starting
///   Idle, Backoff, Failed, Stopped, Sleeping --ConfigChanged (on_demand)--> Sleeping
///   Ready --IdleTimeout--> Stopping{then: Sleep} --its process exited--> Sleeping
///   Sleeping --CtlStop / Shutdown--> Stopped    --ConfigRemoved--> Retired
///   Sleeping --ConfigBroken--> Failed           --SleepFailed--> Backoff (or Failed)
/// ```
///
/// Every entry into `Sleeping` emits [`Effect::Sleep`]: the actor keeps (or binds) the
/// sockets and watches them; a connection waiting in the backlog, even one that arrived
/// while the last generation stopped, is reported at once as [`Input::Wake`].
/// `ConfigChanged` without `on_demand` in `Sleeping` starts the vassal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// Known, not started yet.
    Idle,
    /// A generation was spawned and has not sent `READY=1` yet.
    Starting {
        /// Its generation.
        gen: Gen,
        /// `None` until [`Input::Spawned`].
        pid: Option<Pid>,
        /// When the spawn was asked for (the start timeout counts from here).
        #[serde(with = "crate::upgrade::instant_ms")]
        since: Instant,
        /// Failures in a row before this start.
        attempt: u32,
    },
    /// The current generation serves.
    Ready {
        /// Its generation.
        gen: Gen,
        /// Its process.
        pid: Pid,
        /// When it became ready (loyalty counts from here).
        #[serde(with = "crate::upgrade::instant_ms")]
        since: Instant,
        /// Failures in a row; resets to 0 on a `Tick` once ready for `loyal_after`.
        attempt: u32,
    },
    /// A new generation is starting while the old one keeps serving.
    Reloading {
        /// The serving generation and its process.
        old: (Gen, Pid),
        /// The new generation.
        gen: Gen,
        /// The new generation's process, `None` until [`Input::Spawned`].
        pid: Option<Pid>,
        /// When the new generation was spawned (the start timeout counts from here).
        #[serde(with = "crate::upgrade::instant_ms")]
        since: Instant,
        /// When the old generation became ready (restored if the reload fails).
        #[serde(with = "crate::upgrade::instant_ms")]
        ready_since: Instant,
    },
    /// The current process was sent SIGTERM; `then` says what follows its exit.
    Stopping {
        /// Its generation.
        gen: Gen,
        /// Its process.
        pid: Pid,
        /// When it gets SIGKILL.
        #[serde(with = "crate::upgrade::instant_ms")]
        deadline: Instant,
        /// SIGKILL was sent.
        killed: bool,
        /// What happens once it exited.
        then: Then,
    },
    /// Waiting before the next try after a failure.
    Backoff {
        /// When the next generation is spawned.
        #[serde(with = "crate::upgrade::instant_ms")]
        until: Instant,
        /// Failures in a row so far (the next start carries it).
        attempt: u32,
    },
    /// Gave up. Only `ConfigChanged`, `CtlStart` and `CtlRestart` leave.
    Failed {
        /// Since when.
        #[serde(with = "crate::upgrade::instant_ms")]
        since: Instant,
        /// Why, for the status.
        reason: String,
    },
    /// Stopped on request (control socket) or by `Shutdown`. Stays until `CtlStart`,
    /// `CtlRestart` or `ConfigChanged`.
    Stopped {
        /// Since when.
        #[serde(with = "crate::upgrade::instant_ms")]
        since: Instant,
    },
    /// Terminal: the file is gone and no process is left.
    Retired,
    /// On demand: no process; rsgid holds the sockets and starts a generation when a
    /// connection arrives ([`Input::Wake`]).
    Sleeping {
        /// Since when.
        #[serde(with = "crate::upgrade::instant_ms")]
        since: Instant,
    },
}

/// What follows once a stopping process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Then {
    /// The config file is gone: retire the vassal.
    Retire,
    /// Start a new generation (attempt 0).
    Restart,
    /// Stay stopped.
    Stop,
    /// The emperor is shutting down: stay stopped once every process exited.
    Shutdown,
    /// The vassal was idle (`idle`): go back to [`Phase::Sleeping`].
    Sleep,
}

/// Something that happened to a vassal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// First start of a new vassal (only `Idle` reacts).
    Start,
    /// The config file changed (content or mtime) and is usable.
    ConfigChanged,
    /// The config file changed but cannot be used (parse error, bad socket option).
    ConfigBroken {
        /// Why, with `file:line` where known.
        message: String,
    },
    /// The config file is gone.
    ConfigRemoved,
    /// A spawn asked for by [`Effect::Spawn`] succeeded. A process of a generation
    /// that is no longer wanted (the vassal moved on before this arrived) gets SIGTERM
    /// and goes to `draining`.
    Spawned {
        /// The generation of the spawn.
        gen: Gen,
        /// The new process.
        pid: Pid,
    },
    /// A spawn asked for by [`Effect::Spawn`] failed (exec error, bind error, ...).
    SpawnFailed {
        /// The generation of the spawn.
        gen: Gen,
        /// Why.
        message: String,
        /// Waiting cannot heal it (the socket's directory is missing, another vassal
        /// owns the address, no such user): a first start goes to `Failed` at once
        /// instead of backing off; a reload fails as any failed reload does.
        permanent: bool,
    },
    /// The generation sent `READY=1`.
    Ready {
        /// Which generation.
        gen: Gen,
    },
    /// A process of this vassal exited (collected by the reaper).
    Exited {
        /// Its generation.
        gen: Gen,
        /// Its process.
        pid: Pid,
        /// How it ended.
        exit: ExitInfo,
    },
    /// A timer fired (see [`Effect::WakeAt`]).
    Tick,
    /// `rsgictl stop`.
    CtlStop,
    /// `rsgictl start`.
    CtlStart,
    /// `rsgictl restart`: stop, then start afresh.
    CtlRestart,
    /// `rsgictl reload`: a graceful reload by a new generation.
    CtlReload,
    /// The emperor is shutting down: stop everything gracefully.
    Shutdown,
    /// A connection waits on a sleeping vassal's socket: start it (only `Sleeping`
    /// reacts).
    Wake,
    /// The serving generation handled no request for the vassal's `idle` seconds (the
    /// actor decides, see [`Activity`]): stop it gracefully and sleep (only `Ready`
    /// reacts).
    IdleTimeout,
    /// [`Effect::Sleep`] could not keep or bind the sockets.
    SleepFailed {
        /// Why.
        message: String,
        /// Waiting cannot heal it (as for [`Input::SpawnFailed`]).
        permanent: bool,
    },
}

/// A signal to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sig {
    /// SIGTERM: graceful stop.
    Term,
    /// SIGKILL.
    Kill,
}

/// What the actor must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Spawn generation `gen` (bind sockets if needed, fork, exec `rsgi`), then feed
    /// back [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn {
        /// The generation to spawn.
        gen: Gen,
    },
    /// Send `sig` to `pid`.
    Signal {
        /// The process.
        pid: Pid,
        /// The signal.
        sig: Sig,
    },
    /// Send [`Input::Tick`] at (or soon after) this instant.
    WakeAt(Instant),
    /// The vassal is gone: forget its state and close its sockets.
    Retired,
    /// Something to log, show in the status and count in the metrics.
    Report(Report),
    /// The vassal sleeps: keep (or bind) its sockets, watch them, and feed
    /// [`Input::Wake`] once a connection waits (at once if one already does), or
    /// [`Input::SleepFailed`].
    Sleep,
}

/// Events worth a log line, a status field or a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A generation sent `READY=1` after a start.
    Ready {
        /// The generation.
        gen: Gen,
    },
    /// A reload finished: the new generation is ready, the old one drains.
    Reloaded {
        /// The new generation.
        gen: Gen,
    },
    /// A reload failed; the old generation keeps serving.
    ReloadFailed {
        /// Why.
        reason: String,
    },
    /// A start or a running generation failed; a retry is scheduled.
    Crashed {
        /// How the process ended, when it did (not for a failed spawn or a timeout).
        exit: Option<ExitInfo>,
        /// What went wrong, for the log.
        reason: String,
        /// Failures in a row, this one included.
        attempt: u32,
        /// Delay before the retry.
        retry_in: Duration,
    },
    /// Gave up: the vassal is `Failed`.
    Failed {
        /// Why.
        reason: String,
    },
    /// A config change was rejected; what runs keeps running.
    ConfigRejected {
        /// Why.
        message: String,
    },
    /// The serving generation exited during a reload; the new one becomes current.
    ServingExited {
        /// The old generation.
        gen: Gen,
        /// How it ended.
        exit: ExitInfo,
    },
    /// SIGKILL was sent after a deadline.
    Killed {
        /// The generation.
        gen: Gen,
        /// The process.
        pid: Pid,
        /// Which deadline passed.
        reason: String,
    },
    /// The vassal is stopped (on request or by `Shutdown`).
    Stopped,
    /// The vassal sleeps until the next connection.
    Sleeping,
}

impl State {
    /// A new vassal: `Idle`, next generation 1.
    pub fn new() -> State {
        State {
            phase: Phase::Idle,
            draining: Vec::new(),
            next_gen: Gen(1),
            restarts: 0,
            last_exit: None,
            last_error: None,
            on_demand: false,
        }
    }

    /// The process of the current generation: the serving one while `Reloading`,
    /// the stopping one while `Stopping`.
    pub fn current_pid(&self) -> Option<Pid> {
        match &self.phase {
            Phase::Starting { pid, .. } => *pid,
            Phase::Ready { pid, .. } | Phase::Stopping { pid, .. } => Some(*pid),
            Phase::Reloading { old, .. } => Some(old.1),
            _ => None,
        }
    }

    /// The current generation (the serving one while `Reloading`).
    pub fn current_gen(&self) -> Option<Gen> {
        match &self.phase {
            Phase::Starting { gen, .. }
            | Phase::Ready { gen, .. }
            | Phase::Stopping { gen, .. } => Some(*gen),
            Phase::Reloading { old, .. } => Some(old.0),
            _ => None,
        }
    }

    /// Every process of this vassal that has not exited yet: the current one, the new
    /// one while `Reloading`, and the draining ones.
    pub fn pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self.current_pid().into_iter().collect();
        if let Phase::Reloading { pid: Some(new), .. } = &self.phase {
            pids.push(*new);
        }
        pids.extend(self.draining.iter().map(|d| d.pid));
        pids
    }

    /// The phase as a lower-case word (one of [`STATE_NAMES`]), for status and the
    /// `state` metric label.
    pub fn name(&self) -> &'static str {
        // The variant's place in `Phase`, which is its place in STATE_NAMES.
        STATE_NAMES[match &self.phase {
            Phase::Idle => 0,
            Phase::Starting { .. } => 1,
            Phase::Ready { .. } => 2,
            Phase::Reloading { .. } => 3,
            Phase::Stopping { .. } => 4,
            Phase::Backoff { .. } => 5,
            Phase::Failed { .. } => 6,
            Phase::Stopped { .. } => 7,
            Phase::Retired => 8,
            Phase::Sleeping { .. } => 9,
        }]
    }

    /// The earliest pending deadline (start timeout, loyalty, backoff end, stop or
    /// drain deadline not yet acted on), i.e. when the next [`Input::Tick`] is due.
    pub fn next_deadline(&self, policy: &Policy) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Starting { since, .. } | Phase::Reloading { since, .. } => {
                since.checked_add(policy.start_timeout)
            }
            Phase::Ready { since, attempt, .. } if *attempt > 0 => {
                since.checked_add(policy.loyal_after)
            }
            Phase::Stopping {
                deadline,
                killed: false,
                ..
            } => Some(*deadline),
            Phase::Backoff { until, .. } => Some(*until),
            _ => None,
        };
        let draining = self
            .draining
            .iter()
            .filter(|d| !d.killed)
            .map(|d| d.deadline);
        phase.into_iter().chain(draining).min()
    }

    /// Is `gen` a generation this state still tracks (current, new or draining)?
    fn tracks(&self, gen: Gen) -> bool {
        let in_phase = match &self.phase {
            Phase::Starting { gen: g, .. }
            | Phase::Ready { gen: g, .. }
            | Phase::Stopping { gen: g, .. } => *g == gen,
            Phase::Reloading { old, gen: g, .. } => old.0 == gen || *g == gen,
            _ => false,
        };
        in_phase || self.draining.iter().any(|d| d.gen == gen)
    }
}

/// One transition: the next state and the effects to apply, in order.
/// See [`Phase`] for the rules. Never panics; inputs that make no sense are no-ops.
pub fn step(state: &State, input: Input, now: Instant, policy: &Policy) -> (State, Vec<Effect>) {
    if state.phase == Phase::Retired {
        return (state.clone(), Vec::new());
    }
    let mut m = Machine {
        st: state.clone(),
        fx: Vec::new(),
        now,
        policy,
    };
    m.input(input);
    (m.st, m.fx)
}

/// `now + d`, or `now` if that does not fit in an `Instant` (only with absurd policies).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// `"30 s"`, `"0.5 s"`.
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Why a start or a running generation failed.
struct Failure {
    what: String,
    exit: Option<ExitInfo>,
}

/// The state being built by one [`step`].
struct Machine<'a> {
    st: State,
    fx: Vec<Effect>,
    now: Instant,
    policy: &'a Policy,
}

impl Machine<'_> {
    fn input(&mut self, input: Input) {
        match input {
            Input::Start => {
                if self.st.phase == Phase::Idle {
                    self.start_or_sleep();
                }
            }
            Input::ConfigChanged => self.config_changed(),
            Input::ConfigBroken { message } => self.config_broken(message),
            Input::ConfigRemoved => self.stop_current(Then::Retire),
            Input::Spawned { gen, pid } => self.spawned(gen, pid),
            Input::SpawnFailed {
                gen,
                message,
                permanent,
            } => self.spawn_failed(gen, message, permanent),
            Input::Ready { gen } => self.ready(gen),
            Input::Exited { gen, pid, exit } => self.exited(gen, pid, exit),
            Input::Tick => self.tick(),
            Input::CtlStop => self.ctl_stop(),
            Input::CtlStart => self.ctl_start(),
            Input::CtlRestart => self.ctl_restart(),
            Input::CtlReload => self.reload(),
            Input::Shutdown => self.shutdown(),
            Input::Wake => {
                if matches!(self.st.phase, Phase::Sleeping { .. }) {
                    self.start(0);
                }
            }
            Input::IdleTimeout => {
                if let Phase::Ready { gen, pid, .. } = self.st.phase {
                    self.begin_stopping(gen, pid, Then::Sleep);
                }
            }
            Input::SleepFailed { message, permanent } => {
                if matches!(self.st.phase, Phase::Sleeping { .. }) {
                    let what = format!("cannot keep the sockets while sleeping: {message}");
                    if permanent {
                        self.give_up(what);
                    } else {
                        self.failure(Failure { what, exit: None }, 0);
                    }
                }
            }
        }
    }

    /// A start that is not an operator's request: an on-demand vassal sleeps.
    fn start_or_sleep(&mut self) {
        if self.st.on_demand {
            self.sleep();
        } else {
            self.start(0);
        }
    }

    /// No process; the actor keeps the sockets and reports the next connection.
    fn sleep(&mut self) {
        self.st.phase = Phase::Sleeping { since: self.now };
        self.fx.push(Effect::Sleep);
        self.report(Report::Sleeping);
    }

    fn report(&mut self, report: Report) {
        self.fx.push(Effect::Report(report));
    }

    fn signal(&mut self, pid: Pid, sig: Sig) {
        self.fx.push(Effect::Signal { pid, sig });
    }

    fn alloc_gen(&mut self) -> Gen {
        let gen = self.st.next_gen;
        self.st.next_gen = gen.succ();
        gen
    }

    /// Spawn a new current generation.
    fn start(&mut self, attempt: u32) {
        let gen = self.alloc_gen();
        self.st.phase = Phase::Starting {
            gen,
            pid: None,
            since: self.now,
            attempt,
        };
        self.fx.push(Effect::Spawn { gen });
        self.fx
            .push(Effect::WakeAt(later(self.now, self.policy.start_timeout)));
    }

    /// SIGTERM an old generation and track it until it exits.
    fn drain(&mut self, gen: Gen, pid: Pid) {
        let deadline = later(self.now, self.policy.stop_timeout);
        self.st.draining.push(Draining {
            gen,
            pid,
            deadline,
            killed: false,
        });
        self.signal(pid, Sig::Term);
        self.fx.push(Effect::WakeAt(deadline));
    }

    /// SIGKILL a generation that missed its start deadline and track it until it exits.
    fn drain_killed(&mut self, gen: Gen, pid: Pid) {
        self.st.draining.push(Draining {
            gen,
            pid,
            deadline: self.now,
            killed: true,
        });
        self.signal(pid, Sig::Kill);
        self.report(Report::Killed {
            gen,
            pid,
            reason: format!("no READY=1 within {}", secs(self.policy.start_timeout)),
        });
    }

    fn begin_stopping(&mut self, gen: Gen, pid: Pid, then: Then) {
        let deadline = later(self.now, self.policy.stop_timeout);
        self.st.phase = Phase::Stopping {
            gen,
            pid,
            deadline,
            killed: false,
            then,
        };
        self.signal(pid, Sig::Term);
        self.fx.push(Effect::WakeAt(deadline));
    }

    /// There is no current process (any more): carry out `then`.
    fn no_process(&mut self, then: Then) {
        match then {
            Then::Restart => self.start(0),
            Then::Sleep => self.sleep(),
            Then::Stop => {
                self.st.phase = Phase::Stopped { since: self.now };
                self.report(Report::Stopped);
            }
            Then::Retire | Then::Shutdown => {
                // Wait for the draining processes: the one due first becomes the
                // stopping one (it already got SIGTERM and a WakeAt).
                let first = self
                    .st
                    .draining
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, d)| d.deadline)
                    .map(|(i, _)| i);
                match first {
                    Some(i) => {
                        let d = self.st.draining.remove(i);
                        self.st.phase = Phase::Stopping {
                            gen: d.gen,
                            pid: d.pid,
                            deadline: d.deadline,
                            killed: d.killed,
                            then,
                        };
                    }
                    None if then == Then::Retire => {
                        self.st.phase = Phase::Retired;
                        self.fx.push(Effect::Retired);
                    }
                    None => {
                        self.st.phase = Phase::Stopped { since: self.now };
                        self.report(Report::Stopped);
                    }
                }
            }
        }
    }

    /// A start or a running generation failed: back off, or give up.
    fn failure(&mut self, failure: Failure, attempt: u32) {
        self.st.last_error = Some(failure.what.clone());
        if let Some(exit) = failure.exit.filter(|e| e.code == Some(EXIT_CONFIG)) {
            return self.give_up(format!("bad configuration ({exit})"));
        }
        let next = attempt.saturating_add(1);
        if next >= self.policy.max_attempts {
            return self.give_up(format!("{}; gave up after {next} attempts", failure.what));
        }
        let retry_in = delay(self.policy, attempt);
        let until = later(self.now, retry_in);
        self.st.phase = Phase::Backoff {
            until,
            attempt: next,
        };
        self.report(Report::Crashed {
            exit: failure.exit,
            reason: failure.what,
            attempt: next,
            retry_in,
        });
        self.fx.push(Effect::WakeAt(until));
    }

    fn give_up(&mut self, reason: String) {
        self.st.last_error = Some(reason.clone());
        self.st.phase = Phase::Failed {
            since: self.now,
            reason: reason.clone(),
        };
        self.report(Report::Failed { reason });
    }

    /// The new generation of a reload failed: the old one serves on.
    fn reload_failed(&mut self, reason: String) {
        if let Phase::Reloading {
            old, ready_since, ..
        } = self.st.phase
        {
            self.st.phase = Phase::Ready {
                gen: old.0,
                pid: old.1,
                since: ready_since,
                attempt: 0,
            };
            self.st.last_error = Some(reason.clone());
            self.report(Report::ReloadFailed { reason });
        }
    }

    fn config_changed(&mut self) {
        match &mut self.st.phase {
            Phase::Idle
            | Phase::Backoff { .. }
            | Phase::Failed { .. }
            | Phase::Stopped { .. }
            | Phase::Sleeping { .. } => self.start_or_sleep(),
            Phase::Starting { .. } | Phase::Ready { .. } | Phase::Reloading { .. } => self.reload(),
            Phase::Stopping { then, .. } => {
                if matches!(then, Then::Stop | Then::Retire) {
                    *then = Then::Restart;
                }
            }
            Phase::Retired => {}
        }
    }

    /// A graceful reload (`ConfigChanged` or `CtlReload` while running).
    fn reload(&mut self) {
        match self.st.phase.clone() {
            Phase::Starting { gen, pid, .. } => {
                if let Some(pid) = pid {
                    self.drain(gen, pid);
                }
                self.start(0);
            }
            Phase::Ready {
                gen, pid, since, ..
            } => self.begin_reload((gen, pid), since),
            Phase::Reloading {
                old,
                gen,
                pid,
                ready_since,
                ..
            } => {
                if let Some(pid) = pid {
                    self.drain(gen, pid);
                }
                self.begin_reload(old, ready_since);
            }
            _ => {}
        }
    }

    fn begin_reload(&mut self, old: (Gen, Pid), ready_since: Instant) {
        let gen = self.alloc_gen();
        self.st.phase = Phase::Reloading {
            old,
            gen,
            pid: None,
            since: self.now,
            ready_since,
        };
        self.fx.push(Effect::Spawn { gen });
        self.fx
            .push(Effect::WakeAt(later(self.now, self.policy.start_timeout)));
    }

    fn config_broken(&mut self, message: String) {
        match self.st.phase {
            Phase::Idle
            | Phase::Backoff { .. }
            | Phase::Failed { .. }
            | Phase::Stopped { .. }
            | Phase::Sleeping { .. } => self.give_up(message),
            Phase::Starting { .. }
            | Phase::Ready { .. }
            | Phase::Reloading { .. }
            | Phase::Stopping { .. } => {
                self.st.last_error = Some(message.clone());
                self.report(Report::ConfigRejected { message });
            }
            Phase::Retired => {}
        }
    }

    /// Stop the current process (and a reload's new one), then carry out `then`.
    /// Used by `ConfigRemoved`, `CtlStop`, `CtlRestart` and `Shutdown` while running.
    fn stop_current(&mut self, then: Then) {
        match self.st.phase.clone() {
            Phase::Starting { gen, pid, .. } => match pid {
                Some(pid) => self.begin_stopping(gen, pid, then),
                None => self.no_process(then),
            },
            Phase::Ready { gen, pid, .. } => self.begin_stopping(gen, pid, then),
            Phase::Reloading { old, gen, pid, .. } => {
                if let Some(pid) = pid {
                    self.drain(gen, pid);
                }
                self.begin_stopping(old.0, old.1, then);
            }
            Phase::Stopping { .. } => {
                if let Phase::Stopping { then: current, .. } = &mut self.st.phase {
                    *current = match (*current, then) {
                        // The file is gone: nothing else makes sense any more.
                        (_, Then::Retire) => Then::Retire,
                        (Then::Retire, _) => Then::Retire,
                        (_, Then::Shutdown) | (Then::Shutdown, _) => Then::Shutdown,
                        (_, other) => other,
                    };
                }
            }
            Phase::Idle | Phase::Backoff { .. } | Phase::Failed { .. } | Phase::Sleeping { .. } => {
                self.no_process(then)
            }
            Phase::Stopped { .. } => match then {
                // Already stopped: only leaving for good is news.
                Then::Stop => {}
                Then::Shutdown if self.st.draining.is_empty() => {}
                _ => self.no_process(then),
            },
            Phase::Retired => {}
        }
    }

    fn ctl_stop(&mut self) {
        self.stop_current(Then::Stop);
    }

    fn ctl_start(&mut self) {
        match &mut self.st.phase {
            Phase::Idle
            | Phase::Backoff { .. }
            | Phase::Failed { .. }
            | Phase::Stopped { .. }
            | Phase::Sleeping { .. } => self.start(0),
            Phase::Stopping { then, .. } if matches!(*then, Then::Stop | Then::Sleep) => {
                *then = Then::Restart
            }
            _ => {}
        }
    }

    fn ctl_restart(&mut self) {
        match self.st.phase {
            Phase::Idle
            | Phase::Backoff { .. }
            | Phase::Failed { .. }
            | Phase::Stopped { .. }
            | Phase::Sleeping { .. } => self.start(0),
            _ => self.stop_current(Then::Restart),
        }
    }

    fn shutdown(&mut self) {
        if matches!(
            self.st.phase,
            Phase::Stopping {
                then: Then::Shutdown | Then::Retire,
                ..
            }
        ) {
            return;
        }
        let pids: Vec<Pid> = self
            .st
            .draining
            .iter()
            .filter(|d| !d.killed)
            .map(|d| d.pid)
            .collect();
        for pid in pids {
            self.signal(pid, Sig::Term);
        }
        self.stop_current(Then::Shutdown);
    }

    fn spawned(&mut self, gen: Gen, pid: Pid) {
        match &mut self.st.phase {
            Phase::Starting {
                gen: g,
                pid: p @ None,
                ..
            }
            | Phase::Reloading {
                gen: g,
                pid: p @ None,
                ..
            } if *g == gen => {
                *p = Some(pid);
                return;
            }
            _ => {}
        }
        // A process we no longer want (the vassal moved on before the spawn was
        // reported): stop it gracefully rather than leave an orphan.
        if gen < self.st.next_gen && !self.st.tracks(gen) && !self.st.pids().contains(&pid) {
            self.drain(gen, pid);
        }
    }

    fn spawn_failed(&mut self, gen: Gen, message: String, permanent: bool) {
        match self.st.phase {
            Phase::Starting {
                gen: g, pid: None, ..
            } if g == gen && permanent => self.give_up(format!("cannot spawn: {message}")),
            Phase::Starting {
                gen: g,
                pid: None,
                attempt,
                ..
            } if g == gen => self.failure(
                Failure {
                    what: format!("cannot spawn: {message}"),
                    exit: None,
                },
                attempt,
            ),
            Phase::Reloading {
                gen: g, pid: None, ..
            } if g == gen => {
                self.reload_failed(format!("cannot spawn the new generation: {message}"))
            }
            _ => {}
        }
    }

    fn ready(&mut self, gen: Gen) {
        match self.st.phase {
            Phase::Starting {
                gen: g,
                pid: Some(pid),
                attempt,
                ..
            } if g == gen => {
                self.st.phase = Phase::Ready {
                    gen,
                    pid,
                    since: self.now,
                    attempt,
                };
                self.report(Report::Ready { gen });
                self.fx
                    .push(Effect::WakeAt(later(self.now, self.policy.loyal_after)));
            }
            Phase::Reloading {
                old,
                gen: g,
                pid: Some(pid),
                ..
            } if g == gen => {
                self.drain(old.0, old.1);
                self.st.phase = Phase::Ready {
                    gen,
                    pid,
                    since: self.now,
                    attempt: 0,
                };
                self.report(Report::Reloaded { gen });
            }
            _ => {}
        }
    }

    fn exited(&mut self, gen: Gen, pid: Pid, exit: ExitInfo) {
        if let Some(i) = self
            .st
            .draining
            .iter()
            .position(|d| d.gen == gen && d.pid == pid)
        {
            self.st.draining.remove(i);
            return;
        }
        match self.st.phase.clone() {
            Phase::Starting {
                gen: g,
                pid: Some(p),
                attempt,
                ..
            } if (g, p) == (gen, pid) => {
                self.st.last_exit = Some(exit);
                self.failure(
                    Failure {
                        what: format!("exited with {exit} before READY=1"),
                        exit: Some(exit),
                    },
                    attempt,
                );
            }
            Phase::Ready {
                gen: g,
                pid: p,
                since,
                attempt,
            } if (g, p) == (gen, pid) => {
                self.st.last_exit = Some(exit);
                let loyal = self.now.saturating_duration_since(since) >= self.policy.loyal_after;
                let attempt = if loyal { 0 } else { attempt };
                self.failure(
                    Failure {
                        what: format!("exited with {exit}"),
                        exit: Some(exit),
                    },
                    attempt,
                );
            }
            Phase::Reloading {
                gen: g,
                pid: Some(p),
                ..
            } if (g, p) == (gen, pid) => {
                self.st.last_exit = Some(exit);
                self.reload_failed(format!("new generation exited with {exit} before READY=1"));
            }
            Phase::Reloading {
                old,
                gen: new,
                pid: new_pid,
                since,
                ..
            } if old == (gen, pid) => {
                // The serving generation died mid-reload: the new one is all there is.
                self.st.last_exit = Some(exit);
                self.st.last_error = Some(format!(
                    "generation {gen} exited with {exit} during a reload"
                ));
                self.st.phase = Phase::Starting {
                    gen: new,
                    pid: new_pid,
                    since,
                    attempt: 0,
                };
                self.report(Report::ServingExited { gen, exit });
            }
            Phase::Stopping {
                gen: g,
                pid: p,
                then,
                ..
            } if (g, p) == (gen, pid) => {
                // Expected: an exit while stopping is never a failure.
                self.st.last_exit = Some(exit);
                self.no_process(then);
            }
            _ => {}
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        let mut killed = Vec::new();
        for d in self.st.draining.iter_mut() {
            if !d.killed && now >= d.deadline {
                d.killed = true;
                killed.push((d.gen, d.pid));
            }
        }
        for (gen, pid) in killed {
            self.signal(pid, Sig::Kill);
            self.report(Report::Killed {
                gen,
                pid,
                reason: format!("did not stop within {}", secs(self.policy.stop_timeout)),
            });
        }
        let start_timeout = self.policy.start_timeout;
        let timed_out = |since: Instant| now.saturating_duration_since(since) >= start_timeout;
        match self.st.phase.clone() {
            Phase::Starting {
                gen,
                pid,
                since,
                attempt,
            } if timed_out(since) => {
                if let Some(pid) = pid {
                    self.drain_killed(gen, pid);
                }
                self.failure(
                    Failure {
                        what: format!("did not send READY=1 within {}", secs(start_timeout)),
                        exit: None,
                    },
                    attempt,
                );
            }
            Phase::Ready { since, attempt, .. }
                if attempt > 0
                    && now.saturating_duration_since(since) >= self.policy.loyal_after =>
            {
                if let Phase::Ready { attempt, .. } = &mut self.st.phase {
                    *attempt = 0;
                }
            }
            Phase::Reloading {
                gen, pid, since, ..
            } if timed_out(since) => {
                if let Some(pid) = pid {
                    self.drain_killed(gen, pid);
                }
                self.reload_failed(format!("no READY=1 within {}", secs(start_timeout)));
            }
            Phase::Stopping {
                gen,
                pid,
                deadline,
                killed: false,
                ..
            } if now >= deadline => {
                if let Phase::Stopping { killed, .. } = &mut self.st.phase {
                    *killed = true;
                }
                self.signal(pid, Sig::Kill);
                self.report(Report::Killed {
                    gen,
                    pid,
                    reason: format!("did not stop within {}", secs(self.policy.stop_timeout)),
                });
            }
            Phase::Backoff { until, attempt } if now >= until => {
                self.st.restarts = self.st.restarts.saturating_add(1);
                self.start(attempt);
            }
            _ => {}
        }
        // The actor keeps only the earliest WakeAt; tell it the next one again.
        if let Some(next) = self.st.next_deadline(self.policy) {
            let wake = Effect::WakeAt(next);
            if next > now && !self.fx.contains(&wake) {
                self.fx.push(wake);
            }
        }
    }
}

#[cfg(test)]
mod test_utils {
    //! Builders for states, phases and effects, so each table row fits on a few lines.
    //! Fixture generations: `DG` draining, `OLD` serving during a reload, `G` current,
    //! `N` the next one spawned (`next_gen`).

    use super::*;
    use std::sync::OnceLock;

    pub const DG: Gen = Gen(2);
    pub const OLD: Gen = Gen(3);
    pub const G: Gen = Gen(4);
    pub const N: Gen = Gen(5);
    /// Processes: `P` current (or old while reloading), `Q` new, `R` draining.
    pub const P: Pid = Pid(100);
    pub const Q: Pid = Pid(200);
    pub const R: Pid = Pid(300);

    pub fn policy() -> Policy {
        Policy::default()
    }

    /// The instant `secs` after a fixed origin.
    pub fn t(secs: f64) -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs_f64(secs)
    }

    pub fn dur(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    pub fn st(phase: Phase) -> State {
        State {
            phase,
            next_gen: N,
            ..State::new()
        }
    }

    pub fn draining(gen: Gen, pid: Pid, deadline: f64, killed: bool) -> Draining {
        Draining {
            gen,
            pid,
            deadline: t(deadline),
            killed,
        }
    }

    /// `state` with one draining process `(DG, R)` due at `deadline`.
    pub fn with_drain(mut state: State, deadline: f64) -> State {
        state.draining.push(draining(DG, R, deadline, false));
        state
    }

    pub fn starting(gen: Gen, pid: Option<Pid>, since: f64, attempt: u32) -> Phase {
        Phase::Starting {
            gen,
            pid,
            since: t(since),
            attempt,
        }
    }

    pub fn ready(gen: Gen, pid: Pid, since: f64, attempt: u32) -> Phase {
        Phase::Ready {
            gen,
            pid,
            since: t(since),
            attempt,
        }
    }

    /// Reloading from `(OLD, P)` (ready since 0) to `G`, spawned at 10.
    pub fn reloading(pid: Option<Pid>) -> Phase {
        Phase::Reloading {
            old: (OLD, P),
            gen: G,
            pid,
            since: t(10.0),
            ready_since: t(0.0),
        }
    }

    pub fn stopping(gen: Gen, pid: Pid, deadline: f64, killed: bool, then: Then) -> Phase {
        Phase::Stopping {
            gen,
            pid,
            deadline: t(deadline),
            killed,
            then,
        }
    }

    pub fn backoff(until: f64, attempt: u32) -> Phase {
        Phase::Backoff {
            until: t(until),
            attempt,
        }
    }

    pub fn failed(since: f64, reason: &str) -> Phase {
        Phase::Failed {
            since: t(since),
            reason: reason.into(),
        }
    }

    pub fn stopped(since: f64) -> Phase {
        Phase::Stopped { since: t(since) }
    }

    pub fn sleeping(since: f64) -> Phase {
        Phase::Sleeping { since: t(since) }
    }

    /// [`st`] of an on-demand vassal.
    pub fn st_od(phase: Phase) -> State {
        State {
            on_demand: true,
            ..st(phase)
        }
    }

    pub fn spawn(gen: Gen) -> Effect {
        Effect::Spawn { gen }
    }

    pub fn term(pid: Pid) -> Effect {
        Effect::Signal {
            pid,
            sig: Sig::Term,
        }
    }

    pub fn kill(pid: Pid) -> Effect {
        Effect::Signal {
            pid,
            sig: Sig::Kill,
        }
    }

    pub fn wake(at: f64) -> Effect {
        Effect::WakeAt(t(at))
    }

    pub fn rep(report: Report) -> Effect {
        Effect::Report(report)
    }

    pub fn crashed(exit: Option<ExitInfo>, reason: &str, attempt: u32, retry_in: f64) -> Effect {
        rep(Report::Crashed {
            exit,
            reason: reason.into(),
            attempt,
            retry_in: dur(retry_in),
        })
    }

    pub fn failed_report(reason: &str) -> Effect {
        rep(Report::Failed {
            reason: reason.into(),
        })
    }

    pub fn exited(gen: Gen, pid: Pid, code: i32) -> Input {
        Input::Exited {
            gen,
            pid,
            exit: ExitInfo::exited(code),
        }
    }

    pub fn broken() -> Input {
        Input::ConfigBroken {
            message: "app.ini:3: unknown option 'modul'".into(),
        }
    }

    pub fn rejected() -> Effect {
        rep(Report::ConfigRejected {
            message: "app.ini:3: unknown option 'modul'".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::test_utils::*;
    use super::*;

    /// `case!(name: state, input, now => phase, [effects])`, optionally followed by
    /// `, |next| { more assertions on the next state }`. One `#[test]` per row.
    macro_rules! case {
        ($name:ident: $state:expr, $input:expr, $now:expr => $phase:expr, [$($fx:expr),* $(,)?]
         $(, |$next:ident| $check:block)?) => {
            #[test]
            fn $name() {
                let state: State = $state;
                let (next, fx) = step(&state, $input, t($now), &policy());
                assert_eq!(next.phase, $phase, "phase");
                assert_eq!(fx, vec![$($fx),*], "effects");
                $( let $next = &next; $check )?
            }
        };
    }

    // --- Idle ---
    case!(idle_start_spawns: st(Phase::Idle), Input::Start, 0.0
        => starting(N, None, 0.0, 0), [spawn(N), wake(30.0)],
        |s| { assert_eq!(s.next_gen, Gen(6)); });
    case!(idle_config_changed_spawns: st(Phase::Idle), Input::ConfigChanged, 0.0
        => starting(N, None, 0.0, 0), [spawn(N), wake(30.0)]);
    case!(idle_ctl_start_spawns: st(Phase::Idle), Input::CtlStart, 0.0
        => starting(N, None, 0.0, 0), [spawn(N), wake(30.0)]);
    case!(idle_ctl_restart_spawns: st(Phase::Idle), Input::CtlRestart, 0.0
        => starting(N, None, 0.0, 0), [spawn(N), wake(30.0)]);
    case!(idle_ctl_reload_is_a_no_op: st(Phase::Idle), Input::CtlReload, 0.0 => Phase::Idle, []);
    case!(idle_tick_is_a_no_op: st(Phase::Idle), Input::Tick, 0.0 => Phase::Idle, []);
    case!(idle_config_removed_retires: st(Phase::Idle), Input::ConfigRemoved, 0.0
        => Phase::Retired, [Effect::Retired]);
    case!(idle_config_broken_fails: st(Phase::Idle), broken(), 1.0
        => failed(1.0, "app.ini:3: unknown option 'modul'"),
        [failed_report("app.ini:3: unknown option 'modul'")],
        |s| { assert_eq!(s.last_error.as_deref(), Some("app.ini:3: unknown option 'modul'")); });
    case!(idle_ctl_stop_stops: st(Phase::Idle), Input::CtlStop, 1.0
        => stopped(1.0), [rep(Report::Stopped)]);
    case!(idle_shutdown_stops: st(Phase::Idle), Input::Shutdown, 1.0
        => stopped(1.0), [rep(Report::Stopped)]);

    // --- Starting ---
    case!(starting_spawned_records_pid: st(starting(G, None, 0.0, 0)),
        Input::Spawned { gen: G, pid: P }, 0.0 => starting(G, Some(P), 0.0, 0), []);
    case!(starting_second_spawned_is_ignored: st(starting(G, Some(P), 0.0, 0)),
        Input::Spawned { gen: G, pid: Q }, 0.0 => starting(G, Some(P), 0.0, 0), []);
    case!(starting_ready_becomes_ready_and_keeps_attempt: st(starting(G, Some(P), 0.0, 2)),
        Input::Ready { gen: G }, 3.0
        => ready(G, P, 3.0, 2), [rep(Report::Ready { gen: G }), wake(13.0)]);
    case!(starting_ready_before_spawned_is_ignored: st(starting(G, None, 0.0, 0)),
        Input::Ready { gen: G }, 3.0 => starting(G, None, 0.0, 0), []);
    case!(starting_ready_of_another_gen_is_ignored: st(starting(G, Some(P), 0.0, 0)),
        Input::Ready { gen: OLD }, 3.0 => starting(G, Some(P), 0.0, 0), []);
    case!(starting_exit_backs_off: st(starting(G, Some(P), 0.0, 0)), exited(G, P, 1), 2.0
    => backoff(2.5, 1),
    [crashed(Some(ExitInfo::exited(1)), "exited with exit code 1 before READY=1", 1, 0.5),
     wake(2.5)],
    |s| {
        assert_eq!(s.last_exit, Some(ExitInfo::exited(1)));
        assert_eq!(s.last_error.as_deref(), Some("exited with exit code 1 before READY=1"));
    });
    case!(starting_exit_backoff_doubles: st(starting(G, Some(P), 0.0, 3)), exited(G, P, 1), 2.0
        => backoff(6.0, 4),
        [crashed(Some(ExitInfo::exited(1)), "exited with exit code 1 before READY=1", 4, 4.0),
         wake(6.0)]);
    case!(starting_exit_at_max_attempts_fails: st(starting(G, Some(P), 0.0, 4)),
        exited(G, P, 1), 2.0
        => failed(2.0, "exited with exit code 1 before READY=1; gave up after 5 attempts"),
        [failed_report("exited with exit code 1 before READY=1; gave up after 5 attempts")]);
    case!(starting_exit_78_fails_at_once: st(starting(G, Some(P), 0.0, 0)), exited(G, P, 78), 2.0
        => failed(2.0, "bad configuration (exit code 78)"),
        [failed_report("bad configuration (exit code 78)")],
        |s| { assert_eq!(s.last_error.as_deref(), Some("bad configuration (exit code 78)")); });
    case!(starting_killed_by_a_signal: st(starting(G, Some(P), 0.0, 0)),
        Input::Exited { gen: G, pid: P, exit: ExitInfo::signaled(9) }, 2.0
        => backoff(2.5, 1),
        [crashed(Some(ExitInfo::signaled(9)), "exited with signal 9 before READY=1", 1, 0.5),
         wake(2.5)]);
    case!(starting_spawn_failed_backs_off: st(starting(G, None, 0.0, 1)),
        Input::SpawnFailed { gen: G, message: "exec rsgi: No such file".into(), permanent: false }, 2.0
        => backoff(3.0, 2),
        [crashed(None, "cannot spawn: exec rsgi: No such file", 2, 1.0), wake(3.0)]);
    case!(starting_permanent_spawn_failure_fails_at_once: st(starting(G, None, 0.0, 1)),
        Input::SpawnFailed { gen: G, message: "socket x is already used by vassal 'b'".into(),
            permanent: true }, 2.0
        => failed(2.0, "cannot spawn: socket x is already used by vassal 'b'"),
        [rep(Report::Failed { reason: "cannot spawn: socket x is already used by vassal 'b'".into() })]);
    case!(reloading_permanent_spawn_failure_keeps_old: st(reloading(None)),
        Input::SpawnFailed { gen: G, message: "no such directory".into(), permanent: true }, 12.0
        => ready(OLD, P, 0.0, 0),
        [rep(Report::ReloadFailed {
            reason: "cannot spawn the new generation: no such directory".into() })]);
    case!(starting_spawn_failed_of_another_gen_is_ignored: st(starting(G, None, 0.0, 1)),
        Input::SpawnFailed { gen: OLD, message: "x".into(), permanent: false }, 2.0 => starting(G, None, 0.0, 1), []);
    case!(starting_timeout_kills_and_counts_a_failure: st(starting(G, Some(P), 0.0, 0)),
    Input::Tick, 30.0
    => backoff(30.5, 1),
    [kill(P),
     rep(Report::Killed { gen: G, pid: P, reason: "no READY=1 within 30 s".into() }),
     crashed(None, "did not send READY=1 within 30 s", 1, 0.5),
     wake(30.5)],
    |s| {
        assert_eq!(s.draining, [draining(G, P, 30.0, true)]);
        assert_eq!(s.last_error.as_deref(), Some("did not send READY=1 within 30 s"));
    });
    case!(starting_timeout_without_pid_counts_a_failure: st(starting(G, None, 0.0, 0)),
        Input::Tick, 31.0
        => backoff(31.5, 1),
        [crashed(None, "did not send READY=1 within 30 s", 1, 0.5), wake(31.5)]);
    case!(starting_tick_before_timeout_rearms: st(starting(G, Some(P), 0.0, 0)), Input::Tick, 29.0
        => starting(G, Some(P), 0.0, 0), [wake(30.0)]);
    case!(starting_killed_exit_after_timeout_is_no_failure: {
            let mut s = st(backoff(30.5, 1));
            s.draining.push(draining(G, P, 30.0, true));
            s
        }, Input::Exited { gen: G, pid: P, exit: ExitInfo::signaled(9) }, 30.1
        => backoff(30.5, 1), [],
        |s| { assert!(s.draining.is_empty()); });
    case!(starting_config_changed_replaces_the_start: st(starting(G, Some(P), 0.0, 3)),
        Input::ConfigChanged, 5.0
        => starting(N, None, 5.0, 0), [term(P), wake(35.0), spawn(N), wake(35.0)],
        |s| { assert_eq!(s.draining, [draining(G, P, 35.0, false)]); });
    case!(starting_ctl_reload_replaces_the_start: st(starting(G, Some(P), 0.0, 0)),
        Input::CtlReload, 5.0
        => starting(N, None, 5.0, 0), [term(P), wake(35.0), spawn(N), wake(35.0)]);
    case!(starting_config_broken_keeps_starting: st(starting(G, Some(P), 0.0, 0)), broken(), 5.0
        => starting(G, Some(P), 0.0, 0), [rejected()],
        |s| { assert_eq!(s.last_error.as_deref(), Some("app.ini:3: unknown option 'modul'")); });
    case!(starting_config_removed_stops: st(starting(G, Some(P), 0.0, 0)), Input::ConfigRemoved, 1.0
        => stopping(G, P, 31.0, false, Then::Retire), [term(P), wake(31.0)]);
    case!(starting_config_removed_before_spawned_retires: st(starting(G, None, 0.0, 0)),
        Input::ConfigRemoved, 1.0 => Phase::Retired, [Effect::Retired]);
    case!(starting_ctl_stop_stops: st(starting(G, Some(P), 0.0, 0)), Input::CtlStop, 1.0
        => stopping(G, P, 31.0, false, Then::Stop), [term(P), wake(31.0)]);
    case!(starting_ctl_restart_restarts: st(starting(G, Some(P), 0.0, 0)), Input::CtlRestart, 1.0
        => stopping(G, P, 31.0, false, Then::Restart), [term(P), wake(31.0)]);
    case!(starting_ctl_start_is_a_no_op: st(starting(G, Some(P), 0.0, 0)), Input::CtlStart, 1.0
        => starting(G, Some(P), 0.0, 0), []);
    case!(starting_start_is_a_no_op: st(starting(G, Some(P), 0.0, 0)), Input::Start, 1.0
        => starting(G, Some(P), 0.0, 0), []);
    case!(starting_exit_of_unknown_pid_is_ignored: st(starting(G, Some(P), 0.0, 0)),
        exited(G, Q, 1), 1.0 => starting(G, Some(P), 0.0, 0), []);

    // --- Ready ---
    case!(ready_crash_backs_off: st(ready(G, P, 0.0, 2)), exited(G, P, 1), 5.0
        => backoff(7.0, 3),
        [crashed(Some(ExitInfo::exited(1)), "exited with exit code 1", 3, 2.0), wake(7.0)]);
    case!(ready_crash_after_loyal_run_resets_attempt: st(ready(G, P, 0.0, 3)), exited(G, P, 1), 10.0
        => backoff(10.5, 1),
        [crashed(Some(ExitInfo::exited(1)), "exited with exit code 1", 1, 0.5), wake(10.5)]);
    case!(ready_crash_at_max_attempts_fails: st(ready(G, P, 0.0, 4)), exited(G, P, 1), 1.0
        => failed(1.0, "exited with exit code 1; gave up after 5 attempts"),
        [failed_report("exited with exit code 1; gave up after 5 attempts")]);
    case!(ready_exit_78_fails: st(ready(G, P, 0.0, 0)), exited(G, P, 78), 100.0
        => failed(100.0, "bad configuration (exit code 78)"),
        [failed_report("bad configuration (exit code 78)")]);
    case!(ready_tick_when_loyal_resets_attempt: st(ready(G, P, 0.0, 3)), Input::Tick, 10.0
        => ready(G, P, 0.0, 0), []);
    case!(ready_tick_before_loyal_rearms: st(ready(G, P, 0.0, 3)), Input::Tick, 9.0
        => ready(G, P, 0.0, 3), [wake(10.0)]);
    case!(ready_config_changed_reloads: st(ready(G, P, 0.0, 1)), Input::ConfigChanged, 20.0
        => Phase::Reloading { old: (G, P), gen: N, pid: None, since: t(20.0), ready_since: t(0.0) },
        [spawn(N), wake(50.0)]);
    case!(ready_ctl_reload_reloads: st(ready(G, P, 0.0, 0)), Input::CtlReload, 20.0
        => Phase::Reloading { old: (G, P), gen: N, pid: None, since: t(20.0), ready_since: t(0.0) },
        [spawn(N), wake(50.0)]);
    case!(ready_config_broken_keeps_serving: st(ready(G, P, 0.0, 0)), broken(), 20.0
        => ready(G, P, 0.0, 0), [rejected()]);
    case!(ready_config_removed_stops: st(ready(G, P, 0.0, 0)), Input::ConfigRemoved, 20.0
        => stopping(G, P, 50.0, false, Then::Retire), [term(P), wake(50.0)]);
    case!(ready_ctl_stop_stops: st(ready(G, P, 0.0, 0)), Input::CtlStop, 20.0
        => stopping(G, P, 50.0, false, Then::Stop), [term(P), wake(50.0)]);
    case!(ready_ctl_restart_stops_then_restarts: st(ready(G, P, 0.0, 0)), Input::CtlRestart, 20.0
        => stopping(G, P, 50.0, false, Then::Restart), [term(P), wake(50.0)]);
    case!(ready_shutdown_terms_everything: with_drain(st(ready(G, P, 0.0, 0)), 25.0),
        Input::Shutdown, 20.0
        => stopping(G, P, 50.0, false, Then::Shutdown), [term(R), term(P), wake(50.0)]);
    case!(ready_second_ready_is_ignored: st(ready(G, P, 0.0, 0)), Input::Ready { gen: G }, 20.0
        => ready(G, P, 0.0, 0), []);
    case!(ready_ctl_start_is_a_no_op: st(ready(G, P, 0.0, 0)), Input::CtlStart, 20.0
        => ready(G, P, 0.0, 0), []);
    case!(ready_exit_of_old_gen_is_ignored: st(ready(G, P, 0.0, 0)), exited(OLD, Pid(7), 0), 20.0
        => ready(G, P, 0.0, 0), []);

    // --- Reloading: old (OLD, P) serves, new G spawned at 10 ---
    case!(reloading_spawned_records_new_pid: st(reloading(None)),
        Input::Spawned { gen: G, pid: Q }, 11.0 => reloading(Some(Q)), []);
    case!(reloading_ready_swaps_generations: st(reloading(Some(Q))), Input::Ready { gen: G }, 12.0
        => ready(G, Q, 12.0, 0), [term(P), wake(42.0), rep(Report::Reloaded { gen: G })],
        |s| { assert_eq!(s.draining, [draining(OLD, P, 42.0, false)]); });
    case!(reloading_ready_of_old_gen_is_ignored: st(reloading(Some(Q))),
        Input::Ready { gen: OLD }, 12.0 => reloading(Some(Q)), []);
    case!(reloading_new_exit_keeps_old: st(reloading(Some(Q))), exited(G, Q, 1), 12.0
    => ready(OLD, P, 0.0, 0),
    [rep(Report::ReloadFailed {
        reason: "new generation exited with exit code 1 before READY=1".into() })],
    |s| {
        assert_eq!(s.last_error.as_deref(),
            Some("new generation exited with exit code 1 before READY=1"));
        assert!(s.draining.is_empty());
    });
    case!(reloading_spawn_failed_keeps_old: st(reloading(None)),
        Input::SpawnFailed { gen: G, message: "fork: EAGAIN".into(), permanent: false }, 12.0
        => ready(OLD, P, 0.0, 0),
        [rep(Report::ReloadFailed {
            reason: "cannot spawn the new generation: fork: EAGAIN".into() })]);
    case!(reloading_timeout_kills_new_keeps_old: st(reloading(Some(Q))), Input::Tick, 40.0
        => ready(OLD, P, 0.0, 0),
        [kill(Q),
         rep(Report::Killed { gen: G, pid: Q, reason: "no READY=1 within 30 s".into() }),
         rep(Report::ReloadFailed { reason: "no READY=1 within 30 s".into() })],
        |s| { assert_eq!(s.draining, [draining(G, Q, 40.0, true)]); });
    case!(reloading_tick_before_timeout_rearms: st(reloading(Some(Q))), Input::Tick, 39.0
        => reloading(Some(Q)), [wake(40.0)]);
    case!(reloading_old_exit_leaves_new_as_starting: st(reloading(Some(Q))),
        Input::Exited { gen: OLD, pid: P, exit: ExitInfo::signaled(9) }, 12.0
        => starting(G, Some(Q), 10.0, 0),
        [rep(Report::ServingExited { gen: OLD, exit: ExitInfo::signaled(9) })]);
    case!(reloading_config_changed_restarts_the_reload: st(reloading(Some(Q))),
        Input::ConfigChanged, 12.0
        => Phase::Reloading { old: (OLD, P), gen: N, pid: None, since: t(12.0), ready_since: t(0.0) },
        [term(Q), wake(42.0), spawn(N), wake(42.0)],
        |s| { assert_eq!(s.draining, [draining(G, Q, 42.0, false)]); });
    case!(reloading_config_broken_keeps_both: st(reloading(Some(Q))), broken(), 12.0
        => reloading(Some(Q)), [rejected()]);
    case!(reloading_config_removed_stops_both: st(reloading(Some(Q))), Input::ConfigRemoved, 12.0
        => stopping(OLD, P, 42.0, false, Then::Retire),
        [term(Q), wake(42.0), term(P), wake(42.0)],
        |s| { assert_eq!(s.draining, [draining(G, Q, 42.0, false)]); });
    case!(reloading_ctl_stop_stops_both: st(reloading(Some(Q))), Input::CtlStop, 12.0
        => stopping(OLD, P, 42.0, false, Then::Stop), [term(Q), wake(42.0), term(P), wake(42.0)]);

    // --- Stopping: (G, P), deadline 30 ---
    case!(stopping_retire_exit_retires: st(stopping(G, P, 30.0, false, Then::Retire)),
        exited(G, P, 0), 5.0 => Phase::Retired, [Effect::Retired],
        |s| { assert_eq!(s.last_exit, Some(ExitInfo::exited(0))); });
    case!(stopping_retire_exit_waits_for_draining:
        with_drain(st(stopping(G, P, 30.0, false, Then::Retire)), 40.0),
        exited(G, P, 0), 5.0 => stopping(DG, R, 40.0, false, Then::Retire), [],
        |s| { assert!(s.draining.is_empty()); });
    case!(stopping_retire_last_draining_exit_retires:
        st(stopping(DG, R, 40.0, false, Then::Retire)), exited(DG, R, 0), 6.0
        => Phase::Retired, [Effect::Retired]);
    case!(stopping_stop_exit_is_stopped: st(stopping(G, P, 30.0, false, Then::Stop)),
        exited(G, P, 0), 5.0 => stopped(5.0), [rep(Report::Stopped)]);
    case!(stopping_stop_exit_leaves_draining_alone:
        with_drain(st(stopping(G, P, 30.0, false, Then::Stop)), 40.0),
        exited(G, P, 0), 5.0 => stopped(5.0), [rep(Report::Stopped)],
        |s| { assert_eq!(s.draining, [draining(DG, R, 40.0, false)]); });
    case!(stopping_restart_exit_starts_afresh: st(stopping(G, P, 30.0, false, Then::Restart)),
        exited(G, P, 0), 5.0 => starting(N, None, 5.0, 0), [spawn(N), wake(35.0)]);
    case!(stopping_shutdown_exit_is_stopped: st(stopping(G, P, 30.0, false, Then::Shutdown)),
        exited(G, P, 0), 5.0 => stopped(5.0), [rep(Report::Stopped)]);
    case!(stopping_shutdown_exit_waits_for_draining:
        with_drain(st(stopping(G, P, 30.0, false, Then::Shutdown)), 40.0),
        exited(G, P, 0), 5.0 => stopping(DG, R, 40.0, false, Then::Shutdown), []);
    case!(stopping_exit_with_failure_code_is_no_failure:
        st(stopping(G, P, 30.0, false, Then::Stop)), exited(G, P, 78), 5.0
        => stopped(5.0), [rep(Report::Stopped)]);
    case!(stopping_tick_at_deadline_kills: st(stopping(G, P, 30.0, false, Then::Stop)),
        Input::Tick, 30.0 => stopping(G, P, 30.0, true, Then::Stop),
        [kill(P), rep(Report::Killed { gen: G, pid: P, reason: "did not stop within 30 s".into() })]);
    case!(stopping_tick_after_kill_does_not_repeat: st(stopping(G, P, 30.0, true, Then::Stop)),
        Input::Tick, 60.0 => stopping(G, P, 30.0, true, Then::Stop), []);
    case!(stopping_tick_before_deadline_rearms: st(stopping(G, P, 30.0, false, Then::Stop)),
        Input::Tick, 20.0 => stopping(G, P, 30.0, false, Then::Stop), [wake(30.0)]);
    case!(stopping_config_removed_turns_stop_into_retire:
        st(stopping(G, P, 30.0, false, Then::Stop)), Input::ConfigRemoved, 5.0
        => stopping(G, P, 30.0, false, Then::Retire), []);
    case!(stopping_config_changed_turns_stop_into_restart:
        st(stopping(G, P, 30.0, false, Then::Stop)), Input::ConfigChanged, 5.0
        => stopping(G, P, 30.0, false, Then::Restart), []);
    case!(stopping_config_changed_turns_retire_into_restart:
        st(stopping(G, P, 30.0, false, Then::Retire)), Input::ConfigChanged, 5.0
        => stopping(G, P, 30.0, false, Then::Restart), []);
    case!(stopping_ctl_start_turns_stop_into_restart:
        st(stopping(G, P, 30.0, false, Then::Stop)), Input::CtlStart, 5.0
        => stopping(G, P, 30.0, false, Then::Restart), []);
    case!(stopping_ctl_stop_turns_restart_into_stop:
        st(stopping(G, P, 30.0, false, Then::Restart)), Input::CtlStop, 5.0
        => stopping(G, P, 30.0, false, Then::Stop), []);
    case!(stopping_retire_is_not_undone_by_ctl_restart:
        st(stopping(G, P, 30.0, false, Then::Retire)), Input::CtlRestart, 5.0
        => stopping(G, P, 30.0, false, Then::Retire), []);
    case!(stopping_shutdown_takes_over_a_stop: with_drain(st(stopping(G, P, 30.0, false, Then::Stop)), 40.0),
        Input::Shutdown, 5.0 => stopping(G, P, 30.0, false, Then::Shutdown), [term(R)]);
    case!(stopping_config_broken_is_recorded: st(stopping(G, P, 30.0, false, Then::Restart)),
        broken(), 5.0 => stopping(G, P, 30.0, false, Then::Restart), [rejected()]);
    case!(stopping_ready_is_ignored: st(stopping(G, P, 30.0, false, Then::Stop)),
        Input::Ready { gen: G }, 5.0 => stopping(G, P, 30.0, false, Then::Stop), []);

    // --- Backoff: until 10, attempt 2 ---
    case!(backoff_tick_before_until_rearms: st(backoff(10.0, 2)), Input::Tick, 9.0
        => backoff(10.0, 2), [wake(10.0)]);
    case!(backoff_tick_at_until_respawns: st(backoff(10.0, 2)), Input::Tick, 10.0
        => starting(N, None, 10.0, 2), [spawn(N), wake(40.0)],
        |s| { assert_eq!(s.restarts, 1); });
    case!(backoff_config_changed_starts_afresh: st(backoff(10.0, 2)), Input::ConfigChanged, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(backoff_ctl_start_starts_afresh: st(backoff(10.0, 2)), Input::CtlStart, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(backoff_config_broken_fails: st(backoff(10.0, 2)), broken(), 1.0
        => failed(1.0, "app.ini:3: unknown option 'modul'"),
        [failed_report("app.ini:3: unknown option 'modul'")]);
    case!(backoff_config_removed_retires: st(backoff(10.0, 2)), Input::ConfigRemoved, 1.0
        => Phase::Retired, [Effect::Retired]);
    case!(backoff_ctl_stop_stops: st(backoff(10.0, 2)), Input::CtlStop, 1.0
        => stopped(1.0), [rep(Report::Stopped)]);
    case!(backoff_ctl_reload_is_a_no_op: st(backoff(10.0, 2)), Input::CtlReload, 1.0
        => backoff(10.0, 2), []);

    // --- Failed ---
    case!(failed_config_changed_starts: st(failed(0.0, "x")), Input::ConfigChanged, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(failed_ctl_start_starts: st(failed(0.0, "x")), Input::CtlStart, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(failed_ctl_restart_starts: st(failed(0.0, "x")), Input::CtlRestart, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(failed_ctl_reload_is_a_no_op: st(failed(0.0, "x")), Input::CtlReload, 1.0
        => failed(0.0, "x"), []);
    case!(failed_tick_is_a_no_op: st(failed(0.0, "x")), Input::Tick, 1000.0
        => failed(0.0, "x"), []);
    case!(failed_start_is_a_no_op: st(failed(0.0, "x")), Input::Start, 1.0
        => failed(0.0, "x"), []);
    case!(failed_config_broken_updates_reason: st(failed(0.0, "x")), broken(), 1.0
        => failed(1.0, "app.ini:3: unknown option 'modul'"),
        [failed_report("app.ini:3: unknown option 'modul'")]);
    case!(failed_config_removed_retires: st(failed(0.0, "x")), Input::ConfigRemoved, 1.0
        => Phase::Retired, [Effect::Retired]);
    case!(failed_config_removed_waits_for_draining: with_drain(st(failed(0.0, "x")), 20.0),
        Input::ConfigRemoved, 1.0 => stopping(DG, R, 20.0, false, Then::Retire), []);
    case!(failed_ctl_stop_stops: st(failed(0.0, "x")), Input::CtlStop, 1.0
        => stopped(1.0), [rep(Report::Stopped)]);

    // --- Stopped ---
    case!(stopped_ctl_start_starts: st(stopped(0.0)), Input::CtlStart, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(stopped_config_changed_starts: st(stopped(0.0)), Input::ConfigChanged, 1.0
        => starting(N, None, 1.0, 0), [spawn(N), wake(31.0)]);
    case!(stopped_ctl_stop_is_a_no_op: st(stopped(0.0)), Input::CtlStop, 1.0 => stopped(0.0), []);
    case!(stopped_ctl_reload_is_a_no_op: st(stopped(0.0)), Input::CtlReload, 1.0 => stopped(0.0), []);
    case!(stopped_tick_is_a_no_op: st(stopped(0.0)), Input::Tick, 1.0 => stopped(0.0), []);
    case!(stopped_config_broken_fails: st(stopped(0.0)), broken(), 1.0
        => failed(1.0, "app.ini:3: unknown option 'modul'"),
        [failed_report("app.ini:3: unknown option 'modul'")]);
    case!(stopped_config_removed_retires: st(stopped(0.0)), Input::ConfigRemoved, 1.0
        => Phase::Retired, [Effect::Retired]);
    case!(stopped_shutdown_is_a_no_op: st(stopped(0.0)), Input::Shutdown, 1.0 => stopped(0.0), []);
    case!(stopped_shutdown_waits_for_draining: with_drain(st(stopped(0.0)), 20.0),
        Input::Shutdown, 1.0 => stopping(DG, R, 20.0, false, Then::Shutdown), [term(R)]);

    // --- Draining and strays, in any phase ---
    case!(draining_tick_at_deadline_kills_once: with_drain(st(ready(G, P, 0.0, 0)), 20.0),
        Input::Tick, 20.0 => ready(G, P, 0.0, 0),
        [kill(R), rep(Report::Killed { gen: DG, pid: R, reason: "did not stop within 30 s".into() })],
        |s| { assert_eq!(s.draining, [draining(DG, R, 20.0, true)]); });
    case!(draining_tick_before_deadline_rearms: with_drain(st(ready(G, P, 0.0, 0)), 20.0),
        Input::Tick, 19.0 => ready(G, P, 0.0, 0), [wake(20.0)]);
    case!(draining_exit_is_removed_and_no_failure: with_drain(st(ready(G, P, 0.0, 0)), 20.0),
        exited(DG, R, 1), 5.0 => ready(G, P, 0.0, 0), [],
        |s| { assert!(s.draining.is_empty()); assert_eq!(s.last_exit, None); });
    case!(late_spawn_of_an_abandoned_gen_is_stopped: st(stopped(0.0)),
        Input::Spawned { gen: G, pid: Q }, 1.0 => stopped(0.0), [term(Q), wake(31.0)],
        |s| { assert_eq!(s.draining, [draining(G, Q, 31.0, false)]); });
    case!(spawned_of_a_gen_never_asked_for_is_ignored: st(stopped(0.0)),
        Input::Spawned { gen: Gen(99), pid: Q }, 1.0 => stopped(0.0), []);

    // --- On demand and idle (issue 20) ---
    case!(on_demand_start_sleeps: st_od(Phase::Idle), Input::Start, 0.0
        => sleeping(0.0), [Effect::Sleep, rep(Report::Sleeping)],
        |s| { assert_eq!(s.next_gen, N, "no generation is used while asleep"); });
    case!(sleeping_wake_starts: st_od(sleeping(0.0)), Input::Wake, 5.0
        => starting(N, None, 5.0, 0), [spawn(N), wake(35.0)]);
    case!(sleeping_ctl_start_starts: st_od(sleeping(0.0)), Input::CtlStart, 5.0
        => starting(N, None, 5.0, 0), [spawn(N), wake(35.0)]);
    case!(sleeping_ctl_restart_starts: st_od(sleeping(0.0)), Input::CtlRestart, 5.0
        => starting(N, None, 5.0, 0), [spawn(N), wake(35.0)]);
    case!(sleeping_ctl_stop_stops: st_od(sleeping(0.0)), Input::CtlStop, 5.0
        => stopped(5.0), [rep(Report::Stopped)]);
    case!(sleeping_shutdown_stops: st_od(sleeping(0.0)), Input::Shutdown, 5.0
        => stopped(5.0), [rep(Report::Stopped)]);
    case!(sleeping_config_removed_retires: st_od(sleeping(0.0)), Input::ConfigRemoved, 5.0
        => Phase::Retired, [Effect::Retired]);
    case!(sleeping_config_changed_sleeps_on_the_new_config: st_od(sleeping(0.0)),
        Input::ConfigChanged, 5.0 => sleeping(5.0), [Effect::Sleep, rep(Report::Sleeping)]);
    case!(sleeping_config_changed_to_not_on_demand_starts: st(sleeping(0.0)),
        Input::ConfigChanged, 5.0 => starting(N, None, 5.0, 0), [spawn(N), wake(35.0)]);
    case!(sleeping_config_broken_fails: st_od(sleeping(0.0)), broken(), 5.0
        => failed(5.0, "app.ini:3: unknown option 'modul'"),
        [failed_report("app.ini:3: unknown option 'modul'")]);
    case!(sleeping_tick_is_a_no_op: st_od(sleeping(0.0)), Input::Tick, 5.0 => sleeping(0.0), []);
    case!(sleeping_ctl_reload_is_a_no_op: st_od(sleeping(0.0)), Input::CtlReload, 5.0
        => sleeping(0.0), []);
    case!(sleeping_idle_timeout_is_a_no_op: st_od(sleeping(0.0)), Input::IdleTimeout, 5.0
        => sleeping(0.0), []);
    case!(sleeping_sleep_failed_backs_off: st_od(sleeping(0.0)),
        Input::SleepFailed { message: "EMFILE".into(), permanent: false }, 5.0
        => backoff(5.5, 1),
        [crashed(None, "cannot keep the sockets while sleeping: EMFILE", 1, 0.5), wake(5.5)]);
    case!(sleeping_sleep_failed_permanently_fails: st_od(sleeping(0.0)),
        Input::SleepFailed { message: "no such directory".into(), permanent: true }, 5.0
        => failed(5.0, "cannot keep the sockets while sleeping: no such directory"),
        [failed_report("cannot keep the sockets while sleeping: no such directory")]);
    case!(failed_config_changed_on_demand_sleeps: st_od(failed(0.0, "x")), Input::ConfigChanged, 1.0
        => sleeping(1.0), [Effect::Sleep, rep(Report::Sleeping)]);
    case!(stopped_config_changed_on_demand_sleeps: st_od(stopped(0.0)), Input::ConfigChanged, 1.0
        => sleeping(1.0), [Effect::Sleep, rep(Report::Sleeping)]);
    case!(on_demand_backoff_tick_starts_awake: st_od(backoff(10.0, 2)), Input::Tick, 10.0
        => starting(N, None, 10.0, 2), [spawn(N), wake(40.0)]);
    case!(ready_idle_timeout_stops_to_sleep: st_od(ready(G, P, 0.0, 0)), Input::IdleTimeout, 20.0
        => stopping(G, P, 50.0, false, Then::Sleep), [term(P), wake(50.0)]);
    case!(ready_idle_timeout_without_on_demand_also_sleeps: st(ready(G, P, 0.0, 0)),
        Input::IdleTimeout, 20.0 => stopping(G, P, 50.0, false, Then::Sleep), [term(P), wake(50.0)]);
    case!(starting_idle_timeout_is_a_no_op: st_od(starting(G, Some(P), 0.0, 0)),
        Input::IdleTimeout, 1.0 => starting(G, Some(P), 0.0, 0), []);
    case!(reloading_idle_timeout_is_a_no_op: st_od(reloading(Some(Q))), Input::IdleTimeout, 12.0
        => reloading(Some(Q)), []);
    case!(stopping_to_sleep_exit_sleeps: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        exited(G, P, 0), 5.0 => sleeping(5.0), [Effect::Sleep, rep(Report::Sleeping)],
        |s| { assert_eq!(s.last_exit, Some(ExitInfo::exited(0))); });
    case!(stopping_to_sleep_crash_exit_still_sleeps: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        exited(G, P, 1), 5.0 => sleeping(5.0), [Effect::Sleep, rep(Report::Sleeping)]);
    case!(stopping_to_sleep_wake_is_a_no_op: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        Input::Wake, 5.0 => stopping(G, P, 30.0, false, Then::Sleep), []);
    case!(stopping_to_sleep_ctl_start_restarts: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        Input::CtlStart, 5.0 => stopping(G, P, 30.0, false, Then::Restart), []);
    case!(stopping_to_sleep_ctl_stop_stops: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        Input::CtlStop, 5.0 => stopping(G, P, 30.0, false, Then::Stop), []);
    case!(stopping_to_sleep_config_removed_retires: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        Input::ConfigRemoved, 5.0 => stopping(G, P, 30.0, false, Then::Retire), []);
    case!(stopping_to_sleep_shutdown_shuts_down: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        Input::Shutdown, 5.0 => stopping(G, P, 30.0, false, Then::Shutdown), []);
    case!(stopping_to_sleep_config_changed_still_sleeps: st_od(stopping(G, P, 30.0, false, Then::Sleep)),
        Input::ConfigChanged, 5.0 => stopping(G, P, 30.0, false, Then::Sleep), []);
    case!(wake_when_ready_is_a_no_op: st_od(ready(G, P, 0.0, 0)), Input::Wake, 5.0
        => ready(G, P, 0.0, 0), []);
    case!(sleep_failed_when_ready_is_a_no_op: st_od(ready(G, P, 0.0, 0)),
        Input::SleepFailed { message: "x".into(), permanent: true }, 5.0 => ready(G, P, 0.0, 0), []);

    #[test]
    fn sleeping_state_accessors() {
        let s = st_od(sleeping(0.0));
        assert_eq!(s.name(), "sleeping");
        assert_eq!(s.current_pid(), None);
        assert_eq!(s.current_gen(), None);
        assert!(s.pids().is_empty());
        assert_eq!(s.next_deadline(&policy()), None);
    }

    #[test]
    fn observe_is_uwsgis_idle_rule() {
        let idle = dur(10.0);
        let seen = |requests, since| Activity {
            gen: G,
            requests,
            since: t(since),
        };
        // (last, gen, requests, busy, now) => (kept, idle now?)
        type Row = (Option<Activity>, Gen, u64, bool, f64, Activity, bool);
        let rows: &[Row] = &[
            // First look: the count starts.
            (None, G, 7, false, 1.0, seen(7, 1.0), false),
            // Nothing moved, not long enough yet.
            (Some(seen(7, 1.0)), G, 7, false, 10.9, seen(7, 1.0), false),
            // Nothing moved for `idle`: idle.
            (Some(seen(7, 1.0)), G, 7, false, 11.0, seen(7, 1.0), true),
            // A request was served: start again.
            (Some(seen(7, 1.0)), G, 8, false, 20.0, seen(8, 20.0), false),
            // A request is in flight (a long one): not idle, start again.
            (Some(seen(7, 1.0)), G, 7, true, 20.0, seen(7, 20.0), false),
            // Another generation (a reload): start again.
            (
                Some(seen(7, 1.0)),
                N,
                7,
                false,
                20.0,
                Activity {
                    gen: N,
                    requests: 7,
                    since: t(20.0),
                },
                false,
            ),
        ];
        for (i, (last, gen, requests, busy, now, kept, due)) in rows.iter().enumerate() {
            let got = observe(*last, *gen, *requests, *busy, t(*now), idle);
            assert_eq!(got, (*kept, *due), "row {i}");
        }
    }

    #[test]
    fn retired_is_terminal() {
        let state = st(Phase::Retired);
        let inputs = [
            Input::Start,
            Input::ConfigChanged,
            broken(),
            Input::ConfigRemoved,
            Input::Spawned { gen: G, pid: P },
            Input::SpawnFailed {
                gen: G,
                message: "x".into(),
                permanent: false,
            },
            Input::SpawnFailed {
                gen: G,
                message: "x".into(),
                permanent: true,
            },
            Input::Ready { gen: G },
            exited(G, P, 0),
            Input::Tick,
            Input::CtlStop,
            Input::CtlStart,
            Input::CtlRestart,
            Input::CtlReload,
            Input::Shutdown,
        ];
        for input in inputs {
            let (next, fx) = step(&state, input.clone(), t(5.0), &policy());
            assert_eq!(next, state, "{input:?}");
            assert!(fx.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn delay_doubles_up_to_the_max() {
        let p = policy();
        let table: &[(u32, f64)] = &[
            (0, 0.5),
            (1, 1.0),
            (2, 2.0),
            (5, 16.0),
            (6, 30.0),
            (31, 30.0),
            (32, 30.0),
            (u32::MAX, 30.0),
        ];
        for &(attempt, want) in table {
            assert_eq!(delay(&p, attempt), dur(want), "attempt {attempt}");
        }
        let huge = Policy {
            backoff_base: Duration::MAX,
            ..policy()
        };
        assert_eq!(delay(&huge, 3), huge.backoff_max);
    }

    #[test]
    fn exit_info_display() {
        assert_eq!(ExitInfo::exited(1).to_string(), "exit code 1");
        assert_eq!(ExitInfo::signaled(9).to_string(), "signal 9");
        assert_eq!(ExitInfo::default().to_string(), "unknown exit status");
        assert_eq!(Gen(7).to_string(), "7");
    }

    #[test]
    fn state_accessors() {
        let table: Vec<(Phase, &str, Option<Pid>, Vec<Pid>)> = vec![
            (Phase::Idle, "idle", None, vec![]),
            (starting(G, None, 0.0, 0), "starting", None, vec![]),
            (starting(G, Some(P), 0.0, 0), "starting", Some(P), vec![P]),
            (ready(G, P, 0.0, 0), "ready", Some(P), vec![P]),
            (reloading(Some(Q)), "reloading", Some(P), vec![P, Q]),
            (reloading(None), "reloading", Some(P), vec![P]),
            (
                stopping(G, P, 1.0, false, Then::Stop),
                "stopping",
                Some(P),
                vec![P],
            ),
            (backoff(1.0, 1), "backoff", None, vec![]),
            (failed(1.0, "x"), "failed", None, vec![]),
            (stopped(1.0), "stopped", None, vec![]),
            (Phase::Retired, "retired", None, vec![]),
        ];
        for (phase, name, current, pids) in table {
            let s = st(phase);
            assert_eq!(s.name(), name);
            assert_eq!(s.current_pid(), current, "{name}");
            assert_eq!(s.pids(), pids, "{name}");
            let mut drained = with_drain(s, 9.0);
            let mut with_r = pids.clone();
            with_r.push(R);
            assert_eq!(drained.pids(), with_r, "{name}");
            drained.draining.clear();
        }
        assert_eq!(State::new().next_gen, Gen(1));
        assert_eq!(State::new().phase, Phase::Idle);
        assert_eq!(st(reloading(Some(Q))).current_gen(), Some(OLD));
    }

    #[test]
    fn next_deadline_is_the_earliest_pending_one() {
        let p = policy();
        let table: Vec<(State, Option<f64>)> = vec![
            (st(Phase::Idle), None),
            (st(starting(G, None, 0.0, 0)), Some(30.0)),
            (st(ready(G, P, 0.0, 0)), None),
            (st(ready(G, P, 0.0, 1)), Some(10.0)),
            (st(reloading(None)), Some(40.0)),
            (st(stopping(G, P, 5.0, false, Then::Stop)), Some(5.0)),
            (st(stopping(G, P, 5.0, true, Then::Stop)), None),
            (st(backoff(3.0, 1)), Some(3.0)),
            (with_drain(st(backoff(3.0, 1)), 2.0), Some(2.0)),
            (with_drain(st(failed(0.0, "x")), 2.0), Some(2.0)),
            (
                {
                    let mut s = st(stopped(0.0));
                    s.draining.push(draining(DG, R, 2.0, true));
                    s
                },
                None,
            ),
        ];
        for (state, want) in table {
            assert_eq!(state.next_deadline(&p), want.map(t), "{:?}", state.phase);
        }
    }

    /// A full reload story through `step` alone: start, ready, touch, new ready, old
    /// drains and exits.
    #[test]
    fn a_reload_story() {
        let p = policy();
        let mut s = State::new();
        let mut run = |input: Input, now: f64| {
            let (next, fx) = step(&s, input, t(now), &p);
            s = next;
            fx
        };
        assert_eq!(run(Input::Start, 0.0), [spawn(Gen(1)), wake(30.0)]);
        assert_eq!(
            run(
                Input::Spawned {
                    gen: Gen(1),
                    pid: P
                },
                0.0
            ),
            []
        );
        assert_eq!(
            run(Input::Ready { gen: Gen(1) }, 1.0),
            [rep(Report::Ready { gen: Gen(1) }), wake(11.0)]
        );
        assert_eq!(run(Input::ConfigChanged, 20.0), [spawn(Gen(2)), wake(50.0)]);
        assert_eq!(
            run(
                Input::Spawned {
                    gen: Gen(2),
                    pid: Q
                },
                20.0
            ),
            []
        );
        assert_eq!(
            run(Input::Ready { gen: Gen(2) }, 22.0),
            [term(P), wake(52.0), rep(Report::Reloaded { gen: Gen(2) })]
        );
        assert_eq!(run(exited(Gen(1), P, 0), 23.0), []);
        assert_eq!(s.phase, ready(Gen(2), Q, 22.0, 0));
        assert!(s.draining.is_empty());
        assert_eq!(s.pids(), [Q]);
    }

    /// A tiny deterministic PRNG (xorshift64*), so the property test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
            if items.is_empty() {
                None
            } else {
                Some(items[self.below(items.len() as u64) as usize])
            }
        }
    }

    /// A model of the actor around `step`: real processes, one timer, effects applied.
    struct Sim {
        policy: Policy,
        state: State,
        now: Instant,
        timer: Option<Instant>,
        alive: Vec<(Gen, Pid)>,
        killed: std::collections::HashSet<Pid>,
        next_pid: i32,
        next_fake_pid: i32,
        rng: Rng,
    }

    impl Sim {
        fn feed(&mut self, input: Input) {
            let before = self.state.clone();
            let is_tick = input == Input::Tick;
            let (next, fx) = step(&self.state, input.clone(), self.now, &self.policy);
            if before.phase == Phase::Retired {
                assert_eq!(next, before, "Retired is terminal ({input:?})");
                assert!(fx.is_empty(), "Retired emits nothing ({input:?})");
            }
            self.state = next;
            let mut replies = Vec::new();
            for effect in fx {
                match effect {
                    Effect::Spawn { gen } => {
                        // The contract: the spawn result comes back at once.
                        if self.rng.below(10) == 0 {
                            replies.push(Input::SpawnFailed {
                                gen,
                                message: "boom".into(),
                                permanent: self.rng.below(2) == 0,
                            });
                        } else {
                            self.next_pid += 1;
                            let pid = Pid(self.next_pid);
                            self.alive.push((gen, pid));
                            replies.push(Input::Spawned { gen, pid });
                        }
                    }
                    Effect::Signal {
                        pid,
                        sig: Sig::Kill,
                    } => {
                        assert!(self.killed.insert(pid), "Kill sent twice to {pid}");
                    }
                    Effect::Signal { .. } => {}
                    Effect::WakeAt(at) => {
                        assert!(at >= self.now, "WakeAt in the past");
                        self.timer = Some(self.timer.map_or(at, |t| t.min(at)));
                    }
                    Effect::Retired => {
                        assert_eq!(self.state.phase, Phase::Retired);
                        assert!(self.state.pids().is_empty(), "retired with processes");
                    }
                    Effect::Report(_) => {}
                    Effect::Sleep => {
                        assert!(
                            matches!(self.state.phase, Phase::Sleeping { .. }),
                            "Sleep outside Sleeping"
                        );
                        assert_eq!(self.state.current_pid(), None, "asleep with a process");
                        if self.rng.below(10) == 0 {
                            replies.push(Input::SleepFailed {
                                message: "boom".into(),
                                permanent: self.rng.below(2) == 0,
                            });
                        }
                    }
                }
            }
            for reply in replies {
                self.feed(reply);
            }
            self.check(is_tick, &input);
        }

        fn check(&self, after_tick: bool, input: &Input) {
            let pids = self.state.pids();
            for (gen, pid) in &self.alive {
                assert!(
                    pids.contains(pid),
                    "gen {gen} pid {pid} is alive but untracked after {input:?}: {:?}",
                    self.state
                );
            }
            if self.state.phase == Phase::Retired {
                assert!(self.alive.is_empty(), "retired with live processes");
            }
            if let Some(due) = self.state.next_deadline(&self.policy) {
                assert!(
                    self.timer.is_some_and(|t| t <= due),
                    "deadline {due:?} has no timer after {input:?}: {:?}",
                    self.state
                );
            }
            if after_tick {
                let p = &self.policy;
                let mut due: Vec<(Pid, Instant)> = self
                    .state
                    .draining
                    .iter()
                    .map(|d| (d.pid, d.deadline))
                    .collect();
                match &self.state.phase {
                    Phase::Stopping { pid, deadline, .. } => due.push((*pid, *deadline)),
                    Phase::Starting {
                        pid: Some(pid),
                        since,
                        ..
                    }
                    | Phase::Reloading {
                        pid: Some(pid),
                        since,
                        ..
                    } => due.push((*pid, *since + p.start_timeout)),
                    _ => {}
                }
                for (pid, deadline) in due {
                    if deadline <= self.now {
                        assert!(
                            self.killed.contains(&pid),
                            "pid {pid} past its deadline without Kill: {:?}",
                            self.state
                        );
                    }
                }
            }
        }

        /// Let time pass, ticking whenever the timer fires (as the actor does).
        fn advance(&mut self, dt: Duration) {
            let target = self.now + dt;
            while let Some(at) = self.timer.filter(|at| *at <= target) {
                self.now = self.now.max(at);
                self.timer = None;
                self.feed(Input::Tick);
            }
            self.now = target;
        }

        fn random_input(&mut self) -> Option<Input> {
            let r = self.rng.below(100);
            let real = self.rng.pick(&self.alive);
            let exit = match self.rng.below(4) {
                0 => ExitInfo::exited(0),
                1 => ExitInfo::exited(1),
                2 => ExitInfo::exited(EXIT_CONFIG),
                _ => ExitInfo::signaled(9),
            };
            let any_gen = Gen(self.rng.below(self.state.next_gen.0 + 2));
            // Pids no real process has, never reused (a pid names one process).
            self.next_fake_pid += 1;
            let fake_pid = Pid(self.next_fake_pid);
            Some(match r {
                0..=24 => {
                    let dt = Duration::from_millis(self.rng.below(40_000));
                    self.advance(dt);
                    if self.rng.below(2) == 0 {
                        return None;
                    }
                    Input::Tick
                }
                25..=44 => {
                    // Killed processes die first.
                    let victim = self
                        .alive
                        .iter()
                        .copied()
                        .find(|(_, pid)| self.killed.contains(pid))
                        .or(real)?;
                    self.alive.retain(|p| *p != victim);
                    Input::Exited {
                        gen: victim.0,
                        pid: victim.1,
                        exit,
                    }
                }
                45..=59 => Input::Ready { gen: real?.0 },
                60..=64 => Input::ConfigChanged,
                65..=67 => broken(),
                68 => Input::ConfigRemoved,
                69..=71 => Input::CtlStop,
                72..=74 => Input::CtlStart,
                75..=77 => Input::CtlRestart,
                78..=81 => Input::CtlReload,
                82 => Input::Shutdown,
                83 => Input::Start,
                84 => Input::Wake,
                85 => Input::IdleTimeout,
                86..=88 => Input::Ready { gen: any_gen },
                89..=92 => Input::Exited {
                    gen: any_gen,
                    pid: fake_pid,
                    exit,
                },
                93..=96 => Input::Spawned {
                    gen: any_gen,
                    pid: fake_pid,
                },
                _ => Input::SpawnFailed {
                    gen: any_gen,
                    message: "late".into(),
                    permanent: false,
                },
            })
        }
    }

    /// Many random input sequences: `step` never panics, every live process stays
    /// tracked, every deadline has a timer, nothing outlives its deadline without a
    /// Kill on the tick at that deadline, Kill is sent at most once per process, and
    /// Retired is terminal (and only reached with no process left).
    #[test]
    fn random_sequences_keep_the_invariants() {
        let mut retired = 0;
        let mut kills = 0;
        for seed in 1..=400u64 {
            let mut sim = Sim {
                policy: Policy {
                    // Small numbers so sequences reach Failed and deadlines often.
                    max_attempts: 3,
                    ..policy()
                },
                state: State {
                    // Half the sequences are of an on-demand vassal (issue 20).
                    on_demand: seed % 2 == 0,
                    ..State::new()
                },
                now: t(0.0),
                timer: None,
                alive: Vec::new(),
                killed: Default::default(),
                next_pid: 1000,
                next_fake_pid: 900_000,
                rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            };
            sim.feed(Input::Start);
            for _ in 0..300 {
                if let Some(input) = sim.random_input() {
                    sim.feed(input);
                }
            }
            retired += usize::from(sim.state.phase == Phase::Retired);
            kills += sim.killed.len();
        }
        // The generator must reach the interesting corners.
        assert!(retired > 10, "only {retired} sequences retired");
        assert!(kills > 100, "only {kills} kills");
    }
}
