//! `log-format`: uWSGI's request-line template (`core/logging.c`,
//! `uwsgi_build_log_format` and the `uwsgi_lf_*` chunks), compiled once and rendered
//! per request.
//!
//! # The rules, as uWSGI's
//!
//! - `%(name)` is a variable; everything else is literal text. The scanner is uWSGI's
//!   state machine: `%` then `(` opens a name, the next `)` closes it (so `%(a%b)` is the
//!   name `a%b`, and `%()` opens nothing until the next character).
//! - Known names: `uri method user addr host proto uagent referer` (request fields),
//!   `status rsize hsize size cl micros msecs secs tmsecs tmicros time ltime ftime
//!   ctime epoch pid wid switches vars core vsz rss vszM rssM pktsize modifier1
//!   modifier2 headers werr rerr ioerr`; `var.NAME` is the request variable `NAME`
//!   (`%(var.HTTP_X_REQUEST_ID)`); `metric.NAME` a uWSGI metric. Any other name is a
//!   uWSGI "logvar" (set by the app with `uwsgi.set_logvar`, which rsgi does not have):
//!   it prints `-`, as an unset logvar does in uWSGI.
//! - An empty value prints `-`.
//! - The line ends with a newline; it gets no date prefix (uWSGI writes request lines
//!   without one; use `%(ftime)`/`%(ltime)`).
//!
//! # Where rsgi differs (on purpose)
//!
//! - Control characters and `"` in request values are written as `\xNN` (as in rsgi's
//!   default line), so a request cannot forge log lines. uWSGI writes them raw.
//! - `%(switches)` is 1 and `%(core)` 0 (rsgi has no async cores), `%(werr)`,
//!   `%(rerr)`, `%(ioerr)` are 0, `%(modifier1)`/`%(modifier2)` 0 (Python's), every
//!   `%(metric.NAME)` 0 (rsgi has no uWSGI metrics; uWSGI prints 0 for an unknown one).
//! - `%(vars)` counts the request variables twice (name and value), as uWSGI's
//!   `var_cnt`; `%(pktsize)` is the size the variables take in a uwsgi packet.
//! - `%(hsize)` is the size of the response head as rsgi writes it (status line,
//!   headers, blank line).

use std::ffi::CString;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One variable of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `uri`: `REQUEST_URI`.
    Uri,
    /// `method`: `REQUEST_METHOD`.
    Method,
    /// `user`: `REMOTE_USER`.
    User,
    /// `addr`: `REMOTE_ADDR` (or `X-Forwarded-For` with `log-x-forwarded-for`).
    Addr,
    /// `host`: `HTTP_HOST`.
    Host,
    /// `proto`: `SERVER_PROTOCOL`.
    Proto,
    /// `uagent`: `HTTP_USER_AGENT`.
    Uagent,
    /// `referer`: `HTTP_REFERER`.
    Referer,
    /// `status`: the response status.
    Status,
    /// `rsize`: response body bytes.
    Rsize,
    /// `hsize`: response head bytes.
    Hsize,
    /// `size`: head and body bytes.
    Size,
    /// `cl`: the request's `Content-Length`.
    Cl,
    /// `micros`: the response time in microseconds.
    Micros,
    /// `msecs`: the response time in milliseconds.
    Msecs,
    /// `secs`: the response time in seconds (`%f`).
    Secs,
    /// `tmsecs`: the request's start, milliseconds since the epoch.
    Tmsecs,
    /// `tmicros`: the request's start, microseconds since the epoch.
    Tmicros,
    /// `time`: the request's start, seconds since the epoch.
    Time,
    /// `ltime`: the request's start, Apache style (`02/Dec/2026:15:30:00 +0000`).
    Ltime,
    /// `ftime`: the request's start in the `logdate` format (with
    /// `log-format-strftime`), else as `ltime`.
    Ftime,
    /// `ctime`: the request's start in `ctime(3)` layout.
    Ctime,
    /// `epoch`: now, seconds since the epoch.
    Epoch,
    /// `pid`: the worker's pid.
    Pid,
    /// `wid`: the worker's number.
    Wid,
    /// `switches`: always 1.
    Switches,
    /// `vars`: the number of request variables, times two.
    Vars,
    /// `core`: always 0.
    Core,
    /// `vsz`: the worker's virtual size in bytes.
    Vsz,
    /// `rss`: the worker's resident size in bytes.
    Rss,
    /// `vszM`: `vsz` in MiB.
    VszM,
    /// `rssM`: `rss` in MiB.
    RssM,
    /// `pktsize`: the size of the request variables as a uwsgi packet.
    Pktsize,
    /// `headers`: the number of response headers.
    Headers,
    /// `modifier1`, `modifier2`, `werr`, `rerr`, `ioerr`, `metric.*`: always 0.
    Zero,
    /// `var.NAME`: the request variable at this index of [`Template::request_vars`].
    Request(usize),
    /// Any other name (an unset uWSGI logvar): `-`.
    Unset,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Literal text.
    Text(Vec<u8>),
    /// A variable.
    Var(Var),
}

