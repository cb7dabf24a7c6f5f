//! The bytes of a response on the wire: the close path's non-blocking sendmsg(2)
//! from the accept loop ([`send_response`]: head and body in one call when they fit,
//! a streamed body pumped as the app produces it, a task for the rest), and a task's
//! async writes on a tokio connection ([`write_response`], [`write_body`]: frames,
//! chunked encoding, sendfile(2) for files).

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio_util::task::TaskTracker;

use super::{log_short_body, Framing, RespBody};
use crate::response::{Body, ChunkSource};
use crate::server::conn::{Conn, StdConn};

/// How many chunks of a streamed body the accept loop sends itself before a task takes
/// over (see [`pump`]).
const PUMP_CHUNKS: u32 = 8;
/// How long the accept loop may spend on a streamed body before a task takes over.
const PUMP_TIME: Duration = Duration::from_millis(2);
/// At most this many body pieces go into one sendmsg(2); more are joined first.
const MAX_IOVECS: usize = 32;

/// Send a response whose head is `out`: a body already in memory goes with the head
/// in one sendmsg(2) ([`send_or_finish`]), a stream as the app produces it ([`pump`]),
/// a file from a task (sendfile). Then `done` runs with the body bytes sent. `fin`:
/// the last send may hold its segment back for the FIN ([`StdConn::fin_with_data`]).
pub(in crate::server) fn send_response(
    tasks: &TaskTracker,
    stream: StdConn,
    out: Vec<u8>,
    body: Body,
    framing: Framing,
    fin: bool,
    done: impl FnOnce(u64) + Send + 'static,
) {
    let in_memory = match (framing, body) {
        (Framing::None, body) => {
            drop(body);
            Vec::new()
        }
        (Framing::Length(_) | Framing::Close, Body::Full(b)) => vec![b],
        (Framing::Length(_) | Framing::Close, Body::Chunks(c)) => c,
        (Framing::Length(_) | Framing::Close, Body::Empty) => Vec::new(),
        (framing, Body::Stream(source)) => {
            return pump(tasks, stream, out, source, framing, fin, done)
        }
        (framing, body) => return finish_later(tasks, stream, out, Some((body, framing)), done),
    };
    let (pieces, room) = cut(in_memory, framing.limit());
    // Short of a declared length: logged once the rest is out.
    let short = if let Framing::Length(_) = framing {
        room
    } else {
        0
    };
    send_or_finish(tasks, stream, out, pieces, short, fin, done);
}

/// Send a streamed body (a generator, Flask's response iterable) as the app produces
/// it, each chunk with one sendmsg(2) (the head goes with the first), framed as
/// `framing` says; the app's `close()` runs when `source` is dropped at the end. The
/// app runs on this thread either way (`threads = 1`), so pulling chunks here costs
/// nothing the general path would not. A task finishes the stream once the socket
/// buffer is full, or once the stream proves long ([`PUMP_CHUNKS`] chunks or
/// [`PUMP_TIME`]): there, other connections get their turns between chunks.
fn pump(
    tasks: &TaskTracker,
    stream: StdConn,
    head: Vec<u8>,
    mut source: Box<dyn ChunkSource>,
    framing: Framing,
    fin: bool,
    done: impl FnOnce(u64) + Send + 'static,
) {
    let fd = stream.fd();
    let limit = framing.limit();
    let mut pending = head;
    let mut sent: u64 = 0;
    let mut pulled = 0;
    let started = Instant::now();
    let complete = loop {
        if pulled == PUMP_CHUNKS || started.elapsed() > PUMP_TIME {
            // A long stream: a task goes on with it (nothing is pending here).
            hand_over(tasks, stream, pending, source, framing, sent, done);
            return;
        }
        pulled += 1;
        let mut chunk = match source.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break true,
            Err(_) => break false, // the Python layer logged it
        };
        let room = limit - sent;
        if room == 0 {
            break true;
        }
        if chunk.len() as u64 > room {
            chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if chunk.is_empty() {
            continue;
        }
        let len = chunk.len() as u64;
        let mut pieces = Vec::with_capacity(2);
        if framing == Framing::Chunked {
            pending.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            pieces.push(chunk);
            pieces.push(Bytes::from_static(b"\r\n"));
        } else {
            pieces.push(chunk);
        }
        match send_now(fd, &pending, &pieces, false) {
            Sent::All => {
                pending.clear();
                sent += len;
            }
            Sent::Part(written) => {
                let rest = unsent(&pending, &pieces, written);
                hand_over(tasks, stream, rest, source, framing, sent + len, done);
                return;
            }
            Sent::Failed => {
                drop(source);
                done(sent);
                return;
            }
        }
    };
    if framing == Framing::Chunked && complete {
        // The last chunk only after a complete body: a cut one stays visibly cut.
        pending.extend_from_slice(b"0\r\n\r\n");
    }
    if let Framing::Length(n) = framing {
        if sent < n {
            log_short_body(n - sent);
        }
    }
    send_or_finish(tasks, stream, pending, Vec::new(), 0, fin, move |_| {
        done(sent)
    });
    drop(source);
}

