//! The actor's mailbox: every message a source sends to [`crate::emperor::Emperor`]
//! ([`Msg`]), the control requests among them ([`Command`]) and their answers
//! ([`Reply`]), and [`ask`], the one way a source asks the actor something.
//!
//! Its own module so that the sources (the directory watcher, the signals, the control
//! socket, the metrics servers) depend on the mailbox, not on the actor.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rsgi_proto::control::{ActionResult, CheckResult, LogLines, VassalList, VassalStatus};
use rsgi_proto::notify::Message;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::lifecycle::{ExitInfo, Gen, Pid};
use crate::scan::VassalName;
use crate::snapshot::Snapshot;

/// A message to the actor.
#[derive(Debug)]
pub enum Msg {
    /// Something changed in the vassal directory (or the periodic rescan is due).
    Rescan,
    /// A vassal process exited.
    Exited {
        /// Which vassal.
        name: VassalName,
        /// Which generation.
        gen: Gen,
        /// Its pid.
        pid: Pid,
        /// How it ended.
        exit: ExitInfo,
    },
    /// A vassal sent notify assignments.
    Notified {
        /// Which vassal.
        name: VassalName,
        /// Which generation.
        gen: Gen,
        /// What it said.
        msgs: Vec<Message>,
        /// Fds passed along (`SCM_RIGHTS`): the counters memfd with `RSGI_SHM`.
        fds: Vec<OwnedFd>,
    },
    /// A line of a vassal's stdout/stderr.
    Output {
        /// Which vassal.
        name: VassalName,
        /// Which generation wrote it.
        gen: Gen,
        /// The line, without its newline.
        line: String,
    },
    /// SIGTERM/SIGINT: stop every vassal gracefully, then exit.
    Shutdown,
    /// SIGHUP: rescan and reload every vassal.
    ReloadAll,
    /// A remote vassal source's state (and whether its local copy changed).
    Source(crate::source::SourceReport),
    /// A request from the control socket, with where to send the answer.
    Control(Command, oneshot::Sender<Reply>),
    /// SIGUSR2: upgrade rsgid in place (as [`Command::Upgrade`]).
    Upgrade,
    /// A connection waits on a sleeping (on-demand) vassal's socket.
    Wake {
        /// Which vassal.
        name: VassalName,
        /// Which sleep (a watch of an earlier sleep that reports late is ignored).
        seq: u64,
    },
}

/// A control-socket request, as the actor sees it (the HTTP layer in
/// [`crate::control`] parses requests into these).
#[derive(Debug)]
pub enum Command {
    /// Every vassal's summary.
    List,
    /// One vassal in detail.
    Status(String),
    /// The last `lines` captured lines.
    Logs {
        /// The vassal.
        name: String,
        /// How many lines.
        lines: usize,
        /// Only the lines of this generation.
        gen: Option<Gen>,
    },
    /// The captured lines so far plus a live feed.
    Follow(String),
    /// Stop a vassal; it stays stopped until `Start` or a change of its file.
    Stop(String),
    /// Start a stopped or failed vassal.
    Start(String),
    /// Stop, then start.
    Restart(String),
    /// Reload one vassal (`Some`) or all (`None`); with `wait`, the answer comes when
    /// the new generation serves or the reload failed.
    Reload {
        /// The vassal, or every vassal.
        name: Option<String>,
        /// Answer only when done.
        wait: bool,
    },
    /// Validate a vassal file without applying it.
    Check(PathBuf),
    /// Every vassal's numbers, for `/metrics`, `/top` and the emperor stats.
    Metrics,
    /// `rsgictl upgrade`: check the binary rsgid was started from, then re-execute it in
    /// place, handing everything over (answered before the exec).
    Upgrade,
}

/// The actor's answer to a [`Command`].
#[derive(Debug)]
pub enum Reply {
    /// For [`Command::List`].
    List(VassalList),
    /// For [`Command::Status`].
    Status(Box<VassalStatus>),
    /// For [`Command::Logs`].
    Logs(LogLines),
    /// For [`Command::Follow`]: the backlog, then a live feed.
    Follow(Vec<String>, broadcast::Receiver<String>),
    /// A finished action.
    Action(ActionResult),
    /// A reload with `wait` that started at least one reload: one entry per vassal
    /// asked for, in the order of their names; the waiting ones resolve when their
    /// vassal's reload is done.
    Pending(Vec<Pending>),
    /// For [`Command::Check`].
    Check(CheckResult),
    /// No vassal of that name.
    NotFound(String),
    /// For [`Command::Metrics`].
    Metrics(Box<Snapshot>),
}

/// One vassal's part of a [`Reply::Pending`].
#[derive(Debug)]
pub enum Pending {
    /// It was not running: nothing to reload.
    NotRunning {
        /// The vassal.
        name: String,
        /// Its line of the answer.
        message: String,
    },
    /// Its reload started; the outcome comes through `rx`.
    Waiting {
        /// The vassal.
        name: String,
        /// Resolves when the new generation serves or the reload failed.
        rx: oneshot::Receiver<ActionResult>,
    },
}

/// The actor is gone (rsgid is shutting down): the one way [`ask`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rsgid is shutting down")]
pub struct ActorGone;

/// Send `command` to the actor and wait for its reply.
pub async fn ask(tx: &mpsc::UnboundedSender<Msg>, command: Command) -> Result<Reply, ActorGone> {
    let (reply_tx, reply_rx) = oneshot::channel();
    tx.send(Msg::Control(command, reply_tx))
        .map_err(|_| ActorGone)?;
    reply_rx.await.map_err(|_| ActorGone)
}
