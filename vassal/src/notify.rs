//! Vassal -> supervisor messages: systemd's `sd_notify` protocol, to systemd and/or to the
//! emperor `rsgid`.
//!
//! # What
//!
//! A [`Notifier`] sends [`Message`]s (`READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `STATUS=...`) to up to two supervisors:
//!
//! - **systemd**, through `$NOTIFY_SOCKET`: a `SOCK_DGRAM` unix socket at a path, or in
//!   the abstract namespace when the value starts with `@`.
//! - **rsgid**, through `$RSGI_NOTIFY_FD`: an inherited fd, one end of a
//!   `socketpair(AF_UNIX, SOCK_SEQPACKET)` made by the emperor. Each [`Notifier::send`] is
//!   one packet. The emperor never writes to it, so the fd turning readable means EOF: the
//!   emperor is gone and the vassal must exit rather than live on as an orphan
//!   ([`Notifier::emperor_fd`], [`Notifier::emperor_gone`]).
//!
//! # How
//!
//! [`Notifier::from_env`] reads both variables and removes them from the environment, so
//! that processes the Python app spawns do not report to our supervisor; the emperor fd
//! is made close-on-exec for the same reason. Sending is best effort: it never blocks
//! (`MSG_DONTWAIT`), never raises SIGPIPE (`MSG_NOSIGNAL`), and the first failure is
//! logged once; none is fatal. [`Notifier::from_vars`] is the same without the
//! environment, for tests.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{self, MsgFlags};
use rsgi_proto::notify::{format, Message, NOTIFY_FD_ENV};

use rsgi_os::sd_notify::Systemd;
/// systemd's variable naming its notify socket.
pub use rsgi_os::sd_notify::NOTIFY_SOCKET_ENV;

