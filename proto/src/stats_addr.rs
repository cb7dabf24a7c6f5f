//! The address grammar of `stats` (a vassal's uWSGI stats server) and of rsgid's
//! `--stats` (the emperor stats), as uWSGI reads a stats address: one parser for both.
//!
//! - `unix:PATH`, or anything with a `/`: a unix socket path;
//! - `@NAME`: an abstract unix socket;
//! - `:PORT`: TCP on every IPv4 address;
//! - `HOST:PORT`: TCP (`[v6]:PORT` for IPv6 literals).

use std::path::PathBuf;

/// A parsed stats address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// An abstract unix socket name (without the `@`).
    Abstract(String),
    /// TCP: a host (a name or an IP literal; `0.0.0.0` for `:PORT`) and a port.
    Tcp {
        /// The host as written (brackets of an IPv6 literal removed).
        host: String,
        /// The port.
        port: u16,
    },
}

/// Parse a stats address (see the module doc). The error says what was expected.
pub fn parse(value: &str) -> Result<StatsAddr, String> {
    let bad = || {
        format!(
            "expected HOST:PORT, :PORT, @NAME or a socket path (like 127.0.0.1:9191 or \
             /run/rsgi/stats.sock), got {value:?}"
        )
    };
    if let Some(path) = value.strip_prefix("unix:") {
        return if path.is_empty() {
            Err(bad())
        } else {
            Ok(StatsAddr::Unix(PathBuf::from(path)))
        };
    }
    if value.contains('/') {
        return Ok(StatsAddr::Unix(PathBuf::from(value)));
    }
    if let Some(name) = value.strip_prefix('@') {
        return if name.is_empty() {
            Err(bad())
        } else {
            Ok(StatsAddr::Abstract(name.to_owned()))
        };
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = match host {
        "" => "0.0.0.0",
        h => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(StatsAddr::Tcp {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_table() {
        let tcp = |h: &str, port| StatsAddr::Tcp {
            host: h.into(),
            port,
        };
        let rows: &[(&str, Option<StatsAddr>)] = &[
            ("127.0.0.1:9191", Some(tcp("127.0.0.1", 9191))),
            (":9191", Some(tcp("0.0.0.0", 9191))),
            ("localhost:9191", Some(tcp("localhost", 9191))),
            ("[::1]:9191", Some(tcp("::1", 9191))),
            (
                "/run/rsgi/stats.sock",
                Some(StatsAddr::Unix("/run/rsgi/stats.sock".into())),
            ),
            (
                "unix:stats.sock",
                Some(StatsAddr::Unix("stats.sock".into())),
            ),
            ("./stats.sock", Some(StatsAddr::Unix("./stats.sock".into()))),
            (
                "@rsgi-stats",
                Some(StatsAddr::Abstract("rsgi-stats".into())),
            ),
            ("unix:", None),
            ("@", None),
            ("9191", None),
            ("host:port", None),
            (":99999", None),
            ("", None),
        ];
        for (text, want) in rows {
            assert_eq!(parse(text).ok(), *want, "{text:?}");
        }
    }
}
