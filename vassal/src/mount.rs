//! `mount = /prefix=app` and `manage-script-name`: several apps in one vassal, each
//! under a URL prefix, as uWSGI does (`core/protocol.c` `uwsgi_parse_vars`,
//! `core/utils.c` `uwsgi_get_app_id`, `plugins/python/pyloader.c`).
//!
//! - **Which app.** The request's `SCRIPT_NAME` names the app whose mountpoint it is
//!   exactly (a trailing `/` on either side ignored); any other request goes to the
//!   default app: `module`/`wsgi-file` if set, else the first `mount`. (uWSGI's
//!   `default_app` is the first app loaded.)
//! - **`manage-script-name`.** Before that, when `PATH_INFO` is longer than `/`, the
//!   longest mountpoint that is a prefix of `PATH_INFO` at a `/` boundary (a trailing
//!   `/` on the mountpoint ignored) becomes `SCRIPT_NAME`, and `PATH_INFO` keeps the
//!   rest: `/app/x` under `/app` is `SCRIPT_NAME=/app`, `PATH_INFO=/x`; `/application`
//!   is not under `/app`. One difference, on purpose: uWSGI sets `SCRIPT_NAME` to a
//!   mountpoint written with a trailing `/` as written and cuts that many bytes, so
//!   `/api/v1` under `/api/` gets `PATH_INFO=v1` (and `/api` reads past its end); rsgi
//!   gives `SCRIPT_NAME=/api`, `PATH_INFO=/v1`.
//! - **What the app is.** `mount = /p=file.py` (or `.wsgi`) loads a file; anything else
//!   is a module, `pkg.mod` or `pkg.mod:callable` (without `:callable`, the `callable`
//!   option's name).

use bytes::Bytes;

use crate::cgi::CgiVars;

/// One `mount` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The URL prefix (`/app`).
    pub mountpoint: String,
    /// What to load.
    pub app: MountApp,
}

/// The app of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountApp {
    /// A Python file (`.py`, `.wsgi`) and the callable's name.
    File(std::path::PathBuf, String),
    /// A module and the callable's name.
    Module(String, String),
}

/// Parse `mount`'s `MOUNTPOINT=APP` (`callable`: the default callable name).
pub fn parse(value: &str, callable: &str) -> Result<Mount, String> {
    let Some((mountpoint, app)) = value.split_once('=') else {
        return Err(format!(
            "'{value}': expected MOUNTPOINT=APP (/app=app.py or /app=pkg.wsgi)"
        ));
    };
    if app.is_empty() {
        return Err(format!("'{value}': no app after '='"));
    }
    let app = if app.ends_with(".py") || app.ends_with(".wsgi") {
        MountApp::File(app.into(), callable.to_owned())
    } else {
        match app.split_once(':') {
            Some((m, c)) if !m.is_empty() && !c.is_empty() => {
                MountApp::Module(m.to_owned(), c.to_owned())
            }
            Some(_) => return Err(format!("'{value}': expected pkg.mod or pkg.mod:callable")),
            None => MountApp::Module(app.to_owned(), callable.to_owned()),
        }
    };
    Ok(Mount {
        mountpoint: mountpoint.to_owned(),
        app,
    })
}

/// The mountpoints of a vassal's apps, in load order; what the request pipeline needs.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// The mountpoints of the `mount` apps.
    pub mountpoints: Vec<Bytes>,
    /// `manage-script-name`.
    pub manage_script_name: bool,
}

impl Routes {
    /// The routes of `config`'s `mount` values (a value `mount::parse` refuses is
    /// reported when the app loads; here it is skipped).
    pub fn new(config: &rsgi_proto::config::VassalConfig) -> Routes {
        Routes {
            mountpoints: config
                .mount
                .iter()
                .filter_map(|v| parse(v, &config.callable).ok())
                .map(|m| Bytes::from(m.mountpoint.into_bytes()))
                .collect(),
            manage_script_name: config.manage_script_name,
        }
    }

    /// `manage-script-name`: move the longest matching mountpoint from `PATH_INFO`
    /// into `SCRIPT_NAME` (see the module doc). Does nothing without it.
    pub fn apply(&self, cgi: &mut CgiVars) {
        if !self.manage_script_name || self.mountpoints.is_empty() {
            return;
        }
        let Some(path) = cgi.get(b"PATH_INFO").cloned() else {
            return;
        };
        let Some(i) = longest_prefix(&path, &self.mountpoints) else {
            return;
        };
        let written = &self.mountpoints[i];
        let mountpoint = written.slice(..written.strip_suffix(b"/").unwrap_or(written).len());
        let rest = path.slice(mountpoint.len().min(path.len())..);
        let mut script_set = false;
        for (k, v) in &mut cgi.vars {
            match &k[..] {
                b"PATH_INFO" => *v = rest.clone(),
                b"SCRIPT_NAME" => {
                    *v = mountpoint.clone();
                    script_set = true;
                }
                _ => {}
            }
        }
        if !script_set {
            cgi.vars
                .push((Bytes::from_static(b"SCRIPT_NAME"), mountpoint));
        }
    }
}

/// The index of the longest mountpoint `path` is under (uWSGI's rule, see the module
/// doc), if any. `path` must be longer than 1 byte.
pub fn longest_prefix(path: &[u8], mountpoints: &[Bytes]) -> Option<usize> {
    if path.len() <= 1 {
        return None;
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, m) in mountpoints.iter().enumerate() {
        let m = m.strip_suffix(b"/").unwrap_or(m);
        let len = m.len();
        if len == 0 || path.len() < len || !path.starts_with(m) {
            continue;
        }
        if path.len() > len && path[len] != b'/' {
            continue;
        }
        if best.is_none_or(|(_, l)| len > l) {
            best = Some((i, len));
        }
    }
    best.map(|(i, _)| i)
}

