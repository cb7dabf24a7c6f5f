//! `static-map`: serving files straight from disk for URL prefixes, before the app.
//!
//! uWSGI's `static-map = /static=/data/dir` (repeatable) maps a URL prefix to a
//! directory. [`StaticMap::new`] canonicalizes each directory once at startup;
//! [`StaticMap::lookup`] then takes the request's decoded `PATH_INFO` and tries the
//! mappings in order:
//!
//! - A prefix matches on a path-segment boundary: `/static` matches `/static` and
//!   `/static/x.css`, never `/staticfoo`.
//! - A path that could leave the directory is refused ([`Lookup::Forbidden`]): a `..`
//!   segment (the input is already percent-decoded, so `%2e%2e` arrives as `..`), a NUL
//!   byte, or a symlink whose canonical target lies outside the mapped directory.
//! - When a mapping has no such regular file (missing, a directory, a fifo...), the next
//!   matching mapping is tried, and when none has it the request goes to the app
//!   (`None`), as in uWSGI. So [`Lookup::NotFound`] is not produced by these rules; it
//!   exists for callers that want to answer 404 themselves.
//!
//! uWSGI's other static options, built by [`StaticMap::from_config`] (`core/protocol.c`
//! `uwsgi_file_serve` callers, `core/static.c`), in uWSGI's order:
//!
//! - `check-static = DIR`: `DIR` + the whole `PATH_INFO`, tried first;
//! - `static-map = /p=DIR`: `DIR` + what follows `/p`;
//! - `static-map2 = /p=DIR`: `DIR` + the whole `PATH_INFO` (`/p` kept);
//! - `static-index = index.html`: a path that names a directory (the mapped directory
//!   itself included) serves the first of these files in it;
//! - `static-gzip-all`: when the request accepts gzip and `FILE.gz` exists beside the
//!   file, that is served (`Content-Encoding: gzip`, the content type of `FILE`, the
//!   size and date of `FILE.gz`);
//! - `static-expires-type = MIME=SECS` (`static-expires-type-mtime`): an `Expires`
//!   header SECS after now (after the file's mtime) for files of that content type.
//!
//! `lookup` makes blocking filesystem calls (`realpath`, `stat`), like uWSGI does on its
//! request path; a caller that cannot afford them on its I/O thread should run it off
//! that thread. The file is reported by its canonical path, to be opened as is.
//!
//! [`not_modified`] and [`http_date`] handle `If-Modified-Since` and `Last-Modified`
//! (HTTP-dates, one-second granularity).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Content type for files whose extension `mime_guess` does not know.
const OCTET_STREAM: &str = "application/octet-stream";

/// The `static-map` table: URL prefixes and the directories they serve, in config order.
#[derive(Debug, Clone, Default)]
pub struct StaticMap {
    entries: Vec<Mapping>,
    /// `static-index` names.
    index: Vec<String>,
    /// `static-gzip-all`.
    gzip_all: bool,
    /// `static-expires-type` (false) and `static-expires-type-mtime` (true):
    /// (content type, seconds, from mtime).
    expires: Vec<(String, u64, bool)>,
}

#[derive(Debug, Clone)]
struct Mapping {
    /// The URL prefix without trailing slashes (`/` becomes empty: it matches every path).
    prefix: Vec<u8>,
    /// The canonical directory.
    dir: PathBuf,
    /// Look the whole path up under `dir` (`static-map2`, `check-static`), not only
    /// what follows the prefix.
    keep_prefix: bool,
}

/// What [`StaticMap::lookup`] found for a path under a mapped prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A regular file inside a mapped directory: serve it.
    Found(StaticFile),
    /// Not produced by the current rules (a miss falls through to the app, as in
    /// uWSGI); kept for callers that answer 404 themselves.
    NotFound,
    /// The path tries to leave the mapped directory (`..`, NUL, a symlink pointing
    /// outside) or cannot be read: answer 403.
    Forbidden,
}

/// A file to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFile {
    /// Canonical path of the file (no symlinks left), inside its mapped directory.
    pub path: PathBuf,
    /// Size in bytes, for Content-Length.
    pub len: u64,
    /// Modification time, for Last-Modified and If-Modified-Since.
    pub modified: SystemTime,
    /// Content-Type, guessed from the requested name's extension.
    pub content_type: &'static str,
    /// Served from `FILE.gz` (`static-gzip-all`): send `Content-Encoding: gzip`.
    pub gzip: bool,
    /// `static-expires-type`: seconds until `Expires`, and whether from the mtime.
    pub expires: Option<(u64, bool)>,
}

