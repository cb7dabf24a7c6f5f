//! The control socket: HTTP/1.1 + JSON on a unix socket, the API `rsgictl` (and
//! `curl --unix-socket`) talks to. The routes and body types are in
//! [`rsgi_proto::control`], shared with `rsgictl`.
//!
//! # Layout
//!
//! - [`spawn`] binds the socket (replacing a stale one, refusing one a live rsgid
//!   answers on), and serves it on a background task: one hyper HTTP/1.1 connection task
//!   per client, at most [`MAX_CONNECTIONS`] at once.
//! - `route` turns a method, path and query into a `Route` (pure, unit-tested); the
//!   handlers turn a route into a [`Command`] for the actor, send it as
//!   [`Msg::Control`] and turn the [`Reply`] into a response.
//!
//! # Access
//!
//! The socket is created with mode **0660**: only its owner (rsgid's user) and group
//! can connect, and what they may do is everything the API offers. Give operators
//! access by group (systemd: `Group=rsgi` plus `RuntimeDirectoryMode=0750`), not by
//! loosening the mode. Every state-changing call is logged with the peer's uid and pid
//! (`SO_PEERCRED`). `POST /check` imports the app, i.e. runs its code as rsgid's user, so
//! it is only answered for root and for rsgid's own uid (403 otherwise); anyone can run
//! `rsgi --ini FILE --check-app` as themselves instead.
//!
//! # Robustness
//!
//! Nothing a client sends stops rsgid: hyper answers a malformed request with a 400
//! (431 for a head over [`MAX_HEAD`]) and closes; request bodies are capped at
//! [`MAX_BODY`]; a client that sends no complete head within [`HEAD_TIMEOUT`] is
//! dropped; accept errors (such as running out of fds) are logged and retried; and
//! `POST /check` only hands the actor regular files of at most [`MAX_CHECK_FILE`] bytes,
//! so a FIFO or a device cannot block it.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rsgi_proto::control::{ActionResult, CheckRequest, CheckResult, ErrorBody, LogLines};
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};

use crate::admission::{Class, Gate, Limits, Refusals};

use crate::msg::{Command, Msg, Pending, Reply};
use crate::settings::Settings;

/// The socket's permissions: owner and group read/write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;
/// Most connections of unprivileged peers served at once; more are closed right after
/// `accept`.
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections of one unprivileged uid (a group member holding connections open
/// cannot take the whole pool).
pub const MAX_PER_USER: usize = 16;
/// Connections only root and rsgid's own user may use: `rsgictl` as root always gets
/// in.
pub const RESERVED: usize = 16;
/// Largest request body (only `POST /check` reads one).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest request head hyper buffers; a bigger one gets a 431 and a close.
pub const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send a complete request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest file `POST /check` accepts (vassal files are a few hundred bytes).
pub const MAX_CHECK_FILE: u64 = 1024 * 1024;
/// How long `reload?wait=1` waits beyond the start timeout for an outcome.
const WAIT_SLACK: Duration = Duration::from_secs(5);
/// Lines buffered between a follower's feed and its connection.
const FOLLOW_QUEUE: usize = 256;

/// The response body: a whole JSON document or a followed log.
type ResBody = BoxBody<Bytes, Infallible>;

/// What every connection task shares.
struct Shared {
    /// The actor.
    tx: mpsc::UnboundedSender<Msg>,
    /// The `rsgi` binary, for the import part of `check`.
    rsgi: PathBuf,
    /// How long `reload?wait=1` waits for each vassal's outcome.
    wait: Duration,
    /// rsgid's effective uid (who may ask for `check`).
    euid: u32,
    /// What `/readyz` waits for.
    ready_vassals: Option<Vec<String>>,
}

/// The peer of a connection, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Peer {
    fn of(stream: &UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: Some(cred.uid()),
                pid: cred.pid(),
            },
            Err(e) => {
                tracing::warn!("control socket: no peer credentials: {e}");
                Peer::default()
            }
        }
    }
}

/// Bind the control socket at `settings.control_socket` and serve it in the background
/// (on the current tokio runtime), sending each request to the actor through `tx`.
/// `rsgi` is the app server binary, used by `check` to import apps.
///
/// A socket file nobody answers on (left by an rsgid that was killed) is replaced; one
/// that a live process answers on is an error (`AddrInUse`), and so is a path that
/// exists but is no socket. The socket file is removed again when the runtime shuts
/// down.
pub fn spawn(settings: &Settings, tx: mpsc::UnboundedSender<Msg>, rsgi: PathBuf) -> io::Result<()> {
    let path = settings.control_socket.clone();
    let listener = bind(&path)?;
    let file = crate::sockfile::SocketFile::of(path)?;
    let shared = Arc::new(Shared {
        tx,
        rsgi,
        wait: settings.policy.start_timeout + WAIT_SLACK,
        euid: nix::unistd::geteuid().as_raw(),
        ready_vassals: settings.ready_vassals.clone(),
    });
    tracing::info!(path = %file.path().display(), "control socket listening");
    tokio::spawn(serve(listener, file, shared));
    Ok(())
}

