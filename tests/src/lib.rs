//! rsgi-e2e: the harness for the end-to-end tests, which run the real `rsgi` binary with
//! real Python apps (stdlib apps from `tests/apps/`, Flask and Django from PyPI) and talk
//! to it over real sockets, sometimes through a real nginx.
//!
//! # Layout
//!
//! - Finding things: [`bin`], [`rsgi_bin`], [`venv`], [`venv_python`], [`venv_bin`],
//!   [`apps_dir`], [`repo_dir`].
//! - Scratch space: [`tempdir`] (short paths under `/tmp`, so unix socket paths stay far
//!   below the 108-byte limit), [`write_file`], [`free_port`].
//! - Waiting: [`wait_until`] polls with a deadline; nothing here sleeps a fixed time to
//!   synchronise.
//! - Processes: [`Rsgi`] (the server under test, its output captured in a log file; its
//!   `Drop` stops it by pid), [`Emperor`] (a real `rsgid` on a temp vassal directory;
//!   its `Drop` kills rsgid and every vassal), [`Nginx`] (nginx with `uwsgi_pass` in
//!   front of rsgi), [`PidGuard`] (kills a daemonized pid on drop); [`pids_where`],
//!   [`proc_cmdline`], [`process_alive`] look processes up in `/proc`.
//! - Load: [`Load`] runs a request function in a few threads and counts failures
//!   ([`LoadReport`]); [`uwsgi_get`] and [`http_get`] return errors instead of panicking.
//! - Clients (std only, blocking, with timeouts): [`Addr`], [`HttpConn`],
//!   [`HttpResponse`], [`http_request`], [`get`], [`post`], [`pipeline`],
//!   [`uwsgi_packet`], [`uwsgi_request`], [`uwsgi_raw`].
//! - Apps: [`django_project`] builds a real Django project at test time.
//!
//! # Environment
//!
//! - `RSGI_TEST_VENV` (required): the virtualenv with Django and Flask that
//!   `scripts/test.sh` creates at `target/e2e-venv` with `/usr/bin/python3`. If it is
//!   unset or missing, the tests that need it **panic**: a test that silently did
//!   nothing must never count as a pass.
//! - `RSGI_BIN` (optional): run this server binary instead of `target/debug/rsgi`. Point
//!   it at a real uWSGI (`RSGI_BIN=/tmp/uwsgi-venv/bin/uwsgi`) to check the harness and
//!   the tests that do not depend on rsgi-specific rules against the reference server.
//! - `RSGI_EXTRA_ARGS` (optional): whitespace-separated arguments appended to every
//!   server command line (for uWSGI: `--die-on-term`, so SIGTERM stops rather than
//!   reloads it).

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a server may take to start accepting connections.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a stopped server may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Read and write timeout of every client socket: a hung server fails the test instead
/// of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval between two polls in [`wait_until`] and the fixtures' waits.
pub const POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------
// Finding binaries, the venv and the apps
// ---------------------------------------------------------------------------------------

/// The repository root (the workspace directory).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// `tests/apps/`: the Python test apps.
pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// Path of one of the workspace's binaries (`rsgi`, `rsgid`, `rsgictl`).
///
/// Cargo sets `CARGO_BIN_EXE_<name>` only for the binaries of the test's own package, so
/// this looks next to the test executable instead: it runs from `target/<profile>/deps/`
/// and the binaries are in `target/<profile>/`. Panics if the binary is missing.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The server under test: `$RSGI_BIN` if set (e.g. a real uWSGI, to check the harness),
/// else [`bin`]`("rsgi")`.
pub fn rsgi_bin() -> PathBuf {
    match std::env::var_os("RSGI_BIN") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "RSGI_BIN={} does not exist", path.display());
            path
        }
        _ => bin("rsgi"),
    }
}

/// True when `RSGI_BIN` points at something other than rsgi (a uWSGI used to check the
/// harness). Tests of rsgi-only rules (exit codes, 400s, the venv check) still run and
/// are expected to fail then; this only lets a test print context.
pub fn is_reference_server() -> bool {
    std::env::var_os("RSGI_BIN").is_some_and(|p| !p.is_empty())
}

/// The test virtualenv (`$RSGI_TEST_VENV`), which holds Django, Flask and the other
/// packages of `tests/requirements.txt`.
///
/// Panics if it is unset or missing: run `scripts/test.sh`, which creates it.
pub fn venv() -> PathBuf {
    let Some(path) = std::env::var_os("RSGI_TEST_VENV").filter(|p| !p.is_empty()) else {
        panic!(
            "RSGI_TEST_VENV is not set: run scripts/test.sh, which creates the test \
             virtualenv (target/e2e-venv) and sets it"
        );
    };
    let path = PathBuf::from(path);
    let path = if path.is_absolute() {
        path
    } else {
        repo_dir().join(path)
    };
    assert!(
        path.join("bin/python").exists(),
        "RSGI_TEST_VENV={} is not a virtualenv: run scripts/test.sh, which creates it",
        path.display()
    );
    path
}

/// The test virtualenv's Python interpreter.
pub fn venv_python() -> PathBuf {
    venv().join("bin/python")
}

/// A script installed in the test virtualenv (`django-admin`, ...). Panics if missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: is tests/requirements.txt installed? (scripts/test.sh)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------
// Scratch space and waiting
// ---------------------------------------------------------------------------------------

/// A fresh temporary directory under `/tmp` (not `$TMPDIR`, which may be long): unix
/// socket paths inside it stay short. Removed when dropped.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rsgi-e2e.")
        .tempdir_in("/tmp")
        .expect("create a temp dir in /tmp")
}

/// The unprivileged user the tests run things as (`rsgi-tyrant`, made by
/// scripts/test.sh); panics unless the tests run as root, saying `why` root is needed.
pub fn test_user(why: &str) -> nix::unistd::User {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root ({why}): run scripts/test.sh as root"
    );
    nix::unistd::User::from_name("rsgi-tyrant")
        .expect("look up rsgi-tyrant")
        .expect("no user rsgi-tyrant: scripts/test.sh creates it")
}

/// Bump `path`'s modification time (a `touch`, creating it if missing), a second into
/// the future so that no clock granularity can hide it.
pub fn touch_file(path: &Path) {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// Write `contents` to `dir/name` (creating parent dirs) and return the path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent dir");
    }
    fs::write(&path, contents).expect("write file");
    path
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound and let go), never handed
/// out twice by this test process. Another process could still take it before the
/// server binds it.
pub fn free_port() -> u16 {
    // Not a port from bind(":0"): that one comes from the kernel's ephemeral range, the
    // same range the tests' own client connections take their local ports from, so
    // one of them could hold it by the time the server binds ("Address already in
    // use", then a test talking to whatever else listens there). Ports below the
    // ephemeral range (32768 on Linux), handed out once per test process, never clash
    // with a client socket or with another test of this process.
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Different test processes start at different places in the range.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{FIRST}..{}", FIRST + SPAN);
}

/// A free `127.0.0.1:port` address (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Poll `cond` every [`POLL`] until it is true; panic naming `what` after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------
// Addresses and raw streams
// ---------------------------------------------------------------------------------------

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A TCP address (tests use 127.0.0.1).
    Tcp(SocketAddr),
    /// A unix-domain socket path.
    Unix(PathBuf),
}

impl Addr {
    /// `127.0.0.1:port`.
    pub fn local(port: u16) -> Addr {
        Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The address as an option value: `127.0.0.1:8000` or the socket path.
    pub fn arg(&self) -> String {
        match self {
            Addr::Tcp(addr) => addr.to_string(),
            Addr::Unix(path) => path.display().to_string(),
        }
    }

    /// Connect, with [`IO_TIMEOUT`] as read and write timeout.
    pub fn connect(&self) -> io::Result<Stream> {
        let stream = match self {
            Addr::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Addr::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        stream.set_timeouts(IO_TIMEOUT)?;
        Ok(stream)
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(addr) => write!(f, "{addr}"),
            Addr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connected TCP or unix stream.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain.
    Unix(UnixStream),
}

impl Stream {
    /// Set both the read and the write timeout.
    pub fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    /// Half-close (or close) the connection.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// A second handle to the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// True if `addr` accepts a connection right now.
pub fn accepts(addr: &Addr) -> bool {
    match addr {
        Addr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok(),
        Addr::Unix(p) => UnixStream::connect(p).is_ok(),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status line's version (`HTTP/1.1`).
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// True if the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete line",
        ));
    }
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of a line",
        ));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("response line is not UTF-8"))
}

