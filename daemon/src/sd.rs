//! rsgid's own messages to systemd (`Type=notify`): `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=...`, sent as one datagram to `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

use rsgi_proto::notify::{format, Message};

/// The systemd notify socket, if rsgid runs under `Type=notify`.
pub struct SdNotify {
    target: Option<(UnixDatagram, String)>,
}

impl SdNotify {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). The
    /// variable is removed so vassals never see it.
    pub fn from_env() -> SdNotify {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            // Single-threaded at this point (called before the runtime starts).
            std::env::remove_var("NOTIFY_SOCKET");
            UnixDatagram::unbound().ok().map(|s| (s, path))
        });
        SdNotify { target }
    }

    /// Send `msgs` (best effort).
    pub fn send(&self, msgs: &[Message]) {
        let Some((socket, path)) = &self.target else {
            return;
        };
        let data = format(msgs);
        let result = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|addr| socket.send_to_addr(data.as_bytes(), &addr))
            }
            None => socket.send_to(data.as_bytes(), path),
        };
        if let Err(e) = result {
            tracing::warn!("cannot notify systemd at {path}: {e}");
        }
    }
}
