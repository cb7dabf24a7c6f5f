//! Just enough HTTP/1.1 for the control socket: a request writer, a response head
//! parser, and the body readers (`Content-Length`, chunked, until close). Pure over
//! `Read`/`BufRead`, so it is tested on byte slices.

use std::io::{self, BufRead, Read};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A request as bytes: `Host` is arbitrary on a unix socket, and `Connection: close` so
/// every request has its own connection.
pub fn request(method: &str, target: &str, json_body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: rsgictl/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    match json_body {
        Some(body) => {
            out.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(body);
        }
        None if method == "POST" => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        None => out.extend_from_slice(b"\r\n"),
    }
    out
}

/// Percent-encode one path segment (a vassal name may hold `?`, `#`, `%`, ...).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the body is chunked.
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        })
    }

    /// The `Content-Length`, if any.
    pub fn content_length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| invalid(format!("bad Content-Length: {v:?}")))
            })
            .transpose()
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Read one CRLF (or LF) terminated line, without its terminator; `budget` bounds the
/// bytes read overall.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n > *budget {
        return Err(invalid("the response head is too large"));
    }
    *budget -= n;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed in the middle of the response",
        ));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("the response head is not UTF-8"))
}

/// Read a response head (skipping interim `1xx` responses).
pub fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    loop {
        let mut budget = MAX_HEAD;
        let status_line = read_line(r, &mut budget)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!("not an HTTP response: {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r, &mut budget)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("bad header line: {line:?}")))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        return Ok(Head { status, headers });
    }
}

/// The body of a response with head `head`, as a reader.
pub fn body<'a, R: BufRead + 'a>(head: &Head, r: R) -> io::Result<Box<dyn BufRead + 'a>> {
    if head.status == 204 || head.status == 304 {
        return Ok(Box::new(io::empty()));
    }
    if head.chunked() {
        return Ok(Box::new(io::BufReader::new(Chunked::new(r))));
    }
    match head.content_length()? {
        Some(n) => Ok(Box::new(LengthReader { inner: r.take(n) })),
        None => Ok(Box::new(r)),
    }
}

/// A `Content-Length` body: like `Take`, but a body cut short is an error.
struct LengthReader<R> {
    inner: io::Take<R>,
}

impl<R: BufRead> Read for LengthReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.inner.limit() > 0 && !buf.is_empty() {
            return Err(short());
        }
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LengthReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let left = self.inner.limit();
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() && left > 0 {
            return Err(short());
        }
        Ok(buf)
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}

fn short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the connection closed in the middle of the response body",
    )
}

/// A reader of a chunked body. Reads only as far as it must, so a followed log
/// (`logs -f`) yields each line as soon as its chunk arrives.
pub struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: u64,
    /// The CRLF after a chunk's data is still to be read.
    crlf: bool,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    /// Decode the chunked body that `inner` is positioned at.
    pub fn new(inner: R) -> Chunked<R> {
        Chunked {
            inner,
            left: 0,
            crlf: false,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut budget = MAX_HEAD;
            if self.crlf {
                if !read_line(&mut self.inner, &mut budget)?.is_empty() {
                    return Err(invalid("a chunk is longer than its size"));
                }
                self.crlf = false;
            }
            let line = read_line(&mut self.inner, &mut budget)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size: {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(&mut self.inner, &mut budget)?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(short());
        }
        self.left -= n as u64;
        if self.left == 0 {
            self.crlf = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Parse a whole response, reading one byte at a time (every split point).
    fn parse(bytes: &[u8]) -> io::Result<(Head, Vec<u8>)> {
        let mut r = io::BufReader::with_capacity(1, bytes);
        let head = read_head(&mut r)?;
        let mut out = Vec::new();
        body(&head, r)?.read_to_end(&mut out)?;
        Ok((head, out))
    }

    #[test]
    fn content_length_body() {
        let (head, body) =
            parse(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 4\r\n\r\n{}\n\nextra")
                .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(body, b"{}\n\n");
    }

    #[test]
    fn short_bodies_are_errors() {
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let (head, body) = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              4;ext=1\r\nline\r\n1\r\n\n\r\na\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .unwrap();
        assert!(head.chunked());
        assert_eq!(body, b"line\n0123456789");
    }

    #[test]
    fn bodies_until_close_and_empty_ones() {
        let (_, body) = parse(b"HTTP/1.1 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!(body, b"to the end");
        let (head, body) = parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((head.status, body.len()), (204, 0));
        let (head, _) =
            parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n").unwrap();
        assert_eq!(head.status, 404);
    }

    #[test]
    fn garbage_is_invalid_data() {
        for bytes in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        ] {
            let e = parse(bytes).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bytes:?}");
        }
    }

    #[test]
    fn chunked_lines_arrive_one_by_one() {
        // A reader that only has the first chunk yet must still yield its line.
        let first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n";
        let mut r = io::BufReader::new(&first[..]);
        let head = read_head(&mut r).unwrap();
        let mut lines = body(&head, r).unwrap();
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "hello\n");
    }

    #[test]
    fn requests() {
        let r = request("GET", "/vassals", None);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("GET /vassals HTTP/1.1\r\nHost: localhost\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        let r = String::from_utf8(request("POST", "/reload", None)).unwrap();
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
        let r = String::from_utf8(request("POST", "/check", Some(b"{}"))).unwrap();
        assert!(r.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("my-app_1.x~"), "my-app_1.x~");
        assert_eq!(encode_segment("a?b#c%d/e f"), "a%3Fb%23c%25d%2Fe%20f");
    }
}
