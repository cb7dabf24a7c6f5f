//! Per-worker counters shared between the master and its workers.
//!
//! The master creates one [`Shm`] region **before it forks** any worker. Every worker
//! inherits the mapping and updates its own [`WorkerSlot`] on every request
//! ([`WorkerSlot::request_started`], [`WorkerSlot::request_finished`]); the master reads
//! the slots for its respawn decisions (max-requests, harakiri, reload-on-rss), for the
//! uWSGI-compatible stats socket ([`crate::stats`]) and for the emperor's Prometheus
//! metrics. The hot path is a handful of relaxed atomic read-modify-writes on one
//! worker's own cache lines: no lock, no syscall, no allocation.
//!
//! # Layout
//!
//! ```text
//! offset 0                 Header      magic, version, sizes, master pid, master start
//! offset 64                MasterArea  listen queue, reloads, respawns per cause
//! offset 64 + 128          WorkerSlot  worker 1   (slot index = worker id - 1)
//!        ... + n * 1344    WorkerSlot  worker n
//! ```
//!
//! Every struct is `#[repr(C, align(64))]`: the layout is fixed by the source, not by
//! the compiler, and each worker's slot starts on its own cache line, so two workers
//! never write to the same line. The header carries [`MAGIC`], a layout [`VERSION`]
//! and the size of a slot; [`Shm::from_fd`] refuses a region whose header does not
//! match this build. **Bump [`VERSION`] whenever a field is added, moved or resized.**
//!
//! # Why atomics in a `MAP_SHARED` mapping are sound across processes
//!
//! All processes map the same physical pages (the pages of one memfd), so an atomic
//! instruction in one process acts on the very memory the other processes read. The
//! atomic types used here (`AtomicU64`, `AtomicU32`, `AtomicI32`, `AtomicU8`) are
//! lock-free on every target rsgi supports (checked at compile time with
//! `cfg(target_has_atomic)`), i.e. they compile to plain atomic instructions and keep
//! no hidden per-process lock, so their guarantees hold between processes exactly as
//! between threads. Every byte of the region that Rust code looks at is part of an
//! atomic (padding is never read), a zeroed page is a valid value for each of them,
//! and references into the mapping never outlive the [`Shm`] that owns it, which keeps
//! the mapping alive. Counters use `Relaxed` ordering: each counter is exact on its
//! own, but a reader may see one request's effect on `requests` before its effect on
//! `tx`. That is fine for monitoring and respawn decisions, and it keeps the hot path
//! as cheap as an unsynchronised increment on x86-64.
//!
//! # Which counters survive a respawn
//!
//! uWSGI keeps a slot's counters when it respawns the worker ("do not reset worker
//! counters on reload", `core/master_utils.c uwsgi_respawn_worker`) and only zeroes
//! `delta_requests` (which drives `max-requests`), the harakiri timer and the memory
//! figures. rsgi does the same, so `requests`, `exceptions`, `tx`, `running_time`,
//! `avg_rt`, `harakiri_count`, the status classes and the histogram are monotonic for
//! as long as the region lives; they can be exported as Prometheus counters directly,
//! no separate "total" copy is needed. `respawn_count` counts every spawn of the slot,
//! the first one included, as uWSGI does (it is 1 after the first fork).
//! [`WorkerSlot::reset_for_spawn`] lists exactly what is reset.
//!
//! The region is a memfd so that it can outlive an `execve` of the master (a full
//! reload): the master duplicates it to a high fd number without close-on-exec
//! (`F_DUPFD`, in `vassal/src/master.rs`) and the new program finds that number in
//! [`SHM_FD_ENV`] ([`Shm::from_env`]). If the new configuration has a
//! different number of workers the old region is rejected and the caller creates a
//! fresh one (counters start again from zero).
//!
//! # Clocks
//!
//! Request start times (harakiri) are milliseconds of `CLOCK_MONOTONIC`
//! ([`monotonic_ms`]). That clock is system-wide, so values written by a worker and
//! compared by the master agree; it does not jump with the wall clock. Spawn times
//! (`last_spawn`) are wall-clock epoch seconds ([`epoch_secs`]) because uWSGI's stats
//! show them as a time of day.

use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::fstat;
use nix::unistd::{ftruncate, getpid, Pid};

// The whole design rests on these being real lock-free atomics (see the module docs).
#[cfg(not(all(
    target_has_atomic = "8",
    target_has_atomic = "32",
    target_has_atomic = "64"
)))]
compile_error!("rsgi's shared counters need lock-free 8, 32 and 64-bit atomics");

/// Environment variable that carries the region's fd number across an `execve` of
/// the master.
pub const SHM_FD_ENV: &str = "RSGI_SHM_FD";

/// First eight bytes of a region: `b"RSGISHM\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RSGISHM\0");

/// Layout version. Bump it whenever any `#[repr(C)]` struct of this module changes.
pub const VERSION: u32 = 1;

/// Largest worker count a region can hold (keeps the size arithmetic far from
/// overflow; uWSGI's own limit is lower).
pub const MAX_WORKERS: usize = 4096;

/// Concurrent requests per worker that are tracked individually (harakiri start
/// time, uWSGI "cores"). Requests beyond this are still counted in every total and in
/// `in_flight`, but do not get a start time of their own.
pub const MAX_CORES: usize = 64;

/// Upper bounds of the request-duration histogram buckets, in microseconds:
/// Prometheus' default buckets (`.005 .01 .025 .05 .1 .25 .5 1 2.5 5 10` s) plus 30 s
/// and 60 s (nginx's default `uwsgi_read_timeout`). A request of exactly a bound's
/// duration falls into that bucket (Prometheus `le`, "less or equal").
pub const DURATION_BUCKETS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

/// Number of histogram counters: one per bound in [`DURATION_BUCKETS_US`] plus the
/// `+Inf` bucket. The counters are per bucket, **not** cumulative; sum them up to
/// get Prometheus' cumulative `_bucket` series.
pub const HISTOGRAM_LEN: usize = DURATION_BUCKETS_US.len() + 1;

/// The names of the status classes, in the order of the `status_classes` counters
/// (index 0 = 1xx ... 4 = 5xx): the stats JSON keys and the Prometheus `class` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The bucket bounds in nanoseconds, so that the hot path compares integers only.
const DURATION_BUCKETS_NS: [u64; 13] = {
    let mut ns = [0u64; 13];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = DURATION_BUCKETS_US[i] * 1_000;
        i += 1;
    }
    ns
};

