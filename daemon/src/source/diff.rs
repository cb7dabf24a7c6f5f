//! Pure rules of an etcd source: which keys under a prefix are vassals ([`plan`]) and
//! what must change in the local copy to match a new view of the store ([`diff`]).
//!
//! A full read, a watch batch and a re-read after a compaction all end the same way:
//! the source holds every key under its prefix ([`Kvs`]), [`plan`] turns them into the
//! vassal files it wants, and [`diff`] against what the local copy holds says which
//! files to write and which to remove. Nothing else touches the local copy, so an
//! error (no answer, a cut connection, a compacted revision) can never look like an
//! empty set: it changes no [`Kvs`] at all.

use std::collections::BTreeMap;

use crate::scan::{vassal_name, VassalName};

/// One key's value as the source last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key's last modification revision.
    pub mod_revision: i64,
    /// The value (the vassal file's text).
    pub value: Vec<u8>,
}

/// Every key under a prefix, by full key.
pub type Kvs = BTreeMap<String, Kv>;

/// One vassal file the source wants in its local copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The etcd key it comes from.
    pub key: String,
    /// The key's modification revision.
    pub mod_revision: i64,
    /// The file's text.
    pub value: Vec<u8>,
}

/// What a key under the prefix means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// A vassal: its file name in the local copy (`app.ini`, `app.xml`) and its name.
    Vassal(String, VassalName),
    /// Not a vassal, with the reason (worth a warning).
    Ignored(&'static str),
}

/// What the key `key` under `prefix` (which ends with `/`) is.
///
/// Keys directly under the prefix are vassals: `PREFIX/app.ini` (ini), `PREFIX/app.xml`
/// (XML) and `PREFIX/app` (no suffix: ini) are the vassal `app`. Deeper keys
/// (`PREFIX/a/b.ini`) are not vassals; nor are names a vassal directory would refuse
/// (hidden, editor leftovers, other suffixes than `.ini`/`.xml`, invalid names).
pub fn key_use(prefix: &str, key: &str) -> KeyUse {
    let Some(rest) = key.strip_prefix(prefix) else {
        return KeyUse::Ignored("not under the prefix");
    };
    if rest.is_empty() {
        return KeyUse::Ignored("the prefix itself");
    }
    if rest.contains('/') {
        return KeyUse::Ignored("deeper than one level under the prefix");
    }
    let file = if rest.ends_with(".ini") || rest.ends_with(".xml") || rest.contains('.') {
        rest.to_owned()
    } else {
        format!("{rest}.ini")
    };
    match vassal_name(&file) {
        Some((name, _)) => KeyUse::Vassal(file, name),
        None => KeyUse::Ignored(crate::scan::why_ignored(&file).unwrap_or("not a vassal name")),
    }
}

/// The vassal files `kvs` stand for, by file name, and the keys that are not vassals
/// (with why). Two keys for one file (`PREFIX/app` and `PREFIX/app.ini`): the key with
/// the suffix wins and the other is listed as ignored.
pub fn plan(prefix: &str, kvs: &Kvs) -> (BTreeMap<String, Entry>, Vec<(String, &'static str)>) {
    let mut files: BTreeMap<String, Entry> = BTreeMap::new();
    let mut ignored = Vec::new();
    for (key, kv) in kvs {
        match key_use(prefix, key) {
            KeyUse::Ignored(why) => {
                // Deeper keys are a documented feature (room for other data), not noise.
                if why != "deeper than one level under the prefix" {
                    ignored.push((key.clone(), why));
                }
            }
            KeyUse::Vassal(file, _) => {
                let entry = Entry {
                    key: key.clone(),
                    mod_revision: kv.mod_revision,
                    value: kv.value.clone(),
                };
                match files.get(&file) {
                    // The exact file name beats the suffix-less key.
                    Some(old) if old.key.ends_with(&file) => {
                        ignored.push((key.clone(), "another key names the same vassal file"));
                    }
                    Some(old) => {
                        ignored.push((old.key.clone(), "another key names the same vassal file"));
                        files.insert(file, entry);
                    }
                    None => {
                        files.insert(file, entry);
                    }
                }
            }
        }
    }
    (files, ignored)
}

/// One change to the local copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write this file (new, or other bytes).
    Write(String),
    /// Remove this file.
    Remove(String),
}

/// What turns the local copy `have` into `want`: files whose bytes differ (or are new)
/// are written, files no longer wanted removed. A new revision with the same bytes is
/// no write (it changes no vassal; `rsgictl reload` reloads one on purpose).
pub fn diff(have: &BTreeMap<String, Entry>, want: &BTreeMap<String, Entry>) -> Vec<Op> {
    let mut ops: Vec<Op> = have
        .keys()
        .filter(|f| !want.contains_key(*f))
        .map(|f| Op::Remove(f.clone()))
        .collect();
    for (file, entry) in want {
        if have.get(file).is_none_or(|old| old.value != entry.value) {
            ops.push(Op::Write(file.clone()));
        }
    }
    ops
}

