//! uWSGI-compatible stats JSON, as read by the real `uwsgitop` and `uwsgi_exporter`.
//!
//! [`render`] turns the master's view ([`MasterInfo`]) and the workers' shared
//! counters ([`WorkerSnapshot`]s from [`crate::shm`]) into the JSON document uWSGI's
//! master writes on its stats socket (`core/master_utils.c
//! uwsgi_master_generate_stats`), with the same keys in the same order. The rules that
//! keep existing tools working (design doc ECOSYSTEM.md §1):
//!
//! - every key uwsgitop reads is present for every worker ([`WORKER_KEYS`]), or it
//!   dies with a `KeyError`;
//! - **integers only**, never a float or `null` (uwsgi_exporter decodes into Go ints,
//!   and one bad value fails the whole scrape);
//! - uWSGI's units: times in **µs** (`running_time`, `avg_rt`), sizes in **bytes**
//!   (`rss`, `vsz`, `tx`), `last_spawn` in epoch seconds;
//! - rsgi-only data goes under new keys prefixed `rsgi_` (unknown keys are ignored by
//!   both tools).
//!
//! The transport is the caller's: accept, write the document (wrapped with
//! [`http_wrap`] when `stats-http` is set), **close** (uwsgitop reads until EOF),
//! without reading anything from the client.
//!
//! The master also samples here what only it can see: worker memory from `/proc`
//! ([`proc_memory`]) and the accept queue of TCP and unix listeners ([`listen_queue`]).

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::unistd::{getgid, getpid, getuid, Pid, SysconfVar};

use crate::shm::{
    MasterSnapshot, RespawnCause, WorkerSnapshot, WorkerStatus, DURATION_BUCKETS_US, MAX_CORES,
    STATUS_CLASSES,
};

/// The `version` string: `"rsgi <crate version>"`.
pub const VERSION: &str = concat!("rsgi ", env!("CARGO_PKG_VERSION"));

/// The JSON type of a key in the stats document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A non-negative integer.
    Int,
    /// A string.
    Str,
    /// An array.
    List,
    /// An object.
    Object,
}

/// A key of the stats document, its type, and whether uwsgitop needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The JSON key.
    pub name: &'static str,
    /// Its JSON type.
    pub kind: Kind,
    /// uwsgitop indexes it unconditionally (a missing key crashes it).
    pub uwsgitop: bool,
}

const fn key(name: &'static str, kind: Kind, uwsgitop: bool) -> Key {
    Key {
        name,
        kind,
        uwsgitop,
    }
}

/// Top-level keys, in uWSGI's order.
pub const TOP_KEYS: &[Key] = &[
    key("version", Kind::Str, false),
    key("listen_queue", Kind::Int, false),
    key("listen_queue_errors", Kind::Int, false),
    key("signal_queue", Kind::Int, false),
    key("load", Kind::Int, false),
    key("pid", Kind::Int, false),
    key("uid", Kind::Int, false),
    key("gid", Kind::Int, false),
    key("cwd", Kind::Str, false),
    key("locks", Kind::List, false),
    key("sockets", Kind::List, false),
    key("workers", Kind::List, true),
];

/// Keys of each `sockets[]` entry.
pub const SOCKET_KEYS: &[Key] = &[
    key("name", Kind::Str, false),
    key("proto", Kind::Str, false),
    key("queue", Kind::Int, false),
    key("max_queue", Kind::Int, false),
    key("shared", Kind::Int, false),
    key("can_offload", Kind::Int, false),
];

/// Keys of each `workers[]` entry, in uWSGI's order.
pub const WORKER_KEYS: &[Key] = &[
    key("id", Kind::Int, true),
    key("pid", Kind::Int, true),
    key("accepting", Kind::Int, false),
    key("requests", Kind::Int, true),
    key("delta_requests", Kind::Int, false),
    key("exceptions", Kind::Int, true),
    key("harakiri_count", Kind::Int, true),
    key("signals", Kind::Int, false),
    key("signal_queue", Kind::Int, false),
    key("status", Kind::Str, true),
    key("rss", Kind::Int, true),
    key("vsz", Kind::Int, true),
    key("uss", Kind::Int, false),
    key("pss", Kind::Int, false),
    key("running_time", Kind::Int, true),
    key("last_spawn", Kind::Int, true),
    key("respawn_count", Kind::Int, true),
    key("tx", Kind::Int, true),
    key("avg_rt", Kind::Int, true),
    key("apps", Kind::List, false),
    key("cores", Kind::List, false),
];