/// Errors from creating or attaching a shared region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The worker count is 0 or above [`MAX_WORKERS`].
    #[error("cannot make shared counters for {workers} workers (must be 1..={MAX_WORKERS})")]
    BadWorkerCount {
        /// The requested count.
        workers: usize,
    },
    /// A system call failed.
    #[error("shared counters: {about}")]
    Sys {
        /// What was being done.
        about: &'static str,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// The fd's size is not the size of a region for this many workers.
    #[error(
        "shared counters fd {fd} has {actual} bytes, expected {expected} for {workers} workers"
    )]
    SizeMismatch {
        /// The fd that was checked.
        fd: RawFd,
        /// Its size in bytes.
        actual: u64,
        /// The size a region for `workers` workers has.
        expected: u64,
        /// The worker count asked for.
        workers: usize,
    },
    /// The region does not start with [`MAGIC`].
    #[error("shared counters fd {fd} is not an rsgi region (magic {found:#018x})")]
    BadMagic {
        /// The fd that was checked.
        fd: RawFd,
        /// The first eight bytes found.
        found: u64,
    },
    /// The region was made by a build with another layout.
    #[error(
        "shared counters fd {fd} has layout version {found} (slot {slot_size} bytes), \
         this build uses version {VERSION}"
    )]
    BadVersion {
        /// The fd that was checked.
        fd: RawFd,
        /// The version in the header.
        found: u32,
        /// The slot size in the header.
        slot_size: u32,
    },
    /// The header's worker count differs from the one asked for.
    #[error("shared counters fd {fd} holds {found} workers, expected {expected}")]
    WorkerCountMismatch {
        /// The fd that was checked.
        fd: RawFd,
        /// The count in the header.
        found: u32,
        /// The count asked for.
        expected: usize,
    },
    /// [`SHM_FD_ENV`] is set but is not a usable memfd number.
    #[error("{SHM_FD_ENV}={value:?} is not an inherited shared-counters fd: {why}")]
    BadEnv {
        /// The variable's value.
        value: String,
        /// Why it was rejected.
        why: &'static str,
    },
}

impl ShmError {
    fn sys(about: &'static str) -> impl FnOnce(nix::Error) -> ShmError {
        move |source| ShmError::Sys { about, source }
    }
}

/// A worker's 1-based id, as in uWSGI (`id` in the stats; worker 0 is the master
/// there and never has a slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(u32);

impl WorkerId {
    /// The id `id`, or `None` for 0.
    pub const fn new(id: u32) -> Option<WorkerId> {
        if id == 0 {
            None
        } else {
            Some(WorkerId(id))
        }
    }

    /// The number, starting at 1.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The slot index (`id - 1`).
    const fn index(self) -> usize {
        self.0 as usize - 1
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A worker's lifecycle state as stored in its slot.
///
/// `Busy` is never stored: a running worker is stored as `Idle` and reported as
/// `Busy` while it has requests in flight (see [`WorkerSlot::status`]). Deriving it
/// avoids a race between app threads that start and finish requests at the same time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WorkerStatus {
    /// No process (never spawned, or exited and not yet respawned). A zeroed slot.
    #[default]
    Dead = 0,
    /// Forked, not accepting yet (runtime and app being set up).
    Starting = 1,
    /// Running, no request in flight.
    Idle = 2,
    /// Running, at least one request in flight.
    Busy = 3,
    /// Told to stop (graceful stop or reload): finishing in-flight requests.
    Stopping = 4,
    /// Deliberately not running (uWSGI "cheap" mode: spawned on demand).
    Cheap = 5,
}

impl WorkerStatus {
    /// Decodes a stored byte; unknown values read as `Dead`.
    pub fn from_u8(v: u8) -> WorkerStatus {
        match v {
            1 => WorkerStatus::Starting,
            2 => WorkerStatus::Idle,
            3 => WorkerStatus::Busy,
            4 => WorkerStatus::Stopping,
            5 => WorkerStatus::Cheap,
            _ => WorkerStatus::Dead,
        }
    }

    /// Lower-case name (`"idle"`, `"busy"`, `"starting"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Dead => "dead",
            WorkerStatus::Starting => "starting",
            WorkerStatus::Idle => "idle",
            WorkerStatus::Busy => "busy",
            WorkerStatus::Stopping => "stopping",
            WorkerStatus::Cheap => "cheap",
        }
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the master replaced a worker (the `reason` label of
/// `rsgi_worker_respawns_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RespawnCause {
    /// The worker exited or was killed without being asked to.
    Crash = 0,
    /// A request ran longer than `harakiri`.
    Harakiri = 1,
    /// The worker served `max-requests` requests.
    MaxRequests = 2,
    /// The worker's RSS went above `reload-on-rss`.
    Rss = 3,
    /// The worker lived longer than `max-worker-lifetime`.
    Lifetime = 4,
    /// A graceful reload (SIGHUP, `touch-reload`, emperor reload).
    Reload = 5,
}

impl RespawnCause {
    /// Number of causes (length of the per-cause counter array).
    pub const COUNT: usize = 6;

    /// Every cause, in counter-array order.
    pub const ALL: [RespawnCause; RespawnCause::COUNT] = [
        RespawnCause::Crash,
        RespawnCause::Harakiri,
        RespawnCause::MaxRequests,
        RespawnCause::Rss,
        RespawnCause::Lifetime,
        RespawnCause::Reload,
    ];

    /// Snake-case name, used as a metrics label and JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            RespawnCause::Crash => "crash",
            RespawnCause::Harakiri => "harakiri",
            RespawnCause::MaxRequests => "max_requests",
            RespawnCause::Rss => "rss",
            RespawnCause::Lifetime => "lifetime",
            RespawnCause::Reload => "reload",
        }
    }
}

impl fmt::Display for RespawnCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Start of the region. Written once by [`Shm::create`]; atomics only so that every
/// byte of the mapping is accessed the same way.
#[repr(C, align(64))]
struct Header {
    /// [`MAGIC`], stored last (with `Release`) when the region is initialised.
    magic: AtomicU64,
    /// [`VERSION`] of the build that created the region.
    version: AtomicU32,
    /// Size of one [`WorkerSlot`] in bytes, a second guard against layout drift.
    slot_size: AtomicU32,
    /// Number of worker slots.
    workers: AtomicU32,
    /// [`MAX_CORES`] of the build that created the region.
    cores: AtomicU32,
    /// Total length of the region in bytes.
    len: AtomicU64,
    /// The master's pid.
    master_pid: AtomicI32,
    /// When the region was created (epoch seconds): the master's start time. Kept
    /// across an `execve` reload, like the counters.
    master_start: AtomicU64,
}

/// Counters owned by the master.
#[repr(C, align(64))]
pub struct MasterArea {
    /// Accept-queue length of the listening socket(s) at the last sample.
    listen_queue: AtomicU32,
    /// Configured backlog of the listening socket(s) at the last sample.
    listen_queue_max: AtomicU32,
    /// Times the accept queue was seen full.
    listen_queue_errors: AtomicU64,
    /// Graceful reloads started.
    reloads: AtomicU64,
    /// Reloads that failed (new workers never became ready).
    reloads_failed: AtomicU64,
    /// Respawns per [`RespawnCause`] (index = cause as u8).
    respawns: [AtomicU64; RespawnCause::COUNT],
}

/// Counters of one request-concurrency slot ("core" in uWSGI's stats).
#[repr(C)]
struct CoreSlot {
    /// `CLOCK_MONOTONIC` ms when the request occupying this core started; 0 = free.
    start_ms: AtomicU64,
    /// Requests finished on this core.
    requests: AtomicU64,
}

