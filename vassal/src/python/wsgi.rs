//! The WSGI call (PEP 3333): environ, `start_response`, the input and error streams,
//! `wsgi.file_wrapper`, and the conversion of the app's iterable into a [`Response`].
//!
//! Rules kept here:
//! - environ values are native strings decoded as latin-1; `wsgi.multithread` and
//!   `wsgi.multiprocess` are real bools.
//! - `start_response` may be called again only with `exc_info`; once headers are out,
//!   `exc_info` is re-raised.
//! - the body of a list or tuple is collected at once (the common case, no second GIL
//!   trip); any other iterable is streamed, and the head is fixed when the first
//!   non-empty chunk appears (so a generator may still call `start_response`).
//! - `close()` on the returned iterable runs exactly once, on every path.
//! - headers the server owns (`Connection`, `Transfer-Encoding`, `Keep-Alive`) are
//!   dropped: the protocol writers set them.

use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::Bytes;
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use super::{format_exception, App, Request};
use crate::cgi::Scheme;
use crate::response::{parse_status, Body, ChunkSource, Response, StreamError};

/// Build the environ entries shared by every request.
pub(super) fn environ_template(
    py: Python<'_>,
    multithread: bool,
    multiprocess: bool,
    file_wrapper: bool,
) -> PyResult<Bound<'_, PyDict>> {
    let env = PyDict::new(py);
    env.set_item(intern!(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
    env.set_item(intern!(py, "wsgi.errors"), Py::new(py, Errors)?)?;
    env.set_item(intern!(py, "wsgi.multithread"), multithread)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), multiprocess)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    // `wsgi-disable-file-wrapper` leaves it out, as uWSGI does.
    if file_wrapper {
        env.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<FileWrapper>(),
        )?;
    }
    env.set_item(intern!(py, "SCRIPT_NAME"), "")?;
    Ok(env)
}

/// A byte string as a latin-1 decoded `str` (PEP 3333 "native strings").
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return PyString::new(py, s);
        }
    }
    let s: String = bytes.iter().map(|&b| char::from(b)).collect();
    PyString::new(py, &s)
}

/// The interned `str` of the listed literal equal to the bytes `$s`, if one is.
macro_rules! interned {
    ($py:ident, $s:expr, [$($lit:literal),* $(,)?]) => {
        match $s {
            $(s if s == $lit.as_bytes() => Some(intern!($py, $lit).clone()),)*
            _ => None,
        }
    };
}

/// An environ key: the interned `str` for the CGI names of every request and the headers
/// apps look up most, else a new `str`. An interned key is the very object of the app's
/// own literal (`environ["PATH_INFO"]`), so the dict lookup matches on identity, and no
/// key is made, hashed and freed per request.
fn environ_key<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    let common = interned!(
        py,
        name,
        [
            "REQUEST_METHOD",
            "SCRIPT_NAME",
            "PATH_INFO",
            "QUERY_STRING",
            "REQUEST_URI",
            "SERVER_PROTOCOL",
            "SERVER_NAME",
            "SERVER_PORT",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "DOCUMENT_ROOT",
            "REQUEST_SCHEME",
            "HTTPS",
            "UWSGI_SCHEME",
            "HTTP_HOST",
            "HTTP_CONNECTION",
            "HTTP_USER_AGENT",
            "HTTP_ACCEPT",
            "HTTP_ACCEPT_ENCODING",
            "HTTP_ACCEPT_LANGUAGE",
            "HTTP_COOKIE",
            "HTTP_REFERER",
            "HTTP_ORIGIN",
            "HTTP_X_FORWARDED_FOR",
            "HTTP_X_FORWARDED_PROTO",
            "HTTP_X_FORWARDED_HOST",
            "HTTP_X_REAL_IP",
            "HTTP_X_REQUESTED_WITH",
            "HTTP_CACHE_CONTROL",
            "HTTP_IF_NONE_MATCH",
            "HTTP_IF_MODIFIED_SINCE",
            "HTTP_AUTHORIZATION",
        ]
    );
    common.unwrap_or_else(|| latin1(py, name))
}

/// An environ value: interned for the few values most requests share (methods,
/// protocols, nginx's `REQUEST_SCHEME`), else a new `str`.
fn environ_value<'py>(py: Python<'py>, value: &[u8]) -> Bound<'py, PyString> {
    let common = interned!(
        py,
        value,
        ["GET", "POST", "HEAD", "HTTP/1.1", "HTTP/1.0", "http", "https"]
    );
    common.unwrap_or_else(|| latin1(py, value))
}

