//! The numbers the actor hands out: a [`Snapshot`] of every vassal, and the [`Ledger`]
//! that keeps its counters monotonic. Plain data, taken inside the actor
//! ([`Snapshot::take`]) and read (`/proc` sampling, [`Snapshot::fill_proc`]) outside it;
//! [`crate::metrics`] renders it (Prometheus, `/top`, uWSGI's emperor stats).
//!
//! A vassal generation hands rsgid its counters memfd over the notify socket; the actor
//! maps it (`Vassal.counters`). Inside one region every counter only grows: the vassal's
//! master keeps a worker slot's history across respawns and across its own HUP reloads
//! (the region survives the re-exec). A region ends with its generation (a reload by
//! rsgid, a crash, a stop), and a re-executed master that changed its worker count
//! sends a new one. So the actor adds a region's last values to [`Ledger`]'s retired
//! totals when it lets go of the region ([`Ledger::retire`], [`Ledger::replace`]), and
//! every `_total` series is `retired + sum over the regions still mapped`: monotonic
//! for the life of the vassal (a vassal that is retired and added again starts from 0,
//! which Prometheus treats as a counter reset).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rsgi_os::listen::BoundSocket;
use rsgi_os::shm::{
    MasterSnapshot, RespawnCause, Shm, WorkerSnapshot, WorkerStatus, HISTOGRAM_LEN,
};

use crate::lifecycle::{Gen, Phase, Report, State};
use crate::scan::{VassalFile, VassalName};
use crate::settings::Settings;

// ---------------------------------------------------------------------------------------
// Totals and the ledger
// ---------------------------------------------------------------------------------------

/// Cumulative counters of one vassal (or of one counter region).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Requests finished.
    pub requests: u64,
    /// Requests that raised a Python exception.
    pub exceptions: u64,
    /// Bytes sent to clients.
    pub tx: u64,
    /// Sum of request durations, µs.
    pub duration_us: u64,
    /// Workers killed by harakiri.
    pub harakiri: u64,
    /// Finished requests by status class (1xx..5xx).
    pub status_classes: [u64; 5],
    /// Finished requests per duration bucket (not cumulative; last = +Inf).
    pub histogram: [u64; HISTOGRAM_LEN],
    /// Worker respawns per [`RespawnCause`] (the vassal master's own count).
    pub respawns: [u64; RespawnCause::COUNT],
    /// The vassal master's own graceful reloads (SIGHUP, touch-reload) that worked.
    pub reloads: u64,
    /// ... and that failed.
    pub reloads_failed: u64,
}

impl Totals {
    /// The totals of one region: every worker slot plus the master area.
    pub fn of(shm: &Shm) -> Totals {
        Totals::of_workers(&shm.snapshots(), &shm.master().snapshot())
    }

    /// The totals of one region read already: its worker slots and its master area.
    fn of_workers(workers: &[WorkerSnapshot], m: &MasterSnapshot) -> Totals {
        let mut t = Totals::default();
        for s in workers {
            t.requests += s.requests;
            t.exceptions += s.exceptions;
            t.tx += s.tx;
            t.duration_us += s.running_time_us;
            t.harakiri += s.harakiri_count;
            add_each(&mut t.status_classes, &s.status_classes);
            add_each(&mut t.histogram, &s.histogram);
        }
        add_each(&mut t.respawns, &m.respawns);
        t.reloads = m.reloads;
        t.reloads_failed = m.reloads_failed;
        t
    }

    /// Add `other` to these totals.
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.exceptions += other.exceptions;
        self.tx += other.tx;
        self.duration_us += other.duration_us;
        self.harakiri += other.harakiri;
        add_each(&mut self.status_classes, &other.status_classes);
        add_each(&mut self.histogram, &other.histogram);
        add_each(&mut self.respawns, &other.respawns);
        self.reloads += other.reloads;
        self.reloads_failed += other.reloads_failed;
    }
}

fn add_each<const N: usize>(to: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in to.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

/// What the actor keeps per vassal for the metrics (one in each `Vassal`). Handed over
/// to the new image on an upgrade (serde), so counters stay monotonic.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    /// Totals of the counter regions the actor let go of (ended generations).
    retired: Totals,
    /// rsgid's reloads of the vassal (a new generation) that ended with the new
    /// generation serving.
    reloads_ok: u64,
    /// ... and those where the new generation failed (the old one serves on).
    reloads_failed: u64,
    /// When rsgid first saw the vassal (epoch seconds): uWSGI's `born`/`first_run`.
    added: u64,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger::new()
    }
}

impl Ledger {
    /// A ledger for a vassal seen just now.
    pub fn new() -> Ledger {
        Ledger {
            retired: Totals::default(),
            reloads_ok: 0,
            reloads_failed: 0,
            added: rsgi_os::shm::epoch_secs(),
        }
    }