/// Apply one watch event to `kvs`: a put (`Some(kv)`) or a delete (`None`).
pub fn apply_event(kvs: &mut Kvs, key: &str, kv: Option<Kv>) {
    match kv {
        Some(kv) => {
            kvs.insert(key.to_owned(), kv);
        }
        None => {
            kvs.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kv(rev: i64, v: &str) -> Kv {
        Kv {
            mod_revision: rev,
            value: v.as_bytes().to_vec(),
        }
    }

    fn entry(key: &str, rev: i64, v: &str) -> Entry {
        Entry {
            key: key.into(),
            mod_revision: rev,
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn key_use_table() {
        let p = "/rsgi/all/";
        let cases: &[(&str, Option<&str>)] = &[
            ("/rsgi/all/app.ini", Some("app.ini")),
            ("/rsgi/all/app.xml", Some("app.xml")),
            ("/rsgi/all/app", Some("app.ini")),
            ("/rsgi/all/my-app_2", Some("my-app_2.ini")),
            ("/rsgi/all/", None),
            ("/rsgi/all/x/app.ini", None),
            ("/rsgi/all/.hidden.ini", None),
            ("/rsgi/all/app.ini~", None),
            ("/rsgi/all/app.json", None),
            ("/rsgi/all/a b.ini", None),
            ("/rsgi/other/app.ini", None),
        ];
        for (key, want) in cases {
            let got = match key_use(p, key) {
                KeyUse::Vassal(f, n) => {
                    assert_eq!(
                        f.trim_end_matches(".ini").trim_end_matches(".xml"),
                        n.as_str()
                    );
                    Some(f)
                }
                KeyUse::Ignored(_) => None,
            };
            assert_eq!(got.as_deref(), *want, "{key}");
        }
    }

    #[test]
    fn plan_table() {
        let p = "/r/";
        let kvs: Kvs = [
            ("/r/a.ini", kv(5, "A")),
            ("/r/b", kv(6, "B")),
            ("/r/c", kv(7, "C0")),
            ("/r/c.ini", kv(8, "C1")),
            ("/r/deep/x.ini", kv(9, "X")),
            ("/r/.h.ini", kv(10, "H")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let (files, ignored) = plan(p, &kvs);
        let got: Vec<(&str, &str, i64)> = files
            .iter()
            .map(|(f, e)| (f.as_str(), e.key.as_str(), e.mod_revision))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.ini", "/r/a.ini", 5),
                ("b.ini", "/r/b", 6),
                ("c.ini", "/r/c.ini", 8),
            ]
        );
        let ignored: Vec<&str> = ignored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(ignored, vec!["/r/.h.ini", "/r/c"]);
    }

    #[test]
    fn diff_table() {
        let m = |es: &[(&str, Entry)]| -> BTreeMap<String, Entry> {
            es.iter().map(|(f, e)| (f.to_string(), e.clone())).collect()
        };
        let a1 = entry("/r/a.ini", 1, "A");
        let a2_same = entry("/r/a.ini", 2, "A");
        let a3_new = entry("/r/a.ini", 3, "A'");
        let b = entry("/r/b.ini", 4, "B");
        type Case = (BTreeMap<String, Entry>, BTreeMap<String, Entry>, Vec<Op>);
        let cases: Vec<Case> = vec![
            // nothing to nothing
            (m(&[]), m(&[]), vec![]),
            // a new key
            (
                m(&[]),
                m(&[("a.ini", a1.clone())]),
                vec![Op::Write("a.ini".into())],
            ),
            // the same bytes at a new revision: no write
            (
                m(&[("a.ini", a1.clone())]),
                m(&[("a.ini", a2_same)]),
                vec![],
            ),
            // new bytes
            (
                m(&[("a.ini", a1.clone())]),
                m(&[("a.ini", a3_new)]),
                vec![Op::Write("a.ini".into())],
            ),
            // a deleted key; another added
            (
                m(&[("a.ini", a1.clone())]),
                m(&[("b.ini", b.clone())]),
                vec![Op::Remove("a.ini".into()), Op::Write("b.ini".into())],
            ),
            // everything deleted in the store is an empty want (not an error)
            (
                m(&[("a.ini", a1), ("b.ini", b)]),
                m(&[]),
                vec![Op::Remove("a.ini".into()), Op::Remove("b.ini".into())],
            ),
        ];
        for (i, (have, want, ops)) in cases.into_iter().enumerate() {
            assert_eq!(diff(&have, &want), ops, "case {i}");
        }
    }

    #[test]
    fn events_update_the_key_set() {
        let mut kvs = Kvs::new();
        apply_event(&mut kvs, "/r/a.ini", Some(kv(2, "A")));
        apply_event(&mut kvs, "/r/b.ini", Some(kv(3, "B")));
        apply_event(&mut kvs, "/r/a.ini", None);
        apply_event(&mut kvs, "/r/zz.ini", None);
        assert_eq!(kvs.keys().collect::<Vec<_>>(), vec!["/r/b.ini"]);
    }
}