/// A `str` encoded as latin-1, or `None` if it holds a code point above U+00FF.
fn to_latin1(s: &str) -> Option<Bytes> {
    if s.is_ascii() {
        return Some(Bytes::copy_from_slice(s.as_bytes()));
    }
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

fn build_environ<'py>(
    py: Python<'py>,
    app: &App,
    req: &mut Request,
) -> PyResult<Bound<'py, PyDict>> {
    let env = app.template.bind(py).copy()?;
    for (name, value) in &req.cgi.vars {
        env.set_item(environ_key(py, name), environ_value(py, value))?;
    }
    let scheme = match req.cgi.scheme {
        Scheme::Http => intern!(py, "http"),
        Scheme::Https => intern!(py, "https"),
    };
    env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
    let input = Input {
        data: std::mem::take(&mut req.body),
        pos: 0,
    };
    env.set_item(intern!(py, "wsgi.input"), Py::new(py, input)?)?;
    Ok(env)
}

/// Run the app for one request. Never raises: errors become a 500 and a traceback.
pub(super) fn call(py: Python<'_>, app: &App, mut req: Request) -> Response {
    let start = match Py::new(py, StartResponse::default()) {
        Ok(s) => s.into_bound(py),
        Err(e) => return internal_error(py, &e, "start_response"),
    };
    // Chosen before the environ takes the request's variables.
    let callable = app.callable_for(&req.cgi).clone_ref(py);
    let result =
        build_environ(py, app, &mut req).and_then(|env| callable.bind(py).call1((env, &start)));
    let result = match result {
        Ok(r) => r,
        Err(e) => return internal_error(py, &e, "the app raised"),
    };
    match respond(py, app, &start, &result, req.head) {
        Ok(resp) => resp,
        Err(e) => {
            close_iterable(py, &result);
            internal_error(py, &e, "the app's response")
        }
    }
}

/// Turn the returned iterable into a response. On error the caller calls `close()`.
fn respond(
    py: Python<'_>,
    app: &App,
    start: &Bound<'_, StartResponse>,
    result: &Bound<'_, PyAny>,
    head: bool,
) -> PyResult<Response> {
    // wsgi.file_wrapper over a real file: send it from Rust (sendfile on uwsgi).
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some(body) = file_body(py, wrapper, result)? {
            return head_response(start, body);
        }
    }
    // A list or tuple: collect it now, no second trip into Python.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        let mut chunks = collect_chunks(&result.try_iter()?)?;
        let body = match chunks.len() {
            0 => Body::Empty,
            1 => Body::Full(chunks.pop().unwrap_or_default()),
            _ => Body::Chunks(chunks),
        };
        return head_response(start, body);
    }
    let iter = result.try_iter()?;
    // An iterable over a list or tuple (Django's HttpResponse): pulling it runs no app
    // code and never blocks, so collect it now too. Its close() still runs after the
    // body is sent: the body's bytes own the iterable and close it when dropped.
    let iter_type = iter.get_type();
    if !head && app.in_memory_iters.iter().any(|t| iter_type.is(t.bind(py))) {
        let mut chunks = collect_chunks(&iter)?;
        let data = match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        let body = if data.is_empty() {
            close_iterable(py, result);
            Body::Empty
        } else {
            Body::Full(Bytes::from_owner(ClosesWhenSent {
                data,
                _closer: Closer(Some(result.clone().unbind())),
            }))
        };
        return head_response(start, body);
    }
    // Anything else is streamed; the head is known once the first chunk exists.
    let mut first = None;
    if !head {
        for item in iter.clone() {
            let chunk = chunk_bytes(&item?)?;
            if !chunk.is_empty() {
                first = Some(chunk);
                break;
            }
        }
    }
    match first {
        None => {
            close_iterable(py, result);
            head_response(start, Body::Empty)
        }
        Some(first) => head_response(
            start,
            Body::Stream(Box::new(PyStream {
                first: Some(first),
                iter: Some(iter.unbind()),
                result: Some(result.clone().unbind()),
            })),
        ),
    }
}

