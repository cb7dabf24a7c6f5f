//! Event sources that feed the actor: the directory watcher and the signals.
//!
//! inotify (through `notify`) tells us *that* something changed; the actor then
//! rescans the directory and diffs, so the events themselves carry no meaning. A
//! burst of events (an editor's save: write a temp file, rename, chmod) is coalesced:
//! after the first event the watcher waits [`DEBOUNCE`] of quiet before asking for one
//! rescan. The actor also rescans on a timer, because inotify can overflow.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::msg::Msg;

/// Quiet time after a directory event before the rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Watch `dir` (not recursively); each burst of events becomes one [`Msg::Rescan`].
/// Keep the returned watcher alive.
pub fn watch(
    dir: &Path,
    tx: mpsc::UnboundedSender<Msg>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        // Errors (e.g. an inotify queue overflow) also just mean "rescan".
        let _ = raw_tx.send(());
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Debounce: wait until the events stop for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(Msg::Rescan).is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

/// TERM and INT stop rsgid gracefully; HUP reloads every vassal.
pub fn signals(tx: mpsc::UnboundedSender<Msg>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = term.recv() => Msg::Shutdown,
                _ = int.recv() => Msg::Shutdown,
                _ = hup.recv() => Msg::ReloadAll,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    Ok(())
}
