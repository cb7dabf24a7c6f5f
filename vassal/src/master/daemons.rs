//! Attached daemons (`attach-daemon`, `smart-attach-daemon`, `attach-control-daemon`,
//! `attach-daemon2`) as a pure transition function, as uWSGI's `core/daemons.c` runs
//! them; the shell (`master.rs`) starts, signals and reaps the processes.
//!
//! - A **dumb** daemon (no pidfile) is the master's child: started with the master,
//!   respawned when it exits, throttled as uWSGI throttles it (a respawn within 3 s of
//!   the last one waits `respawns - seconds since the last spawn` seconds), stopped
//!   (its stop signal to its process group, SIGKILL after [`STOP_MERCY`]) when the vassal
//!   stops or reloads. With `control`, its death stops the whole vassal.
//! - A **smart** daemon (a pidfile) is tracked by the pid in its file: started only when
//!   no live process is named there; respawned when the pid it named is gone (at once if
//!   it had been seen alive, else after `freq` checks a second); never stopped by rsgi,
//!   so it survives reloads and stops (as in uWSGI).
//!
//! Deliberate difference: uWSGI forks at once and the child sleeps out the throttle;
//! here the spawn itself waits (no process exists meanwhile).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rsgi_proto::config::AttachDaemon;

/// How long stopped daemons get before SIGKILL (uWSGI: `reload-mercy`, or 3 s unset).
pub const STOP_MERCY: Duration = Duration::from_secs(3);
/// How often smart daemons' pidfiles count a check.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A respawn within this long of the previous spawn is throttled (uWSGI's 3 s).
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(3);

/// One daemon's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Its configuration.
    pub spec: AttachDaemon,
    /// The process: our child (dumb), or the pid in its pidfile (smart).
    pub pid: Option<Pid>,
    /// Spawns so far.
    pub respawns: u32,
    /// When it was last spawned.
    pub last_spawn: Option<Instant>,
    /// Spawn it at this instant (a throttled respawn).
    pub spawn_at: Option<Instant>,
    /// Smart: its pid was seen alive in its pidfile (uWSGI's status 2).
    pub monitored: bool,
    /// Smart: checks in a row that found no live pid since the last spawn.
    pub pidfile_checks: u32,
    /// Dumb: respawn at once when it exits (a reload restarts it).
    pub restart: bool,
}

/// Every daemon, and whether the vassal is stopping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Daemons {
    /// The daemons, in config order.
    pub list: Vec<Daemon>,
    /// Stopping: the instant stopped daemons get SIGKILL; none is respawned.
    pub stop_deadline: Option<Instant>,
    /// SIGKILL was sent.
    pub killed: bool,
    /// When the pidfiles were last checked (they count once a second, as in uWSGI).
    pub last_check: Option<Instant>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// The master starts: each smart daemon's pidfile holds this live pid, or not.
    Start(Vec<Option<Pid>>),
    /// The once-a-second check, with each daemon's pidfile's live pid (dumb: `None`).
    Check(Vec<Option<Pid>>),
    /// A child was reaped.
    Exited(Pid),
    /// Answer to [`DaemonAction::Spawn`].
    Spawned(usize, Result<Pid, String>),
    /// The vassal stops: stop the dumb daemons.
    Stop,
    /// A reload that keeps the master's image (lazy-apps): restart the dumb daemons.
    Restart,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonAction {
    /// Start daemon `i` (`/bin/sh -c`); answer with [`DaemonEvent::Spawned`].
    Spawn(usize),
    /// Send `sig` to the process group of `pid`.
    Kill(Pid, Signal),
    /// Log a line.
    Log(String),
    /// A control daemon died: stop the vassal.
    StopVassal,
}

fn signal_of(n: i32) -> Signal {
    Signal::try_from(n).unwrap_or(Signal::SIGTERM)
}

