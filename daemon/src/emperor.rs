//! The emperor actor: one task that owns every vassal's state.
//!
//! Sources never touch vassal state; they send a [`Msg`] ([`crate::msg`]; the sources
//! are started beside the actor by [`crate::start`]):
//!
//! ```text
//!  inotify (debounced) + periodic rescan ──┐
//!  child exits (one wait task per child) ──┤
//!  vassal notify sockets (READY=1, ...) ───┼──> Emperor::run ──> effects: bind sockets,
//!  vassal stdout/stderr lines ─────────────┤    (owns all        spawn, signal, kill,
//!  signals (TERM, INT, HUP) ───────────────┘     vassal state)    log, notify systemd
//! ```
//!
//! Each vassal's lifecycle is the pure [`crate::lifecycle::step`]; this module applies
//! its effects (spawning and signalling through [`crate::effects::Effects`], a seam the
//! unit tests below fake, keeping one set of
//! wake-up times per vassal) and feeds the results back as inputs. Timers are not
//! polled: the actor sleeps until the earliest wake-up of any vassal, or the next
//! rescan.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsgi_os::listen::BoundSocket;
use rsgi_proto::bounds::Included;
use rsgi_proto::config::{ListenAddr, Protocol, SocketSpec, VassalConfig};
use rsgi_proto::control::{
    ActionResult, CheckResult, LogLines, VassalList, VassalStatus, VassalSummary,
};
use rsgi_proto::notify::Message;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::effects::{Effects, SpawnRequest};
use crate::lifecycle::{self, Gen, Input, Phase, Pid, Report, Sig, State};
use crate::msg::{Command, Msg, Pending, Reply};
use crate::scan::{self, Change, Fingerprint, VassalFile, VassalName};
use crate::settings::Settings;

mod handover;
pub use handover::{check_state, UpgradeState};

/// How long after `stop_timeout` rsgid gives up on vassals that have not exited and
/// exits anyway (after SIGKILL to what is left).
const SHUTDOWN_SLACK: Duration = Duration::from_millis(500);

/// How long after answering `rsgictl upgrade` the exec happens (the answer is written
/// meanwhile), and how often it is tried again while vassals are starting.
const UPGRADE_POLL: Duration = Duration::from_millis(100);

/// How often the counters of serving vassals with `idle` are looked at.
const IDLE_CHECK_EVERY: Duration = Duration::from_millis(500);

/// A vassal's `idle` time, if it has one (`die-on-idle` alone means nothing, as in
/// uWSGI, where it only changes what `idle` does).
fn idle_of(v: &Vassal) -> Option<Duration> {
    v.config
        .as_ref()
        .and_then(|c| c.idle)
        .map(Duration::from_secs)
}

/// Whether the `idle` check looks at this vassal: it has `idle` and serves.
fn idle_watched(v: &Vassal) -> bool {
    idle_of(v).is_some() && matches!(v.state.phase, Phase::Ready { .. })
}

/// One vassal, as the emperor sees it.
struct Vassal {
    name: VassalName,
    file: VassalFile,
    /// The last configuration that parsed.
    config: Option<Arc<VassalConfig>>,
    /// After a load that failed (a first load, or a reload while `config` runs): the
    /// files it read or tried to read besides the vassal file, with what they held. A
    /// change of one of them (the broken include fixed, the missing one created) loads
    /// the vassal again, as a change of its own file does. `None` once a load succeeds.
    failed_reads: Option<Vec<Included>>,
    /// The file as it was when `config` was read from it: the same bytes found again
    /// (a projected directory's swap, a link that dangled for a moment) reload nothing.
    applied: Option<Fingerprint>,
    /// The listening sockets currently handed to new generations.
    sockets: Vec<Arc<BoundSocket>>,
    state: State,
    /// Every pending wake-up time from `WakeAt` effects.
    wakes: BTreeSet<Instant>,
    /// The last lines of output, with the generation that wrote each.
    logs: VecDeque<(Gen, String)>,
    /// Output lines the vassal's processes dropped because rsgid was not reading (from
    /// their notices).
    output_dropped: u64,
    /// The generation spawned last (a failed reload's: its output says why).
    last_spawned: Option<Gen>,
    /// When the current generation started.
    started: Option<Instant>,
    /// `rsgictl reload --wait` callers, answered when the reload is done.
    waiters: Vec<oneshot::Sender<ActionResult>>,
    /// Live feed of output lines for `rsgictl logs -f`.
    feed: broadcast::Sender<String>,
    /// Each running generation's shared counters (passed over its notify socket).
    counters: BTreeMap<Gen, Arc<rsgi_os::shm::Shm>>,
    /// Totals of ended generations and reload outcomes, for monotonic metrics.
    ledger: crate::snapshot::Ledger,
    /// While `Sleeping`: the tasks watching the sockets for a connection.
    watch: Vec<tokio::task::AbortHandle>,
    /// Counts sleeps; a [`Msg::Wake`] of an earlier one is stale.
    sleep_seq: u64,
    /// What the `idle` check last saw of the serving generation.
    activity: Option<lifecycle::Activity>,
}

/// A vassal file that did not load: why, and the files the load read or tried to read
/// besides it (see [`Vassal::failed_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadFailure {
    /// What is wrong, `where: what` (the file and line, or the key in etcd).
    pub(crate) message: String,
    /// The other files the load read, with what they held.
    pub(crate) read: Vec<Included>,
}

impl From<String> for LoadFailure {
    /// A failure that read no other file (the vassal file cannot be read, a user check).
    fn from(message: String) -> Self {
        LoadFailure {
            message,
            read: Vec::new(),
        }
    }
}

/// The actor.
pub struct Emperor {
    settings: Settings,
    vassals: BTreeMap<VassalName, Vassal>,
    rx: mpsc::UnboundedReceiver<Msg>,
    effects: Box<dyn Effects + Send>,
    shutdown_deadline: Option<Instant>,
    announced_ready: bool,
    reloading_all: bool,
    systemd: crate::sd::SdNotify,
    /// Scans of the vassal directory so far (a metric: an idle rsgid scans only every
    /// `rescan_interval`).
    scans: u64,
    /// Where vassals come from (see [`crate::source`]).
    sources: Sources,
    /// When the `idle` check runs next (only while some vassal with `idle` serves).
    next_idle_check: Instant,
    /// An upgrade in place was checked and asked for at this time: the exec follows
    /// (see `handover.rs`).
    upgrade_at: Option<Instant>,
}

/// The actor's view of its vassal sources.
#[derive(Default)]
struct Sources {
    /// The directories scanned (a remote source's: its local copy), in source order.
    dirs: Vec<crate::source::SourceDir>,
    /// Which source each vassal comes from.
    origin: BTreeMap<VassalName, usize>,
    /// Each remote source's last report.
    reports: BTreeMap<usize, crate::source::SourceReport>,
    /// Each directory's last scan error (logged once until it changes or heals).
    errors: BTreeMap<usize, String>,
    /// Failed scans per source.
    scan_failures: BTreeMap<usize, u64>,
    /// Names refused because another source has them: (name, refused source).
    refused: BTreeSet<(VassalName, usize)>,
}

impl Emperor {
    /// An emperor for `settings` (already resolved by [`crate::start`]: absolute run
    /// directory, canonical vassal directory) that reads its mailbox `rx` and acts on
    /// processes through `effects`. Nothing happens until [`Emperor::run`].
    pub fn new(
        settings: Settings,
        rx: mpsc::UnboundedReceiver<Msg>,
        effects: Box<dyn Effects + Send>,
    ) -> Emperor {
        Emperor {
            settings,
            vassals: BTreeMap::new(),
            rx,
            effects,
            shutdown_deadline: None,
            announced_ready: false,
            reloading_all: false,
            systemd: crate::sd::SdNotify::from_env(),
            scans: 0,
            sources: Sources::default(),
            next_idle_check: now(),
            upgrade_at: None,
        }
        .default_dirs()
    }

    /// Scan these sources' directories instead of `settings.vassals` alone.
    pub fn with_sources(mut self, dirs: Vec<crate::source::SourceDir>) -> Emperor {
        self.sources.dirs = dirs;
        self
    }

    fn default_dirs(mut self) -> Emperor {
        self.sources.dirs = vec![crate::source::SourceDir {
            label: self.settings.vassals.display().to_string(),
            dir: self.settings.vassals.clone(),
            kind: "dir",
        }];
        self
    }