/// Keys of each `workers[].apps[]` entry.
pub const APP_KEYS: &[Key] = &[
    key("id", Kind::Int, false),
    key("modifier1", Kind::Int, false),
    key("mountpoint", Kind::Str, false),
    key("startup_time", Kind::Int, false),
    key("requests", Kind::Int, false),
    key("exceptions", Kind::Int, false),
    key("chdir", Kind::Str, false),
];

/// Keys of each `workers[].cores[]` entry (uwsgitop's async views read `id`,
/// `requests` and `in_request`).
pub const CORE_KEYS: &[Key] = &[
    key("id", Kind::Int, false),
    key("requests", Kind::Int, false),
    key("static_requests", Kind::Int, false),
    key("routed_requests", Kind::Int, false),
    key("offloaded_requests", Kind::Int, false),
    key("write_errors", Kind::Int, false),
    key("read_errors", Kind::Int, false),
    key("in_request", Kind::Int, false),
    key("vars", Kind::List, false),
    key("req_info", Kind::Object, false),
];

/// A listening socket as shown in `sockets[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketInfo {
    /// The address as configured (`127.0.0.1:8000`, `/run/rsgi/app.sock`).
    pub name: String,
    /// The protocol, uWSGI's names: `"uwsgi"` or `"http"`.
    pub proto: String,
    /// Connections waiting in the accept queue (0 if unknown).
    pub queue: u32,
    /// The accept queue's capacity (backlog; 0 if unknown).
    pub max_queue: u32,
}

/// What the master knows about itself, for the top-level keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterInfo {
    /// `version`, normally [`VERSION`].
    pub version: String,
    /// The master's pid.
    pub pid: u32,
    /// The master's uid.
    pub uid: u32,
    /// The master's gid.
    pub gid: u32,
    /// The master's working directory.
    pub cwd: String,
    /// Epoch seconds when the master started (`rsgi_start`).
    pub start: u64,
    /// The listening sockets.
    pub sockets: Vec<SocketInfo>,
    /// App threads per worker: the length of each worker's `cores` list
    /// (clamped to 1..=[`MAX_CORES`]).
    pub threads: usize,
    /// The master's shared counters: `listen_queue`, `listen_queue_errors` and
    /// `load` come from here, plus the `rsgi_reloads*` and `rsgi_respawns` keys.
    pub counters: MasterSnapshot,
}

impl MasterInfo {
    /// Info for the calling process: [`VERSION`], its pid, uid, gid and working
    /// directory (empty if unreadable), plus the given parts.
    pub fn for_this_process(
        start: u64,
        threads: usize,
        sockets: Vec<SocketInfo>,
        counters: MasterSnapshot,
    ) -> MasterInfo {
        MasterInfo {
            version: VERSION.to_owned(),
            pid: u32::try_from(getpid().as_raw()).unwrap_or(0),
            uid: getuid().as_raw(),
            gid: getgid().as_raw(),
            cwd: std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            start,
            sockets,
            threads,
            counters,
        }
    }
}

/// Renders the master stats document for `info` and `workers` (ordered by id).
pub fn render(info: &MasterInfo, workers: &[WorkerSnapshot]) -> String {
    let mut w = Writer::with_capacity(1024 + workers.len() * (900 + 260 * info.threads));
    let c = &info.counters;
    w.open('{');
    w.kstr("version", &info.version);
    w.kint("listen_queue", u64::from(c.listen_queue));
    w.kint("listen_queue_errors", c.listen_queue_errors);
    w.kint("signal_queue", 0);
    // uWSGI's `load` is the same `tcpi_unacked` sample as `listen_queue`.
    w.kint("load", u64::from(c.listen_queue));
    w.kint("pid", u64::from(info.pid));
    w.kint("uid", u64::from(info.uid));
    w.kint("gid", u64::from(info.gid));
    w.kstr("cwd", &info.cwd);
    w.key("locks");
    w.open('[');
    w.close(']');
    w.key("sockets");
    w.open('[');
    for s in &info.sockets {
        w.open('{');
        w.kstr("name", &s.name);
        w.kstr("proto", &s.proto);
        w.kint("queue", u64::from(s.queue));
        w.kint("max_queue", u64::from(s.max_queue));
        w.kint("shared", 0);
        w.kint("can_offload", 0);
        w.close('}');
    }
    w.close(']');
    w.key("workers");
    w.open('[');
    let cores = info.threads.clamp(1, MAX_CORES);
    for s in workers {
        render_worker(&mut w, s, cores);
    }
    w.close(']');
    // rsgi extras.
    w.kint("rsgi_start", info.start);
    w.kint("rsgi_listen_queue_max", u64::from(c.listen_queue_max));
    w.kint("rsgi_reloads", c.reloads);
    w.kint("rsgi_reloads_failed", c.reloads_failed);
    w.key("rsgi_respawns");
    w.open('{');
    for cause in RespawnCause::ALL {
        w.kint(cause.as_str(), c.respawns[cause as usize]);
    }
    w.close('}');
    w.close('}');
    w.finish()
}