/// A compiled `log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order.
    pub chunks: Vec<Chunk>,
    /// The request variables `var.NAME` asks for, in order of first use.
    pub request_vars: Vec<Vec<u8>>,
    /// `%(ftime)`'s strftime format (`logdate = FORMAT` with `log-format-strftime`).
    ftime: Option<CString>,
}

/// What one request line is made of (borrowed: building one costs nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// `REMOTE_ADDR` (or `X-Forwarded-For`).
    pub addr: &'a [u8],
    /// `REMOTE_USER`.
    pub user: &'a [u8],
    /// `REQUEST_METHOD`.
    pub method: &'a [u8],
    /// `REQUEST_URI`.
    pub uri: &'a [u8],
    /// `SERVER_PROTOCOL`.
    pub proto: &'a [u8],
    /// `HTTP_HOST`.
    pub host: &'a [u8],
    /// `HTTP_USER_AGENT`.
    pub uagent: &'a [u8],
    /// `HTTP_REFERER`.
    pub referer: &'a [u8],
    /// Response status.
    pub status: u16,
    /// Response body bytes.
    pub body_bytes: u64,
    /// Response head bytes.
    pub head_bytes: u64,
    /// Response header count.
    pub headers: u64,
    /// The request's `Content-Length` (0 without).
    pub content_length: u64,
    /// When the request started (wall clock).
    pub start: Option<SystemTime>,
    /// How long it took.
    pub duration: Duration,
    /// The worker's pid.
    pub pid: u32,
    /// The worker's number (1..).
    pub wid: u32,
    /// The number of request variables.
    pub var_count: u64,
    /// The request variables' size as a uwsgi packet.
    pub pktsize: u64,
    /// The values of [`Template::request_vars`], in that order (missing: empty).
    pub request_vars: &'a [&'a [u8]],
    /// (vsz, rss) in bytes, when the template needs them.
    pub memory: Option<(u64, u64)>,
    /// The body was a file (a static file, `wsgi.file_wrapper`): uWSGI's "via
    /// sendfile" responses, which `log-sendfile` logs.
    pub file_body: bool,
}

