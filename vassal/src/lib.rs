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
//! - [`master`]: the master process: forks, supervises and reloads workers.
//! - [`shm`], [`stats`] (re-exported from `rsgi_os`): per-worker counters in shared
//!   memory and their uWSGI-compatible stats JSON.
//! - [`notify`]: READY/RELOADING/STOPPING to `$NOTIFY_SOCKET` or `$RSGI_NOTIFY_FD`.
//! - [`process`]: daemonize, pidfiles, `--stop`/`--reload`.
//! - [`python`]: everything that touches CPython (the only module that uses pyo3).
//!   CPython's core is linked into the binary statically by `build.rs` (why and how:
//!   there).
//! - [`response`]: the response model shared by the protocol writers.
//! - [`run`]: the program flow from command line to exit code.
//! - [`server`]: the worker's accept loops and per-connection handlers, with its close
//!   path (`server/close_path.rs`: requests that end their connection, answered from the
//!   accept loop).
//!
//! # Theory of operation
//!
//! `main` turns the command line into a [`rsgi_proto::config::VassalConfig`], binds (or
//! inherits) the listening sockets, starts CPython and imports the app, then serves.
//! Serving happens in a worker: a current-thread tokio runtime owns every connection
//! and reads each request completely (head and body, within `buffer-size` and the body
//! limit) before Python sees it, so a slow client never holds an app thread. Both
//! protocols turn a request into one [`cgi::CgiVars`]; [`python`] turns that into the
//! WSGI environ, calls the app and hands back a [`response::Response`].
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

pub mod cgi;
pub mod log;
pub mod master;
pub mod notify;
pub mod process;
pub mod python;
pub mod response;
pub mod run;
pub mod server;
pub mod static_files;
pub mod uwsgi;

pub use rsgi_os::{listen, shm, stats};
