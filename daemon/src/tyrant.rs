//! Tyrant mode's privilege separation: reading a vassal file and binding its sockets
//! with the rights of the file's owner, never root's.
//!
//! In tyrant mode a vassal file belongs to an unprivileged user, so anything rsgid does
//! on its behalf must be done with that user's rights: an `include` of `/etc/shadow`
//! must fail as it would for the user, and `socket = 127.0.0.1:80` or a socket path in
//! a root-only directory must be refused. rsgid (root) therefore never does this itself:
//! it starts a short-lived helper, its own binary (`/proc/self/exe`, so an upgraded
//! binary on disk does not matter) with [`HELPER_ARG`], as the owner's uid/gid with no
//! supplementary groups. The helper does one job and answers on its stdout, which is a
//! `SOCK_SEQPACKET` socket: one JSON [`Answer`], with the bound listening sockets
//! attached as `SCM_RIGHTS` for a bind. The helper is bounded by [`HELPER_DEADLINE`]
//! (a FIFO `include` cannot hang rsgid): past it the helper is killed.
//!
//! Written by hand (rather than with a privilege-separation crate) because it is one
//! request and one answer over a socketpair, with the socket code rsgid already has.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use rsgi_os::listen::BoundSocket;
use rsgi_proto::config::{ListenAddr, Protocol, SocketSpec, VassalConfig};
use serde::{Deserialize, Serialize};

/// The first argument that makes `rsgid` run as the helper instead of the emperor.
pub const HELPER_ARG: &str = "--tyrant-helper";

/// How long the helper may take before it is killed and the job counts as failed.
pub const HELPER_DEADLINE: Duration = Duration::from_secs(5);

/// The most sockets one vassal may have bound through the helper.
const MAX_FDS: usize = 64;

/// The largest answer (a loaded config's socket options; a few hundred bytes).
const MAX_ANSWER: usize = 256 * 1024;

/// A socket option as text (`protocol`, `addr` as `ListenAddr` displays it).
#[derive(Debug, Serialize, Deserialize)]
struct Socket {
    protocol: String,
    addr: String,
}

/// What the config options rsgid itself uses look like after the helper read the file.
#[derive(Debug, Serialize, Deserialize)]
struct Options {
    sockets: Vec<Socket>,
    chmod_socket: Option<u32>,
    chown_socket: Option<String>,
    listen: u32,
    /// The files the vassal file included, with their (length, hash): rsgid compares
    /// them later with what it can read (the same bytes whoever reads them).
    #[serde(default)]
    includes: Vec<(PathBuf, Option<(u64, u64)>)>,
    uid: Option<String>,
    gid: Option<String>,
}

/// One job for the helper.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Read and parse a vassal file.
    Load(PathBuf),
    /// Bind these sockets.
    Bind(Options),
}

/// The helper's one answer.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// The file's options.
    Loaded(Options),
    /// The sockets are attached, in order.
    Bound,
    /// What went wrong, as the user should read it.
    Error(String),
    /// The vassal file did not load: why, and the files the load read or tried to read
    /// besides it (rsgid tries again when one of them changes).
    Broken {
        /// What is wrong, as the user should read it.
        message: String,
        /// Each file read, with its (length, hash), `None` when it could not be opened.
        includes: Vec<(PathBuf, Option<(u64, u64)>)>,
    },
}

/// A vassal file that did not load through the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// What is wrong, as the user should read it.
    pub message: String,
    /// The files the load read or tried to read besides the vassal file, as the owner
    /// saw them (empty when the helper itself failed).
    pub read: Vec<rsgi_proto::bounds::Included>,
}

impl From<String> for LoadError {
    fn from(message: String) -> Self {
        LoadError {
            message,
            read: Vec::new(),
        }
    }
}

/// The user a tyrant-mode vassal runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The file owner's uid.
    pub uid: u32,
    /// The group the vassal runs with.
    pub gid: u32,
}

/// Read and parse `path` as `owner` would: the file and everything it includes.
///
/// # Errors
/// What is wrong with the file (or the helper), with the files the load read.
pub fn load_as(owner: Owner, path: &Path) -> Result<VassalConfig, LoadError> {
    let (answer, _) = run(owner, &Request::Load(path.to_owned()))?;
    match answer {
        Answer::Loaded(o) => {
            let mut config = VassalConfig {
                source: Some(path.to_owned()),
                chmod_socket: o.chmod_socket,
                chown_socket: o.chown_socket,
                listen: o.listen,
                includes: o
                    .includes
                    .into_iter()
                    .map(|(path, digest)| rsgi_proto::bounds::Included { path, digest })
                    .collect(),
                uid: o.uid,
                gid: o.gid,
                ..VassalConfig::default()
            };
            config.sockets = o
                .sockets
                .iter()
                .map(socket_spec)
                .collect::<Result<_, _>>()?;
            Ok(config)
        }
        Answer::Error(e) => Err(e.into()),
        Answer::Broken { message, includes } => Err(LoadError {
            message,
            read: includes
                .into_iter()
                .map(|(path, digest)| rsgi_proto::bounds::Included { path, digest })
                .collect(),
        }),
        Answer::Bound => Err(String::from("tyrant helper: unexpected answer").into()),
    }
}