/// One worker's counters. Written by the worker on its hot path, by the master on
/// spawn/exit, read by the master at any time.
#[repr(C, align(64))]
pub struct WorkerSlot {
    /// Pid of the running worker, 0 when none (so that a recycled pid is never
    /// signalled by mistake).
    pid: AtomicI32,
    /// A [`WorkerStatus`] byte (never `Busy`, see there).
    status: AtomicU8,
    /// 1 while the worker accepts connections.
    accepting: AtomicU8,
    /// Requests started and not yet finished.
    in_flight: AtomicU32,
    /// Requests finished (never reset).
    requests: AtomicU64,
    /// Requests finished since the last spawn (uWSGI `delta_requests`; max-requests).
    delta_requests: AtomicU64,
    /// Requests that raised a Python exception.
    exceptions: AtomicU64,
    /// Bytes sent to clients.
    tx: AtomicU64,
    /// Sum of request durations, µs (also the histogram's `_sum`).
    running_time_us: AtomicU64,
    /// uWSGI's decaying average: `avg = (avg + rt) / 2`, µs.
    avg_rt_us: AtomicU64,
    /// Duration of the last finished request, µs.
    last_rt_us: AtomicU64,
    /// Spawns of this slot, the first included.
    respawn_count: AtomicU64,
    /// Workers of this slot killed by harakiri.
    harakiri_count: AtomicU64,
    /// Epoch seconds of the last spawn.
    last_spawn: AtomicU64,
    /// Resident set size in bytes, sampled by the master.
    rss: AtomicU64,
    /// Virtual size in bytes, sampled by the master.
    vsz: AtomicU64,
    /// Finished requests by status class: index 0 = 1xx ... 4 = 5xx.
    status_classes: [AtomicU64; 5],
    /// Finished requests per duration bucket (not cumulative), see
    /// [`DURATION_BUCKETS_US`].
    histogram: [AtomicU64; HISTOGRAM_LEN],
    /// Per-core start times and counts.
    cores: [CoreSlot; MAX_CORES],
}

// Layout guards: a change here must come with a VERSION bump.
const _: () = assert!(size_of::<Header>() == 64);
const _: () = assert!(size_of::<MasterArea>() == 128);
const _: () = assert!(size_of::<WorkerSlot>() % 64 == 0);
const _: () = assert!(align_of::<WorkerSlot>() == 64);
const _: () = assert!(size_of::<WorkerSlot>() <= u32::MAX as usize);
const _: () = assert!(MAX_CORES < u8::MAX as usize);

const MASTER_OFFSET: usize = size_of::<Header>();
const SLOTS_OFFSET: usize = MASTER_OFFSET + size_of::<MasterArea>();
const _: () = assert!(SLOTS_OFFSET % 64 == 0);

/// Length in bytes of a region for `workers` workers.
fn region_len(workers: usize) -> usize {
    SLOTS_OFFSET + workers * size_of::<WorkerSlot>()
}

/// Handle for one in-flight request, returned by [`WorkerSlot::request_started`] and
/// given back to [`WorkerSlot::request_finished`]. It names the core the request
/// occupies (or none, if more than [`MAX_CORES`] requests are in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "pass the token to request_finished, or the request stays in flight"]
pub struct RequestToken(u8);

impl RequestToken {
    const UNTRACKED: u8 = u8::MAX;

    /// The core index the request occupies, if it got one.
    pub fn core(self) -> Option<usize> {
        (self.0 != Self::UNTRACKED).then_some(self.0 as usize)
    }
}

/// The bucket a request of duration `d` falls into (index into the histogram).
#[inline]
pub fn duration_bucket(d: Duration) -> usize {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    DURATION_BUCKETS_NS
        .iter()
        .position(|&bound| ns <= bound)
        .unwrap_or(DURATION_BUCKETS_NS.len())
}

/// Status-class index (0 = 1xx ... 4 = 5xx) of an HTTP status; `None` outside
/// 100..=599.
#[inline]
fn status_class(status: u16) -> Option<usize> {
    match status {
        100..=599 => Some(usize::from(status / 100 - 1)),
        _ => None,
    }
}

/// uWSGI's average rule: `(avg + rt) / 2`, without overflow.
#[inline]
fn next_avg(avg: u64, rt: u64) -> u64 {
    ((u128::from(avg) + u128::from(rt)) / 2) as u64
}

/// Milliseconds of `CLOCK_MONOTONIC`, the clock of request start times. Served from
/// the vDSO: no syscall. Never returns 0 (0 means "no request" in a slot).
#[inline]
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on
    // Linux, so the call cannot fail (if it did, `ts` stays zeroed and we return 1).
    // (nix's `clock_gettime` needs nix's "time" feature, which the workspace does not
    // enable.) The call is async-signal-safe, so it may run in a forked child.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    let ms = (ts.tv_sec as u64)
        .saturating_mul(1_000)
        .saturating_add(ts.tv_nsec as u64 / 1_000_000);
    ms.max(1)
}

