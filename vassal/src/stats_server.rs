//! The `stats` server, one for both process models: uWSGI's JSON written to each
//! client, then the connection closed (as uWSGI does; uwsgitop reads until EOF), with
//! uWSGI's HTTP header first under `stats-http`.
//!
//! - `StatsListener`: binding the stats address; the master answers on it from its
//!   `poll(2)` loop (`StatsListener::answer`, blocking, at most a second per read or
//!   write).
//! - `SingleStats`: the single-process server (no master) answers on a task of its
//!   own tokio runtime.
//! - `socket_infos`: the listening sockets as the stats show them, with a fresh
//!   accept-queue sample.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use rsgi_proto::config::VassalConfig;

use crate::listen::BoundSocket;
use crate::shm::Shm;

/// A `stats` listener, bound and non-blocking: the master answers each client with the
/// JSON and closes (as uWSGI does); without a master, [`SingleStats`] serves it on a
/// task.
pub(crate) enum StatsListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl StatsListener {
    /// Bind `addr` as uWSGI reads it: a path (anything with a `/`, or `unix:PATH`), an
    /// abstract name (`@name`), `:PORT` (every IPv4 address) or `HOST:PORT`.
    pub(crate) fn bind(addr: &str) -> std::io::Result<StatsListener> {
        use rsgi_proto::stats_addr::{self, StatsAddr};
        use std::os::unix::fs::FileTypeExt;
        let parsed = stats_addr::parse(addr)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = match parsed {
            StatsAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                StatsListener::Unix(std::os::unix::net::UnixListener::bind_addr(&a)?)
            }
            StatsAddr::Unix(path) => {
                // The path is replaced, as uWSGI does: a new generation (a reload by
                // rsgid) takes the stats over from the one it replaces.
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(&path)?;
                }
                StatsListener::Unix(std::os::unix::net::UnixListener::bind(&path)?)
            }
            StatsAddr::Tcp { host, port } => {
                StatsListener::Tcp(std::net::TcpListener::bind((host.as_str(), port))?)
            }
        };
        match &listener {
            StatsListener::Tcp(l) => l.set_nonblocking(true)?,
            StatsListener::Unix(l) => l.set_nonblocking(true)?,
        }
        Ok(listener)
    }

    /// The listening fd (for `poll(2)`).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            StatsListener::Tcp(l) => l.as_fd(),
            StatsListener::Unix(l) => l.as_fd(),
        }
    }

    /// Accept one client and answer it (blocking, at most a second per read or write).
    pub(crate) fn answer(&self, json: &[u8], http: bool) {
        use std::io::{Read, Write};
        let timeout = Some(Duration::from_secs(1));
        let stream: Option<Box<dyn StatsConn>> = match self {
            StatsListener::Tcp(l) => l.accept().ok().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                let _ = s.set_write_timeout(timeout);
                let _ = s.set_read_timeout(timeout);
                Box::new(s) as Box<dyn StatsConn>
            }),
            StatsListener::Unix(l) => l.accept().ok().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                let _ = s.set_write_timeout(timeout);
                let _ = s.set_read_timeout(timeout);
                Box::new(s) as Box<dyn StatsConn>
            }),
        };
        let Some(mut stream) = stream else { return };
        let body = if http {
            // uWSGI reads the client's request first (`uwsgi_send_http_stats`): closing
            // a TCP socket with unread bytes resets the connection, and the client loses
            // the answer.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !request_head_read(&head) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(_) => return,
                }
            }
            crate::stats::http_wrap(std::str::from_utf8(json).unwrap_or("{}"))
        } else {
            json.to_vec()
        };
        let _ = stream.write_all(&body);
    }
}

/// A stats client connection.
trait StatsConn: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> StatsConn for T {}

