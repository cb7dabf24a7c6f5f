//! The response model shared by the Python layer and the protocol writers.
//!
//! The app's answer is reduced to a [`Response`]: a status, header pairs and a
//! [`Body`]. Most WSGI apps return a list of byte strings; those become
//! [`Body::Full`] and the GIL is not needed again. Generators become
//! [`Body::Stream`], pulled chunk by chunk, and `wsgi.file_wrapper` over a real file
//! becomes [`Body::File`], which the uwsgi writer sends with `sendfile(2)`.
//!
//! Whatever the body, the app's `close()` runs exactly once: when the body has been
//! sent, or when the client went away and the body is dropped.

use std::fs::File;

use bytes::Bytes;

/// One chunk producer for a streamed body: the Python iterator behind it lives in
/// [`crate::python`]; the writers only see this trait.
pub trait ChunkSource: Send {
    /// The next non-empty chunk, `Ok(None)` at the end. An error ends the response
    /// early (the connection is then closed: the client can tell the body is cut).
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError>;
}

/// Why a streamed body ended early.
#[derive(Debug, thiserror::Error)]
#[error("response body aborted: {0}")]
pub struct StreamError(pub String);

/// A response body.
pub enum Body {
    /// No body at all.
    Empty,
    /// The whole body, already collected (the usual case: the app returned a list).
    Full(Bytes),
    /// Several chunks already collected (a list of several byte strings).
    Chunks(Vec<Bytes>),
    /// An open file to send from `offset`, `len` bytes (`None`: to its end). Used by
    /// `wsgi.file_wrapper` and by `static-map`.
    File {
        /// The file.
        file: File,
        /// Where to start.
        offset: u64,
        /// How many bytes; `None` means up to the end of the file.
        len: Option<u64>,
        /// Runs the app's `close()` when the file is done (None for static files).
        on_done: Option<Box<dyn ChunkSource>>,
    },
    /// A body produced chunk by chunk (a generator).
    Stream(Box<dyn ChunkSource>),
    /// A body produced on another thread (the app-thread pool pumps the generator).
    Channel(tokio::sync::mpsc::Receiver<Result<Bytes, StreamError>>),
}

impl Body {
    /// The exact length, when known without producing the body.
    pub fn exact_len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::Chunks(c) => Some(c.iter().map(|b| b.len() as u64).sum()),
            Body::File { len, .. } => *len,
            Body::Stream(_) | Body::Channel(_) => None,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Body::Chunks(c) => write!(f, "Chunks({})", c.len()),
            Body::File { offset, len, .. } => write!(f, "File({offset}, {len:?})"),
            Body::Stream(_) => f.write_str("Stream"),
            Body::Channel(_) => f.write_str("Channel"),
        }
    }
}

/// A response ready to be written by either protocol.
#[derive(Debug)]
pub struct Response {
    /// The numeric status (200).
    pub status: u16,
    /// The status line as the app gave it (`200 OK`), for the uwsgi writer.
    pub status_line: Bytes,
    /// Header (name, value) pairs as the app gave them.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body.
    pub body: Body,
    /// The Content-Length the app declared, if any.
    pub content_length: Option<u64>,
    /// Whether the request raised in the app (counted as an exception).
    pub exception: bool,
}

impl Response {
    /// A plain-text error response produced by the server itself (400, 413, 500, ...).
    pub fn error(status: u16) -> Response {
        let reason = reason(status);
        let body = Bytes::from(format!("{status} {reason}\n"));
        Response {
            status,
            status_line: Bytes::from(format!("{status} {reason}")),
            headers: vec![
                (
                    Bytes::from_static(b"Content-Type"),
                    Bytes::from_static(b"text/plain"),
                ),
                (
                    Bytes::from_static(b"Content-Length"),
                    Bytes::from(body.len().to_string()),
                ),
            ],
            content_length: Some(body.len() as u64),
            body: Body::Full(body),
            exception: false,
        }
    }
}

/// The reason phrase for the statuses the server produces itself.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// Parse the numeric code at the start of a WSGI status line (`"200 OK"`).
pub fn parse_status(line: &[u8]) -> Option<u16> {
    if line.len() < 3 || (line.len() > 3 && line[3] != b' ') {
        return None;
    }
    let mut code: u16 = 0;
    for &d in &line[..3] {
        if !d.is_ascii_digit() {
            return None;
        }
        code = code * 10 + u16::from(d - b'0');
    }
    (100..=999).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"200 OK", Some(200)),
            (b"404 Not Found", Some(404)),
            (b"599", Some(599)),
            (b"20 OK", None),
            (b"2000 OK", None),
            (b"abc OK", None),
            (b"099 x", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_status(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_response_is_consistent() {
        let r = Response::error(400);
        assert_eq!(r.status, 400);
        assert_eq!(&r.status_line[..], b"400 Bad Request");
        assert_eq!(r.body.exact_len(), r.content_length);
    }
}
