//! `cron`, `unique-cron`, `cron2`: when the master runs each command, as uWSGI's
//! `uwsgi_manage_command_cron` (core/cron.c) decides it. Pure: the shell passes the
//! time (epoch seconds and the local time's fields, [`Tm`]), so the unit tests run any
//! day at any hour; the matcher itself is [`rsgi_proto::config::Cron::matches`].
//!
//! Per cron, on every master wake-up: a `harakiri` run past its time is killed; a
//! `unique` cron whose previous run lives is skipped; a cron whose fields match the
//! local time runs if it has not run in the last 60 s (so once per matching minute).

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rsgi_proto::config::Cron;
use rsgi_proto::cron::Tm;

/// One cron and its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The configuration.
    pub spec: Cron,
    /// When it last ran (epoch seconds).
    pub last_run: Option<i64>,
    /// Its running command.
    pub pid: Option<Pid>,
    /// When the running command gets SIGKILL (`harakiri`).
    pub kill_at: Option<i64>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronAction {
    /// Run cron `i`'s command; answer with [`Crons::started`].
    Run(usize),
    /// Send `sig` to the process group of `pid`.
    Kill(Pid, Signal),
    /// Log a line.
    Log(String),
}

/// Every cron.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crons {
    /// The crons, in config order.
    pub jobs: Vec<Job>,
}

impl Crons {
    /// The crons of `specs`, none run yet.
    pub fn new(specs: &[Cron]) -> Crons {
        Crons {
            jobs: specs
                .iter()
                .map(|spec| Job {
                    spec: spec.clone(),
                    last_run: None,
                    pid: None,
                    kill_at: None,
                })
                .collect(),
        }
    }

    /// Whether `pid` is a running cron command.
    pub fn owns(&self, pid: Pid) -> bool {
        self.jobs.iter().any(|j| j.pid == Some(pid))
    }

    /// A wake-up at `epoch` (seconds), local time `tm`.
    pub fn tick(&mut self, epoch: i64, tm: &Tm) -> Vec<CronAction> {
        let mut out = Vec::new();
        for (i, job) in self.jobs.iter_mut().enumerate() {
            if let (Some(pid), Some(at)) = (job.pid, job.kill_at) {
                if epoch >= at {
                    job.kill_at = None;
                    out.push(CronAction::Log(format!(
                        "cron \"{}\" (pid {pid}) still runs after its harakiri of {} s: killing it",
                        job.spec.command,
                        job.spec.harakiri.unwrap_or(0)
                    )));
                    out.push(CronAction::Kill(pid, Signal::SIGKILL));
                }
            }
            if job.spec.unique && job.pid.is_some() {
                continue;
            }
            if job.spec.matches(tm) && job.last_run.is_none_or(|l| epoch - l >= 60) {
                job.last_run = Some(epoch);
                out.push(CronAction::Run(i));
            }
        }
        out
    }

    /// Answer to [`CronAction::Run`].
    pub fn started(&mut self, i: usize, result: Result<Pid, String>, epoch: i64) -> CronAction {
        let Some(job) = self.jobs.get_mut(i) else {
            return CronAction::Log(format!("no cron {i}"));
        };
        match result {
            Ok(pid) => {
                // A unique cron keeps its first pid while it runs; others may overlap
                // (the newest one is tracked for harakiri).
                job.pid = Some(pid);
                job.kill_at = job.spec.harakiri.map(|h| epoch + h as i64);
                CronAction::Log(format!(
                    "cron: running \"{}\" (pid {pid})",
                    job.spec.command
                ))
            }
            Err(e) => CronAction::Log(format!("cron: cannot run \"{}\": {e}", job.spec.command)),
        }
    }