impl Template {
    /// Compile `format` as uWSGI does. `ftime` is the strftime format `%(ftime)` uses
    /// (only given with `log-format-strftime` and `logdate = FORMAT`).
    pub fn compile(format: &str, ftime: Option<&str>) -> Template {
        let bytes = format.as_bytes();
        let mut chunks = Vec::new();
        let mut request_vars: Vec<Vec<u8>> = Vec::new();
        // uWSGI's scanner: 0 text, 1 after '%', 2 after "%(".
        let mut state = 0;
        let mut current = 0; // start of the pending text
        let mut name: Option<usize> = None; // start of the pending name
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'%' => {
                    if state == 0 {
                        state = 1;
                    }
                }
                b'(' => {
                    if state == 1 {
                        state = 2;
                    }
                }
                b')' => {
                    if let Some(start) = name.take() {
                        chunks.push(Chunk::Var(var(&bytes[start..i], &mut request_vars)));
                        state = 0;
                        current = i + 1;
                    }
                }
                _ => {
                    if state == 2 {
                        // The text before "%(".
                        let end = i.saturating_sub(2).max(current);
                        if end > current {
                            chunks.push(Chunk::Text(bytes[current..end].to_vec()));
                        }
                        name = Some(i);
                    }
                    state = 0;
                }
            }
        }
        // A name never closed stays text (from its "%("; uWSGI would repeat the text
        // before it, a bug not copied).
        let tail = name.map_or(current, |n| n.saturating_sub(2).max(current));
        if tail < bytes.len() {
            chunks.push(Chunk::Text(bytes[tail..].to_vec()));
        }
        Template {
            chunks,
            request_vars,
            ftime: ftime.and_then(|f| CString::new(f).ok()),
        }
    }

    /// Whether rendering needs the worker's memory sizes (`vsz`, `rss`, ...).
    pub fn needs_memory(&self) -> bool {
        self.chunks
            .iter()
            .any(|c| matches!(c, Chunk::Var(Var::Vsz | Var::Rss | Var::VszM | Var::RssM)))
    }

    /// Whether rendering needs the request's variable count or packet size.
    pub fn needs_var_stats(&self) -> bool {
        self.chunks
            .iter()
            .any(|c| matches!(c, Chunk::Var(Var::Vars | Var::Pktsize)))
    }

    /// Append the line for `r` (with its newline) to `buf`.
    pub fn render(&self, r: &Record<'_>, buf: &mut Vec<u8>) {
        let start = r.start.unwrap_or(UNIX_EPOCH);
        let since = start.duration_since(UNIX_EPOCH).unwrap_or_default();
        let start_secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        for chunk in &self.chunks {
            let var = match chunk {
                Chunk::Text(t) => {
                    buf.extend_from_slice(t);
                    continue;
                }
                Chunk::Var(v) => v,
            };
            let before = buf.len();
            // Writing into a Vec cannot fail.
            let text: Option<&[u8]> = match var {
                Var::Uri => Some(r.uri),
                Var::Method => Some(r.method),
                Var::User => Some(r.user),
                Var::Addr => Some(r.addr),
                Var::Host => Some(r.host),
                Var::Proto => Some(r.proto),
                Var::Uagent => Some(r.uagent),
                Var::Referer => Some(r.referer),
                Var::Request(i) => Some(r.request_vars.get(*i).copied().unwrap_or_default()),
                _ => None,
            };
            let time_format = match var {
                Var::Ltime => Some(LTIME),
                Var::Ftime => Some(self.ftime.as_deref().unwrap_or(LTIME)),
                Var::Ctime => Some(CTIME),
                _ => None,
            };
            if let Some(text) = text {
                push_escaped(buf, text);
            } else if let Some(f) = time_format {
                push_strftime(buf, f, start_secs);
            }
            let _ = match var {
                Var::Status => write!(buf, "{}", r.status),
                Var::Rsize => write!(buf, "{}", r.body_bytes),
                Var::Hsize => write!(buf, "{}", r.head_bytes),
                Var::Size => write!(buf, "{}", r.head_bytes + r.body_bytes),
                Var::Cl => write!(buf, "{}", r.content_length),
                Var::Micros => write!(buf, "{}", r.duration.as_micros()),
                Var::Msecs => write!(buf, "{}", r.duration.as_millis()),
                Var::Secs => write!(buf, "{:.6}", r.duration.as_secs_f64()),
                Var::Tmsecs => write!(buf, "{}", since.as_millis()),
                Var::Tmicros => write!(buf, "{}", since.as_micros()),
                Var::Time => write!(buf, "{start_secs}"),
                Var::Epoch => write!(
                    buf,
                    "{}",
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                ),
                Var::Pid => write!(buf, "{}", r.pid),
                Var::Wid => write!(buf, "{}", r.wid),
                Var::Switches => write!(buf, "1"),
                Var::Core | Var::Zero => write!(buf, "0"),
                Var::Vars => write!(buf, "{}", r.var_count * 2),
                Var::Pktsize => write!(buf, "{}", r.pktsize),
                Var::Headers => write!(buf, "{}", r.headers),
                Var::Vsz => write!(buf, "{}", r.memory.unwrap_or_default().0),
                Var::Rss => write!(buf, "{}", r.memory.unwrap_or_default().1),
                Var::VszM => write!(buf, "{}", r.memory.unwrap_or_default().0 >> 20),
                Var::RssM => write!(buf, "{}", r.memory.unwrap_or_default().1 >> 20),
                _ => Ok(()),
            };
            if buf.len() == before {
                buf.push(b'-');
            }
        }
        buf.push(b'\n');
    }
}

/// `%(ltime)`'s layout (Apache's).
const LTIME: &std::ffi::CStr = c"%d/%b/%Y:%H:%M:%S %z";
/// `ctime(3)`'s layout without its newline.
const CTIME: &std::ffi::CStr = c"%a %b %e %H:%M:%S %Y";