impl Daemons {
    /// The daemons of `specs`, none started.
    pub fn new(specs: &[AttachDaemon]) -> Daemons {
        Daemons {
            list: specs
                .iter()
                .map(|spec| Daemon {
                    spec: spec.clone(),
                    pid: None,
                    respawns: 0,
                    last_spawn: None,
                    spawn_at: None,
                    monitored: false,
                    pidfile_checks: 0,
                    restart: false,
                })
                .collect(),
            stop_deadline: None,
            killed: false,
            last_check: None,
        }
    }

    /// Whether `pid` is a dumb daemon of ours (the shell asks before the workers' policy).
    pub fn owns(&self, pid: Pid) -> bool {
        self.list
            .iter()
            .any(|d| d.spec.pidfile.is_none() && d.pid == Some(pid))
    }

    /// Whether every dumb daemon is gone (the master may exit).
    pub fn all_stopped(&self) -> bool {
        self.list
            .iter()
            .all(|d| d.spec.pidfile.is_some() || d.pid.is_none())
    }

    /// The next instant something is due (a throttled spawn, the stop's SIGKILL).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let spawns = self.list.iter().filter_map(|d| d.spawn_at);
        let kill = self.stop_deadline.filter(|_| !self.killed);
        spawns.chain(kill).min()
    }

    /// Apply `event` at `now`; return what the shell must do, in order.
    pub fn step(&mut self, event: DaemonEvent, now: Instant) -> Vec<DaemonAction> {
        let mut out = Vec::new();
        match event {
            DaemonEvent::Start(pids) => {
                for (i, d) in self.list.iter_mut().enumerate() {
                    match (&d.spec.pidfile, pids.get(i).copied().flatten()) {
                        (Some(file), Some(pid)) => {
                            d.pid = Some(pid);
                            out.push(DaemonAction::Log(format!(
                                "daemon \"{}\": found a live pid {pid} in {}",
                                d.spec.command,
                                file.display()
                            )));
                        }
                        _ => d.spawn_at = Some(now),
                    }
                }
            }
            DaemonEvent::Check(_) if self.last_check.is_some_and(|t| now < t + CHECK_EVERY) => {}
            DaemonEvent::Check(pids) => {
                self.last_check = Some(now);
                for (i, d) in self.list.iter_mut().enumerate() {
                    if d.spec.pidfile.is_none() || d.spawn_at.is_some() {
                        continue;
                    }
                    match pids.get(i).copied().flatten() {
                        None if d.monitored => {
                            out.push(DaemonAction::Log(format!(
                                "daemon \"{}\" (pid {}) is gone; respawning",
                                d.spec.command,
                                d.pid.map_or(0, Pid::as_raw)
                            )));
                            d.monitored = false;
                            d.spawn_at = Some(now + throttle(d, now));
                        }
                        None => {
                            d.pidfile_checks += 1;
                            if d.pidfile_checks >= d.spec.freq {
                                out.push(DaemonAction::Log(format!(
                                    "daemon \"{}\": no live pid in its pidfile after {} checks; \
                                     respawning",
                                    d.spec.command, d.pidfile_checks
                                )));
                                d.pidfile_checks = 0;
                                d.spawn_at = Some(now + throttle(d, now));
                            }
                        }
                        Some(pid) => {
                            d.pid = Some(pid);
                            d.monitored = true;
                            d.pidfile_checks = 0;
                        }
                    }
                }
            }
            DaemonEvent::Exited(pid) => {
                let stopping = self.stop_deadline.is_some();
                if let Some(d) = self
                    .list
                    .iter_mut()
                    .find(|d| d.spec.pidfile.is_none() && d.pid == Some(pid))
                {
                    d.pid = None;
                    if stopping {
                        out.push(DaemonAction::Log(format!(
                            "daemon \"{}\" (pid {pid}) stopped",
                            d.spec.command
                        )));
                    } else if d.restart {
                        d.restart = false;
                        d.spawn_at = Some(now);
                    } else if d.spec.control {
                        out.push(DaemonAction::Log(format!(
                            "control daemon \"{}\" (pid {pid}) died: stopping the vassal",
                            d.spec.command
                        )));
                        out.push(DaemonAction::StopVassal);
                    } else {
                        let wait = throttle(d, now);
                        out.push(DaemonAction::Log(format!(
                            "daemon \"{}\" (pid {pid}) died; respawning{}",
                            d.spec.command,
                            if wait.is_zero() {
                                String::new()
                            } else {
                                format!(" in {} s (throttled)", wait.as_secs())
                            }
                        )));
                        d.spawn_at = Some(now + wait);
                    }
                }
            }
            DaemonEvent::Spawned(i, result) => {
                if let Some(d) = self.list.get_mut(i) {
                    d.respawns += 1;
                    d.last_spawn = Some(now);
                    d.pidfile_checks = 0;
                    d.monitored = false;
                    match result {
                        Ok(pid) => {
                            out.push(DaemonAction::Log(format!(
                                "daemon \"{}\" started (pid {pid})",
                                d.spec.command
                            )));
                            // A smart daemon's pid is the one in its pidfile, not the
                            // shell's (which may daemonize and exit).
                            if d.spec.pidfile.is_none() {
                                d.pid = Some(pid);
                            }
                        }
                        Err(e) => {
                            let wait = throttle(d, now).max(Duration::from_secs(1));
                            out.push(DaemonAction::Log(format!(
                                "daemon \"{}\" cannot start: {e}; retrying in {} s",
                                d.spec.command,
                                wait.as_secs()
                            )));
                            d.spawn_at = Some(now + wait);
                        }
                    }
                }
            }
            DaemonEvent::Stop => {
                if self.stop_deadline.is_none() {
                    self.stop_deadline = Some(now + STOP_MERCY);
                    for d in &mut self.list {
                        d.spawn_at = None;
                        if let (None, Some(pid)) = (&d.spec.pidfile, d.pid) {
                            out.push(DaemonAction::Log(format!(
                                "stopping daemon \"{}\" (pid {pid})",
                                d.spec.command
                            )));
                            out.push(DaemonAction::Kill(pid, signal_of(d.spec.stop_signal)));
                        }
                    }
                }
            }
            DaemonEvent::Restart => {
                for d in &mut self.list {
                    if let (None, Some(pid)) = (&d.spec.pidfile, d.pid) {
                        d.restart = true;
                        out.push(DaemonAction::Log(format!(
                            "reload: restarting daemon \"{}\" (pid {pid})",
                            d.spec.command
                        )));
                        out.push(DaemonAction::Kill(pid, signal_of(d.spec.stop_signal)));
                    }
                }
            }
        }
        // Spawns that are due, the stop's SIGKILL.
        if let Some(deadline) = self.stop_deadline {
            if !self.killed && now >= deadline {
                self.killed = true;
                for d in &self.list {
                    if let (None, Some(pid)) = (&d.spec.pidfile, d.pid) {
                        out.push(DaemonAction::Log(format!(
                            "daemon \"{}\" (pid {pid}) did not stop in {} s: killing it",
                            d.spec.command,
                            STOP_MERCY.as_secs()
                        )));
                        out.push(DaemonAction::Kill(pid, Signal::SIGKILL));
                    }
                }
            }
        } else {
            for (i, d) in self.list.iter_mut().enumerate() {
                if d.spawn_at.is_some_and(|t| now >= t) {
                    d.spawn_at = None;
                    out.push(DaemonAction::Spawn(i));
                }
            }
        }
        out
    }
}