/// Create the socket with mode 0660 (no window with a wider mode: the umask is set
/// around `bind`, while rsgid has no other thread that creates files).
fn bind(path: &Path) -> io::Result<UnixListener> {
    let key = format!("control:{}", path.display());
    let listener = match crate::upgrade::take_inherited(&key) {
        // Handed over by the previous image (an upgrade in place): never closed.
        Some(fd) => std::os::unix::net::UnixListener::from(fd),
        None => bind_new(path)?,
    };
    crate::upgrade::register_listener(key, std::os::fd::AsRawFd::as_raw_fd(&listener));
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// [`bind`] when nothing was handed over.
fn bind_new(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    crate::sockfile::clear_stale(path, "--control")?;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound?;
    // Not through a symlink (the umask above already gave the mode; this only undoes a
    // umask narrower than asked).
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        nix::sys::stat::Mode::from_bits_truncate(SOCKET_MODE),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )?;
    Ok(listener)
}

/// Accept connections forever (until the runtime shuts down, which drops `file` and so
/// removes the socket).
async fn serve(listener: UnixListener, file: crate::sockfile::SocketFile, shared: Arc<Shared>) {
    let _file = file;
    let gate = Gate::new(Limits {
        shared: MAX_CONNECTIONS,
        per_user: MAX_PER_USER,
        reserved: RESERVED,
    });
    let mut refused = Refusals::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::warn!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = Peer::of(&stream);
        let Some(slot) = gate.admit(Class::of(peer.uid, shared.euid)) else {
            refused.note("control socket", peer.uid);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(req, &shared, peer).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(
                    peer_uid = peer.uid,
                    peer_pid = peer.pid,
                    "control connection: {e}"
                );
            }
        });
    }
}

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// A state-changing verb on one vassal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Stop,
    Start,
    Restart,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `GET /ping`.
    Ping,
    /// `GET /vassals`.
    List,
    /// `GET /vassals/{name}`.
    Status(String),
    /// `GET /vassals/{name}/logs?n=N`.
    Logs {
        name: String,
        lines: usize,
        gen: Option<usize>,
    },
    /// `GET /vassals/{name}/logs?follow=1[&n=N]`.
    Follow { name: String, lines: usize },
    /// `POST /vassals/{name}/{stop,start,restart}`.
    Action { name: String, verb: Verb },
    /// `POST /vassals/{name}/reload[?wait=1]` and `POST /reload[?wait=1]` (all).
    Reload { name: Option<String>, wait: bool },
    /// `POST /check`.
    Check,
    /// `GET /metrics`: Prometheus text, as on the metrics port.
    Metrics,
    /// `GET /top`: every vassal's totals, for `rsgictl top`.
    Top,
    /// `GET /livez`, `GET /readyz`, `GET /readyz/{name}`.
    Health(crate::health::Probe),
    /// `POST /upgrade`: re-execute rsgid in place.
    Upgrade,
}

impl Route {
    /// What a state-changing call does (`reload mysite`), logged with the peer's
    /// credentials; `None` for calls that only read.
    fn change(&self) -> Option<String> {
        match self {
            Route::Action { name, verb } => {
                let verb = match verb {
                    Verb::Stop => "stop",
                    Verb::Start => "start",
                    Verb::Restart => "restart",
                };
                Some(format!("{verb} {name}"))
            }
            Route::Reload { name, wait } => Some(format!(
                "reload {}{}",
                name.as_deref().unwrap_or("every vassal"),
                if *wait { " (wait)" } else { "" }
            )),
            Route::Upgrade => Some("upgrade rsgid in place".into()),
            _ => None,
        }
    }
}

/// A request that matches no route, or matches one badly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bad {
    status: StatusCode,
    message: String,
    /// For 405: the method the route takes.
    allow: Option<&'static str>,
}

impl Bad {
    fn new(status: StatusCode, message: impl Into<String>) -> Bad {
        Bad {
            status,
            message: message.into(),
            allow: None,
        }
    }
}