/// Let a task finish a stream: send `rest`, then what `source` still produces. `sent`:
/// the body bytes already sent (or in `rest`).
fn hand_over(
    tasks: &TaskTracker,
    stream: StdConn,
    rest: Vec<u8>,
    source: Box<dyn ChunkSource>,
    framing: Framing,
    sent: u64,
    done: impl FnOnce(u64) + Send + 'static,
) {
    let framing = match framing {
        Framing::Length(n) => Framing::Length(n - sent),
        other => other,
    };
    finish_later(
        tasks,
        stream,
        rest,
        Some((Body::Stream(source), framing)),
        move |more| done(sent + more),
    );
}

/// What of `head` and `pieces` is left after the first `written` bytes.
fn unsent(head: &[u8], pieces: &[Bytes], written: usize) -> Vec<u8> {
    let total = head.len() + pieces.iter().map(Bytes::len).sum::<usize>();
    let mut rest = Vec::with_capacity(total.saturating_sub(written));
    let mut skip = written;
    for piece in std::iter::once(head).chain(pieces.iter().map(|p| &p[..])) {
        let take = skip.min(piece.len());
        rest.extend_from_slice(&piece[take..]);
        skip -= take;
    }
    rest
}

/// Send `out` and `pieces` now if the socket takes them, else finish on a task; then
/// run `done` with the body bytes sent. `short`: how many bytes the body lacks against
/// its declared length (logged). `fin`: as for [`send_response`]; the socket is closed
/// right after a complete send, which sends the held segment with the FIN.
fn send_or_finish(
    tasks: &TaskTracker,
    stream: StdConn,
    out: Vec<u8>,
    pieces: Vec<Bytes>,
    short: u64,
    fin: bool,
    done: impl FnOnce(u64) + Send + 'static,
) {
    let fd = stream.fd();
    let body_len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    match send_now(fd, &out, &pieces, fin) {
        Sent::All => {
            if short > 0 {
                log_short_body(short);
            }
            drop(stream);
            done(body_len);
        }
        Sent::Part(written) => {
            // The socket buffer is full: a task sends the rest.
            let rest = unsent(&out, &pieces, written);
            finish_later(tasks, stream, rest, None, move |_| {
                if short > 0 {
                    log_short_body(short);
                }
                done(body_len);
            });
        }
        Sent::Failed => {
            // The client went away; the request was still served.
            done(0);
        }
    }
}

/// Cut body pieces to the declared length; also returns by how much they fall short.
fn cut(mut pieces: Vec<Bytes>, limit: u64) -> (Vec<Bytes>, u64) {
    let mut room = limit;
    pieces.retain_mut(|p| {
        if room == 0 {
            return false;
        }
        if p.len() as u64 > room {
            p.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        room -= p.len() as u64;
        !p.is_empty()
    });
    if pieces.len() > MAX_IOVECS {
        let joined: Vec<u8> = pieces.concat();
        pieces = vec![Bytes::from(joined)];
    }
    (pieces, room)
}

/// How far a non-blocking send got.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    All,
    /// The socket buffer filled after this many bytes.
    Part(usize),
    /// The connection is gone.
    Failed,
}

