//! A small blocking client for rsgid's control socket (HTTP/1.1 + JSON over a unix
//! socket, one connection per request).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rsgi_proto::control::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::http;

/// Largest JSON answer read (a status with its log lines is a few KiB).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No socket, or nobody answers on it.
    #[error("rsgid is not running ({why} {})", socket.display())]
    NotRunning {
        /// The socket path.
        socket: PathBuf,
        /// `no socket at` or `nothing answers on`.
        why: &'static str,
    },
    /// The socket (or its directory) is not accessible to this user.
    #[error("permission denied: ask for group access to {}{}", socket.display(), group_hint(.group))]
    PermissionDenied {
        /// The socket path.
        socket: PathBuf,
        /// The socket's group, when it can be seen.
        group: Option<String>,
    },
    /// Another error while connecting, sending or receiving.
    #[error("{about} {}: {source}", socket.display())]
    Io {
        /// What was being done.
        about: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// rsgid answered with an error status.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// rsgid's message.
        message: String,
    },
    /// The answer was not what this rsgictl understands.
    #[error("unexpected answer from rsgid: {0}")]
    Protocol(String),
}

fn group_hint(group: &Option<String>) -> String {
    group
        .as_ref()
        .map(|g| format!(" (group {g})"))
        .unwrap_or_default()
}

/// A client for one control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Option<Duration>,
}

impl Client {
    /// A client of the socket at `socket`, with `timeout` on each read and write
    /// (`None`: wait as long as rsgid takes, e.g. for `reload --wait`).
    pub fn new(socket: impl Into<PathBuf>, timeout: Option<Duration>) -> Client {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The same client with another timeout.
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Client {
        Client {
            socket: self.socket.clone(),
            timeout,
        }
    }

    fn connect(&self) -> Result<UnixStream, Error> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| self.connect_error(e))?;
        stream
            .set_read_timeout(self.timeout)
            .and_then(|()| stream.set_write_timeout(self.timeout))
            .map_err(|source| self.io("cannot configure", source))?;
        Ok(stream)
    }

    fn connect_error(&self, e: io::Error) -> Error {
        let socket = self.socket.clone();
        match e.kind() {
            io::ErrorKind::NotFound => Error::NotRunning {
                socket,
                why: "no socket at",
            },
            io::ErrorKind::ConnectionRefused => Error::NotRunning {
                socket,
                why: "nothing answers on",
            },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                group: socket_group(&socket),
                socket,
            },
            _ => self.io("cannot connect to", e),
        }
    }

    fn io(&self, about: &'static str, source: io::Error) -> Error {
        Error::Io {
            about,
            socket: self.socket.clone(),
            source,
        }
    }

    /// Send a request; returns the head and a reader of the body. A non-2xx answer is
    /// [`Error::Api`] with rsgid's message.
    fn send(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<Box<dyn BufRead>, Error> {
        let mut stream = self.connect()?;
        stream
            .write_all(&http::request(method, target, body))
            .map_err(|e| self.io("cannot send to", e))?;
        let mut reader = BufReader::new(stream);
        let head = http::read_head(&mut reader).map_err(|e| self.read_error(e))?;
        let mut body = http::body(&head, reader).map_err(|e| self.read_error(e))?;
        if !(200..300).contains(&head.status) {
            let mut text = Vec::new();
            let _ = body.by_ref().take(MAX_ANSWER).read_to_end(&mut text);
            let message = serde_json::from_slice::<ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or_else(|_| {
                    format!(
                        "HTTP {}: {}",
                        head.status,
                        String::from_utf8_lossy(&text).trim()
                    )
                });
            return Err(Error::Api {
                status: head.status,
                message,
            });
        }
        Ok(body)
    }

    fn read_error(&self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::InvalidData => Error::Protocol(e.to_string()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                self.io("no answer in time from", e)
            }
            _ => self.io("cannot read the answer from", e),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<T, Error> {
        let reader = self.send(method, target, body)?;
        let mut text = Vec::new();
        reader
            .take(MAX_ANSWER)
            .read_to_end(&mut text)
            .map_err(|e| self.read_error(e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Protocol(format!("{e}: {}", String::from_utf8_lossy(&text).trim())))
    }

    /// `GET target` answered with plain text, whatever the status: (status, text). For
    /// health probes, whose "no" is a 503 with a reason.
    pub fn get_text(&self, target: &str) -> Result<(u16, String), Error> {
        let mut stream = self.connect()?;
        stream
            .write_all(&http::request("GET", target, None))
            .map_err(|e| self.io("cannot send to", e))?;
        let mut reader = BufReader::new(stream);
        let head = http::read_head(&mut reader).map_err(|e| self.read_error(e))?;
        let body = http::body(&head, reader).map_err(|e| self.read_error(e))?;
        let mut text = Vec::new();
        body.take(MAX_ANSWER)
            .read_to_end(&mut text)
            .map_err(|e| self.read_error(e))?;
        Ok((head.status, String::from_utf8_lossy(&text).into_owned()))
    }

    /// `GET target`, answered with JSON.
    pub fn get<T: DeserializeOwned>(&self, target: &str) -> Result<T, Error> {
        self.call("GET", target, None)
    }

    /// `POST target` with an optional JSON body, answered with JSON.
    pub fn post<T: DeserializeOwned>(
        &self,
        target: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Protocol(e.to_string()))?;
        self.call("POST", target, bytes.as_deref())
    }

    /// `GET target` whose answer is a stream of lines (`logs?follow=1`): call
    /// `each(line)` (without its newline) as each arrives, until rsgid ends the stream
    /// or `each` returns `false`.
    pub fn lines(&self, target: &str, mut each: impl FnMut(&str) -> bool) -> Result<(), Error> {
        let mut reader = self.send("GET", target, None)?;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| self.read_error(e))?;
            if n == 0 {
                return Ok(());
            }
            if line.ends_with(b"\n") {
                line.pop();
            }
            if !each(&String::from_utf8_lossy(&line)) {
                return Ok(());
            }
        }
    }
}

/// The name of the group that owns the socket, to say whom to ask for access.
fn socket_group(socket: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(socket).ok()?.gid();
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten();
    Some(group.map_or_else(|| gid.to_string(), |g| g.name))
}

/// `/vassals/{name}` and below, with the name percent-encoded.
pub fn vassal_path(name: &str, rest: &str) -> String {
    format!("/vassals/{}{rest}", http::encode_segment(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_name_the_socket_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let e = Client::new(&missing, None)
            .get::<serde_json::Value>("/ping")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("rsgid is not running (no socket at {})", missing.display())
        );
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = Client::new(&stale, None)
            .get::<serde_json::Value>("/ping")
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotRunning {
                    why: "nothing answers on",
                    ..
                }
            ),
            "{e}"
        );
        let e = Error::PermissionDenied {
            socket: "/run/rsgi/control.sock".into(),
            group: Some("rsgi".into()),
        };
        assert_eq!(
            e.to_string(),
            "permission denied: ask for group access to /run/rsgi/control.sock (group rsgi)"
        );
    }

    #[test]
    fn vassal_paths() {
        assert_eq!(vassal_path("app", "/logs?n=3"), "/vassals/app/logs?n=3");
        assert_eq!(vassal_path("a?b", ""), "/vassals/a%3Fb");
    }
}