/// The head from `start_response`, with any `write()` data in front of `body`.
fn head_response(start: &Bound<'_, StartResponse>, body: Body) -> PyResult<Response> {
    let mut state = start.borrow_mut();
    state.headers_sent = true;
    let Some((status, status_line)) = state.status.take() else {
        return Err(PyAssertionError::new_err(
            "the app returned without calling start_response()",
        ));
    };
    let written = std::mem::take(&mut state.written);
    let body = if written.is_empty() {
        body
    } else {
        prepend(written, body)
    };
    Ok(Response {
        status,
        status_line,
        headers: std::mem::take(&mut state.headers),
        content_length: state.content_length,
        body,
        exception: false,
    })
}

/// Put data from `write()` before the iterable's body.
fn prepend(mut written: Vec<Bytes>, body: Body) -> Body {
    match body {
        Body::Empty => Body::Chunks(written),
        Body::Full(b) => {
            written.push(b);
            Body::Chunks(written)
        }
        Body::Chunks(c) => {
            written.extend(c);
            Body::Chunks(written)
        }
        Body::Stream(s) => Body::Stream(Box::new(Prefixed {
            prefix: written.into_iter(),
            rest: s,
        })),
        // A file after write() data: stream the file through a reader instead.
        other => {
            tracing_free_note("write() data before a file body; sending the file as chunks");
            let rest: Box<dyn ChunkSource> = Box::new(BodyChunks(Some(other)));
            Body::Stream(Box::new(Prefixed {
                prefix: written.into_iter(),
                rest,
            }))
        }
    }
}

fn tracing_free_note(msg: &str) {
    crate::log::line(format_args!("rsgi: {msg}"));
}

/// Every chunk of an iterator that holds its body in memory (a list's or a tuple's).
fn collect_chunks(iter: &Bound<'_, PyIterator>) -> PyResult<Vec<Bytes>> {
    iter.clone().map(|item| chunk_bytes(&item?)).collect()
}

/// A chunk from the app: must be `bytes` (PEP 3333), `bytearray` is tolerated.
fn chunk_bytes(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = item.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = item.extract::<Vec<u8>>() {
        if !item.is_instance_of::<PyString>() {
            return Ok(Bytes::from(b));
        }
    }
    Err(PyTypeError::new_err(format!(
        "WSGI response chunks must be bytes, not {}",
        item.get_type().name()?
    )))
}

/// Call `close()` on the app's iterable if it has one. Errors are logged.
fn close_iterable(py: Python<'_>, result: &Bound<'_, PyAny>) {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return;
    }
    match result.getattr_opt(intern!(py, "close")) {
        Ok(Some(close)) => {
            if let Err(e) = close.call0() {
                log_exception(py, &e, "close() raised");
            }
        }
        Ok(None) => {}
        Err(e) => log_exception(py, &e, "close() lookup raised"),
    }
}

fn log_exception(py: Python<'_>, err: &PyErr, context: &str) {
    let tb = format_exception(py, err);
    crate::log::line(format_args!("rsgi: {context}:"));
    crate::log::write_raw(tb.as_bytes());
}

fn internal_error(py: Python<'_>, err: &PyErr, context: &str) -> Response {
    log_exception(py, err, context);
    let mut resp = Response::error(500);
    resp.exception = true;
    resp
}

/// A file body for `wsgi.file_wrapper`, if the wrapped object is a real file.
fn file_body(
    py: Python<'_>,
    wrapper: &Bound<'_, FileWrapper>,
    result: &Bound<'_, PyAny>,
) -> PyResult<Option<Body>> {
    let filelike = wrapper.borrow().filelike.clone_ref(py).into_bound(py);
    let Ok(Some(fileno)) = filelike.getattr_opt(intern!(py, "fileno")) else {
        return Ok(None);
    };
    let Ok(fd) = fileno.call0().and_then(|f| f.extract::<i32>()) else {
        return Ok(None);
    };
    let offset = match filelike.call_method0(intern!(py, "tell")) {
        Ok(pos) => pos.extract::<u64>().unwrap_or(0),
        Err(_) => 0,
    };
    // Flush Python-side buffers so the fd's content is what the app sees.
    if let Ok(Some(flush)) = filelike.getattr_opt(intern!(py, "flush")) {
        let _ = flush.call0();
    }
    // SAFETY: `fd` was just returned by the file object's fileno(), which stays open at
    // least until we call close() below (after duplicating it); BorrowedFd only lives
    // for the duration of the dup.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(owned) = borrowed.try_clone_to_owned() else {
        return Ok(None);
    };
    let file = std::fs::File::from(owned);
    match file.metadata() {
        Ok(meta) if meta.is_file() => {}
        _ => return Ok(None),
    }
    let _ = file.as_raw_fd();
    Ok(Some(Body::File {
        file,
        offset,
        len: None,
        on_done: Some(Box::new(Closer(Some(result.clone().unbind())))),
    }))
}