/// Sends notify messages to systemd and/or the emperor; does nothing when neither is there.
#[derive(Debug, Default)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET`: our datagram socket and systemd's address.
    systemd: Option<Systemd>,
    /// `$RSGI_NOTIFY_FD`: the SEQPACKET socket to the emperor.
    emperor: Option<OwnedFd>,
    /// A send failed and was logged: do not log again.
    warned: AtomicBool,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn none() -> Notifier {
        Notifier::default()
    }

    /// From the environment: `NOTIFY_SOCKET` (systemd) and/or `RSGI_NOTIFY_FD` (rsgid).
    /// Both variables are removed from the environment, and the emperor fd is made
    /// close-on-exec, so Python's children neither inherit nor misuse them. Unusable values
    /// are logged and ignored.
    ///
    /// Call once, while the process is single-threaded (it edits the environment and
    /// takes ownership of the inherited fd).
    pub fn from_env() -> Notifier {
        let socket = std::env::var(NOTIFY_SOCKET_ENV).ok();
        let fd = std::env::var(NOTIFY_FD_ENV).ok();
        // Why this is sound: the caller runs before any other thread exists, so nothing
        // reads the environment concurrently.
        std::env::remove_var(NOTIFY_SOCKET_ENV);
        std::env::remove_var(NOTIFY_FD_ENV);
        let emperor = fd.and_then(|value| match claim_fd(&value) {
            Ok(fd) => Some(fd),
            Err(why) => {
                crate::log::line(format_args!(
                    "rsgi: ignoring {NOTIFY_FD_ENV}={value:?}: {why}"
                ));
                None
            }
        });
        Notifier::from_vars(socket.as_deref(), emperor)
    }

    /// The same as [`Notifier::from_env`] from given values: `notify_socket` as in
    /// `NOTIFY_SOCKET`, `emperor` the socket `RSGI_NOTIFY_FD` names (made close-on-exec).
    pub fn from_vars(notify_socket: Option<&str>, emperor: Option<OwnedFd>) -> Notifier {
        let systemd =
            notify_socket
                .filter(|v| !v.is_empty())
                .and_then(|value| match Systemd::open(value) {
                    Ok(s) => Some(s),
                    Err(why) => {
                        crate::log::line(format_args!(
                            "rsgi: ignoring {NOTIFY_SOCKET_ENV}={value:?}: {why}"
                        ));
                        None
                    }
                });
        if let Some(fd) = &emperor {
            if let Err(e) = set_cloexec(fd) {
                crate::log::line(format_args!(
                    "rsgi: {NOTIFY_FD_ENV}: cannot set close-on-exec: {e}"
                ));
            }
        }
        Notifier {
            systemd,
            emperor,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether there is anyone to notify.
    pub fn is_enabled(&self) -> bool {
        self.systemd.is_some() || self.emperor.is_some()
    }

    /// Send `msgs` as one datagram (systemd) and one packet (emperor). Best effort: never
    /// blocks, never fails; the first error is logged, later ones are not.
    pub fn send(&self, msgs: &[Message]) {
        if !self.is_enabled() || msgs.is_empty() {
            return;
        }
        let text = format(msgs);
        let bytes = text.as_bytes();
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        if let Some(s) = &self.systemd {
            if let Err(e) = s.send(&text) {
                self.warn_once(format_args!("cannot notify systemd at {}: {e}", s.shown()));
            }
        }
        if let Some(fd) = &self.emperor {
            let sent = retry(|| socket::send(fd.as_raw_fd(), bytes, flags));
            if let Err(e) = sent {
                self.warn_once(format_args!(
                    "cannot notify the emperor ({NOTIFY_FD_ENV}): {e}"
                ));
            }
        }
    }

    /// Hand the emperor the vassal's shared counters: the memfd travels as
    /// `SCM_RIGHTS` with one `RSGI_SHM=<slots>` line, so rsgid can map the counters and
    /// serve them as Prometheus metrics without asking the vassal anything. Nothing
    /// happens without an emperor (systemd gets no fds).
    pub fn send_shm(&self, fd: RawFd, slots: usize) {
        let Some(emperor) = &self.emperor else {
            return;
        };
        let text = format(&[Message::Shm(slots)]);
        let iov = [std::io::IoSlice::new(text.as_bytes())];
        let fds = [fd];
        let cmsg = [socket::ControlMessage::ScmRights(&fds)];
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let sent = retry(|| socket::sendmsg::<()>(emperor.as_raw_fd(), &iov, &cmsg, flags, None));
        if let Err(e) = sent {
            self.warn_once(format_args!("cannot pass the counters to the emperor: {e}"));
        }
    }

    /// The emperor socket's fd, for the master to watch: it only ever becomes readable at
    /// EOF, which means the emperor died and this vassal must exit.
    pub fn emperor_fd(&self) -> Option<RawFd> {
        self.emperor.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Without blocking: has the emperor closed its end? `false` when there is no emperor.
    pub fn emperor_gone(&self) -> bool {
        let Some(fd) = &self.emperor else {
            return false;
        };
        let mut byte = [0u8; 1];
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK;
        match retry(|| socket::recv(fd.as_raw_fd(), &mut byte, flags)) {
            // EOF (a SEQPACKET peer never sends empty packets here).
            Ok(0) => true,
            // The emperor sends nothing today; if it ever does, it is alive.
            Ok(_) => false,
            Err(Errno::EAGAIN) => false,
            Err(_) => true,
        }
    }

    fn warn_once(&self, args: std::fmt::Arguments<'_>) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            crate::log::line(format_args!(
                "rsgi: {args} (further notify errors not shown)"
            ));
        }
    }
}

/// Take ownership of the fd number in `RSGI_NOTIFY_FD`.
fn claim_fd(value: &str) -> Result<OwnedFd, String> {
    let fd: RawFd = value
        .trim()
        .parse()
        .map_err(|_| "not a file descriptor number".to_owned())?;
    if fd < 3 {
        return Err("stdin, stdout and stderr cannot be the notify socket".to_owned());
    }
    // SAFETY: F_GETFD only reads the descriptor flags; on a closed fd it fails with EBADF
    // and touches nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err("not an open file descriptor".to_owned());
    }
    // SAFETY: the fd is open (checked above), and rsgid hands it to this process for this
    // purpose alone; the variable has been removed from the environment, so no other code
    // in the process will claim (or close) it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    match socket::getsockopt(&fd, socket::sockopt::SockType) {
        Ok(_) => Ok(fd),
        // Not a socket: give the fd back untouched rather than closing someone's file.
        Err(e) => {
            std::mem::forget(fd);
            Err(format!("not a socket ({e})"))
        }
    }
}