/// uWSGI's status word: `busy`, `idle` or `cheap` (uWSGI also has `pause` and
/// `sig<N>`, which rsgi never is). The precise lifecycle goes in `rsgi_status`.
fn uwsgi_status(s: &WorkerSnapshot) -> &'static str {
    match s.status {
        WorkerStatus::Cheap => "cheap",
        WorkerStatus::Busy => "busy",
        _ if s.in_flight > 0 => "busy",
        _ => "idle",
    }
}

fn render_worker(w: &mut Writer, s: &WorkerSnapshot, cores: usize) {
    w.open('{');
    w.kint("id", u64::from(s.id));
    w.kint("pid", u64::try_from(s.pid).unwrap_or(0));
    w.kint("accepting", u64::from(s.accepting));
    w.kint("requests", s.requests);
    w.kint("delta_requests", s.delta_requests);
    w.kint("exceptions", s.exceptions);
    w.kint("harakiri_count", s.harakiri_count);
    w.kint("signals", 0);
    w.kint("signal_queue", 0);
    w.kstr("status", uwsgi_status(s));
    w.kint("rss", s.rss);
    w.kint("vsz", s.vsz);
    w.kint("uss", 0);
    w.kint("pss", 0);
    w.kint("running_time", s.running_time_us);
    w.kint("last_spawn", s.last_spawn);
    w.kint("respawn_count", s.respawn_count);
    w.kint("tx", s.tx);
    w.kint("avg_rt", s.avg_rt_us);
    // One WSGI app per worker, as uWSGI shows a single-app vassal.
    w.key("apps");
    w.open('[');
    w.open('{');
    w.kint("id", 0);
    w.kint("modifier1", 0);
    w.kstr("mountpoint", "");
    w.kint("startup_time", 0);
    w.kint("requests", s.requests);
    w.kint("exceptions", s.exceptions);
    w.kstr("chdir", "");
    w.close('}');
    w.close(']');
    w.key("cores");
    w.open('[');
    for i in 0..cores {
        let core = s.cores.get(i);
        w.open('{');
        w.kint("id", i as u64);
        w.kint("requests", core.map_or(0, |c| c.requests));
        for zero in [
            "static_requests",
            "routed_requests",
            "offloaded_requests",
            "write_errors",
            "read_errors",
        ] {
            w.kint(zero, 0);
        }
        w.kint("in_request", u64::from(core.is_some_and(|c| c.in_request)));
        w.key("vars");
        w.open('[');
        w.close(']');
        w.key("req_info");
        w.open('{');
        w.close('}');
        w.close('}');
    }
    w.close(']');
    // rsgi extras.
    w.kstr("rsgi_status", s.status.as_str());
    w.kint("rsgi_in_flight", u64::from(s.in_flight));
    w.kint("rsgi_last_rt", s.last_rt_us);
    w.key("rsgi_status_classes");
    w.open('{');
    for (name, n) in STATUS_CLASSES.iter().zip(s.status_classes) {
        w.kint(name, n);
    }
    w.close('}');
    // Per-bucket (not cumulative) counts; `counts` has one more entry than `le_us`:
    // the +Inf bucket. `sum_us` is `running_time`.
    w.key("rsgi_histogram");
    w.open('{');
    w.key("le_us");
    w.open('[');
    for bound in DURATION_BUCKETS_US {
        w.int(bound);
    }
    w.close(']');
    w.key("counts");
    w.open('[');
    for n in s.histogram {
        w.int(n);
    }
    w.close(']');
    w.kint("sum_us", s.running_time_us);
    w.close('}');
    w.close('}');
}

/// A minimal JSON writer: integers and strings only, which is all the stats hold.
struct Writer {
    buf: String,
    /// No value yet in the current object/array: no comma before the next one.
    first: bool,
    /// A key was just written: its value follows without a comma.
    after_key: bool,
}