/// Wall-clock seconds since the Unix epoch (0 if the clock is before 1970).
pub fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl WorkerSlot {
    // ----- worker side: the hot path -----

    /// Marks the start of a request. `now_ms` is [`monotonic_ms`]. Returns the token
    /// to hand to [`request_finished`](Self::request_finished).
    ///
    /// Claims the lowest free core (a compare-and-swap per busy core it skips), so the
    /// master can see how long each in-flight request has been running.
    #[inline]
    pub fn request_started(&self, now_ms: u64) -> RequestToken {
        self.in_flight.fetch_add(1, Relaxed);
        let start = now_ms.max(1);
        for (i, core) in self.cores.iter().enumerate() {
            if core.start_ms.load(Relaxed) == 0
                && core
                    .start_ms
                    .compare_exchange(0, start, Relaxed, Relaxed)
                    .is_ok()
            {
                return RequestToken(i as u8);
            }
        }
        RequestToken(RequestToken::UNTRACKED)
    }

    /// Records a finished request: `status` is the HTTP status (0 if none was sent;
    /// it then counts in no status class), `bytes` what was sent, `duration` the time
    /// since the request started, `exception` whether the app raised.
    #[inline]
    pub fn request_finished(
        &self,
        token: RequestToken,
        status: u16,
        bytes: u64,
        duration: Duration,
        exception: bool,
    ) {
        let rt = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        if let Some(class) = status_class(status) {
            self.status_classes[class].fetch_add(1, Relaxed);
        }
        self.histogram[duration_bucket(duration)].fetch_add(1, Relaxed);
        self.tx.fetch_add(bytes, Relaxed);
        self.running_time_us.fetch_add(rt, Relaxed);
        // The closure always returns Some, so this cannot fail.
        let _ = self
            .avg_rt_us
            .fetch_update(Relaxed, Relaxed, |avg| Some(next_avg(avg, rt)));
        self.last_rt_us.store(rt, Relaxed);
        if exception {
            self.exceptions.fetch_add(1, Relaxed);
        }
        self.requests.fetch_add(1, Relaxed);
        self.delta_requests.fetch_add(1, Relaxed);
        if let Some(core) = token.core().and_then(|i| self.cores.get(i)) {
            core.requests.fetch_add(1, Relaxed);
            core.start_ms.store(0, Relaxed);
        }
        // Saturating: a slot reset by the master while a request was in flight must
        // not wrap to u32::MAX.
        let _ = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Sets whether the worker accepts connections. `true` also moves a `Starting`
    /// worker to `Idle` (it is now serving); `false` leaves the status alone.
    #[inline]
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(u8::from(accepting), Relaxed);
        if accepting {
            let _ = self.status.compare_exchange(
                WorkerStatus::Starting as u8,
                WorkerStatus::Idle as u8,
                Relaxed,
                Relaxed,
            );
        }
    }

    // ----- master side -----

    /// Prepares the slot for a new worker. Call it in the master **before** `fork`
    /// (so the child can never race with it), then [`set_pid`](Self::set_pid) in the
    /// parent once the pid is known.
    ///
    /// Resets what belongs to one process: pid (0), status (`Starting`), accepting,
    /// in-flight count and core start times, `delta_requests`, rss/vsz. Sets
    /// `last_spawn = now_epoch` and increments `respawn_count`. Keeps every cumulative
    /// counter (requests, exceptions, tx, times, average, harakiri count, status
    /// classes, histogram, per-core requests), as uWSGI does.
    pub fn reset_for_spawn(&self, now_epoch: u64) {
        self.clear_process_state(WorkerStatus::Starting);
        self.delta_requests.store(0, Relaxed);
        self.rss.store(0, Relaxed);
        self.vsz.store(0, Relaxed);
        self.last_spawn.store(now_epoch, Relaxed);
        self.respawn_count.fetch_add(1, Relaxed);
    }

    /// Records the pid of the worker just forked for this slot.
    pub fn set_pid(&self, pid: Pid) {
        self.pid.store(pid.as_raw(), Relaxed);
    }

    /// Marks the slot's worker as gone (reaped): pid 0, status `Dead`, not accepting,
    /// no request in flight. Counters are kept.
    pub fn mark_dead(&self) {
        self.clear_process_state(WorkerStatus::Dead);
    }

    fn clear_process_state(&self, status: WorkerStatus) {
        self.pid.store(0, Relaxed);
        self.status.store(status as u8, Relaxed);
        self.accepting.store(0, Relaxed);
        self.in_flight.store(0, Relaxed);
        for core in &self.cores {
            core.start_ms.store(0, Relaxed);
        }
    }

    /// Sets the lifecycle status (`Stopping` when the master asks the worker to stop,
    /// `Cheap`, ...). Storing `Busy` stores `Idle`: busy is derived from in-flight
    /// requests.
    pub fn set_status(&self, status: WorkerStatus) {
        let stored = match status {
            WorkerStatus::Busy => WorkerStatus::Idle,
            other => other,
        };
        self.status.store(stored as u8, Relaxed);
    }

    /// Stores the worker's memory as sampled by the master (bytes).
    pub fn set_memory(&self, rss: u64, vsz: u64) {
        self.rss.store(rss, Relaxed);
        self.vsz.store(vsz, Relaxed);
    }

    // ----- readers -----

    /// The running worker's pid, `None` when the slot has no process.
    pub fn pid(&self) -> Option<Pid> {
        match self.pid.load(Relaxed) {
            0 => None,
            raw => Some(Pid::from_raw(raw)),
        }
    }

    /// The status as reported: a stored `Idle` reads `Busy` while requests are in
    /// flight.
    pub fn status(&self) -> WorkerStatus {
        match WorkerStatus::from_u8(self.status.load(Relaxed)) {
            WorkerStatus::Idle if self.in_flight.load(Relaxed) > 0 => WorkerStatus::Busy,
            other => other,
        }
    }

    /// Requests finished since the last spawn (compare with `max-requests`).
    pub fn requests_since_spawn(&self) -> u64 {
        self.delta_requests.load(Relaxed)
    }

    /// `CLOCK_MONOTONIC` ms at which the oldest tracked in-flight request started,
    /// `None` if none is in flight. The master fires harakiri when
    /// `monotonic_ms() - start > harakiri * 1000`.
    pub fn oldest_request_start_ms(&self) -> Option<u64> {
        self.cores
            .iter()
            .map(|c| c.start_ms.load(Relaxed))
            .filter(|&ms| ms != 0)
            .min()
    }

    /// A copy of every counter. Fields are read one by one (relaxed), so the copy is
    /// not atomic as a whole; each value is exact.
    pub fn snapshot(&self, id: WorkerId) -> WorkerSnapshot {
        let load = |a: &AtomicU64| a.load(Relaxed);
        WorkerSnapshot {
            id: id.get(),
            pid: self.pid.load(Relaxed),
            status: self.status(),
            accepting: self.accepting.load(Relaxed) != 0,
            in_flight: self.in_flight.load(Relaxed),
            requests: load(&self.requests),
            delta_requests: load(&self.delta_requests),
            exceptions: load(&self.exceptions),
            tx: load(&self.tx),
            running_time_us: load(&self.running_time_us),
            avg_rt_us: load(&self.avg_rt_us),
            last_rt_us: load(&self.last_rt_us),
            respawn_count: load(&self.respawn_count),
            harakiri_count: load(&self.harakiri_count),
            last_spawn: load(&self.last_spawn),
            request_start_ms: self.oldest_request_start_ms().unwrap_or(0),
            rss: load(&self.rss),
            vsz: load(&self.vsz),
            status_classes: self.status_classes.each_ref().map(load),
            histogram: self.histogram.each_ref().map(load),
            cores: self
                .cores
                .iter()
                .map(|c| CoreSnapshot {
                    requests: load(&c.requests),
                    in_request: c.start_ms.load(Relaxed) != 0,
                })
                .collect(),
        }
    }
}

/// One core's counters in a [`WorkerSnapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreSnapshot {
    /// Requests finished on this core.
    pub requests: u64,
    /// Whether a request occupies the core now.
    pub in_request: bool,
}