fn set_cloexec(fd: &impl AsFd) -> Result<(), Errno> {
    let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).map(drop)
}

/// Retry a system call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    use rsgi_proto::notify::parse;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixDatagram;

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn recv_packet(fd: &OwnedFd) -> String {
        let mut buf = [0u8; 4096];
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn emperor_socketpair_round_trip() {
        let (ours, emperor) = seqpacket_pair();
        let n = Notifier::from_vars(None, Some(ours));
        assert!(n.is_enabled());
        let first = vec![Message::Ready, Message::Status("serving 4 workers".into())];
        let second = vec![Message::Stopping];
        n.send(&first);
        n.send(&second);
        n.send(&[]);
        // One packet per send: message boundaries survive.
        assert_eq!(parse(&recv_packet(&emperor)), first);
        assert_eq!(parse(&recv_packet(&emperor)), second);
        assert!(!n.emperor_gone());
        let fd = n.emperor.as_ref().unwrap();
        assert_eq!(n.emperor_fd(), Some(fd.as_raw_fd()));
        let flags = nix::fcntl::fcntl(fd, FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn emperor_eof_is_detected_and_send_survives() {
        let (ours, emperor) = seqpacket_pair();
        let n = Notifier::from_vars(None, Some(ours));
        drop(emperor);
        assert!(n.emperor_gone());
        // EPIPE, without SIGPIPE killing the test process; logged once.
        n.send(&[Message::Ready]);
        n.send(&[Message::Ready]);
        assert!(n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn systemd_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(Some(path.to_str().unwrap()), None);
        assert!(n.is_enabled() && n.emperor_fd().is_none() && !n.emperor_gone());
        n.send(&[Message::Ready, Message::MainPid(42)]);
        let mut buf = [0u8; 512];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nMAINPID=42\n");
    }

    #[test]
    fn systemd_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("rsgi-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_vars(Some(&format!("@{name}")), None);
        n.send(&[Message::Reloading]);
        let mut buf = [0u8; 512];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(
            parse(std::str::from_utf8(&buf[..len]).unwrap()),
            [Message::Reloading]
        );
    }

    #[test]
    fn both_targets_and_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let (ours, emperor) = seqpacket_pair();
        let n = Notifier::from_vars(Some(path.to_str().unwrap()), Some(ours));
        n.send(&[Message::Ready]);
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\n");
        assert_eq!(recv_packet(&emperor), "READY=1\n");

        let none = Notifier::none();
        assert!(!none.is_enabled() && none.emperor_fd().is_none());
        none.send(&[Message::Ready]);
    }

    #[test]
    fn unusable_values_are_ignored() {
        // Relative path, empty, missing listener: never fatal.
        assert!(!Notifier::from_vars(Some("relative.sock"), None).is_enabled());
        assert!(!Notifier::from_vars(Some(""), None).is_enabled());
        let gone = Notifier::from_vars(Some("/nonexistent/rsgi/notify.sock"), None);
        gone.send(&[Message::Ready]);
        assert!(gone.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn claim_fd_checks_the_value() {
        assert!(claim_fd("abc").is_err());
        assert!(claim_fd("-1").is_err());
        assert!(claim_fd("2").is_err());
        assert!(claim_fd("1000000").unwrap_err().contains("not an open"));
        // A file, not a socket: refused and left open.
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let raw = file.as_raw_fd();
        assert!(claim_fd(&raw.to_string())
            .unwrap_err()
            .contains("not a socket"));
        assert!(nix::fcntl::fcntl(&file, FcntlArg::F_GETFD).is_ok());
        // A socket we hand over.
        let (ours, _emperor) = seqpacket_pair();
        let raw = ours.into_raw_fd();
        let claimed = claim_fd(&raw.to_string()).unwrap();
        assert_eq!(claimed.as_raw_fd(), raw);
    }
}