/// The variable called `name`.
fn var(name: &[u8], request_vars: &mut Vec<Vec<u8>>) -> Var {
    match name {
        b"uri" => Var::Uri,
        b"method" => Var::Method,
        b"user" => Var::User,
        b"addr" => Var::Addr,
        b"host" => Var::Host,
        b"proto" => Var::Proto,
        b"uagent" => Var::Uagent,
        b"referer" => Var::Referer,
        b"status" => Var::Status,
        b"rsize" => Var::Rsize,
        b"hsize" => Var::Hsize,
        b"size" => Var::Size,
        b"cl" => Var::Cl,
        b"micros" => Var::Micros,
        b"msecs" => Var::Msecs,
        b"secs" => Var::Secs,
        b"tmsecs" => Var::Tmsecs,
        b"tmicros" => Var::Tmicros,
        b"time" => Var::Time,
        b"ltime" => Var::Ltime,
        b"ftime" => Var::Ftime,
        b"ctime" => Var::Ctime,
        b"epoch" => Var::Epoch,
        b"pid" => Var::Pid,
        b"wid" => Var::Wid,
        b"switches" => Var::Switches,
        b"vars" => Var::Vars,
        b"core" => Var::Core,
        b"vsz" => Var::Vsz,
        b"rss" => Var::Rss,
        b"vszM" => Var::VszM,
        b"rssM" => Var::RssM,
        b"pktsize" => Var::Pktsize,
        b"headers" => Var::Headers,
        b"modifier1" | b"modifier2" | b"werr" | b"rerr" | b"ioerr" => Var::Zero,
        _ if name.starts_with(b"metric.") => Var::Zero,
        _ => match name.strip_prefix(b"var.") {
            Some(v) => {
                let i = match request_vars.iter().position(|n| n == v) {
                    Some(i) => i,
                    None => {
                        request_vars.push(v.to_vec());
                        request_vars.len() - 1
                    }
                };
                Var::Request(i)
            }
            None => Var::Unset,
        },
    }
}

/// Append `secs` formatted by strftime `format` in local time (nothing if it fails).
pub fn push_strftime(buf: &mut Vec<u8>, format: &std::ffi::CStr, secs: i64) {
    let t: libc::time_t = secs;
    // SAFETY: `tm` is plain old data (integers and one pointer): all zeroes is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return;
    }
    let mut out = [0u8; 128];
    // SAFETY: `out` is writable for its length, `format` is NUL-terminated and `tm` was
    // filled by localtime_r; strftime writes at most `out.len()` bytes.
    let n = unsafe {
        libc::strftime(
            out.as_mut_ptr().cast::<libc::c_char>(),
            out.len(),
            format.as_ptr(),
            &tm,
        )
    };
    buf.extend_from_slice(&out[..n.min(out.len())]);
}

