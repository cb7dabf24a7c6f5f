//! Listening sockets: bind what the configuration names, or take the sockets the process
//! inherited.
//!
//! # What
//!
//! [`open_all`] returns one [`BoundSocket`] per listening socket. Every listener is
//! non-blocking and close-on-exec, ready to be handed to the accept loops of the workers
//! (which are forked from the master, so they share the same listening sockets).
//!
//! # How
//!
//! - **Inherited sockets first.** If `LISTEN_FDS` is set (and `LISTEN_PID` is unset or
//!   names this process), fds `3..3+LISTEN_FDS` are listening sockets handed over by
//!   systemd socket activation or by the emperor `rsgid` (which uses the same convention,
//!   so that reloads never close the socket). They replace the configured sockets. Each
//!   fd's protocol comes from `LISTEN_FDNAMES` (`uwsgi` or `http`), else from matching
//!   its local address against `config.sockets`, else uwsgi. The three variables are
//!   removed from the environment so the Python app and its children do not see them.
//! - **Otherwise bind `config.sockets`.** TCP (`host:port`, `:port` = `0.0.0.0`,
//!   `[::1]:port` with `IPV6_V6ONLY`, host names resolved to their first address) with
//!   `SO_REUSEADDR`; unix paths (a stale socket file is replaced, a socket a live server
//!   answers on is refused, any other file is never touched) with `chmod-socket` and
//!   `chown-socket` applied before `listen(2)`; abstract unix sockets as `@name`. The
//!   backlog is `config.listen` (clamped to `SOMAXCONN`, as the kernel would).
//! - [`vacuum`] removes the unix socket files this process created (never inherited ones).
//!
//! Sockets are made with `nix` (`socket`/`bind`/`listen`) rather than `std`, because std
//! cannot set the backlog, `SO_REUSEADDR` before bind, or `IPV6_V6ONLY`.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage,
    UnixAddr,
};
use nix::unistd::{Gid, Uid};
use rsgi_proto::config::{ListenAddr, Protocol, SocketSpec, VassalConfig};

/// The first inherited fd in systemd's socket-activation convention (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// A listening socket, non-blocking and close-on-exec.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket (IPv4 or IPv6).
    Tcp(TcpListener),
    /// A unix-domain stream socket (a path or an abstract name).
    Unix(UnixListener),
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// One listening socket, ready to accept.
#[derive(Debug)]
pub struct BoundSocket {
    /// Protocol spoken on this socket.
    pub protocol: Protocol,
    /// Where it listens: as configured (for TCP with the port actually bound, which
    /// differs for port 0), or as found with `getsockname` for an inherited socket that
    /// matches no configured one.
    pub addr: ListenAddr,
    /// The socket itself.
    pub listener: Listener,
    /// `true` if it came from `LISTEN_FDS` (systemd or `rsgid`), `false` if bound here.
    pub inherited: bool,
    /// The unix socket file this process created, which [`vacuum`] removes. `None` for
    /// TCP, abstract and inherited sockets.
    pub created_path: Option<PathBuf>,
}

