//! The systemd notify sender (`sd_notify(3)`'s wire side), written once for rsgid
//! (`Type=notify` under systemd) and for `rsgi` run by systemd directly: one datagram per
//! message group to `$NOTIFY_SOCKET`, a path or, with a leading `@`, a name in the
//! abstract namespace. What is sent is [`rsgi_proto::notify::format`]'s text.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

/// systemd's variable naming its notify socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// An unbound datagram socket and systemd's address.
pub struct Systemd {
    fd: OwnedFd,
    addr: UnixAddr,
    /// The variable's value, for messages.
    shown: String,
}

impl fmt::Debug for Systemd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Systemd")
            .field("fd", &self.fd)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Systemd {
    /// The sender for `value` as in `$NOTIFY_SOCKET`: an absolute path or `@name`.
    ///
    /// # Errors
    /// Anything else (as `sd_notify(3)`, which reads only those two forms as unix
    /// sockets), an address too long, or no socket: the reason, for an "ignoring
    /// NOTIFY_SOCKET=..." line.
    pub fn open(value: &str) -> Result<Systemd, String> {
        let addr = if let Some(name) = value.strip_prefix('@') {
            UnixAddr::new_abstract(name.as_bytes())
        } else if value.starts_with('/') {
            UnixAddr::new(value)
        } else {
            return Err("not an absolute path or @abstract name".to_owned());
        }
        .map_err(|e| format!("bad socket address ({e})"))?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("cannot create a socket ({e})"))?;
        Ok(Systemd {
            fd,
            addr,
            shown: value.to_owned(),
        })
    }

    /// Send `text` as one datagram. Never blocks (`MSG_DONTWAIT`) and never raises
    /// `SIGPIPE`; a send interrupted by a signal is retried.
    ///
    /// # Errors
    /// The send failed (systemd gone, its queue full): the caller logs it.
    pub fn send(&self, text: &str) -> Result<(), Errno> {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        loop {
            match socket::sendto(self.fd.as_raw_fd(), text.as_bytes(), &self.addr, flags) {
                Err(Errno::EINTR) => {}
                other => return other.map(drop),
            }
        }
    }

    /// The `$NOTIFY_SOCKET` value this sends to, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn path_and_abstract_targets_receive_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let by_path = UnixDatagram::bind(&path).unwrap();
        let name = format!("rsgi-os-sd-test-{}", std::process::id());
        let abs = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            UnixDatagram::bind_addr(&addr).unwrap()
        };
        let path_value = path.display().to_string();
        let abs_value = format!("@{name}");
        for (value, receiver) in [(&path_value, &by_path), (&abs_value, &abs)] {
            let s = Systemd::open(value).unwrap();
            assert_eq!(s.shown(), value);
            s.send("READY=1\nSTATUS=up\n").unwrap();
            let mut buf = [0u8; 64];
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1\nSTATUS=up\n", "{value}");
        }
    }

    #[test]
    fn unusable_values_are_refused_and_sends_fail_without_blocking() {
        for value in ["", "relative/notify", "vsock:2:1234"] {
            assert_eq!(
                Systemd::open(value).unwrap_err(),
                "not an absolute path or @abstract name",
                "{value}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(Systemd::open(&long)
            .unwrap_err()
            .starts_with("bad socket address"));
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nobody");
        let s = Systemd::open(&gone.display().to_string()).unwrap();
        assert_eq!(s.send("READY=1\n"), Err(Errno::ENOENT));
    }
}