/// uWSGI's throttle: a respawn within [`THROTTLE_WINDOW`] of the last spawn waits
/// `respawns - whole seconds since it` seconds.
fn throttle(d: &Daemon, now: Instant) -> Duration {
    let Some(last) = d.last_spawn else {
        return Duration::ZERO;
    };
    let since = now.saturating_duration_since(last);
    if since.as_secs() > THROTTLE_WINDOW.as_secs() {
        return Duration::ZERO;
    }
    Duration::from_secs(u64::from(d.respawns).saturating_sub(since.as_secs()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::*;
    use DaemonAction::*;

    fn t(secs: f64) -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs_f64(secs)
    }

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    fn dumb(control: bool) -> AttachDaemon {
        AttachDaemon {
            command: "worker".into(),
            pidfile: None,
            freq: 10,
            control,
            stop_signal: 15,
            daemonize: false,
        }
    }

    fn smart(freq: u32) -> AttachDaemon {
        AttachDaemon {
            pidfile: Some(PathBuf::from("/run/d.pid")),
            freq,
            ..dumb(false)
        }
    }

    /// A dumb daemon running as pid 50, spawned `respawns` times, last at `last`.
    fn running(respawns: u32, last: f64) -> Daemons {
        let mut d = Daemons::new(&[dumb(false)]);
        d.list[0].pid = Some(pid(50));
        d.list[0].respawns = respawns;
        d.list[0].last_spawn = Some(t(last));
        d
    }

    fn logs_dropped(actions: Vec<DaemonAction>) -> Vec<DaemonAction> {
        actions
            .into_iter()
            .filter(|a| !matches!(a, Log(_)))
            .collect()
    }

    #[test]
    fn start_spawns_dumb_daemons_and_adopts_live_smart_ones() {
        let mut d = Daemons::new(&[dumb(false), smart(10), smart(10)]);
        let out = d.step(DaemonEvent::Start(vec![None, Some(pid(70)), None]), t(0.0));
        assert_eq!(logs_dropped(out), vec![Spawn(0), Spawn(2)]);
        assert_eq!(d.list[1].pid, Some(pid(70)));
    }

    /// uWSGI's throttle, row by row: (respawns so far, last spawn, exit at) => the
    /// respawn's delay.
    #[test]
    fn respawn_throttle_is_uwsgis() {
        let rows: &[(u32, f64, f64, f64)] = &[
            (1, 0.0, 10.0, 0.0), // ran 10 s: at once
            (1, 0.0, 0.2, 1.0),  // died at once: 1 - 0 s
            (3, 0.0, 1.5, 2.0),  // 3 - 1 s
            (5, 0.0, 3.0, 2.0),  // 5 - 3 s
            (5, 0.0, 3.5, 2.0),  // still within the window (whole seconds: 3)
            (5, 0.0, 4.1, 0.0),  // outside the 3 s window: at once
        ];
        for &(respawns, last, exit, wait) in rows {
            let mut d = running(respawns, last);
            let out = d.step(DaemonEvent::Exited(pid(50)), t(exit));
            assert_eq!(d.list[0].pid, None);
            let expect_now = wait == 0.0;
            assert_eq!(
                logs_dropped(out).contains(&Spawn(0)),
                expect_now,
                "{respawns} {exit}"
            );
            if !expect_now {
                assert_eq!(
                    d.list[0].spawn_at,
                    Some(t(exit + wait)),
                    "{respawns} {exit}"
                );
                assert_eq!(d.next_wakeup(), Some(t(exit + wait)));
                let out = d.step(DaemonEvent::Check(vec![None]), t(exit + wait));
                assert_eq!(logs_dropped(out), vec![Spawn(0)]);
            }
        }
    }

    #[test]
    fn spawned_answer_records_the_pid_and_counts() {
        let mut d = Daemons::new(&[dumb(false)]);
        d.step(DaemonEvent::Spawned(0, Ok(pid(51))), t(1.0));
        assert_eq!((d.list[0].pid, d.list[0].respawns), (Some(pid(51)), 1));
        assert!(d.owns(pid(51)) && !d.owns(pid(52)));
        let out = d.step(DaemonEvent::Spawned(0, Err("no /bin/sh".into())), t(9.0));
        assert!(
            matches!(&out[0], Log(l) if l.contains("cannot start: no /bin/sh; retrying in 2 s"))
        );
        assert_eq!(d.list[0].spawn_at, Some(t(11.0)));
    }

    #[test]
    fn control_daemon_death_stops_the_vassal() {
        let mut d = Daemons::new(&[dumb(true)]);
        d.list[0].pid = Some(pid(50));
        let out = d.step(DaemonEvent::Exited(pid(50)), t(5.0));
        assert_eq!(logs_dropped(out), vec![StopVassal]);
    }

    #[test]
    fn stop_signals_dumb_daemons_then_kills_and_never_respawns() {
        let mut d = running(1, 0.0);
        d.list.push(Daemon {
            pid: Some(pid(70)),
            ..Daemons::new(&[smart(10)]).list.remove(0)
        });
        let out = d.step(DaemonEvent::Stop, t(10.0));
        // The smart one (pid 70) survives a stop, as in uWSGI.
        assert_eq!(logs_dropped(out), vec![Kill(pid(50), Signal::SIGTERM)]);
        assert!(!d.all_stopped());
        assert_eq!(d.next_wakeup(), Some(t(13.0)));
        assert!(logs_dropped(d.step(DaemonEvent::Check(vec![None, None]), t(12.0))).is_empty());
        let out = d.step(DaemonEvent::Check(vec![None, None]), t(13.0));
        assert_eq!(logs_dropped(out), vec![Kill(pid(50), Signal::SIGKILL)]);
        let out = d.step(DaemonEvent::Exited(pid(50)), t(13.1));
        assert!(logs_dropped(out).is_empty());
        assert!(d.all_stopped());
    }

    #[test]
    fn restart_respawns_at_once_without_throttle() {
        let mut d = running(4, 0.0);
        let out = d.step(DaemonEvent::Restart, t(1.0));
        assert_eq!(logs_dropped(out), vec![Kill(pid(50), Signal::SIGTERM)]);
        let out = d.step(DaemonEvent::Exited(pid(50)), t(1.2));
        assert_eq!(logs_dropped(out), vec![Spawn(0)]);
    }

    /// Smart daemons, as `uwsgi_daemons_smart_check`: (pid in the file at each check) =>
    /// whether that check spawns.
    #[test]
    fn smart_daemon_checks() {
        type Row = (&'static str, u32, &'static [(Option<i32>, bool)]);
        let rows: &[Row] = &[
            (
                "seen alive, then gone: respawned at once",
                10,
                &[(Some(70), false), (Some(70), false), (None, true)],
            ),
            (
                "never seen: respawned after freq checks",
                3,
                &[(None, false), (None, false), (None, true)],
            ),
            (
                "a new pid in the file is adopted",
                3,
                &[(Some(70), false), (Some(71), false), (Some(71), false)],
            ),
        ];
        for (name, freq, checks) in rows {
            let mut d = Daemons::new(&[smart(*freq)]);
            d.step(DaemonEvent::Spawned(0, Ok(pid(60))), t(0.0));
            assert_eq!(
                d.list[0].pid, None,
                "{name}: the shell's pid is not the daemon's"
            );
            for (i, (file, spawns)) in checks.iter().enumerate() {
                let out = d.step(DaemonEvent::Check(vec![file.map(pid)]), t(10.0 + i as f64));
                assert_eq!(
                    logs_dropped(out).contains(&Spawn(0)),
                    *spawns,
                    "{name}: check {i}"
                );
            }
        }
        // The shell of a smart daemon exiting is not its death.
        let mut d = Daemons::new(&[smart(3)]);
        d.step(DaemonEvent::Spawned(0, Ok(pid(60))), t(0.0));
        assert!(!d.owns(pid(60)));
        assert!(d.step(DaemonEvent::Exited(pid(60)), t(0.1)).is_empty());
    }
}