    /// Run until shut down (every vassal stopped after [`Msg::Shutdown`], or every
    /// sender gone).
    pub async fn run(mut self) {
        self.rescan();
        let mut next_rescan = now() + self.settings.rescan_interval;
        loop {
            if self.tick(now()) {
                break;
            }
            let wake = self.next_wake().unwrap_or(next_rescan).min(next_rescan);
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    if now() >= next_rescan {
                        self.rescan();
                        next_rescan = now() + self.settings.rescan_interval;
                    }
                }
            }
        }
        // The socket files rsgid created go with it, as a retired vassal's do.
        for v in self.vassals.values() {
            for s in &v.sockets {
                if let Some(path) = &s.created_path {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        tracing::info!("rsgid stopped");
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut wake = self
            .vassals
            .values()
            .filter_map(|v| v.wakes.first().copied())
            .min();
        if let Some(d) = self.shutdown_deadline {
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        if self.vassals.values().any(idle_watched) {
            let d = self.next_idle_check;
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        if self.upgrade_at.is_some() {
            let d = now() + UPGRADE_POLL;
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        wake
    }

    /// The `idle` check: a serving vassal with `idle` whose counters show no request
    /// for that long is told to sleep ([`lifecycle::observe`] decides).
    fn check_idle(&mut self, now: Instant) {
        if now < self.next_idle_check {
            return;
        }
        self.next_idle_check = now + IDLE_CHECK_EVERY;
        let mut due = Vec::new();
        for v in self.vassals.values_mut() {
            if !idle_watched(v) {
                v.activity = None;
                continue;
            }
            let (Some(gen), Some(idle)) = (v.state.current_gen(), idle_of(v)) else {
                continue;
            };
            let Some(shm) = v.counters.get(&gen) else {
                continue;
            };
            let workers = shm.snapshots();
            let requests = workers.iter().map(|w| w.requests).sum();
            let busy = workers.iter().any(|w| w.in_flight > 0);
            let (activity, is_due) = lifecycle::observe(v.activity, gen, requests, busy, now, idle);
            v.activity = Some(activity);
            if is_due {
                v.activity = None;
                due.push((v.name.clone(), idle));
            }
        }
        for (name, idle) in due {
            tracing::info!(vassal = %name, "no request for {} s (idle): stopping, rsgid keeps the sockets", idle.as_secs_f64());
            self.input(&name, Input::IdleTimeout);
        }
    }

    /// Deliver due wake-ups; returns true when the emperor should exit.
    fn tick(&mut self, now: Instant) -> bool {
        let due: Vec<VassalName> = self
            .vassals
            .values()
            .filter(|v| v.wakes.first().is_some_and(|w| *w <= now))
            .map(|v| v.name.clone())
            .collect();
        for name in due {
            if let Some(v) = self.vassals.get_mut(&name) {
                while v.wakes.first().is_some_and(|w| *w <= now) {
                    v.wakes.pop_first();
                }
            }
            self.input(&name, Input::Tick);
        }
        self.check_idle(now);
        if self
            .upgrade_at
            .is_some_and(|at| now.saturating_duration_since(at) >= UPGRADE_POLL)
        {
            self.exec_upgrade();
        }
        if let Some(deadline) = self.shutdown_deadline {
            let running: Vec<Pid> = self.vassals.values().flat_map(|v| v.state.pids()).collect();
            if running.is_empty() {
                return true;
            }
            if now >= deadline {
                tracing::warn!(count = running.len(), "shutdown deadline passed: killing");
                for pid in running {
                    self.effects.signal(pid, Sig::Kill);
                }
                return true;
            }
        }
        self.check_ready();
        false
    }

    /// systemd: READY=1 once every initial vassal left Starting; READY=1 after HUP.
    fn check_ready(&mut self) {
        let starting = self.vassals.values().any(|v| {
            matches!(
                v.state.phase,
                Phase::Starting { .. } | Phase::Reloading { .. }
            )
        });
        if starting {
            return;
        }
        if !self.announced_ready || self.reloading_all {
            self.announced_ready = true;
            self.reloading_all = false;
            let ready = self
                .vassals
                .values()
                .filter(|v| matches!(v.state.phase, Phase::Ready { .. }))
                .count();
            self.systemd.send(&[
                Message::Ready,
                Message::Status(format!(
                    "governing {} vassal(s), {ready} ready",
                    self.vassals.len()
                )),
            ]);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Rescan => self.rescan(),
            Msg::Exited {
                name,
                gen,
                pid,
                exit,
            } => {
                tracing::info!(vassal = %name, gen = gen.0, pid = pid.0, %exit, "vassal exited");
                if let Some(v) = self.vassals.get_mut(&name) {
                    if let Some(shm) = v.counters.remove(&gen) {
                        v.ledger.retire(&shm);
                    }
                }
                self.input(&name, Input::Exited { gen, pid, exit });
            }
            Msg::Notified {
                name,
                gen,
                msgs,
                mut fds,
            } => {
                for m in msgs {
                    match m {
                        Message::Ready => self.input(&name, Input::Ready { gen }),
                        Message::Shm(slots) => {
                            let Some(fd) = fds.pop() else { continue };
                            match rsgi_os::shm::Shm::from_fd(fd, slots) {
                                Ok(shm) => {
                                    if let Some(v) = self.vassals.get_mut(&name) {
                                        let shm = Arc::new(shm);
                                        if let Some(old) = v.counters.insert(gen, Arc::clone(&shm))
                                        {
                                            v.ledger.replace(&old, &shm);
                                        }
                                    }
                                }
                                Err(e) => tracing::warn!(
                                    vassal = %name,
                                    gen = gen.0,
                                    "cannot map the vassal's counters: {e}"
                                ),
                            }
                        }
                        Message::Status(s) => {
                            tracing::debug!(vassal = %name, gen = gen.0, status = %s, "status");
                        }
                        _ => {}
                    }
                }
            }
            Msg::Output { name, gen, line } => {
                tracing::info!(vassal = %name, "{line}");
                let cap = self.settings.log_lines;
                if let Some(v) = self.vassals.get_mut(&name) {
                    if v.logs.len() >= cap {
                        v.logs.pop_front();
                    }
                    let _ = v.feed.send(line.clone());
                    if let Some(n) = rsgi_proto::notify::output_dropped(&line) {
                        v.output_dropped += n;
                    }
                    v.logs.push_back((gen, line));
                }
            }
            Msg::Shutdown => {
                if self.shutdown_deadline.is_none() {
                    tracing::info!("stopping every vassal");
                    self.systemd.send(&[Message::Stopping]);
                    // Every vassal gets SIGKILL at `stop_timeout` (the lifecycle's own
                    // deadline); this is the backstop, inside the promised budget of
                    // `stop_timeout` plus a second.
                    self.shutdown_deadline =
                        Some(now() + self.settings.policy.stop_timeout + SHUTDOWN_SLACK);
                    let names: Vec<VassalName> = self.vassals.keys().cloned().collect();
                    for name in names {
                        self.input(&name, Input::Shutdown);
                    }
                }
            }
            Msg::Source(report) => {
                let changed = report.changed;
                self.sources.reports.insert(report.index, report);
                if changed {
                    self.rescan();
                }
            }
            Msg::Control(cmd, reply) => {
                let answer = self.control(cmd);
                let _ = reply.send(answer);
            }
            Msg::Upgrade => {
                tracing::info!("SIGUSR2: upgrading rsgid in place");
                if let Err(e) = self.begin_upgrade() {
                    tracing::error!("upgrade refused, this rsgid runs on: {e}");
                }
            }
            Msg::Wake { name, seq } => {
                let asleep = self.vassals.get(&name).is_some_and(|v| {
                    v.sleep_seq == seq && matches!(v.state.phase, Phase::Sleeping { .. })
                });
                if asleep {
                    tracing::info!(vassal = %name, "a connection waits: starting");
                    self.input(&name, Input::Wake);
                }
            }
            Msg::ReloadAll => {
                tracing::info!("SIGHUP: rescan and reload every vassal");
                self.systemd.send(&[
                    Message::Reloading,
                    Message::Other(format!("MONOTONIC_USEC={}", monotonic_usec())),
                ]);
                self.reloading_all = true;
                self.rescan();
                let names: Vec<VassalName> = self.vassals.keys().cloned().collect();
                for name in names {
                    self.input(&name, Input::CtlReload);
                }
            }
        }
    }

    /// Scan the directory and turn its changes into inputs.
    fn rescan(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.scans += 1;
        let Some(scanned) = self.scan_sources() else {
            return;
        };
        let before: BTreeMap<VassalName, Fingerprint> = self
            .vassals
            .iter()
            .filter(|(_, v)| !matches!(v.state.phase, Phase::Retired))
            .map(|(n, v)| (n.clone(), v.file.fingerprint))
            .collect();
        let mut changes = scan::diff(&before, &scanned.files);
        // A vassal whose own file is unchanged changes too when a file it read holds
        // other bytes now (issue 18: its content decides, all of it), and so does one
        // whose last load failed when a file that load read (or missed) changes.
        let mut now = |path: &std::path::Path| Included::read(path, &rsgi_os::config::Os).digest;
        let moved = scan::include_changes(
            self.vassals.iter().map(|(n, v)| (n, reads_of(v))),
            &scanned.files,
            &changes,
            &mut now,
        );
        changes.extend(moved);
        // Removals first: a renamed file's socket is free to pass to its new name.
        changes.sort_by_key(|c| !matches!(c, Change::Removed(_)));
        // Files that did not change may still have moved (the same bytes in another
        // file): remember where they are now, so that a later `touch` of the new file
        // is seen as one.
        for (name, file) in &scanned.files {
            let unchanged = !changes.iter().any(|c| c.name() == name);
            if let (true, Some(v)) = (unchanged, self.vassals.get_mut(name)) {
                // What runs moved with it: compare later changes with the file where it
                // is now (an old file's inode number, once free, may be reused by a new
                // file that a stale identity would then take for a `touch`).
                if v.applied.is_some_and(|a| !a.changed(&file.fingerprint)) {
                    v.applied = Some(file.fingerprint);
                }
                v.file = file.clone();
            }
        }
        for change in changes {
            match change {
                Change::Added(name) => {
                    let Some(file) = scanned.files.get(&name).cloned() else {
                        continue;
                    };
                    self.add(name, file);
                }
                Change::Changed(name) => {
                    let Some(file) = scanned.files.get(&name).cloned() else {
                        continue;
                    };
                    self.change(&name, file);
                }
                Change::Removed(name) => {
                    tracing::info!(vassal = %name, "config removed: retiring");
                    self.input(&name, Input::ConfigRemoved);
                }
            }
        }
    }

    /// Scan every source and merge (see [`crate::source::merge`]): `None` when no
    /// source could be read (nothing changes then).
    fn scan_sources(&mut self) -> Option<scan::Scan> {
        let mut scans = Vec::new();
        for (i, d) in self.sources.dirs.iter().enumerate() {
            match scan::scan(&d.dir) {
                Ok(s) => {
                    if self.sources.errors.remove(&i).is_some() {
                        tracing::info!(source = %d.label, "the vassal source can be read again");
                    }
                    for c in &s.conflicts {
                        tracing::warn!(file = %c.display(), "ignored: an .ini of the same name wins");
                    }
                    scans.push(Ok(s));
                }
                Err(e) => {
                    // Once per distinct error, not once per scan.
                    let e = e.to_string();
                    *self.sources.scan_failures.entry(i).or_default() += 1;
                    if self.sources.errors.get(&i) != Some(&e) {
                        tracing::error!(source = %d.label, "cannot scan (every vassal keeps running as it is): {e}");
                        self.sources.errors.insert(i, e.clone());
                    }
                    scans.push(Err(e));
                }
            }
        }
        if scans.iter().all(Result::is_err) {
            return None;
        }
        let current: BTreeMap<VassalName, (usize, VassalFile)> = self
            .vassals
            .iter()
            .filter(|(_, v)| !matches!(v.state.phase, Phase::Retired))
            .map(|(n, v)| {
                let src = self.sources.origin.get(n).copied().unwrap_or(0);
                (n.clone(), (src, v.file.clone()))
            })
            .collect();
        let merged = crate::source::merge(&scans, &current);
        let refused: BTreeSet<(VassalName, usize)> = merged
            .collisions
            .iter()
            .map(|c| (c.name.clone(), c.loser))
            .collect();
        for c in &merged.collisions {
            if !self.sources.refused.contains(&(c.name.clone(), c.loser)) {
                let label = |i: usize| {
                    self.sources
                        .dirs
                        .get(i)
                        .map_or_else(String::new, |d| d.label.clone())
                };
                tracing::error!(
                    vassal = %c.name,
                    "refused from {}: vassal {:?} comes from {} already (it keeps running from there)",
                    label(c.loser),
                    c.name.as_str(),
                    label(c.winner)
                );
            }
        }
        self.sources.refused = refused;
        for (name, src) in &merged.origin {
            self.sources.origin.insert(name.clone(), *src);
        }
        Some(scan::Scan {
            files: merged.files,
            ..scan::Scan::default()
        })
    }

    /// Where a vassal comes from, for answers and messages.
    fn origin_of(&self, name: &VassalName) -> Option<rsgi_proto::control::Origin> {
        let i = *self.sources.origin.get(name)?;
        let d = self.sources.dirs.get(i)?;
        let report = self.sources.reports.get(&i);
        let state = match report {
            Some(r) => r.state.to_owned(),
            None if self.sources.errors.contains_key(&i) => "unreadable".to_owned(),
            None => "ok".to_owned(),
        };
        let key = report.and_then(|r| r.keys.get(name));
        Some(rsgi_proto::control::Origin {
            source: d.label.clone(),
            source_state: state,
            key: key.map(|k| k.0.clone()),
            mod_revision: key.map(|k| k.1),
        })
    }

    /// Every source, for `rsgictl list` and the metrics.
    fn source_summaries(&self) -> Vec<rsgi_proto::control::SourceSummary> {
        self.sources
            .dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let report = self.sources.reports.get(&i);
                let scan_error = self.sources.errors.get(&i);
                rsgi_proto::control::SourceSummary {
                    source: d.label.clone(),
                    kind: d.kind.to_owned(),
                    state: match (report, scan_error) {
                        (Some(r), _) => r.state.to_owned(),
                        (None, Some(_)) => "unreadable".to_owned(),
                        (None, None) => "ok".to_owned(),
                    },
                    revision: report.map(|r| r.revision),
                    errors: report.map_or(0, |r| r.errors)
                        + self.sources.scan_failures.get(&i).copied().unwrap_or(0),
                    message: report
                        .and_then(|r| r.message.clone())
                        .or_else(|| scan_error.cloned()),
                    endpoint: report.and_then(|r| r.endpoint.clone()),
                    refused: self
                        .sources
                        .refused
                        .iter()
                        .filter(|(_, src)| *src == i)
                        .map(|(n, _)| n.to_string())
                        .collect(),
                }
            })
            .collect()
    }

    /// Read and check a vassal file: it must parse, and (as root) name a user to run as.
    /// The error of a vassal from etcd names its key first.
    fn load(&self, name: &VassalName, file: &VassalFile) -> Result<VassalConfig, LoadFailure> {
        self.load_file(name, file).map_err(|mut e| {
            if let Some((key, rev)) = self
                .origin_of(name)
                .and_then(|o| Some((o.key?, o.mod_revision?)))
            {
                e.message = format!("etcd key {key} (mod revision {rev}): {}", e.message);
            }
            e
        })
    }

    fn load_file(&self, name: &VassalName, file: &VassalFile) -> Result<VassalConfig, LoadFailure> {
        if let Some(problem) = &file.problem {
            return Err(problem.clone().into());
        }
        let mut config = self.read_config(&file.path)?;
        // An include may be what sets `uid`: what was read decides a retry here too.
        self.user_for(&config, &file.path)
            .map_err(|message| LoadFailure {
                message,
                read: config.includes.clone(),
            })?;
        let (euid, egid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        if !euid.is_root() {
            if let Some(notice) = unprivileged_notice(&config, euid.as_raw(), egid.as_raw()) {
                tracing::warn!(vassal = %name, "{notice}");
            }
        }
        if config.sockets.is_empty() {
            // No socket option: the emperor's default, speaking uwsgi.
            config.sockets.push(SocketSpec {
                protocol: Protocol::Uwsgi,
                addr: ListenAddr::Unix(self.settings.run_dir.join(format!("{name}.sock"))),
            });
        }
        Ok(config)
    }

    fn add(&mut self, name: VassalName, file: VassalFile) {
        // A vassal that is retiring under the same name (deleted and re-added quickly)
        // keeps its record until its process is gone; start over afterwards.
        if self.vassals.contains_key(&name) {
            self.change(&name, file);
            return;
        }
        tracing::info!(vassal = %name, file = %file.path.display(), "new vassal");
        let loaded = self.load(&name, &file);
        self.vassals.insert(
            name.clone(),
            Vassal {
                name: name.clone(),
                applied: None,
                file,
                config: None,
                failed_reads: None,
                sockets: Vec::new(),
                state: State::new(),
                wakes: BTreeSet::new(),
                logs: VecDeque::new(),
                last_spawned: None,
                output_dropped: 0,
                started: None,
                waiters: Vec::new(),
                feed: broadcast::channel(256).0,
                counters: BTreeMap::new(),
                ledger: crate::snapshot::Ledger::new(),
                watch: Vec::new(),
                sleep_seq: 0,
                activity: None,
            },
        );
        match loaded {
            Ok(config) => {
                if let Some(v) = self.vassals.get_mut(&name) {
                    v.state.on_demand = config.on_demand.unwrap_or(self.settings.on_demand);
                    v.config = Some(Arc::new(config));
                    v.applied = Some(v.file.fingerprint);
                }
                self.input(&name, Input::Start);
            }
            Err(failure) => {
                if let Some(v) = self.vassals.get_mut(&name) {
                    v.failed_reads = Some(failure.read);
                }
                self.input(
                    &name,
                    Input::ConfigBroken {
                        message: failure.message,
                    },
                );
            }
        }
    }

    fn change(&mut self, name: &VassalName, file: VassalFile) {
        let Some(v) = self.vassals.get(name) else {
            return;
        };
        let same_file = file.problem.is_none()
            && v.applied.is_some_and(|a| !a.changed(&file.fingerprint))
            && v.config.is_some();
        // After a failed load, load again: what runs may match the disk once more (the
        // edit reverted), and that load says so.
        if same_file && v.failed_reads.is_none() && !reads_changed(v) {
            // What runs was read from these very bytes (a link that dangled for a moment
            // points at them again): nothing to reload.
            tracing::debug!(vassal = %name, "same content as what runs: nothing to reload");
            if let Some(v) = self.vassals.get_mut(name) {
                v.applied = Some(file.fingerprint);
                v.file = file;
            }
            return;
        }
        let loaded = self.load(name, &file);
        let Some(v) = self.vassals.get_mut(name) else {
            return;
        };
        v.file = file;
        if loaded.is_ok() {
            v.failed_reads = None;
        }
        if let (true, Ok(new), Some(config)) = (same_file, &loaded, v.config.as_mut()) {
            if same_contents(&new.includes, &config.includes) {
                // The same bytes in every included file, found elsewhere (`%d` of a
                // projected directory names its new timestamped directory): nothing
                // to reload; look for them where they are now.
                tracing::debug!(vassal = %name, "includes moved, same content: nothing to reload");
                let mut moved = (**config).clone();
                moved.includes.clone_from(&new.includes);
                *config = Arc::new(moved);
                v.applied = Some(v.file.fingerprint);
                return;
            }
        }
        match loaded {
            Ok(config) => {
                tracing::info!(vassal = %name, "config changed: reloading");
                v.state.on_demand = config.on_demand.unwrap_or(self.settings.on_demand);
                v.config = Some(Arc::new(config));
                v.applied = Some(v.file.fingerprint);
                self.input(name, Input::ConfigChanged);
            }
            // Logged by `report`: ConfigRejected while a generation runs, Failed if not.
            Err(failure) => {
                // What this load read was tried: only its next change is news (as
                // `v.file` for the vassal's own file). The running configuration keeps
                // the includes it was read from.
                v.failed_reads = Some(failure.read);
                self.input(
                    name,
                    Input::ConfigBroken {
                        message: failure.message,
                    },
                )
            }
        }
    }

    /// Feed one input to a vassal's state machine and apply the effects.
    fn input(&mut self, name: &VassalName, input: Input) {
        let now = now();
        let Some(v) = self.vassals.get_mut(name) else {
            return;
        };
        let (state, effects) = lifecycle::step(&v.state, input, now, &self.settings.policy);
        v.state = state;
        if !matches!(v.state.phase, Phase::Sleeping { .. }) {
            // Awake (or gone): the watch of the last sleep ends.
            v.watch.drain(..).for_each(|h| h.abort());
        }
        let mut follow_ups = Vec::new();
        let mut follow_ups_for = Vec::new();
        for effect in effects {
            match effect {
                lifecycle::Effect::Spawn { gen } => follow_ups.push(self.spawn(name, gen)),
                lifecycle::Effect::Sleep => follow_ups.extend(self.sleep(name)),
                lifecycle::Effect::Signal { pid, sig } => self.effects.signal(pid, sig),
                lifecycle::Effect::WakeAt(t) => {
                    if let Some(v) = self.vassals.get_mut(name) {
                        v.wakes.insert(t);
                    }
                }
                lifecycle::Effect::Retired => {
                    if let Some(v) = self.vassals.remove(name) {
                        for s in &v.sockets {
                            // A socket handed over to another vassal stays.
                            let kept = self
                                .vassals
                                .values()
                                .any(|o| o.sockets.iter().any(|t| Arc::ptr_eq(s, t)));
                            if let (Some(path), false) = (&s.created_path, kept) {
                                let _ = std::fs::remove_file(path);
                            }
                        }
                        tracing::info!(vassal = %name, "retired");
                        // Vassals that failed because this one held their address
                        // (`cp a.ini b.ini; rm a.ini`) get their chance now.
                        let held = format!("already used by vassal '{name}'");
                        for (other, o) in &self.vassals {
                            if matches!(&o.state.phase, Phase::Failed { reason, .. } if reason.contains(&held))
                            {
                                follow_ups_for.push(other.clone());
                            }
                        }
                    }
                }
                lifecycle::Effect::Report(r) => {
                    report(name, &r);
                    if let Some(v) = self.vassals.get_mut(name) {
                        v.ledger.report(&r);
                    }
                    self.answer_waiters(name, &r);
                }
            }
        }
        for next in follow_ups {
            self.input(name, next);
        }
        for other in follow_ups_for {
            tracing::info!(vassal = %other, "the socket it waited for is free: starting");
            self.input(&other, Input::CtlStart);
        }
    }

    /// Answer `reload --wait` callers once the outcome is known.
    fn answer_waiters(&mut self, name: &VassalName, r: &Report) {
        let result = match r {
            Report::Reloaded { gen } | Report::Ready { gen } => ActionResult {
                ok: true,
                message: format!("{name}: generation {} serves", gen.0),
                ..ActionResult::default()
            },
            Report::ReloadFailed { reason } => ActionResult {
                ok: false,
                message: format!("{name}: reload failed: {reason}"),
                generation: self
                    .vassals
                    .get(name)
                    .and_then(|v| v.last_spawned)
                    .map(|g| g.0),
                ..ActionResult::default()
            },
            Report::Failed { reason } => ActionResult {
                ok: false,
                message: format!("{name}: failed: {reason}"),
                ..ActionResult::default()
            },
            _ => return,
        };
        if let Some(v) = self.vassals.get_mut(name) {
            for w in v.waiters.drain(..) {
                let _ = w.send(result.clone());
            }
        }
    }

    fn summary(&self, v: &Vassal) -> VassalSummary {
        let state = &v.state;
        let reason = match &state.phase {
            Phase::Ready { .. } => String::new(),
            Phase::Failed { reason, .. } => reason.clone(),
            Phase::Backoff { until, attempt } => format!(
                "attempt {attempt} failed, retrying in {:.1} s{}",
                until.saturating_duration_since(now()).as_secs_f64(),
                state
                    .last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            Phase::Stopped { .. } => "stopped by rsgictl".into(),
            Phase::Sleeping { .. } => "on demand: the next connection starts it".into(),
            _ => state.last_error.clone().unwrap_or_default(),
        };
        VassalSummary {
            name: v.name.to_string(),
            state: state.name().to_owned(),
            pid: state.current_pid().map(|p| p.0),
            generation: state.current_gen().map_or(0, |g| g.0),
            uptime_secs: state
                .current_pid()
                .and(v.started)
                .map(|t| now().saturating_duration_since(t).as_secs()),
            restarts: state.restarts,
            sockets: v.sockets.iter().map(|s| s.addr.to_string()).collect(),
            reason,
            origin: self.origin_of(&v.name),
        }
    }

    /// Answer a control command.
    fn control(&mut self, cmd: Command) -> Reply {
        let find = |this: &Self, name: &str| -> Option<VassalName> {
            let name = VassalName::new(name).ok()?;
            this.vassals.contains_key(&name).then_some(name)
        };
        match cmd {
            Command::List => Reply::List(VassalList {
                vassals: self.vassals.values().map(|v| self.summary(v)).collect(),
                sources: self.source_summaries(),
            }),
            Command::Status(name) => {
                let Some(n) = find(self, &name) else {
                    return Reply::NotFound(name);
                };
                let Some(v) = self.vassals.get(&n) else {
                    return Reply::NotFound(name);
                };
                Reply::Status(Box::new(VassalStatus {
                    summary: self.summary(v),
                    config: v.file.path.display().to_string(),
                    last_exit: v.state.last_exit.as_ref().map(|e| e.to_string()),
                    last_error: v.state.last_error.clone(),
                    workers: live_workers(v)
                        .into_iter()
                        .map(|w| rsgi_proto::control::WorkerInfo {
                            id: w.id,
                            pid: w.pid,
                            status: if w.in_flight > 0 { "busy" } else { "idle" }.to_owned(),
                            requests: w.requests,
                        })
                        .collect(),
                    log: v
                        .logs
                        .iter()
                        .rev()
                        .take(20)
                        .rev()
                        .map(|(_, l)| l.clone())
                        .collect(),
                }))
            }
            Command::Logs { name, lines, gen } => {
                let Some(v) = find(self, &name).and_then(|n| self.vassals.get(&n)) else {
                    return Reply::NotFound(name);
                };
                let of_gen: Vec<&String> = v
                    .logs
                    .iter()
                    .filter(|(g, _)| gen.is_none_or(|want| *g == want))
                    .map(|(_, l)| l)
                    .collect();
                let skip = of_gen.len().saturating_sub(lines);
                Reply::Logs(LogLines {
                    lines: of_gen.into_iter().skip(skip).cloned().collect(),
                })
            }
            Command::Follow(name) => {
                let Some(v) = find(self, &name).and_then(|n| self.vassals.get(&n)) else {
                    return Reply::NotFound(name);
                };
                Reply::Follow(
                    v.logs.iter().map(|(_, l)| l.clone()).collect(),
                    v.feed.subscribe(),
                )
            }
            Command::Stop(name) | Command::Start(name) | Command::Restart(name)
                if find(self, &name).is_none() =>
            {
                Reply::NotFound(name)
            }
            Command::Stop(name) => self.simple_action(&name, Input::CtlStop, "stopping"),
            Command::Start(name) => self.simple_action(&name, Input::CtlStart, "starting"),
            Command::Restart(name) => self.simple_action(&name, Input::CtlRestart, "restarting"),
            Command::Reload { name, wait } => {
                let names: Vec<VassalName> = match &name {
                    Some(n) => match find(self, n) {
                        Some(n) => vec![n],
                        None => return Reply::NotFound(n.clone()),
                    },
                    None => self.vassals.keys().cloned().collect(),
                };
                // One line per vassal, in the order of their names (`names` comes from
                // the BTreeMap). With `wait`, `entries` holds the same in the same
                // order, so the not-running ones keep their line when others are
                // waited for.
                let mut lines = Vec::new();
                let mut not_running = Vec::new();
                let mut entries = Vec::new();
                for n in names {
                    let Some(v) = self.vassals.get_mut(&n) else {
                        continue;
                    };
                    let running = matches!(
                        v.state.phase,
                        Phase::Ready { .. } | Phase::Starting { .. } | Phase::Reloading { .. }
                    );
                    if !running {
                        let message =
                            format!("{n}: not running ({}), nothing to reload", v.state.name());
                        lines.push(message.clone());
                        not_running.push(n.to_string());
                        entries.push(Pending::NotRunning {
                            name: n.to_string(),
                            message,
                        });
                        continue;
                    }
                    if wait {
                        let (tx, rx) = oneshot::channel();
                        v.waiters.push(tx);
                        entries.push(Pending::Waiting {
                            name: n.to_string(),
                            rx,
                        });
                    }
                    self.input(&n, Input::CtlReload);
                    lines.push(format!("{n}: reloading"));
                }
                if entries.iter().any(|e| matches!(e, Pending::Waiting { .. })) {
                    Reply::Pending(entries)
                } else {
                    Reply::Action(ActionResult {
                        // One vassal: not ok if it is not running; every vassal: ok.
                        ok: name.is_none() || not_running.is_empty(),
                        message: lines.join("\n"),
                        not_running,
                        generation: None,
                    })
                }
            }
            Command::Check(path) => Reply::Check(self.check(&path)),
            Command::Upgrade => {
                let result = self.begin_upgrade();
                if let Err(e) = &result {
                    tracing::error!("upgrade refused, this rsgid runs on: {e}");
                }
                let ok = result.is_ok();
                Reply::Action(ActionResult {
                    ok,
                    message: result.unwrap_or_else(|e| format!("upgrade refused: {e}")),
                    ..ActionResult::default()
                })
            }
            Command::Metrics => {
                let mut snapshot = crate::snapshot::Snapshot::take(
                    &self.settings,
                    self.scans,
                    self.vassals.values().map(|v| crate::snapshot::VassalView {
                        name: &v.name,
                        file: &v.file,
                        state: &v.state,
                        counters: &v.counters,
                        sockets: &v.sockets,
                        ledger: &v.ledger,
                        output_dropped: v.output_dropped,
                    }),
                );
                snapshot.sources = self.source_summaries();
                Reply::Metrics(Box::new(snapshot))
            }
        }
    }

    fn simple_action(&mut self, name: &str, input: Input, what: &str) -> Reply {
        let Ok(n) = VassalName::new(name) else {
            return Reply::NotFound(name.to_owned());
        };
        self.input(&n, input);
        Reply::Action(ActionResult {
            ok: true,
            message: format!("{name}: {what}"),
            ..ActionResult::default()
        })
    }

    /// Validate a vassal file: it parses, names a user when needed, and claims no
    /// address another vassal holds. (Whether the app imports is checked outside the
    /// actor, by [`crate::check::app_importable`]: it runs Python.)
    fn check(&self, path: &std::path::Path) -> CheckResult {
        let mut problems = Vec::new();
        match self.read_config(path) {
            Err(e) => problems.push(e.message),
            Ok(config) => {
                if let Err(e) = self.user_for(&config, path) {
                    problems.push(format!("{}: {e}", path.display()));
                }
                let own = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                for spec in &config.sockets {
                    for (other, v) in &self.vassals {
                        if Some(other.as_str()) == own.as_deref() {
                            continue;
                        }
                        if v.sockets.iter().any(|s| same_addr(&s.addr, &spec.addr)) {
                            problems.push(format!(
                                "{}: socket {} is already used by vassal '{other}'",
                                path.display(),
                                spec.addr
                            ));
                        }
                    }
                }
            }
        }
        CheckResult {
            ok: problems.is_empty(),
            problems,
        }
    }

    /// Start generation `gen`; returns the input that reports the outcome.
    fn spawn(&mut self, name: &VassalName, gen: Gen) -> Input {
        let failed = |e: SpawnError| Input::SpawnFailed {
            gen,
            message: e.message,
            permanent: e.permanent,
        };
        let user = match self
            .vassals
            .get(name)
            .and_then(|v| v.config.as_ref().map(|c| self.user_for(c, &v.file.path)))
        {
            Some(Ok(u)) => u,
            // A user that does not exist, or that tyrant mode refuses: the file must
            // change first.
            Some(Err(message)) => return failed(SpawnError::permanent(message)),
            None => return failed(SpawnError::permanent("no valid configuration")),
        };
        let sockets = match self.sockets_for(name) {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let Some(v) = self.vassals.get_mut(name) else {
            return failed(SpawnError::permanent("unknown vassal"));
        };
        let req = SpawnRequest {
            name,
            gen,
            file: &v.file,
            cwd: &self.settings.vassals,
            sockets: &sockets,
            user,
        };
        let pid = match self.effects.spawn(&req) {
            Ok(pid) => pid,
            Err(message) => return failed(SpawnError::transient(message)),
        };
        v.sockets = sockets;
        v.started = Some(now());
        v.last_spawned = Some(gen);
        tracing::info!(vassal = %name, gen = gen.0, pid = pid.0, "spawned");
        Input::Spawned { gen, pid }
    }

    /// A vassal goes to sleep: keep (or bind) its sockets and watch them; returns the
    /// input that reports a failure.
    fn sleep(&mut self, name: &VassalName) -> Option<Input> {
        let sockets = match self.sockets_for(name) {
            Ok(s) => s,
            Err(e) => {
                return Some(Input::SleepFailed {
                    message: e.message,
                    permanent: e.permanent,
                })
            }
        };
        let v = self.vassals.get_mut(name)?;
        v.watch.drain(..).for_each(|h| h.abort());
        v.sleep_seq += 1;
        v.activity = None;
        match self.effects.watch(name, v.sleep_seq, &sockets) {
            Ok(handles) => v.watch = handles,
            Err(message) => {
                return Some(Input::SleepFailed {
                    message,
                    permanent: false,
                })
            }
        }
        v.sockets = sockets;
        None
    }

    /// The sockets for a vassal's next generation: the ones it has when the addresses
    /// did not change; a retiring vassal's socket at the same address (a renamed file:
    /// `mv a.ini b.ini`), handed over so that the listening socket never closes;
    /// otherwise freshly bound.
    fn sockets_for(&self, name: &VassalName) -> Result<Vec<Arc<BoundSocket>>, SpawnError> {
        let v = self
            .vassals
            .get(name)
            .ok_or(SpawnError::permanent("unknown vassal"))?;
        let config = v
            .config
            .as_ref()
            .ok_or(SpawnError::permanent("no valid configuration"))?;
        let mut out = Vec::new();
        let mut to_bind = Vec::new();
        'specs: for spec in &config.sockets {
            let same = |s: &&Arc<BoundSocket>| {
                s.protocol == spec.protocol && same_addr(&s.addr, &spec.addr)
            };
            if let Some(existing) = v.sockets.iter().find(same) {
                out.push(Arc::clone(existing));
                continue;
            }
            for (other, ov) in &self.vassals {
                if other == name {
                    continue;
                }
                if !ov.sockets.iter().any(|s| same_addr(&s.addr, &spec.addr)) {
                    continue;
                }
                if retiring(ov) {
                    if let Some(theirs) = ov.sockets.iter().find(same) {
                        tracing::info!(vassal = %name, from = %other, socket = %spec.addr, "socket handed over");
                        out.push(Arc::clone(theirs));
                        continue 'specs;
                    }
                }
                // A clearer message than EADDRINUSE, and no point in waiting: the
                // other vassal keeps it until its file changes.
                return Err(SpawnError::permanent(format!(
                    "socket {} is already used by vassal '{other}'",
                    spec.addr
                )));
            }
            to_bind.push(spec.clone());
        }
        if to_bind.is_empty() {
            return Ok(out);
        }
        let user = if self.settings.tyrant {
            self.user_for(config, &v.file.path)
                .map_err(SpawnError::permanent)?
        } else {
            None
        };
        let bind = |sockets: Vec<SocketSpec>, chown: Option<String>| {
            let mut cfg = (**config).clone();
            cfg.sockets = sockets;
            if chown.is_some() {
                cfg.chown_socket = chown;
            }
            rsgi_os::listen::bind_all(&cfg).map_err(|e| SpawnError::of_listen(&e))
        };
        match user {
            None => out.extend(bind(to_bind, None)?.into_iter().map(Arc::new)),
            Some((uid, gid)) => {
                // Tyrant mode: the vassal's own sockets are bound with its owner's
                // rights (tyrant::bind_as); only rsgid's default socket, a path rsgid
                // chose in its own run directory, is bound here, and given to the owner.
                let default = ListenAddr::Unix(self.settings.run_dir.join(format!("{name}.sock")));
                let (own, theirs): (Vec<_>, Vec<_>) =
                    to_bind.into_iter().partition(|s| s.addr == default);
                let mut bound = Vec::new();
                if !own.is_empty() {
                    bound = bind(own, Some(format!("{uid}:{gid}")))?;
                }
                if !theirs.is_empty() {
                    let mut cfg = (**config).clone();
                    cfg.sockets = theirs;
                    match crate::tyrant::bind_as(crate::tyrant::Owner { uid, gid }, &cfg) {
                        Ok(b) => bound.extend(b),
                        Err(e) => {
                            rsgi_os::listen::vacuum(&bound);
                            return Err(SpawnError::transient(e));
                        }
                    }
                }
                out.extend(bound.into_iter().map(Arc::new));
            }
        }
        // Keep the configured order.
        let order = |s: &Arc<BoundSocket>| {
            config
                .sockets
                .iter()
                .position(|c| c.protocol == s.protocol && same_addr(&s.addr, &c.addr))
                .unwrap_or(usize::MAX)
        };
        out.sort_by_key(order);
        Ok(out)
    }

    /// Read and parse a vassal file: in tyrant mode (as root) with the rights of the
    /// file's owner (see [`crate::tyrant`]), otherwise here.
    fn read_config(&self, path: &std::path::Path) -> Result<VassalConfig, LoadFailure> {
        let mut config = if self.settings.tyrant && nix::unistd::geteuid().is_root() {
            let owner = file_owner(path)?;
            let as_owner = crate::tyrant::Owner {
                uid: owner.uid,
                gid: owner.gid,
            };
            crate::tyrant::load_as(as_owner, path).map_err(|e| LoadFailure {
                message: format!("{} (read as {}, the file's owner)", e.message, owner.name),
                // What the owner could not open rsgid may (root): compare later changes
                // with rsgid's own look, or every rescan would see a change.
                read: e
                    .read
                    .iter()
                    .map(|i| Included::read(&i.path, &rsgi_os::config::Os))
                    .collect(),
            })?
        } else {
            let env = |key: &str| std::env::var(key).ok();
            match rsgi_os::config::load_file_reads(&path.to_string_lossy(), &env) {
                (Ok(config), _) => config,
                (Err(e), read) => {
                    return Err(LoadFailure {
                        message: e.to_string(),
                        read,
                    })
                }
            }
        };
        // Relative unix sockets are bound where the vassal would bind them itself: in
        // its `chdir`, else in the directory vassals start in (as uWSGI binds after
        // `chdir`). rsgid binds them, so it resolves them the same way.
        let start = std::env::current_dir()
            .map(|cwd| cwd.join(&self.settings.vassals))
            .unwrap_or_else(|_| self.settings.vassals.clone());
        rsgi_proto::paths::resolve_sockets(&mut config, &start);
        Ok(config)
    }

    /// The uid/gid a vassal runs as. Only matters when rsgid runs as root. In tyrant
    /// mode always the ini file's owner, with the owner's primary group unless the ini's
    /// `gid` names another group the owner belongs to; a `uid`/`gid` naming anyone else
    /// is refused. Otherwise the ini's `uid`/`gid`, else rsgid's default user; never
    /// root unless the ini says `uid = root`.
    fn user_for(
        &self,
        config: &VassalConfig,
        file: &std::path::Path,
    ) -> Result<Option<(u32, u32)>, String> {
        if !nix::unistd::geteuid().is_root() {
            // Unprivileged (as in most containers): every vassal runs as rsgid's user
            // (see `unprivileged_notice`, logged when the file is read).
            return Ok(None);
        }
        if self.settings.tyrant {
            return tyrant_user(config, file).map(Some);
        }
        let (uid, gid) = if let Some(uid) = &config.uid {
            let user = lookup_user(uid)?;
            let gid = match &config.gid {
                Some(g) => lookup_group(g)?,
                None => user.1,
            };
            (user.0, gid)
        } else if let Some(uid) = &self.settings.uid {
            let user = lookup_user(uid)?;
            let gid = match &self.settings.gid {
                Some(g) => lookup_group(g)?,
                None => user.1,
            };
            (user.0, gid)
        } else {
            return Err(
                "refusing to run an app as root: set uid/gid in the ini (uid = root to allow it), \
                 or start rsgid with --uid/--tyrant"
                    .into(),
            );
        };
        Ok(Some((uid, gid)))
    }
}

/// Why a generation could not be started, and whether waiting could heal it.
#[derive(Debug)]
struct SpawnError {
    message: String,
    permanent: bool,
}

impl SpawnError {
    fn permanent(message: impl Into<String>) -> SpawnError {
        SpawnError {
            message: message.into(),
            permanent: true,
        }
    }

    fn transient(message: impl Into<String>) -> SpawnError {
        SpawnError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A bind error: permanent when only an edit of the file can heal it (a missing
    /// directory, a path too long, something that is no socket, a name that does not
    /// resolve, no permission); transient when whoever holds the address may let go,
    /// or the system is short of something.
    fn of_listen(e: &rsgi_os::listen::ListenError) -> SpawnError {
        use rsgi_os::listen::ListenError as L;
        use std::io::ErrorKind as K;
        let message = rsgi_proto::error::chain(e);
        let permanent = match e {
            L::NoParentDir { .. }
            | L::PathTooLong { .. }
            | L::NotASocket { .. }
            | L::Resolve { .. }
            | L::NoAddress { .. } => true,
            L::Bind { source, .. } | L::Socket { source, .. } | L::Listen { source, .. } => {
                matches!(
                    source.kind(),
                    K::NotFound | K::PermissionDenied | K::AddrNotAvailable | K::InvalidInput
                )
            }
            _ => false,
        };
        SpawnError { message, permanent }
    }
}

/// Whether a vassal's file is gone and it is on its way out (its sockets may pass to a
/// vassal that takes over the same address: a renamed file).
fn retiring(v: &Vassal) -> bool {
    matches!(
        v.state.phase,
        Phase::Stopping {
            then: lifecycle::Then::Retire,
            ..
        } | Phase::Retired
    )
}

/// The worker slots of a vassal's current generation that hold a live process.
fn live_workers(v: &Vassal) -> Vec<rsgi_os::shm::WorkerSnapshot> {
    let Some(gen) = v.state.current_gen() else {
        return Vec::new();
    };
    let Some(shm) = v.counters.get(&gen) else {
        return Vec::new();
    };
    shm.snapshots()
        .into_iter()
        .filter(|w| w.pid > 0 && w.status != rsgi_os::shm::WorkerStatus::Dead)
        .collect()
}

/// A tyrant-mode vassal file's owner.
struct FileOwner {
    uid: u32,
    /// The owner's primary group (from the user database, not the file's group).
    gid: u32,
    name: String,
}

/// Who owns a vassal file, for tyrant mode. Refused: root's files, an owner with no
/// user entry, and a symlink whose owner is not the owner of the file it points at (one
/// user must not be able to run another user's file).
fn file_owner(file: &std::path::Path) -> Result<FileOwner, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = file.display();
    let link = std::fs::symlink_metadata(file).map_err(|e| format!("{shown}: {e}"))?;
    let meta = std::fs::metadata(file).map_err(|e| format!("{shown}: {e}"))?;
    if link.file_type().is_symlink() && link.uid() != meta.uid() {
        return Err(format!(
            "tyrant mode: {shown} is a symlink owned by uid {} to a file owned by uid {}; \
             refusing to run another user's file",
            link.uid(),
            meta.uid()
        ));
    }
    if meta.uid() == 0 {
        return Err(format!(
            "tyrant mode: {shown} is owned by root; refusing to run it as root"
        ));
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .map_err(|e| format!("tyrant mode: {shown}: owner uid {}: {e}", meta.uid()))?
        .ok_or_else(|| {
            format!(
                "tyrant mode: {shown} is owned by uid {}, which has no user entry",
                meta.uid()
            )
        })?;
    Ok(FileOwner {
        uid: meta.uid(),
        gid: user.gid.as_raw(),
        name: user.name,
    })
}

/// As an unprivileged rsgid, every vassal runs as rsgid's own user and group, as uWSGI
/// runs a non-root instance (`uid`/`gid` switch users only as root). An ini whose
/// `uid`/`gid` names anyone else still runs, and this says so: the notice to log.
fn unprivileged_notice(config: &VassalConfig, euid: u32, egid: u32) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(spec) = &config.uid {
        // A number needs no user entry (containers often run as a bare uid).
        let uid = spec
            .parse::<u32>()
            .ok()
            .or_else(|| lookup_user(spec).ok().map(|u| u.0));
        if uid != Some(euid) {
            parts.push(format!("uid = {spec}"));
        }
    }
    if let Some(spec) = &config.gid {
        if lookup_group(spec).ok() != Some(egid) {
            parts.push(format!("gid = {spec}"));
        }
    }
    (!parts.is_empty()).then(|| {
        format!(
            "{} ignored: rsgid runs as uid {euid} gid {egid}, not root, so this vassal runs as \
             uid {euid} gid {egid} (only root switches users); run rsgid as root to switch",
            parts.join(", ")
        )
    })
}

/// Tyrant mode's rule: the file's owner, never anyone the ini names instead.
fn tyrant_user(config: &VassalConfig, file: &std::path::Path) -> Result<(u32, u32), String> {
    let owner = file_owner(file)?;
    let shown = file.display();
    if let Some(spec) = &config.uid {
        let (uid, _) = lookup_user(spec)?;
        if uid != owner.uid {
            return Err(format!(
                "tyrant mode: uid = {spec} names another user than {shown}'s owner {} \
                 (uid {}); a vassal runs as its file's owner",
                owner.name, owner.uid
            ));
        }
    }
    let gid = match &config.gid {
        None => owner.gid,
        Some(spec) => {
            let gid = lookup_group(spec)?;
            if gid != owner.gid && !member_of(&owner, gid) {
                return Err(format!(
                    "tyrant mode: gid = {spec} names a group that {shown}'s owner {} \
                     does not belong to",
                    owner.name
                ));
            }
            gid
        }
    };
    Ok((owner.uid, gid))
}

/// Whether `owner` belongs to group `gid` (primary or supplementary).
fn member_of(owner: &FileOwner, gid: u32) -> bool {
    let Ok(name) = std::ffi::CString::new(owner.name.as_str()) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(owner.gid))
        .map(|groups| groups.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false)
}

fn lookup_user(spec: &str) -> Result<(u32, u32), String> {
    let user = rsgi_os::users::user(spec)
        .map_err(|e| format!("user {spec}: {e}"))?
        .ok_or_else(|| format!("no such user: {spec}"))?;
    Ok((user.uid, user.gid))
}

fn lookup_group(spec: &str) -> Result<u32, String> {
    rsgi_os::users::gid_of(spec)
        .map_err(|e| format!("group {spec}: {e}"))?
        .ok_or_else(|| format!("no such group: {spec}"))
}

fn same_addr(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Unix(x), ListenAddr::Unix(y)) => x == y,
        (ListenAddr::Tcp { host: h1, port: p1 }, ListenAddr::Tcp { host: h2, port: p2 }) => {
            p1 == p2
                && (h1 == h2
                    || (h1.is_empty() && h2 == "0.0.0.0")
                    || (h2.is_empty() && h1 == "0.0.0.0"))
        }
        _ => false,
    }
}

fn report(name: &VassalName, r: &Report) {
    match r {
        Report::Ready { gen } => tracing::info!(vassal = %name, gen = gen.0, "ready"),
        Report::Reloaded { gen } => tracing::info!(vassal = %name, gen = gen.0, "reloaded"),
        Report::ReloadFailed { reason } => {
            tracing::error!(vassal = %name, "reload failed, the previous generation keeps serving: {reason}")
        }
        Report::Crashed {
            reason,
            attempt,
            retry_in,
            ..
        } => tracing::warn!(
            vassal = %name,
            attempt,
            "{reason}; retrying in {:.1} s",
            retry_in.as_secs_f64()
        ),
        Report::Failed { reason } => {
            tracing::error!(vassal = %name, "failed: {reason} (fix the file or run rsgictl start)")
        }
        Report::ConfigRejected { message } => {
            tracing::error!(vassal = %name, "config rejected, the running generation stays: {message}")
        }
        Report::Sleeping => {
            tracing::info!(vassal = %name, "sleeping: rsgid holds the sockets, the next connection starts it")
        }
        other => tracing::info!(vassal = %name, "{other:?}"),
    }
}

/// The actor's clock: tokio's, so that tests can run the actor under paused time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// Whether two lists of included files hold the same bytes, in the same order, wherever
/// they are.
fn same_contents(a: &[rsgi_proto::bounds::Included], b: &[rsgi_proto::bounds::Included]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.digest == y.digest)
}

/// What `v`'s configuration read besides its file, for [`scan::include_changes`].
fn reads_of(v: &Vassal) -> scan::Reads<'_> {
    scan::Reads {
        applied: v.config.as_ref().map(|c| c.includes.as_slice()),
        failed: v.failed_reads.as_deref(),
        retired: matches!(v.state.phase, Phase::Retired),
    }
}

