//! rsgid's own messages to systemd (`Type=notify`): `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=...`, sent as one datagram to `$NOTIFY_SOCKET` through
//! [`rsgi_os::sd_notify`] (the sender `rsgi` uses too).

use rsgi_os::sd_notify::{Systemd, NOTIFY_SOCKET_ENV};
use rsgi_proto::notify::{format, Message};

/// The systemd notify socket, if rsgid runs under `Type=notify`.
pub struct SdNotify {
    target: Option<Systemd>,
}

impl SdNotify {
    /// From `$NOTIFY_SOCKET` (an absolute path, or `@name` for the abstract namespace;
    /// anything else is logged and ignored). The variable is removed so vassals never see
    /// it.
    pub fn from_env() -> SdNotify {
        let target = std::env::var(NOTIFY_SOCKET_ENV).ok().and_then(|value| {
            // Single-threaded at this point (called before the runtime starts).
            std::env::remove_var(NOTIFY_SOCKET_ENV);
            match Systemd::open(&value) {
                Ok(s) => Some(s),
                Err(why) => {
                    tracing::warn!("ignoring {NOTIFY_SOCKET_ENV}={value:?}: {why}");
                    None
                }
            }
        });
        SdNotify { target }
    }

    /// Send `msgs` (best effort, never blocking).
    pub fn send(&self, msgs: &[Message]) {
        let Some(s) = &self.target else {
            return;
        };
        if let Err(e) = s.send(&format(msgs)) {
            tracing::warn!("cannot notify systemd at {}: {e}", s.shown());
        }
    }
}