/// Calls the iterable's `close()` when dropped (for file bodies and collected ones).
struct Closer(Option<Py<PyAny>>);

impl ChunkSource for Closer {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        Ok(None)
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(result) = self.0.take() {
            Python::attach(|py| close_iterable(py, result.bind(py)));
        }
    }
}

/// A collected body that calls the app iterable's `close()` once its bytes are dropped,
/// i.e. once the response is sent (or the client went away).
struct ClosesWhenSent {
    data: Bytes,
    _closer: Closer,
}

impl AsRef<[u8]> for ClosesWhenSent {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// A streamed app body: pulls the Python iterator, one chunk at a time, with the GIL
/// taken only for the pull.
struct PyStream {
    first: Option<Bytes>,
    iter: Option<Py<PyIterator>>,
    result: Option<Py<PyAny>>,
}

impl ChunkSource for PyStream {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let Some(iter) = &self.iter else {
            return Ok(None);
        };
        Python::attach(|py| {
            let mut iter = iter.bind(py).clone();
            loop {
                match iter.next() {
                    None => return Ok(None),
                    Some(Ok(item)) => match chunk_bytes(&item) {
                        Ok(chunk) if chunk.is_empty() => continue,
                        Ok(chunk) => return Ok(Some(chunk)),
                        Err(e) => {
                            log_exception(py, &e, "the app's response");
                            return Err(StreamError(e.to_string()));
                        }
                    },
                    Some(Err(e)) => {
                        log_exception(py, &e, "the app raised while streaming");
                        return Err(StreamError(e.to_string()));
                    }
                }
            }
        })
    }
}

impl Drop for PyStream {
    fn drop(&mut self) {
        let iter = self.iter.take();
        if let Some(result) = self.result.take() {
            Python::attach(|py| {
                close_iterable(py, result.bind(py));
                drop(iter);
                drop(result);
            });
        }
    }
}

/// `write()` data, then the rest of the body.
struct Prefixed {
    prefix: std::vec::IntoIter<Bytes>,
    rest: Box<dyn ChunkSource>,
}

impl ChunkSource for Prefixed {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        match self.prefix.next() {
            Some(b) => Ok(Some(b)),
            None => self.rest.next_chunk(),
        }
    }
}

/// Any body read out as chunks (used only for the rare write()+file case).
struct BodyChunks(Option<Body>);

impl ChunkSource for BodyChunks {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        use std::io::{Read, Seek, SeekFrom};
        match self.0.take() {
            None | Some(Body::Empty) => Ok(None),
            Some(Body::Full(b)) => Ok(Some(b)),
            Some(Body::File {
                mut file,
                offset,
                len,
                on_done,
            }) => {
                let mut buf = Vec::new();
                let read = file.seek(SeekFrom::Start(offset)).and_then(|_| match len {
                    Some(n) => (&mut file).take(n).read_to_end(&mut buf),
                    None => file.read_to_end(&mut buf),
                });
                drop(on_done);
                read.map_err(|e| StreamError(e.to_string()))?;
                Ok(Some(Bytes::from(buf)))
            }
            Some(other) => {
                self.0 = Some(other);
                Ok(None)
            }
        }
    }
}