/// Whether a file `v` watches ([`scan::Reads::watched`]) holds other bytes now.
fn reads_changed(v: &Vassal) -> bool {
    reads_of(v)
        .watched()
        .iter()
        .any(|i| i.changed(&rsgi_os::config::Os))
}

#[cfg(test)]
mod tests {
    //! The actor driven through its mailbox with a fake [`Effects`], under paused tokio
    //! time: real vassal files in a temp dir, real sockets bound, no process started.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::lifecycle::ExitInfo;
    use std::path::Path;
    use tokio::time::timeout;

    /// A deadline for each wait, in virtual time.
    const DEADLINE: Duration = Duration::from_secs(600);

    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Spawn { name: String, gen: u64, pid: i32 },
        Signal { pid: i32, sig: Sig },
    }

    struct Fake {
        calls: mpsc::UnboundedSender<Call>,
        next_pid: i32,
    }

    impl Effects for Fake {
        fn spawn(&mut self, req: &SpawnRequest<'_>) -> Result<Pid, String> {
            self.next_pid += 1;
            let _ = self.calls.send(Call::Spawn {
                name: req.name.to_string(),
                gen: req.gen.0,
                pid: self.next_pid,
            });
            Ok(Pid(self.next_pid))
        }
        fn signal(&mut self, pid: Pid, sig: Sig) {
            let _ = self.calls.send(Call::Signal { pid: pid.0, sig });
        }
    }

    struct Harness {
        dir: tempfile::TempDir,
        tx: mpsc::UnboundedSender<Msg>,
        calls: mpsc::UnboundedReceiver<Call>,
        policy: lifecycle::Policy,
    }

    impl Harness {
        /// An actor over a vassal directory holding `files` (name, ini text).
        fn start(files: &[(&str, &str)]) -> Harness {
            Harness::start_dirs(&[files], false)
        }

        fn vassal_dir(&self) -> std::path::PathBuf {
            self.dir.path().join("vassals")
        }

        /// An actor over two sources (`src0/`, `src1/`), each holding its `files`.
        fn start_sources(src0: &[(&str, &str)], src1: &[(&str, &str)]) -> Harness {
            Harness::start_dirs(&[src0, src1], true)
        }

        /// An actor over one directory per entry of `sources` (`vassals/` alone, or
        /// `src0/`, `src1/`, ... as separate sources), with the fake effects.
        fn start_dirs(sources: &[&[(&str, &str)]], several: bool) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let mut dirs = Vec::new();
            for (i, files) in sources.iter().enumerate() {
                let name = if several {
                    format!("src{i}")
                } else {
                    "vassals".to_owned()
                };
                let d = dir.path().join(&name);
                std::fs::create_dir(&d).unwrap();
                for (file, text) in *files {
                    std::fs::write(d.join(file), text).unwrap();
                }
                let d = std::fs::canonicalize(&d).unwrap();
                dirs.push(crate::source::SourceDir {
                    label: if several {
                        name
                    } else {
                        d.display().to_string()
                    },
                    dir: d,
                    kind: "dir",
                });
            }
            let settings = Settings {
                vassals: dirs[0].dir.clone(),
                run_dir: dir.path().join("run"),
                control_socket: dir.path().join("run/control.sock"),
                metrics_listen: None,
                ..Settings::default()
            };
            std::fs::create_dir(&settings.run_dir).unwrap();
            let policy = settings.policy.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let (calls_tx, calls) = mpsc::unbounded_channel();
            let fake = Fake {
                calls: calls_tx,
                next_pid: 100,
            };
            tokio::spawn(
                Emperor::new(settings, rx, Box::new(fake))
                    .with_sources(dirs)
                    .run(),
            );
            Harness {
                dir,
                tx,
                calls,
                policy,
            }
        }

        async fn call(&mut self) -> Call {
            timeout(DEADLINE, self.calls.recv())
                .await
                .expect("no effect before the deadline")
                .expect("the actor is gone")
        }

        /// No effect for `quiet` (virtual time; the actor's own timers run meanwhile).
        async fn no_call_for(&mut self, quiet: Duration) {
            if let Ok(call) = timeout(quiet, self.calls.recv()).await {
                panic!("unexpected effect: {call:?}");
            }
        }

        async fn spawned(&mut self, name: &str, gen: u64) -> i32 {
            match self.call().await {
                Call::Spawn {
                    name: n,
                    gen: g,
                    pid,
                } if n == name && g == gen => pid,
                other => panic!("expected spawn of {name} gen {gen}, got {other:?}"),
            }
        }

        fn send(&self, msg: Msg) {
            self.tx.send(msg).unwrap();
        }

        fn ready(&self, name: &str, gen: u64) {
            self.send(Msg::Notified {
                name: VassalName::new(name).unwrap(),
                gen: Gen(gen),
                msgs: vec![Message::Ready],
                fds: Vec::new(),
            });
        }

        fn exited(&self, name: &str, gen: u64, pid: i32, code: i32) {
            self.send(Msg::Exited {
                name: VassalName::new(name).unwrap(),
                gen: Gen(gen),
                pid: Pid(pid),
                exit: ExitInfo {
                    code: Some(code),
                    signal: None,
                },
            });
        }

        async fn ask(&self, command: Command) -> Reply {
            timeout(DEADLINE, crate::msg::ask(&self.tx, command))
                .await
                .unwrap()
                .unwrap()
        }

        async fn list(&self) -> Vec<VassalSummary> {
            match self.ask(Command::List).await {
                Reply::List(l) => l.vassals,
                other => panic!("{other:?}"),
            }
        }

        async fn one(&self, name: &str) -> VassalSummary {
            let list = self.list().await;
            list.into_iter()
                .find(|v| v.name == name)
                .unwrap_or_else(|| panic!("no vassal {name}"))
        }
    }

    /// A vassal file that parses and (as root) names a user.
    fn ini() -> String {
        format!(
            "[uwsgi]\nwsgi-file = app.py\nuid = {}\n",
            nix::unistd::getuid()
        )
    }

    fn exists(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn an_on_demand_vassal_sleeps_with_its_socket_and_a_wake_starts_it() {
        let mut h = Harness::start(&[("a.ini", &format!("{}on-demand = true\n", ini()))]);
        h.no_call_for(Duration::from_secs(5)).await;
        let a = h.one("a").await;
        assert_eq!((a.state.as_str(), a.pid), ("sleeping", None));
        assert!(
            exists(&h.dir.path().join("run/a.sock")),
            "rsgid bound the socket"
        );
        // A wake of another sleep is stale and ignored; the current one starts it.
        let name = VassalName::new("a").unwrap();
        h.send(Msg::Wake {
            name: name.clone(),
            seq: 7,
        });
        h.no_call_for(Duration::from_secs(1)).await;
        h.send(Msg::Wake { name, seq: 1 });
        let pid = h.spawned("a", 1).await;
        h.ready("a", 1);
        let a = h.one("a").await;
        assert_eq!((a.state.as_str(), a.pid), ("ready", Some(pid)));
    }

    #[test]
    fn an_unprivileged_rsgid_notes_other_users() {
        let cfg = |uid: Option<&str>, gid: Option<&str>| VassalConfig {
            uid: uid.map(str::to_owned),
            gid: gid.map(str::to_owned),
            ..VassalConfig::default()
        };
        let rows: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (None, None, None),
            (Some("1000"), None, None),
            (Some("1000"), Some("1000"), None),
            (
                Some("root"),
                None,
                Some("uid = root ignored: rsgid runs as uid 1000 gid 1000"),
            ),
            (Some("0"), Some("0"), Some("uid = 0, gid = 0 ignored")),
            (None, Some("0"), Some("gid = 0 ignored")),
        ];
        for (uid, gid, want) in rows {
            let got = unprivileged_notice(&cfg(*uid, *gid), 1000, 1000);
            match (&got, want) {
                (None, None) => {}
                (Some(n), Some(w)) => assert!(n.starts_with(w), "{n}"),
                _ => panic!("{uid:?} {gid:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_that_succeeds_replaces_the_generation() {
        let mut h = Harness::start(&[("a.ini", &ini())]);
        let old = h.spawned("a", 1).await;
        assert_eq!(h.one("a").await.state, "starting");
        h.ready("a", 1);
        let a = h.one("a").await;
        assert_eq!(
            (a.state.as_str(), a.pid, a.generation),
            ("ready", Some(old), 1)
        );
        let socket = h.dir.path().join("run/a.sock");
        assert!(exists(&socket), "the default socket is bound");

        match h
            .ask(Command::Reload {
                name: Some("a".into()),
                wait: false,
            })
            .await
        {
            Reply::Action(r) => assert!(r.ok, "{r:?}"),
            other => panic!("{other:?}"),
        }
        let new = h.spawned("a", 2).await;
        // The old generation serves until the new one is ready.
        h.no_call_for(Duration::from_secs(5)).await;
        h.ready("a", 2);
        assert_eq!(
            h.call().await,
            Call::Signal {
                pid: old,
                sig: Sig::Term
            }
        );
        h.exited("a", 1, old, 0);
        let a = h.one("a").await;
        assert_eq!(
            (a.state.as_str(), a.pid, a.generation),
            ("ready", Some(new), 2)
        );
        assert!(exists(&socket), "the socket passes to the new generation");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reload_keeps_the_old_generation() {
        let mut h = Harness::start(&[("a.ini", &ini())]);
        let old = h.spawned("a", 1).await;
        h.ready("a", 1);
        h.one("a").await;
        // An edit of the file is a reload too.
        std::fs::write(h.vassal_dir().join("a.ini"), ini() + "processes = 2\n").unwrap();
        h.send(Msg::Rescan);
        let new = h.spawned("a", 2).await;
        h.exited("a", 2, new, 1);
        // Nothing happens to the old generation: no signal, no respawn.
        h.no_call_for(Duration::from_secs(60)).await;
        let a = h.one("a").await;
        assert_eq!(
            (a.state.as_str(), a.pid, a.generation),
            ("ready", Some(old), 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_loop_ends_failed_after_max_attempts() {
        let mut h = Harness::start(&[("a.ini", &ini())]);
        let attempts = h.policy.max_attempts;
        for gen in 1..=u64::from(attempts) {
            let pid = h.spawned("a", gen).await;
            h.exited("a", gen, pid, 1);
        }
        // Backoff timers run out in virtual time; no attempt after the last.
        h.no_call_for(h.policy.backoff_max * 4).await;
        let a = h.one("a").await;
        assert_eq!(a.state, "failed", "{a:?}");
        assert_eq!(a.pid, None);
        // `rsgictl start` tries again.
        h.ask(Command::Start("a".into())).await;
        let gen = u64::from(attempts) + 1;
        h.spawned("a", gen).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_deleted_while_starting_retires_the_vassal() {
        let mut h = Harness::start(&[("a.ini", &ini()), ("b.ini", &ini())]);
        let mut pids = BTreeMap::new();
        for _ in 0..2 {
            match h.call().await {
                Call::Spawn { name, pid, .. } => pids.insert(name, pid),
                other => panic!("{other:?}"),
            };
        }
        let a = pids["a"];
        std::fs::remove_file(h.vassal_dir().join("a.ini")).unwrap();
        h.send(Msg::Rescan);
        assert_eq!(
            h.call().await,
            Call::Signal {
                pid: a,
                sig: Sig::Term
            }
        );
        h.exited("a", 1, a, 0);
        let names: Vec<String> = h.list().await.into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["b"]);
        assert!(
            !exists(&h.dir.path().join("run/a.sock")),
            "a's socket is removed"
        );
        assert!(exists(&h.dir.path().join("run/b.sock")));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_every_vassal_then_the_actor_ends() {
        let mut h = Harness::start(&[("a.ini", &ini())]);
        let pid = h.spawned("a", 1).await;
        h.ready("a", 1);
        h.send(Msg::Shutdown);
        assert_eq!(
            h.call().await,
            Call::Signal {
                pid,
                sig: Sig::Term
            }
        );
        h.exited("a", 1, pid, 0);
        // The actor ends: its mailbox closes.
        timeout(DEADLINE, h.tx.closed()).await.unwrap();
        assert!(!exists(&h.dir.path().join("run/a.sock")));
    }

    #[tokio::test(start_paused = true)]
    async fn two_sources_one_name_and_an_unreadable_source() {
        let mut h = Harness::start_sources(
            &[("a.ini", &ini())],
            &[("a.ini", &(ini() + "# other\n")), ("b.ini", &ini())],
        );
        let mut names = BTreeSet::new();
        for _ in 0..2 {
            match h.call().await {
                Call::Spawn { name, .. } => names.insert(name),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(names, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        h.no_call_for(Duration::from_secs(5)).await;
        let list = match h.ask(Command::List).await {
            Reply::List(l) => l,
            other => panic!("{other:?}"),
        };
        let a = list.vassals.iter().find(|v| v.name == "a").unwrap();
        assert_eq!(a.origin.as_ref().unwrap().source, "src0");
        assert_eq!(list.sources[1].refused, ["a"]);

        // The second source cannot be read: its vassal keeps running, nothing retires.
        std::fs::remove_dir_all(h.dir.path().join("src1")).unwrap();
        h.send(Msg::Rescan);
        h.no_call_for(Duration::from_secs(5)).await;
        let list = match h.ask(Command::List).await {
            Reply::List(l) => l,
            other => panic!("{other:?}"),
        };
        let names: Vec<&str> = list.vassals.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(list.sources[1].state, "unreadable");
        assert!(list.sources[1].errors > 0);

        // A remote source's report shows in the vassal's origin.
        h.send(Msg::Source(crate::source::SourceReport {
            index: 1,
            state: "stale",
            revision: 9,
            errors: 0,
            message: None,
            endpoint: None,
            keys: [(VassalName::new("b").unwrap(), ("/p/b.ini".to_owned(), 8))]
                .into_iter()
                .collect(),
            changed: false,
        }));
        let b = h.one("b").await;
        let origin = b.origin.unwrap();
        assert_eq!(origin.source_state, "stale");
        assert_eq!(origin.key.as_deref(), Some("/p/b.ini"));
        assert_eq!(origin.mod_revision, Some(8));
    }

    /// A vassal whose first load failed on its include (missing, then broken) starts
    /// once the include is fixed, without a touch of the vassal file; nothing is retried
    /// while nothing it read changes.
    #[tokio::test(start_paused = true)]
    async fn a_first_load_broken_by_its_include_is_retried_when_the_include_is_fixed() {
        let mut h = Harness::start(&[]);
        let other = h.dir.path().join("other.ini");
        let a_ini = h.vassal_dir().join("a.ini");
        std::fs::write(&a_ini, format!("{}ini = {}\n", ini(), other.display())).unwrap();
        h.send(Msg::Rescan);
        // Periodic rescans run meanwhile (virtual time): no attempt without a change.
        h.no_call_for(Duration::from_secs(10)).await;
        let a = h.one("a").await;
        assert_eq!(a.state, "failed", "{a:?}");
        let at_line = format!("{}:4: ini = {}: ", a_ini.display(), other.display());
        assert!(
            a.reason.starts_with(&at_line) && a.reason.contains("cannot read"),
            "{a:?}"
        );

        // The include appears, broken: tried again, still failed, with its own line.
        std::fs::write(&other, "[uwsgi]\nharakri = 5\n").unwrap();
        h.send(Msg::Rescan);
        h.no_call_for(Duration::from_secs(10)).await;
        let a = h.one("a").await;
        assert_eq!(a.state, "failed", "{a:?}");
        assert!(
            a.reason
                .starts_with(&format!("{}:2: unknown option 'harakri'", other.display())),
            "{a:?}"
        );

        // Fixed: it starts, the vassal file untouched.
        std::fs::write(&other, "[uwsgi]\nprocesses = 2\n").unwrap();
        h.send(Msg::Rescan);
        h.spawned("a", 1).await;
    }

    /// A running vassal whose reload fails on its include keeps serving; a revert of the
    /// include to what runs reloads nothing; a fix with new content reloads.
    #[tokio::test(start_paused = true)]
    async fn a_reload_broken_by_an_include_is_retried_when_the_include_changes() {
        let mut h = Harness::start(&[]);
        let other = h.dir.path().join("other.ini");
        let good = "[uwsgi]\nprocesses = 1\n";
        std::fs::write(&other, good).unwrap();
        let a_ini = h.vassal_dir().join("a.ini");
        std::fs::write(&a_ini, format!("{}ini = {}\n", ini(), other.display())).unwrap();
        h.send(Msg::Rescan);
        let old = h.spawned("a", 1).await;
        h.ready("a", 1);

        // Broken: rejected, the running generation stays, and no retry loop.
        std::fs::write(&other, "[uwsgi]\nharakri = 5\n").unwrap();
        h.send(Msg::Rescan);
        h.no_call_for(Duration::from_secs(10)).await;
        let a = h.one("a").await;
        assert_eq!(
            (a.state.as_str(), a.pid, a.generation),
            ("ready", Some(old), 1)
        );

        // Reverted to the bytes that run: nothing to reload.
        std::fs::write(&other, good).unwrap();
        h.send(Msg::Rescan);
        h.no_call_for(Duration::from_secs(10)).await;

        // Broken again (the include went), then fixed with new content: a reload.
        std::fs::remove_file(&other).unwrap();
        h.send(Msg::Rescan);
        h.no_call_for(Duration::from_secs(10)).await;
        std::fs::write(&other, "[uwsgi]\nprocesses = 3\n").unwrap();
        h.send(Msg::Rescan);
        h.spawned("a", 2).await;
    }
}
