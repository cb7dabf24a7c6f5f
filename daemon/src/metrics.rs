//! Observability: Prometheus metrics for every vassal, the `GET /top` totals for
//! `rsgictl top`, and uWSGI's emperor stats JSON (uwsgitop's vassal view).
//!
//! # Layout
//!
//! - [`Ledger`]: what the actor keeps per vassal so that counters never go backwards
//!   (the totals of counter regions that are gone, rsgid's own reload outcomes).
//! - [`Snapshot`]: a plain copy of every vassal's numbers, taken **inside** the actor
//!   ([`Snapshot::take`], answering [`Command::Metrics`]) and sent out; the readers of
//!   `/proc` (memory, process start) run afterwards, outside it
//!   ([`Snapshot::fill_proc`]).
//! - [`encode`]: the Prometheus text for a snapshot: a custom [`Collector`] over the
//!   snapshot plus the `prometheus` crate's process collector, in a registry built per
//!   scrape. [`top`] and [`emperor_stats`] are the two other views of a snapshot.
//! - [`spawn`]: the HTTP server on `metrics_listen` (`GET /metrics`) and the emperor
//!   stats server on `stats`. The control socket serves `GET /metrics` and `GET /top`
//!   too ([`crate::control`]), through [`scrape`].
//!
//! # Theory of operation
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
//!
//! No state is shared with the actor: each scrape asks it for a [`Snapshot`] through its
//! mailbox, like every control request.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use rsgi_os::shm::{RespawnCause, DURATION_BUCKETS_US, STATUS_CLASSES};
use rsgi_proto::control::{TopList, TopVassal};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::admission::{Class, Gate, Limits, Refusals};
use crate::lifecycle::STATE_NAMES;
use crate::msg::{Command, Msg, Reply};
use crate::settings::{Settings, StatsAddr};
use crate::snapshot::Snapshot;

/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4 (the crate's
/// `TEXT_FORMAT` plus the charset, as Prometheus' own clients send it).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a client of the metrics port may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing the emperor stats to one client may take.
const STATS_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once on the metrics port and on the emperor stats
/// listener, each (a scraper needs one or two); more are closed right after `accept`,
/// so that holding connections open cannot fill rsgid's fd table. TCP tells no user,
/// so there is no reserve here: the control socket (which has one) serves
/// `/metrics` too.
pub const MAX_CONNECTIONS: usize = 64;

fn gate() -> Gate {
    Gate::new(Limits {
        shared: MAX_CONNECTIONS,
        per_user: MAX_CONNECTIONS,
        reserved: 0,
    })
}

// ---------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------

/// One metric family being built.
struct Family {
    mf: MetricFamily,
    labels: &'static [&'static str],
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType, labels: &'static [&'static str]) -> Family {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_owned());
        mf.set_help(help.to_owned());
        mf.set_field_type(kind);
        Family { mf, labels }
    }

    fn metric(&self, values: &[&str]) -> proto::Metric {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.mf.name());
        let pairs = self
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        let mut m = proto::Metric::default();
        m.set_label(pairs);
        m
    }

    fn gauge(&mut self, values: &[&str], v: f64) {
        let mut m = self.metric(values);
        let mut g = proto::Gauge::default();
        g.set_value(v);
        m.set_gauge(g);
        self.mf.mut_metric().push(m);
    }

    fn counter(&mut self, values: &[&str], v: u64) {
        let mut m = self.metric(values);
        let mut c = proto::Counter::default();
        c.set_value(v as f64);
        m.set_counter(c);
        self.mf.mut_metric().push(m);
    }

    /// A histogram from per-bucket (not cumulative) counts, `counts.len() ==
    /// bounds.len() + 1` (the last is `+Inf`).
    fn histogram(&mut self, values: &[&str], bounds: &[f64], counts: &[u64], sum: f64) {
        let mut m = self.metric(values);
        let mut h = proto::Histogram::default();
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(bounds.len());
        for (bound, n) in bounds.iter().zip(counts) {
            cumulative = cumulative.saturating_add(*n);
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        // The +Inf bucket is the count; the encoder writes it.
        let count = counts.iter().fold(0u64, |a, n| a.saturating_add(*n));
        h.set_bucket(buckets);
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        m.set_histogram(h);
        self.mf.mut_metric().push(m);
    }
}

