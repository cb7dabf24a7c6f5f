//! The request core: what every protocol front end does with a parsed request.
//!
//! A front end (hyper's HTTP, uwsgi, the close path) turns its bytes into a
//! [`CgiVars`] and a body, then:
//!
//! 1. opens a [`Ticket`] (what the access line needs, and the start time);
//! 2. gets the answer: [`answer`] (a `static-map` file, else the app), or, for hyper
//!    which checks `limit-post` before it reads a body, [`static_answer`] then
//!    [`call_app`];
//! 3. writes it (see `server/write.rs`) and closes the ticket with [`Ticket::finish`]:
//!    the shared per-worker counters, the access log line, and the `max-requests`
//!    check that wakes the master.
//!
//! Nothing here reads or writes a socket.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cgi::CgiVars;
use crate::python::{Executor, Request, Reservation};
use crate::response::{Body, Response};
use crate::shm::{RequestToken, Shm, WorkerId};
use crate::static_files::{self, Lookup, StaticMap};

/// Seconds between two log lines about the connection cap.
pub const CAP_LOG_EVERY: u64 = 10;

/// What every connection handler needs.
pub struct Worker {
    /// Runs the app.
    pub executor: Executor,
    /// `static-map` entries.
    pub static_map: StaticMap,
    /// `mount` and `manage-script-name`.
    pub routes: crate::mount::Routes,
    /// `buffer-size`: the largest request head.
    pub buffer_size: usize,
    /// `limit-post`: the largest request body (0 = unlimited).
    pub limit_post: u64,
    /// `socket-timeout`: how long a client may stay silent while sending its request.
    pub socket_timeout: Duration,
    /// `http-timeout` (else `socket-timeout`): how long an HTTP client may take to send
    /// a request head.
    pub http_timeout: Duration,
    /// `http-keepalive-timeout`: how long an HTTP keep-alive connection may stay idle
    /// between requests.
    pub keepalive_timeout: Duration,
    /// `enable-proxy-protocol`: HTTP connections may start with a PROXY header.
    pub proxy_protocol: bool,
    /// Seconds a graceful stop may take before connections are dropped.
    pub mercy: Duration,
    /// This process' pid, for access lines.
    pub pid: u32,
    /// This worker's shared counters (none for a single-process server).
    pub counters: Option<Counters>,
    /// `worker-connections`: the most connections held open at once.
    pub max_connections: usize,
    /// When the connection cap was last logged (seconds of a monotonic clock), so a
    /// flood is logged once per [`CAP_LOG_EVERY`] seconds.
    pub cap_logged: std::sync::atomic::AtomicU64,
}

impl Worker {
    /// Record in the shared counters that this worker accepts no more connections.
    pub(super) fn stopped_accepting(&self) {
        if let Some(slot) = self.counters.as_ref().and_then(|c| c.shm.slot(c.id)) {
            slot.set_accepting(false);
        }
    }
}

/// A worker's slot in the shared counters.
pub struct Counters {
    /// The shared region.
    pub shm: Arc<Shm>,
    /// This worker's slot.
    pub id: WorkerId,
    /// `max-requests` (with this worker's delta): once reached, the worker wakes the
    /// master through `master_pipe` so the replacement starts at once, not at the
    /// master's next tick.
    pub recycle_after: Option<u64>,
    /// Write end of the master's pipe (see [`crate::master_pipe::send_due`]).
    pub master_pipe: Option<std::os::fd::RawFd>,
    /// Whether the master was already told.
    pub recycle_sent: AtomicBool,
}

/// How a request ended, as the counters and the access line see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The status sent.
    pub(super) status: u16,
    /// The body bytes sent.
    pub(super) bytes: u64,
    /// Whether the app raised.
    pub(super) exception: bool,
    /// The response head's size and header count (for `log-format`'s `%(hsize)`,
    /// `%(headers)`); 0 where unknown.
    pub(super) head: (u64, u64),
    /// The body was a file (a static file, `wsgi.file_wrapper`), for `log-sendfile`.
    pub(super) file: bool,
}

impl Outcome {
    /// A response the server made itself (an error, a refusal): nothing from the app.
    pub(super) fn server(status: u16) -> Outcome {
        Outcome {
            status,
            bytes: 0,
            exception: false,
            head: (0, 0),
            file: false,
        }
    }
}

/// The size and header count of a response head as written (`HTTP/1.1 200 OK\r\n`,
/// header lines, blank line).
pub(super) fn head_stats(head: &[u8]) -> (u64, u64) {
    if crate::log::template().is_none() {
        // Only `log-format` shows them: no scan on the common path.
        return (0, 0);
    }
    let lines = head.windows(2).filter(|w| w == b"\r\n").count() as u64;
    (head.len() as u64, lines.saturating_sub(2))
}