impl Writer {
    fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: String::with_capacity(n),
            first: true,
            after_key: false,
        }
    }

    fn sep(&mut self) {
        if self.after_key {
            self.after_key = false;
        } else if self.first {
            self.first = false;
        } else {
            self.buf.push(',');
        }
    }

    fn open(&mut self, c: char) {
        self.sep();
        self.buf.push(c);
        self.first = true;
    }

    fn close(&mut self, c: char) {
        self.buf.push(c);
        self.first = false;
    }

    fn key(&mut self, k: &str) {
        self.sep();
        self.string(k);
        self.buf.push(':');
        self.after_key = true;
    }

    fn int(&mut self, v: u64) {
        self.sep();
        // Writing to a String cannot fail.
        let _ = write!(self.buf, "{v}");
    }

    fn kint(&mut self, k: &str, v: u64) {
        self.key(k);
        self.int(v);
    }

    fn kstr(&mut self, k: &str, v: &str) {
        self.key(k);
        self.sep();
        self.string(v);
    }

    /// A JSON string literal (RFC 8259 escapes; non-ASCII passes through as UTF-8).
    fn string(&mut self, s: &str) {
        self.buf.push('"');
        for ch in s.chars() {
            match ch {
                '"' => self.buf.push_str("\\\""),
                '\\' => self.buf.push_str("\\\\"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                '\t' => self.buf.push_str("\\t"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(self.buf, "\\u{:04x}", u32::from(c));
                }
                c => self.buf.push(c),
            }
        }
        self.buf.push('"');
    }

    fn finish(self) -> String {
        self.buf
    }
}

/// The `stats-http` form: uWSGI's exact header (HTTP/1.0, `Connection: close`, no
/// Content-Length; uwsgi_exporter insists on exactly `application/json`) followed by
/// the document.
pub fn http_wrap(json: &str) -> Vec<u8> {
    const HEAD: &str = "HTTP/1.0 200 OK\r\n\
                        Connection: close\r\n\
                        Access-Control-Allow-Origin: *\r\n\
                        Content-Type: application/json\r\n\
                        \r\n";
    let mut out = Vec::with_capacity(HEAD.len() + json.len());
    out.extend_from_slice(HEAD.as_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

/// An accept-queue sample of a listening socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenQueue {
    /// Connections waiting to be accepted.
    pub queue: u32,
    /// The queue's capacity (the effective backlog).
    pub max_queue: u32,
}

/// `TCP_LISTEN` from the kernel's `enum tcp_state` (not exported by libc).
const TCP_LISTEN: u8 = 10;

/// The accept queue of a listening socket: TCP from `getsockopt(TCP_INFO)`, unix from
/// the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`). `None` for anything else
/// (connected sockets, errors): the caller shows 0.
pub fn listen_queue(fd: BorrowedFd<'_>) -> Option<ListenQueue> {
    tcp_listen_queue(fd).or_else(|| unix_listen_queue(fd))
}

/// A listening TCP socket's queue: in LISTEN state the kernel reports the queue length
/// in `tcpi_unacked` and the backlog in `tcpi_sacked` (what uWSGI reads too).
fn tcp_listen_queue(fd: BorrowedFd<'_>) -> Option<ListenQueue> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` points to `len` writable bytes and `len` to a valid socklen_t;
    // the kernel writes at most `len` bytes and updates `len`. `fd` is borrowed, so
    // it stays open during the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_lost);
    if rc != 0 || (len as usize) < needed {
        return None;
    }
    // SAFETY: `tcp_info` is plain integers, so the zeroed-then-partly-written bytes
    // are a valid value (and the fields read below were written: `len >= needed`).
    let info = unsafe { info.assume_init() };
    (info.tcpi_state == TCP_LISTEN).then_some(ListenQueue {
        queue: info.tcpi_unacked,
        max_queue: info.tcpi_sacked,
    })
}

/// `SOCK_DIAG_BY_FAMILY`, the netlink message type of socket diagnostics.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_RQLEN`: ask for the queue lengths.
const UDIAG_SHOW_RQLEN: u32 = 0x10;
/// `UNIX_DIAG_RQLEN`, the attribute holding `{ rqueue: u32, wqueue: u32 }`.
const UNIX_DIAG_RQLEN: u16 = 4;
/// Sizes of `struct nlmsghdr`, `struct unix_diag_req` and `struct unix_diag_msg`.
const NLMSG_HDR_LEN: usize = 16;
const UNIX_DIAG_REQ_LEN: usize = 24;
const UNIX_DIAG_MSG_LEN: usize = 16;
/// The sequence number of the request (one request per netlink socket).
const DIAG_SEQ: u32 = 1;

/// A listening unix socket's queue, as `ss -xl` shows it: one `SOCK_DIAG_BY_FAMILY`
/// request over `NETLINK_SOCK_DIAG` for the socket's inode, answered with
/// `UNIX_DIAG_RQLEN` (for a listener: connections not yet accepted, and the backlog).
/// uWSGI cannot see this queue; nginx's `uwsgi_pass unix:` fills it.
fn unix_listen_queue(fd: BorrowedFd<'_>) -> Option<ListenQueue> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    let ino = u32::try_from(nix::sys::stat::fstat(fd).ok()?.st_ino).ok()?;
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let request = unix_diag_request(ino);
    sendto(
        nl.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    // The kernel answers within sendto; never wait for more.
    let mut reply = [0u8; 512];
    let n = recv(nl.as_raw_fd(), &mut reply, MsgFlags::MSG_DONTWAIT).ok()?;
    parse_unix_diag_reply(reply.get(..n)?, ino)
}

/// The `SOCK_DIAG_BY_FAMILY` request for the unix socket with inode `ino`: a
/// `nlmsghdr` and a `unix_diag_req` (listeners only, queue lengths, any cookie).
fn unix_diag_request(ino: u32) -> Vec<u8> {
    let len = NLMSG_HDR_LEN + UNIX_DIAG_REQ_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&DIAG_SEQ.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
    m.push(libc::AF_UNIX as u8); // sdiag_family
    m.push(0); // sdiag_protocol
    m.extend_from_slice(&0u16.to_ne_bytes()); // pad
    m.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // udiag_states
    m.extend_from_slice(&ino.to_ne_bytes()); // udiag_ino
    m.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes()); // udiag_show
    m.extend_from_slice(&[0xff; 8]); // udiag_cookie: INET_DIAG_NOCOOKIE
    m
}

/// The queue from the kernel's answer to [`unix_diag_request`]: `None` for an error
/// message (not a unix listener, or no such inode), another sequence number or inode,
/// a socket not in LISTEN state, or a reply without `UNIX_DIAG_RQLEN`.
fn parse_unix_diag_reply(reply: &[u8], ino: u32) -> Option<ListenQueue> {
    let u16_at = |at: usize| Some(u16::from_ne_bytes(reply.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(reply.get(at..at + 4)?.try_into().ok()?));
    let len = (u32_at(0)? as usize).min(reply.len());
    if u16_at(4)? != SOCK_DIAG_BY_FAMILY || u32_at(8)? != DIAG_SEQ {
        return None;
    }
    let msg = NLMSG_HDR_LEN;
    // unix_diag_msg: family, type, state, pad, ino, cookie.
    if *reply.get(msg + 2)? != TCP_LISTEN || u32_at(msg + 4)? != ino {
        return None;
    }
    // Then rtattrs: { len: u16, type: u16 } and the payload, each padded to 4 bytes.
    let mut at = msg + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len {
        let rta_len = usize::from(u16_at(at)?);
        if rta_len < 4 {
            return None;
        }
        if u16_at(at + 2)? == UNIX_DIAG_RQLEN && rta_len >= 12 {
            return Some(ListenQueue {
                queue: u32_at(at + 4)?,
                max_queue: u32_at(at + 8)?,
            });
        }
        at += (rta_len + 3) & !3;
    }
    None
}

/// A process's memory, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcMemory {
    /// Resident set size.
    pub rss: u64,
    /// Virtual memory size.
    pub vsz: u64,
}

/// Reads `/proc/<pid>/statm` (sizes in pages) and converts to bytes. `None` if the
/// process is gone or the file is unreadable.
pub fn proc_memory(pid: Pid) -> Option<ProcMemory> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm(&statm, page_size())
}