/// Why a `static-map` entry cannot be used (at startup).
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// The URL prefix does not start with `/`.
    #[error("static-map {prefix:?}: the URL prefix must start with '/'")]
    BadPrefix {
        /// The prefix as configured.
        prefix: String,
    },
    /// The directory is missing or cannot be resolved.
    #[error("static-map {prefix}={}: {source}", dir.display())]
    Dir {
        /// The prefix as configured.
        prefix: String,
        /// The directory as configured.
        dir: PathBuf,
        /// Why it cannot be resolved.
        #[source]
        source: io::Error,
    },
    /// A `static-expires-type` value whose seconds are not a whole number.
    #[error("static-expires-type {value}: expected MIME=SECONDS")]
    Expires {
        /// The value as configured.
        value: String,
    },
    /// The path exists but is not a directory.
    #[error("static-map {prefix}={}: not a directory", dir.display())]
    NotADir {
        /// The prefix as configured.
        prefix: String,
        /// The path as configured.
        dir: PathBuf,
    },
}

impl StaticMap {
    /// Build from config pairs `(url prefix, directory)`; directories are canonicalized
    /// now (a missing one is an error naming it), so later symlink changes to the
    /// directory itself do not move the mapping.
    pub fn new(entries: &[(String, PathBuf)]) -> Result<StaticMap, StaticError> {
        let mut map = StaticMap::default();
        map.add(entries, false)?;
        Ok(map)
    }

    /// Build from a vassal's config: `check-static`, `static-map`, `static-map2` (in
    /// that order, as uWSGI tries them), `static-index`, `static-gzip-all`,
    /// `static-expires-type`.
    pub fn from_config(
        config: &rsgi_proto::config::VassalConfig,
    ) -> Result<StaticMap, StaticError> {
        let mut map = StaticMap::default();
        let check: Vec<(String, PathBuf)> = config
            .check_static
            .iter()
            .map(|d| ("/".to_owned(), d.clone()))
            .collect();
        map.add(&check, true)?;
        map.add(&config.static_map, false)?;
        map.add(&config.static_map2, true)?;
        map.index = config.static_index.clone();
        map.gzip_all = config.static_gzip_all;
        let typed = config.static_expires_type.iter().map(|e| (e, false));
        let mtime = config.static_expires_type_mtime.iter().map(|e| (e, true));
        for ((mime, secs), from_mtime) in typed.chain(mtime) {
            let secs = secs
                .trim()
                .parse::<u64>()
                .map_err(|_| StaticError::Expires {
                    value: format!("{mime}={secs}"),
                })?;
            map.expires.push((mime.clone(), secs, from_mtime));
        }
        Ok(map)
    }

    fn add(&mut self, entries: &[(String, PathBuf)], keep_prefix: bool) -> Result<(), StaticError> {
        let out = &mut self.entries;
        for (prefix, dir) in entries {
            if !prefix.starts_with('/') {
                return Err(StaticError::BadPrefix {
                    prefix: prefix.clone(),
                });
            }
            let canonical = dir.canonicalize().map_err(|source| StaticError::Dir {
                prefix: prefix.clone(),
                dir: dir.clone(),
                source,
            })?;
            if !canonical.is_dir() {
                return Err(StaticError::NotADir {
                    prefix: prefix.clone(),
                    dir: dir.clone(),
                });
            }
            out.push(Mapping {
                prefix: prefix.trim_end_matches('/').as_bytes().to_vec(),
                dir: canonical,
                keep_prefix,
            });
        }
        Ok(())
    }

    /// True when no `static-map` is configured (then `lookup` always gives `None`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Given the decoded `PATH_INFO` bytes, find a file.
    ///
    /// `None`: no prefix matched, or no matching mapping has a regular file there; the
    /// request goes to the app. `Some(Found)`: serve the file. `Some(Forbidden)`: the path
    /// tries to escape its directory (see the module docs).
    pub fn lookup(&self, path_info: &[u8]) -> Option<Lookup> {
        self.lookup_for(path_info, false)
    }

