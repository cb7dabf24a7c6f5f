//! rsgid: the emperor. Watches a directory of vassal files and runs one `rsgi` per file.
//!
//! # Layout
//!
//! - [`settings`]: rsgid's own settings (TOML file and the same settings as flags).
//! - [`scan`]: which files are vassals, fingerprints, and the pure directory diff.
//! - [`lifecycle`]: one vassal's lifecycle as a pure `step(state, input, now, policy)`.
//! - [`check`]: `rsgictl check`'s import test (runs `rsgi --check-app`).
//! - [`admission`]: connection caps for rsgid's own listeners, with a reserve for root.
//! - [`control`]: the control socket (HTTP/1.1 + JSON) that `rsgictl` talks to.
//! - [`msg`]: the actor's mailbox: messages, control commands and replies, `ask`.
//! - [`snapshot`]: every vassal's numbers as plain data, and the ledger that keeps
//!   counters monotonic.
//! - [`metrics`]: Prometheus `/metrics`, the `/top` totals and uWSGI's emperor stats.
//! - [`health`]: `/livez` and `/readyz` for probes, on both listeners.
//! - [`emperor`]: the actor that owns every vassal and applies the lifecycle's effects.
//! - [`effects`]: the seam through which the actor spawns and signals (real or fake).
//! - [`spawn`]: starting one vassal generation (fds, notify socket, user, output).
//! - [`sockfile`]: rsgid's own socket files (stale ones replaced, ours removed at exit).
//! - [`reaper`]: as PID 1 (a container's init), waiting for orphans; never for rsgid's
//!   own children.
//! - [`start`]: rsgid's start-up: the sources started beside the actor, then the actor.
//! - [`tyrant`]: tyrant mode's helper: reading vassal files and binding sockets as the
//!   file's owner.
//! - [`upgrade`]: upgrading rsgid in place: its path, handed-over fds, the state check.
//! - [`watch`]: the event sources: inotify (debounced) and signals.
//! - [`source`]: vassal sources (directories, etcd prefixes with a last-known-good
//!   local copy) and the pure merge of their files.
//! - [`sd`]: rsgid's own systemd notifications.
//!
//! # Theory of operation
//!
//! One actor task ([`emperor::Emperor`]) owns all vassal state; everything else sends it
//! messages: the directory watcher and a periodic rescan (a rescan is a pure diff of
//! fingerprints), the wait task of each child, the reader of each vassal's notify
//! socket (`READY=1`), the readers of its stdout/stderr, and the signal handlers. For
//! each message the actor feeds an input to the vassal's state machine and applies the
//! effects it returns: bind sockets and spawn a generation, signal a pid, remember a
//! wake-up time, retire.
//!
//! The emperor binds each vassal's listening sockets itself and hands them to every
//! generation through `LISTEN_FDS`, so a reload is a new generation on the same
//! sockets: the kernel keeps queueing connections while the new generation starts, the
//! old one keeps serving until the new one says `READY=1`, then stops gracefully. A new
//! generation that dies or stays silent is killed and the old one keeps serving.

pub mod admission;
pub mod check;
pub mod control;
pub mod effects;
pub mod emperor;
pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod msg;
pub mod reaper;
pub mod scan;
pub mod sd;
pub mod settings;
pub mod snapshot;
pub mod sockfile;
pub mod source;
pub mod spawn;
pub mod start;
pub mod tyrant;
pub mod upgrade;
pub mod watch;