/// Send `head` and `pieces` without blocking, as far as the socket buffer allows.
/// `more`: `MSG_MORE`, the kernel may hold the last partial segment until the next send
/// or the FIN (the caller closes the socket right after a complete send). A partial
/// send is finished by a task whose plain writes push everything out.
fn send_now(fd: std::os::fd::RawFd, head: &[u8], pieces: &[Bytes], more: bool) -> Sent {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(pieces.len() + 1);
    slices.push(IoSlice::new(head));
    slices.extend(pieces.iter().map(|p| IoSlice::new(p)));
    let total: usize = head.len() + pieces.iter().map(Bytes::len).sum::<usize>();
    let mut written = 0usize;
    let mut bufs = &mut slices[..];
    while written < total {
        // SAFETY: a zeroed msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (documented by std); sendmsg
        // only reads the slices, which live across the call.
        msg.msg_iov = bufs.as_mut_ptr().cast();
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: `fd` is an open socket we own; `msg` points to valid iovecs.
        let n = unsafe { libc::sendmsg(fd, &msg, flags) };
        match usize::try_from(n) {
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => Sent::Part(written),
                    _ => Sent::Failed,
                };
            }
        }
    }
    Sent::All
}

/// Finish a response on a task: send `rest`, then `body` as `framing` says, then run
/// `done` with the body bytes the task sent.
fn finish_later(
    tasks: &TaskTracker,
    stream: StdConn,
    rest: Vec<u8>,
    body: Option<(Body, Framing)>,
    done: impl FnOnce(u64) + Send + 'static,
) {
    let Ok(mut conn) = stream.into_conn() else {
        return;
    };
    tasks.spawn(async move {
        let mut sent = 0;
        if conn.write_all(&rest).await.is_ok() {
            if let Some((body, framing)) = body {
                sent = write_body(&mut conn, body, framing).await.unwrap_or(0);
            }
        }
        drop(conn);
        done(sent);
    });
}

/// Write a response on a connection that closes after it: `head`, then `body` as
/// `framing` says (a body in memory goes with the head in one write). Returns the body
/// bytes sent. The connection is closed when the caller drops it (close(2) sends the
/// FIN; a shutdown(2) first would only cost a syscall per request).
pub(in crate::server) async fn write_response(
    conn: &mut Conn,
    mut head: Vec<u8>,
    body: Body,
    framing: Framing,
) -> io::Result<u64> {
    match (framing, body) {
        (Framing::None, body) => {
            drop(body);
            conn.write_all(&head).await?;
            Ok(0)
        }
        (Framing::Close, Body::Full(b)) => {
            head.extend_from_slice(&b);
            conn.write_all(&head).await?;
            Ok(b.len() as u64)
        }
        (Framing::Length(n), Body::Full(b)) if n == b.len() as u64 => {
            head.extend_from_slice(&b);
            conn.write_all(&head).await?;
            Ok(n)
        }
        (framing, body) => {
            conn.write_all(&head).await?;
            write_body(conn, body, framing).await
        }
    }
}

/// Write `body` after its head; returns the body bytes sent (without chunk framing).
pub(in crate::server) async fn write_body(
    conn: &mut Conn,
    body: Body,
    framing: Framing,
) -> io::Result<u64> {
    if framing == Framing::None {
        return Ok(0);
    }
    let limit = framing.limit();
    match body {
        // sendfile(2), unless the file must be chunked (no length, HTTP/1.1).
        Body::File {
            file,
            offset,
            len,
            on_done,
        } if framing != Framing::Chunked => {
            let want = len.unwrap_or(u64::MAX).min(limit);
            let sent = sendfile(conn, &file, offset, want).await?;
            drop(on_done);
            if limit != u64::MAX && sent < limit {
                log_short_body(limit - sent);
            }
            Ok(sent)
        }
        body => write_frames(conn, body, framing, limit).await,
    }
}

/// Write a body frame by frame (streams, channels, chunk lists, files without sendfile).
async fn write_frames(
    conn: &mut Conn,
    body: Body,
    framing: Framing,
    limit: u64,
) -> io::Result<u64> {
    let mut sent: u64 = 0;
    let mut source = RespBody::new(body, None);
    let mut frames = std::pin::pin!(&mut source);
    let mut complete = true;
    while let Some(frame) = frames.as_mut().frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let room = limit - sent;
        if room == 0 {
            break;
        }
        if data.len() as u64 > room {
            data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if data.is_empty() {
            continue;
        }
        if framing == Framing::Chunked {
            let mut chunk = Vec::with_capacity(data.len() + 12);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            conn.write_all(&chunk).await?;
        } else {
            conn.write_all(&data).await?;
        }
        sent += data.len() as u64;
    }
    match framing {
        // The last chunk only after a complete body: a cut one stays visibly cut.
        Framing::Chunked if complete => conn.write_all(b"0\r\n\r\n").await?,
        Framing::Length(n) if sent < n => log_short_body(n - sent),
        _ => {}
    }
    Ok(sent)
}

