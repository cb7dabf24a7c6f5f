//! Event sources that feed the actor: the directory watcher and the signals.
//!
//! inotify (through `notify`) tells us *that* something changed; the actor then
//! rescans the directory and diffs, so the events carry no meaning beyond "something
//! may have changed" (reads do not count: rsgid's own reads raise them). A
//! burst of events (an editor's save: write a temp file, rename, chmod) is coalesced:
//! after the first event the watcher waits [`DEBOUNCE`] of quiet before asking for one
//! rescan. The actor also rescans on a timer, because inotify can overflow.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::msg::Msg;

/// Quiet time after a directory event before the rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// How often a watcher that lost its directory (removed, or moved away) looks for it
/// again. Only while it is gone: an idle rsgid with its directory in place polls nothing.
pub const LOST_POLL: Duration = Duration::from_secs(1);

/// Whether an event can mean a change of the vassal set. Reads do not: rsgid's own
/// reads of the vassal files (each scan fingerprints them) raise open/access/close
/// events, and taking those as changes made every scan trigger the next one.
fn is_change(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(e) => !matches!(e.kind, EventKind::Access(_)),
        // An error (e.g. an inotify queue overflow) may hide a change: rescan.
        Err(_) => true,
    }
}

/// Whether an event says the watched directory itself went away (removed, or moved:
/// its inotify watch is gone with it).
fn lost_dir(event: &notify::Result<notify::Event>, dir: &Path) -> bool {
    let Ok(e) = event else { return false };
    matches!(
        e.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    ) && e.paths.iter().any(|p| p == dir)
}

/// The directory's identity, to notice one removed and made again.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Watch `dir` (not recursively); each burst of changes becomes one [`Msg::Rescan`].
/// The watch lives on a task of its own. If the directory goes away, the task looks
/// for it every [`LOST_POLL`] and watches it again (with a rescan) once it is back.
pub fn watch(dir: &Path, tx: mpsc::UnboundedSender<Msg>) -> Result<(), notify::Error> {
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let watcher = start_watcher(dir, raw_tx.clone())?;
    tokio::spawn(run(dir.to_path_buf(), watcher, raw_tx, raw_rx, tx));
    Ok(())
}

fn start_watcher(
    dir: &Path,
    raw_tx: mpsc::UnboundedSender<notify::Result<notify::Event>>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = raw_tx.send(event);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

async fn run(
    dir: PathBuf,
    watcher: notify::RecommendedWatcher,
    raw_tx: mpsc::UnboundedSender<notify::Result<notify::Event>>,
    mut raw_rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let mut watcher = Some(watcher);
    let mut watched = identity(&dir);
    loop {
        let Some(first) = raw_rx.recv().await else {
            return;
        };
        let mut changed = is_change(&first);
        let mut lost = lost_dir(&first, &dir);
        // Debounce: wait until the events stop for DEBOUNCE.
        loop {
            match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                Ok(Some(event)) => {
                    changed |= is_change(&event);
                    lost |= lost_dir(&event, &dir);
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if lost || identity(&dir) != watched {
            tracing::warn!(dir = %dir.display(), "the vassal directory went away; watching for it");
            drop(watcher.take());
            // Until it is back: the actor's scans fail and change nothing.
            loop {
                tokio::time::sleep(LOST_POLL).await;
                if identity(&dir).is_none() {
                    continue;
                }
                match start_watcher(&dir, raw_tx.clone()) {
                    Ok(w) => {
                        watcher = Some(w);
                        watched = identity(&dir);
                        tracing::info!(dir = %dir.display(), "the vassal directory is back: watching it again");
                        break;
                    }
                    Err(e) => tracing::debug!(dir = %dir.display(), "cannot watch yet: {e}"),
                }
            }
            // Events of the old watch, or of the new one's first moments: the rescan
            // below covers them.
            while raw_rx.try_recv().is_ok() {}
            changed = true;
        }
        if changed && tx.send(Msg::Rescan).is_err() {
            return;
        }
    }
}

/// TERM and INT stop rsgid gracefully; HUP reloads every vassal; USR2 upgrades rsgid
/// in place (re-executes its binary, see [`crate::upgrade`]).
pub fn signals(tx: mpsc::UnboundedSender<Msg>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = term.recv() => Msg::Shutdown,
                _ = int.recv() => Msg::Shutdown,
                _ = hup.recv() => Msg::ReloadAll,
                _ = usr2.recv() => Msg::Upgrade,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    Ok(())
}