/// The `start_response` callable; its bound `write` method is the WSGI `write()`.
#[pyclass(module = "rsgi")]
#[derive(Default)]
struct StartResponse {
    status: Option<(u16, Bytes)>,
    headers: Vec<(Bytes, Bytes)>,
    content_length: Option<u64>,
    headers_sent: bool,
    written: Vec<Bytes>,
    called: bool,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        {
            let mut this = slf.borrow_mut();
            match exc_info.filter(|e| !e.is_none()) {
                // PEP 3333: too late to change the response once headers are out: re-raise.
                Some(exc_info) if this.headers_sent => {
                    return Err(PyErr::from_value(exc_info.get_item(1)?));
                }
                Some(_) => {}
                None if this.called => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info",
                    ))
                }
                None => {}
            }
            let status: &Bound<'py, PyString> = status
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("status must be a str"))?;
            let status_str = status.to_str()?;
            let status_line = to_latin1(status_str)
                .ok_or_else(|| PyValueError::new_err("status must be latin-1"))?;
            let code = parse_status(&status_line).ok_or_else(|| {
                PyValueError::new_err(format!("invalid status line {status_str:?}"))
            })?;
            let mut list = Vec::new();
            let mut content_length = None;
            for item in headers.try_iter()? {
                let item = item?;
                let (name, value): (Bound<'py, PyString>, Bound<'py, PyString>) = item
                    .extract()
                    .map_err(|_| PyTypeError::new_err("headers must be (str, str) tuples"))?;
                let name = name.to_str()?;
                let value = value.to_str()?;
                if name.eq_ignore_ascii_case("connection")
                    || name.eq_ignore_ascii_case("transfer-encoding")
                    || name.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = Some(value.trim().parse::<u64>().map_err(|_| {
                        PyValueError::new_err(format!("invalid Content-Length {value:?}"))
                    })?);
                }
                let value_bytes = to_latin1(value).ok_or_else(|| {
                    PyValueError::new_err(format!("header {name} is not latin-1"))
                })?;
                if value_bytes.iter().any(|&b| b == b'\r' || b == b'\n')
                    || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':')
                {
                    return Err(PyValueError::new_err(format!(
                        "invalid header {name:?}: control characters"
                    )));
                }
                list.push((Bytes::copy_from_slice(name.as_bytes()), value_bytes));
            }
            this.status = Some((code, status_line));
            this.headers = list;
            this.content_length = content_length;
            this.called = true;
        }
        slf.getattr(intern!(py, "write"))
    }

    /// WSGI's `write()` callable (legacy apps): the data goes out before the iterable.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.called {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        let chunk = chunk_bytes(data)?;
        self.headers_sent = true;
        if !chunk.is_empty() {
            self.written.push(chunk);
        }
        Ok(())
    }
}

/// `wsgi.input`: the request body, already read completely.
#[pyclass(module = "rsgi")]
struct Input {
    data: Bytes,
    pos: usize,
}

impl Input {
    fn remaining(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }

    fn line_len(&self, limit: Option<usize>) -> usize {
        let rest = self.remaining();
        let rest = match limit {
            Some(l) => &rest[..l.min(rest.len())],
            None => rest,
        };
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => rest.len(),
        }
    }
}

fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) => {
            let n: i64 = s.extract()?;
            Ok(usize::try_from(n).ok())
        }
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let n = size_arg(size)?.unwrap_or(usize::MAX);
        Ok(PyBytes::new(py, self.take(n)))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let n = self.line_len(size_arg(size)?);
        Ok(PyBytes::new(py, self.take(n)))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint)?.filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        while !self.remaining().is_empty() {
            let n = self.line_len(None);
            total += n;
            lines.append(PyBytes::new(py, self.take(n)))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if self.remaining().is_empty() {
            return None;
        }
        let n = self.line_len(None);
        Some(PyBytes::new(py, self.take(n)))
    }
}

/// `wsgi.errors`: text written here goes to the server log.
#[pyclass(module = "rsgi")]
struct Errors;

#[pymethods]
impl Errors {
    fn write(&self, text: &str) -> usize {
        crate::log::write_raw(text.as_bytes());
        text.len()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            crate::log::write_raw(line.cast::<PyString>()?.to_str()?.as_bytes());
        }
        Ok(())
    }

    fn flush(&self) {}
}

/// `wsgi.file_wrapper`: iterates a file-like object in blocks; when it wraps a real
/// file, the server sends the file itself (sendfile over the uwsgi protocol).
#[pyclass(module = "rsgi")]
struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.blksize,))?;
        if data.is_truthy()? {
            Ok(Some(data.into_py_any(py)?))
        } else {
            Ok(None)
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(close) = self.filelike.bind(py).getattr_opt(intern!(py, "close"))? {
            close.call0()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_encoding() {
        assert_eq!(to_latin1("abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(to_latin1("caf\u{e9}").as_deref(), Some(&b"caf\xe9"[..]));
        assert_eq!(to_latin1("\u{20ac}"), None);
    }
}
