//! Relative paths, resolved as uWSGI resolves them (checked in its `core/uwsgi.c`):
//! uWSGI opens `logto` and `daemonize` and writes `pidfile`/`safe-pidfile` in
//! `uwsgi_setup`, before `uwsgi_start` applies `chdir`; then it binds the sockets and,
//! in the master, the stats server. Its `vacuum` agrees: it goes back to the starting
//! directory to remove the pidfiles, and into `chdir` to remove the unix sockets. So:
//!
//! | option                                        | relative to                |
//! |-----------------------------------------------|----------------------------|
//! | `chdir`                                       | the starting directory     |
//! | `logto`, `daemonize`, `pidfile`, `safe-pidfile` | the starting directory   |
//! | `logto2` (opened in `uwsgi_start` before its `chdir`) | the starting directory |
//! | `socket`, `http-socket` (unix paths), `stats` (unix path) | `chdir` (else the starting directory) |
//!
//! Abstract sockets (`@name`) are names, not paths. Pure: the caller passes the
//! starting directory (rsgi: its own; rsgid: the directory it starts vassals in).

use std::path::{Path, PathBuf};

use crate::config::{ListenAddr, VassalConfig};
use crate::stats_addr::StatsAddr;

fn join(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The directory sockets are bound in: `chdir` (itself relative to `cwd`), else `cwd`.
pub fn socket_dir(config: &VassalConfig, cwd: &Path) -> PathBuf {
    config
        .chdir
        .as_deref()
        .map_or_else(|| cwd.to_path_buf(), |d| join(cwd, d))
}

/// Make the unix socket paths of `config` absolute, relative to [`socket_dir`] (what
/// rsgid needs before it binds a vassal's sockets).
pub fn resolve_sockets(config: &mut VassalConfig, cwd: &Path) {
    let dir = socket_dir(config, cwd);
    for s in &mut config.sockets {
        if let ListenAddr::Unix(p) = &mut s.addr {
            if !p.as_os_str().to_string_lossy().starts_with('@') {
                *p = join(&dir, p);
            }
        }
    }
}

/// Make every path of the table above absolute, given the starting directory `cwd`.
pub fn resolve(config: &mut VassalConfig, cwd: &Path) {
    resolve_sockets(config, cwd);
    let dir = socket_dir(config, cwd);
    if let Some(stats) = &config.stats {
        if let Ok(StatsAddr::Unix(p)) = crate::stats_addr::parse(stats) {
            if p.is_relative() {
                config.stats = Some(join(&dir, &p).to_string_lossy().into_owned());
            }
        }
    }
    for p in [
        &mut config.logto,
        &mut config.logto2,
        &mut config.daemonize,
        &mut config.pidfile,
        &mut config.safe_pidfile,
    ]
    .into_iter()
    .flatten()
    {
        *p = join(cwd, p);
    }
    if let Some(d) = &mut config.chdir {
        *d = join(cwd, d);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::{Protocol, SocketSpec};

    fn unix(p: &str) -> SocketSpec {
        SocketSpec {
            protocol: Protocol::Uwsgi,
            addr: ListenAddr::Unix(PathBuf::from(p)),
        }
    }

    #[test]
    fn each_path_resolves_where_uwsgi_uses_it() {
        // (chdir, value, expected) for each kind, started in /start.
        let rows: &[(Option<&str>, &str, &str, &str)] = &[
            // kind, chdir, written, resolved
            (Some("/srv/app"), "socket", "app.sock", "/srv/app/app.sock"),
            (
                Some("app"),
                "socket",
                "run/app.sock",
                "/start/app/run/app.sock",
            ),
            (None, "socket", "app.sock", "/start/app.sock"),
            (Some("/srv/app"), "socket", "/run/app.sock", "/run/app.sock"),
            (Some("/srv/app"), "socket", "@abstract", "@abstract"),
            (
                Some("/srv/app"),
                "stats",
                "run/stats.sock",
                "/srv/app/run/stats.sock",
            ),
            (
                Some("/srv/app"),
                "stats",
                "unix:stats.sock",
                "/srv/app/stats.sock",
            ),
            (
                Some("/srv/app"),
                "stats",
                "127.0.0.1:9191",
                "127.0.0.1:9191",
            ),
            (Some("/srv/app"), "pidfile", "app.pid", "/start/app.pid"),
            (
                Some("/srv/app"),
                "safe-pidfile",
                "run/app.pid",
                "/start/run/app.pid",
            ),
            (Some("/srv/app"), "logto", "app.log", "/start/app.log"),
            (
                Some("/srv/app"),
                "logto2",
                "logs/b.log",
                "/start/logs/b.log",
            ),
            (
                Some("/srv/app"),
                "daemonize",
                "/var/log/app.log",
                "/var/log/app.log",
            ),
            (Some("app"), "chdir", "", "/start/app"),
        ];
        for (chdir, kind, written, want) in rows {
            let mut c = VassalConfig {
                chdir: chdir.map(PathBuf::from),
                ..VassalConfig::default()
            };
            match *kind {
                "socket" => c.sockets.push(unix(written)),
                "stats" => c.stats = Some((*written).to_owned()),
                "pidfile" => c.pidfile = Some(PathBuf::from(written)),
                "safe-pidfile" => c.safe_pidfile = Some(PathBuf::from(written)),
                "logto" => c.logto = Some(PathBuf::from(written)),
                "logto2" => c.logto2 = Some(PathBuf::from(written)),
                "daemonize" => c.daemonize = Some(PathBuf::from(written)),
                _ => {}
            }
            resolve(&mut c, Path::new("/start"));
            let got = match *kind {
                "socket" => match &c.sockets[0].addr {
                    ListenAddr::Unix(p) => p.display().to_string(),
                    other => other.to_string(),
                },
                "stats" => c.stats.clone().unwrap(),
                "pidfile" => c.pidfile.as_ref().unwrap().display().to_string(),
                "safe-pidfile" => c.safe_pidfile.as_ref().unwrap().display().to_string(),
                "logto" => c.logto.as_ref().unwrap().display().to_string(),
                "logto2" => c.logto2.as_ref().unwrap().display().to_string(),
                "daemonize" => c.daemonize.as_ref().unwrap().display().to_string(),
                _ => c.chdir.as_ref().unwrap().display().to_string(),
            };
            assert_eq!(got, *want, "{kind} = {written} with chdir {chdir:?}");
        }
    }

    #[test]
    fn tcp_sockets_are_untouched() {
        let mut c = VassalConfig {
            chdir: Some(PathBuf::from("/srv")),
            ..VassalConfig::default()
        };
        let tcp = SocketSpec {
            protocol: Protocol::Http,
            addr: ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 80,
            },
        };
        c.sockets.push(tcp.clone());
        resolve_sockets(&mut c, Path::new("/start"));
        assert_eq!(c.sockets, vec![tcp]);
    }
}
