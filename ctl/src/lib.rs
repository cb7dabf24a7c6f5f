//! rsgictl: the control client of rsgid. It talks HTTP/1.1 + JSON to rsgid's control
//! socket (`/run/rsgi/control.sock`, or `--socket`/`RSGI_CONTROL`) with the types of
//! [`rsgi_proto::control`], and prints tables for people or `--json` for scripts.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap), one function per verb, exit codes.
//! - [`client`]: a small blocking client over `std::os::unix::net::UnixStream`, one
//!   connection per request; turns "no socket", "nothing answers" and "permission
//!   denied" into clear one-line errors.
//! - [`http`]: the HTTP/1.1 it needs (request bytes, response head, `Content-Length`
//!   and chunked bodies), pure over `Read`.
//! - [`table`]: the `list` table and `status` page, uptimes (`1h02m`).
//! - [`top`]: `rsgictl top`, the live view (frames from `GET /top`, raw terminal).
//!
//! # Exit codes
//!
//! As supervisorctl and LSB init scripts: see [`exit`].

pub mod cli;
pub mod client;
pub mod http;
pub mod table;
pub mod top;

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure: a reload failed, `check` found problems, permission denied, a bad
    /// answer.
    pub const FAILURE: u8 = 1;
    /// A usage error (clap's code).
    pub const USAGE: u8 = 2;
    /// Not running: rsgid (no socket, nothing answers), the vassal of `status NAME` or
    /// `reload NAME`, or some vassal for `list`.
    pub const NOT_RUNNING: u8 = 3;
    /// No such vassal.
    pub const NO_SUCH_VASSAL: u8 = 4;
}
