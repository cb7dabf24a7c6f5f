//! Vassal sources: where vassal files come from (a directory, or a prefix in etcd v3),
//! and the pure rule that merges every source's files into the one set the actor diffs.
//!
//! Every source ends up as a directory the actor scans: a directory source is itself;
//! a remote source ([`etcd`]) keeps a last-known-good copy of its keys on local disk
//! ([`mirror`]), one vassal file per key, updated atomically from a full read and a
//! watch, and tells the actor when it changed (and how the source is: up, stale,
//! unreachable) with [`crate::msg::Msg::Source`]. So every vassal, wherever it comes
//! from, goes through the same scan, diff, lifecycle and health-gated reload, and
//! `rsgi` is started with a real file, as always.
//!
//! [`merge`] is the pure rule over the sources' scans: a source that cannot be read
//! keeps its vassals as they are (an error is never an empty set), and a name that two
//! sources give stays with the source that had it first; the other is refused with a
//! message naming both.

pub mod diff;
pub mod etcd;
pub mod mirror;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::scan::{Scan, VassalFile, VassalName};

/// One `--vassals` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A directory of vassal files.
    Dir(PathBuf),
    /// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX/`.
    Etcd(EtcdUrl),
}

/// A parsed `etcd://` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `HOST:PORT` endpoints, tried in turn.
    pub endpoints: Vec<String>,
    /// The key prefix, starting and ending with `/`.
    pub prefix: String,
}

impl std::fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Dir(d) => write!(f, "{}", d.display()),
            SourceSpec::Etcd(u) => u.fmt(f),
        }
    }
}

/// Parse a `--vassals` value: `etcd://...` or a directory.
pub fn parse_source(s: &str) -> Result<SourceSpec, String> {
    let Some(rest) = s.strip_prefix("etcd://") else {
        if s.contains("://") {
            return Err(format!(
                "{s:?}: not a directory or an etcd://HOST:PORT/PREFIX/ source"
            ));
        }
        return Ok(SourceSpec::Dir(PathBuf::from(s)));
    };
    let Some(slash) = rest.find('/') else {
        return Err(format!(
            "{s:?}: no key prefix (etcd://HOST:PORT[,HOST:PORT...]/PREFIX/)"
        ));
    };
    let (hosts, prefix) = rest.split_at(slash);
    let mut endpoints = Vec::new();
    for h in hosts.split(',') {
        let Some((host, port)) = h.rsplit_once(':') else {
            return Err(format!("{s:?}: endpoint {h:?} needs HOST:PORT"));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("{s:?}: endpoint {h:?} needs HOST:PORT"));
        }
        endpoints.push(h.to_owned());
    }
    if prefix.len() < 2 || !prefix.ends_with('/') {
        return Err(format!(
            "{s:?}: the prefix must be a non-empty path ending with '/' (e.g. /rsgi/all/)"
        ));
    }
    if prefix.contains("//") {
        return Err(format!("{s:?}: the prefix has an empty path segment"));
    }
    Ok(SourceSpec::Etcd(EtcdUrl {
        endpoints,
        prefix: prefix.to_owned(),
    }))
}

/// A directory name for a source's local copy: readable, and unique per URL
/// (`etcd-rsgi-all-1f2e3d4c5b6a7988`).
pub fn mirror_dir_name(url: &EtcdUrl) -> String {
    let readable: String = url
        .prefix
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let hash = crate::scan::Fingerprint::of(url.to_string().as_bytes(), 0).hash;
    format!("etcd-{readable}-{hash:016x}")
}

/// A source as the actor sees it: a directory to scan, and what to say about it.
#[derive(Debug, Clone)]
pub struct SourceDir {
    /// How the source is named in messages, `rsgictl list` and metric labels.
    pub label: String,
    /// The directory the actor scans (for an etcd source: its local copy).
    pub dir: PathBuf,
    /// `dir` or `etcd`.
    pub kind: &'static str,
}

/// A remote source's state, as it reports it to the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// Which source (its index in the actor's list).
    pub index: usize,
    /// `up` (synced and watching), `stale` (serving the local copy, never synced since
    /// start), `unreachable` (was up; retrying).
    pub state: &'static str,
    /// The store revision the local copy reflects.
    pub revision: i64,
    /// Errors so far (failed requests, broken watches).
    pub errors: u64,
    /// The last error, while not up.
    pub message: Option<String>,
    /// The endpoint (`HOST:PORT`) it is in step through, while up.
    pub endpoint: Option<String>,
    /// Each vassal's key and mod revision.
    pub keys: BTreeMap<VassalName, (String, i64)>,
    /// Whether vassal files changed (the actor rescans).
    pub changed: bool,
}

/// A name given by two sources: `loser` is refused while `winner` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The vassal name.
    pub name: VassalName,
    /// The source that keeps it.
    pub winner: usize,
    /// The source refused.
    pub loser: usize,
}

/// The merged view of every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The vassals, by name.
    pub files: BTreeMap<VassalName, VassalFile>,
    /// Which source each vassal comes from.
    pub origin: BTreeMap<VassalName, usize>,
    /// Names refused because another source has them.
    pub collisions: Vec<Collision>,
}