/// What only `log-format` needs of a request, taken when a template is set.
#[derive(Debug, Default)]
struct Extra {
    user: Bytes,
    host: Bytes,
    uagent: Bytes,
    referer: Bytes,
    content_length: u64,
    /// The values of the template's `%(var.NAME)`, in its order.
    vars: Vec<Bytes>,
    var_count: u64,
    pktsize: u64,
}

/// One request between its parse and its last byte: what its access line needs (cheap
/// `Bytes` clones, taken before the request moves into the app call), when it started,
/// and its mark in the shared counters once the app was called.
#[derive(Debug)]
pub(super) struct Ticket {
    remote: Bytes,
    method: Bytes,
    uri: Bytes,
    protocol: Bytes,
    started: Instant,
    /// Set when the app is called (a static file or a refusal is logged, not counted).
    token: Option<RequestToken>,
    /// Only with `log-format`.
    extra: Option<Box<Extra>>,
}

impl Ticket {
    /// Open the ticket of a request that started at `started`.
    pub(super) fn new(cgi: &CgiVars, started: Instant) -> Ticket {
        let get = |name: &[u8]| cgi.get(name).cloned().unwrap_or_default();
        let remote = match cgi.get(b"HTTP_X_FORWARDED_FOR") {
            Some(xff) if crate::log::x_forwarded_for() => xff.clone(),
            _ => get(b"REMOTE_ADDR"),
        };
        let extra = crate::log::template().map(|t| {
            let (var_count, pktsize) = if t.needs_var_stats() {
                let size = cgi
                    .vars
                    .iter()
                    .map(|(k, v)| 4 + k.len() + v.len())
                    .sum::<usize>();
                (cgi.vars.len() as u64, size as u64)
            } else {
                (0, 0)
            };
            Box::new(Extra {
                user: get(b"REMOTE_USER"),
                host: get(b"HTTP_HOST"),
                uagent: get(b"HTTP_USER_AGENT"),
                referer: get(b"HTTP_REFERER"),
                content_length: cgi.content_length.unwrap_or(0),
                vars: t.request_vars.iter().map(|n| get(n)).collect(),
                var_count,
                pktsize,
            })
        });
        Ticket {
            remote,
            method: get(b"REQUEST_METHOD"),
            uri: cgi
                .get(b"REQUEST_URI")
                .or_else(|| cgi.get(b"PATH_INFO"))
                .cloned()
                .unwrap_or_default(),
            protocol: get(b"SERVER_PROTOCOL"),
            started,
            token: None,
            extra,
        }
    }

    /// Close the ticket: count the request in the shared counters (if the app was
    /// called), tell the master once `max-requests` is reached, and write the access line.
    pub(super) fn finish(self, worker: &Worker, outcome: Outcome) {
        let elapsed = self.started.elapsed();
        if let (Some(token), Some(c)) = (self.token, worker.counters.as_ref()) {
            count(c, token, outcome, elapsed);
        }
        let mut line = crate::log::Access {
            addr: &self.remote,
            method: &self.method,
            uri: &self.uri,
            proto: &self.protocol,
            status: outcome.status,
            body_bytes: outcome.bytes,
            duration: elapsed,
            pid: worker.pid,
            file_body: outcome.file,
            ..crate::log::Access::default()
        };
        let Some(extra) = &self.extra else {
            crate::log::access(&line);
            return;
        };
        let vars: Vec<&[u8]> = extra.vars.iter().map(|v| &v[..]).collect();
        line.user = &extra.user;
        line.host = &extra.host;
        line.uagent = &extra.uagent;
        line.referer = &extra.referer;
        line.content_length = extra.content_length;
        line.request_vars = &vars;
        line.var_count = extra.var_count;
        line.pktsize = extra.pktsize;
        (line.head_bytes, line.headers) = outcome.head;
        line.start = std::time::SystemTime::now().checked_sub(elapsed);
        line.wid = worker.counters.as_ref().map_or(1, |c| c.id.get());
        if crate::log::template().is_some_and(|t| t.needs_memory()) {
            line.memory = memory();
        }
        crate::log::access(&line);
    }
}

/// This process's (virtual, resident) size in bytes, from `/proc/self/statm`.
fn memory() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (vsz, rss) = (fields.next()??, fields.next()??);
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    Some((vsz * page, rss * page))
}

/// Count a finished app call in this worker's slot; wake the master (once) when the
/// worker is due for recycling.
fn count(c: &Counters, token: RequestToken, outcome: Outcome, elapsed: Duration) {
    let Some(slot) = c.shm.slot(c.id) else {
        return;
    };
    slot.request_finished(
        token,
        outcome.status,
        outcome.bytes,
        elapsed,
        outcome.exception,
    );
    if let Some(fd) = c.master_pipe {
        if recycle_due(slot.requests_since_spawn(), c.recycle_after)
            && !c.recycle_sent.swap(true, Ordering::Relaxed)
        {
            crate::master_pipe::send_due(fd, c.id);
        }
    }
}