/// Parse a request line's method, path and query into a [`Route`].
fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Bad> {
    let mut segments: Vec<String> = Vec::new();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if !trimmed.is_empty() {
        for raw in trimmed.split('/') {
            let seg = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| Bad::new(StatusCode::BAD_REQUEST, "the path is not UTF-8"))?;
            segments.push(seg.into_owned());
        }
    }
    let query = Query::parse(query.unwrap_or(""))?;
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (want, route, allowed): (&'static str, Route, &[&str]) = match segs.as_slice() {
        ["ping"] => ("GET", Route::Ping, &[]),
        ["livez"] => ("GET", Route::Health(crate::health::Probe::Live), &[]),
        ["readyz"] => ("GET", Route::Health(crate::health::Probe::Ready), &[]),
        ["readyz", name] => (
            "GET",
            Route::Health(crate::health::Probe::Vassal((*name).to_owned())),
            &[],
        ),
        ["vassals"] => ("GET", Route::List, &[]),
        ["vassals", name] => ("GET", Route::Status((*name).to_owned()), &[]),
        ["vassals", name, "logs"] => {
            let lines = query.number("n")?.unwrap_or(usize::MAX);
            let name = (*name).to_owned();
            let route = if query.flag("follow")? {
                Route::Follow { name, lines }
            } else {
                let gen = query.number("gen")?;
                Route::Logs { name, lines, gen }
            };
            ("GET", route, &["n", "follow", "gen"])
        }
        ["vassals", name, "reload"] => (
            "POST",
            Route::Reload {
                name: Some((*name).to_owned()),
                wait: query.flag("wait")?,
            },
            &["wait"],
        ),
        ["vassals", name, verb @ ("stop" | "start" | "restart")] => {
            let verb = match *verb {
                "stop" => Verb::Stop,
                "start" => Verb::Start,
                _ => Verb::Restart,
            };
            let name = (*name).to_owned();
            ("POST", Route::Action { name, verb }, &[])
        }
        ["reload"] => (
            "POST",
            Route::Reload {
                name: None,
                wait: query.flag("wait")?,
            },
            &["wait"],
        ),
        ["check"] => ("POST", Route::Check, &[]),
        ["upgrade"] => ("POST", Route::Upgrade, &[]),
        ["metrics"] => ("GET", Route::Metrics, &[]),
        ["top"] => ("GET", Route::Top, &[]),
        _ => {
            return Err(Bad::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no such route: {path} (try GET /vassals, GET /vassals/NAME, \
                     GET /vassals/NAME/logs, POST /vassals/NAME/reload, POST /check, GET /ping, \
                     GET /metrics, GET /top)"
                ),
            ))
        }
    };
    if method.as_str() != want {
        return Err(Bad {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{path} takes {want}, not {method}"),
            allow: Some(want),
        });
    }
    if let Some(key) = query.keys().find(|k| !allowed.contains(k)) {
        return Err(Bad::new(
            StatusCode::BAD_REQUEST,
            if allowed.is_empty() {
                format!("unknown query parameter '{key}' ({path} takes none)")
            } else {
                format!(
                    "unknown query parameter '{key}' (expected {})",
                    allowed.join(", ")
                )
            },
        ));
    }
    Ok(route)
}

/// The file a `POST /check` body names: `{"path": "/abs/file.ini"}`, absolute.
fn check_path(body: &[u8]) -> Result<PathBuf, Bad> {
    let request: CheckRequest = serde_json::from_slice(body).map_err(|e| {
        Bad::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a check request ({{\"path\": \"/abs/file.ini\"}}): {e}"),
        )
    })?;
    let path = PathBuf::from(&request.path);
    if !path.is_absolute() {
        return Err(Bad::new(
            StatusCode::BAD_REQUEST,
            format!("{}: the path must be absolute", request.path),
        ));
    }
    Ok(path)
}

/// Entry point of the `control` fuzz target (`fuzz/`), and of its regression test: a
/// control request as rsgid reads it after hyper has parsed the head. The first line of
/// `data` is the request line's method and target (`POST /vassals/app/reload?wait=1`),
/// the rest is the body. The target becomes a URI as hyper makes it, then a route
/// (`route`); a `POST /check` body is read as the handler reads it; and every body type
/// of the API is parsed as `rsgictl` would ([`rsgi_proto::fuzzing::control_bodies`]).
/// Never panics on any input (that is what the fuzzer checks).
pub fn fuzz_request(data: &[u8]) {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    rsgi_proto::fuzzing::control_bodies(body);
    let mut parts = line.splitn(2, |&b| b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), hyper::Uri::try_from(target)) else {
        return;
    };
    if let Ok(Route::Check) = route(&method, uri.path(), uri.query()) {
        let _ = check_path(body);
    }
}