    /// A reaped child; `status` describes how it ended. `None` when it is no cron.
    pub fn exited(&mut self, pid: Pid, status: &str) -> Option<CronAction> {
        let job = self.jobs.iter_mut().find(|j| j.pid == Some(pid))?;
        job.pid = None;
        job.kill_at = None;
        Some(CronAction::Log(format!(
            "cron \"{}\" (pid {pid}) ended with {status}",
            job.spec.command
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rsgi_proto::config::VassalConfig;

    use super::*;

    fn crons(specs: &[&str]) -> Crons {
        let mut c = VassalConfig::default();
        for s in specs {
            if let Some(v) = s.strip_prefix("unique ") {
                rsgi_proto::cron::add(&mut c, v, true).unwrap();
            } else if let Some(v) = s.strip_prefix("cron2 ") {
                rsgi_proto::cron::add2(&mut c, v).unwrap();
            } else {
                rsgi_proto::cron::add(&mut c, s, false).unwrap();
            }
        }
        Crons::new(&c.crons)
    }

    /// The local time `epoch` seconds after Wednesday 2026-12-02 15:00:00 (a fake
    /// clock: the matcher only sees these fields).
    fn at(secs: i64) -> (i64, Tm) {
        let minute = (secs / 60) as i32;
        let tm = Tm {
            minute: minute % 60,
            hour: 15 + minute / 60,
            day: 2,
            month: 12,
            weekday: 3,
        };
        (1_000_000 + secs, tm)
    }

    fn runs(c: &mut Crons, secs: i64) -> Vec<usize> {
        let (epoch, tm) = at(secs);
        c.tick(epoch, &tm)
            .into_iter()
            .filter_map(|a| match a {
                CronAction::Run(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_minute_runs_once_per_minute() {
        let mut c = crons(&["-1 -1 -1 -1 -1 tick"]);
        assert_eq!(runs(&mut c, 0), [0]);
        assert_eq!(runs(&mut c, 1), Vec::<usize>::new());
        assert_eq!(runs(&mut c, 59), Vec::<usize>::new());
        assert_eq!(runs(&mut c, 60), [0]);
        assert_eq!(runs(&mut c, 61), Vec::<usize>::new());
        assert_eq!(runs(&mut c, 125), [0]);
    }

    #[test]
    fn every_five_minutes_and_a_set_time() {
        let mut c = crons(&["-5 -1 -1 -1 -1 five", "7 15 -1 -1 -1 at-15:07"]);
        let mut seen = Vec::new();
        for s in (0..20 * 60).step_by(10) {
            for i in runs(&mut c, s) {
                seen.push((i, s / 60));
            }
        }
        assert_eq!(seen, [(0, 0), (0, 5), (1, 7), (0, 10), (0, 15)]);
    }

    #[test]
    fn unique_cron_waits_for_its_previous_run() {
        let mut c = crons(&["unique -1 -1 -1 -1 -1 slow", "-1 -1 -1 -1 -1 fast"]);
        assert_eq!(runs(&mut c, 0), [0, 1]);
        c.started(0, Ok(Pid::from_raw(40)), 1_000_000);
        c.started(1, Ok(Pid::from_raw(41)), 1_000_000);
        // Both still run a minute later: only the non-unique one starts again.
        assert_eq!(runs(&mut c, 60), [1]);
        assert!(c.exited(Pid::from_raw(40), "exit code 0").is_some());
        assert_eq!(runs(&mut c, 61), [0]);
        assert!(c.exited(Pid::from_raw(99), "exit code 0").is_none());
    }

    #[test]
    fn harakiri_kills_a_run_that_overstays() {
        let mut c = crons(&["cron2 harakiri=30 sleep 100"]);
        assert_eq!(runs(&mut c, 0), [0]);
        c.started(0, Ok(Pid::from_raw(40)), 1_000_000);
        let (epoch, tm) = at(29);
        assert!(c.tick(epoch, &tm).is_empty());
        let (epoch, tm) = at(30);
        let out = c.tick(epoch, &tm);
        assert!(out.contains(&CronAction::Kill(Pid::from_raw(40), Signal::SIGKILL)));
        let (epoch, tm) = at(31);
        assert!(c.tick(epoch, &tm).is_empty(), "killed once");
    }
}