/// A plain copy of one [`WorkerSlot`] (see the slot's fields for meanings; times in
/// µs, sizes in bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// 1-based worker id.
    pub id: u32,
    /// Pid, 0 when no process.
    pub pid: i32,
    /// Status as reported (busy derived from `in_flight`).
    pub status: WorkerStatus,
    /// Whether the worker accepts connections.
    pub accepting: bool,
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests finished (never reset).
    pub requests: u64,
    /// Requests finished since the last spawn.
    pub delta_requests: u64,
    /// Requests that raised.
    pub exceptions: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Sum of request durations, µs (the histogram's sum).
    pub running_time_us: u64,
    /// uWSGI's decaying average response time, µs.
    pub avg_rt_us: u64,
    /// Last request's duration, µs.
    pub last_rt_us: u64,
    /// Spawns of this slot (1 after the first spawn).
    pub respawn_count: u64,
    /// Harakiri kills of this slot.
    pub harakiri_count: u64,
    /// Epoch seconds of the last spawn (0 = never).
    pub last_spawn: u64,
    /// `CLOCK_MONOTONIC` ms of the oldest in-flight request's start, 0 = none.
    pub request_start_ms: u64,
    /// Resident set size, bytes.
    pub rss: u64,
    /// Virtual size, bytes.
    pub vsz: u64,
    /// Finished requests per status class, 1xx..5xx.
    pub status_classes: [u64; 5],
    /// Finished requests per duration bucket (not cumulative; last = +Inf).
    pub histogram: [u64; HISTOGRAM_LEN],
    /// Per-core counters, [`MAX_CORES`] entries.
    pub cores: Vec<CoreSnapshot>,
}

impl MasterArea {
    /// Stores the latest accept-queue sample (`queue` waiting, `max` backlog).
    pub fn set_listen_queue(&self, queue: u32, max: u32) {
        self.listen_queue.store(queue, Relaxed);
        self.listen_queue_max.store(max, Relaxed);
    }

    /// Counts one observation of a full accept queue.
    pub fn count_listen_queue_error(&self) {
        self.listen_queue_errors.fetch_add(1, Relaxed);
    }

    /// Counts a graceful reload.
    pub fn count_reload(&self) {
        self.reloads.fetch_add(1, Relaxed);
    }

    /// Counts a failed reload.
    pub fn count_reload_failed(&self) {
        self.reloads_failed.fetch_add(1, Relaxed);
    }

    /// A plain copy of the master counters.
    pub fn snapshot(&self) -> MasterSnapshot {
        MasterSnapshot {
            listen_queue: self.listen_queue.load(Relaxed),
            listen_queue_max: self.listen_queue_max.load(Relaxed),
            listen_queue_errors: self.listen_queue_errors.load(Relaxed),
            reloads: self.reloads.load(Relaxed),
            reloads_failed: self.reloads_failed.load(Relaxed),
            respawns: self.respawns.each_ref().map(|a| a.load(Relaxed)),
        }
    }
}

/// A plain copy of the [`MasterArea`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterSnapshot {
    /// Accept-queue length at the last sample.
    pub listen_queue: u32,
    /// Backlog at the last sample.
    pub listen_queue_max: u32,
    /// Full-queue observations.
    pub listen_queue_errors: u64,
    /// Graceful reloads.
    pub reloads: u64,
    /// Failed reloads.
    pub reloads_failed: u64,
    /// Respawns per cause, indexed like [`RespawnCause::ALL`].
    pub respawns: [u64; RespawnCause::COUNT],
}

/// The shared region: a memfd mapped `MAP_SHARED`, unmapped on drop.
pub struct Shm {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    workers: usize,
}

// SAFETY: the mapping holds only atomics (see the module docs) and `Shm` hands out
// shared references only, so using it from several threads is as sound as sharing a
// `&[AtomicU64]`. The pointer stays valid until drop, which needs `&mut`/ownership.
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl fmt::Debug for Shm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shm")
            .field("fd", &self.fd.as_raw_fd())
            .field("len", &self.len)
            .field("workers", &self.workers)
            .finish()
    }
}