/// Which app serves a request with this `SCRIPT_NAME`: the index into `mountpoints`
/// of the app mounted exactly there, else `None` (the default app).
pub fn app_for<'a>(
    script_name: &[u8],
    mut mountpoints: impl Iterator<Item = &'a [u8]>,
) -> Option<usize> {
    fn trim(s: &[u8]) -> &[u8] {
        s.strip_suffix(b"/").unwrap_or(s)
    }
    let want = trim(script_name);
    mountpoints.position(|m| trim(m) == want)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cgi::Scheme;

    fn mounts(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|m| Bytes::copy_from_slice(m.as_bytes()))
            .collect()
    }

    #[test]
    fn longest_prefix_table() {
        let m = mounts(&["/app", "/app/admin", "/api/", "/"]);
        // (PATH_INFO, mount index)
        let cases: &[(&str, Option<usize>)] = &[
            ("/app", Some(0)),
            ("/app/", Some(0)),
            ("/app/x", Some(0)),
            ("/application", None),
            ("/app/admin/users", Some(1)),
            ("/app/administrator", Some(0)),
            ("/api/v1", Some(2)),
            ("/api", Some(2)),
            ("/other", None),
            // "/" as a mountpoint matches nothing (its trimmed length is 0), and a
            // PATH_INFO of "/" or "" is never split, as in uWSGI
            ("/", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(longest_prefix(path.as_bytes(), &m), *want, "{path}");
        }
    }

    #[test]
    fn manage_script_name_rewrites_the_vars() {
        let routes = Routes {
            mountpoints: mounts(&["/app", "/api/"]),
            manage_script_name: true,
        };
        // (PATH_INFO, SCRIPT_NAME given, want SCRIPT_NAME, want PATH_INFO)
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            ("/app/x/y", Some(""), "/app", "/x/y"),
            ("/app", None, "/app", ""),
            // a trailing slash on the mountpoint is dropped (uWSGI: "/api/" and "v1")
            ("/api/v1", Some(""), "/api", "/v1"),
            ("/api", Some(""), "/api", ""),
            ("/elsewhere", Some(""), "", "/elsewhere"),
        ];
        for (path, script, want_script, want_path) in cases {
            let mut vars = vec![(
                Bytes::from_static(b"PATH_INFO"),
                Bytes::copy_from_slice(path.as_bytes()),
            )];
            if let Some(s) = script {
                vars.push((
                    Bytes::from_static(b"SCRIPT_NAME"),
                    Bytes::copy_from_slice(s.as_bytes()),
                ));
            }
            let mut cgi = CgiVars {
                vars,
                scheme: Scheme::Http,
                content_length: None,
            };
            routes.apply(&mut cgi);
            let get = |k: &[u8]| cgi.get(k).map(|v| v.to_vec()).unwrap_or_default();
            assert_eq!(get(b"SCRIPT_NAME"), want_script.as_bytes(), "{path}");
            assert_eq!(get(b"PATH_INFO"), want_path.as_bytes(), "{path}");
            let names = cgi
                .vars
                .iter()
                .filter(|(k, _)| &k[..] == b"SCRIPT_NAME")
                .count();
            assert!(names <= 1, "{path}: SCRIPT_NAME twice");
        }
        let off = Routes {
            manage_script_name: false,
            ..routes
        };
        let mut cgi = CgiVars {
            vars: vec![(
                Bytes::from_static(b"PATH_INFO"),
                Bytes::from_static(b"/app/x"),
            )],
            scheme: Scheme::Http,
            content_length: None,
        };
        off.apply(&mut cgi);
        assert_eq!(&cgi.get(b"PATH_INFO").unwrap()[..], b"/app/x");
    }

    #[test]
    fn app_for_table() {
        let m = mounts(&["/app", "/api/"]);
        let cases: &[(&str, Option<usize>)] = &[
            ("/app", Some(0)),
            ("/app/", Some(0)),
            ("/api", Some(1)),
            ("/api/", Some(1)),
            ("", None),
            ("/ap", None),
        ];
        for (script, want) in cases {
            let got = app_for(script.as_bytes(), m.iter().map(|b| &b[..]));
            assert_eq!(got, *want, "{script}");
        }
    }

    #[test]
    fn parse_table() {
        let ok: &[(&str, Mount)] = &[
            (
                "/app=app.py",
                Mount {
                    mountpoint: "/app".into(),
                    app: MountApp::File("app.py".into(), "application".into()),
                },
            ),
            (
                "/w=/srv/x.wsgi",
                Mount {
                    mountpoint: "/w".into(),
                    app: MountApp::File("/srv/x.wsgi".into(), "application".into()),
                },
            ),
            (
                "/m=pkg.web",
                Mount {
                    mountpoint: "/m".into(),
                    app: MountApp::Module("pkg.web".into(), "application".into()),
                },
            ),
            (
                "/f=flaskapp:app",
                Mount {
                    mountpoint: "/f".into(),
                    app: MountApp::Module("flaskapp".into(), "app".into()),
                },
            ),
        ];
        for (value, want) in ok {
            assert_eq!(parse(value, "application").as_ref(), Ok(want), "{value}");
        }
        // "pkg.wsgi" ends in ".wsgi": a file, as in uWSGI
        assert!(matches!(
            parse("/m=pkg.wsgi", "application").unwrap().app,
            MountApp::File(..)
        ));
        for bad in ["/app", "/app=", "/x=mod:", "/x=:c"] {
            assert!(parse(bad, "application").is_err(), "{bad}");
        }
    }
}