    /// A generation's region is let go of (its process exited): keep its last values.
    pub fn retire(&mut self, shm: &Shm) {
        self.retired.add(&Totals::of(shm));
    }

    /// A generation sent another region (`new`) in place of `old`. A master that
    /// re-executes itself passes the same memfd again: then nothing ends. A different
    /// region (the worker count changed) ends the old one's counting.
    pub fn replace(&mut self, old: &Shm, new: &Shm) {
        if !same_region(old, new) {
            self.retire(old);
        }
    }

    /// Count a lifecycle report (reload outcomes).
    pub fn report(&mut self, report: &Report) {
        match report {
            Report::Reloaded { .. } => self.reloads_ok += 1,
            Report::ReloadFailed { .. } => self.reloads_failed += 1,
            _ => {}
        }
    }

    /// The totals: the retired ones plus those of the live regions.
    pub fn totals(&self, live: impl IntoIterator<Item = Totals>) -> Totals {
        let mut t = self.retired.clone();
        for region in live {
            t.add(&region);
        }
        t
    }
}

/// Whether two mappings are of the same memfd (same inode).
fn same_region(a: &Shm, b: &Shm) -> bool {
    match (nix::sys::stat::fstat(a.fd()), nix::sys::stat::fstat(b.fd())) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// The snapshot
// ---------------------------------------------------------------------------------------

/// One vassal as the actor holds it, borrowed for [`Snapshot::take`].
#[derive(Debug, Clone, Copy)]
pub struct VassalView<'a> {
    /// Its name.
    pub name: &'a VassalName,
    /// Its file.
    pub file: &'a VassalFile,
    /// Its lifecycle state.
    pub state: &'a State,
    /// The counter regions of its running generations.
    pub counters: &'a BTreeMap<Gen, Arc<Shm>>,
    /// The listening sockets rsgid holds for it.
    pub sockets: &'a [Arc<BoundSocket>],
    /// Its ledger.
    pub ledger: &'a Ledger,
    /// Output lines its processes dropped while rsgid was not reading.
    pub output_dropped: u64,
}

/// Every vassal's numbers at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was taken.
    pub time: Option<SystemTime>,
    /// The vassal directory (uWSGI's `emperor` list).
    pub dir: String,
    /// Tyrant mode.
    pub tyrant: bool,
    /// Scans of the vassal directory since rsgid started.
    pub scans: u64,
    /// The vassals, by name.
    pub vassals: Vec<VassalSample>,
    /// The vassal sources (`rsgi_source_*`).
    pub sources: Vec<rsgi_proto::control::SourceSummary>,
}

/// One vassal in a [`Snapshot`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VassalSample {
    /// Its name.
    pub name: String,
    /// Its file name (`app.ini`): uWSGI's vassal `id`.
    pub file_name: String,
    /// Its state (one of [`STATE_NAMES`]).
    pub state: &'static str,
    /// Serving: `ready`, or `reloading` (the old generation serves meanwhile).
    pub up: bool,
    /// The current generation's pid.
    pub pid: Option<i32>,
    /// The current generation.
    pub generation: u64,
    /// The file's modification time, epoch seconds.
    pub last_mod: u64,
    /// When rsgid first saw the vassal, epoch seconds.
    pub added: u64,
    /// Since when the serving generation is ready, epoch seconds.
    pub ready_since: Option<u64>,
    /// Whether it has been ready long enough to be loyal (its failure count reset).
    pub loyal_since: Option<u64>,
    /// Every process of it: generation masters (draining ones too) and workers.
    pub pids: Vec<i32>,
    /// The cumulative counters.
    pub totals: Totals,
    /// Workers with a request in flight.
    pub busy: u32,
    /// Running workers without one.
    pub idle: u32,
    /// Requests in flight.
    pub in_flight: u64,
    /// Connections waiting in the accept queue.
    pub listen_queue: u64,
    /// rsgid's restarts of the vassal after failures.
    pub restarts: u64,
    /// Output lines dropped because rsgid was not reading.
    pub output_dropped: u64,
    /// Reloads that worked: rsgid's plus the vassal master's own.
    pub reloads_ok: u64,
    /// Reloads that failed: rsgid's plus the vassal master's own.
    pub reloads_failed: u64,
    /// Resident memory of all its processes, bytes ([`Snapshot::fill_proc`]).
    pub rss: u64,
    /// When the current generation's process started, epoch seconds
    /// ([`Snapshot::fill_proc`]).
    pub generation_start: Option<u64>,
    /// The uid and gid the current generation runs as ([`Snapshot::fill_proc`]).
    pub owner: Option<(u32, u32)>,
}

