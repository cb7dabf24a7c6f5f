//! rsgi: the app server. One `rsgi` runs one Python WSGI app, standalone
//! (`rsgi --ini app.ini`) or as a vassal of `rsgid`.
//!
//! # Layout
//!
//! - [`uwsgi`]: the uwsgi packet codec (pure; `check` then `parse`, like mini-redis frames).
//! - [`cgi`]: CGI/WSGI variable rules for both protocols (pure).
//! - [`static_files`]: `static-map` resolution, content types, conditional GETs.
//! - [`listen`] (re-exported from `rsgi_os`): binding sockets, or taking them from
//!   `LISTEN_FDS`.
//! - [`log`]: the log sink (`logto`, `logdate`, reopen on USR1) and access lines.
//! - [`master`]: the master process: forks, supervises and reloads workers. Its
//!   decisions are [`master::policy`], a pure `step` (events in, actions out) with
//!   table tests; `master.rs` is the thin shell (poll, signalfd, waitpid, kill, fork,
//!   re-exec).
//! - [`master_pipe`]: the worker-to-master pipe records (READY, DUE) and the request
//!   count at which a worker is recycled.
//! - [`stats_server`]: the `stats` server of both process models (the master's, and the
//!   single-process one on a tokio task).
//! - [`shm`], [`stats`] (re-exported from `rsgi_os`): per-worker counters in shared
//!   memory and their uWSGI-compatible stats JSON.
//! - [`notify`]: READY/RELOADING/STOPPING to `$NOTIFY_SOCKET` or `$RSGI_NOTIFY_FD`.
//! - [`process`]: daemonize, pidfiles, `--stop`/`--reload`.
//! - [`python`]: everything that touches CPython (the only module that uses pyo3).
//!   CPython's core is linked into the binary statically by `build.rs` (why and how:
//!   there).
//! - [`response`]: the response model shared by the protocol writers.
//! - [`run`]: the program flow from command line to exit code; [`fatal`]: the failure
//!   that ends the process with a documented exit code.
//! - [`server`]: the worker: its accept loops (`server.rs`) and the request pipeline
//!   they feed, one stage per file:
//!   - `server/conn.rs`: listeners, their socket options, accepted connections;
//!   - the protocol front ends, which only parse and write: `server/close_path.rs`
//!     (requests that end their connection, answered from the accept loop without
//!     hyper), `server/http_front.rs` (keep-alive HTTP through hyper),
//!     `server/uwsgi_front.rs` (uwsgi requests the close path did not finish);
//!   - `server/core.rs`: the one core a parsed request goes through: a `static-map`
//!     file or the app, and its accounting (shared counters, access line, the
//!     `max-requests` wake-up of the master);
//!   - `server/write.rs` (`write/body.rs`, `write/send.rs`): the one writer of response
//!     heads and bodies for every front end (header rules, framing, sendmsg, sendfile).
//! - [`autoreload`]: `py-autoreload`, a worker thread that asks for a reload when a loaded module's file changes.
//! - [`hooks`]: runs uWSGI's `hook-*` / `exec-*` actions at their phases.
//! - [`worker`]: the worker body (app import, the tokio runtime, stop signals), run by
//!   a forked worker and by the single-process server.
//!
//! # Theory of operation
//!
//! `main` turns the command line into a [`rsgi_proto::config::VassalConfig`], binds (or
//! inherits) the listening sockets, starts CPython and imports the app, then serves.
//! Serving happens in a worker: a current-thread tokio runtime owns every connection
//! and reads each request completely (head and body, within `buffer-size` and the body
//! limit) before Python sees it, so a slow client never holds an app thread. Both
//! protocols turn a request into one [`cgi::CgiVars`]; the server's core answers it from
//! `static-map` or through [`python`], which turns it into the WSGI environ, calls the
//! app and hands back a [`response::Response`], which the server's writer puts on the
//! wire under the same rules for every protocol.
//!
//! With `threads = 1` the app is called inline on the I/O thread (no thread hop: the
//! worker has nothing else it could do while the app runs, as in uWSGI's sync mode), and
//! a request that closes its connection (every uwsgi request, HTTP `Connection: close`)
//! is served right in the accept loop without hyper: one recv, one sendmsg, the same
//! bytes. With `threads = N > 1` a pool of N Python threads takes the calls, and the
//! worker accepts only while one of them is free. The GIL is taken once per request and
//! never held across an `.await`.
//!
//! Everything up to the app import runs before any thread exists, so the master of the
//! process model can fork workers from that point.

pub mod autoreload;
pub mod cgi;
pub mod fatal;
pub mod fuzzing;
pub mod hooks;
pub mod log;
pub mod master;
pub mod master_pipe;
pub mod mount;
pub mod notify;
pub mod process;
pub mod proxy_protocol;
pub mod python;
pub mod response;
pub mod run;
pub mod server;
pub mod static_files;
pub mod stats_server;
pub mod uwsgi;
pub mod worker;

pub use rsgi_os::{listen, shm, stats};
