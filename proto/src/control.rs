//! The control API between `rsgid` and `rsgictl`: HTTP/1.1 + JSON on a unix socket
//! (`<run dir>/control.sock`), so `curl --unix-socket` works too.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /vassals` | – | [`VassalList`] |
//! | `GET /vassals/{name}` | – | [`VassalStatus`] |
//! | `GET /vassals/{name}/logs?n=N` | – | [`LogLines`] |
//! | `GET /vassals/{name}/logs?follow=1` | – | newline-delimited lines until the client closes |
//! | `POST /vassals/{name}/reload?wait=1` | – | [`ActionResult`] |
//! | `POST /vassals/{name}/stop`, `/start`, `/restart` | – | [`ActionResult`] |
//! | `POST /reload?wait=1` | – | [`ActionResult`] (every vassal) |
//! | `POST /check` | [`CheckRequest`] | [`CheckResult`] |
//! | `GET /metrics` | – | Prometheus text (`text/plain; version=0.0.4`) |
//! | `GET /top` | – | [`TopList`] (what `rsgictl top` draws) |
//! | `GET /ping` | – | `{"ok":true}` |
//!
//! Errors are [`ErrorBody`] with a 4xx/5xx status: 400 malformed, 404 no such vassal,
//! 405 wrong method. Field names follow the uWSGI stats JSON where they overlap
//! (`pid`, `requests`, `status`).

use serde::{Deserialize, Serialize};

/// One row of `rsgictl list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VassalSummary {
    /// The vassal's name (its file stem).
    pub name: String,
    /// `starting`, `ready`, `reloading`, `backoff`, `failed`, `stopping`, `stopped`, `idle`.
    pub state: String,
    /// The current generation's pid.
    pub pid: Option<i32>,
    /// The current generation number.
    pub generation: u64,
    /// Seconds since the current generation started.
    pub uptime_secs: Option<u64>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// The listening addresses (`unix:/run/rsgi/app.sock`, `127.0.0.1:8000`).
    pub sockets: Vec<String>,
    /// Why it is not ready (empty when ready).
    pub reason: String,
    /// Where its file comes from (absent from an older rsgid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Where a vassal's file comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The source: a directory, or `etcd://HOST:PORT/PREFIX/`.
    pub source: String,
    /// The source's state: `ok` (a directory), `up`, `stale` (serving the local copy,
    /// not yet in step with the store), `unreachable` (retrying), `unreadable`.
    pub source_state: String,
    /// The etcd key, for an etcd vassal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's mod revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<i64>,
}

/// One vassal source, in [`VassalList::sources`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// The directory or `etcd://...` URL.
    pub source: String,
    /// `dir` or `etcd`.
    pub kind: String,
    /// See [`Origin::source_state`].
    pub state: String,
    /// The store revision its vassals reflect (etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Errors so far (failed requests, broken watches, failed scans).
    pub errors: u64,
    /// The last error, while not up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The etcd endpoint (`HOST:PORT`) it is in step through, while up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Vassals it names that another source has (refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// `GET /vassals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VassalList {
    /// One entry per vassal, sorted by name.
    pub vassals: Vec<VassalSummary>,
    /// The vassal sources, in the order given (absent from an older rsgid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSummary>,
}

/// `GET /vassals/{name}`: everything `list` shows and more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VassalStatus {
    /// The summary row.
    #[serde(flatten)]
    pub summary: VassalSummary,
    /// The config file.
    pub config: String,
    /// How the last process ended (`exit code 1`, `signal 9`).
    pub last_exit: Option<String>,
    /// The last error (config rejected, reload failed, ...).
    pub last_error: Option<String>,
    /// Worker processes, when the vassal runs a master (from its stats).
    pub workers: Vec<WorkerInfo>,
    /// The last captured log lines.
    pub log: Vec<String>,
}

/// One worker of a vassal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id (1-based).
    pub id: u32,
    /// Its pid.
    pub pid: i32,
    /// `idle` or `busy`.
    pub status: String,
    /// Requests served.
    pub requests: u64,
}

/// `GET /vassals/{name}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    /// The lines, oldest first.
    pub lines: Vec<String>,
}

/// The answer to a state-changing call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Whether it did what was asked (for `?wait=1`: the new generation serves). A
    /// reload of one vassal that is not running is not ok; `POST /reload` (every
    /// vassal) is ok unless a reload it started failed.
    pub ok: bool,
    /// What happened, one line per vassal, in the order of their names.
    pub message: String,
    /// For a reload: the vassals that were not running, so not reloaded (in the order
    /// of their names). Empty for the other calls.
    #[serde(default)]
    pub not_running: Vec<String>,
    /// For a failed reload of one vassal: the generation that failed, whose output
    /// `GET /vassals/NAME/logs?gen=N` returns (the running generation's lines are not
    /// the reason). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// `POST /check`: validate an ini without applying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// Path of the file to check (read by rsgid).
    pub path: String,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// True when nothing is wrong.
    pub ok: bool,
    /// Problems, each `file:line: what` where a line is known.
    pub problems: Vec<String>,
}

/// `GET /top`: every vassal's cumulative counters, for `rsgictl top`, which computes
/// rates from the difference between two answers. The totals are the ones rsgid
/// exports as Prometheus counters: they never go down while the vassal exists, across
/// reloads and crashes alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopList {
    /// When rsgid took the sample, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// One entry per vassal, sorted by name.
    pub vassals: Vec<TopVassal>,
}

/// One vassal in [`TopList`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopVassal {
    /// The vassal's name.
    pub name: String,
    /// Its state, as in [`VassalSummary::state`].
    pub state: String,
    /// The current generation's pid.
    pub pid: Option<i32>,
    /// The current generation number.
    pub generation: u64,
    /// Requests finished (every generation so far).
    pub requests: u64,
    /// Sum of their durations, µs (divide a difference by the difference of
    /// `requests` for the mean latency over an interval).
    pub request_time_us: u64,
    /// Requests that raised a Python exception.
    pub exceptions: u64,
    /// Finished requests by status class, `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub status_classes: [u64; 5],
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Workers with a request in flight now.
    pub busy: u32,
    /// Running workers without one.
    pub idle: u32,
    /// Resident memory of all its processes (master and workers), bytes.
    pub rss_bytes: u64,
    /// Times rsgid started it again after a failure.
    pub restarts: u64,
    /// Workers its master replaced (every cause).
    pub respawns: u64,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_flattens_the_summary() {
        let status = VassalStatus {
            summary: VassalSummary {
                name: "app".into(),
                state: "ready".into(),
                pid: Some(42),
                generation: 3,
                uptime_secs: Some(10),
                restarts: 1,
                sockets: vec!["unix:/run/rsgi/app.sock".into()],
                reason: String::new(),
                origin: None,
            },
            config: "/etc/rsgi/vassals/app.ini".into(),
            last_exit: Some("exit code 1".into()),
            last_error: None,
            workers: vec![],
            log: vec!["line".into()],
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["name"], "app");
        assert_eq!(json["pid"], 42);
        let back: VassalStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn action_results_from_an_older_rsgid_have_no_not_running() {
        let r: ActionResult =
            serde_json::from_str(r#"{"ok":true,"message":"a: stopping"}"#).unwrap();
        assert!(r.ok);
        assert!(r.not_running.is_empty());
    }
}
