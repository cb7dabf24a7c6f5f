//! Sockets as the worker holds them: listeners, accepted connections of either family
//! (tokio's, or plain std ones the close path has not handed to tokio), the socket
//! options set on listeners, and the connection's addresses for the CGI variables.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::cgi::ConnInfo;

/// An accepted connection of either family, known to tokio.
pub(super) enum Conn {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain.
    Unix(UnixStream),
}

impl Conn {
    /// Read what the client sent next into `buf`.
    pub(super) async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read_buf(buf).await,
            Conn::Unix(s) => s.read_buf(buf).await,
        }
    }

    /// Write all of `data`.
    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(data).await,
            Conn::Unix(s) => s.write_all(data).await,
        }
    }

    /// Wait until the socket may take more bytes.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.writable().await,
            Conn::Unix(s) => s.writable().await,
        }
    }

    /// The socket's fd.
    pub(super) fn fd(&self) -> RawFd {
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Run a non-blocking write `io` on the socket, clearing tokio's readiness when it
    /// would block (then wait with [`Conn::writable`]).
    pub(super) fn try_write_io<R>(&self, io: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            Conn::Tcp(s) => s.try_io(tokio::io::Interest::WRITABLE, io),
            Conn::Unix(s) => s.try_io(tokio::io::Interest::WRITABLE, io),
        }
    }
}

/// A listening socket of either family, as the close path accepts from it.
pub(super) enum StdListener {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// Unix domain.
    Unix(std::os::unix::net::UnixListener),
}

impl AsRawFd for StdListener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            StdListener::Tcp(l) => l.as_raw_fd(),
            StdListener::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// An accepted connection of either family, not (yet) known to tokio: a plain
/// blocking-mode std stream, since the close path only makes flagged non-blocking calls
/// on it, and most connections never need the reactor.
pub(super) enum StdConn {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix domain.
    Unix(std::os::unix::net::UnixStream),
}

impl StdConn {
    /// The socket's fd.
    pub(super) fn fd(&self) -> RawFd {
        match self {
            StdConn::Tcp(s) => s.as_raw_fd(),
            StdConn::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Whether the last segment of a response may wait for the FIN that closing adds
    /// (`MSG_MORE`), so that the two leave as one packet: data and FIN together save
    /// the client and the server a segment and an ACK each per connection. Only for
    /// TCP, and only when everything the client sent has been read: closing a socket
    /// with unread data resets it, and a reset throws away a response still held back.
    pub(super) fn fin_with_data(&self, all_read: bool) -> bool {
        all_read && matches!(self, StdConn::Tcp(_))
    }

    /// Hand the connection to tokio (non-blocking, registered with the reactor).
    pub(super) fn into_conn(self) -> io::Result<Conn> {
        match self {
            StdConn::Tcp(s) => {
                s.set_nonblocking(true)?;
                Ok(Conn::Tcp(tokio::net::TcpStream::from_std(s)?))
            }
            StdConn::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(Conn::Unix(tokio::net::UnixStream::from_std(s)?))
            }
        }
    }
}

/// Accept one connection (with the peer's address for TCP).
pub(super) async fn accept(
    listener: &AsyncFd<StdListener>,
) -> io::Result<(StdConn, Option<SocketAddr>)> {
    loop {
        let mut guard = listener.readable().await?;
        let accepted = guard.try_io(|l| match l.get_ref() {
            StdListener::Tcp(l) => l.accept().map(|(s, a)| (StdConn::Tcp(s), Some(a))),
            StdListener::Unix(l) => l.accept().map(|(s, _)| (StdConn::Unix(s), None)),
        });
        if let Ok(result) = accepted {
            return result;
        }
    }
}

/// Read what the connection has sent so far into `buf`, without waiting. `Ok(None)`:
/// nothing yet; `Ok(Some(0))`: the client closed.
pub(super) fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `fd` is an open socket (the caller owns it); `buf` is valid for
    // `buf.len()` bytes of writes for the duration of the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    match usize::try_from(n) {
        Ok(n) => Ok(Some(n)),
        Err(_) => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Set TCP_NODELAY on a TCP listening socket. Linux copies it to every socket accepted
/// from it, which saves a setsockopt(2) per connection (with `Connection: close`, one of
/// the 9 syscalls a request took). False if it could not be set.
pub(super) fn listener_nodelay(listener: &std::net::TcpListener) -> bool {
    set_tcp_option(listener, libc::TCP_NODELAY, 1)
}

/// Ask the kernel to hand out connections of `listener` only once they have data
/// (`TCP_DEFER_ACCEPT`, as nginx's `deferred`). False if it could not be set.
pub(super) fn defer_accept(listener: &std::net::TcpListener) -> bool {
    // The value is in seconds: after it, a connection that sent nothing is handed out
    // anyway.
    set_tcp_option(listener, libc::TCP_DEFER_ACCEPT, 1)
}

/// Set the `IPPROTO_TCP` option `name` of `listener` to `value`; false if it failed.
fn set_tcp_option(listener: &std::net::TcpListener, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: the fd is open (we hold the listener); the option value points to a
    // c_int that lives across the call, and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// A TCP listener's own address as `(SERVER_NAME, SERVER_PORT)` fallbacks, formatted
/// once per accept loop rather than per connection.
pub(super) fn local_names(local: Option<SocketAddr>) -> (Bytes, Bytes) {
    match local {
        Some(l) => (
            Bytes::from(l.ip().to_string()),
            Bytes::from(l.port().to_string()),
        ),
        None => (Bytes::from_static(b"localhost"), Bytes::new()),
    }
}

/// The addresses of a TCP connection from `peer`.
pub(super) fn tcp_info((server_name, server_port): &(Bytes, Bytes), peer: SocketAddr) -> ConnInfo {
    ConnInfo {
        server_name: server_name.clone(),
        server_port: server_port.clone(),
        remote_addr: Bytes::from(peer.ip().to_string()),
        remote_port: Bytes::from(peer.port().to_string()),
    }
}

/// The addresses of a unix-socket connection.
pub(super) fn unix_info() -> ConnInfo {
    ConnInfo {
        server_name: Bytes::from_static(b"localhost"),
        server_port: Bytes::new(),
        remote_addr: Bytes::new(),
        remote_port: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listener_nodelay(&listener));
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
