//! The seam between the actor and the OS: the two effects the actor causes on
//! processes, starting a generation and signalling a pid ([`Effects`]). rsgid uses
//! [`OsEffects`]; the actor's unit tests use a fake that records what it was asked.
//!
//! [`OsEffects::spawn`] starts the process ([`crate::spawn`]) and the tasks that turn
//! what the child does into messages for the actor: one per output pipe
//! ([`Msg::Output`], line by line), one reading its notify socket ([`Msg::Notified`]),
//! one waiting for its exit ([`Msg::Exited`]).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsgi_os::listen::BoundSocket;
use rsgi_proto::notify;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::lifecycle::{ExitInfo, Gen, Pid, Sig};
use crate::msg::Msg;
use crate::scan::{VassalFile, VassalName};

/// One generation to start.
#[derive(Debug, Clone, Copy)]
pub struct SpawnRequest<'a> {
    /// The vassal.
    pub name: &'a VassalName,
    /// Which generation.
    pub gen: Gen,
    /// Its file.
    pub file: &'a VassalFile,
    /// Working directory (the vassal directory).
    pub cwd: &'a Path,
    /// The listening sockets, in order.
    pub sockets: &'a [Arc<BoundSocket>],
    /// Drop to this uid/gid (when rsgid runs as root).
    pub user: Option<(u32, u32)>,
}

/// What the actor does to processes. Outcomes come back as messages on the actor's
/// mailbox, never as return values (except a failure to start at all).
pub trait Effects {
    /// Start one generation; `Err` is the reason it could not start.
    fn spawn(&mut self, req: &SpawnRequest<'_>) -> Result<Pid, String>;
    /// Send `sig` to `pid` (a pid of 0 or less is ignored).
    fn signal(&mut self, pid: Pid, sig: Sig);
    /// Take over a generation the previous rsgid image started (an upgrade in place):
    /// read its output and notify socket from the handed-over fds and wait for its exit,
    /// as [`Effects::spawn`] does for a new one. The default refuses (for fakes).
    fn adopt(
        &mut self,
        name: &VassalName,
        gen: Gen,
        pid: Pid,
        fds: crate::upgrade::ChildFdNumbers,
    ) -> Result<(), String> {
        let _ = (name, gen, pid, fds);
        Err("adopting a process is not supported here".into())
    }
    /// Watch a sleeping vassal's listening sockets and send [`Msg::Wake`] with `seq`
    /// once a connection waits on one of them (at once if one already does). The
    /// handles stop the watch. The default watches nothing (for fakes).
    fn watch(
        &mut self,
        name: &VassalName,
        seq: u64,
        sockets: &[Arc<BoundSocket>],
    ) -> Result<Vec<tokio::task::AbortHandle>, String> {
        let _ = (name, seq, sockets);
        Ok(Vec::new())
    }
}

/// The real effects: processes, pipes and signals.
pub struct OsEffects {
    rsgi: PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
}

impl OsEffects {
    /// Effects that start `rsgi` and report to the actor on `tx`.
    pub fn new(rsgi: PathBuf, tx: mpsc::UnboundedSender<Msg>) -> OsEffects {
        OsEffects { rsgi, tx }
    }
}

impl Effects for OsEffects {
    fn spawn(&mut self, req: &SpawnRequest<'_>) -> Result<Pid, String> {
        let spec = crate::spawn::SpawnSpec {
            rsgi: &self.rsgi,
            config: &req.file.path,
            kind: req.file.kind,
            cwd: req.cwd,
            sockets: req.sockets,
            user: req.user,
        };
        let crate::spawn::Spawned { mut child, notify } = crate::spawn::spawn(&spec)
            .map_err(|e| format!("cannot start {}: {e}", self.rsgi.display()))?;
        let os_pid = child.id().unwrap_or(0);
        // rsgid waits for it itself (below): a PID 1 reaper must leave it alone.
        crate::reaper::adopt(os_pid);
        let pid = Pid(i32::try_from(os_pid).unwrap_or(0));
        // Duplicates kept for an upgrade in place (crate::upgrade).
        crate::upgrade::remember_child(
            pid.0,
            crate::upgrade::ChildFds {
                notify: crate::upgrade::dup(&notify),
                stdout: child.stdout.as_ref().and_then(crate::upgrade::dup),
                stderr: child.stderr.as_ref().and_then(crate::upgrade::dup),
            },
        );
        let (name, gen) = (req.name.clone(), req.gen);
        if let Some(out) = child.stdout.take() {
            forward_lines(name.clone(), gen, out, self.tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(name.clone(), gen, err, self.tx.clone());
        }
        watch_notify(name.clone(), gen, notify, self.tx.clone());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitInfo {
                        code: status.code(),
                        signal: status.signal(),
                    }
                }
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            crate::reaper::release(os_pid);
            crate::upgrade::forget_child(pid.0);
            let _ = tx.send(Msg::Exited {
                name,
                gen,
                pid,
                exit,
            });
        });
        Ok(pid)
    }

    fn adopt(
        &mut self,
        name: &VassalName,
        gen: Gen,
        pid: Pid,
        fds: crate::upgrade::ChildFdNumbers,
    ) -> Result<(), String> {
        // SAFETY (each `own`): the previous image handed these numbers over for this
        // child, and each is taken once, here.
        let own = |fd: Option<std::os::fd::RawFd>| fd.map(|n| unsafe { crate::upgrade::own(n) });
        let (notify, stdout, stderr) = (own(fds.notify), own(fds.stdout), own(fds.stderr));
        crate::upgrade::remember_child(
            pid.0,
            crate::upgrade::ChildFds {
                notify: notify.as_ref().and_then(crate::upgrade::dup),
                stdout: stdout.as_ref().and_then(crate::upgrade::dup),
                stderr: stderr.as_ref().and_then(crate::upgrade::dup),
            },
        );
        if let Ok(os_pid) = u32::try_from(pid.0) {
            crate::reaper::adopt(os_pid);
        }
        for out in [stdout, stderr].into_iter().flatten() {
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(out)
                .map_err(|e| format!("cannot read the output of pid {pid}: {e}"))?;
            forward_lines(name.clone(), gen, pipe, self.tx.clone());
        }
        if let Some(notify) = notify {
            watch_notify(name.clone(), gen, notify, self.tx.clone());
        }
        let (name, tx) = (name.clone(), self.tx.clone());
        tokio::spawn(async move {
            let (code, signal) = crate::upgrade::wait_child(pid.0).await;
            if let Ok(os_pid) = u32::try_from(pid.0) {
                crate::reaper::release(os_pid);
            }
            crate::upgrade::forget_child(pid.0);
            let _ = tx.send(Msg::Exited {
                name,
                gen,
                pid,
                exit: ExitInfo { code, signal },
            });
        });
        Ok(())
    }

    fn watch(
        &mut self,
        name: &VassalName,
        seq: u64,
        sockets: &[Arc<BoundSocket>],
    ) -> Result<Vec<tokio::task::AbortHandle>, String> {
        use std::os::fd::AsFd;
        use tokio::io::unix::AsyncFd;
        let mut handles = Vec::new();
        for s in sockets {
            // A duplicate, so that dropping the watch (epoll deregistration, close)
            // leaves the socket itself alone. Its flags are shared, so none is changed:
            // readiness needs no O_NONBLOCK, and nothing is ever read from it.
            let watched = s
                .listener
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| e.to_string())
                .and_then(|fd| {
                    // SAFETY: the AsyncFd owns this OwnedFd, so the fd stays open and
                    // names the same socket until the AsyncFd is dropped.
                    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| format!("cannot watch {}: {e}", s.addr));
            let watched = match watched {
                Ok(w) => w,
                Err(e) => {
                    handles.iter().for_each(tokio::task::AbortHandle::abort);
                    return Err(e);
                }
            };
            let (name, tx) = (name.clone(), self.tx.clone());
            let task = tokio::spawn(async move {
                // A listening socket is readable when a connection waits in its
                // backlog; epoll reports one that already waits at registration.
                if watched.readable().await.is_ok() {
                    let _ = tx.send(Msg::Wake { name, seq });
                }
            });
            handles.push(task.abort_handle());
        }
        Ok(handles)
    }

    fn signal(&mut self, pid: Pid, sig: Sig) {
        use nix::sys::signal::Signal;
        let s = match sig {
            Sig::Term => Signal::SIGTERM,
            Sig::Kill => Signal::SIGKILL,
        };
        if pid.0 > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.0), s);
        }
    }
}