/// Read one response (which may be a `1xx` interim response, returned as is) from `r`.
///
/// The body ends as HTTP/1.1 says: none for HEAD requests (`head`), 1xx, 204 and 304;
/// else `Transfer-Encoding: chunked`; else `Content-Length`; else the end of the stream.
/// Errors: `UnexpectedEof` (or a reset) when the server closed early, `InvalidData` when
/// the bytes are not a well-formed response (e.g. a desynchronised connection).
pub fn read_response(r: &mut impl BufRead, head: bool) -> io::Result<HttpResponse> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not a status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| invalid(format!("bad status in {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        if k.is_empty() || k.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(invalid(format!("bad header name in {line:?}")));
        }
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
    let mut resp = HttpResponse {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    if head || status < 200 || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        resp.chunked = true;
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            if !read_line(r)?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    } else if let Some(cl) = resp.header("content-length") {
        let len: usize = cl
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {cl:?}")))?;
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// Read responses from `r`, skipping `1xx` interim responses, and return the final one.
pub fn read_final_response(r: &mut impl BufRead, head: bool) -> io::Result<HttpResponse> {
    loop {
        let resp = read_response(r, head)?;
        if resp.status >= 200 {
            return Ok(resp);
        }
    }
}

/// Parse a complete response held in memory (e.g. everything a uwsgi socket sent).
pub fn parse_response(bytes: &[u8], head: bool) -> io::Result<HttpResponse> {
    read_final_response(&mut io::Cursor::new(bytes), head)
}

/// One client connection that can carry several requests (keep-alive, pipelining).
#[derive(Debug)]
pub struct HttpConn {
    reader: BufReader<Stream>,
    writer: Stream,
}

impl HttpConn {
    /// Connect to `addr`.
    pub fn connect(addr: &Addr) -> io::Result<HttpConn> {
        let stream = addr.connect()?;
        let writer = stream.try_clone()?;
        Ok(HttpConn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Write raw bytes.
    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.writer.write_all(raw)?;
        self.writer.flush()
    }

    /// Read the next response, 1xx included (`head`: it answers a HEAD request).
    pub fn read_response(&mut self, head: bool) -> io::Result<HttpResponse> {
        read_response(&mut self.reader, head)
    }

    /// Read the next final (non-1xx) response.
    pub fn read_final(&mut self, head: bool) -> io::Result<HttpResponse> {
        read_final_response(&mut self.reader, head)
    }

    /// Send one raw request and read its final response.
    pub fn request(&mut self, raw: &[u8]) -> io::Result<HttpResponse> {
        self.send(raw)?;
        self.read_final(raw.starts_with(b"HEAD "))
    }

    /// Send a keep-alive `GET path` and read the response.
    pub fn get(&mut self, path: &str) -> io::Result<HttpResponse> {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
    }

    /// Read whatever the server still sends until it closes the connection (bounded by
    /// `timeout`). `Ok(bytes)` means it closed; a timeout error means it kept the
    /// connection open.
    pub fn read_until_close(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        self.reader.get_ref().set_timeouts(timeout)?;
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => Ok(rest),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(rest),
            Err(e) => Err(e),
        }
    }

    /// Read whatever bytes are available next (at most `max`), raw; `Ok(empty)` at EOF.
    pub fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; max];
        let n = self.reader.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Half-close the writing side (the server sees EOF after what was sent).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.writer.shutdown(Shutdown::Write)
    }

    /// The underlying stream, e.g. to change timeouts.
    pub fn stream(&self) -> &Stream {
        &self.writer
    }
}

/// Send one raw request on a new connection and return every byte the server sent until
/// it closed the connection. The request should carry `Connection: close`.
pub fn http_request(addr: &Addr, raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = addr.connect()?;
    stream.write_all(raw)?;
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !out.is_empty() => Ok(out),
        Err(e) => Err(e),
    }
}

/// `GET path` with `Connection: close` on a new connection; panics on I/O errors.
pub fn get(addr: &Addr, path: &str) -> HttpResponse {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `POST path` with a body and `Connection: close`; panics on I/O errors.
pub fn post(addr: &Addr, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    request(addr, &raw)
}

/// Send one raw request on a new connection and parse the final response; panics on I/O
/// or parse errors.
pub fn request(addr: &Addr, raw: &[u8]) -> HttpResponse {
    let mut conn =
        HttpConn::connect(addr).unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
    conn.request(raw).unwrap_or_else(|e| {
        panic!(
            "request {:?} to {addr} failed: {e}",
            String::from_utf8_lossy(raw)
        )
    })
}

/// Send several raw requests on one keep-alive connection, all written at once
/// (pipelined), then read one response per request.
pub fn pipeline(addr: &Addr, raws: &[&[u8]]) -> io::Result<Vec<HttpResponse>> {
    let mut conn = HttpConn::connect(addr)?;
    conn.send(&raws.concat())?;
    raws.iter()
        .map(|raw| conn.read_final(raw.starts_with(b"HEAD ")))
        .collect()
}

/// Send several raw requests on one keep-alive connection, one after the other, each
/// after the previous response was read.
pub fn keep_alive(addr: &Addr, raws: &[&[u8]]) -> io::Result<Vec<HttpResponse>> {
    let mut conn = HttpConn::connect(addr)?;
    raws.iter().map(|raw| conn.request(raw)).collect()
}

// ---------------------------------------------------------------------------------------
// uwsgi protocol client
// ---------------------------------------------------------------------------------------

/// Encode a uwsgi request packet (modifier1 0, modifier2 0) followed by `body`:
/// `u8 0 | u16 LE datasize | u8 0 | { u16 LE klen, key, u16 LE vlen, value }* | body`.
///
/// Panics if a var or the whole block does not fit the 16-bit sizes; use
/// [`uwsgi_packet_raw`] to build invalid packets on purpose.
pub fn uwsgi_packet(vars: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let block = uwsgi_vars(vars);
    let size = u16::try_from(block.len()).expect("uwsgi vars fit in 65535 bytes");
    let mut out = uwsgi_packet_raw(0, size, 0, &block);
    out.extend_from_slice(body);
    out
}

/// Encode uwsgi vars (the block without the 4-byte header).
pub fn uwsgi_vars(vars: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in vars {
        for s in [k, v] {
            let len = u16::try_from(s.len()).expect("a uwsgi var fits in 65535 bytes");
            block.extend_from_slice(&len.to_le_bytes());
            block.extend_from_slice(s.as_bytes());
        }
    }
    block
}

/// A uwsgi packet header with any `datasize`, followed by `block` as is.
pub fn uwsgi_packet_raw(modifier1: u8, datasize: u16, modifier2: u8, block: &[u8]) -> Vec<u8> {
    let mut out = vec![modifier1];
    out.extend_from_slice(&datasize.to_le_bytes());
    out.push(modifier2);
    out.extend_from_slice(block);
    out
}

/// The vars nginx's `uwsgi_params` sends for `method path?query`, plus `HTTP_HOST`; add
/// or override more with `extra` (later entries are appended, so a test can also send a
/// duplicate).
pub fn nginx_vars<'a>(
    method: &'a str,
    path: &'a str,
    query: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", path),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("HTTP_HOST", "localhost"),
    ];
    for (k, v) in extra {
        if let Some(slot) = vars.iter_mut().find(|(name, _)| name == k) {
            slot.1 = v;
        } else {
            vars.push((k, v));
        }
    }
    vars
}