/// Bind `config.sockets` (with its `chmod-socket`, `chown-socket` and `listen`) with
/// `owner`'s rights.
pub fn bind_as(owner: Owner, config: &VassalConfig) -> Result<Vec<BoundSocket>, String> {
    let request = Request::Bind(options_of(config));
    let (answer, fds) = run(owner, &request)?;
    match answer {
        Answer::Bound if fds.len() == config.sockets.len() => {
            let names: Vec<&str> = config.sockets.iter().map(|s| s.protocol.as_str()).collect();
            let mut bound = rsgi_os::listen::from_fds(fds, Some(&names.join(":")), config)
                .map_err(|e| rsgi_proto::error::chain(&e))?;
            // They were bound for this vassal, not inherited: rsgid removes the files
            // again when the vassal retires, as for the sockets it binds itself.
            for (b, spec) in bound.iter_mut().zip(&config.sockets) {
                b.inherited = false;
                b.addr = spec.addr.clone();
                b.created_path = match &spec.addr {
                    ListenAddr::Unix(p) if !p.as_os_str().as_encoded_bytes().starts_with(b"@") => {
                        Some(p.clone())
                    }
                    _ => None,
                };
            }
            Ok(bound)
        }
        Answer::Bound => Err(format!(
            "tyrant helper: {} sockets bound, {} expected",
            fds.len(),
            config.sockets.len()
        )),
        Answer::Error(e) => Err(e),
        Answer::Loaded(_) | Answer::Broken { .. } => Err("tyrant helper: unexpected answer".into()),
    }
}

fn options_of(config: &VassalConfig) -> Options {
    Options {
        sockets: config
            .sockets
            .iter()
            .map(|s| Socket {
                protocol: s.protocol.as_str().to_owned(),
                addr: s.addr.to_string(),
            })
            .collect(),
        chmod_socket: config.chmod_socket,
        chown_socket: config.chown_socket.clone(),
        listen: config.listen,
        includes: config
            .includes
            .iter()
            .map(|i| (i.path.clone(), i.digest))
            .collect(),
        uid: config.uid.clone(),
        gid: config.gid.clone(),
    }
}

fn socket_spec(s: &Socket) -> Result<SocketSpec, String> {
    let protocol = match s.protocol.as_str() {
        "uwsgi" => Protocol::Uwsgi,
        "http" => Protocol::Http,
        other => return Err(format!("tyrant helper: unknown protocol {other}")),
    };
    let addr = rsgi_proto::options::parse_listen(&s.addr)?;
    Ok(SocketSpec { protocol, addr })
}

/// Start the helper as `owner`, give it `request`, and take its answer and fds.
fn run(owner: Owner, request: &Request) -> Result<(Answer, Vec<OwnedFd>), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("tyrant helper: {what}: {e}");
    let json = serde_json::to_string(request).map_err(|e| fail("request", &e))?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| fail("socketpair", &e))?;
    let timeout = TimeVal::new(HELPER_DEADLINE.as_secs() as _, 0);
    setsockopt(&ours, sockopt::ReceiveTimeout, &timeout).map_err(|e| fail("timeout", &e))?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg(HELPER_ARG)
        .arg(json)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(theirs))
        .stderr(Stdio::inherit())
        // std drops every supplementary group before setgid/setuid.
        .uid(owner.uid)
        .gid(owner.gid);
    let mut child = cmd.spawn().map_err(|e| fail("start", &e))?;
    // The child's end must close here, or a helper that dies without answering would
    // leave recvmsg waiting for the deadline instead of seeing EOF.
    drop(cmd);
    let received = receive(&ours);
    if received.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| fail("wait", &e))?;
    let (bytes, fds) = match received {
        Ok(r) => r,
        Err(e) => return Err(fail("no answer", &e)),
    };
    if bytes.is_empty() {
        return Err(format!(
            "tyrant helper: exited without an answer ({status})"
        ));
    }
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| fail("answer", &e))?;
    Ok((answer, fds))
}

