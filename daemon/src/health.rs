//! Health for probes (Kubernetes liveness/readiness, load balancers, `rsgictl health`):
//! `GET /livez`, `GET /readyz` and `GET /readyz/<vassal>` on the metrics listener and on
//! the control socket.
//!
//! - **live**: the actor answers a question within [`LIVE_WITHIN`].
//! - **ready**: every vassal that should run serves. A vassal serves when it is `ready`,
//!   or `reloading` (its old generation serves until the new one is ready); a vassal
//!   stopped by `rsgictl stop` should not run and does not count. With a `ready_vassals`
//!   setting, only the vassals named there count (one that does not exist is not ready).
//!
//! [`readiness`] is the pure rule (table tested); [`answer`] asks the actor and turns
//! the rule's result into a status and a plain-text body.

use std::time::Duration;

use rsgi_proto::control::VassalSummary;
use tokio::sync::mpsc;

use crate::msg::{Command, Msg, Reply};

/// How quickly the actor must answer for rsgid to be live.
pub const LIVE_WITHIN: Duration = Duration::from_secs(1);

/// Which health question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `/livez`.
    Live,
    /// `/readyz`: the whole, as the `ready_vassals` setting defines it.
    Ready,
    /// `/readyz/<vassal>`.
    Vassal(String),
}

impl Probe {
    /// The probe a request path asks for (`/livez`, `/readyz`, `/readyz/<vassal>`).
    pub fn of_path(path: &str) -> Option<Probe> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match path {
            "/livez" => Some(Probe::Live),
            "/readyz" => Some(Probe::Ready),
            _ => {
                let name = path.strip_prefix("/readyz/")?;
                let name = percent_encoding::percent_decode_str(name)
                    .decode_utf8()
                    .ok()?;
                (!name.is_empty() && !name.contains('/')).then(|| Probe::Vassal(name.into_owned()))
            }
        }
    }
}

/// Whether a vassal in this state serves. A `sleeping` (on-demand) vassal does: rsgid
/// holds its sockets and the next connection starts it, waiting in the backlog.
pub fn serves(state: &str) -> bool {
    matches!(state, "ready" | "reloading" | "sleeping")
}

/// Whether a vassal in this state keeps rsgid ready when every vassal counts: it
/// serves, or it was stopped on request (it should not run).
pub fn counts_as_ready(state: &str) -> bool {
    serves(state) || state == "stopped"
}

/// The outcome of a readiness rule: ready, or the lines saying what is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every vassal that counts serves.
    pub ready: bool,
    /// `name: state (reason)` for each that does not.
    pub not_ready: Vec<String>,
}

/// The readiness rule over every vassal's summary. `required`: the vassals that count
/// (`None`: every one that should run, i.e. is not stopped on request).
pub fn readiness(vassals: &[VassalSummary], required: Option<&[String]>) -> Readiness {
    let line = |v: &VassalSummary| {
        if v.reason.is_empty() {
            format!("{}: {}", v.name, v.state)
        } else {
            format!("{}: {} ({})", v.name, v.state, v.reason)
        }
    };
    let mut not_ready = Vec::new();
    match required {
        None => {
            for v in vassals {
                if !counts_as_ready(&v.state) {
                    not_ready.push(line(v));
                }
            }
        }
        Some(names) => {
            for name in names {
                match vassals.iter().find(|v| &v.name == name) {
                    Some(v) if serves(&v.state) => {}
                    Some(v) => not_ready.push(line(v)),
                    None => not_ready.push(format!("{name}: no such vassal")),
                }
            }
        }
    }
    Readiness {
        ready: not_ready.is_empty(),
        not_ready,
    }
}

/// Answer a probe: an HTTP status code and a plain-text body.
pub async fn answer(
    tx: &mpsc::UnboundedSender<Msg>,
    probe: &Probe,
    required: Option<&[String]>,
) -> (u16, String) {
    let list = match tokio::time::timeout(LIVE_WITHIN, crate::msg::ask(tx, Command::List)).await {
        Ok(Ok(Reply::List(list))) => list.vassals,
        Ok(Ok(_)) => return (503, "unexpected answer from the actor\n".into()),
        Ok(Err(e)) => return (503, format!("{e}\n")),
        Err(_) => {
            return (
                503,
                format!(
                    "rsgid's actor did not answer within {} s\n",
                    LIVE_WITHIN.as_secs()
                ),
            )
        }
    };
    let r = match probe {
        Probe::Live => return (200, "ok\n".into()),
        Probe::Ready => readiness(&list, required),
        Probe::Vassal(name) => {
            if !list.iter().any(|v| &v.name == name) {
                return (404, format!("{name}: no such vassal\n"));
            }
            readiness(&list, Some(std::slice::from_ref(name)))
        }
    };
    if r.ready {
        (200, "ready\n".into())
    } else {
        (503, format!("not ready:\n{}\n", r.not_ready.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, state: &str, reason: &str) -> VassalSummary {
        VassalSummary {
            name: name.into(),
            state: state.into(),
            pid: None,
            generation: 0,
            uptime_secs: None,
            restarts: 0,
            sockets: Vec::new(),
            reason: reason.into(),
            origin: None,
        }
    }

    #[test]
    fn readiness_table() {
        let all = [
            v("a", "ready", ""),
            v("b", "reloading", ""),
            v("c", "stopped", "stopped by rsgictl"),
        ];
        let named = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let rows: Vec<(Vec<VassalSummary>, Option<Vec<String>>, Readiness)> = vec![
            // Serving and reloading count as serving; stopped on request does not count.
            (
                all.to_vec(),
                None,
                Readiness {
                    ready: true,
                    not_ready: vec![],
                },
            ),
            (
                vec![],
                None,
                Readiness {
                    ready: true,
                    not_ready: vec![],
                },
            ),
            (
                vec![
                    v("a", "ready", ""),
                    v("d", "starting", ""),
                    v("e", "failed", "exit 1"),
                ],
                None,
                Readiness {
                    ready: false,
                    not_ready: vec!["d: starting".into(), "e: failed (exit 1)".into()],
                },
            ),
            (
                vec![v("f", "backoff", "attempt 1 failed")],
                None,
                Readiness {
                    ready: false,
                    not_ready: vec!["f: backoff (attempt 1 failed)".into()],
                },
            ),
            // A named set: only those count; a stopped one named there is not ready.
            (
                vec![v("a", "ready", ""), v("e", "failed", "x")],
                Some(named(&["a"])),
                Readiness {
                    ready: true,
                    not_ready: vec![],
                },
            ),
            (
                all.to_vec(),
                Some(named(&["a", "c", "zz"])),
                Readiness {
                    ready: false,
                    not_ready: vec![
                        "c: stopped (stopped by rsgictl)".into(),
                        "zz: no such vassal".into(),
                    ],
                },
            ),
        ];
        for (i, (list, required, want)) in rows.into_iter().enumerate() {
            assert_eq!(readiness(&list, required.as_deref()), want, "row {i}");
        }
    }

    #[test]
    fn probe_paths() {
        assert_eq!(Probe::of_path("/livez"), Some(Probe::Live));
        assert_eq!(Probe::of_path("/readyz/"), Some(Probe::Ready));
        assert_eq!(
            Probe::of_path("/readyz/my%20app"),
            Some(Probe::Vassal("my app".into()))
        );
        assert_eq!(Probe::of_path("/readyz/a/b"), None);
        assert_eq!(Probe::of_path("/readyz/"), Some(Probe::Ready));
        assert_eq!(Probe::of_path("/healthz"), None);
    }
}