/// Send a uwsgi request and parse the HTTP-style response the server writes back, read
/// until it closes the connection (uwsgi has no keep-alive). Panics on I/O or parse
/// errors.
pub fn uwsgi_request(addr: &Addr, vars: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let head = vars
        .iter()
        .any(|(k, v)| *k == "REQUEST_METHOD" && *v == "HEAD");
    let bytes = uwsgi_raw(addr, &uwsgi_packet(vars, body), false)
        .unwrap_or_else(|e| panic!("uwsgi request to {addr} failed: {e}"));
    parse_response(&bytes, head).unwrap_or_else(|e| {
        panic!(
            "bad uwsgi response from {addr} ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Send raw bytes to a uwsgi socket (half-closing afterwards if `shutdown_write`) and
/// return everything the server sends until it closes the connection. A write that fails
/// because the server already closed is not an error: the bytes read so far come back.
pub fn uwsgi_raw(addr: &Addr, bytes: &[u8], shutdown_write: bool) -> io::Result<Vec<u8>> {
    let mut stream = addr.connect()?;
    let write_result = stream.write_all(bytes);
    if write_result.is_ok() && shutdown_write {
        // The server may have closed already; then there is nothing to half-close.
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if is_closed_error(&e) => Ok(out),
        Err(e) => match write_result {
            Err(we) if is_closed_error(&we) => Ok(out),
            _ => Err(e),
        },
    }
}

/// True for the errors a peer's close produces (reset, broken pipe, EOF).
pub fn is_closed_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionAborted
    )
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

fn extra_args() -> Vec<String> {
    std::env::var("RSGI_EXTRA_ARGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Send SIGTERM, wait up to `deadline`, then SIGKILL the process group and reap.
fn stop_child(child: &mut Child, deadline: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    // The child may have exited between the check and the signal: ignore ESRCH.
    let _ = kill(pid, Signal::SIGTERM);
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if matches!(child.try_wait(), Ok(Some(_))) {
            // Workers of a master that exited may linger a moment: make sure they die.
            let _ = killpg(pid, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(POLL);
    }
    // The child leads its own process group (see `Rsgi::spawn`): kill its workers too.
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_child(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// A running server under test (the real `rsgi`, or `$RSGI_BIN`).
///
/// Its stdout and stderr go to one log file in its directory, which tests read with
/// [`Rsgi::log`]. It runs in its own process group; `Drop` sends SIGTERM, waits up to
/// [`STOP_DEADLINE`], then SIGKILLs the group and reaps the child.
#[derive(Debug)]
pub struct Rsgi {
    child: Child,
    log_path: PathBuf,
    dir: PathBuf,
    status: Option<ExitStatus>,
    /// A private temp dir, kept alive while the server runs, for [`Rsgi::start`].
    _own_dir: Option<TempDir>,
}

impl Rsgi {
    /// Start the server with `args`, working directory and log in a private temp dir.
    pub fn start(args: &[&str]) -> Rsgi {
        let own = tempdir();
        let mut rsgi = Rsgi::start_in(own.path(), args);
        rsgi._own_dir = Some(own);
        rsgi
    }

    /// Start the server with `args` in `dir` (its working directory), logging to
    /// `dir/rsgi.log`.
    pub fn start_in(dir: &Path, args: &[&str]) -> Rsgi {
        Rsgi::spawn(dir, args, &[])
    }

    /// Write `ini` to `dir/app.ini` and start `rsgi --ini dir/app.ini`.
    pub fn start_ini(dir: &Path, ini: &str) -> Rsgi {
        let path = write_file(dir, "app.ini", ini);
        let path = path.to_str().expect("temp paths are UTF-8").to_owned();
        Rsgi::start_in(dir, &["--ini", &path])
    }

    /// Start the server with `args` and extra environment variables.
    pub fn spawn(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Rsgi {
        let log_path = dir.join("rsgi.log");
        let log = File::create(&log_path).expect("create the server log file");
        let log2 = log.try_clone().expect("clone the log file handle");
        let program = rsgi_bin();
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .args(extra_args())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONPATH")
            // Own process group, so a stuck master and its workers can be killed together.
            .process_group(0);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Rsgi {
            child,
            log_path,
            dir: dir.to_path_buf(),
            status: None,
            _own_dir: None,
        }
    }

    /// Run the server to completion (for commands that are expected to exit, such as a
    /// bad config) and return its exit status and output. Panics if it is still running
    /// after `deadline`.
    pub fn run(dir: &Path, args: &[&str], deadline: Duration) -> (ExitStatus, String) {
        let mut rsgi = Rsgi::start_in(dir, args);
        let status = rsgi.wait_exit(deadline);
        (status, rsgi.log())
    }

    /// The server's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    /// The directory the server runs in (and where its log is).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the captured stdout+stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the server printed so far (lossy UTF-8).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// True if the log contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    /// Wait until the log contains `needle`; panic with the log after `deadline`.
    pub fn wait_log(&mut self, needle: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        while !self.log_contains(needle) {
            assert!(
                Instant::now() < end,
                "no {needle:?} in the server log after {deadline:?} (it is printed below)"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Send a signal to the server.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill({}, {sig}) failed: {e}", self.pid()));
    }

    /// The exit status if the server has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait for the server to exit; panic with the log if it still runs after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match wait_child(&mut self.child, deadline) {
            Some(status) => {
                self.status = Some(status);
                status
            }
            None => panic!(
                "the server (pid {}) still runs after {deadline:?} (its log is printed below)",
                self.pid(),
            ),
        }
    }

    /// Wait until `addr` accepts connections. Panics with the log if the server exits
    /// first or `deadline` passes.
    pub fn wait_ready(&mut self, addr: &Addr, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if accepts(addr) {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "the server exited ({status}) before {addr} accepted (its log is printed below)"
                );
            }
            assert!(
                Instant::now() < end,
                "{addr} does not accept after {deadline:?} (the server log is printed below)"
            );
            std::thread::sleep(POLL);
        }
    }

    /// [`Rsgi::wait_ready`] with [`START_DEADLINE`].
    pub fn ready(mut self, addr: &Addr) -> Rsgi {
        self.wait_ready(addr, START_DEADLINE);
        self
    }

    /// SIGTERM, then wait for the exit (panics with the log after `deadline`).
    pub fn stop(&mut self, deadline: Duration) -> ExitStatus {
        if self.try_exit().is_none() {
            self.signal(Signal::SIGTERM);
        }
        self.wait_exit(deadline)
    }
}

impl Drop for Rsgi {
    fn drop(&mut self) {
        if self.status.is_none() {
            stop_child(&mut self.child, STOP_DEADLINE);
        } else {
            // The master exited; make sure no worker of its group survives it.
            let _ = killpg(self.pid(), Signal::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log ({}) ---\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Kills a pid on drop (SIGTERM, then SIGKILL after [`STOP_DEADLINE`]), e.g. a server
/// that daemonized and so is no child of the test.
#[derive(Debug)]
pub struct PidGuard(pub Pid);

impl PidGuard {
    /// True while the process exists.
    pub fn alive(&self) -> bool {
        kill(self.0, None).is_ok()
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        if kill(self.0, Signal::SIGTERM).is_err() {
            return;
        }
        let end = Instant::now() + STOP_DEADLINE;
        while Instant::now() < end {
            if !self.alive() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = kill(self.0, Signal::SIGKILL);
    }
}

/// Read a pidfile; `None` if missing, empty or not a number yet.
pub fn read_pidfile(path: &Path) -> Option<Pid> {
    fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .map(Pid::from_raw)
}

// ---------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------

/// The `uwsgi_params` file of Debian's nginx packages.
pub const UWSGI_PARAMS: &str = "/etc/nginx/uwsgi_params";

fn nginx_program() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("nginx");
        if p.is_file() {
            return p;
        }
    }
    let sbin = PathBuf::from("/usr/sbin/nginx");
    assert!(
        sbin.is_file(),
        "nginx is not installed: run scripts/test.sh, which installs nginx-light"
    );
    sbin
}

/// nginx in front of a uwsgi socket (`uwsgi_pass unix:<sock>; include uwsgi_params;`),
/// listening on a free 127.0.0.1 port, with every file (config, logs, pid, temp dirs)
/// inside a directory of the test.
///
/// It runs with `master_process off` in the foreground, so it is one process that stays
/// the test's user (root in CI keeps root: no worker drops to `nobody`, so the socket
/// needs no special mode). `Drop` stops it by pid.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// The address nginx listens on.
    pub addr: Addr,
    dir: PathBuf,
}

impl Nginx {
    /// Start nginx in `dir` (a subdirectory `nginx/` is created) forwarding every request
    /// to the uwsgi socket `sock`.
    pub fn start(dir: &Path, sock: &Path) -> Nginx {
        Nginx::start_with(dir, sock, "")
    }

    /// Like [`Nginx::start`], with extra directives inside the `server` block.
    pub fn start_with(dir: &Path, sock: &Path, server_extra: &str) -> Nginx {
        let program = nginx_program();
        assert!(
            Path::new(UWSGI_PARAMS).is_file(),
            "{UWSGI_PARAMS} is missing: install nginx (scripts/test.sh does)"
        );
        let ndir = dir.join("nginx");
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(ndir.join("tmp").join(sub)).expect("create nginx temp dirs");
        }
        let port = free_port();
        let d = ndir.display();
        let user = if nix::unistd::geteuid().is_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}daemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20 access_log {d}/access.log;\n\
             \x20 client_body_temp_path {d}/tmp/client_body;\n\
             \x20 proxy_temp_path {d}/tmp/proxy;\n\
             \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/tmp/uwsgi;\n\
             \x20 scgi_temp_path {d}/tmp/scgi;\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   server_name localhost;\n\
             {server_extra}\n\
             \x20   location / {{\n\
             \x20     include {UWSGI_PARAMS};\n\
             \x20     uwsgi_pass unix:{sock};\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n",
            sock = sock.display()
        );
        let conf_path = write_file(&ndir, "nginx.conf", conf);
        let log = File::create(ndir.join("stderr.log")).expect("create nginx stderr log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut child = Command::new(&program)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&ndir)
            .arg("-e")
            .arg(ndir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let addr = Addr::local(port);
        let end = Instant::now() + START_DEADLINE;
        loop {
            if accepts(&addr) {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nginx did not start ({exited:?}); stderr:\n{}\nerror.log:\n{}",
                    fs::read_to_string(ndir.join("stderr.log")).unwrap_or_default(),
                    fs::read_to_string(ndir.join("error.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
        Nginx {
            child,
            addr,
            dir: ndir,
        }
    }

    /// nginx's error log (where `upstream prematurely closed` and 502 causes appear).
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- nginx error.log ---\n{}", self.error_log());
        }
        // nginx: SIGTERM is a fast shutdown.
        stop_child(&mut self.child, STOP_DEADLINE);
    }
}

// ---------------------------------------------------------------------------------------
// Django
// ---------------------------------------------------------------------------------------

/// The text the Django project's index page contains.
pub const DJANGO_INDEX_TEXT: &str = "rsgi django index";

const DJANGO_VIEWS: &str = r#"from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.utils.html import escape


def index(request):
    return HttpResponse("<h1>rsgi django index</h1>")


def form(request):
    if request.method == "POST":
        return HttpResponse("posted name=" + escape(request.POST.get("name", "")))
    token = get_token(request)
    return HttpResponse(
        '<form method="post" action="/form/">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="%s">'
        '<input name="name"></form>' % token
    )


def meta(request):
    import json

    keys = ["wsgi.url_scheme", "REMOTE_ADDR", "SERVER_NAME", "PATH_INFO", "HTTP_HOST"]
    return HttpResponse(
        json.dumps({k: str(request.META.get(k)) for k in keys}),
        content_type="application/json",
    )
"#;

const DJANGO_URLS: &str = r#"from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("form/", views.form),
    path("meta/", views.meta),
]
"#;

const DJANGO_SETTINGS_TAIL: &str = r#"

# --- added by the rsgi e2e harness ---
DEBUG = False
ALLOWED_HOSTS = ["*"]
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "assets"]
"#;

/// The CSS file the Django project's `collectstatic` puts at `/static/site.css`.
pub const DJANGO_CSS: &str = "body { color: #123456; }\n";

/// Create a real Django project in `dir/django` with the venv's
/// `django-admin startproject mysite`, and patch it for the tests: `DEBUG = False`,
/// `ALLOWED_HOSTS = ['*']`, `STATIC_URL`/`STATIC_ROOT` (`<project>/staticfiles`), views at
/// `/` (index, contains [`DJANGO_INDEX_TEXT`]), `/form/` (GET: a form with the CSRF
/// token; POST: `posted name=<name>`) and `/meta/` (some `request.META` as JSON), plus
/// `assets/site.css` ([`DJANGO_CSS`]); then run `collectstatic --noinput`.
///
/// Returns the project directory (holding `manage.py` and the `mysite` package). Serve it
/// with `chdir = <project>`, `module = mysite.wsgi`, `home = <venv>`.
pub fn django_project(dir: &Path) -> PathBuf {
    let project = dir.join("django");
    fs::create_dir_all(&project).expect("create the Django project dir");
    let out = Command::new(venv_bin("django-admin"))
        .args(["startproject", "mysite"])
        .arg(&project)
        .output()
        .expect("run django-admin");
    assert!(
        out.status.success(),
        "django-admin startproject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pkg = project.join("mysite");
    let settings = pkg.join("settings.py");
    let mut text = fs::read_to_string(&settings).expect("read settings.py");
    text.push_str(DJANGO_SETTINGS_TAIL);
    fs::write(&settings, text).expect("write settings.py");
    write_file(&pkg, "views.py", DJANGO_VIEWS);
    write_file(&pkg, "urls.py", DJANGO_URLS);
    write_file(&project, "assets/site.css", DJANGO_CSS);
    let out = Command::new(venv_python())
        .args(["manage.py", "collectstatic", "--noinput"])
        .current_dir(&project)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run manage.py collectstatic");
    assert!(
        out.status.success(),
        "collectstatic failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(project.join("staticfiles/site.css").is_file());
    project
}

/// The `csrftoken` cookie value from a response's `Set-Cookie` headers.
pub fn cookie_value(resp: &HttpResponse, name: &str) -> Option<String> {
    resp.headers_named("set-cookie").into_iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

/// The `value` of the first `<input ... name="<name>" value="...">` in an HTML body.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let v = rest.find("value=\"")? + "value=\"".len();
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_owned())
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

// ---------------------------------------------------------------------------------------
// Serving the test apps
// ---------------------------------------------------------------------------------------

/// A server under test together with its temp dir and the address it answers on.
///
/// Fields drop in order: the server is stopped before its directory is removed.
#[derive(Debug)]
pub struct Served {
    /// The running server.
    pub rsgi: Rsgi,
    /// Where it listens.
    pub addr: Addr,
    /// Its working directory (log, sockets, ini).
    pub dir: TempDir,
}

/// The options that load `tests/apps/<module>.py`: `--chdir <apps> --module <module>`.
pub fn app_args(module: &str) -> Vec<String> {
    vec![
        "--chdir".to_owned(),
        path_str(&apps_dir()).to_owned(),
        "--module".to_owned(),
        module.to_owned(),
    ]
}

fn serve(module: &str, socket_opt: &str, addr: Addr, dir: TempDir, extra: &[&str]) -> Served {
    let mut args = vec![socket_opt.to_owned(), addr.arg()];
    args.extend(app_args(module));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    Served { rsgi, addr, dir }
}

/// Serve `tests/apps/<module>.py` over HTTP (`--http-socket 127.0.0.1:<free port>`),
/// with `extra` options appended; returns once the port accepts.
pub fn serve_http(module: &str, extra: &[&str]) -> Served {
    serve(
        module,
        "--http-socket",
        Addr::Tcp(free_addr()),
        tempdir(),
        extra,
    )
}

/// Serve `tests/apps/<module>.py` over the uwsgi protocol on the unix socket
/// `<tmp>/app.sock` (`--socket`), with `extra` options appended.
pub fn serve_uwsgi(module: &str, extra: &[&str]) -> Served {
    let dir = tempdir();
    let addr = Addr::Unix(dir.path().join("app.sock"));
    serve(module, "--socket", addr, dir, extra)
}

// ---------------------------------------------------------------------------------------
// Client load
// ---------------------------------------------------------------------------------------

/// `GET path` (a `?query` is split off) to a uwsgi socket on a new connection, with
/// nginx's vars, parsed. Unlike [`uwsgi_request`] it returns errors instead of panicking, for loops
/// that count failures.
pub fn uwsgi_get(addr: &Addr, path: &str) -> io::Result<HttpResponse> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let packet = uwsgi_packet(&nginx_vars("GET", path, query, &[]), b"");
    let bytes = uwsgi_raw(addr, &packet, false)?;
    parse_response(&bytes, false)
}

/// `GET path` over HTTP with `Connection: close`, returning errors instead of
/// panicking (see [`get`]).
pub fn http_get(addr: &Addr, path: &str) -> io::Result<HttpResponse> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut conn = HttpConn::connect(addr)?;
    conn.request(raw.as_bytes())
}

/// What a [`Load`] saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// The first few failures, as the request function described them.
    pub errors: Vec<String>,
    /// The slowest single request (during a reload: the longest a client waited).
    pub slowest: Duration,
}

impl LoadReport {
    /// Print the tally, then panic when a request failed or none was made.
    pub fn assert_no_failures(&self, what: &str) {
        eprintln!(
            "{what}: {} ok, {} failed, slowest request {:?}",
            self.ok, self.failed, self.slowest
        );
        assert_eq!(self.failed, 0, "{what}: failed requests: {:?}", self.errors);
        assert!(self.ok > 0, "{what}: the load sent nothing");
    }
}

/// A modest client load: `threads` threads, each calling a request function in a loop
/// (back to back, no pause) until [`Load::stop`]. The function returns `Err(why)` for a
/// failed request. Keep `threads` small: the test machine has 2 cores.
#[derive(Debug)]
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<LoadReport>>,
}

impl Load {
    /// Start `threads` threads running `request` in a loop.
    pub fn start<F>(threads: usize, request: F) -> Load
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let request = Arc::new(request);
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, request) = (stop.clone(), ok.clone(), request.clone());
                std::thread::spawn(move || {
                    let mut report = LoadReport::default();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let result = request();
                        report.slowest = report.slowest.max(t0.elapsed());
                        match result {
                            Ok(()) => {
                                report.ok += 1;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                report.failed += 1;
                                if report.errors.len() < 10 {
                                    report.errors.push(e);
                                }
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        Load { stop, ok, threads }
    }

    /// A load of uwsgi `GET path` requests to `addr`; anything but a 200 is a failure.
    pub fn uwsgi(threads: usize, addr: &Addr, path: &str) -> Load {
        let (addr, path) = (addr.clone(), path.to_owned());
        Load::start(threads, move || match uwsgi_get(&addr, &path) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("status {} body {:?}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        })
    }

    /// A load of HTTP `GET path` requests (one connection each) to `addr`.
    pub fn http(threads: usize, addr: &Addr, path: &str) -> Load {
        let (addr, path) = (addr.clone(), path.to_owned());
        Load::start(threads, move || match http_get(&addr, &path) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("status {} body {:?}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Successful requests so far (all threads).
    pub fn ok_so_far(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait until `n` more requests than now succeeded (proof that the load runs).
    pub fn wait_more_ok(&self, n: u64, deadline: Duration) {
        let target = self.ok_so_far() + n;
        wait_until(deadline, &format!("{n} more successful requests"), || {
            self.ok_so_far() >= target
        });
    }

    /// Stop every thread and add up what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadReport::default();
        for t in self.threads {
            let r = t.join().expect("a load thread panicked");
            total.ok += r.ok;
            total.failed += r.failed;
            total.slowest = total.slowest.max(r.slowest);
            total.errors.extend(r.errors);
        }
        total
    }
}

// ---------------------------------------------------------------------------------------
// Processes by command line (/proc)
// ---------------------------------------------------------------------------------------

/// The command line of a live process (`None` for zombies and vanished pids).
pub fn proc_cmdline(pid: Pid) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state is the first field after the parenthesised command name.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Live processes (not zombies, not this test process) with an argument that
/// `matches`, sorted.
pub fn pids_where(mut matches: impl FnMut(&str) -> bool) -> Vec<Pid> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let pid = Pid::from_raw(pid);
        if proc_cmdline(pid).is_some_and(|args| args.iter().any(|a| matches(a))) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// True while `pid` is a live process (zombies count as gone).
pub fn process_alive(pid: Pid) -> bool {
    proc_cmdline(pid).is_some()
}

// ---------------------------------------------------------------------------------------
// The emperor
// ---------------------------------------------------------------------------------------

/// How long [`Emperor`]'s `Drop` waits after SIGTERM before it kills everything.
pub const EMPEROR_STOP_DEADLINE: Duration = Duration::from_secs(20);

/// The real `rsgid` in a private temp dir `<tmp>`:
///
/// - `<tmp>/vassals/`: the vassal directory ([`Emperor::write_vassal`],
///   [`Emperor::touch`], [`Emperor::remove`]);
/// - `<tmp>/run/`: the run directory, where a vassal without a socket option gets
///   `<name>.sock` speaking uwsgi ([`Emperor::socket`]);
/// - `<tmp>/ctl.sock`: the control socket ([`Emperor::control_socket`]);
/// - `<tmp>/rsgid.log`: rsgid's stdout and stderr, vassal output included
///   ([`Emperor::log`], [`Emperor::wait_log`]).
///
/// rsgid runs with `--metrics off`, `--rsgi` pointing at the built `rsgi`, `RSGID_LOG=info`
/// and without `NOTIFY_SOCKET` (unless [`Emperor::start_env`] sets it). When the
/// tests run as root, [`Emperor::start`] also passes `--uid root` (rsgid refuses to run
/// an app as root otherwise); [`Emperor::start_without_uid`] does not.
///
/// `Drop` sends SIGTERM to rsgid and waits up to [`EMPEROR_STOP_DEADLINE`], then
/// SIGKILLs rsgid and every process whose command line mentions `<tmp>` (the vassals
/// run in their own sessions, so no process group reaches them), and prints the log if
/// the test panicked (or always, with `RSGI_E2E_SHOW_LOG=1`). The temp dir is removed
/// last.
#[derive(Debug)]
pub struct Emperor {
    child: Child,
    status: Option<ExitStatus>,
    log_path: PathBuf,
    /// rsgid's command line, for [`Emperor::restart`].
    args: Vec<String>,
    /// Extra environment, for [`Emperor::restart`].
    envs: Vec<(String, String)>,
    /// A command rsgid runs under (`unshare --pid --fork`), for [`Emperor::restart`].
    wrapper: Vec<String>,
    /// Dropped after `Drop::drop` killed everything that lives in it.
    dir: TempDir,
}

impl Emperor {
    /// Start rsgid on a fresh temp dir with `extra_args` appended (e.g.
    /// `["--backoff-base", "0.1"]`), plus `--uid root` when running as root.
    pub fn start(extra_args: &[&str]) -> Emperor {
        Emperor::start_env(extra_args, &[])
    }

    /// [`Emperor::start`] with extra environment variables for rsgid (e.g.
    /// `NOTIFY_SOCKET`, which the fixture otherwise removes).
    pub fn start_env(extra_args: &[&str], envs: &[(&str, &str)]) -> Emperor {
        let mut args: Vec<&str> = extra_args.to_vec();
        if nix::unistd::geteuid().is_root() {
            args.extend(["--uid", "root"]);
        }
        Emperor::launch(&args, envs)
    }

    /// Like [`Emperor::start`] but never adds `--uid root`: as root, a vassal without
    /// `uid` in its ini is then refused.
    pub fn start_without_uid(extra_args: &[&str]) -> Emperor {
        Emperor::launch(extra_args, &[])
    }

    /// Like [`Emperor::start`], with rsgid as PID 1 of a new PID namespace (`unshare
    /// --pid --fork --kill-child`; needs root). [`Emperor::pid`] is then `unshare`'s
    /// pid; [`Emperor::rsgid_pid`] finds rsgid's.
    pub fn start_in_pid_namespace(extra_args: &[&str]) -> Emperor {
        let mut args: Vec<&str> = extra_args.to_vec();
        if nix::unistd::geteuid().is_root() {
            args.extend(["--uid", "root"]);
        }
        let wrapper = ["unshare", "--pid", "--fork", "--kill-child"].map(str::to_owned);
        Emperor::launch_wrapped(&wrapper, &args, &[])
    }

    /// Like [`Emperor::start`], with the vassal directory read-only for rsgid and its
    /// vassals, as a read-only volume in a container: rsgid runs in a new mount namespace
    /// (`unshare --mount`, needs root) in which `<tmp>/vassals` is bind-mounted onto
    /// itself and remounted `ro`. The test still writes there from outside the
    /// namespace. If the mount fails, rsgid never starts and this panics with the
    /// mount's error in the log.
    pub fn start_with_read_only_vassals(extra_args: &[&str]) -> Emperor {
        let mut args: Vec<&str> = extra_args.to_vec();
        if nix::unistd::geteuid().is_root() {
            args.extend(["--uid", "root"]);
        }
        // `sh -c SCRIPT sh RSGID --vassals DIR ...`: $3 is the vassal directory.
        let wrapper = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind \"$3\" \"$3\" && mount -o remount,ro,bind \"$3\" && exec \"$@\"",
            "sh",
        ]
        .map(str::to_owned);
        Emperor::launch_wrapped(&wrapper, &args, &[])
    }

    /// rsgid's own pid (as seen from here): [`Emperor::pid`], or under a wrapper the
    /// wrapper's child.
    pub fn rsgid_pid(&self) -> Pid {
        self.find_rsgid()
            .unwrap_or_else(|| panic!("the wrapper {} has no child", self.pid()))
    }

    fn find_rsgid(&self) -> Option<Pid> {
        let pid = self.pid();
        // A wrapper that execs rsgid (setpriv) is rsgid; one that forks (unshare) is not.
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if self.wrapper.is_empty() || comm.trim() == "rsgid" {
            return Some(pid);
        }
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()
            .map(Pid::from_raw)
    }

    /// Like [`Emperor::start`], with rsgid running as `uid`:`gid` (no root at all, as in
    /// most containers), through `setpriv` (needs root to switch). The temp dir is given
    /// to that user.
    pub fn start_as_user(uid: u32, gid: u32, extra_args: &[&str]) -> Emperor {
        let wrapper = [
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
        ];
        Emperor::launch_full(&wrapper, extra_args, &[], Some((uid, gid)))
    }

    /// Like [`Emperor::start`], with rsgid executed from `program` (a copy of the built
    /// binary, e.g. for `rsgictl upgrade`, which re-executes the file rsgid was started
    /// from). Through `sh`, which execs it: [`Emperor::pid`] is rsgid's pid.
    pub fn start_binary(program: &Path, extra_args: &[&str]) -> Emperor {
        let mut args: Vec<&str> = extra_args.to_vec();
        if nix::unistd::geteuid().is_root() {
            args.extend(["--uid", "root"]);
        }
        // `sh -c SCRIPT sh PROGRAM <built rsgid> ARGS...`: run PROGRAM with ARGS.
        let wrapper = [
            "sh".to_owned(),
            "-c".to_owned(),
            r#"p="$1"; shift 2; exec "$p" "$@""#.to_owned(),
            "sh".to_owned(),
            path_str(program).to_owned(),
        ];
        Emperor::launch_wrapped(&wrapper, &args, &[])
    }

    fn launch(extra_args: &[&str], envs: &[(&str, &str)]) -> Emperor {
        Emperor::launch_wrapped(&[], extra_args, envs)
    }

    fn launch_wrapped(wrapper: &[String], extra_args: &[&str], envs: &[(&str, &str)]) -> Emperor {
        Emperor::launch_full(wrapper, extra_args, envs, None)
    }

    fn launch_full(
        wrapper: &[String],
        extra_args: &[&str],
        envs: &[(&str, &str)],
        owner: Option<(u32, u32)>,
    ) -> Emperor {
        let dir = tempdir();
        let root = dir.path();
        for sub in ["vassals", "run"] {
            fs::create_dir_all(root.join(sub)).expect("create the emperor's dirs");
        }
        if let Some((uid, gid)) = owner {
            for path in [root.to_owned(), root.join("vassals"), root.join("run")] {
                nix::unistd::chown(
                    &path,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                )
                .expect("give the temp dir to the user");
            }
        }
        let log_path = root.join("rsgid.log");
        File::create(&log_path).expect("create rsgid.log");
        let mut args: Vec<String> = vec![
            "--vassals".into(),
            path_str(&root.join("vassals")).into(),
            "--run-dir".into(),
            path_str(&root.join("run")).into(),
            "--control".into(),
            path_str(&root.join("ctl.sock")).into(),
            "--metrics".into(),
            "off".into(),
            "--rsgi".into(),
            path_str(&bin("rsgi")).into(),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let child = Emperor::spawn(root, wrapper, &args, &envs, &log_path);
        let mut emperor = Emperor {
            child,
            status: None,
            log_path,
            args,
            envs,
            wrapper: wrapper.to_vec(),
            dir,
        };
        emperor.wait_log("rsgid started", START_DEADLINE);
        emperor
    }

    /// Start rsgid with `args` in `dir`, appending its output to `log_path`.
    fn spawn(
        dir: &Path,
        wrapper: &[String],
        args: &[String],
        envs: &[(String, String)],
        log_path: &Path,
    ) -> Child {
        let log = File::options()
            .append(true)
            .open(log_path)
            .expect("open rsgid.log");
        let log2 = log.try_clone().expect("clone the log file handle");
        let program = bin("rsgid");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env("RSGID_LOG", "info")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONPATH")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
    }

    /// Start a new rsgid with the same arguments on the same directories, after the
    /// previous one exited (as systemd's `Restart=` would); its output is appended to
    /// the same log. Panics if the previous rsgid still runs.
    pub fn restart(&mut self) {
        assert!(
            self.try_exit().is_some(),
            "restart: the previous rsgid (pid {}) still runs",
            self.pid()
        );
        let mark = self.log_mark();
        self.child = Emperor::spawn(
            self.dir.path(),
            &self.wrapper,
            &self.args,
            &self.envs,
            &self.log_path,
        );
        self.status = None;
        self.wait_log_since(mark, "rsgid started", START_DEADLINE);
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<tmp>/vassals`.
    pub fn vassals_dir(&self) -> PathBuf {
        self.dir().join("vassals")
    }

    /// `<tmp>/run`.
    pub fn run_dir(&self) -> PathBuf {
        self.dir().join("run")
    }

    /// `<tmp>/vassals/<name>.ini`.
    pub fn ini_path(&self, name: &str) -> PathBuf {
        self.vassals_dir().join(format!("{name}.ini"))
    }

    /// Write `<name>.ini` atomically: into a dotfile (which rsgid ignores), then
    /// renamed into place, so rsgid never reads half a file. Returns its path.
    pub fn write_vassal(&self, name: &str, ini: &str) -> PathBuf {
        let path = self.ini_path(name);
        let tmp = self.vassals_dir().join(format!(".{name}.ini.tmp"));
        fs::write(&tmp, ini).expect("write the vassal's temp file");
        fs::rename(&tmp, &path).expect("rename the vassal file into place");
        path
    }

    /// Bump `<name>.ini`'s mtime (content unchanged): rsgid reloads the vassal. The new
    /// mtime is now, or 1 ms past the old one if the clock has not moved since.
    pub fn touch(&self, name: &str) {
        let path = self.ini_path(name);
        let file = File::options()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let old = file
            .metadata()
            .and_then(|m| m.modified())
            .expect("the vassal file's mtime");
        let now = std::time::SystemTime::now();
        let new = if now > old {
            now
        } else {
            old + Duration::from_millis(1)
        };
        file.set_modified(new).expect("set the vassal file's mtime");
    }

    /// Delete `<name>.ini`: rsgid retires the vassal.
    pub fn remove(&self, name: &str) {
        let path = self.ini_path(name);
        fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }

    /// The default socket of a vassal without a socket option: `<tmp>/run/<name>.sock`
    /// (uwsgi protocol).
    pub fn socket(&self, name: &str) -> Addr {
        Addr::Unix(self.run_dir().join(format!("{name}.sock")))
    }

    /// `<tmp>/ctl.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.dir().join("ctl.sock")
    }

    /// Run the real `rsgictl --socket <this rsgid's control socket> args...` (without
    /// `RSGI_CONTROL` from the test's environment): its exit code and stdout.
    pub fn rsgictl(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(bin("rsgictl"))
            .env_remove("RSGI_CONTROL")
            .stdin(Stdio::null())
            .arg("--socket")
            .arg(self.control_socket())
            .args(args)
            .output()
            .expect("run rsgictl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `rsgictl --json list` as JSON (exit 0, or 3 when some vassal is not ready).
    pub fn list_json(&self) -> serde_json::Value {
        let (code, out) = self.rsgictl(&["--json", "list"]);
        assert!(matches!(code, 0 | 3), "rsgictl list exited {code}: {out}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("rsgictl printed no JSON ({e}): {out}"))
    }

    /// `name`'s entry in `rsgictl --json list` (null until rsgid found its file).
    pub fn vassal_entry(&self, name: &str) -> serde_json::Value {
        let list = self.list_json();
        list["vassals"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == name).cloned())
            .unwrap_or_default()
    }

    /// Wait until `rsgictl list` shows `name` in `state`; returns its entry. Panics if
    /// rsgid exits first or `deadline` passes.
    pub fn wait_state(&mut self, name: &str, state: &str, deadline: Duration) -> serde_json::Value {
        let end = Instant::now() + deadline;
        loop {
            let v = self.vassal_entry(name);
            if v["state"] == state {
                return v;
            }
            if let Some(status) = self.try_exit() {
                panic!("rsgid exited ({status}) while waiting for {name} to be {state}");
            }
            assert!(Instant::now() < end, "{name} is not {state}: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `<tmp>/rsgid.log`.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything rsgid (and its vassals, through it) logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The log's length now, to look only at what comes after
    /// ([`Emperor::log_since`], [`Emperor::wait_log_since`]).
    pub fn log_mark(&self) -> usize {
        fs::metadata(&self.log_path).map_or(0, |m| m.len() as usize)
    }

    /// The log from `mark` on.
    pub fn log_since(&self, mark: usize) -> String {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Wait until the log contains `needle`; panic (the log is printed) after
    /// `deadline` or if rsgid exits first.
    pub fn wait_log(&mut self, needle: &str, deadline: Duration) {
        self.wait_log_since(0, needle, deadline);
    }

    /// Wait until the log after `mark` contains `needle` (see [`Emperor::wait_log`]).
    pub fn wait_log_since(&mut self, mark: usize, needle: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        while !self.log_since(mark).contains(needle) {
            if let Some(status) = self.try_exit() {
                // It may have written the line just before exiting.
                if self.log_since(mark).contains(needle) {
                    return;
                }
                panic!("rsgid exited ({status}) before logging {needle:?}");
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} in rsgid's log after {deadline:?} (it is printed below)"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Poll `GET path` on vassal `name`'s default socket until it answers 200; return
    /// that response. Panics after `deadline` or if rsgid exits.
    pub fn wait_serving(&mut self, name: &str, path: &str, deadline: Duration) -> HttpResponse {
        let addr = self.socket(name);
        let end = Instant::now() + deadline;
        loop {
            let last = match uwsgi_get(&addr, path) {
                Ok(r) if r.status == 200 => return r,
                Ok(r) => format!("status {}: {}", r.status, r.text()),
                Err(e) => e.to_string(),
            };
            if let Some(status) = self.try_exit() {
                panic!("rsgid exited ({status}) while waiting for {name} to serve");
            }
            assert!(
                Instant::now() < end,
                "vassal {name} does not answer GET {path} on {addr} after {deadline:?} \
                 (last: {last}; rsgid's log is printed below)"
            );
            std::thread::sleep(POLL);
        }
    }

    /// rsgid's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    /// Send a signal to rsgid.
    pub fn signal(&self, sig: Signal) {
        let pid = self.rsgid_pid();
        kill(pid, sig).unwrap_or_else(|e| panic!("kill(rsgid, {sig}) failed: {e}"));
    }

    /// Live processes running vassal `name`: every process with `<tmp>/vassals/<name>.ini`
    /// as an argument (a master and its workers alike, across generations).
    pub fn vassal_pids(&self, name: &str) -> Vec<Pid> {
        let ini = self.ini_path(name);
        let ini = path_str(&ini).to_owned();
        pids_where(|arg| arg == ini)
    }

    /// Every live process whose command line mentions the temp dir: rsgid itself while
    /// it runs, and every vassal process it started.
    pub fn all_pids(&self) -> Vec<Pid> {
        let dir = path_str(self.dir()).to_owned();
        pids_where(|arg| arg.contains(&dir))
    }

    /// The exit status if rsgid has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait for rsgid to exit; panics after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match wait_child(&mut self.child, deadline) {
            Some(status) => {
                self.status = Some(status);
                status
            }
            None => panic!("rsgid still runs {deadline:?} after it was asked to stop"),
        }
    }

    /// SIGTERM, then wait for rsgid's exit (panics after `deadline`).
    pub fn stop(&mut self, deadline: Duration) -> ExitStatus {
        if self.try_exit().is_none() {
            self.signal(Signal::SIGTERM);
        }
        self.wait_exit(deadline)
    }

    /// SIGKILL whatever is left of rsgid and its vassals, until nothing is.
    fn kill_everything(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let end = Instant::now() + STOP_DEADLINE;
        loop {
            let left = self.all_pids();
            if left.is_empty() || Instant::now() >= end {
                return;
            }
            for pid in left {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Emperor {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            // rsgid itself, not a wrapper that would not pass the signal on.
            if let Some(pid) = self.find_rsgid() {
                let _ = kill(pid, Signal::SIGTERM);
            }
            let _ = wait_child(&mut self.child, EMPEROR_STOP_DEADLINE);
        }
        self.kill_everything();
        if std::thread::panicking() || std::env::var_os("RSGI_E2E_SHOW_LOG").is_some() {
            eprintln!(
                "--- rsgid log ({}) ---\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// uwsgitop
// ---------------------------------------------------------------------------------------

/// Run the real uwsgitop on `address` in a pty until `words` and two frames (two
/// `header` lines) show up; returns the screen text. uwsgitop is a curses program:
/// `tests/apps/uwsgitop_pty.py` runs it in a pseudo-terminal, then kills it.
pub fn uwsgitop(address: &str, header: &str, words: &[String]) -> String {
    // Panics with a hint when the venv predates uwsgitop in tests/requirements.txt.
    venv_bin("uwsgitop");
    let out = Command::new(venv_python())
        .arg(apps_dir().join("uwsgitop_pty.py"))
        .args(["--frame", header, address])
        .args(words)
        .output()
        .expect("run uwsgitop_pty.py");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "uwsgitop failed ({}):\n{screen}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: std::collections::BTreeSet<&str> = screen.split_whitespace().collect();
    for w in words {
        assert!(
            tokens.contains(w.as_str()),
            "no {w} on the screen:\n{screen}"
        );
    }
    screen
}

/// A process (the system python) that opens `n` connections to `target` (`unix:PATH`
/// or `tcp:PORT` on 127.0.0.1), sends `send` on each (nothing: idle; a part of a
/// request: a slow client), and holds them until it is dropped (its stdin closes).
/// Returns once every connection is open; panics if they cannot all be opened. With
/// `user`, the connections belong to that uid:gid (needs root). The holder raises its
/// own open-files limit, so thousands of connections work.
pub fn hold_connections(target: &str, n: usize, send: &str, user: Option<(u32, u32)>) -> Holder {
    use std::os::unix::process::CommandExt as _;
    let script = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
kind, where = sys.argv[1].split(":", 1)
send = bytes.fromhex(sys.argv[3])
held = []
for _ in range(int(sys.argv[2])):
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(where)
    else:
        s = socket.create_connection(("127.0.0.1", int(where)))
    if send:
        s.sendall(send)
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    let hex: String = send.bytes().map(|b| format!("{b:02x}")).collect();
    cmd.args(["-c", script, target, &n.to_string(), &hex])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().expect("start the connection holder");
    let mut line = String::new();
    let out = child.stdout.as_mut().expect("stdout");
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("read the holder's count") == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    assert_eq!(
        line.trim(),
        n.to_string(),
        "the holder opened {line:?} of {n}"
    );
    Holder(child)
}

/// Connections held by [`hold_connections`]; closed when dropped.
#[derive(Debug)]
pub struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// etcd (issue 19: vassals from etcd)
// ---------------------------------------------------------------------------------------

/// Certificates for an etcd with TLS, made by the test with the `openssl` CLI: a CA, a
/// server certificate for `127.0.0.1`, and a client certificate (all PEM, in `dir`).
#[derive(Debug, Clone)]
pub struct EtcdCerts {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// The client's certificate.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

impl EtcdCerts {
    /// Make a CA and sign a server (IP SAN 127.0.0.1) and a client certificate with it.
    pub fn make(dir: &Path) -> EtcdCerts {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl (the openssl package)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rsgi test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write server.ext");
        fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
            .expect("write client.ext");
        for (who, cn) in [("server", "127.0.0.1"), ("client", "rsgid")] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}.pem"),
            ]);
        }
        EtcdCerts {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// A real etcd (Debian's `etcd-server`), started by the test on 127.0.0.1 with free
/// ports and a temp data dir (never the distro's service). `etcdctl` (Debian's
/// `etcd-client`) is its client in tests. `Drop` kills it.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<EtcdCerts>,
    /// `USER:PASSWORD` for etcdctl once authentication is on.
    auth: Option<String>,
    /// The member's name and the cluster's `--initial-cluster` (an [`EtcdCluster`]'s
    /// member); `None` for a cluster of one.
    member: Option<(String, String)>,
}

/// The etcd server binary (Debian's `etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";

impl Etcd {
    /// Start a plain (no TLS) etcd and wait until it answers.
    pub fn start() -> Etcd {
        Etcd::start_with(None)
    }

    /// Start etcd with TLS (client certificates required) using `certs`.
    pub fn start_tls(certs: EtcdCerts) -> Etcd {
        Etcd::start_with(Some(certs))
    }

    fn start_with(tls: Option<EtcdCerts>) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server and etcd-client (scripts/test.sh does)"
        );
        let mut etcd = Etcd {
            child: None,
            dir: tempdir(),
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            auth: None,
            member: None,
        };
        etcd.launch();
        etcd
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn launch(&mut self) {
        self.spawn();
        self.wait_healthy();
    }

    /// Start the process, without waiting.
    fn spawn(&mut self) {
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client_port);
        let peer = self.peer_url();
        let (name, cluster) = self
            .member
            .clone()
            .unwrap_or_else(|| ("t".to_owned(), format!("t={peer}")));
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("open etcd.log");
        let log2 = log.try_clone().expect("clone the log handle");
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(cluster);
        if let Some(c) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&c.server_cert)
                .arg("--key-file")
                .arg(&c.server_key)
                .arg("--trusted-ca-file")
                .arg(&c.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        self.child = Some(child);
    }

    /// Wait until it answers a linearizable read (for a cluster's member: until the
    /// cluster has a quorum and a leader).
    fn wait_healthy(&self) {
        let end = Instant::now() + START_DEADLINE;
        loop {
            if self.try_ctl(&["endpoint", "health"]).is_ok() {
                return;
            }
            assert!(
                Instant::now() < end,
                "etcd does not answer after {START_DEADLINE:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// etcd's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// `HOST:PORT` of its client port.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The `--vassals` value for `prefix` (`/rsgi/all/`).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoint())
    }

    /// etcd's pid.
    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("etcd runs");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
    }

    /// Send a signal to etcd (SIGSTOP to make it answer nothing, SIGCONT to resume).
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal etcd");
    }

    /// Kill etcd (its data stays) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process runs (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Start etcd again on the same data dir and ports (a cluster's member rejoins, and
    /// this waits until the cluster has a quorum again).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Run `etcdctl args...` against this member (2 s to dial, 5 s per command); its
    /// output, or why it failed.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(format!("{}://{}", self.scheme(), self.endpoint()))
            .arg("--dial-timeout")
            .arg("2s")
            .arg("--command-timeout")
            .arg("5s");
        if let Some(a) = &self.auth {
            cmd.arg("--user").arg(a);
        }
        if let Some(c) = &self.tls {
            cmd.arg("--cacert")
                .arg(&c.ca)
                .arg("--cert")
                .arg(&c.client_cert)
                .arg("--key")
                .arg(&c.client_key);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run etcdctl (Debian's etcd-client): {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "etcdctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Run `etcdctl args...`; its output. Panics if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Put `value` at `key`.
    pub fn put(&self, key: &str, value: &str) {
        // `--` so that a value starting with '-' is no flag.
        self.ctl(&["put", "--", key, value]);
    }

    /// Delete `key`.
    pub fn delete(&self, key: &str) {
        self.ctl(&["del", key]);
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl status JSON");
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("a revision in etcdctl's status")
    }

    /// Turn etcd's authentication on with the user `root` and `password` (etcdctl
    /// uses them from then on).
    pub fn enable_auth(&mut self, password: &str) {
        self.ctl(&["user", "add", &format!("root:{password}")]);
        self.ctl(&["auth", "enable"]);
        self.auth = Some(format!("root:{password}"));
    }

    /// Compact the history up to the current revision.
    pub fn compact(&self) -> i64 {
        let rev = self.revision();
        self.ctl(&["compact", &rev.to_string()]);
        rev
    }
}

/// A cluster of real etcd members on 127.0.0.1 (free client and peer ports, each with
/// its own data dir in its own temp dir), started together with `--initial-cluster`.
/// Each member is an [`Etcd`]: kill, restart, signal and `etcdctl` through it.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The members, in the order of `--initial-cluster`.
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Start `n` members and wait (with [`START_DEADLINE`]) until every one answers a
    /// linearizable read.
    pub fn start(n: usize) -> EtcdCluster {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server and etcd-client (scripts/test.sh does)"
        );
        let mut members: Vec<Etcd> = (0..n)
            .map(|_| Etcd {
                child: None,
                dir: tempdir(),
                client_port: free_port(),
                peer_port: free_port(),
                tls: None,
                auth: None,
                member: None,
            })
            .collect();
        let cluster = members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("m{i}={}", m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for (i, m) in members.iter_mut().enumerate() {
            m.member = Some((format!("m{i}"), cluster.clone()));
            m.spawn();
        }
        for m in &members {
            m.wait_healthy();
        }
        EtcdCluster { members }
    }

    /// The `--vassals` value for `prefix` with the members' endpoints in `order`
    /// (rsgid talks to the first one it reaches).
    pub fn url(&self, order: &[usize], prefix: &str) -> String {
        let eps: Vec<String> = order.iter().map(|&i| self.members[i].endpoint()).collect();
        format!("etcd://{}{prefix}", eps.join(","))
    }

    /// Which member leads, as the running members see it (`etcdctl endpoint status`);
    /// `None` while they agree on no leader.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for m in &self.members {
            let status = m
                .is_running()
                .then(|| m.try_ctl(&["endpoint", "status", "-w", "json"]).ok())
                .flatten()
                .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok());
            let s = status.as_ref().map(|v| &v[0]["Status"]);
            ids.push(s.and_then(|s| s["header"]["member_id"].as_u64()));
            if let Some(l) = s.and_then(|s| s["leader"].as_u64()) {
                leaders.push(l);
            }
        }
        let first = *leaders.first()?;
        if leaders.iter().any(|&l| l != first) {
            return None;
        }
        ids.iter().position(|id| *id == Some(first))
    }

    /// Wait until the running members agree on a leader; its index.
    pub fn wait_leader(&self, deadline: Duration) -> usize {
        let mut leader = None;
        wait_until(deadline, "the etcd members to agree on a leader", || {
            leader = self.leader();
            leader.is_some()
        });
        leader.expect("a leader")
    }
}

/// The remote ports of the established TCP connections that process `pid` holds (its
/// socket fds matched with `/proc/PID/net/tcp` and `tcp6`).
pub fn tcp_peer_ports(pid: Pid) -> Vec<u16> {
    let mut inodes = std::collections::BTreeSet::new();
    if let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let target = fs::read_link(fd.path()).unwrap_or_default();
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(rem), Some(st), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
                continue;
            };
            if *st != "01" || !inodes.contains(*inode) {
                continue;
            }
            if let Some(port) = rem
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.kill();
        if std::thread::panicking() || std::env::var_os("RSGI_E2E_SHOW_LOG").is_some() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- etcd log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------------------

/// The `promtool` that checks Prometheus formats: `$RSGI_PROMTOOL`, else one on `PATH`,
/// else the one scripts/test.sh unpacks into `target/tools/bin`. Missing is a failure,
/// not a skip.
pub fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("RSGI_PROMTOOL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(repo_dir().join("target/tools/bin"));
    dirs.into_iter()
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is missing: scripts/test.sh installs it (from Debian's prometheus \
                 package, into target/tools/bin), or set RSGI_PROMTOOL"
            )
        })
}

/// `promtool check metrics` on a scrape: panics with promtool's report (and the text)
/// unless it passes and says nothing.
pub fn assert_promtool_accepts_metrics(text: &str) {
    use std::io::Write as _;
    let promtool = promtool();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", promtool.display()));
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool's output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({}):\n{report}\non:\n{text}",
        out.status
    );
}
