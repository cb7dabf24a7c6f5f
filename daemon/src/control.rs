//! The control socket (being written).

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::emperor::Msg;
use crate::settings::Settings;

/// Bind the control socket and serve it in the background.
pub fn spawn(
    _settings: &Settings,
    _tx: mpsc::UnboundedSender<Msg>,
    _rsgi: PathBuf,
) -> std::io::Result<()> {
    Ok(())
}