/// Whether a worker that served `served` requests since it started has reached
/// `max-requests` (`limit`, none: never).
fn recycle_due(served: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| served >= limit)
}

/// Mark the start of an app call on `ticket` (the master's harakiri clock starts here).
fn app_started(worker: &Worker, ticket: &mut Ticket) {
    let Some(c) = worker.counters.as_ref() else {
        return;
    };
    if let Some(slot) = c.shm.slot(c.id) {
        ticket.token = Some(slot.request_started(crate::shm::monotonic_ms()));
    }
}

/// Whether a request (by its CGI vars) is a HEAD request.
pub(super) fn is_head(cgi: &CgiVars) -> bool {
    cgi.get(b"REQUEST_METHOD")
        .is_some_and(|m| &m[..] == b"HEAD")
}

/// Answer `cgi` from `static-map` if a mapping has it, else call the app (on the thread
/// `reserved` holds, if any).
pub(super) async fn answer(
    worker: &Worker,
    ticket: &mut Ticket,
    request: Request,
    reserved: Option<Reservation>,
    conn: RawFd,
) -> Response {
    if let Some(r) = static_answer(&worker.static_map, &request.cgi) {
        return r;
    }
    call_app(worker, ticket, request, reserved, conn).await
}

/// Call the app (on the thread `reserved` holds, if any); the call is marked in the
/// shared counters on `ticket`. While the app runs, the connection `conn` is known to the harakiri answer
/// ([`super::inflight`]).
pub(super) async fn call_app(
    worker: &Worker,
    ticket: &mut Ticket,
    request: Request,
    reserved: Option<Reservation>,
    conn: RawFd,
) -> Response {
    app_started(worker, ticket);
    let _in_flight = super::inflight::enter(conn);
    worker.executor.call_reserved(request, reserved).await
}

