//! rsgi-os: the system side rsgi's programs share, each helper written once.
//!
//! [`rsgi_proto`] holds what the programs agree on as data and pure functions; everything
//! here makes system calls (nix/libc, the `unsafe` of shared memory, netlink, `/proc`).
//! The emperor (`rsgid`) and the app server (`rsgi`) both use it; `rsgi` re-exports
//! [`listen`], [`shm`] and [`stats`] as its own modules.
//!
//! # Layout
//!
//! - [`config`]: the system side of reading a configuration ([`config::Os`]: config
//!   files opened without blocking, the host facts of magic variables) and the readers
//!   the programs call ([`config::parse_args`], [`config::load_file`],
//!   [`config::read_config_bytes`]).
//! - [`limits`]: raising the open-files soft limit.
//! - [`fds`]: placing fds at 3.. for a program about to be executed (async-signal-safe).
//! - [`users`]: user and group lookup (NSS), for `chown-socket`, `uid`/`gid` and `%U`/`%G`.
//! - [`listen`]: binding a vassal's listening sockets (`chmod-socket`, `chown-socket`,
//!   stale unix sockets, ...) or taking them from `LISTEN_FDS`; the emperor binds them
//!   with the same code the standalone vassal uses.
//! - [`sockfile`]: unix socket files: a stale one cleared before binding (a live one and
//!   any other file refused), ours removed at exit only if still ours.
//! - [`spawn`]: `/bin/sh -c` commands beside a vassal (attached daemons), and pidfiles.
//! - [`sd_notify`]: the systemd notify sender (`$NOTIFY_SOCKET`, path or `@abstract`).
//! - [`shm`]: a vassal's per-worker counters in shared memory (memfd + mmap; written by
//!   its workers, read by its master and, through the fd it passes over the notify
//!   socket, by rsgid).
//! - [`stats`]: those counters as uWSGI's stats JSON (uwsgitop works unchanged), and the
//!   samples only a master can take: worker memory from `/proc`, the accept queue of a
//!   listener through `SOCK_DIAG` netlink.
#![deny(missing_docs)]

pub mod config;
pub mod fds;
pub mod limits;
pub mod listen;
pub mod sd_notify;
pub mod shm;
pub mod sockfile;
pub mod spawn;
pub mod stats;
pub mod users;

pub use config::{load_file, parse_args};
