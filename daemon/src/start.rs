//! Starting rsgid: resolve the directories, open the actor's mailbox, start the sources
//! that feed it (the directory watcher, the signals, the control socket, the metrics
//! and emperor stats servers) beside the actor, then run the actor until it is done.
//!
//! ```text
//!  watch::watch, watch::signals ─┐
//!  control::spawn ───────────────┼── msg::Msg ──> emperor::Emperor::run ── effects::OsEffects
//!  metrics::spawn ───────────────┘   (mailbox)     (owns all vassal state)   (spawn, signal)
//! ```

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::effects::OsEffects;
use crate::emperor::Emperor;
use crate::settings::Settings;
use crate::source::etcd::EtcdSource;
use crate::source::SourceDir;

/// What went wrong at start-up (fatal for rsgid).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The vassal directory cannot be read.
    #[error("vassal directory {}: {source}", dir.display())]
    VassalDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The run directory cannot be created.
    #[error("run directory {}: {source}", dir.display())]
    RunDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Watching the directory failed.
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: ::notify::Error,
    },
    /// An etcd source cannot be set up (TLS files, its local copy).
    #[error("etcd: {0}")]
    Etcd(String),
    /// Signal handlers could not be installed.
    #[error("signal handlers: {0}")]
    Signals(std::io::Error),
    /// The control socket could not be bound.
    #[error("control socket {}: {source}", path.display())]
    Control {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Run rsgid with `settings` until it is shut down. Must run inside a tokio runtime
/// (a current-thread one: see `main.rs`).
pub async fn run(mut settings: Settings) -> Result<(), StartError> {
    raise_nofile();
    std::fs::create_dir_all(&settings.run_dir).map_err(|source| StartError::RunDir {
        dir: settings.run_dir.clone(),
        source,
    })?;
    // Absolute paths: vassals run in the vassal directory and get their file's path.
    if let Ok(run_dir) = std::path::absolute(&settings.run_dir) {
        settings.run_dir = run_dir;
    }
    let handed_over = handed_over();
    if let Some(state) = &handed_over {
        crate::upgrade::set_inherited(state.listeners.clone());
    }
    let rsgi = crate::spawn::find_rsgi(settings.rsgi.as_deref());
    let (tx, rx) = mpsc::unbounded_channel();
    let (dirs, mut remote) = open_sources(&mut settings, &tx)?;
    let dir = settings.vassals.clone();
    // Remote sources: one full read each (bounded) before the first scan, so that a
    // store that is up decides the first set; a store that is down leaves the local
    // copies (the last known set, marked stale).
    crate::source::etcd::first_sync(&mut remote, FIRST_SYNC).await;
    for source in remote {
        tokio::spawn(source.run());
    }
    crate::watch::signals(tx.clone()).map_err(StartError::Signals)?;
    crate::reaper::start_if_init().map_err(StartError::Signals)?;
    crate::control::spawn(&settings, tx.clone(), rsgi.clone()).map_err(|source| {
        StartError::Control {
            path: settings.control_socket.clone(),
            source,
        }
    })?;
    crate::metrics::spawn(&settings, &tx);
    crate::upgrade::close_unused_inherited();
    tracing::info!(
        vassals = %dir.display(),
        rsgi = %rsgi.display(),
        build = crate::upgrade::build(),
        "rsgid started"
    );
    let effects = OsEffects::new(rsgi, tx);
    let mut emperor = Emperor::new(settings, rx, Box::new(effects)).with_sources(dirs);
    if let Some(state) = handed_over {
        emperor.restore(state);
    }
    emperor.run().await;
    Ok(())
}

/// How long start-up waits for the remote sources' first read: long enough for a hung
/// member's request deadline and an answer from the next member.
const FIRST_SYNC: std::time::Duration =
    crate::source::etcd::REQUEST_TIMEOUT.saturating_add(std::time::Duration::from_secs(2));

/// Resolve every source: directories are checked and watched; each etcd prefix gets
/// its local copy under the state directory and a source task (not started yet).
/// `settings.vassals` becomes the first directory scanned.
fn open_sources(
    settings: &mut Settings,
    tx: &mpsc::UnboundedSender<crate::msg::Msg>,
) -> Result<(Vec<SourceDir>, Vec<EtcdSource>), StartError> {
    use crate::source::{etcd, mirror::Mirror, SourceSpec};
    let mut dirs = Vec::new();
    let mut remote = Vec::new();
    let mut tls = None;
    for spec in settings.sources.clone() {
        match spec {
            SourceSpec::Dir(d) => {
                let dir = std::fs::canonicalize(&d).map_err(|source| StartError::VassalDir {
                    dir: d.clone(),
                    source,
                })?;
                if !dir.is_dir() {
                    return Err(StartError::VassalDir {
                        dir,
                        source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
                    });
                }
                crate::watch::watch(&dir, tx.clone()).map_err(|source| StartError::Watch {
                    dir: dir.clone(),
                    source,
                })?;
                dirs.push(SourceDir {
                    label: dir.display().to_string(),
                    dir,
                    kind: "dir",
                });
            }
            SourceSpec::Etcd(url) => {
                if tls.is_none() {
                    tls = Some(
                        etcd::tls_connector(&settings.etcd)
                            .map_err(|e| StartError::Etcd(e.to_string()))?,
                    );
                }
                let dir = settings
                    .state_dir
                    .join(crate::source::mirror_dir_name(&url));
                let mirror = Mirror::open(&dir, &url.to_string())
                    .map_err(|e| StartError::Etcd(format!("{url}: local copy: {e}")))?;
                let client =
                    etcd::Client::new(url.endpoints.clone(), tls.clone().flatten(), &settings.etcd);
                let tx = tx.clone();
                let report: etcd::Reporter =
                    Box::new(move |r| tx.send(crate::msg::Msg::Source(r)).is_ok());
                dirs.push(SourceDir {
                    label: url.to_string(),
                    dir: mirror.dir().to_path_buf(),
                    kind: "etcd",
                });
                tracing::info!(source = %url, copy = %mirror.dir().display(), revision = mirror.revision(), "etcd source");
                remote.push(etcd::EtcdSource::new(
                    dirs.len() - 1,
                    url,
                    client,
                    mirror,
                    report,
                ));
            }
        }
    }
    if let Some(first) = dirs.first() {
        settings.vassals = first.dir.clone();
    }
    Ok((dirs, remote))
}

/// The state the previous image handed over (an upgrade in place), if this process is
/// one: read once, the file and the variable removed.
fn handed_over() -> Option<crate::emperor::UpgradeState> {
    let path = std::env::var_os(crate::upgrade::STATE_ENV)?;
    // Edition 2021, and no other thread reads the environment yet (the runtime is
    // single-threaded and nothing has been spawned).
    std::env::remove_var(crate::upgrade::STATE_ENV);
    let path = PathBuf::from(path);
    let state = crate::emperor::check_state(&path);
    let _ = std::fs::remove_file(&path);
    match state {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::error!("upgrade: cannot read the handed-over state, starting afresh: {e}");
            None
        }
    }
}

/// Raise rsgid's soft limit of open files to its hard limit (as systemd's own
/// `LimitNOFILE=` advice for services that hold many sockets): rsgid holds every
/// vassal's listening sockets, notify sockets and output pipes, and its listeners'
/// connections. The soft default (1024) is low for a host of vassals. A failure is
/// logged and rsgid goes on with what it has.
fn raise_nofile() {
    match rsgi_os::limits::raise_nofile() {
        Ok(Some((from, to))) => tracing::debug!(from, to, "raised the open files limit"),
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}