fn receive(sock: &OwnedFd) -> Result<(Vec<u8>, Vec<OwnedFd>), nix::Error> {
    let mut buf = vec![0u8; MAX_ANSWER];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS hands this process new descriptors that nothing
                // else owns; each is wrapped exactly once.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    buf.truncate(len);
    Ok((buf, fds))
}

/// The helper's side: do the job in `json` and answer on stdout. Runs as the owner.
pub fn helper_main(json: &str) -> ExitCode {
    let (answer, bound) = match serde_json::from_str::<Request>(json) {
        Err(e) => (
            Answer::Error(format!("tyrant helper: bad request: {e}")),
            Vec::new(),
        ),
        Ok(Request::Load(path)) => {
            let env = |key: &str| std::env::var(key).ok();
            match rsgi_os::config::load_file_reads(&path.to_string_lossy(), &env) {
                (Ok(config), _) => (Answer::Loaded(options_of(&config)), Vec::new()),
                (Err(e), read) => (
                    Answer::Broken {
                        message: e.to_string(),
                        includes: read.into_iter().map(|i| (i.path, i.digest)).collect(),
                    },
                    Vec::new(),
                ),
            }
        }
        Ok(Request::Bind(options)) => match bind(&options) {
            Ok(bound) => (Answer::Bound, bound),
            Err(e) => (Answer::Error(e), Vec::new()),
        },
    };
    let Ok(bytes) = serde_json::to_vec(&answer) else {
        return ExitCode::from(1);
    };
    let fds: Vec<RawFd> = bound.iter().map(|b| b.listener.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    let iov = [std::io::IoSlice::new(&bytes)];
    match sendmsg::<()>(1, &iov, &cmsgs, MsgFlags::empty(), None) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsgid tyrant helper: cannot answer: {e}");
            ExitCode::from(1)
        }
    }
}

fn bind(options: &Options) -> Result<Vec<BoundSocket>, String> {
    let config = VassalConfig {
        sockets: options
            .sockets
            .iter()
            .map(socket_spec)
            .collect::<Result<_, _>>()?,
        chmod_socket: options.chmod_socket,
        chown_socket: options.chown_socket.clone(),
        listen: options.listen,
        ..VassalConfig::default()
    };
    rsgi_os::listen::bind_all(&config).map_err(|e| rsgi_proto::error::chain(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn options_round_trip_through_text() {
        let config = VassalConfig {
            sockets: vec![
                SocketSpec {
                    protocol: Protocol::Http,
                    addr: ListenAddr::Tcp {
                        host: "127.0.0.1".into(),
                        port: 8000,
                    },
                },
                SocketSpec {
                    protocol: Protocol::Uwsgi,
                    addr: ListenAddr::Unix("/srv/app.sock".into()),
                },
                SocketSpec {
                    protocol: Protocol::Uwsgi,
                    addr: ListenAddr::Tcp {
                        host: "::1".into(),
                        port: 9000,
                    },
                },
                SocketSpec {
                    protocol: Protocol::Uwsgi,
                    addr: ListenAddr::Unix("rel.sock".into()),
                },
            ],
            chmod_socket: Some(0o660),
            chown_socket: Some("alice:www-data".into()),
            listen: 77,
            includes: vec![
                rsgi_proto::bounds::Included {
                    path: "/srv/common.ini".into(),
                    digest: Some((12, 0xfeed)),
                },
                rsgi_proto::bounds::Included {
                    path: "missing.ini".into(),
                    digest: None,
                },
            ],
            uid: Some("alice".into()),
            gid: None,
            ..VassalConfig::default()
        };
        let text = serde_json::to_string(&options_of(&config)).unwrap();
        let back: Options = serde_json::from_str(&text).unwrap();
        let specs: Vec<SocketSpec> = back
            .sockets
            .iter()
            .map(|s| socket_spec(s).unwrap())
            .collect();
        assert_eq!(specs, config.sockets);
        assert_eq!(back.chmod_socket, Some(0o660));
        assert_eq!(back.chown_socket.as_deref(), Some("alice:www-data"));
        assert_eq!(back.listen, 77);
        assert_eq!(back.uid.as_deref(), Some("alice"));
        // The included files travel too: rsgid checks them for changes itself.
        let includes: Vec<_> = back
            .includes
            .iter()
            .map(|(p, d)| (p.display().to_string(), *d))
            .collect();
        assert_eq!(
            includes,
            [
                ("/srv/common.ini".to_owned(), Some((12, 0xfeed))),
                ("missing.ini".to_owned(), None)
            ]
        );
    }

    #[test]
    fn unknown_protocol_is_an_error() {
        let s = Socket {
            protocol: "fastcgi".into(),
            addr: ":80".into(),
        };
        assert!(socket_spec(&s)
            .unwrap_err()
            .contains("unknown protocol fastcgi"));
    }
}