impl Snapshot {
    /// Copy every vassal's numbers (inside the actor: only atomic loads and one
    /// `getsockopt` per TCP socket; `/proc` is read later, by [`Snapshot::fill_proc`]).
    pub fn take<'a>(
        settings: &Settings,
        scans: u64,
        vassals: impl IntoIterator<Item = VassalView<'a>>,
    ) -> Snapshot {
        let clock = Clock {
            mono: Instant::now(),
            wall: SystemTime::now(),
        };
        let loyal_after = settings.policy.loyal_after;
        Snapshot {
            time: Some(clock.wall),
            dir: settings.vassals.display().to_string(),
            tyrant: settings.tyrant,
            scans,
            vassals: vassals
                .into_iter()
                .map(|v| VassalSample::take(v, clock, loyal_after))
                .collect(),
            sources: Vec::new(),
        }
    }

    /// How long after the Unix epoch the snapshot was taken (zero without a time).
    pub(crate) fn since_epoch(&self) -> Duration {
        self.time
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }

    /// Read what `/proc` knows: each vassal's resident memory (the sum over its
    /// processes), its current generation's start time and user.
    pub fn fill_proc(&mut self) {
        let boot = boot_time();
        for v in &mut self.vassals {
            v.rss = v
                .pids
                .iter()
                .filter_map(|&p| rsgi_os::stats::proc_memory(nix::unistd::Pid::from_raw(p)))
                .map(|m| m.rss)
                .sum();
            if let Some(pid) = v.pid.filter(|&p| p > 0) {
                v.generation_start = boot.and_then(|b| process_start(pid, b));
                v.owner = std::fs::metadata(format!("/proc/{pid}"))
                    .ok()
                    .map(|m| (m.uid(), m.gid()));
            }
        }
    }
}

/// The moment a [`Snapshot`] is taken, on both clocks.
#[derive(Debug, Clone, Copy)]
struct Clock {
    mono: Instant,
    wall: SystemTime,
}

impl Clock {
    /// Epoch seconds of the monotonic instant `t` (in the past).
    fn epoch(self, t: Instant) -> u64 {
        let at = self
            .wall
            .checked_sub(self.mono.saturating_duration_since(t))
            .unwrap_or(self.wall);
        at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

impl VassalSample {
    /// One vassal's numbers; every counter region is read once.
    fn take(v: VassalView<'_>, clock: Clock, loyal_after: Duration) -> VassalSample {
        let state = v.state;
        let (ready_since, loyal_since) = match &state.phase {
            Phase::Ready { since, .. }
            | Phase::Reloading {
                ready_since: since, ..
            } => {
                let loyal = (clock.mono.saturating_duration_since(*since) >= loyal_after)
                    .then(|| clock.epoch(*since) + loyal_after.as_secs());
                (Some(clock.epoch(*since)), loyal)
            }
            _ => (None, None),
        };
        let current = state.current_gen();
        let mut pids: BTreeSet<i32> = state.pids().iter().map(|p| p.0).collect();
        let (mut busy, mut idle, mut in_flight) = (0u32, 0u32, 0u64);
        let mut master_queue = 0;
        let mut live = Vec::with_capacity(v.counters.len());
        for (gen, shm) in v.counters {
            let workers = shm.snapshots();
            let master = shm.master().snapshot();
            for w in &workers {
                if w.pid <= 0 || w.status == WorkerStatus::Dead {
                    continue;
                }
                pids.insert(w.pid);
                in_flight += u64::from(w.in_flight);
                if w.in_flight > 0 || w.status == WorkerStatus::Busy {
                    busy += 1;
                } else {
                    idle += 1;
                }
            }
            if Some(*gen) == current {
                master_queue = u64::from(master.listen_queue);
            }
            live.push(Totals::of_workers(&workers, &master));
        }
        pids.retain(|&p| p > 0);
        let totals = v.ledger.totals(live);
        // The accept queue of the sockets rsgid holds (the kernel counts it per socket,
        // whoever accepts); the vassal master's last sample when rsgid holds none.
        let listen_queue = v
            .sockets
            .iter()
            .filter_map(|s| rsgi_os::stats::listen_queue(s.listener.as_fd()))
            .map(|q| u64::from(q.queue))
            .reduce(|a, b| a + b)
            .unwrap_or(master_queue);
        VassalSample {
            name: v.name.to_string(),
            file_name: v
                .file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| v.name.to_string()),
            state: state.name(),
            up: ready_since.is_some(),
            pid: state.current_pid().map(|p| p.0),
            generation: current.map_or(0, |g| g.0),
            last_mod: u64::try_from(v.file.fingerprint.mtime_ns / 1_000_000_000).unwrap_or(0),
            added: v.ledger.added,
            ready_since,
            loyal_since,
            pids: pids.into_iter().collect(),
            reloads_ok: v.ledger.reloads_ok + totals.reloads,
            reloads_failed: v.ledger.reloads_failed + totals.reloads_failed,
            totals,
            busy,
            idle,
            in_flight,
            listen_queue,
            restarts: u64::from(state.restarts),
            output_dropped: v.output_dropped,
            rss: 0,
            generation_start: None,
            owner: None,
        }
    }
}

/// The system's boot time, epoch seconds (`btime` of `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// When process `pid` started, epoch seconds: field 22 of `/proc/<pid>/stat` (clock
/// ticks since boot) plus the boot time.
fn process_start(pid: i32, boot: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = start_ticks(&stat)?;
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 100,
    };
    Some(boot + ticks / hz)
}