impl Shm {
    /// Creates a zeroed region for `workers` workers (all slots `Dead`), records this
    /// process as the master. The memfd is close-on-exec until
    /// [`keep_across_exec`](Self::keep_across_exec), and sealed against resizing, so
    /// no one can shrink it under the mappings (which would raise SIGBUS).
    pub fn create(workers: usize) -> Result<Shm, ShmError> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(ShmError::BadWorkerCount { workers });
        }
        let len = region_len(workers);
        let fd = memfd_create(
            c"rsgi-shm",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(ShmError::sys("memfd_create"))?;
        // The length is at most a few MiB (MAX_WORKERS), far below i64::MAX.
        ftruncate(&fd, len as libc::off_t).map_err(ShmError::sys("ftruncate memfd"))?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )
        .map_err(ShmError::sys("seal memfd"))?;
        let shm = Shm::map(fd, len, workers)?;
        let h = shm.header();
        h.version.store(VERSION, Relaxed);
        h.slot_size.store(size_of::<WorkerSlot>() as u32, Relaxed);
        h.workers.store(workers as u32, Relaxed);
        h.cores.store(MAX_CORES as u32, Relaxed);
        h.len.store(len as u64, Relaxed);
        h.master_pid.store(getpid().as_raw(), Relaxed);
        h.master_start.store(epoch_secs(), Relaxed);
        h.magic.store(MAGIC, Release);
        Ok(shm)
    }

    /// Attaches an existing region (inherited across `execve`), checking its size and
    /// header against `workers` and this build's layout.
    pub fn from_fd(fd: OwnedFd, workers: usize) -> Result<Shm, ShmError> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(ShmError::BadWorkerCount { workers });
        }
        let raw = fd.as_raw_fd();
        let len = region_len(workers);
        let actual = file_len(fd.as_fd())?;
        if actual != len as u64 {
            return Err(ShmError::SizeMismatch {
                fd: raw,
                actual,
                expected: len as u64,
                workers,
            });
        }
        // Make sure the workers' own children never inherit it through exec.
        set_cloexec(fd.as_fd(), true)?;
        let shm = Shm::map(fd, len, workers)?;
        let h = shm.header();
        let found = h.magic.load(Acquire);
        if found != MAGIC {
            return Err(ShmError::BadMagic { fd: raw, found });
        }
        let (version, slot_size) = (h.version.load(Relaxed), h.slot_size.load(Relaxed));
        if version != VERSION
            || slot_size as usize != size_of::<WorkerSlot>()
            || h.cores.load(Relaxed) as usize != MAX_CORES
            || h.len.load(Relaxed) != len as u64
        {
            return Err(ShmError::BadVersion {
                fd: raw,
                found: version,
                slot_size,
            });
        }
        let found = h.workers.load(Relaxed);
        if found as usize != workers {
            return Err(ShmError::WorkerCountMismatch {
                fd: raw,
                found,
                expected: workers,
            });
        }
        Ok(shm)
    }

    /// Attaches the region named by [`SHM_FD_ENV`], if that variable is set.
    /// `Ok(None)` when it is not set (first start). Call it once, early in the
    /// master, before anything else could own the fd number.
    ///
    /// Before taking ownership of the fd it checks that the number is not stdio and is
    /// an open, sealed memfd of the right size, so a stray value in the environment
    /// cannot make rsgi close an unrelated fd.
    pub fn from_env(workers: usize) -> Result<Option<Shm>, ShmError> {
        let Some(value) = std::env::var_os(SHM_FD_ENV) else {
            return Ok(None);
        };
        let value = value.to_string_lossy().into_owned();
        let raw = parse_fd_env(&value)?;
        let bad = |why| ShmError::BadEnv {
            value: value.clone(),
            why,
        };
        // SAFETY: `raw` is > 2 and only borrowed for the checks below; `fcntl(F_GETFD)`
        // fails with EBADF for a closed number, in which case it is never used further.
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        fcntl(borrowed, FcntlArg::F_GETFD).map_err(|_| bad("not an open fd"))?;
        fcntl(borrowed, FcntlArg::F_GET_SEALS).map_err(|_| bad("not a memfd"))?;
        let (actual, expected) = (file_len(borrowed)?, region_len(workers) as u64);
        if actual != expected {
            // A region for another worker count: leave the fd alone (the caller
            // creates a fresh region; the old one dies with this process image).
            return Err(ShmError::SizeMismatch {
                fd: raw,
                actual,
                expected,
                workers,
            });
        }
        // SAFETY: the number is open, is a memfd of our region's size, and was put in
        // the environment by our own master right before `execve`; nothing else in
        // this fresh process image knows the number, so taking ownership is unique.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Shm::from_fd(fd, workers).map(Some)
    }

    fn map(fd: OwnedFd, len: usize, workers: usize) -> Result<Shm, ShmError> {
        let length = NonZeroUsize::new(len).ok_or(ShmError::BadWorkerCount { workers })?;
        // SAFETY: a fresh mapping at an address the kernel picks, of `len` bytes of a
        // memfd whose size is exactly `len` (set above or checked by the caller) and
        // sealed against shrinking, so no access within `len` can fault. It aliases
        // only other mappings of the same memfd, which are accessed through atomics
        // only (module docs).
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(ShmError::sys("mmap memfd"))?;
        Ok(Shm {
            fd,
            ptr: ptr.cast(),
            len,
            workers,
        })
    }

    /// The memfd (to pass on, or to check flags).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Every worker id, 1..=workers.
    pub fn ids(&self) -> impl Iterator<Item = WorkerId> {
        (1..=self.workers as u32).map(WorkerId)
    }

    /// The slot of worker `id`, `None` if `id` is above the worker count.
    pub fn slot(&self, id: WorkerId) -> Option<&WorkerSlot> {
        self.slots().get(id.index())
    }

    /// Every slot, index = id - 1.
    pub fn slots(&self) -> &[WorkerSlot] {
        // SAFETY: the region is `SLOTS_OFFSET + workers * size_of::<WorkerSlot>()`
        // bytes (checked at map time); SLOTS_OFFSET is a multiple of 64 and the
        // mapping is page-aligned, so the slots are aligned; they consist of atomics
        // only, valid for any bit pattern the region can hold (zero or written by
        // this module); the borrow is tied to `&self`, which keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr.as_ptr().add(SLOTS_OFFSET).cast::<WorkerSlot>(),
                self.workers,
            )
        }
    }

    /// Snapshots of every worker, ordered by id.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.ids()
            .zip(self.slots())
            .map(|(id, slot)| slot.snapshot(id))
            .collect()
    }

    /// The master's counters.
    pub fn master(&self) -> &MasterArea {
        // SAFETY: as in `slots`: in bounds (MASTER_OFFSET + 128 <= SLOTS_OFFSET <=
        // len), 64-aligned, atomics only, borrow tied to `&self`.
        unsafe { &*self.ptr.as_ptr().add(MASTER_OFFSET).cast::<MasterArea>() }
    }

    fn header(&self) -> &Header {
        // SAFETY: as in `slots`: offset 0, 64 bytes <= len, page-aligned, atomics
        // only, borrow tied to `&self`.
        unsafe { &*self.ptr.as_ptr().cast::<Header>() }
    }

    /// Counts a respawn of worker `id` for `cause` (per-cause counter in the master
    /// area). A `Harakiri` cause also increments the slot's `harakiri_count`.
    /// [`WorkerSlot::reset_for_spawn`] counts the slot's `respawn_count` itself.
    pub fn count_respawn(&self, id: WorkerId, cause: RespawnCause) {
        self.master().respawns[cause as usize].fetch_add(1, Relaxed);
        if cause == RespawnCause::Harakiri {
            if let Some(slot) = self.slot(id) {
                slot.harakiri_count.fetch_add(1, Relaxed);
            }
        }
    }

    /// The master pid recorded in the header.
    pub fn master_pid(&self) -> Pid {
        Pid::from_raw(self.header().master_pid.load(Relaxed))
    }

    /// Records `pid` as the master (after attaching from another process image).
    pub fn set_master_pid(&self, pid: Pid) {
        self.header().master_pid.store(pid.as_raw(), Relaxed);
    }

    /// When the region was created, epoch seconds.
    pub fn master_start(&self) -> u64 {
        self.header().master_start.load(Relaxed)
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`; every reference
        // into it borrows `self`, so none is alive during drop.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Parses the value of [`SHM_FD_ENV`]: a decimal fd number above 2.
fn parse_fd_env(value: &str) -> Result<RawFd, ShmError> {
    let bad = |why| ShmError::BadEnv {
        value: value.to_owned(),
        why,
    };
    let fd: RawFd = value.trim().parse().map_err(|_| bad("not a number"))?;
    if fd <= 2 {
        return Err(bad("is stdin, stdout, stderr or negative"));
    }
    Ok(fd)
}

fn file_len(fd: BorrowedFd<'_>) -> Result<u64, ShmError> {
    let st = fstat(fd).map_err(ShmError::sys("fstat memfd"))?;
    Ok(u64::try_from(st.st_size).unwrap_or(0))
}

fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> Result<(), ShmError> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(ShmError::sys("set FD_CLOEXEC"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{dup, fork, ForkResult};

    fn id(n: u32) -> WorkerId {
        WorkerId::new(n).unwrap()
    }

    #[test]
    fn layout_is_cache_line_aligned() {
        assert_eq!(size_of::<WorkerSlot>() % 64, 0);
        assert_eq!(region_len(1), 64 + 128 + size_of::<WorkerSlot>());
        // The module docs quote the slot size.
        assert_eq!(size_of::<WorkerSlot>(), 1344);
    }

    #[test]
    fn create_gives_dead_zeroed_slots() {
        let shm = Shm::create(3).unwrap();
        assert_eq!(shm.workers(), 3);
        assert_eq!(shm.master_pid(), getpid());
        assert!(shm.master_start() > 0);
        assert!(shm.slot(id(3)).is_some());
        assert!(shm.slot(id(4)).is_none());
        assert_eq!(WorkerId::new(0), None);
        let snaps = shm.snapshots();
        assert_eq!(snaps.len(), 3);
        assert_eq!(snaps[2].id, 3);
        let expected = WorkerSnapshot {
            id: 1,
            cores: vec![CoreSnapshot::default(); MAX_CORES],
            ..WorkerSnapshot::default()
        };
        assert_eq!(snaps[0], expected);
        assert!(matches!(
            Shm::create(0),
            Err(ShmError::BadWorkerCount { workers: 0 })
        ));
        assert!(Shm::create(MAX_WORKERS + 1).is_err());
    }

    #[test]
    fn memfd_is_cloexec_and_sealed() {
        let shm = Shm::create(1).unwrap();
        let flags =
            |shm: &Shm| FdFlag::from_bits_truncate(fcntl(shm.fd(), FcntlArg::F_GETFD).unwrap());
        assert!(flags(&shm).contains(FdFlag::FD_CLOEXEC));
        // Sealed: cannot be resized under the mappings.
        assert!(ftruncate(shm.fd(), 0).is_err());
    }

    #[test]
    fn forked_child_updates_are_seen_by_parent() {
        let shm = Shm::create(2).unwrap();
        let slot = shm.slot(id(2)).unwrap();
        slot.reset_for_spawn(1_700_000_000);
        // SAFETY: the test harness is multi-threaded, so the child may only make
        // async-signal-safe calls: it does atomic operations on the already-mapped
        // region, reads CLOCK_MONOTONIC (async-signal-safe) and `_exit`s, with no
        // allocation, locking or unwinding.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                slot.set_accepting(true);
                for i in 0..10u64 {
                    let t = slot.request_started(monotonic_ms());
                    slot.request_finished(t, 200, 100, Duration::from_millis(i), i == 9);
                }
                // Leave one request in flight, as if harakiri were due.
                let _ = slot.request_started(monotonic_ms());
                // SAFETY: `_exit` is async-signal-safe and skips atexit handlers
                // and the parent's stdio buffers.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                slot.set_pid(child);
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
                let s = slot.snapshot(id(2));
                assert_eq!(s.pid, child.as_raw());
                assert_eq!(s.requests, 10);
                assert_eq!(s.delta_requests, 10);
                assert_eq!(s.exceptions, 1);
                assert_eq!(s.tx, 1_000);
                assert_eq!(s.running_time_us, 45_000);
                assert_eq!(s.status_classes, [0, 10, 0, 0, 0]);
                assert_eq!(s.histogram[0], 6); // 0..=5 ms
                assert_eq!(s.histogram[1], 4); // 6..=9 ms
                assert_eq!(s.status, WorkerStatus::Busy);
                assert!(s.accepting);
                assert_eq!(s.in_flight, 1);
                assert_ne!(s.request_start_ms, 0);
                assert!(s.request_start_ms <= monotonic_ms());
                assert_eq!(s.cores[0].requests, 10);
                assert!(s.cores[0].in_request);
                // The other slot is untouched.
                assert_eq!(shm.slot(id(1)).unwrap().snapshot(id(1)).requests, 0);
                // Reaped: nothing in flight any more, pid cleared, counters kept.
                slot.mark_dead();
                let s = slot.snapshot(id(2));
                assert_eq!((s.pid, s.status, s.in_flight), (0, WorkerStatus::Dead, 0));
                assert_eq!(slot.oldest_request_start_ms(), None);
                assert_eq!(s.requests, 10);
            }
        }
    }

    #[test]
    fn from_fd_round_trip_shares_memory() {
        let a = Shm::create(2).unwrap();
        let t = a.slot(id(1)).unwrap().request_started(5);
        a.slot(id(1))
            .unwrap()
            .request_finished(t, 404, 7, Duration::from_micros(30), false);
        a.master().count_reload();
        let b = Shm::from_fd(dup(a.fd()).unwrap(), 2).unwrap();
        assert_eq!(b.snapshots(), a.snapshots());
        assert_eq!(b.master_start(), a.master_start());
        assert_eq!(b.master().snapshot().reloads, 1);
        // Writes through one mapping show in the other.
        b.slot(id(2)).unwrap().set_memory(4096, 8192);
        assert_eq!(a.slot(id(2)).unwrap().snapshot(id(2)).rss, 4096);
        // The attached fd is close-on-exec again.
        let flags = FdFlag::from_bits_truncate(fcntl(b.fd(), FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn from_fd_rejects_foreign_or_mismatched_regions() {
        // Right size, but all zeros: no magic.
        let fd = memfd_create(c"not-rsgi", MFdFlags::MFD_CLOEXEC).unwrap();
        ftruncate(&fd, region_len(1) as libc::off_t).unwrap();
        assert!(matches!(
            Shm::from_fd(fd, 1),
            Err(ShmError::BadMagic { found: 0, .. })
        ));

        let shm = Shm::create(2).unwrap();
        // Wrong worker count: the size gives it away.
        assert!(matches!(
            Shm::from_fd(dup(shm.fd()).unwrap(), 3),
            Err(ShmError::SizeMismatch { workers: 3, .. })
        ));
        // Another layout version.
        shm.header().version.store(VERSION + 1, Relaxed);
        let err = Shm::from_fd(dup(shm.fd()).unwrap(), 2).unwrap_err();
        assert!(matches!(err, ShmError::BadVersion { found, .. } if found == VERSION + 1));
        assert!(err.to_string().contains("layout version"), "{err}");
        shm.header().version.store(VERSION, Relaxed);
        // Header says another worker count (same size cannot happen, so fake it).
        shm.header().workers.store(9, Relaxed);
        assert!(matches!(
            Shm::from_fd(dup(shm.fd()).unwrap(), 2),
            Err(ShmError::WorkerCountMismatch { found: 9, .. })
        ));
    }

    #[test]
    fn fd_env_value_is_checked() {
        assert_eq!(parse_fd_env("7").unwrap(), 7);
        assert_eq!(parse_fd_env(" 12\n").unwrap(), 12);
        for bad in ["", "x", "-1", "0", "2", "3.5"] {
            assert!(
                matches!(parse_fd_env(bad), Err(ShmError::BadEnv { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn histogram_bucket_boundaries() {
        let ms = Duration::from_millis;
        let ns = Duration::from_nanos;
        let table: &[(Duration, usize)] = &[
            (Duration::ZERO, 0),
            (ms(5), 0),
            (ms(5) + ns(1), 1),
            (ms(10), 1),
            (ms(11), 2),
            (ms(25), 2),
            (ms(50), 3),
            (ms(100), 4),
            (ms(250), 5),
            (ms(500), 6),
            (ms(999), 7),
            (ms(1_000), 7),
            (ms(2_500), 8),
            (ms(5_000), 9),
            (ms(10_000), 10),
            (ms(29_999), 11),
            (ms(30_000), 11),
            (ms(60_000), 12),
            (ms(60_000) + ns(1), 13),
            (Duration::from_secs(3_600), 13),
            (Duration::MAX, 13),
        ];
        for &(d, bucket) in table {
            assert_eq!(duration_bucket(d), bucket, "{d:?}");
        }
        assert_eq!(HISTOGRAM_LEN, 14);
        assert!(DURATION_BUCKETS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn avg_rt_follows_uwsgi_rule() {
        // uWSGI: avg = (avg + rt) / 2, starting from 0 (so the first request halves).
        let shm = Shm::create(1).unwrap();
        let slot = shm.slot(id(1)).unwrap();
        let mut expected = 0u64;
        for rt in [100u64, 300, 301, 1_000_000, 0] {
            let t = slot.request_started(1);
            slot.request_finished(t, 200, 0, Duration::from_micros(rt), false);
            expected = (expected + rt) / 2;
            let s = slot.snapshot(id(1));
            assert_eq!(s.avg_rt_us, expected, "after rt={rt}");
            assert_eq!(s.last_rt_us, rt);
        }
        assert_eq!(slot.snapshot(id(1)).avg_rt_us, 250_059);
        assert_eq!(next_avg(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn status_classes_and_exceptions() {
        let shm = Shm::create(1).unwrap();
        let slot = shm.slot(id(1)).unwrap();
        for status in [101u16, 200, 204, 302, 404, 500, 503, 599, 0, 600, 99] {
            let t = slot.request_started(1);
            slot.request_finished(t, status, 0, Duration::ZERO, status >= 500);
        }
        let s = slot.snapshot(id(1));
        assert_eq!(s.status_classes, [1, 2, 1, 1, 3]);
        assert_eq!(s.requests, 11);
        assert_eq!(s.exceptions, 4); // 500, 503, 599, 600
    }

    #[test]
    fn concurrent_requests_use_cores_and_derive_busy() {
        let shm = Shm::create(1).unwrap();
        let slot = shm.slot(id(1)).unwrap();
        slot.reset_for_spawn(1);
        assert_eq!(slot.status(), WorkerStatus::Starting);
        slot.set_accepting(true);
        assert_eq!(slot.status(), WorkerStatus::Idle);
        let a = slot.request_started(1_000);
        let b = slot.request_started(2_000);
        assert_eq!((a.core(), b.core()), (Some(0), Some(1)));
        assert_eq!(slot.status(), WorkerStatus::Busy);
        assert_eq!(slot.oldest_request_start_ms(), Some(1_000));
        slot.request_finished(a, 200, 0, Duration::ZERO, false);
        // The oldest remaining request is now b's.
        assert_eq!(slot.oldest_request_start_ms(), Some(2_000));
        assert_eq!(slot.status(), WorkerStatus::Busy);
        // A new request takes the freed core 0.
        let c = slot.request_started(3_000);
        assert_eq!(c.core(), Some(0));
        slot.request_finished(b, 200, 0, Duration::ZERO, false);
        slot.request_finished(c, 200, 0, Duration::ZERO, false);
        assert_eq!(slot.status(), WorkerStatus::Idle);
        assert_eq!(slot.oldest_request_start_ms(), None);
        let s = slot.snapshot(id(1));
        assert_eq!((s.cores[0].requests, s.cores[1].requests), (2, 1));
        assert_eq!(s.in_flight, 0);
        // Storing Busy stores Idle.
        slot.set_status(WorkerStatus::Busy);
        assert_eq!(slot.status(), WorkerStatus::Idle);
        slot.set_status(WorkerStatus::Stopping);
        assert_eq!(slot.status(), WorkerStatus::Stopping);
    }

    #[test]
    fn more_requests_than_cores_are_counted_untracked() {
        let shm = Shm::create(1).unwrap();
        let slot = shm.slot(id(1)).unwrap();
        let tokens: Vec<_> = (0..MAX_CORES + 2)
            .map(|i| slot.request_started(10 + i as u64))
            .collect();
        assert_eq!(tokens[MAX_CORES].core(), None);
        assert_eq!(slot.snapshot(id(1)).in_flight as usize, MAX_CORES + 2);
        for t in tokens {
            slot.request_finished(t, 200, 1, Duration::ZERO, false);
        }
        let s = slot.snapshot(id(1));
        assert_eq!((s.requests, s.in_flight), (MAX_CORES as u64 + 2, 0));
        assert_eq!(
            s.cores.iter().map(|c| c.requests).sum::<u64>(),
            MAX_CORES as u64
        );
    }

    #[test]
    fn respawn_keeps_cumulative_counters() {
        let shm = Shm::create(2).unwrap();
        let slot = shm.slot(id(1)).unwrap();
        slot.reset_for_spawn(100);
        slot.set_pid(Pid::from_raw(4242));
        slot.set_memory(1 << 20, 1 << 30);
        slot.set_accepting(true);
        let t = slot.request_started(1);
        slot.request_finished(t, 500, 10, Duration::from_millis(2), true);
        let stuck = slot.request_started(5);
        assert_eq!(slot.pid(), Some(Pid::from_raw(4242)));

        shm.count_respawn(id(1), RespawnCause::Harakiri);
        slot.mark_dead();
        assert_eq!(slot.pid(), None);
        slot.reset_for_spawn(200);
        let s = slot.snapshot(id(1));
        // Reset: per-process state.
        assert_eq!(
            (s.pid, s.status, s.accepting),
            (0, WorkerStatus::Starting, false)
        );
        assert_eq!(
            (s.in_flight, s.request_start_ms, s.delta_requests),
            (0, 0, 0)
        );
        assert_eq!((s.rss, s.vsz), (0, 0));
        assert_eq!((s.last_spawn, s.respawn_count), (200, 2));
        // Kept: cumulative counters.
        assert_eq!((s.requests, s.exceptions, s.tx), (1, 1, 10));
        assert_eq!((s.running_time_us, s.avg_rt_us), (2_000, 1_000));
        assert_eq!(s.harakiri_count, 1);
        assert_eq!(s.status_classes[4], 1);
        assert_eq!(s.histogram[0], 1);
        // A request that was in flight when the old process died finishing late
        // (cannot happen for a dead process, but must not underflow).
        slot.request_finished(stuck, 200, 0, Duration::ZERO, false);
        assert_eq!(slot.snapshot(id(1)).in_flight, 0);

        shm.count_respawn(id(2), RespawnCause::MaxRequests);
        shm.count_respawn(id(2), RespawnCause::MaxRequests);
        shm.count_respawn(id(1), RespawnCause::Crash);
        shm.master().count_reload_failed();
        shm.master().set_listen_queue(3, 128);
        shm.master().count_listen_queue_error();
        let m = shm.master().snapshot();
        assert_eq!(m.respawns, [1, 1, 2, 0, 0, 0]);
        assert_eq!(
            (m.listen_queue, m.listen_queue_max, m.listen_queue_errors),
            (3, 128, 1)
        );
        assert_eq!((m.reloads, m.reloads_failed), (0, 1));
        assert_eq!(shm.slot(id(2)).unwrap().snapshot(id(2)).harakiri_count, 0);
        for (i, cause) in RespawnCause::ALL.iter().enumerate() {
            assert_eq!(*cause as usize, i);
        }
    }

    #[test]
    fn status_bytes_round_trip() {
        for s in [
            WorkerStatus::Dead,
            WorkerStatus::Starting,
            WorkerStatus::Idle,
            WorkerStatus::Busy,
            WorkerStatus::Stopping,
            WorkerStatus::Cheap,
        ] {
            assert_eq!(WorkerStatus::from_u8(s as u8), s);
        }
        assert_eq!(WorkerStatus::from_u8(200), WorkerStatus::Dead);
    }
}