/// Why the listening sockets could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Nothing configured and nothing inherited.
    #[error(
        "no socket to listen on: add socket = ..., http-socket = ... to the ini, \
         or --http-socket :8000 on the command line"
    )]
    NoSockets,
    /// A host name did not resolve.
    #[error("cannot resolve {addr}")]
    Resolve {
        /// The configured address.
        addr: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// A host name resolved to nothing.
    #[error("{addr} resolves to no address")]
    NoAddress {
        /// The configured address.
        addr: String,
    },
    /// `socket(2)`, a socket option or the backlog failed.
    #[error("cannot set up socket {addr}: {about}")]
    Socket {
        /// The configured address.
        addr: String,
        /// The step that failed.
        about: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `bind(2)` failed (address in use, permission denied, ...).
    #[error("cannot bind {addr}")]
    Bind {
        /// The configured address.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `listen(2)` failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The configured address.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The directory of a unix socket path does not exist.
    #[error("cannot create unix socket {path}: directory {dir} does not exist")]
    NoParentDir {
        /// The socket path.
        path: PathBuf,
        /// Its parent directory.
        dir: PathBuf,
    },
    /// A unix socket path longer than `sun_path` allows.
    #[error("unix socket path {path} is too long (at most 107 bytes)")]
    PathTooLong {
        /// The socket path.
        path: PathBuf,
    },
    /// A live server answers on the unix socket path.
    #[error("another server is listening on {path}: stop it, or choose another socket path")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket exists at the unix socket path; it is left alone.
    #[error("{path} exists and is not a unix socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The existing file at a unix socket path could not be checked or removed.
    #[error("cannot {about} {path}")]
    Existing {
        /// What was being done: `check existing socket`, `remove stale socket`.
        about: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `chmod-socket` is larger than `0o7777`.
    #[error("chmod-socket = {mode:o}: not a file mode (like 660 or 666)")]
    BadMode {
        /// The mode.
        mode: u32,
    },
    /// `chmod(2)` of a socket file failed.
    #[error("cannot chmod-socket {path} to {mode:o}")]
    Chmod {
        /// The socket path.
        path: PathBuf,
        /// The mode.
        mode: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `chown-socket` names a user or group that does not exist.
    #[error("chown-socket = {spec}: no such {what} {name:?}")]
    UnknownOwner {
        /// The option value.
        spec: String,
        /// `user` or `group`.
        what: &'static str,
        /// The name looked up.
        name: String,
    },
    /// Looking up a `chown-socket` user or group failed.
    #[error("chown-socket = {spec}: cannot look up {what} {name:?}")]
    OwnerLookup {
        /// The option value.
        spec: String,
        /// `user` or `group`.
        what: &'static str,
        /// The name looked up.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `chown(2)` of a socket file failed.
    #[error("cannot chown-socket {path} to {spec}")]
    Chown {
        /// The socket path.
        path: PathBuf,
        /// The option value.
        spec: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS = {value:?} is not a number of file descriptors")]
    BadListenFds {
        /// The variable's value.
        value: String,
    },
    /// An inherited fd is unusable.
    #[error("inherited fd {fd} (LISTEN_FDS): {why}")]
    Inherited {
        /// The fd number.
        fd: RawFd,
        /// What is wrong with it.
        why: String,
    },
}

/// Bind every socket in `config.sockets`, or, if the process inherited sockets through
/// systemd's `LISTEN_FDS` convention, take those instead (and remove `LISTEN_FDS`,
/// `LISTEN_PID` and `LISTEN_FDNAMES` from the environment).
///
/// Must be called while the process has a single thread (it edits the environment).
pub fn open_all(config: &VassalConfig) -> Result<Vec<BoundSocket>, ListenError> {
    let fds = std::env::var_os("LISTEN_FDS");
    let pid = std::env::var_os("LISTEN_PID");
    let names = std::env::var_os("LISTEN_FDNAMES");
    if fds.is_some() {
        // Why this is sound: the caller runs before any other thread exists (the master
        // is single-threaded until it forks), so nothing can read the environment
        // concurrently. Removing the variables keeps the Python app and anything it
        // spawns from claiming fds 3.. as its own.
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let Some(fds) = fds else {
        return bind_all(config);
    };
    let for_us = match pid {
        None => true,
        Some(pid) => {
            pid.to_str().and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id())
        }
    };
    if !for_us {
        return bind_all(config);
    }
    let count: usize = fds
        .to_str()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ListenError::BadListenFds {
            value: fds.to_string_lossy().into_owned(),
        })?;
    if count == 0 {
        return bind_all(config);
    }
    let mut owned = Vec::with_capacity(count);
    for i in 0..count {
        let fd = RawFd::try_from(i)
            .ok()
            .and_then(|i| LISTEN_FDS_START.checked_add(i))
            .ok_or_else(|| ListenError::BadListenFds {
                value: fds.to_string_lossy().into_owned(),
            })?;
        // SAFETY: F_GETFD only reads the descriptor flags; on a closed fd it fails with
        // EBADF and touches nothing.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(ListenError::Inherited {
                fd,
                why: "not an open file descriptor".to_owned(),
            });
        }
        // SAFETY: the fd is open (checked above), and the LISTEN_FDS convention hands fds
        // 3..3+N to this process and nothing else in it: the variables are gone from the
        // environment, so no other code will claim (or close) them.
        owned.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let names = names.map(|n| n.to_string_lossy().into_owned());
    from_fds(owned, names.as_deref(), config)
}

/// Turn inherited listening sockets into [`BoundSocket`]s (the part of [`open_all`] that
/// does not read the environment).
///
/// `names` is `LISTEN_FDNAMES`: colon-separated, one name per fd; `uwsgi` and `http` pick
/// the protocol. Without a usable name the fd's local address is matched against
/// `config.sockets`, and failing that the socket speaks uwsgi. Each fd must be a
/// listening stream socket; it is made non-blocking and close-on-exec.
pub fn from_fds(
    fds: Vec<OwnedFd>,
    names: Option<&str>,
    config: &VassalConfig,
) -> Result<Vec<BoundSocket>, ListenError> {
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    let mut out = Vec::with_capacity(fds.len());
    for (i, fd) in fds.into_iter().enumerate() {
        let raw = fd.as_raw_fd();
        let bad = |why: String| ListenError::Inherited { fd: raw, why };
        let listening = socket::getsockopt(&fd, sockopt::AcceptConn)
            .map_err(|e| bad(format!("not a socket ({e})")))?;
        if !listening {
            return Err(bad("a socket, but not a listening one".to_owned()));
        }
        let ty = socket::getsockopt(&fd, sockopt::SockType)
            .map_err(|e| bad(format!("cannot read its socket type ({e})")))?;
        if ty != SockType::Stream {
            return Err(bad(format!("a {ty:?} socket, not a stream socket")));
        }
        set_nonblocking_cloexec(&fd).map_err(|e| bad(format!("cannot set O_NONBLOCK ({e})")))?;
        let local: SockaddrStorage =
            socket::getsockname(raw).map_err(|e| bad(format!("cannot read its address ({e})")))?;
        let (found, listener) = match local.family() {
            Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
                let sa = sockaddr_to_std(&local)
                    .ok_or_else(|| bad("unreadable inet address".to_owned()))?;
                let addr = ListenAddr::Tcp {
                    host: sa.ip().to_string(),
                    port: sa.port(),
                };
                (addr, Listener::Tcp(TcpListener::from(fd)))
            }
            Some(AddressFamily::Unix) => {
                let addr = local
                    .as_unix_addr()
                    .map(unix_listen_addr)
                    .unwrap_or_else(|| ListenAddr::Unix(PathBuf::new()));
                (addr, Listener::Unix(UnixListener::from(fd)))
            }
            other => return Err(bad(format!("unsupported address family {other:?}"))),
        };
        let configured = matching_spec(&found, config);
        let protocol = names
            .get(i)
            .and_then(|n| protocol_from_name(n))
            .or(configured.map(|s| s.protocol))
            .unwrap_or(Protocol::Uwsgi);
        out.push(BoundSocket {
            protocol,
            addr: configured.map(|s| s.addr.clone()).unwrap_or(found),
            listener,
            inherited: true,
            created_path: None,
        });
    }
    Ok(out)
}

/// Bind every socket in `config.sockets`, ignoring the environment. On error, the unix
/// socket files already created are removed again.
pub fn bind_all(config: &VassalConfig) -> Result<Vec<BoundSocket>, ListenError> {
    if config.sockets.is_empty() {
        return Err(ListenError::NoSockets);
    }
    let mode = config.chmod_socket.map(octal_mode).transpose()?;
    let owner = config
        .chown_socket
        .as_deref()
        .map(resolve_owner)
        .transpose()?;
    let backlog = Backlog::new(
        i32::try_from(config.listen)
            .unwrap_or(i32::MAX)
            .min(libc::SOMAXCONN),
    )
    .unwrap_or(Backlog::MAXCONN);
    let mut out: Vec<BoundSocket> = Vec::with_capacity(config.sockets.len());
    for spec in &config.sockets {
        let bound = match &spec.addr {
            ListenAddr::Tcp { host, port } => bind_tcp(spec, host, *port, backlog),
            ListenAddr::Unix(path) => bind_unix(spec, path, backlog, mode, owner.as_ref()),
        };
        match bound {
            Ok(b) => out.push(b),
            Err(e) => {
                vacuum(&out);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Remove the unix socket files this process created (`vacuum`). Inherited sockets,
/// TCP and abstract sockets are skipped; a file already gone is not an error, and other
/// errors are ignored (this runs on the way out).
pub fn vacuum(sockets: &[BoundSocket]) {
    for path in sockets.iter().filter_map(|s| s.created_path.as_deref()) {
        // Only remove what is still a socket: never a file someone put there since.
        let is_socket = fs::symlink_metadata(path)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        if is_socket {
            let _ = fs::remove_file(path);
        }
    }
}

fn bind_tcp(
    spec: &SocketSpec,
    host: &str,
    port: u16,
    backlog: Backlog,
) -> Result<BoundSocket, ListenError> {
    let shown = spec.addr.to_string();
    let sa = resolve(host, port, &shown)?;
    let setup = |about: &'static str| {
        let addr = shown.clone();
        move |e: Errno| ListenError::Socket {
            addr,
            about,
            source: e.into(),
        }
    };
    let family = if sa.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(setup("socket()"))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(setup("SO_REUSEADDR"))?;
    if sa.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(setup("IPV6_V6ONLY"))?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(sa)).map_err(|e| ListenError::Bind {
        addr: shown.clone(),
        source: e.into(),
    })?;
    socket::listen(&fd, backlog).map_err(|e| ListenError::Listen {
        addr: shown.clone(),
        source: e.into(),
    })?;
    let listener = TcpListener::from(fd);
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    Ok(BoundSocket {
        protocol: spec.protocol,
        addr: ListenAddr::Tcp {
            host: host.to_owned(),
            port,
        },
        listener: Listener::Tcp(listener),
        inherited: false,
        created_path: None,
    })
}

fn resolve(host: &str, port: u16, shown: &str) -> Result<SocketAddr, ListenError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|source| ListenError::Resolve {
            addr: shown.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| ListenError::NoAddress {
            addr: shown.to_owned(),
        })
}

fn bind_unix(
    spec: &SocketSpec,
    path: &Path,
    backlog: Backlog,
    mode: Option<u32>,
    owner: Option<&Owner>,
) -> Result<BoundSocket, ListenError> {
    let shown = spec.addr.to_string();
    let abstract_name = path.as_os_str().as_bytes().strip_prefix(b"@");
    let addr = match abstract_name {
        Some(name) => UnixAddr::new_abstract(name),
        None => UnixAddr::new(path),
    }
    .map_err(|e| match e {
        Errno::ENAMETOOLONG | Errno::EINVAL => ListenError::PathTooLong {
            path: path.to_owned(),
        },
        e => ListenError::Socket {
            addr: shown.clone(),
            about: "socket address",
            source: e.into(),
        },
    })?;
    if abstract_name.is_none() {
        prepare_path(path)?;
    }
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| ListenError::Socket {
        addr: shown.clone(),
        about: "socket()",
        source: e.into(),
    })?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(|e| ListenError::Bind {
        addr: shown.clone(),
        source: e.into(),
    })?;
    let created_path = abstract_name.is_none().then(|| path.to_owned());
    // From here on a file exists that we made: remove it again if a later step fails.
    let finish = || -> Result<(), ListenError> {
        if abstract_name.is_some() {
            return socket::listen(&fd, backlog).map_err(|e| ListenError::Listen {
                addr: shown.clone(),
                source: e.into(),
            });
        }
        set_mode_and_owner(path, mode, owner)?;
        socket::listen(&fd, backlog).map_err(|e| ListenError::Listen {
            addr: shown.clone(),
            source: e.into(),
        })
    };
    if let Err(e) = finish() {
        if created_path.is_some() {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(BoundSocket {
        protocol: spec.protocol,
        addr: spec.addr.clone(),
        listener: Listener::Unix(UnixListener::from(fd)),
        inherited: false,
        created_path,
    })
}

/// Make `path` free for `bind(2)`: the directory must exist; a stale socket is removed; a
/// live socket or any other file is an error ([`crate::sockfile::clear_stale`]).
fn prepare_path(path: &Path) -> Result<(), ListenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(ListenError::NoParentDir {
                path: path.to_owned(),
                dir: dir.to_owned(),
            });
        }
    }
    use crate::sockfile::{clear_stale, StaleError};
    match clear_stale(path) {
        Ok(_) => Ok(()),
        Err(StaleError::InUse) => Err(ListenError::InUse {
            path: path.to_owned(),
        }),
        Err(StaleError::NotASocket) => Err(ListenError::NotASocket {
            path: path.to_owned(),
        }),
        Err(StaleError::Io { about, source }) => Err(ListenError::Existing {
            about,
            path: path.to_owned(),
            source,
        }),
    }
}

/// Apply `chmod-socket` and `chown-socket` to a socket file just bound, never through a
/// symlink: in a directory others can write, the socket file could be swapped for a
/// link to a file of rsgid's (root's) between `bind` and here, and a chmod/chown that
/// follows links would hand that file over. (A symlink at `path` makes the chmod fail
/// and the chown change only the link.)
fn set_mode_and_owner(
    path: &Path,
    mode: Option<u32>,
    owner: Option<&Owner>,
) -> Result<(), ListenError> {
    if let Some(mode) = mode {
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path,
            nix::sys::stat::Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .map_err(|e| ListenError::Chmod {
            path: path.to_owned(),
            mode,
            source: e.into(),
        })?;
    }
    if let Some(owner) = owner {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            owner.uid,
            owner.gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ListenError::Chown {
            path: path.to_owned(),
            spec: owner.spec.clone(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// `chmod-socket` holds the mode itself (the option parser read `666` as octal).
fn octal_mode(mode: u32) -> Result<u32, ListenError> {
    if mode > 0o7777 {
        return Err(ListenError::BadMode { mode });
    }
    Ok(mode)
}

/// A resolved `chown-socket`.
#[derive(Debug, Clone)]
struct Owner {
    spec: String,
    uid: Option<Uid>,
    gid: Option<Gid>,
}

/// `user`, `user:group` or `:group`; names or numbers. Without a group the socket's group
/// is left alone (as uWSGI).
fn resolve_owner(spec: &str) -> Result<Owner, ListenError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup_err = |what: &'static str, name: &str, e: Errno| ListenError::OwnerLookup {
        spec: spec.to_owned(),
        what,
        name: name.to_owned(),
        source: e.into(),
    };
    let unknown = |what: &'static str, name: &str| ListenError::UnknownOwner {
        spec: spec.to_owned(),
        what,
        name: name.to_owned(),
    };
    let uid = match user {
        "" => None,
        u => Some(Uid::from_raw(
            crate::users::uid_of(u)
                .map_err(|e| lookup_err("user", u, e))?
                .ok_or_else(|| unknown("user", u))?,
        )),
    };
    let gid = match group {
        None | Some("") => None,
        Some(g) => Some(Gid::from_raw(
            crate::users::gid_of(g)
                .map_err(|e| lookup_err("group", g, e))?
                .ok_or_else(|| unknown("group", g))?,
        )),
    };
    Ok(Owner {
        spec: spec.to_owned(),
        uid,
        gid,
    })
}

fn set_nonblocking_cloexec(fd: &OwnedFd) -> Result<(), Errno> {
    let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    let fdfl = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    fcntl(fd, FcntlArg::F_SETFD(fdfl | FdFlag::FD_CLOEXEC))?;
    Ok(())
}

fn sockaddr_to_std(ss: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    ss.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

fn unix_listen_addr(ua: &UnixAddr) -> ListenAddr {
    if let Some(path) = ua.path() {
        return ListenAddr::Unix(path.to_owned());
    }
    let mut name = std::ffi::OsString::from("@");
    if let Some(bytes) = ua.as_abstract() {
        name.push(std::ffi::OsStr::from_bytes(bytes));
    }
    ListenAddr::Unix(PathBuf::from(name))
}

/// A protocol named in `LISTEN_FDNAMES`.
fn protocol_from_name(name: &str) -> Option<Protocol> {
    match name {
        "uwsgi" | "socket" | "uwsgi-socket" => Some(Protocol::Uwsgi),
        "http" | "http-socket" => Some(Protocol::Http),
        _ => None,
    }
}

/// The configured socket an inherited socket's local address corresponds to.
fn matching_spec<'a>(found: &ListenAddr, config: &'a VassalConfig) -> Option<&'a SocketSpec> {
    config
        .sockets
        .iter()
        .find(|spec| match (&spec.addr, found) {
            (ListenAddr::Unix(want), ListenAddr::Unix(got)) => {
                want == got
                    || matches!(
                        (fs::canonicalize(want), fs::canonicalize(got)),
                        (Ok(a), Ok(b)) if a == b
                    )
            }
            (
                ListenAddr::Tcp { host, port },
                ListenAddr::Tcp {
                    host: got_host,
                    port: got_port,
                },
            ) => {
                if port != got_port {
                    return false;
                }
                let Ok(got_ip) = got_host.parse::<IpAddr>() else {
                    return false;
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return got_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                }
                if let Ok(ip) = host.parse::<IpAddr>() {
                    return ip == got_ip;
                }
                (host, *port)
                    .to_socket_addrs()
                    .map(|mut addrs| addrs.any(|a| a.ip() == got_ip))
                    .unwrap_or(false)
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpStream, UdpSocket};
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::net::UnixStream;

    fn config(sockets: Vec<SocketSpec>) -> VassalConfig {
        VassalConfig {
            sockets,
            ..VassalConfig::default()
        }
    }

    fn unix(protocol: Protocol, path: &Path) -> SocketSpec {
        SocketSpec {
            protocol,
            addr: ListenAddr::Unix(path.to_owned()),
        }
    }

    fn tcp(protocol: Protocol, host: &str, port: u16) -> SocketSpec {
        SocketSpec {
            protocol,
            addr: ListenAddr::Tcp {
                host: host.to_owned(),
                port,
            },
        }
    }

    fn is_nonblocking(fd: &impl AsFd) -> bool {
        let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        fl.contains(OFlag::O_NONBLOCK)
    }

    fn is_cloexec(fd: &impl AsFd) -> bool {
        let fl = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        fl.contains(FdFlag::FD_CLOEXEC)
    }

    /// Accept one connection on a non-blocking listener, waiting at most a few seconds.
    fn accept_unix(l: &UnixListener) -> UnixStream {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match l.accept() {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no connection");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    #[test]
    fn binds_tcp_on_loopback() {
        let sockets = bind_all(&config(vec![tcp(Protocol::Http, "127.0.0.1", 0)])).unwrap();
        assert_eq!(sockets.len(), 1);
        let s = &sockets[0];
        assert_eq!(s.protocol, Protocol::Http);
        assert!(!s.inherited && s.created_path.is_none());
        let Listener::Tcp(l) = &s.listener else {
            panic!("not tcp")
        };
        assert!(is_nonblocking(l) && is_cloexec(l));
        let port = l.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(
            s.addr,
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port
            }
        );
        assert!(socket::getsockopt(l, sockopt::ReuseAddr).unwrap());
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"hi").unwrap();
    }

    #[test]
    fn binds_tcp_by_host_name_and_ipv6() {
        let sockets = bind_all(&config(vec![tcp(Protocol::Uwsgi, "localhost", 0)])).unwrap();
        assert_eq!(sockets.len(), 1);
        // IPv6 may be disabled in a container: only check it when ::1 exists.
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            let sockets = bind_all(&config(vec![tcp(Protocol::Uwsgi, "::1", 0)])).unwrap();
            let Listener::Tcp(l) = &sockets[0].listener else {
                panic!("not tcp")
            };
            assert!(l.local_addr().unwrap().is_ipv6());
            assert!(socket::getsockopt(l, sockopt::Ipv6V6Only).unwrap());
        }
    }

    #[test]
    fn tcp_address_in_use_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = bind_all(&config(vec![tcp(Protocol::Http, "127.0.0.1", port)])).unwrap_err();
        assert!(matches!(err, ListenError::Bind { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot bind 127.0.0.1:{port}"));
    }

    #[test]
    fn unresolvable_host_is_an_error() {
        let err = bind_all(&config(vec![tcp(
            Protocol::Http,
            "no-such-host.invalid",
            80,
        )]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                ListenError::Resolve { .. } | ListenError::NoAddress { .. }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn binds_unix_and_vacuums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let sockets = bind_all(&config(vec![unix(Protocol::Uwsgi, &path)])).unwrap();
        assert_eq!(sockets[0].created_path.as_deref(), Some(path.as_path()));
        let Listener::Unix(l) = &sockets[0].listener else {
            panic!("not unix")
        };
        assert!(is_nonblocking(l) && is_cloexec(l));
        let mut c = UnixStream::connect(&path).unwrap();
        let mut s = accept_unix(l);
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.set_nonblocking(false).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        vacuum(&sockets);
        assert!(!path.exists());
    }

    #[test]
    fn stale_unix_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listens
        assert!(path.exists());
        let sockets = bind_all(&config(vec![unix(Protocol::Uwsgi, &path)])).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(sockets);
    }

    #[test]
    fn live_unix_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.sock");
        let _live = UnixListener::bind(&path).unwrap();
        let err = bind_all(&config(vec![unix(Protocol::Uwsgi, &path)])).unwrap_err();
        assert!(matches!(err, ListenError::InUse { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("another server is listening on "));
        assert!(err.to_string().contains("live.sock"));
        assert!(path.exists(), "a live socket must never be removed");
    }

    #[test]
    fn non_socket_file_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious.txt");
        fs::write(&path, "data").unwrap();
        let err = bind_all(&config(vec![unix(Protocol::Uwsgi, &path)])).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket { .. }), "{err:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("app.sock");
        let err = bind_all(&config(vec![unix(Protocol::Uwsgi, &path)])).unwrap_err();
        assert!(matches!(err, ListenError::NoParentDir { .. }), "{err:?}");
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn too_long_path_is_named() {
        let path = PathBuf::from(format!("/tmp/{}.sock", "x".repeat(200)));
        let err = bind_all(&config(vec![unix(Protocol::Uwsgi, &path)])).unwrap_err();
        assert!(matches!(err, ListenError::PathTooLong { .. }), "{err:?}");
    }

    #[test]
    fn mode_and_owner_never_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "secret").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("app.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // The socket file swapped for a link: the chmod fails, the target keeps its mode.
        let e = set_mode_and_owner(&link, Some(0o666), None).unwrap_err();
        assert!(matches!(e, ListenError::Chmod { .. }), "{e}");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // The chown changes the link at most, never the target.
        let before = fs::metadata(&target).unwrap();
        let other = Owner {
            spec: "65534:65534".into(),
            uid: Some(Uid::from_raw(65534)),
            gid: Some(Gid::from_raw(65534)),
        };
        let _ = set_mode_and_owner(&link, None, Some(&other));
        let after = fs::metadata(&target).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }

    #[test]
    fn chmod_and_chown_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mode.sock");
        let mut cfg = config(vec![unix(Protocol::Uwsgi, &path)]);
        cfg.chmod_socket = Some(0o660);
        let me = nix::unistd::getuid();
        let my_group = nix::unistd::getgid();
        cfg.chown_socket = Some(format!("{me}:{my_group}"));
        let _sockets = bind_all(&cfg).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
    }

    #[test]
    fn chown_by_name_resolves() {
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap();
        let owner = resolve_owner(&me.name).unwrap();
        assert_eq!(owner.uid, Some(me.uid));
        assert_eq!(owner.gid, None);
        let err = resolve_owner("no-such-user-rsgi").unwrap_err();
        assert!(
            matches!(err, ListenError::UnknownOwner { what: "user", .. }),
            "{err:?}"
        );
        let err = resolve_owner("0:no-such-group-rsgi").unwrap_err();
        assert!(
            matches!(err, ListenError::UnknownOwner { what: "group", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn bad_chmod_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let mut cfg = config(vec![unix(Protocol::Uwsgi, &path)]);
        cfg.chmod_socket = Some(0o17777);
        assert!(matches!(
            bind_all(&cfg),
            Err(ListenError::BadMode { mode: 0o17777 })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn octal_modes() {
        assert_eq!(octal_mode(0o666).unwrap(), 0o666);
        assert_eq!(octal_mode(0o2775).unwrap(), 0o2775);
        assert_eq!(octal_mode(0).unwrap(), 0);
        assert!(octal_mode(0o17777).is_err());
    }

    #[test]
    fn failure_removes_sockets_already_created() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.sock");
        let taken = dir.path().join("taken.sock");
        let _live = UnixListener::bind(&taken).unwrap();
        let cfg = config(vec![
            unix(Protocol::Uwsgi, &first),
            unix(Protocol::Uwsgi, &taken),
        ]);
        assert!(matches!(bind_all(&cfg), Err(ListenError::InUse { .. })));
        assert!(!first.exists());
    }

    #[test]
    fn abstract_unix_socket() {
        let name = format!("@rsgi-test-{}", std::process::id());
        let sockets = bind_all(&config(vec![unix(Protocol::Http, Path::new(&name))])).unwrap();
        assert!(sockets[0].created_path.is_none());
        let Listener::Unix(l) = &sockets[0].listener else {
            panic!("not unix")
        };
        let local = l.local_addr().unwrap();
        use std::os::linux::net::SocketAddrExt;
        assert_eq!(local.as_abstract_name(), Some(&name.as_bytes()[1..]));
    }

    #[test]
    fn no_sockets_gives_a_hint() {
        let err = bind_all(&VassalConfig::default()).unwrap_err();
        assert!(err.to_string().contains("--http-socket :8000"), "{err}");
    }

    #[test]
    fn inherited_with_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inh.sock");
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let u = UnixListener::bind(&path).unwrap();
        let fds = vec![OwnedFd::from(t), OwnedFd::from(u)];
        let sockets = from_fds(fds, Some("http:uwsgi"), &VassalConfig::default()).unwrap();
        assert_eq!(sockets.len(), 2);
        assert_eq!(sockets[0].protocol, Protocol::Http);
        assert_eq!(sockets[1].protocol, Protocol::Uwsgi);
        assert!(sockets
            .iter()
            .all(|s| s.inherited && s.created_path.is_none()));
        assert!(sockets
            .iter()
            .all(|s| is_nonblocking(&s.listener) && is_cloexec(&s.listener)));
        assert_eq!(sockets[1].addr, ListenAddr::Unix(path.clone()));
        // Inherited sockets are never vacuumed.
        vacuum(&sockets);
        assert!(path.exists());
    }

    #[test]
    fn inherited_matched_against_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let u = UnixListener::bind(&path).unwrap();
        let cfg = config(vec![
            unix(Protocol::Http, &path),
            tcp(Protocol::Http, "127.0.0.1", port),
        ]);
        let fds = vec![OwnedFd::from(u), OwnedFd::from(t), OwnedFd::from(other)];
        // "unknown" is systemd's default name: no protocol information.
        let sockets = from_fds(fds, Some("unknown"), &cfg).unwrap();
        assert_eq!(sockets[0].protocol, Protocol::Http);
        assert_eq!(sockets[1].protocol, Protocol::Http);
        assert_eq!(sockets[1].addr, cfg.sockets[1].addr);
        // Matches nothing: uwsgi, with the address as found.
        assert_eq!(sockets[2].protocol, Protocol::Uwsgi);
        assert!(matches!(&sockets[2].addr, ListenAddr::Tcp { host, .. } if host == "127.0.0.1"));
    }

    #[test]
    fn inherited_non_listening_is_refused() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = from_fds(vec![OwnedFd::from(udp)], None, &VassalConfig::default()).unwrap_err();
        assert!(matches!(err, ListenError::Inherited { .. }), "{err:?}");

        let (a, _b) = UnixStream::pair().unwrap();
        let err = from_fds(vec![OwnedFd::from(a)], None, &VassalConfig::default()).unwrap_err();
        assert!(err.to_string().contains("not a listening one"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join("f")).unwrap();
        let err = from_fds(vec![OwnedFd::from(f)], None, &VassalConfig::default()).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