/// The `starttime` field of a `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so count from its last `)`.
fn start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; starttime is field 22.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rsgi_os::shm::{monotonic_ms, WorkerId};

    fn request(shm: &Shm, worker: u32, status: u16, ms: u64) {
        let slot = shm.slot(WorkerId::new(worker).unwrap()).unwrap();
        let t = slot.request_started(monotonic_ms());
        slot.request_finished(t, status, 10, Duration::from_millis(ms), status >= 500);
    }

    #[test]
    fn totals_add_slots_and_the_master_area() {
        let shm = Shm::create(2).unwrap();
        request(&shm, 1, 200, 1);
        request(&shm, 2, 404, 30);
        request(&shm, 2, 503, 3_000);
        shm.count_respawn(WorkerId::new(1).unwrap(), RespawnCause::Crash);
        shm.master().count_reload();
        let t = Totals::of(&shm);
        assert_eq!(t.requests, 3);
        assert_eq!(t.exceptions, 1);
        assert_eq!(t.tx, 30);
        assert_eq!(t.duration_us, 3_031_000);
        assert_eq!(t.status_classes, [0, 1, 0, 1, 1]);
        assert_eq!(t.histogram[0], 1);
        assert_eq!(t.histogram[3], 1); // 30 ms: <= 50 ms
        assert_eq!(t.histogram[9], 1); // 3 s: <= 5 s
        assert_eq!(t.respawns[RespawnCause::Crash as usize], 1);
        assert_eq!((t.reloads, t.reloads_failed), (1, 0));
    }

    #[test]
    fn ledger_keeps_totals_monotonic_across_regions() {
        let mut ledger = Ledger::new();
        let gen1 = Shm::create(1).unwrap();
        for _ in 0..5 {
            request(&gen1, 1, 200, 1);
        }
        assert_eq!(ledger.totals([Totals::of(&gen1)]).requests, 5);
        // A reload: generation 2 runs beside 1.
        let gen2 = Shm::create(1).unwrap();
        request(&gen2, 1, 200, 1);
        assert_eq!(
            ledger
                .totals([Totals::of(&gen1), Totals::of(&gen2)])
                .requests,
            6
        );
        // Generation 1 exits: its counts stay.
        ledger.retire(&gen1);
        drop(gen1);
        assert_eq!(ledger.totals([Totals::of(&gen2)]).requests, 6);
        // The master re-executes and sends the same memfd again: nothing ends.
        let again = Shm::from_fd(nix::unistd::dup(gen2.fd()).unwrap(), 1).unwrap();
        ledger.replace(&gen2, &again);
        assert_eq!(ledger.totals([Totals::of(&again)]).requests, 6);
        // ... or a new region (another worker count): the old one's counts stay.
        let gen2b = Shm::create(2).unwrap();
        ledger.replace(&again, &gen2b);
        request(&gen2b, 2, 500, 1);
        let t = ledger.totals([Totals::of(&gen2b)]);
        assert_eq!(t.requests, 7);
        assert_eq!(t.status_classes, [0, 6, 0, 0, 1]);
        // Reload outcomes from the lifecycle.
        ledger.report(&Report::Reloaded { gen: Gen(2) });
        ledger.report(&Report::ReloadFailed { reason: "x".into() });
        ledger.report(&Report::Stopped);
        assert_eq!((ledger.reloads_ok, ledger.reloads_failed), (1, 1));
    }

    #[test]
    fn proc_stat_start_time() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks(line), Some(987_654));
        assert_eq!(start_ticks("garbage"), None);
        let me = i32::try_from(std::process::id()).unwrap();
        let start = process_start(me, boot_time().unwrap()).unwrap();
        let now = rsgi_os::shm::epoch_secs();
        assert!(start <= now + 1 && start + 3_600 > now, "{start} vs {now}");
    }
}