fn parse_statm(statm: &str, page: u64) -> Option<ProcMemory> {
    let mut fields = statm.split_ascii_whitespace();
    let size: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = fields.next()?.parse().ok()?;
    Some(ProcMemory {
        rss: resident.saturating_mul(page),
        vsz: size.saturating_mul(page),
    })
}

fn page_size() -> u64 {
    match nix::unistd::sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::shm::{CoreSnapshot, HISTOGRAM_LEN};
    use serde_json::Value;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    fn worker(id: u32, busy: bool) -> WorkerSnapshot {
        let mut cores = vec![CoreSnapshot::default(); MAX_CORES];
        cores[0] = CoreSnapshot {
            requests: 40,
            in_request: busy,
        };
        cores[1].requests = 2;
        WorkerSnapshot {
            id,
            pid: 1000 + id as i32,
            status: if busy {
                WorkerStatus::Busy
            } else {
                WorkerStatus::Idle
            },
            accepting: true,
            in_flight: u32::from(busy),
            requests: 42,
            delta_requests: 7,
            exceptions: 3,
            tx: 123_456,
            running_time_us: 987_654,
            avg_rt_us: 1_500,
            last_rt_us: 900,
            respawn_count: 2,
            harakiri_count: 1,
            last_spawn: 1_700_000_000,
            request_start_ms: 0,
            rss: 50 << 20,
            vsz: 300 << 20,
            status_classes: [0, 38, 1, 1, 2],
            histogram: [1; HISTOGRAM_LEN],
            cores,
        }
    }

    fn info() -> MasterInfo {
        MasterInfo {
            version: VERSION.to_owned(),
            pid: 999,
            uid: 1000,
            gid: 1000,
            cwd: "/srv/\"app\"\n\u{1}é".to_owned(),
            start: 1_699_999_999,
            sockets: vec![
                SocketInfo {
                    name: "127.0.0.1:8000".into(),
                    proto: "http".into(),
                    queue: 3,
                    max_queue: 128,
                },
                SocketInfo {
                    name: "/run/rsgi/app.sock".into(),
                    proto: "uwsgi".into(),
                    ..SocketInfo::default()
                },
            ],
            threads: 2,
            counters: MasterSnapshot {
                listen_queue: 3,
                listen_queue_max: 128,
                reloads: 4,
                respawns: [1, 2, 3, 4, 5, 6],
                ..MasterSnapshot::default()
            },
        }
    }

    fn check_keys(obj: &Value, keys: &[Key], what: &str) {
        let map = obj
            .as_object()
            .unwrap_or_else(|| panic!("{what} is not an object"));
        for k in keys {
            let v = map
                .get(k.name)
                .unwrap_or_else(|| panic!("{what} lacks {:?}", k.name));
            let ok = match k.kind {
                Kind::Int => v.is_u64(),
                Kind::Str => v.is_string(),
                Kind::List => v.is_array(),
                Kind::Object => v.is_object(),
            };
            assert!(ok, "{what}.{} is {v}, expected {:?}", k.name, k.kind);
        }
    }

    /// No float, no null, no negative number anywhere in the document.
    fn assert_integers_only(v: &Value, path: &str) {
        match v {
            Value::Null => panic!("null at {path}"),
            Value::Number(n) => assert!(n.is_u64(), "{path} = {n} is not a u64"),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| assert_integers_only(v, &format!("{path}[{i}]"))),
            Value::Object(o) => o
                .iter()
                .for_each(|(k, v)| assert_integers_only(v, &format!("{path}.{k}"))),
            Value::Bool(b) => panic!("bool {b} at {path}"),
            Value::String(_) => {}
        }
    }

    #[test]
    fn render_has_every_uwsgi_key_with_the_right_type() {
        let json = render(&info(), &[worker(1, true), worker(2, false)]);
        let doc: Value = serde_json::from_str(&json).unwrap();
        assert_integers_only(&doc, "$");
        check_keys(&doc, TOP_KEYS, "top level");
        for s in doc["sockets"].as_array().unwrap() {
            check_keys(s, SOCKET_KEYS, "socket");
        }
        let workers = doc["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2);
        for w in workers {
            check_keys(w, WORKER_KEYS, "worker");
            let apps = w["apps"].as_array().unwrap();
            assert_eq!(apps.len(), 1);
            check_keys(&apps[0], APP_KEYS, "app");
            let cores = w["cores"].as_array().unwrap();
            assert_eq!(cores.len(), 2, "one core per thread");
            for c in cores {
                check_keys(c, CORE_KEYS, "core");
            }
        }
        // Every uwsgitop-required key is in the tables it is checked against.
        let required: Vec<_> = WORKER_KEYS
            .iter()
            .filter(|k| k.uwsgitop)
            .map(|k| k.name)
            .collect();
        assert_eq!(
            required,
            [
                "id",
                "pid",
                "requests",
                "exceptions",
                "harakiri_count",
                "status",
                "rss",
                "vsz",
                "running_time",
                "last_spawn",
                "respawn_count",
                "tx",
                "avg_rt"
            ]
        );
    }

    #[test]
    fn render_values_and_units() {
        let json = render(&info(), &[worker(1, true), worker(2, false)]);
        let doc: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["version"], VERSION);
        assert!(VERSION.starts_with("rsgi "));
        assert_eq!(
            doc["cwd"], "/srv/\"app\"\n\u{1}é",
            "escaped and parsed back"
        );
        assert_eq!(
            (doc["listen_queue"].as_u64(), doc["load"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(doc["pid"], 999);
        assert_eq!(doc["locks"], serde_json::json!([]));
        assert_eq!(doc["sockets"][0]["proto"], "http");
        assert_eq!(doc["sockets"][0]["max_queue"], 128);
        assert_eq!(doc["rsgi_respawns"]["max_requests"], 3);
        assert_eq!(doc["rsgi_respawns"]["reload"], 6);
        assert_eq!(doc["rsgi_reloads"], 4);

        let w1 = &doc["workers"][0];
        assert_eq!(
            (w1["id"].as_u64(), w1["pid"].as_u64()),
            (Some(1), Some(1001))
        );
        assert_eq!(w1["status"], "busy");
        assert_eq!(doc["workers"][1]["status"], "idle");
        assert_eq!(w1["avg_rt"], 1_500, "µs");
        assert_eq!(w1["running_time"], 987_654, "µs");
        assert_eq!(w1["rss"], 50 << 20, "bytes");
        assert_eq!(w1["last_spawn"], 1_700_000_000);
        assert_eq!(w1["delta_requests"], 7);
        assert_eq!(w1["accepting"], 1);
        assert_eq!(w1["apps"][0]["requests"], 42);
        assert_eq!(w1["cores"][0]["in_request"], 1);
        assert_eq!(w1["cores"][0]["requests"], 40);
        assert_eq!(w1["cores"][1]["id"], 1);
        assert_eq!(w1["cores"][1]["requests"], 2);
        assert_eq!(doc["workers"][1]["cores"][0]["in_request"], 0);
        assert_eq!(w1["rsgi_status_classes"]["2xx"], 38);
        let h = &w1["rsgi_histogram"];
        assert_eq!(
            h["le_us"].as_array().unwrap().len() + 1,
            h["counts"].as_array().unwrap().len()
        );
        assert_eq!(h["le_us"][12], 60_000_000);
        assert_eq!(h["sum_us"], 987_654);
    }

    #[test]
    fn render_status_words_stay_in_uwsgi_vocabulary() {
        let cases = [
            (WorkerStatus::Dead, 0, "idle", "dead"),
            (WorkerStatus::Starting, 0, "idle", "starting"),
            (WorkerStatus::Idle, 0, "idle", "idle"),
            (WorkerStatus::Busy, 1, "busy", "busy"),
            (WorkerStatus::Stopping, 2, "busy", "stopping"),
            (WorkerStatus::Stopping, 0, "idle", "stopping"),
            (WorkerStatus::Cheap, 0, "cheap", "cheap"),
        ];
        for (status, in_flight, uwsgi, rsgi) in cases {
            let w = WorkerSnapshot {
                id: 1,
                status,
                in_flight,
                ..WorkerSnapshot::default()
            };
            let doc: Value = serde_json::from_str(&render(&info(), &[w])).unwrap();
            assert_eq!(doc["workers"][0]["status"], uwsgi, "{status:?}");
            assert_eq!(doc["workers"][0]["rsgi_status"], rsgi, "{status:?}");
        }
    }

    #[test]
    fn render_edge_cases_stay_valid() {
        // No workers, no sockets, threads 0 (clamped to one core), snapshots without
        // core data (cores come out as zeros), a negative pid (shown as 0).
        let mut i = info();
        i.sockets.clear();
        i.threads = 0;
        let w = WorkerSnapshot {
            id: 3,
            pid: -1,
            ..WorkerSnapshot::default()
        };
        let doc: Value = serde_json::from_str(&render(&i, &[w])).unwrap();
        assert_integers_only(&doc, "$");
        assert_eq!(doc["workers"][0]["pid"], 0);
        assert_eq!(doc["workers"][0]["cores"].as_array().unwrap().len(), 1);
        let doc: Value = serde_json::from_str(&render(&i, &[])).unwrap();
        assert_eq!(doc["workers"], serde_json::json!([]));
        i.threads = 10_000;
        let doc: Value = serde_json::from_str(&render(&i, &[worker(1, false)])).unwrap();
        assert_eq!(
            doc["workers"][0]["cores"].as_array().unwrap().len(),
            MAX_CORES
        );
    }

    #[test]
    fn render_from_real_shm() {
        let shm = crate::shm::Shm::create(2).unwrap();
        let slot = shm.slot(crate::shm::WorkerId::new(2).unwrap()).unwrap();
        slot.reset_for_spawn(1_700_000_000);
        let t = slot.request_started(crate::shm::monotonic_ms());
        slot.request_finished(t, 200, 10, Duration::from_millis(3), false);
        let info =
            MasterInfo::for_this_process(shm.master_start(), 1, vec![], shm.master().snapshot());
        let doc: Value = serde_json::from_str(&render(&info, &shm.snapshots())).unwrap();
        assert_integers_only(&doc, "$");
        assert_eq!(doc["pid"], std::process::id());
        assert_eq!(doc["workers"][1]["requests"], 1);
        assert_eq!(doc["workers"][1]["running_time"], 3_000);
        assert_eq!(doc["workers"][1]["respawn_count"], 1);
        assert_eq!(doc["workers"][0]["last_spawn"], 0);
    }

    #[test]
    fn http_wrap_uses_uwsgis_header() {
        let out = http_wrap("{}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\
             Content-Type: application/json\r\n\r\n{}"
        );
    }

    #[test]
    fn listen_queue_counts_unaccepted_tcp_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(listen_queue(listener.as_fd()).map(|q| q.queue), Some(0));
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        // The handshake completes in the kernel; poll briefly with a deadline.
        let deadline = Instant::now() + Duration::from_secs(5);
        let q = loop {
            let q = listen_queue(listener.as_fd()).unwrap();
            if q.queue == 2 || Instant::now() > deadline {
                break q;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(q.queue, 2);
        assert!(q.max_queue > 0);
        // A connected socket is not a listener.
        assert_eq!(listen_queue(_a.as_fd()), None);
    }

    #[test]
    fn listen_queue_counts_unaccepted_unix_connections() {
        let dir = std::env::temp_dir().join(format!("rsgi-stats-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(listen_queue(l.as_fd()).map(|q| q.queue), Some(0));
        // A unix connect is queued at once: no handshake to wait for.
        let a = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _b = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let q = listen_queue(l.as_fd()).unwrap();
        assert_eq!(q.queue, 2);
        assert!(q.max_queue > 0, "{q:?}");
        let _accepted = l.accept().unwrap();
        assert_eq!(listen_queue(l.as_fd()).map(|q| q.queue), Some(1));
        // A connected socket is not a listener.
        assert_eq!(listen_queue(a.as_fd()), None);
        drop(l);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A reply as the kernel writes it: nlmsghdr, unix_diag_msg, then the attributes.
    fn diag_reply(seq: u32, state: u8, ino: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![libc::AF_UNIX as u8, 1, state, 0];
        body.extend_from_slice(&ino.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        for (ty, payload) in attrs {
            body.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&ty.to_ne_bytes());
            body.extend_from_slice(payload);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn unix_diag_reply_rules() {
        let rq = |q: u32, max: u32| [q.to_ne_bytes(), max.to_ne_bytes()].concat();
        let name: &[u8] = b"/run/app.sock\0";
        let want = Some(ListenQueue {
            queue: 3,
            max_queue: 1024,
        });
        let error = {
            // NLMSG_ERROR: nlmsghdr, then the errno and the request's header.
            let mut m = 36u32.to_ne_bytes().to_vec();
            m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
            m.extend_from_slice(&[0; 16]);
            m
        };
        let table: Vec<(&str, Vec<u8>, Option<ListenQueue>)> = vec![
            (
                "rqlen only",
                diag_reply(1, TCP_LISTEN, 7, &[(UNIX_DIAG_RQLEN, &rq(3, 1024))]),
                want,
            ),
            (
                "rqlen after another attribute (padded)",
                diag_reply(
                    1,
                    TCP_LISTEN,
                    7,
                    &[(0, name), (UNIX_DIAG_RQLEN, &rq(3, 1024))],
                ),
                want,
            ),
            ("no rqlen", diag_reply(1, TCP_LISTEN, 7, &[(0, name)]), None),
            (
                "not listening",
                diag_reply(1, 1, 7, &[(UNIX_DIAG_RQLEN, &rq(0, 0))]),
                None,
            ),
            (
                "other inode",
                diag_reply(1, TCP_LISTEN, 8, &[(UNIX_DIAG_RQLEN, &rq(3, 1024))]),
                None,
            ),
            (
                "other sequence",
                diag_reply(2, TCP_LISTEN, 7, &[(UNIX_DIAG_RQLEN, &rq(3, 1024))]),
                None,
            ),
            ("error message", error, None),
            (
                "truncated",
                diag_reply(1, TCP_LISTEN, 7, &[(UNIX_DIAG_RQLEN, &rq(3, 1024))])[..40].to_vec(),
                None,
            ),
            ("empty", Vec::new(), None),
        ];
        for (what, reply, want) in table {
            assert_eq!(parse_unix_diag_reply(&reply, 7), want, "{what}");
        }
        let req = unix_diag_request(7);
        assert_eq!(req.len(), NLMSG_HDR_LEN + UNIX_DIAG_REQ_LEN);
        assert_eq!(
            u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize,
            req.len()
        );
        assert_eq!(
            u32::from_ne_bytes(req[24..28].try_into().unwrap()),
            7,
            "udiag_ino"
        );
    }

    #[test]
    fn proc_memory_reads_statm() {
        let me = proc_memory(getpid()).unwrap();
        assert!(me.rss > 0 && me.vsz >= me.rss, "{me:?}");
        assert_eq!(
            parse_statm("100 25 3 1 0 40 0\n", 4096),
            Some(ProcMemory {
                rss: 25 * 4096,
                vsz: 100 * 4096
            })
        );
        assert_eq!(parse_statm("", 4096), None);
        assert_eq!(parse_statm("12 x", 4096), None);
        // A pid that cannot exist (above the kernel's pid_max limit).
        assert_eq!(proc_memory(Pid::from_raw(i32::MAX)), None);
    }
}