/// Whether a stats client's HTTP request head (read to be dropped) is all read: up to
/// the blank line, or 8 KiB (a stats request is one short GET).
pub(crate) fn request_head_read(head: &[u8]) -> bool {
    head.len() >= 8192 || head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The listening sockets as the stats show them (`name`, `proto`, the fd whose accept
/// queue is sampled now); the first one's queue is also recorded as the master's.
pub(crate) fn socket_infos<'a>(
    shm: &Shm,
    sockets: impl IntoIterator<Item = (String, String, Option<BorrowedFd<'a>>)>,
) -> Vec<crate::stats::SocketInfo> {
    let infos: Vec<_> = sockets
        .into_iter()
        .map(|(name, proto, fd)| {
            let q = fd.and_then(crate::stats::listen_queue);
            crate::stats::SocketInfo {
                name,
                proto,
                queue: q.map_or(0, |q| q.queue),
                max_queue: q.map_or(0, |q| q.max_queue),
            }
        })
        .collect();
    if let Some(q) = infos.first() {
        shm.master().set_listen_queue(q.queue, q.max_queue);
    }
    infos
}

/// The `stats` server of a single-process server (no master): uWSGI's JSON with this
/// process as the master and its one worker, written to each client, then closed (as
/// uWSGI does; uwsgitop reads until EOF). With `stats-http`, uWSGI's HTTP header first.
pub(crate) struct SingleStats {
    listener: StatsListener,
    http: bool,
    shm: Arc<Shm>,
    id: crate::shm::WorkerId,
    threads: usize,
    start: u64,
    /// The listening sockets (name, protocol, a duplicate of the fd for `TCP_INFO`).
    sockets: Vec<(String, String, Option<std::os::fd::OwnedFd>)>,
}

impl SingleStats {
    /// Bind `addr` (see [`StatsListener::bind`]).
    pub(crate) fn bind(
        addr: &str,
        config: &VassalConfig,
        sockets: &[BoundSocket],
        shm: Arc<Shm>,
        id: crate::shm::WorkerId,
    ) -> std::io::Result<SingleStats> {
        Ok(SingleStats {
            listener: StatsListener::bind(addr)?,
            http: config.stats_http,
            shm,
            id,
            threads: config.threads as usize,
            start: crate::shm::epoch_secs(),
            sockets: sockets
                .iter()
                .map(|s| {
                    (
                        s.addr.to_string(),
                        s.protocol.as_str().to_owned(),
                        s.listener.as_fd().try_clone_to_owned().ok(),
                    )
                })
                .collect(),
        })
    }

    /// The document, with fresh memory and accept-queue samples.
    fn render(&self) -> Vec<u8> {
        let sockets = socket_infos(
            &self.shm,
            self.sockets.iter().map(|(name, proto, fd)| {
                (
                    name.clone(),
                    proto.clone(),
                    fd.as_ref().map(|fd| fd.as_fd()),
                )
            }),
        );
        if let (Some(slot), Some(m)) = (
            self.shm.slot(self.id),
            crate::stats::proc_memory(nix::unistd::getpid()),
        ) {
            slot.set_memory(m.rss, m.vsz);
        }
        let info = crate::stats::MasterInfo::for_this_process(
            self.start,
            self.threads,
            sockets,
            self.shm.master().snapshot(),
        );
        let json = crate::stats::render(&info, &self.shm.snapshots());
        if self.http {
            crate::stats::http_wrap(&json)
        } else {
            json.into_bytes()
        }
    }

    /// Answer every client until the runtime ends.
    pub(crate) async fn serve(self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        trait StatsStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
        impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> StatsStream for T {}
        enum Listener {
            Tcp(tokio::net::TcpListener),
            Unix(tokio::net::UnixListener),
        }
        let listener = match &self.listener {
            StatsListener::Tcp(l) => l
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std)
                .map(Listener::Tcp),
            StatsListener::Unix(l) => l
                .try_clone()
                .and_then(tokio::net::UnixListener::from_std)
                .map(Listener::Unix),
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                crate::log::line(format_args!("rsgi: stats: {e}; no stats server"));
                return;
            }
        };
        loop {
            let accepted: std::io::Result<Box<dyn StatsStream>> = match &listener {
                Listener::Tcp(l) => l.accept().await.map(|(s, _)| Box::new(s) as _),
                Listener::Unix(l) => l.accept().await.map(|(s, _)| Box::new(s) as _),
            };
            let Ok(mut stream) = accepted else {
                // EMFILE and friends: wait a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let body = self.render();
            let http = self.http;
            tokio::spawn(async move {
                let write = async {
                    if http {
                        // As uWSGI: read the request first. Closing a TCP socket with
                        // unread bytes resets it, and the client loses the answer.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !request_head_read(&head) {
                            match stream.read(&mut buf).await? {
                                0 => break,
                                n => head.extend_from_slice(&buf[..n]),
                            }
                        }
                    }
                    stream.write_all(&body).await?;
                    stream.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
            });
        }
    }
}