/// Send up to `count` bytes of `file` from `offset` with sendfile(2).
async fn sendfile(conn: &Conn, file: &std::fs::File, offset: u64, count: u64) -> io::Result<u64> {
    let mut off = i64::try_from(offset).unwrap_or(i64::MAX);
    let mut sent: u64 = 0;
    while sent < count {
        let chunk = usize::try_from(count - sent)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match try_sendfile(conn, file, &mut off, chunk) {
            Ok(0) => break,
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// One non-blocking sendfile(2) of up to `count` bytes from `*offset`, which it advances.
fn try_sendfile(
    conn: &Conn,
    file: &std::fs::File,
    offset: &mut i64,
    count: usize,
) -> io::Result<usize> {
    let out_fd = conn.fd();
    let mut off: libc::off_t = *offset;
    let n = conn.try_write_io(|| {
        // SAFETY: both fds are open for the duration of the call (we hold the
        // stream and the file); `off` is a valid, exclusively borrowed off_t.
        let n = unsafe { libc::sendfile(out_fd, file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })?;
    *offset = off;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bodies_are_cut_to_the_declared_length() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let cases: Vec<(Vec<Bytes>, u64, Vec<Bytes>, u64)> = vec![
            (vec![b("hello")], 5, vec![b("hello")], 0),
            (vec![b("hello")], 2, vec![b("he")], 0),
            (vec![b("ab"), b("cd"), b("ef")], 3, vec![b("ab"), b("c")], 0),
            (vec![b("ab")], 5, vec![b("ab")], 3),
            (vec![b(""), b("ab")], 2, vec![b("ab")], 0),
            (vec![], 0, vec![], 0),
        ];
        for (pieces, limit, want, short) in cases {
            assert_eq!(
                cut(pieces.clone(), limit),
                (want, short),
                "{pieces:?} {limit}"
            );
        }
        let many: Vec<Bytes> = (0..100).map(|_| b("x")).collect();
        assert_eq!(cut(many, 100).0, vec![Bytes::from(vec![b'x'; 100])]);
    }

    #[test]
    fn unsent_is_what_follows_the_written_bytes() {
        let pieces = [Bytes::from_static(b"body"), Bytes::from_static(b"\r\n")];
        let cases: &[(usize, &[u8])] = &[
            (0, b"head body\r\n"),
            (3, b"d body\r\n"),
            (5, b"body\r\n"),
            (7, b"dy\r\n"),
            (10, b"\n"),
            (11, b""),
        ];
        for (written, want) in cases {
            assert_eq!(
                unsent(b"head ", &pieces, *written),
                want.to_vec(),
                "{written}"
            );
        }
    }

    #[test]
    fn a_held_back_answer_leaves_with_the_close() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let body = Bytes::from(vec![b'x'; 3000]);
        assert_eq!(
            send_now(server.as_raw_fd(), b"head ", &[body], true),
            Sent::All
        );
        drop(server); // the FIN goes out with the held segment
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 5 + 3000);
        assert!(got.starts_with(b"head xxx"));
    }

    #[test]
    fn send_now_reports_a_full_buffer_and_a_gone_peer() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        assert_eq!(
            send_now(
                server.as_raw_fd(),
                b"head ",
                &[Bytes::from_static(b"body")],
                false
            ),
            Sent::All
        );
        let mut got = [0u8; 9];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"head body");
        // 64 MiB never fits the loopback buffers of an unread socket.
        let big = Bytes::from(vec![0u8; 64 << 20]);
        match send_now(server.as_raw_fd(), b"", &[big], false) {
            Sent::Part(n) => assert!(n > 0 && n < 64 << 20, "{n}"),
            other => panic!("{other:?}"),
        }
        drop(client);
        let mut failed = false;
        for _ in 0..100 {
            if send_now(server.as_raw_fd(), b"x", &[], false) == Sent::Failed {
                failed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(failed, "a closed peer is reported");
    }
}
