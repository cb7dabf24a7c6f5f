//! [`Fatal`]: a failure that ends the process with a documented exit code (see
//! `rsgi_proto::notify`). Shared by the program flow, the master and the worker.

/// A failure that ends the process with `code`.
#[derive(Debug)]
pub struct Fatal {
    /// The exit code.
    pub code: i32,
    /// What to print.
    pub message: String,
}

impl Fatal {
    /// A failure with `code`; the message includes every `source()` of an error.
    pub(crate) fn new(code: i32, message: impl std::fmt::Display) -> Fatal {
        Fatal {
            code,
            message: message.to_string(),
        }
    }

    /// A failure from an error, with its chain of causes (`cannot bind ...: Address
    /// already in use`).
    pub(crate) fn from_error(code: i32, err: &dyn std::error::Error) -> Fatal {
        Fatal {
            code,
            message: rsgi_proto::error::chain(err),
        }
    }
}