/// The per-vassal families of a snapshot, as a [`Collector`].
struct SnapshotCollector {
    descs: Vec<Desc>,
    families: Vec<MetricFamily>,
}

impl SnapshotCollector {
    fn new(snapshot: &Snapshot) -> prometheus::Result<SnapshotCollector> {
        let families = families(snapshot);
        let descs = families
            .iter()
            .map(|f| {
                Desc::new(
                    f.mf.name().to_owned(),
                    f.mf.help().to_owned(),
                    f.labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<Vec<Desc>>>()?;
        Ok(SnapshotCollector {
            descs,
            families: families.into_iter().map(|f| f.mf).collect(),
        })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families.clone()
    }
}

const V: &[&str] = &["vassal"];

/// Every rsgi family of a snapshot. Series exist for every known vassal and every
/// label value known in advance (0 until something happens), as Prometheus'
/// "avoid missing metrics" asks.
fn families(s: &Snapshot) -> Vec<Family> {
    use MetricType::{COUNTER, GAUGE, HISTOGRAM};
    let mut build = Family::new(
        "rsgi_build_info",
        "rsgid's version; always 1.",
        GAUGE,
        &["version"],
    );
    build.gauge(&[env!("CARGO_PKG_VERSION")], 1.0);
    let mut scans = Family::new(
        "rsgi_emperor_scans_total",
        "Scans of the vassal directory: one every rescan_interval, one after each change.",
        COUNTER,
        &[],
    );
    scans.counter(&[], s.scans);
    let mut ready = Family::new(
        "rsgi_vassal_ready",
        "1 if the vassal counts as ready for /readyz (it serves, or it is stopped on request).",
        GAUGE,
        V,
    );
    let mut up = Family::new(
        "rsgi_vassal_up",
        "1 if the vassal serves (ready, or reloading while the old generation serves).",
        GAUGE,
        V,
    );
    let mut state = Family::new(
        "rsgi_vassal_state",
        "The vassal's lifecycle state: 1 for the current state, 0 for the others.",
        GAUGE,
        &["vassal", "state"],
    );
    let mut generation = Family::new(
        "rsgi_vassal_generation",
        "The vassal's current generation number (0 when none runs).",
        GAUGE,
        V,
    );
    let mut gen_start = Family::new(
        "rsgi_vassal_generation_start_timestamp_seconds",
        "When the vassal's current generation started (Unix time; 0 when none runs).",
        GAUGE,
        V,
    );
    let mut workers = Family::new(
        "rsgi_vassal_workers",
        "The vassal's running worker processes: busy (a request in flight) or idle.",
        GAUGE,
        &["vassal", "status"],
    );
    let mut requests = Family::new(
        "rsgi_requests_total",
        "Requests the vassal finished, by HTTP status class.",
        COUNTER,
        &["vassal", "class"],
    );
    let mut duration = Family::new(
        "rsgi_request_duration_seconds",
        "Time from the request's arrival at the app to its last byte sent.",
        HISTOGRAM,
        V,
    );
    let mut in_flight = Family::new(
        "rsgi_requests_in_flight",
        "Requests the vassal is serving now.",
        GAUGE,
        V,
    );
    let mut exceptions = Family::new(
        "rsgi_request_exceptions_total",
        "Requests whose app call raised a Python exception.",
        COUNTER,
        V,
    );
    let mut sent = Family::new(
        "rsgi_sent_bytes_total",
        "Bytes the vassal sent to clients (response heads and bodies).",
        COUNTER,
        V,
    );
    let mut respawns = Family::new(
        "rsgi_vassal_worker_respawns_total",
        "Workers the vassal's master replaced, by cause.",
        COUNTER,
        &["vassal", "cause"],
    );
    let mut restarts = Family::new(
        "rsgi_vassal_restarts_total",
        "Times rsgid started the vassal again after it failed.",
        COUNTER,
        V,
    );
    let mut dropped = Family::new(
        "rsgi_vassal_output_dropped_lines_total",
        "Output lines the vassal dropped because rsgid was not reading (never waited for).",
        COUNTER,
        V,
    );
    let mut reloads = Family::new(
        "rsgi_vassal_reloads_total",
        "Graceful reloads of the vassal (by rsgid or its own master), by result.",
        COUNTER,
        &["vassal", "result"],
    );
    let mut harakiri = Family::new(
        "rsgi_vassal_harakiri_kills_total",
        "Workers killed because a request ran longer than harakiri.",
        COUNTER,
        V,
    );
    let mut memory = Family::new(
        "rsgi_vassal_resident_memory_bytes",
        "Resident memory of all the vassal's processes (master and workers).",
        GAUGE,
        V,
    );
    let mut queue = Family::new(
        "rsgi_vassal_listen_queue",
        "Connections waiting in the vassal's accept queue.",
        GAUGE,
        V,
    );
    let bounds: Vec<f64> = DURATION_BUCKETS_US
        .iter()
        .map(|us| *us as f64 / 1e6)
        .collect();
    for v in &s.vassals {
        let n = v.name.as_str();
        let t = &v.totals;
        up.gauge(&[n], f64::from(u8::from(v.up)));
        let counts = crate::health::counts_as_ready(v.state);
        ready.gauge(&[n], f64::from(u8::from(counts)));
        for name in STATE_NAMES {
            state.gauge(&[n, name], f64::from(u8::from(v.state == name)));
        }
        generation.gauge(&[n], v.generation as f64);
        gen_start.gauge(&[n], v.generation_start.unwrap_or(0) as f64);
        workers.gauge(&[n, "busy"], f64::from(v.busy));
        workers.gauge(&[n, "idle"], f64::from(v.idle));
        for (class, count) in STATUS_CLASSES.iter().zip(t.status_classes) {
            requests.counter(&[n, class], count);
        }
        duration.histogram(&[n], &bounds, &t.histogram, t.duration_us as f64 / 1e6);
        in_flight.gauge(&[n], v.in_flight as f64);
        exceptions.counter(&[n], t.exceptions);
        sent.counter(&[n], t.tx);
        for cause in RespawnCause::ALL {
            respawns.counter(&[n, cause.as_str()], t.respawns[cause as usize]);
        }
        restarts.counter(&[n], v.restarts);
        dropped.counter(&[n], v.output_dropped);
        reloads.counter(&[n, "ok"], v.reloads_ok);
        reloads.counter(&[n, "failed"], v.reloads_failed);
        harakiri.counter(&[n], t.harakiri);
        memory.gauge(&[n], v.rss as f64);
        queue.gauge(&[n], v.listen_queue as f64);
    }
    let mut families = vec![
        build, scans, ready, up, state, generation, gen_start, workers, requests, duration,
        in_flight, exceptions, sent, respawns, restarts, dropped, reloads, harakiri, memory, queue,
    ];
    families.extend(source_families(s));
    families
}

/// `rsgi_source_*`: one series per vassal source (a directory or an etcd prefix).
fn source_families(s: &Snapshot) -> Vec<Family> {
    use MetricType::{COUNTER, GAUGE};
    const S: &[&str] = &["source"];
    let mut up = Family::new(
        "rsgi_source_up",
        "1 if the vassal source is in step (a directory read, an etcd watch running); 0 while its vassals run from the last known set.",
        GAUGE,
        S,
    );
    let mut errors = Family::new(
        "rsgi_source_errors_total",
        "Errors reading the vassal source (failed scans, failed etcd requests, broken watches).",
        COUNTER,
        S,
    );
    let mut revision = Family::new(
        "rsgi_source_revision",
        "The etcd revision the source's vassals reflect (the last applied).",
        GAUGE,
        S,
    );
    for src in &s.sources {
        let l = [src.source.as_str()];
        let is_up = matches!(src.state.as_str(), "up" | "ok");
        up.gauge(&l, if is_up { 1.0 } else { 0.0 });
        errors.counter(&l, src.errors);
        if let Some(r) = src.revision {
            revision.gauge(&l, r as f64);
        }
    }
    vec![up, errors, revision]
}

/// The Prometheus text for `snapshot` (after [`Snapshot::fill_proc`]): the rsgi
/// families plus rsgid's own `process_*` metrics.
pub fn encode(snapshot: &Snapshot) -> prometheus::Result<String> {
    let registry = prometheus::Registry::new();
    registry.register(Box::new(SnapshotCollector::new(snapshot)?))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let mut out = String::new();
    prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out)?;
    Ok(out)
}

/// The `GET /top` answer for `snapshot` (after [`Snapshot::fill_proc`]).
pub fn top(snapshot: &Snapshot) -> TopList {
    TopList {
        time_ms: u64::try_from(snapshot.since_epoch().as_millis()).unwrap_or(u64::MAX),
        vassals: snapshot
            .vassals
            .iter()
            .map(|v| TopVassal {
                name: v.name.clone(),
                state: v.state.to_owned(),
                pid: v.pid,
                generation: v.generation,
                requests: v.totals.requests,
                request_time_us: v.totals.duration_us,
                exceptions: v.totals.exceptions,
                status_classes: v.totals.status_classes,
                tx_bytes: v.totals.tx,
                in_flight: v.in_flight,
                busy: v.busy,
                idle: v.idle,
                rss_bytes: v.rss,
                restarts: v.restarts,
                respawns: v.totals.respawns.iter().sum(),
            })
            .collect(),
    }
}

/// Ask the actor for a snapshot and read `/proc` for it. `Err` when rsgid is shutting
/// down.
pub async fn scrape(tx: &mpsc::UnboundedSender<Msg>) -> Result<Snapshot, &'static str> {
    match crate::msg::ask(tx, Command::Metrics).await {
        Ok(Reply::Metrics(snapshot)) => {
            let mut snapshot = *snapshot;
            snapshot.fill_proc();
            Ok(snapshot)
        }
        Ok(_) => Err("unexpected answer from the actor"),
        Err(_) => Err("rsgid is shutting down"),
    }
}

// ---------------------------------------------------------------------------------------
// uWSGI's emperor stats
// ---------------------------------------------------------------------------------------

/// uWSGI's emperor stats document (`core/emperor.c`), for uwsgitop's vassal view:
/// the same keys, integers except where uWSGI writes strings.
#[derive(Debug, Serialize)]
struct EmperorStats {
    version: String,
    pid: u32,
    uid: u32,
    gid: u32,
    cwd: String,
    emperor: Vec<String>,
    emperor_tyrant: u64,
    throttle_level: u64,
    vassals: Vec<EmperorVassal>,
    blacklist: Vec<serde_json::Value>,
}

/// One vassal of [`EmperorStats`].
#[derive(Debug, Serialize)]
struct EmperorVassal {
    id: String,
    pid: u64,
    born: u64,
    last_mod: u64,
    last_heartbeat: u64,
    loyal: u64,
    ready: u64,
    accepting: u64,
    last_loyal: u64,
    last_ready: u64,
    last_accepting: u64,
    first_run: u64,
    last_run: u64,
    cursed: u64,
    zerg: u64,
    on_demand: String,
    uid: u64,
    gid: u64,
    monitor: String,
    attrs: serde_json::Map<String, serde_json::Value>,
    respawns: u64,
}

/// The emperor stats JSON for `snapshot` (after [`Snapshot::fill_proc`]).
pub fn emperor_stats(snapshot: &Snapshot) -> String {
    let now = snapshot.since_epoch().as_secs();
    let doc = EmperorStats {
        version: rsgi_os::stats::VERSION.to_owned(),
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        emperor: vec![snapshot.dir.clone()],
        emperor_tyrant: u64::from(snapshot.tyrant),
        throttle_level: 0,
        vassals: snapshot
            .vassals
            .iter()
            .map(|v| {
                let ready = u64::from(v.up);
                EmperorVassal {
                    id: v.file_name.clone(),
                    pid: v.pid.and_then(|p| u64::try_from(p).ok()).unwrap_or(0),
                    born: v.added,
                    last_mod: v.last_mod,
                    last_heartbeat: if v.up { now } else { 0 },
                    loyal: u64::from(v.loyal_since.is_some()),
                    ready,
                    accepting: ready,
                    last_loyal: v.loyal_since.unwrap_or(0),
                    last_ready: v.ready_since.unwrap_or(0),
                    last_accepting: v.ready_since.unwrap_or(0),
                    first_run: v.added,
                    last_run: v.generation_start.unwrap_or(0),
                    cursed: u64::from(v.state == "stopping"),
                    zerg: 0,
                    on_demand: String::new(),
                    uid: v.owner.map_or(0, |o| u64::from(o.0)),
                    gid: v.owner.map_or(0, |o| u64::from(o.1)),
                    monitor: snapshot.dir.clone(),
                    attrs: serde_json::Map::new(),
                    respawns: v.restarts,
                }
            })
            .collect(),
        blacklist: Vec::new(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// Start the metrics server on `settings.metrics_listen` and the emperor stats server
/// on `settings.stats`, each on a background task. A server that cannot bind is
/// logged and left out: rsgid goes on supervising its vassals.
pub fn spawn(settings: &Settings, tx: &mpsc::UnboundedSender<Msg>) {
    if let Some(addr) = settings.metrics_listen {
        match bind_tcp(addr) {
            Ok(listener) => {
                tracing::info!(%addr, "metrics on http://{addr}/metrics");
                tokio::spawn(serve_metrics(
                    listener,
                    tx.clone(),
                    settings.ready_vassals.clone(),
                ));
            }
            Err(e) => tracing::error!(%addr, "cannot serve metrics: {e}"),
        }
    }
    if let Some(addr) = &settings.stats {
        match StatsListener::bind(addr) {
            Ok(listener) => {
                tracing::info!(%addr, "emperor stats (uWSGI JSON) on {addr}");
                tokio::spawn(serve_stats(listener, tx.clone()));
            }
            Err(e) => tracing::error!(%addr, "cannot serve the emperor stats: {e}"),
        }
    }
}

fn bind_tcp(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let key = format!("tcp:{addr}");
    let listener = match crate::upgrade::take_inherited(&key) {
        // Handed over by the previous image (an upgrade in place).
        Some(fd) => std::net::TcpListener::from(fd),
        None => std::net::TcpListener::bind(addr)?,
    };
    crate::upgrade::register_listener(key, std::os::fd::AsRawFd::as_raw_fd(&listener));
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Serve `GET /metrics` over HTTP/1.1.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    tx: mpsc::UnboundedSender<Msg>,
    ready_vassals: Option<Vec<String>>,
) {
    let ready_vassals = std::sync::Arc::new(ready_vassals);
    let gate = gate();
    let mut refused = Refusals::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(ticket) = gate.admit(Class::Anonymous) else {
            refused.note("metrics", None);
            continue;
        };
        let tx = tx.clone();
        let ready_vassals = std::sync::Arc::clone(&ready_vassals);
        tokio::spawn(async move {
            let _ticket = ticket;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                let ready_vassals = std::sync::Arc::clone(&ready_vassals);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        metrics_response(&req, &tx, ready_vassals.as_deref()).await,
                    )
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

async fn metrics_response<B>(
    req: &Request<B>,
    tx: &mpsc::UnboundedSender<Msg>,
    ready_vassals: Option<&[String]>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    };
    let plain = |status, text| reply(status, "text/plain; charset=utf-8", text);
    if matches!(req.method(), &Method::GET | &Method::HEAD) {
        if let Some(probe) = crate::health::Probe::of_path(req.uri().path()) {
            let (code, text) = crate::health::answer(tx, &probe, ready_vassals).await;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return plain(status, text);
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => match text(tx).await {
            Ok(body) => reply(StatusCode::OK, TEXT_CONTENT_TYPE, body),
            Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
        (&Method::GET | &Method::HEAD, "/") => plain(
            StatusCode::OK,
            "rsgid: Prometheus metrics are at /metrics\n".to_owned(),
        ),
        (_, "/metrics" | "/") => {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
            resp.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            resp
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics\n".to_owned(),
        ),
    }
}

/// A scrape, as Prometheus text.
pub async fn text(tx: &mpsc::UnboundedSender<Msg>) -> Result<String, String> {
    let snapshot = scrape(tx).await?;
    encode(&snapshot).map_err(|e| format!("cannot encode the metrics: {e}"))
}

/// Where the emperor stats are served.
enum StatsListener {
    Tcp(tokio::net::TcpListener),
    Unix {
        listener: tokio::net::UnixListener,
        /// Held for its `Drop`.
        _path: crate::sockfile::SocketFile,
    },
}

impl StatsListener {
    fn bind(addr: &StatsAddr) -> std::io::Result<StatsListener> {
        match addr {
            StatsAddr::Tcp(a) => Ok(StatsListener::Tcp(bind_tcp(*a)?)),
            StatsAddr::Unix(path) => {
                // A stale socket (left by a killed rsgid) is replaced; a live one (another
                // rsgid's) and anything that is no socket are not touched.
                let key = format!("stats:{}", path.display());
                let listener = match crate::upgrade::take_inherited(&key) {
                    // Handed over by the previous image (an upgrade in place).
                    Some(fd) => {
                        let l = std::os::unix::net::UnixListener::from(fd);
                        l.set_nonblocking(true)?;
                        tokio::net::UnixListener::from_std(l)?
                    }
                    None => {
                        crate::sockfile::clear_stale(path, "--stats")?;
                        tokio::net::UnixListener::bind(path)?
                    }
                };
                crate::upgrade::register_listener(key, std::os::fd::AsRawFd::as_raw_fd(&listener));
                Ok(StatsListener::Unix {
                    listener,
                    // Removed with the runtime, unless something else replaced it.
                    _path: crate::sockfile::SocketFile::of(path.clone())?,
                })
            }
        }
    }
}

/// Accept, write the document, close (as uWSGI does: nothing is read from the client;
/// uwsgitop reads until EOF).
async fn serve_stats(listener: StatsListener, tx: mpsc::UnboundedSender<Msg>) {
    let gate = gate();
    let mut refused = Refusals::default();
    loop {
        let accepted: std::io::Result<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> =
            match &listener {
                StatsListener::Tcp(l) => l.accept().await.map(|(s, _)| Box::new(s) as _),
                StatsListener::Unix { listener: l, .. } => {
                    l.accept().await.map(|(s, _)| Box::new(s) as _)
                }
            };
        let mut stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("emperor stats: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(ticket) = gate.admit(Class::Anonymous) else {
            refused.note("emperor stats", None);
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ticket = ticket;
            let Ok(snapshot) = scrape(&tx).await else {
                return;
            };
            let json = emperor_stats(&snapshot);
            let write = async {
                stream.write_all(json.as_bytes()).await?;
                stream.shutdown().await
            };
            let _ = tokio::time::timeout(STATS_WRITE_TIMEOUT, write).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::snapshot::{Totals, VassalSample};
    use rsgi_os::shm::HISTOGRAM_LEN;
    use std::time::SystemTime;

    fn sample(name: &str) -> VassalSample {
        let mut totals = Totals {
            requests: 10,
            status_classes: [0, 7, 0, 3, 0],
            ..Totals::default()
        };
        totals.histogram[0] = 6;
        totals.histogram[4] = 3;
        totals.histogram[HISTOGRAM_LEN - 1] = 1;
        totals.duration_us = 61_500_000;
        totals.respawns[RespawnCause::Crash as usize] = 2;
        VassalSample {
            name: name.into(),
            file_name: format!("{name}.ini"),
            state: "ready",
            up: true,
            pid: Some(42),
            generation: 3,
            pids: vec![42, 43],
            totals,
            busy: 1,
            idle: 1,
            reloads_failed: 1,
            output_dropped: 9,
            ..VassalSample::default()
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            time: Some(SystemTime::now()),
            dir: "/etc/rsgi/vassals".into(),
            tyrant: false,
            scans: 41,
            vassals: vec![sample("app"), sample("we\"ird\\name")],
            sources: vec![],
        }
    }

    #[test]
    fn encode_has_every_family_with_every_series() {
        let text = encode(&snapshot()).unwrap();
        for line in [
            "# TYPE rsgi_requests_total counter",
            "rsgi_requests_total{vassal=\"app\",class=\"2xx\"} 7",
            "rsgi_requests_total{vassal=\"app\",class=\"4xx\"} 3",
            "rsgi_requests_total{vassal=\"app\",class=\"5xx\"} 0",
            "# TYPE rsgi_request_duration_seconds histogram",
            "rsgi_request_duration_seconds_bucket{vassal=\"app\",le=\"0.005\"} 6",
            "rsgi_request_duration_seconds_bucket{vassal=\"app\",le=\"0.1\"} 9",
            "rsgi_request_duration_seconds_bucket{vassal=\"app\",le=\"60\"} 9",
            "rsgi_request_duration_seconds_bucket{vassal=\"app\",le=\"+Inf\"} 10",
            "rsgi_request_duration_seconds_sum{vassal=\"app\"} 61.5",
            "rsgi_request_duration_seconds_count{vassal=\"app\"} 10",
            "rsgi_vassal_state{vassal=\"app\",state=\"ready\"} 1",
            "rsgi_vassal_state{vassal=\"app\",state=\"failed\"} 0",
            "rsgi_vassal_up{vassal=\"app\"} 1",
            "rsgi_vassal_ready{vassal=\"app\"} 1",
            "rsgi_vassal_workers{vassal=\"app\",status=\"busy\"} 1",
            "rsgi_vassal_worker_respawns_total{vassal=\"app\",cause=\"crash\"} 2",
            "rsgi_vassal_worker_respawns_total{vassal=\"app\",cause=\"max_requests\"} 0",
            "rsgi_vassal_reloads_total{vassal=\"app\",result=\"failed\"} 1",
            "rsgi_vassal_reloads_total{vassal=\"app\",result=\"ok\"} 0",
            "rsgi_vassal_restarts_total{vassal=\"app\"} 0",
            "rsgi_vassal_output_dropped_lines_total{vassal=\"app\"} 9",
            "rsgi_vassal_generation{vassal=\"app\"} 3",
            "rsgi_build_info{version=\"",
            "# TYPE rsgi_emperor_scans_total counter",
            "rsgi_emperor_scans_total 41",
            "rsgi_vassal_up{vassal=\"we\\\"ird\\\\name\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "no {line:?} in:\n{text}"
            );
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        // Every bucket bound once per vassal, plus +Inf.
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("rsgi_request_duration_seconds_bucket{vassal=\"app\""))
            .count();
        assert_eq!(buckets, DURATION_BUCKETS_US.len() + 1);
    }

    #[test]
    fn encode_without_vassals_still_has_build_info() {
        let text = encode(&Snapshot::default()).unwrap();
        assert!(text.contains("rsgi_build_info{version="), "{text}");
        assert!(!text.contains("rsgi_vassal_up"), "{text}");
    }

    #[test]
    fn top_and_emperor_stats_views() {
        let s = snapshot();
        let t = top(&s);
        assert_eq!(t.vassals.len(), 2);
        assert_eq!(t.vassals[0].requests, 10);
        assert_eq!(t.vassals[0].request_time_us, 61_500_000);
        assert_eq!(t.vassals[0].respawns, 2);
        assert!(t.time_ms > 0);
        let doc: serde_json::Value = serde_json::from_str(&emperor_stats(&s)).unwrap();
        assert_eq!(doc["emperor"][0], "/etc/rsgi/vassals");
        assert_eq!(doc["emperor_tyrant"], 0);
        assert_eq!(doc["vassals"][0]["id"], "app.ini");
        assert_eq!(doc["vassals"][0]["pid"], 42);
        assert_eq!(doc["vassals"][0]["ready"], 1);
        assert_eq!(doc["blacklist"], serde_json::json!([]));
        for key in [
            "version",
            "pid",
            "uid",
            "gid",
            "cwd",
            "emperor",
            "emperor_tyrant",
            "throttle_level",
            "vassals",
            "blacklist",
        ] {
            assert!(doc.get(key).is_some(), "{key}");
        }
        for (k, v) in doc["vassals"][0].as_object().unwrap() {
            let string = ["id", "on_demand", "monitor"].contains(&k.as_str());
            assert!(
                if string {
                    v.is_string()
                } else {
                    v.is_u64() || k == "attrs"
                },
                "{k} = {v}"
            );
        }
    }
}