/// Append bytes, turning control characters and `"` into `\xNN` (see the module doc).
fn push_escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    super::push_escaped(buf, bytes);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(s: &str) -> Chunk {
        Chunk::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn compile_table() {
        // (format, chunks) following uWSGI's scanner
        let cases: Vec<(&str, Vec<Chunk>)> = vec![
            ("", vec![]),
            ("plain", vec![text("plain")]),
            (
                "%(addr) - %(status)",
                vec![Chunk::Var(Var::Addr), text(" - "), Chunk::Var(Var::Status)],
            ),
            (
                "[%(ltime)] \"%(method) %(uri) %(proto)\"",
                vec![
                    text("["),
                    Chunk::Var(Var::Ltime),
                    text("] \""),
                    Chunk::Var(Var::Method),
                    text(" "),
                    Chunk::Var(Var::Uri),
                    text(" "),
                    Chunk::Var(Var::Proto),
                    text("\""),
                ],
            ),
            // an unknown name is an (unset) logvar, not text
            (
                "a %(nope) b",
                vec![text("a "), Chunk::Var(Var::Unset), text(" b")],
            ),
            // 100% and a lone "(" are text
            ("100% (x)", vec![text("100% (x)")]),
            // never closed: text
            ("x %(addr", vec![text("x "), text("%(addr")]),
            // "%()": opens nothing until the next character, as in uWSGI
            ("%()status)", vec![text("%"), Chunk::Var(Var::Status)]),
            ("%(var.HTTP_X_ID)", vec![Chunk::Var(Var::Request(0))]),
            ("%(metric.core.busy)", vec![Chunk::Var(Var::Zero)]),
            (
                "%(vszM)%(rssM)",
                vec![Chunk::Var(Var::VszM), Chunk::Var(Var::RssM)],
            ),
        ];
        for (format, want) in cases {
            assert_eq!(Template::compile(format, None).chunks, want, "{format:?}");
        }
        let t = Template::compile("%(var.A) %(var.B) %(var.A)", None);
        assert_eq!(t.request_vars, [b"A".to_vec(), b"B".to_vec()]);
        assert_eq!(
            t.chunks,
            [
                Chunk::Var(Var::Request(0)),
                text(" "),
                Chunk::Var(Var::Request(1)),
                text(" "),
                Chunk::Var(Var::Request(0)),
            ]
        );
        assert!(Template::compile("%(rss)", None).needs_memory());
        assert!(!Template::compile("%(status)", None).needs_memory());
        assert!(Template::compile("%(pktsize)", None).needs_var_stats());
    }

    fn record() -> Record<'static> {
        Record {
            addr: b"10.0.0.1",
            user: b"",
            method: b"GET",
            uri: b"/x?y=1",
            proto: b"HTTP/1.1",
            host: b"example.org",
            uagent: b"curl/8",
            referer: b"",
            status: 404,
            body_bytes: 11,
            head_bytes: 70,
            headers: 2,
            content_length: 0,
            start: Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
            duration: Duration::from_micros(2_345),
            pid: 42,
            wid: 3,
            var_count: 9,
            pktsize: 300,
            request_vars: &[b"abc", b""],
            memory: Some((3 << 20, 5 << 20)),
            file_body: false,
        }
    }

    fn render(format: &str) -> String {
        let t = Template::compile(format, None);
        let mut buf = Vec::new();
        t.render(&record(), &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn render_table() {
        // (format, line without its newline)
        let cases: &[(&str, &str)] = &[
            (
                "%(addr) %(user) \"%(method) %(uri) %(proto)\" %(status) %(size)",
                "10.0.0.1 - \"GET /x?y=1 HTTP/1.1\" 404 81",
            ),
            ("%(rsize) %(hsize) %(headers) %(cl)", "11 70 2 0"),
            ("%(micros) %(msecs) %(secs)", "2345 2 0.002345"),
            (
                "%(time) %(tmsecs) %(tmicros)",
                "1700000000 1700000000123 1700000000123456",
            ),
            ("%(pid) %(wid) %(switches) %(core)", "42 3 1 0"),
            ("%(vars) %(pktsize)", "18 300"),
            ("%(host) %(uagent) %(referer)", "example.org curl/8 -"),
            ("%(var.X) %(var.Y) %(var.Z)", "abc - -"),
            ("%(vsz) %(rss) %(vszM) %(rssM)", "3145728 5242880 3 5"),
            ("%(modifier1) %(werr) %(metric.x) %(unknown)", "0 0 0 -"),
            ("no vars", "no vars"),
        ];
        for (format, want) in cases {
            // var.X, var.Y, var.Z get indexes 0, 1, 2; the record has two values.
            let t = Template::compile(format, None);
            let mut buf = Vec::new();
            t.render(&record(), &mut buf);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("{want}\n"),
                "{format}"
            );
        }
    }

    #[test]
    fn time_layouts() {
        // The values depend on the local time zone; the layouts do not.
        let line = render("%(ltime)|%(ctime)|%(ftime)");
        let parts: Vec<&str> = line.trim_end().split('|').collect();
        // 14/Nov/2023:22:13:20 +0000
        let ltime = parts[0];
        assert_eq!(ltime.len(), 26, "{ltime}");
        assert_eq!(&ltime[2..3], "/");
        assert!(ltime.contains("/2023:"), "{ltime}");
        // Tue Nov 14 22:13:20 2023
        assert_eq!(parts[1].len(), 24, "{}", parts[1]);
        assert!(parts[1].ends_with(" 2023"), "{}", parts[1]);
        // ftime without log-format-strftime: as ltime
        assert_eq!(parts[2], ltime);
        let t = Template::compile("%(ftime)", Some("%Y|%j"));
        let mut buf = Vec::new();
        t.render(&record(), &mut buf);
        let s = String::from_utf8(buf).unwrap();
        assert!(s.starts_with("2023|3"), "{s}");
    }

    #[test]
    fn request_values_cannot_forge_lines() {
        let mut r = record();
        r.uri = b"/a\nFAKE \"line\"";
        let t = Template::compile("%(uri)", None);
        let mut buf = Vec::new();
        t.render(&r, &mut buf);
        assert_eq!(buf, b"/a\\x0aFAKE \\x22line\\x22\n");
    }
}
