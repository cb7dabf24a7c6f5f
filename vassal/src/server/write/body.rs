//! [`RespBody`]: a response body as frames, for hyper and for the tasks that finish
//! a response ([`super::send`]), which keeps the app's declared `Content-Length` honest
//! and gives the worker's other connections their turns during a long stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::log_short_body;
use crate::response::{Body, StreamError};

/// How long a streamed body may keep the worker's thread before it lets the other
/// connections in (see `RespBody::poll_frame`).
const STREAM_TURN: Duration = Duration::from_millis(2);
/// Chunk size for file bodies that cannot use sendfile.
const FILE_CHUNK: usize = 64 * 1024;

/// A response body for hyper that enforces the declared Content-Length: extra bytes
/// are cut off, and a body that ends short aborts the connection (the client sees a
/// truncated response, never the next response glued to this one).
pub(in crate::server) struct RespBody {
    inner: Body,
    /// Bytes still allowed by the declared Content-Length.
    remaining: Option<u64>,
    /// Chunks of `Body::Chunks`, in order (reversed for cheap pops).
    rev_chunks: Vec<Bytes>,
    done: bool,
    /// After a streamed chunk: a turn for the other tasks and the I/O driver before the
    /// next one (see `poll_frame`).
    pause: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// When the stream last let the others in (set at its first chunk).
    last_pause: Option<Instant>,
}

impl RespBody {
    /// A body of `inner`, cut to `declared` bytes (and aborted if shorter) when given.
    pub(in crate::server) fn new(inner: Body, declared: Option<u64>) -> RespBody {
        let (inner, rev_chunks) = match inner {
            Body::Chunks(mut c) => {
                c.reverse();
                (Body::Empty, c)
            }
            other => (other, Vec::new()),
        };
        RespBody {
            inner,
            remaining: declared,
            rev_chunks,
            done: false,
            pause: None,
            last_pause: None,
        }
    }

    fn next_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
        if let Some(c) = self.rev_chunks.pop() {
            return Poll::Ready(Some(Ok(c)));
        }
        match &mut self.inner {
            Body::Empty | Body::Chunks(_) => Poll::Ready(None),
            Body::Full(_) => match std::mem::replace(&mut self.inner, Body::Empty) {
                Body::Full(b) => Poll::Ready(Some(Ok(b))),
                _ => Poll::Ready(None),
            },
            Body::File {
                file, offset, len, ..
            } => {
                use std::os::unix::fs::FileExt;
                let want = len.map_or(FILE_CHUNK, |l| {
                    usize::try_from(l).unwrap_or(FILE_CHUNK).min(FILE_CHUNK)
                });
                if want == 0 {
                    self.inner = Body::Empty;
                    return Poll::Ready(None);
                }
                let mut buf = vec![0u8; want];
                match file.read_at(&mut buf, *offset) {
                    Ok(0) => {
                        self.inner = Body::Empty;
                        Poll::Ready(None)
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        *offset += n as u64;
                        if let Some(l) = len {
                            *l -= n as u64;
                        }
                        Poll::Ready(Some(Ok(Bytes::from(buf))))
                    }
                    Err(e) => Poll::Ready(Some(Err(StreamError(e.to_string())))),
                }
            }
            Body::Stream(source) => {
                let next = source.next_chunk().transpose();
                let now = Instant::now();
                let last = *self.last_pause.get_or_insert(now);
                if now.duration_since(last) >= STREAM_TURN {
                    self.pause = Some(Box::pin(tokio::task::yield_now()));
                    self.last_pause = Some(now);
                }
                Poll::Ready(next)
            }
            Body::Channel(rx) => rx.poll_recv(cx),
        }
    }
}

impl hyper::body::Body for RespBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(pause) = &mut this.pause {
            // With `threads = 1` a generator runs on this thread: pulling chunk after
            // chunk without a pause would hold every other connection of the worker
            // until the stream ends (a slow generator, for its whole length). A
            // `yield_now` once the stream had the thread for STREAM_TURN lets the I/O
            // driver and the other tasks in (waking ourselves would not: the driver is
            // only polled when no task is ready, or every 61 polls).
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        loop {
            let next = match this.next_raw(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(n) => n,
            };
            match (next, this.remaining) {
                (Some(Ok(chunk)), None) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                (Some(Ok(mut chunk)), Some(rem)) => {
                    if rem == 0 {
                        // Past the declared length: drain and drop the rest.
                        continue;
                    }
                    if chunk.len() as u64 > rem {
                        chunk.truncate(usize::try_from(rem).unwrap_or(usize::MAX));
                    }
                    this.remaining = Some(rem - chunk.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                (Some(Err(e)), _) => {
                    this.done = true;
                    this.inner = Body::Empty;
                    return Poll::Ready(Some(Err(e)));
                }
                (None, Some(rem)) if rem > 0 => {
                    this.done = true;
                    log_short_body(rem);
                    return Poll::Ready(Some(Err(StreamError(
                        "body shorter than Content-Length".into(),
                    ))));
                }
                (None, _) => {
                    this.done = true;
                    this.inner = Body::Empty;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || (self.rev_chunks.is_empty()
                && matches!(self.inner, Body::Empty)
                && self.remaining.is_none_or(|r| r == 0))
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(rem) = self.remaining {
            return SizeHint::with_exact(rem);
        }
        let known = match &self.inner {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::File { len, .. } => *len,
            _ => None,
        };
        match known {
            Some(k) => SizeHint::with_exact(
                k + self.rev_chunks.iter().map(|c| c.len() as u64).sum::<u64>(),
            ),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hyper::body::Body as _;

    fn collect(mut body: RespBody) -> (Vec<u8>, bool) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => out.extend_from_slice(&f.into_data().unwrap()),
                Poll::Ready(Some(Err(_))) => return (out, false),
                Poll::Ready(None) => return (out, true),
                Poll::Pending => panic!("pending"),
            }
        }
    }

    #[test]
    fn content_length_is_enforced() {
        let cases: Vec<(Body, Option<u64>, &[u8], bool)> = vec![
            (
                Body::Full(Bytes::from_static(b"hello")),
                None,
                b"hello",
                true,
            ),
            (
                Body::Full(Bytes::from_static(b"hello")),
                Some(5),
                b"hello",
                true,
            ),
            (
                Body::Full(Bytes::from_static(b"helloworld")),
                Some(5),
                b"hello",
                true,
            ),
            (
                Body::Full(Bytes::from_static(b"hel")),
                Some(5),
                b"hel",
                false,
            ),
            (
                Body::Chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
                Some(3),
                b"abc",
                true,
            ),
            (Body::Empty, Some(0), b"", true),
            (Body::Empty, Some(2), b"", false),
        ];
        for (body, declared, want, complete) in cases {
            let (got, ok) = collect(RespBody::new(body, declared));
            assert_eq!(got, want);
            assert_eq!(ok, complete, "declared {declared:?}");
        }
    }

    #[test]
    fn size_hint_is_exact_when_known() {
        let b = RespBody::new(
            Body::Chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
            None,
        );
        assert_eq!(b.size_hint().exact(), Some(4));
        let b = RespBody::new(Body::Full(Bytes::from_static(b"abc")), None);
        assert_eq!(b.size_hint().exact(), Some(3));
    }
}