/// Answer a request from `static-map`, if a mapping has the file.
pub(super) fn static_answer(map: &StaticMap, cgi: &CgiVars) -> Option<Response> {
    if map.is_empty() {
        return None;
    }
    let method = cgi.get(b"REQUEST_METHOD")?;
    if &method[..] != b"GET" && &method[..] != b"HEAD" {
        return None;
    }
    let path = cgi.get(b"PATH_INFO")?;
    let gzip = cgi
        .get(b"HTTP_ACCEPT_ENCODING")
        .is_some_and(|v| v.windows(4).any(|w| w.eq_ignore_ascii_case(b"gzip")));
    match map.lookup_for(path, gzip)? {
        Lookup::Found(file) => {
            let last_modified = static_files::http_date(file.modified);
            let ims = cgi.get(b"HTTP_IF_MODIFIED_SINCE").map(|b| &b[..]);
            if static_files::not_modified(ims, file.modified) {
                let mut resp = Response::error(304);
                resp.body = Body::Empty;
                resp.content_length = None;
                resp.headers = vec![(
                    Bytes::from_static(b"Last-Modified"),
                    Bytes::from(last_modified),
                )];
                return Some(resp);
            }
            let opened = match std::fs::File::open(&file.path) {
                Ok(f) => f,
                Err(_) => return Some(Response::error(404)),
            };
            let mut extra = Vec::new();
            if file.gzip {
                extra.push((
                    Bytes::from_static(b"Content-Encoding"),
                    Bytes::from_static(b"gzip"),
                ));
                extra.push((
                    Bytes::from_static(b"Vary"),
                    Bytes::from_static(b"Accept-Encoding"),
                ));
            }
            if let Some((secs, from_mtime)) = file.expires {
                let base = if from_mtime {
                    file.modified
                } else {
                    std::time::SystemTime::now()
                };
                let at = base + Duration::from_secs(secs);
                extra.push((
                    Bytes::from_static(b"Expires"),
                    Bytes::from(static_files::http_date(at)),
                ));
            }
            Some(Response {
                status: 200,
                status_line: Bytes::from_static(b"200 OK"),
                headers: vec![
                    (
                        Bytes::from_static(b"Content-Type"),
                        Bytes::from_static(file.content_type.as_bytes()),
                    ),
                    (
                        Bytes::from_static(b"Content-Length"),
                        Bytes::from(file.len.to_string()),
                    ),
                    (
                        Bytes::from_static(b"Last-Modified"),
                        Bytes::from(last_modified),
                    ),
                ]
                .into_iter()
                .chain(extra)
                .collect(),
                content_length: Some(file.len),
                body: Body::File {
                    file: opened,
                    offset: 0,
                    len: Some(file.len),
                    on_done: None,
                },
                exception: false,
            })
        }
        Lookup::Forbidden => Some(Response::error(403)),
        Lookup::NotFound => Some(Response::error(404)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cgi::Scheme;

    fn cgi(vars: &[(&str, &str)]) -> CgiVars {
        CgiVars {
            vars: vars
                .iter()
                .map(|(k, v)| {
                    (
                        Bytes::copy_from_slice(k.as_bytes()),
                        Bytes::copy_from_slice(v.as_bytes()),
                    )
                })
                .collect(),
            scheme: Scheme::Http,
            content_length: None,
        }
    }

    #[test]
    fn a_ticket_takes_what_the_access_line_needs() {
        // (vars, remote, method, uri, protocol)
        type Vars = &'static [(&'static str, &'static str)];
        let cases: &[(Vars, [&str; 4])] = &[
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/a?b"),
                    ("PATH_INFO", "/a"),
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("SERVER_PROTOCOL", "HTTP/1.1"),
                ],
                ["10.0.0.1", "GET", "/a?b", "HTTP/1.1"],
            ),
            // no REQUEST_URI (a uwsgi client that leaves it out): PATH_INFO
            (
                &[("REQUEST_METHOD", "POST"), ("PATH_INFO", "/p")],
                ["", "POST", "/p", ""],
            ),
            (&[], ["", "", "", ""]),
        ];
        for (vars, [remote, method, uri, protocol]) in cases {
            let t = Ticket::new(&cgi(vars), Instant::now());
            assert_eq!(
                [&t.remote[..], &t.method[..], &t.uri[..], &t.protocol[..]],
                [
                    remote.as_bytes(),
                    method.as_bytes(),
                    uri.as_bytes(),
                    protocol.as_bytes()
                ],
                "{vars:?}"
            );
            assert!(t.token.is_none(), "not counted before the app is called");
        }
    }

    #[test]
    fn recycling_is_due_at_max_requests() {
        let cases = [
            (0, None, false),
            (1_000_000, None, false),
            (4, Some(5), false),
            (5, Some(5), true),
            (6, Some(5), true),
            (0, Some(0), true),
        ];
        for (served, limit, want) in cases {
            assert_eq!(recycle_due(served, limit), want, "{served} {limit:?}");
        }
    }

    #[test]
    fn an_app_call_is_counted_and_wakes_the_master_once() {
        let shm = Arc::new(Shm::create(1).unwrap());
        let id = WorkerId::new(1).unwrap();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let c = Counters {
            shm: Arc::clone(&shm),
            id,
            recycle_after: Some(2),
            master_pipe: Some(write_end.as_raw_fd()),
            recycle_sent: AtomicBool::new(false),
        };
        let slot = shm.slot(id).unwrap();
        let outcomes = [
            Outcome {
                status: 200,
                bytes: 5,
                exception: false,
                head: (0, 0),
                file: false,
            },
            Outcome {
                status: 500,
                bytes: 7,
                exception: true,
                head: (0, 0),
                file: false,
            },
            Outcome::server(404),
        ];
        for outcome in outcomes {
            let token = slot.request_started(crate::shm::monotonic_ms());
            count(&c, token, outcome, Duration::from_millis(1));
        }
        assert_eq!(slot.requests_since_spawn(), 3);
        let snap = slot.snapshot(id);
        assert_eq!(snap.tx, 12);
        assert_eq!(snap.exceptions, 1);
        assert!(c.recycle_sent.load(Ordering::Relaxed));
        // One record of 5 bytes on the pipe, however many requests went past the limit.
        nix::fcntl::fcntl(
            &read_end,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(nix::unistd::read(&read_end, &mut buf).unwrap(), 5);
        assert!(nix::unistd::read(&read_end, &mut buf).is_err());
    }

    #[test]
    fn static_files_are_answered_before_the_app() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let map = StaticMap::new(&[("/s".to_string(), dir.path().to_path_buf())]).unwrap();
        // (method, path, status or None for the app)
        let cases: &[(&str, &str, Option<u16>)] = &[
            ("GET", "/s/a.txt", Some(200)),
            ("HEAD", "/s/a.txt", Some(200)),
            ("POST", "/s/a.txt", None),
            // a missing file falls through to the app, as in uWSGI
            ("GET", "/s/missing", None),
            ("GET", "/app", None),
        ];
        for (method, path, want) in cases {
            let got = static_answer(
                &map,
                &cgi(&[("REQUEST_METHOD", method), ("PATH_INFO", path)]),
            );
            assert_eq!(got.as_ref().map(|r| r.status), *want, "{method} {path}");
            if let Some(r) = got.filter(|r| r.status == 200) {
                assert_eq!(r.content_length, Some(5));
                assert!(matches!(r.body, Body::File { len: Some(5), .. }));
            }
        }
        let empty = StaticMap::new(&[]).unwrap();
        let get = cgi(&[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/s/a.txt")]);
        assert!(static_answer(&empty, &get).is_none());
    }
}