/// Merge the sources' scans (in source order; `Err` for a source that could not be
/// read) given what runs now (`current`: each vassal's file and source).
///
/// A source that could not be read keeps every vassal it had (an error is never an
/// empty set). A name in two sources stays with the source that has it now; when
/// neither has it yet, with the earlier source. The other is a [`Collision`].
pub fn merge(
    scans: &[Result<Scan, String>],
    current: &BTreeMap<VassalName, (usize, VassalFile)>,
) -> Merged {
    let mut out = Merged::default();
    // Every source's candidate files.
    let mut candidates: BTreeMap<VassalName, Vec<(usize, VassalFile)>> = BTreeMap::new();
    for (i, scan) in scans.iter().enumerate() {
        match scan {
            Ok(scan) => {
                for (name, file) in &scan.files {
                    candidates
                        .entry(name.clone())
                        .or_default()
                        .push((i, file.clone()));
                }
            }
            Err(_) => {
                for (name, (src, file)) in current {
                    if *src == i {
                        candidates
                            .entry(name.clone())
                            .or_default()
                            .push((i, file.clone()));
                    }
                }
            }
        }
    }
    for (name, mut list) in candidates {
        let owner = current.get(&name).map(|(src, _)| *src);
        // The current owner first, then source order.
        list.sort_by_key(|(src, _)| (Some(*src) != owner, *src));
        let mut it = list.into_iter();
        let Some((winner, file)) = it.next() else {
            continue;
        };
        for (loser, _) in it {
            out.collisions.push(Collision {
                name: name.clone(),
                winner,
                loser,
            });
        }
        out.origin.insert(name.clone(), winner);
        out.files.insert(name, file);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::scan::{FileKind, Fingerprint};

    #[test]
    fn parse_source_table() {
        let ok: &[(&str, &[&str], &str)] = &[
            (
                "etcd://127.0.0.1:2379/rsgi/all/",
                &["127.0.0.1:2379"],
                "/rsgi/all/",
            ),
            ("etcd://a:1,b:2/p/", &["a:1", "b:2"], "/p/"),
            ("etcd://[::1]:2379/p/", &["[::1]:2379"], "/p/"),
        ];
        for (s, eps, prefix) in ok {
            match parse_source(s) {
                Ok(SourceSpec::Etcd(u)) => {
                    assert_eq!(u.endpoints, *eps, "{s}");
                    assert_eq!(u.prefix, *prefix, "{s}");
                    assert_eq!(u.to_string(), *s);
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(
            parse_source("/etc/rsgi/vassals"),
            Ok(SourceSpec::Dir("/etc/rsgi/vassals".into()))
        );
        for bad in [
            "etcd://host/p/",
            "etcd://host:2379",
            "etcd://host:2379/p",
            "etcd://host:2379/",
            "etcd://host:x/p/",
            "etcd://:2379/p/",
            "etcd://h:1/a//b/",
            "http://h:1/p/",
        ] {
            let e = parse_source(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn mirror_dir_names_are_readable_and_unique() {
        let a = EtcdUrl {
            endpoints: vec!["h:1".into()],
            prefix: "/rsgi/all/".into(),
        };
        let b = EtcdUrl {
            endpoints: vec!["h:2".into()],
            prefix: "/rsgi/all/".into(),
        };
        assert!(mirror_dir_name(&a).starts_with("etcd-rsgi-all-"));
        assert_ne!(mirror_dir_name(&a), mirror_dir_name(&b));
    }

    fn file(dir: &str, name: &str, content: &str) -> (VassalName, VassalFile) {
        let n = VassalName::new(name).unwrap();
        (
            n.clone(),
            VassalFile {
                name: n,
                path: PathBuf::from(format!("{dir}/{name}.ini")),
                kind: FileKind::Ini,
                fingerprint: Fingerprint::of(content.as_bytes(), 0),
                problem: None,
            },
        )
    }

    fn scan(files: &[&(VassalName, VassalFile)]) -> Result<Scan, String> {
        Ok(Scan {
            files: files.iter().map(|f| (*f).clone()).collect(),
            ..Scan::default()
        })
    }

    fn origins(m: &Merged) -> Vec<(String, usize)> {
        m.origin.iter().map(|(n, i)| (n.to_string(), *i)).collect()
    }

    #[test]
    fn merge_table() {
        let a0 = file("/d0", "a", "x");
        let a1 = file("/d1", "a", "y");
        let b1 = file("/d1", "b", "z");
        let none = BTreeMap::new();

        // Disjoint sources: everything, each from its source.
        let m = merge(&[scan(&[&a0]), scan(&[&b1])], &none);
        assert_eq!(origins(&m), vec![("a".into(), 0), ("b".into(), 1)]);
        assert!(m.collisions.is_empty());

        // The same name in both, nobody has it yet: the earlier source wins.
        let m = merge(&[scan(&[&a0]), scan(&[&a1])], &none);
        assert_eq!(origins(&m), vec![("a".into(), 0)]);
        assert_eq!(m.files[&a0.0].path, a0.1.path);
        assert_eq!(
            m.collisions,
            vec![Collision {
                name: a0.0.clone(),
                winner: 0,
                loser: 1
            }]
        );

        // Source 1 had it first (source 0 added it later): source 1 keeps it.
        let current: BTreeMap<_, _> = [(a1.0.clone(), (1, a1.1.clone()))].into_iter().collect();
        let m = merge(&[scan(&[&a0]), scan(&[&a1])], &current);
        assert_eq!(origins(&m), vec![("a".into(), 1)]);
        assert_eq!(m.collisions[0].winner, 1);
        assert_eq!(m.collisions[0].loser, 0);

        // A source that cannot be read keeps its vassals as they are.
        let current: BTreeMap<_, _> = [
            (a0.0.clone(), (0, a0.1.clone())),
            (b1.0.clone(), (1, b1.1.clone())),
        ]
        .into_iter()
        .collect();
        let m = merge(&[scan(&[]), Err("gone".into())], &current);
        assert_eq!(origins(&m), vec![("b".into(), 1)]);
        assert_eq!(m.files[&b1.0], b1.1);

        // Both unreadable: nothing changes at all.
        let m = merge(&[Err("x".into()), Err("y".into())], &current);
        assert_eq!(origins(&m), vec![("a".into(), 0), ("b".into(), 1)]);
    }
}
