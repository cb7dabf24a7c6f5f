//! Upgrading rsgid in place (issue 20 item 3), the actor's side: what is handed over to
//! the new image ([`UpgradeState`], versioned JSON in a 0600 file in the run directory,
//! named by [`crate::upgrade::STATE_ENV`]), the check before the exec, the exec, and
//! taking everything over in the new image ([`Emperor::restore`]).
//!
//! ```text
//!  rsgictl upgrade / SIGUSR2
//!   -> Emperor::begin_upgrade: write the state, run `<exe> --check-upgrade-state FILE`
//!      (refused: the error goes to rsgictl, this image runs on)
//!   -> answer "re-executing", then (next turn of the loop, once no vassal is starting)
//!      Emperor::exec_upgrade: drain the mailbox, write the final state, clear
//!      FD_CLOEXEC on every fd in it, execve(<exe>, same argv, RSGID_UPGRADE_STATE=FILE)
//!  new image: start::run reads the state, takes the control/metrics/stats listeners
//!   -> Emperor::restore: vassals, sockets, counters, generations (Effects::adopt: the
//!      same pids, their pipes and notify sockets, a pidfd for the exit), sleeping
//!      vassals watched again, timers re-armed from the lifecycle's deadlines
//! ```
//!
//! Not handed over: `reload --wait` callers (answered with an error), output lines a
//! reading task had buffered but not yet delivered (at most a partial line per pipe).
//!
//! Why the vassals survive the exec: their notify sockets and pipes stay open (the
//! duplicates `crate::upgrade` keeps, `FD_CLOEXEC` cleared), so they see no EOF; and
//! their parent-death signal (`PR_SET_PDEATHSIG`) belongs to the thread that spawned
//! them, which is rsgid's main thread (the runtime is single-threaded), the thread that
//! calls `execve` and lives on as the new image.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rsgi_os::listen::{BoundSocket, Listener};
use rsgi_proto::config::{ListenAddr, Protocol};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{now, Emperor, Vassal};
use crate::lifecycle::{Gen, Phase, Pid, State};
use crate::scan::{FileKind, Fingerprint, VassalFile, VassalName};
use crate::upgrade::{self, ChildFdNumbers};

/// The version of [`UpgradeState`]'s format. A binary accepts only the versions it
/// knows ([`check_state`]).
pub const STATE_VERSION: u32 = 1;

/// How long the new binary may take to check the state.
const CHECK_WITHIN: Duration = Duration::from_secs(10);

/// How long the exec waits for starting or reloading vassals to settle (their
/// `READY=1` may be in flight between a reading task and the actor).
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// Everything the new image needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct UpgradeState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The build that wrote it ([`upgrade::build`]).
    pub from_build: String,
    /// rsgid's own listeners: key to fd.
    pub listeners: BTreeMap<String, RawFd>,
    /// Directory scans so far (a metric).
    pub scans: u64,
    /// Every vassal.
    pub vassals: Vec<VassalState>,
}