/// A parsed query string.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Result<Query, Bad> {
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| Bad::new(StatusCode::BAD_REQUEST, "the query is not UTF-8"))
            };
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Query(pairs))
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key`, `key=1`, `key=true`, `key=yes` are true; `key=0`, `false`, `no` and an
    /// absent key are false.
    fn flag(&self, key: &str) -> Result<bool, Bad> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(Bad::new(
                StatusCode::BAD_REQUEST,
                format!("{key}={other}: expected 1 or 0"),
            )),
        }
    }

    fn number(&self, key: &str) -> Result<Option<usize>, Bad> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Bad::new(
                    StatusCode::BAD_REQUEST,
                    format!("{key}={v}: expected a number"),
                )
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

async fn handle(req: Request<Incoming>, shared: &Shared, peer: Peer) -> Response<ResBody> {
    let route = match route(req.method(), req.uri().path(), req.uri().query()) {
        Ok(r) => r,
        Err(bad) => {
            let mut resp = error(bad.status, bad.message);
            if let Some(allow) = bad.allow {
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
            }
            return resp;
        }
    };
    if let Some(change) = route.change() {
        tracing::info!(
            peer_uid = peer.uid,
            peer_pid = peer.pid,
            "control: {change}"
        );
    }
    let command = match route {
        Route::Ping => {
            // `image`: this process image's start (an upgrade in place changes it, the
            // pid stays), for `rsgictl upgrade` to see the new image answer.
            return json(
                StatusCode::OK,
                &serde_json::json!({ "ok": true, "image": crate::upgrade::image_id() }),
            );
        }
        Route::Health(probe) => {
            let (code, text) =
                crate::health::answer(&shared.tx, &probe, shared.ready_vassals.as_deref()).await;
            let mut resp = respond(
                StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                text.into_bytes(),
            );
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return resp;
        }
        Route::Check => return check(req, shared, peer).await,
        Route::Metrics => {
            return match crate::metrics::text(&shared.tx).await {
                Ok(text) => {
                    let mut resp = respond(StatusCode::OK, text.into_bytes());
                    resp.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(crate::metrics::TEXT_CONTENT_TYPE),
                    );
                    resp
                }
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
            }
        }
        Route::Top => Command::Metrics,
        Route::List => Command::List,
        Route::Status(name) => Command::Status(name),
        Route::Logs { name, lines, gen } => Command::Logs {
            name,
            lines,
            gen: gen
                .and_then(|g| u64::try_from(g).ok())
                .map(crate::lifecycle::Gen),
        },
        Route::Follow { name, lines } => {
            return match ask(shared, Command::Follow(name)).await {
                Ok(Reply::Follow(backlog, feed)) => follow(backlog, lines, feed),
                Ok(other) => answer(other, shared).await,
                Err(resp) => resp,
            }
        }
        Route::Action { name, verb } => match verb {
            Verb::Stop => Command::Stop(name),
            Verb::Start => Command::Start(name),
            Verb::Restart => Command::Restart(name),
        },
        Route::Reload { name, wait } => Command::Reload { name, wait },
        Route::Upgrade => Command::Upgrade,
    };
    match ask(shared, command).await {
        Ok(reply) => answer(reply, shared).await,
        Err(resp) => resp,
    }
}

/// Send a command to the actor and wait for its reply.
async fn ask(shared: &Shared, command: Command) -> Result<Reply, Response<ResBody>> {
    let gone = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "rsgid is shutting down".to_owned(),
        )
    };
    crate::msg::ask(&shared.tx, command)
        .await
        .map_err(|_| gone())
}

/// Turn an actor reply into a response.
async fn answer(reply: Reply, shared: &Shared) -> Response<ResBody> {
    match reply {
        Reply::List(list) => json(StatusCode::OK, &list),
        Reply::Status(status) => json(StatusCode::OK, &status),
        Reply::Logs(lines) => json(StatusCode::OK, &lines),
        Reply::Action(result) => json(StatusCode::OK, &result),
        Reply::Check(result) => json(StatusCode::OK, &result),
        Reply::Pending(pending) => json(StatusCode::OK, &wait_all(pending, shared.wait).await),
        Reply::NotFound(name) => error(StatusCode::NOT_FOUND, format!("no such vassal: {name}")),
        Reply::Follow(backlog, _) => json(StatusCode::OK, &LogLines { lines: backlog }),
        Reply::Metrics(snapshot) => {
            let mut snapshot = *snapshot;
            snapshot.fill_proc();
            json(StatusCode::OK, &crate::metrics::top(&snapshot))
        }
    }
}

/// Wait (until one deadline, `wait` from now) for every pending reload's outcome; the
/// answer has one line per entry, in their order (not-running vassals included).
/// Not-running vassals do not make it fail: only [`Command::Reload`] of every vassal
/// answers with them here.
async fn wait_all(pending: Vec<Pending>, wait: Duration) -> ActionResult {
    let deadline = tokio::time::Instant::now() + wait;
    let mut ok = true;
    let mut lines = Vec::new();
    let mut not_running = Vec::new();
    let single = pending.len() == 1;
    let mut generation = None;
    for entry in pending {
        let (name, rx) = match entry {
            Pending::NotRunning { name, message } => {
                lines.push(message);
                not_running.push(name);
                continue;
            }
            Pending::Waiting { name, rx } => (name, rx),
        };
        let result = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => ActionResult {
                ok: false,
                message: format!("{name}: the reload was abandoned (the vassal went away)"),
                ..ActionResult::default()
            },
            Err(_) => ActionResult {
                ok: false,
                message: format!(
                    "{name}: no outcome within {} s (rsgictl status {name} shows how it goes)",
                    wait.as_secs()
                ),
                ..ActionResult::default()
            },
        };
        ok &= result.ok;
        if single {
            generation = result.generation;
        }
        lines.push(result.message);
    }
    ActionResult {
        ok,
        message: lines.join("\n"),
        not_running,
        generation,
    }
}

/// `POST /check`: the actor's part (parse, user, socket clashes), then the import.
async fn check(req: Request<Incoming>, shared: &Shared, peer: Peer) -> Response<ResBody> {
    if peer.uid != Some(0) && peer.uid != Some(shared.euid) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "check imports the app, which runs its code as rsgid's user (uid {}): only \
                 root or uid {} may ask (try sudo, or `rsgi --ini FILE --check-app` as yourself)",
                shared.euid, shared.euid
            ),
        );
    }
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes"),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let path = match check_path(&body) {
        Ok(path) => path,
        Err(bad) => return error(bad.status, bad.message),
    };
    tracing::info!(
        peer_uid = peer.uid,
        peer_pid = peer.pid,
        "control: check {}",
        path.display()
    );
    // The actor reads the file synchronously: hand it only small regular files.
    let problem = match tokio::fs::metadata(&path).await {
        Err(e) => Some(format!("{}: {e}", path.display())),
        Ok(meta) if !meta.is_file() => Some(format!("{}: not a regular file", path.display())),
        Ok(meta) if meta.len() > MAX_CHECK_FILE => Some(format!(
            "{}: larger than {MAX_CHECK_FILE} bytes: not a vassal file",
            path.display()
        )),
        Ok(_) => None,
    };
    if let Some(problem) = problem {
        return json(
            StatusCode::OK,
            &CheckResult {
                ok: false,
                problems: vec![problem],
            },
        );
    }
    let mut result = match ask(shared, Command::Check(path.clone())).await {
        Ok(Reply::Check(result)) => result,
        Ok(other) => return answer(other, shared).await,
        Err(resp) => return resp,
    };
    // Import only what parses: otherwise rsgi would repeat the same config error.
    let env = |key: &str| std::env::var(key).ok();
    if rsgi_os::load_file(&path.to_string_lossy(), &env).is_ok() {
        result
            .problems
            .extend(crate::check::app_importable(&shared.rsgi, &path).await);
    }
    result.ok = result.problems.is_empty();
    json(StatusCode::OK, &result)
}

/// `logs?follow=1`: the last `lines` of the backlog, then every new line, until the
/// client goes away (or the vassal does).
fn follow(
    backlog: Vec<String>,
    lines: usize,
    mut feed: broadcast::Receiver<String>,
) -> Response<ResBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(FOLLOW_QUEUE);
    tokio::spawn(async move {
        let skip = backlog.len().saturating_sub(lines);
        for line in backlog.into_iter().skip(skip) {
            if tx.send(line_bytes(line)).await.is_err() {
                return;
            }
        }
        loop {
            let line = tokio::select! {
                // The connection is gone: hyper dropped the body.
                _ = tx.closed() => return,
                got = feed.recv() => match got {
                    Ok(line) => line,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        format!("[rsgid: {n} lines skipped: this follower was too slow]")
                    }
                    // The vassal was retired.
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(line_bytes(line)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(LineBody { rx }.boxed());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn line_bytes(mut line: String) -> Bytes {
    line.push('\n');
    Bytes::from(line)
}

/// A streamed body of lines (sent chunked by hyper).
struct LineBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for LineBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ResBody> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(status, body)
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"cannot serialise the answer: {e}\"}}\n").into_bytes(),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response<ResBody> {
    json(status, &ErrorBody { error: message })
}

fn respond(status: StatusCode, body: Vec<u8>) -> Response<ResBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::sync::oneshot;

    fn get(path: &str) -> Result<Route, Bad> {
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        route(&Method::GET, p, q)
    }

    fn post(path: &str) -> Result<Route, Bad> {
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        route(&Method::POST, p, q)
    }

    fn status(r: Result<Route, Bad>) -> u16 {
        r.unwrap_err().status.as_u16()
    }

    #[test]
    fn routes() {
        assert_eq!(get("/ping").unwrap(), Route::Ping);
        assert_eq!(get("/metrics").unwrap(), Route::Metrics);
        assert_eq!(get("/top").unwrap(), Route::Top);
        assert_eq!(status(post("/metrics")), 405);
        assert_eq!(status(get("/top?x=1")), 400);
        assert_eq!(get("/vassals").unwrap(), Route::List);
        assert_eq!(get("/vassals/").unwrap(), Route::List);
        assert_eq!(get("/vassals/app").unwrap(), Route::Status("app".into()));
        assert_eq!(
            get("/vassals/my%20app").unwrap(),
            Route::Status("my app".into())
        );
        assert_eq!(
            get("/vassals/app/logs?n=5").unwrap(),
            Route::Logs {
                name: "app".into(),
                lines: 5,
                gen: None
            }
        );
        assert_eq!(
            get("/vassals/app/logs?n=5&gen=3").unwrap(),
            Route::Logs {
                name: "app".into(),
                lines: 5,
                gen: Some(3)
            }
        );
        assert_eq!(
            get("/vassals/app/logs").unwrap(),
            Route::Logs {
                name: "app".into(),
                lines: usize::MAX,
                gen: None
            }
        );
        assert_eq!(
            get("/vassals/app/logs?follow=1&n=3").unwrap(),
            Route::Follow {
                name: "app".into(),
                lines: 3
            }
        );
        assert_eq!(
            get("/vassals/app/logs?follow").unwrap(),
            Route::Follow {
                name: "app".into(),
                lines: usize::MAX
            }
        );
        assert_eq!(
            post("/vassals/app/reload?wait=1").unwrap(),
            Route::Reload {
                name: Some("app".into()),
                wait: true
            }
        );
        assert_eq!(
            post("/vassals/app/reload").unwrap(),
            Route::Reload {
                name: Some("app".into()),
                wait: false
            }
        );
        assert_eq!(
            post("/reload?wait=true").unwrap(),
            Route::Reload {
                name: None,
                wait: true
            }
        );
        for (verb, want) in [
            ("stop", Verb::Stop),
            ("start", Verb::Start),
            ("restart", Verb::Restart),
        ] {
            assert_eq!(
                post(&format!("/vassals/app/{verb}")).unwrap(),
                Route::Action {
                    name: "app".into(),
                    verb: want
                }
            );
        }
        assert_eq!(post("/check").unwrap(), Route::Check);
    }

    #[test]
    fn bad_routes() {
        assert_eq!(status(get("/")), 404);
        assert_eq!(status(get("/nope")), 404);
        assert_eq!(status(get("/vassals/app/logs/more")), 404);
        assert_eq!(status(get("/metrics/x")), 404);
        let r = get("/vassals/app/reload").unwrap_err();
        assert_eq!(r.status.as_u16(), 405);
        assert_eq!(r.allow, Some("POST"));
        assert_eq!(status(post("/vassals")), 405);
        assert_eq!(status(route(&Method::DELETE, "/vassals/app", None)), 405);
        assert_eq!(status(get("/vassals/app/logs?n=many")), 400);
        assert_eq!(status(get("/vassals/app/logs?n=-1")), 400);
        assert_eq!(status(get("/vassals/app/logs?follow=maybe")), 400);
        assert_eq!(status(get("/vassals/app/logs?tail=3")), 400);
        assert_eq!(status(get("/vassals?x=1")), 400);
        assert_eq!(status(post("/vassals/app/stop?wait=1")), 400);
        assert_eq!(status(get("/vassals/%ff")), 400);
        assert!(get("/vassals/app/logs?tail=3")
            .unwrap_err()
            .message
            .contains("expected n, follow"));
    }

    #[test]
    fn state_changing_routes() {
        let change = |r: Result<Route, Bad>| r.unwrap().change();
        assert_eq!(change(post("/vassals/app/stop")).unwrap(), "stop app");
        assert_eq!(change(post("/vassals/App/restart")).unwrap(), "restart App");
        assert_eq!(change(post("/reload")).unwrap(), "reload every vassal");
        assert_eq!(
            change(post("/vassals/app/reload?wait=1")).unwrap(),
            "reload app (wait)"
        );
        assert_eq!(change(get("/vassals")), None);
        assert_eq!(change(post("/check")), None);
    }

    #[tokio::test]
    async fn wait_all_keeps_every_vassal_in_order() {
        let waiting = |name: &str, ok: bool, message: &str| {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(ActionResult {
                ok,
                message: message.into(),
                ..ActionResult::default()
            });
            Pending::Waiting {
                name: name.into(),
                rx,
            }
        };
        let not_running = |name: &str| Pending::NotRunning {
            name: name.into(),
            message: format!("{name}: not running (stopped), nothing to reload"),
        };
        let all = vec![
            waiting("a", true, "a: generation 2 serves"),
            not_running("b"),
            waiting("c", true, "c: generation 2 serves"),
            not_running("d"),
        ];
        let r = wait_all(all, Duration::from_secs(5)).await;
        assert!(
            r.ok,
            "not-running vassals do not fail a reload of all: {r:?}"
        );
        assert_eq!(
            r.message,
            "a: generation 2 serves\nb: not running (stopped), nothing to reload\n\
             c: generation 2 serves\nd: not running (stopped), nothing to reload"
        );
        assert_eq!(r.not_running, ["b", "d"]);
        let r = wait_all(
            vec![
                not_running("a"),
                waiting("b", false, "b: reload failed: boom"),
            ],
            Duration::from_secs(5),
        )
        .await;
        assert!(!r.ok, "{r:?}");
        assert_eq!(
            r.message,
            "a: not running (stopped), nothing to reload\nb: reload failed: boom"
        );
    }

    /// A fake actor answering every command, and a raw client, over a real socket.
    mod socket {
        #![allow(clippy::unwrap_used)]
        use super::super::*;
        use rsgi_proto::control::{VassalList, VassalStatus, VassalSummary};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::sync::oneshot;

        fn summary(name: &str) -> VassalSummary {
            VassalSummary {
                name: name.into(),
                state: "ready".into(),
                pid: Some(7),
                generation: 1,
                uptime_secs: Some(3),
                restarts: 0,
                sockets: vec![],
                reason: String::new(),
                origin: None,
            }
        }

        fn fake_actor(mut rx: mpsc::UnboundedReceiver<Msg>, feed: broadcast::Sender<String>) {
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    let Msg::Control(cmd, reply) = msg else {
                        continue;
                    };
                    let answer = match cmd {
                        Command::List => Reply::List(VassalList {
                            vassals: vec![summary("app")],
                            sources: vec![],
                        }),
                        Command::Status(n) if n == "app" => Reply::Status(Box::new(VassalStatus {
                            summary: summary("app"),
                            config: "/x/app.ini".into(),
                            last_exit: None,
                            last_error: None,
                            workers: vec![],
                            log: vec![],
                        })),
                        Command::Follow(n) if n == "app" => {
                            Reply::Follow(vec!["one".into(), "two".into()], feed.subscribe())
                        }
                        Command::Reload { wait: true, .. } => {
                            let (tx, rx) = oneshot::channel();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                let _ = tx.send(ActionResult {
                                    ok: false,
                                    message: "app: reload failed: boom".into(),
                                    ..ActionResult::default()
                                });
                            });
                            Reply::Pending(vec![Pending::Waiting {
                                name: "app".into(),
                                rx,
                            }])
                        }
                        Command::Status(n)
                        | Command::Follow(n)
                        | Command::Stop(n)
                        | Command::Start(n)
                        | Command::Restart(n) => Reply::NotFound(n),
                        other => Reply::Action(ActionResult {
                            ok: true,
                            message: format!("{other:?}"),
                            ..ActionResult::default()
                        }),
                    };
                    let _ = reply.send(answer);
                }
            });
        }

        async fn start() -> (tempfile::TempDir, PathBuf, broadcast::Sender<String>) {
            let dir = tempfile::tempdir().unwrap();
            let sock = dir.path().join("ctl.sock");
            let settings = Settings {
                control_socket: sock.clone(),
                ..Settings::default()
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let feed = broadcast::channel(16).0;
            fake_actor(rx, feed.clone());
            spawn(&settings, tx, PathBuf::from("/nonexistent/rsgi")).unwrap();
            (dir, sock, feed)
        }

        async fn raw(sock: &Path, request: &[u8]) -> String {
            let mut s = UnixStream::connect(sock).await.unwrap();
            // The server may answer and close before it read everything.
            let _ = s.write_all(request).await;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }

        async fn post(sock: &Path, path: &str, body: &str) -> String {
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            raw(sock, req.as_bytes()).await
        }

        async fn get(sock: &Path, path: &str) -> String {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            raw(sock, req.as_bytes()).await
        }

        #[tokio::test]
        async fn serves_the_routes() {
            let (_dir, sock, _feed) = start().await;
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&sock).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o660);
            let r = get(&sock, "/ping").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(r.ends_with("\"ok\":true}\n"), "{r}");
            assert!(r.contains("\"image\":\""), "{r}");
            let r = get(&sock, "/vassals").await;
            assert!(r.contains("\"name\":\"app\""), "{r}");
            let r = get(&sock, "/vassals/app").await;
            assert!(r.contains("\"config\":\"/x/app.ini\""), "{r}");
            let r = get(&sock, "/vassals/nope").await;
            assert!(r.starts_with("HTTP/1.1 404"), "{r}");
            assert!(r.contains("no such vassal: nope"), "{r}");
            let r = get(&sock, "/vassals/app/stop").await;
            assert!(r.starts_with("HTTP/1.1 405"), "{r}");
            assert!(r.to_ascii_lowercase().contains("allow: post"), "{r}");
            let r = raw(
                &sock,
                b"POST /vassals/app/reload?wait=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
            assert!(r.contains("reload failed: boom"), "{r}");
            assert!(r.contains("\"ok\":false"), "{r}");
        }

        #[tokio::test]
        async fn garbage_gets_a_4xx_or_a_close() {
            let (_dir, sock, _feed) = start().await;
            let r = raw(&sock, b"\x00\x01\x02garbage\r\n\r\n").await;
            assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
            let r = raw(&sock, b"GET / HTTP/9.9 hello\r\n\r\n").await;
            assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");
            let huge = format!(
                "GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(MAX_HEAD * 2)
            );
            let r = raw(&sock, huge.as_bytes()).await;
            assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");
            // A declared body over the limit is refused before it is read.
            let big = format!(
                "POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY * 2
            );
            let r = raw(&sock, big.as_bytes()).await;
            assert!(r.starts_with("HTTP/1.1 413"), "{r}");
            // A chunked one is cut at the limit.
            let chunk = "a".repeat(MAX_BODY + 1);
            let big = format!(
                "POST /check HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
                chunk.len()
            );
            let r = raw(&sock, big.as_bytes()).await;
            assert!(r.is_empty() || r.starts_with("HTTP/1.1 413"), "{r}");
            let r = post(&sock, "/check", "{x}").await;
            assert!(r.starts_with("HTTP/1.1 400"), "{r}");
            let r = post(&sock, "/check", "{\"path\":\"a.ini\"}").await;
            assert!(r.starts_with("HTTP/1.1 400"), "{r}");
            assert!(r.contains("must be absolute"), "{r}");
            let r = post(&sock, "/check", "{\"path\":\"/dev/null\"}").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(r.contains("not a regular file"), "{r}");
            let r = get(&sock, "/ping").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        }

        #[tokio::test]
        async fn follow_streams_lines_until_the_client_goes() {
            let (_dir, sock, feed) = start().await;
            let mut s = UnixStream::connect(&sock).await.unwrap();
            s.write_all(b"GET /vassals/app/logs?follow=1&n=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut got = String::new();
            let mut buf = [0u8; 1024];
            while !got.contains("two\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "{got}");
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            assert!(got.contains("chunked"), "{got}");
            assert!(!got.contains("one\n"), "{got}");
            feed.send("three".into()).unwrap();
            while !got.contains("three\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "{got}");
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            drop(s);
            // The follower notices the close and unsubscribes.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while feed.receiver_count() > 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "follower still subscribed"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        #[tokio::test]
        async fn refuses_a_live_socket_and_replaces_a_stale_one() {
            let (dir, sock, _feed) = start().await;
            let settings = Settings {
                control_socket: sock.clone(),
                ..Settings::default()
            };
            let (tx, _rx) = mpsc::unbounded_channel();
            let err = spawn(&settings, tx, PathBuf::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            // A socket nobody listens on is stale.
            let stale = dir.path().join("stale.sock");
            drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
            assert!(stale.exists());
            bind(&stale).unwrap();
            // A regular file is not replaced.
            let file = dir.path().join("file");
            std::fs::write(&file, "keep me").unwrap();
            assert!(bind(&file).is_err());
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        }
    }
}