    /// [`StaticMap::lookup`] for a request that accepts gzip (`accept_gzip`), which
    /// `static-gzip-all` serves `FILE.gz` to.
    pub fn lookup_for(&self, path_info: &[u8], accept_gzip: bool) -> Option<Lookup> {
        for m in &self.entries {
            let Some(rest) = path_info.strip_prefix(&m.prefix[..]) else {
                continue;
            };
            if !(rest.is_empty() || rest[0] == b'/') {
                continue;
            }
            let rest = if m.keep_prefix { path_info } else { rest };
            // `check-static` sees every request: one it cannot serve safely goes on to
            // the app rather than getting a 403.
            let everything = m.keep_prefix && m.prefix.is_empty();
            if rest.contains(&0) || rest.split(|&b| b == b'/').any(|seg| seg == b"..") {
                if everything {
                    continue;
                }
                return Some(Lookup::Forbidden);
            }
            // All leading slashes go: joining an absolute path would replace the dir.
            let rel = trim_leading_slashes(rest);
            if rel.is_empty() && self.index.is_empty() {
                // The mapped directory itself: no index files, fall through.
                continue;
            }
            let requested = m.dir.join(OsStr::from_bytes(rel));
            match self.resolve(&m.dir, &requested, accept_gzip) {
                Ok(Some(found)) => return Some(Lookup::Found(found)),
                Ok(None) => continue,
                Err(_) if everything => continue,
                Err(forbidden) => return Some(forbidden),
            }
        }
        None
    }

    /// The file `requested` names inside `dir` (its index file, for a directory; its
    /// `.gz` twin, with gzip): `Ok(None)` when there is none (try the next mapping),
    /// `Err(Forbidden)` when it leaves `dir` or cannot be read.
    fn resolve(
        &self,
        dir: &std::path::Path,
        requested: &std::path::Path,
        accept_gzip: bool,
    ) -> Result<Option<StaticFile>, Lookup> {
        let Some((canonical, meta)) = inside(dir, requested)? else {
            return Ok(None);
        };
        let (requested, canonical, meta) = if meta.is_dir() {
            let mut found = None;
            for name in &self.index {
                let candidate = canonical.join(name);
                if let Some((c, m)) = inside(dir, &candidate)? {
                    if m.is_file() {
                        found = Some((candidate, c, m));
                        break;
                    }
                }
            }
            match found {
                Some(f) => f,
                None => return Ok(None),
            }
        } else {
            (requested.to_path_buf(), canonical, meta)
        };
        if !meta.is_file() {
            return Ok(None);
        }
        let content_type = mime_guess::from_path(&requested)
            .first_raw()
            .unwrap_or(OCTET_STREAM);
        let expires = self
            .expires
            .iter()
            .find(|(t, _, _)| t == content_type)
            .map(|&(_, secs, mtime)| (secs, mtime));
        if self.gzip_all && accept_gzip {
            let mut gz = canonical.as_os_str().to_owned();
            gz.push(".gz");
            if let Some((c, m)) = inside(dir, std::path::Path::new(&gz))? {
                if m.is_file() {
                    return Ok(Some(StaticFile {
                        path: c,
                        len: m.len(),
                        modified: m.modified().unwrap_or(UNIX_EPOCH),
                        content_type,
                        gzip: true,
                        expires,
                    }));
                }
            }
        }
        Ok(Some(StaticFile {
            content_type,
            len: meta.len(),
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
            path: canonical,
            gzip: false,
            expires,
        }))
    }
}

/// The canonical path and metadata of `path` if it exists inside `dir`; `Ok(None)`
/// when it does not exist; `Err(Forbidden)` when it resolves outside `dir` or cannot
/// be read.
fn inside(
    dir: &std::path::Path,
    path: &std::path::Path,
) -> Result<Option<(PathBuf, std::fs::Metadata)>, Lookup> {
    let canonical = match path.canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(Lookup::Forbidden),
        // Missing, or a file used as a directory (ENOTDIR): try the next one.
        Err(_) => return Ok(None),
    };
    if !canonical.starts_with(dir) {
        return Err(Lookup::Forbidden);
    }
    match canonical.metadata() {
        Ok(meta) => Ok(Some((canonical, meta))),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Lookup::Forbidden),
        Err(_) => Ok(None),
    }
}

fn trim_leading_slashes(mut p: &[u8]) -> &[u8] {
    while let [b'/', rest @ ..] = p {
        p = rest;
    }
    p
}