/// One vassal.
#[derive(Debug, Serialize, Deserialize)]
pub struct VassalState {
    name: String,
    path: PathBuf,
    xml: bool,
    fingerprint: FingerprintState,
    problem: Option<String>,
    applied: Option<FingerprintState>,
    state: State,
    sockets: Vec<SocketState>,
    generations: Vec<GenState>,
    counters: Vec<CounterState>,
    ledger: crate::snapshot::Ledger,
    logs: Vec<(u64, String)>,
    output_dropped: u64,
    last_spawned: Option<u64>,
    started_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FingerprintState {
    mtime_ns: String,
    len: u64,
    hash: u64,
    file_id: (u64, u64),
}

impl From<Fingerprint> for FingerprintState {
    fn from(f: Fingerprint) -> FingerprintState {
        FingerprintState {
            mtime_ns: f.mtime_ns.to_string(),
            len: f.len,
            hash: f.hash,
            file_id: f.file_id,
        }
    }
}

impl From<FingerprintState> for Fingerprint {
    fn from(f: FingerprintState) -> Fingerprint {
        Fingerprint {
            mtime_ns: f.mtime_ns.parse().unwrap_or_default(),
            len: f.len,
            hash: f.hash,
            file_id: f.file_id,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SocketState {
    fd: RawFd,
    http: bool,
    tcp: Option<(String, u16)>,
    unix: Option<PathBuf>,
    inherited: bool,
    created_path: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GenState {
    gen: u64,
    pid: i32,
    fds: ChildFdNumbers,
}

#[derive(Debug, Serialize, Deserialize)]
struct CounterState {
    gen: u64,
    fd: RawFd,
    slots: usize,
}

/// Parse a state file and check that this binary understands it (`rsgid
/// --check-upgrade-state FILE`).
pub fn check_state(path: &Path) -> Result<UpgradeState, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state: UpgradeState =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if state.version != STATE_VERSION {
        return Err(format!(
            "{}: state version {} (this rsgid, {}, reads version {STATE_VERSION})",
            path.display(),
            state.version,
            upgrade::build()
        ));
    }
    Ok(state)
}

/// Where the state goes.
fn state_path(run_dir: &Path) -> PathBuf {
    run_dir.join("rsgid-upgrade-state.json")
}

impl Emperor {
    /// `rsgictl upgrade` or SIGUSR2: check the new binary against the state now; on
    /// success the exec follows on the next turn of the loop. `Err` says why not (and
    /// this image runs on).
    pub(super) fn begin_upgrade(&mut self) -> Result<String, String> {
        if self.shutdown_deadline.is_some() {
            return Err("rsgid is shutting down".into());
        }
        if self.upgrade_at.is_some() {
            return Err("an upgrade is already under way".into());
        }
        let exe = upgrade::exe();
        let path = state_path(&self.settings.run_dir);
        let state = self.dump();
        let bytes =
            serde_json::to_vec(&state).map_err(|e| format!("cannot write the state: {e}"))?;
        upgrade::write_private(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let checked = upgrade::check_new_binary(&exe, &path, CHECK_WITHIN);
        let _ = std::fs::remove_file(&path);
        checked?;
        self.upgrade_at = Some(now());
        tracing::info!(exe = %exe.display(), "upgrade: the new binary understands the state; re-executing");
        Ok(format!(
            "{} checked the handed-over state; re-executing it in place (pid {})",
            exe.display(),
            std::process::id()
        ))
    }

    /// The exec, once nothing is starting (or [`SETTLE_WITHIN`] passed). Returns only if
    /// it failed (this image then runs on).
    pub(super) fn exec_upgrade(&mut self) {
        let Some(asked) = self.upgrade_at else {
            return;
        };
        let unsettled = self.vassals.values().any(|v| {
            matches!(
                v.state.phase,
                Phase::Starting { .. } | Phase::Reloading { .. }
            )
        });
        if unsettled && now().saturating_duration_since(asked) < SETTLE_WITHIN {
            return;
        }
        self.upgrade_at = None;
        // What the tasks already sent is applied first (an exit, a READY=1).
        while let Ok(msg) = self.rx.try_recv() {
            if !matches!(msg, crate::msg::Msg::Upgrade) {
                self.handle(msg);
            }
        }
        if let Err(e) = self.exec_now() {
            tracing::error!("upgrade failed, this rsgid runs on: {e}");
        }
    }

    fn exec_now(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt as _;
        let exe = upgrade::exe();
        let path = state_path(&self.settings.run_dir);
        let state = self.dump();
        let mut fds: Vec<RawFd> = state.listeners.values().copied().collect();
        for v in &state.vassals {
            fds.extend(v.sockets.iter().map(|s| s.fd));
            fds.extend(v.counters.iter().map(|c| c.fd));
            for g in &v.generations {
                fds.extend(
                    [g.fds.notify, g.fds.stdout, g.fds.stderr]
                        .into_iter()
                        .flatten(),
                );
            }
        }
        for (i, fd) in fds.iter().enumerate() {
            if let Err(e) = upgrade::keep_open(*fd) {
                fds[..i].iter().for_each(|fd| upgrade::close_on_exec(*fd));
                return Err(format!("fd {fd}: {e}"));
            }
        }
        let bytes =
            serde_json::to_vec(&state).map_err(|e| format!("cannot write the state: {e}"))?;
        upgrade::write_private(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.systemd.send(&[
            rsgi_proto::notify::Message::Reloading,
            rsgi_proto::notify::Message::Other(format!(
                "MONOTONIC_USEC={}",
                super::monotonic_usec()
            )),
        ]);
        tracing::info!(exe = %exe.display(), fds = fds.len(), "upgrade: executing the new binary");
        let err = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(upgrade::STATE_ENV, &path)
            .exec();
        let _ = std::fs::remove_file(&path);
        // Running on: nothing of ours may leak into the vassals started later.
        for fd in &fds {
            upgrade::close_on_exec(*fd);
        }
        Err(format!("cannot execute {}: {err}", exe.display()))
    }

    /// Everything, as plain data.
    fn dump(&self) -> UpgradeState {
        let vassals = self
            .vassals
            .values()
            .map(|v| {
                let pids: Vec<(Gen, Pid)> = generations(&v.state);
                VassalState {
                    name: v.name.to_string(),
                    path: v.file.path.clone(),
                    xml: v.file.kind == FileKind::Xml,
                    fingerprint: v.file.fingerprint.into(),
                    problem: v.file.problem.clone(),
                    applied: v.applied.map(Into::into),
                    state: v.state.clone(),
                    sockets: v.sockets.iter().map(|s| socket_state(s)).collect(),
                    generations: pids
                        .into_iter()
                        .map(|(gen, pid)| GenState {
                            gen: gen.0,
                            pid: pid.0,
                            fds: upgrade::child_fds(pid.0),
                        })
                        .collect(),
                    counters: v
                        .counters
                        .iter()
                        .map(|(gen, shm)| CounterState {
                            gen: gen.0,
                            fd: shm.fd().as_raw_fd(),
                            slots: shm.slots().len(),
                        })
                        .collect(),
                    ledger: v.ledger.clone(),
                    logs: v.logs.iter().map(|(g, l)| (g.0, l.clone())).collect(),
                    output_dropped: v.output_dropped,
                    last_spawned: v.last_spawned.map(|g| g.0),
                    started_ms: v.started.map(upgrade::instant_ms::to_ms),
                }
            })
            .collect();
        UpgradeState {
            version: STATE_VERSION,
            from_build: upgrade::build().to_owned(),
            listeners: upgrade::listeners(),
            scans: self.scans,
            vassals,
        }
    }

    /// The new image: take over what the old one handed over. Call before
    /// [`Emperor::run`].
    pub fn restore(&mut self, state: UpgradeState) {
        self.scans = state.scans;
        self.announced_ready = true;
        let mut shared: BTreeMap<RawFd, Arc<BoundSocket>> = BTreeMap::new();
        let mut sleeping = Vec::new();
        let mut adopted = 0;
        for vs in state.vassals {
            let Ok(name) = VassalName::new(&vs.name) else {
                continue;
            };
            let file = VassalFile {
                name: name.clone(),
                path: vs.path,
                kind: if vs.xml { FileKind::Xml } else { FileKind::Ini },
                fingerprint: vs.fingerprint.into(),
                problem: vs.problem,
            };
            // The config is read again (this binary's reading of it); a file changed in
            // between differs from `applied`, so the first rescan reloads it. A vassal
            // that never loaded (or does not load now) watches what this load read, so
            // that fixing its include still loads it (a fix made during the exec itself
            // is seen at the next change).
            let (config, failed_reads) = match (self.load(&name, &file), vs.applied.is_some()) {
                (Ok(c), true) => (Some(Arc::new(c)), None),
                (Ok(c), false) => (None, Some(c.includes)),
                (Err(e), applied) => {
                    if applied {
                        tracing::warn!(vassal = %name, "upgrade: cannot read the file again: {}", e.message);
                    }
                    (None, Some(e.read))
                }
            };
            let sockets = vs
                .sockets
                .into_iter()
                .filter_map(|s| {
                    if let Some(existing) = shared.get(&s.fd) {
                        return Some(Arc::clone(existing));
                    }
                    let fd = s.fd;
                    let socket = Arc::new(bound_socket(s)?);
                    shared.insert(fd, Arc::clone(&socket));
                    Some(socket)
                })
                .collect();
            let mut counters = BTreeMap::new();
            for c in vs.counters {
                // SAFETY: handed over for this region, taken once.
                let fd = unsafe { upgrade::own(c.fd) };
                match rsgi_os::shm::Shm::from_fd(fd, c.slots) {
                    Ok(shm) => {
                        counters.insert(Gen(c.gen), Arc::new(shm));
                    }
                    Err(e) => {
                        tracing::warn!(vassal = %name, gen = c.gen, "upgrade: cannot map the counters: {e}")
                    }
                }
            }
            for g in &vs.generations {
                match self.effects.adopt(&name, Gen(g.gen), Pid(g.pid), g.fds) {
                    Ok(()) => adopted += 1,
                    Err(e) => {
                        tracing::error!(vassal = %name, pid = g.pid, "upgrade: cannot take the process over: {e}")
                    }
                }
            }
            let mut wakes = BTreeSet::new();
            if let Some(at) = vs.state.next_deadline(&self.settings.policy) {
                wakes.insert(at);
            }
            if matches!(vs.state.phase, Phase::Sleeping { .. }) {
                sleeping.push(name.clone());
            }
            let vassal = Vassal {
                name: name.clone(),
                file,
                config,
                failed_reads,
                applied: vs.applied.clone().map(Into::into),
                sockets,
                state: vs.state,
                wakes,
                logs: vs
                    .logs
                    .into_iter()
                    .map(|(g, l)| (Gen(g), l))
                    .collect::<VecDeque<_>>(),
                output_dropped: vs.output_dropped,
                last_spawned: vs.last_spawned.map(Gen),
                started: vs.started_ms.map(upgrade::instant_ms::from_ms),
                waiters: Vec::new(),
                feed: broadcast::channel(256).0,
                counters,
                ledger: vs.ledger,
                watch: Vec::new(),
                sleep_seq: 0,
                activity: None,
            };
            self.vassals.insert(name, vassal);
        }
        for name in sleeping {
            if let Some(input) = self.sleep(&name) {
                self.input(&name, input);
            }
        }
        tracing::info!(
            from = %state.from_build,
            to = %upgrade::build(),
            vassals = self.vassals.len(),
            processes = adopted,
            "rsgid upgraded in place: every vassal, socket and process taken over"
        );
        self.systemd.send(&[
            rsgi_proto::notify::Message::Ready,
            rsgi_proto::notify::Message::Status(format!(
                "governing {} vassal(s) (upgraded in place)",
                self.vassals.len()
            )),
        ]);
    }
}

/// Every live process of a vassal with its generation.
fn generations(state: &State) -> Vec<(Gen, Pid)> {
    let mut out = Vec::new();
    match &state.phase {
        Phase::Starting {
            gen,
            pid: Some(pid),
            ..
        }
        | Phase::Ready { gen, pid, .. }
        | Phase::Stopping { gen, pid, .. } => out.push((*gen, *pid)),
        Phase::Reloading { old, gen, pid, .. } => {
            out.push(*old);
            if let Some(pid) = pid {
                out.push((*gen, *pid));
            }
        }
        _ => {}
    }
    out.extend(state.draining.iter().map(|d| (d.gen, d.pid)));
    out
}

fn socket_state(s: &BoundSocket) -> SocketState {
    let (tcp, unix) = match &s.addr {
        ListenAddr::Tcp { host, port } => (Some((host.clone(), *port)), None),
        ListenAddr::Unix(p) => (None, Some(p.clone())),
    };
    SocketState {
        fd: s.listener.as_raw_fd(),
        http: s.protocol == Protocol::Http,
        tcp,
        unix,
        inherited: s.inherited,
        created_path: s.created_path.clone(),
    }
}

fn bound_socket(s: SocketState) -> Option<BoundSocket> {
    // SAFETY: handed over for this socket; the caller takes each number once.
    let fd = unsafe { upgrade::own(s.fd) };
    let (addr, listener) = match (s.tcp, s.unix) {
        (Some((host, port)), _) => (
            ListenAddr::Tcp { host, port },
            Listener::Tcp(std::net::TcpListener::from(fd)),
        ),
        (None, Some(path)) => (
            ListenAddr::Unix(path),
            Listener::Unix(std::os::unix::net::UnixListener::from(fd)),
        ),
        (None, None) => return None,
    };
    Some(BoundSocket {
        protocol: if s.http {
            Protocol::Http
        } else {
            Protocol::Uwsgi
        },
        addr,
        listener,
        inherited: s.inherited,
        created_path: s.created_path,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(text: &str) -> Result<UpgradeState, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, text).unwrap();
        check_state(&path)
    }

    #[test]
    fn the_check_accepts_its_version_only() {
        let state = |version: u32| {
            format!(
                r#"{{"version":{version},"from_build":"x","listeners":{{"control:/c":3}},"scans":2,"vassals":[]}}"#
            )
        };
        let ok = check(&state(STATE_VERSION)).unwrap();
        assert_eq!(ok.listeners.get("control:/c"), Some(&3));
        let e = check(&state(STATE_VERSION + 1)).unwrap_err();
        assert!(e.contains("state version 2"), "{e}");
        assert!(check("{}").is_err());
        assert!(check("not json").unwrap_err().contains("state.json"));
    }

    #[test]
    fn a_lifecycle_state_survives_the_round_trip() {
        let mut state = State::new();
        state.phase = Phase::Backoff {
            until: std::time::Instant::now() + Duration::from_secs(5),
            attempt: 3,
        };
        state.last_error = Some("exited with exit code 1".into());
        state.restarts = 7;
        let json = serde_json::to_string(&state).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back.restarts, 7);
        assert_eq!(back.last_error, state.last_error);
        let Phase::Backoff { until, attempt } = back.phase else {
            panic!("{back:?}");
        };
        assert_eq!(attempt, 3);
        let left = until.saturating_duration_since(std::time::Instant::now());
        assert!(
            left > Duration::from_secs(4) && left <= Duration::from_secs(5),
            "{left:?}"
        );
    }
}