/// Forward each line of a vassal's output to the actor.
fn forward_lines<R>(name: VassalName, gen: Gen, reader: R, tx: mpsc::UnboundedSender<Msg>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx
                .send(Msg::Output {
                    name: name.clone(),
                    gen,
                    line,
                })
                .is_err()
            {
                return;
            }
        }
    });
}

/// Read notify packets from a generation's socket, with any fds passed along. (A
/// SEQPACKET socket reads like a datagram socket; a zero-length read is the vassal
/// closing its end.)
fn watch_notify(name: VassalName, gen: Gen, fd: OwnedFd, tx: mpsc::UnboundedSender<Msg>) {
    tokio::spawn(async move {
        let std_socket = std::os::unix::net::UnixDatagram::from(fd);
        if std_socket.set_nonblocking(true).is_err() {
            return;
        }
        let Ok(socket) = tokio::net::UnixDatagram::from_std(std_socket) else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        loop {
            let received = socket
                .async_io(tokio::io::Interest::READABLE, || {
                    recv_with_fds(&socket, &mut buf)
                })
                .await;
            let Ok((n, fds)) = received else { return };
            if n == 0 {
                return;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            let msgs = notify::parse(&text);
            if tx
                .send(Msg::Notified {
                    name: name.clone(),
                    gen,
                    msgs,
                    fds,
                })
                .is_err()
            {
                return;
            }
        }
    });
}

/// One `recvmsg(2)`: the packet and the fds that came with it (close-on-exec).
fn recv_with_fds(
    socket: &tokio::net::UnixDatagram,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for raw in received {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else
                // owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    Ok((msg.bytes, fds))
}
