//! `sys.stdout` and `sys.stderr` when output must never wait (under rsgid, see
//! [`crate::log::detach_output`]): Python's own streams would raise `BlockingIOError`
//! on a full non-blocking pipe (or, blocking, stall the worker for as long as rsgid
//! does). These objects hand whole lines to the log sink, which drops and counts what
//! does not fit. They are text streams in the shape code expects of `sys.stdout`:
//! `write`, `writelines`, `flush`, `fileno`, `isatty`, `encoding`, `buffer.write`.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// One of the two streams: a line buffer in front of the log sink.
#[pyclass(module = "rsgi")]
struct Output {
    fd: i32,
    /// Text not yet ended by a newline (written on the next newline or `flush`).
    pending: Mutex<Vec<u8>>,
}

impl Output {
    fn push(&self, bytes: &[u8]) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.extend_from_slice(bytes);
        if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
            let rest = pending.split_off(last + 1);
            crate::log::write_raw(&pending);
            *pending = rest;
        }
        // A line without an end that keeps growing is written as it is.
        if pending.len() > MAX_PENDING {
            crate::log::write_raw(&pending);
            pending.clear();
        }
    }
}

/// The most text kept waiting for its newline.
const MAX_PENDING: usize = 64 * 1024;

#[pymethods]
impl Output {
    fn write(&self, text: &Bound<'_, PyString>) -> PyResult<usize> {
        let s = text.to_cow()?;
        self.push(s.as_bytes());
        Ok(s.chars().count())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            self.push(line.cast::<PyString>()?.to_cow()?.as_bytes());
        }
        Ok(())
    }

    fn flush(&self) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !pending.is_empty() {
            crate::log::write_raw(&pending);
            pending.clear();
        }
    }

    fn fileno(&self) -> i32 {
        self.fd
    }

    fn isatty(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn readable(&self) -> bool {
        false
    }

    fn seekable(&self) -> bool {
        false
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "backslashreplace"
    }

    #[getter]
    fn name(&self) -> &'static str {
        if self.fd == 1 {
            "<stdout>"
        } else {
            "<stderr>"
        }
    }

    #[getter]
    fn line_buffering(&self) -> bool {
        true
    }

    /// `sys.stdout.buffer`: bytes go the same way.
    #[getter]
    fn buffer(slf: Py<Self>) -> Buffer {
        Buffer { text: slf }
    }
}

/// `sys.stdout.buffer`.
#[pyclass(module = "rsgi")]
struct Buffer {
    text: Py<Output>,
}

#[pymethods]
impl Buffer {
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> usize {
        let bytes = data.as_bytes();
        self.text.borrow(py).push(bytes);
        bytes.len()
    }

    fn flush(&self, py: Python<'_>) {
        self.text.borrow(py).flush();
    }

    fn fileno(&self, py: Python<'_>) -> i32 {
        self.text.borrow(py).fd
    }
}

/// Replace `sys.stdout` and `sys.stderr` (and `sys.__stdout__`/`__stderr__`, which
/// tracebacks at exit use) with line-buffered streams into the log sink. Call once
/// after the interpreter started, before the app is imported.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    for (fd, names) in [(1, ["stdout", "__stdout__"]), (2, ["stderr", "__stderr__"])] {
        // What Python buffered so far goes out first, the usual way.
        if let Ok(old) = sys.getattr(names[0]) {
            let _ = old.call_method0("flush");
        }
        let stream = Py::new(
            py,
            Output {
                fd,
                pending: Mutex::new(Vec::new()),
            },
        )?;
        for name in names {
            sys.setattr(name, stream.clone_ref(py))?;
        }
    }
    Ok(())
}