/// Seconds since the epoch, clamped to what an HTTP-date can express (1970..=9999).
fn http_secs(t: SystemTime) -> u64 {
    /// 9999-12-31T23:59:59Z.
    const MAX: u64 = 253_402_300_799;
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(MAX))
}

/// Whether an If-Modified-Since header value means "not modified" for this mtime:
/// the file is no newer than the date, compared in whole seconds (HTTP-dates have no
/// fractions). An absent, non-UTF-8 or unparsable value means "modified" (send the
/// file), as RFC 9110 says to ignore an invalid date.
pub fn not_modified(if_modified_since: Option<&[u8]>, modified: SystemTime) -> bool {
    let Some(value) = if_modified_since else {
        return false;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    match httpdate::parse_http_date(value.trim()) {
        Ok(since) => http_secs(modified) <= http_secs(since),
        Err(_) => false,
    }
}

/// The Last-Modified header value (IMF-fixdate). Times before 1970 or after 9999, which
/// an HTTP-date cannot express, are clamped.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(http_secs(t)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A tree with two mapped dirs and things outside them:
    ///
    /// ```text
    /// root/secret.txt                      outside every mapping
    /// root/static/style.css                "body{}"
    /// root/static/app.js
    /// root/static/noext
    /// root/static/sub/deep.txt
    /// root/static/emptydir/
    /// root/static/link_in  -> style.css    symlink inside: fine
    /// root/static/link_out -> ../secret.txt
    /// root/static/dir_out  -> ..           symlinked dir outside
    /// root/static/sub/up   -> ../style.css still inside
    /// root/second/only2.txt
    /// root/second/style.css                shadowed by the first mapping
    /// root/linked -> static                the config may name a symlink
    /// ```
    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("static/sub")).unwrap();
        fs::create_dir_all(r.join("static/emptydir")).unwrap();
        fs::create_dir_all(r.join("second")).unwrap();
        fs::write(r.join("secret.txt"), "secret").unwrap();
        fs::write(r.join("static/style.css"), "body{}").unwrap();
        fs::write(r.join("static/app.js"), "1").unwrap();
        fs::write(r.join("static/noext"), "x").unwrap();
        fs::write(r.join("static/sub/deep.txt"), "deep").unwrap();
        fs::write(r.join("second/only2.txt"), "2").unwrap();
        fs::write(r.join("second/style.css"), "second").unwrap();
        symlink("style.css", r.join("static/link_in")).unwrap();
        symlink("../secret.txt", r.join("static/link_out")).unwrap();
        symlink("..", r.join("static/dir_out")).unwrap();
        symlink("../style.css", r.join("static/sub/up")).unwrap();
        symlink("static", r.join("linked")).unwrap();
        tmp
    }

    fn map(root: &Path, entries: &[(&str, &str)]) -> StaticMap {
        let entries: Vec<(String, PathBuf)> = entries
            .iter()
            .map(|(p, d)| (p.to_string(), root.join(d)))
            .collect();
        StaticMap::new(&entries).unwrap()
    }

    /// Expected outcome: Found(file relative to root, content type), Forbidden, or app.
    #[derive(Debug)]
    enum Want {
        Found(&'static str, &'static str),
        Forbidden,
        App,
    }

    fn check(m: &StaticMap, root: &Path, cases: &[(&[u8], Want)]) {
        let root = root.canonicalize().unwrap();
        for (path, want) in cases {
            let got = m.lookup(path);
            let shown = String::from_utf8_lossy(path);
            match (want, &got) {
                (Want::App, None) | (Want::Forbidden, Some(Lookup::Forbidden)) => {}
                (Want::Found(file, ctype), Some(Lookup::Found(f))) => {
                    let path = root.join(file);
                    assert_eq!(f.path, path, "{shown}");
                    assert_eq!(f.content_type, *ctype, "{shown}");
                    let meta = fs::metadata(&path).unwrap();
                    assert_eq!(f.len, meta.len(), "{shown}");
                    assert_eq!(f.modified, meta.modified().unwrap(), "{shown}");
                }
                _ => panic!("{shown}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn lookups() {
        let tmp = tree();
        let m = map(tmp.path(), &[("/static", "static"), ("/static/", "second")]);
        #[rustfmt::skip]
        check(&m, tmp.path(), &[
            (b"/static/style.css", Want::Found("static/style.css", "text/css")),
            (b"/static/app.js", Want::Found("static/app.js", "text/javascript")),
            (b"/static/noext", Want::Found("static/noext", OCTET_STREAM)),
            (b"/static/sub/deep.txt", Want::Found("static/sub/deep.txt", "text/plain")),
            (b"/static//sub//deep.txt", Want::Found("static/sub/deep.txt", "text/plain")),
            (b"/static/./sub/./deep.txt", Want::Found("static/sub/deep.txt", "text/plain")),
            // Falls through to the second mapping when the first lacks the file.
            (b"/static/only2.txt", Want::Found("second/only2.txt", "text/plain")),
            // Content type from the requested name, path from the target.
            (b"/static/link_in", Want::Found("static/style.css", OCTET_STREAM)),
            (b"/static/sub/up", Want::Found("static/style.css", OCTET_STREAM)),
            // Segment boundary.
            (b"/staticfoo/style.css", Want::App),
            (b"/stat", Want::App),
            (b"/other/style.css", Want::App),
            (b"/", Want::App),
            // Misses and directories go to the app.
            (b"/static", Want::App),
            (b"/static/", Want::App),
            (b"/static/missing.css", Want::App),
            (b"/static/sub", Want::App),
            (b"/static/emptydir/", Want::App),
            (b"/static/style.css/x", Want::App),
            // Escapes.
            (b"/static/../secret.txt", Want::Forbidden),
            (b"/static/sub/../style.css", Want::Forbidden),
            (b"/static/..", Want::Forbidden),
            (b"/static/style.css\0.png", Want::Forbidden),
            (b"/static/link_out", Want::Forbidden),
            (b"/static/dir_out/secret.txt", Want::Forbidden),
            // `..` inside a name is just a name.
            (b"/static/..hidden", Want::App),
            (b"/static/a..b", Want::App),
        ]);
    }

    #[test]
    fn non_utf8_names() {
        let tmp = tree();
        let name = OsStr::from_bytes(b"caf\xe9.txt");
        fs::write(tmp.path().join("static").join(name), "latin-1").unwrap();
        let m = map(tmp.path(), &[("/static", "static")]);
        match m.lookup(b"/static/caf\xe9.txt") {
            Some(Lookup::Found(f)) => assert_eq!(f.len, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn root_prefix_and_symlinked_dir() {
        let tmp = tree();
        let m = map(tmp.path(), &[("/", "linked")]);
        #[rustfmt::skip]
        check(&m, tmp.path(), &[
            (b"/style.css", Want::Found("static/style.css", "text/css")),
            (b"/sub/deep.txt", Want::Found("static/sub/deep.txt", "text/plain")),
            (b"/app/view", Want::App),
            (b"/", Want::App),
            (b"/../secret.txt", Want::Forbidden),
            (b"/link_out", Want::Forbidden),
        ]);
    }

    #[test]
    fn empty_map() {
        let m = StaticMap::new(&[]).unwrap();
        assert!(m.is_empty());
        assert_eq!(m.lookup(b"/static/x.css"), None);
        assert!(!map(tree().path(), &[("/s", "static")]).is_empty());
    }

    #[test]
    fn config_errors() {
        let tmp = tree();
        let missing = tmp.path().join("nope");
        let err = StaticMap::new(&[("/s".into(), missing.clone())]).unwrap_err();
        assert!(matches!(err, StaticError::Dir { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*missing.to_string_lossy()), "{msg}");
        assert!(msg.contains("/s"), "{msg}");

        let file = tmp.path().join("secret.txt");
        let err = StaticMap::new(&[("/s".into(), file)]).unwrap_err();
        assert!(matches!(err, StaticError::NotADir { .. }), "{err:?}");

        let err = StaticMap::new(&[("s".into(), tmp.path().into())]).unwrap_err();
        assert!(matches!(err, StaticError::BadPrefix { .. }), "{err:?}");
    }

    #[test]
    fn uwsgi_static_options() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (name, body) in [
            ("docroot/robots.txt", "r"),
            ("docroot/site/index.html", "i"),
            ("assets/assets/app.css", "css"),
            ("assets/assets/app.css.gz", "gz!"),
            ("assets/assets/plain.js", "js"),
            ("mapped/index.htm", "root index"),
        ] {
            let path = r.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, body).unwrap();
        }
        let config = rsgi_proto::config::VassalConfig {
            check_static: vec![r.join("docroot")],
            static_map: vec![("/m".to_owned(), r.join("mapped"))],
            static_map2: vec![("/assets".to_owned(), r.join("assets"))],
            static_index: vec!["index.html".to_owned(), "index.htm".to_owned()],
            static_gzip_all: true,
            static_expires_type: vec![("text/css".to_owned(), "60".to_owned())],
            ..Default::default()
        };
        let m = StaticMap::from_config(&config).unwrap();
        // (path, accept gzip, file name served (relative to root), gzip, expires)
        type Case = (
            &'static str,
            bool,
            Option<&'static str>,
            bool,
            Option<(u64, bool)>,
        );
        let cases: &[Case] = &[
            // check-static: the whole PATH_INFO under the docroot
            (
                "/robots.txt",
                false,
                Some("docroot/robots.txt"),
                false,
                None,
            ),
            // static-index in a directory
            ("/site", false, Some("docroot/site/index.html"), false, None),
            (
                "/site/",
                false,
                Some("docroot/site/index.html"),
                false,
                None,
            ),
            // the mapped directory itself, with the second index name
            ("/m", false, Some("mapped/index.htm"), false, None),
            // static-map2 keeps the prefix: /assets/app.css is DIR/assets/app.css
            (
                "/assets/app.css",
                false,
                Some("assets/assets/app.css"),
                false,
                Some((60, false)),
            ),
            // static-gzip-all: the .gz twin when the client accepts gzip
            (
                "/assets/app.css",
                true,
                Some("assets/assets/app.css.gz"),
                true,
                Some((60, false)),
            ),
            // no twin: the file itself
            (
                "/assets/plain.js",
                true,
                Some("assets/assets/plain.js"),
                false,
                None,
            ),
            ("/nothing", false, None, false, None),
            // check-static lets what it cannot serve safely through to the app
            ("/x/../robots.txt", false, None, false, None),
        ];
        for &(path, gzip, want, want_gzip, want_expires) in cases {
            let got = m.lookup_for(path.as_bytes(), gzip);
            match (got, want) {
                (Some(Lookup::Found(f)), Some(name)) => {
                    assert_eq!(f.path, r.join(name).canonicalize().unwrap(), "{path}");
                    assert_eq!(f.gzip, want_gzip, "{path}");
                    assert_eq!(f.expires, want_expires, "{path}");
                    if gzip && want_gzip {
                        assert_eq!(f.content_type, "text/css", "{path}");
                        assert_eq!(f.len, 3, "{path}");
                    }
                }
                (None, None) => {}
                (got, want) => panic!("{path}: {got:?}, wanted {want:?}"),
            }
        }
        let bad = rsgi_proto::config::VassalConfig {
            static_expires_type: vec![("text/css".to_owned(), "soon".to_owned())],
            ..Default::default()
        };
        let err = StaticMap::from_config(&bad).unwrap_err().to_string();
        assert!(err.contains("text/css=soon"), "{err}");
    }

    #[test]
    fn not_modified_table() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = http_date(t);
        assert_eq!(date, "Tue, 14 Nov 2023 22:13:20 GMT");
        let later = http_date(t + Duration::from_secs(1));
        let earlier = http_date(t - Duration::from_secs(1));
        let subsec = t + Duration::from_millis(999);
        let cases: &[(Option<&[u8]>, SystemTime, bool)] = &[
            (None, t, false),
            (Some(date.as_bytes()), t, true),
            (Some(date.as_bytes()), subsec, true),
            (Some(later.as_bytes()), t, true),
            (Some(earlier.as_bytes()), t, false),
            (Some(b" Tue, 14 Nov 2023 22:13:20 GMT "), t, true),
            (Some(b"Tuesday, 14-Nov-23 22:13:20 GMT"), t, true),
            (Some(b"Tue Nov 14 22:13:20 2023"), t, true),
            (Some(b"garbage"), t, false),
            (Some(b""), t, false),
            (Some(b"Tue, 14 Nov 2023 22:13:20 GMT\xff"), t, false),
            (
                Some(date.as_bytes()),
                UNIX_EPOCH - Duration::from_secs(5),
                true,
            ),
        ];
        for (header, mtime, want) in cases {
            assert_eq!(
                not_modified(*header, *mtime),
                *want,
                "{:?} vs {mtime:?}",
                header.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn http_date_clamps() {
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(10)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(400_000_000_000)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }
}
