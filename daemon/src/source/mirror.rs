//! The last-known-good copy of a remote source on local disk: one directory per source
//! holding one vassal file per key (the files `rsgi` is started with), and a hidden
//! `.state.json` with the revision applied and each file's key and mod revision.
//!
//! Every write is atomic (a hidden temp file, `fsync`, `rename`), so the actor's scans
//! and a crash at any moment see either the old or the new file, never half of one.
//! rsgid started while the store is down scans this directory like any vassal
//! directory and runs the last known set.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diff::{Entry, Op};

/// What `.state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorState {
    /// The source it mirrors (its URL, for people reading the directory).
    pub source: String,
    /// The store's revision the copy reflects (0: never synced).
    pub revision: i64,
    /// Each file's origin: file name -> (key, mod revision).
    pub files: BTreeMap<String, (String, i64)>,
}

/// Why the local copy could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct MirrorError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError {
        path: path.to_path_buf(),
        source,
    }
}

/// One source's local copy.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    state: MirrorState,
    /// The files as the copy holds them (loaded at start, kept in step with writes).
    entries: BTreeMap<String, Entry>,
}

impl Mirror {
    /// Open (or create) the copy in `dir` for `source`.
    pub fn open(dir: &Path, source: &str) -> Result<Mirror, MirrorError> {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let state_path = dir.join(".state.json");
        let mut state: MirrorState = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %state_path.display(), "unreadable, starting from the files alone: {e}");
                MirrorState::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MirrorState::default(),
            Err(e) => return Err(at(&state_path)(e)),
        };
        state.source = source.to_owned();
        let mut entries = BTreeMap::new();
        for dirent in std::fs::read_dir(dir).map_err(at(dir))? {
            let dirent = dirent.map_err(at(dir))?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            if crate::scan::vassal_name(&name).is_none() {
                continue;
            }
            let value = std::fs::read(dirent.path()).map_err(at(&dirent.path()))?;
            let (key, mod_revision) = state.files.get(&name).cloned().unwrap_or_default();
            entries.insert(
                name,
                Entry {
                    key,
                    mod_revision,
                    value,
                },
            );
        }
        state.files.retain(|f, _| entries.contains_key(f));
        Ok(Mirror {
            dir: dir.to_path_buf(),
            state,
            entries,
        })
    }

    /// The directory (what the actor scans).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The revision the copy reflects (0: never synced).
    pub fn revision(&self) -> i64 {
        self.state.revision
    }

    /// The files the copy holds.
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// Make the copy hold `want` at `revision`: write the files `ops` name (from
    /// [`super::diff::diff`]), remove the others, then the state file. Returns whether
    /// a vassal file changed.
    pub fn apply(
        &mut self,
        ops: &[Op],
        want: &BTreeMap<String, Entry>,
        revision: i64,
    ) -> Result<bool, MirrorError> {
        for op in ops {
            match op {
                Op::Write(file) => {
                    if let Some(e) = want.get(file) {
                        write_atomic(&self.dir, file, &e.value)?;
                    }
                }
                Op::Remove(file) => {
                    let path = self.dir.join(file);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(at(&path)(e)),
                    }
                }
            }
        }
        let files: BTreeMap<String, (String, i64)> = want
            .iter()
            .map(|(f, e)| (f.clone(), (e.key.clone(), e.mod_revision)))
            .collect();
        if !ops.is_empty() || files != self.state.files || revision != self.state.revision {
            self.state.files = files;
            self.state.revision = revision;
            let json = serde_json::to_vec_pretty(&self.state)
                .map_err(|e| at(&self.dir)(std::io::Error::other(e)))?;
            write_atomic(&self.dir, ".state.json", &json)?;
        }
        self.entries = want.clone();
        Ok(!ops.is_empty())
    }
}

/// Write `dir/file` atomically: `dir/.file.tmp`, fsync, rename.
fn write_atomic(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), MirrorError> {
    let tmp = dir.join(format!(".{file}.tmp"));
    let path = dir.join(file);
    let mut f = std::fs::File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(at(&path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::source::diff::diff;

    fn e(key: &str, rev: i64, v: &str) -> Entry {
        Entry {
            key: key.into(),
            mod_revision: rev,
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_copy_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        let mut m = Mirror::open(&dir, "etcd://x/p/").unwrap();
        assert_eq!(m.revision(), 0);
        let want: BTreeMap<String, Entry> = [("a.ini".to_string(), e("/p/a.ini", 7, "[uwsgi]\n"))]
            .into_iter()
            .collect();
        let ops = diff(m.entries(), &want);
        assert!(m.apply(&ops, &want, 9).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("a.ini")).unwrap(),
            "[uwsgi]\n"
        );
        // No temp file left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");

        let again = Mirror::open(&dir, "etcd://x/p/").unwrap();
        assert_eq!(again.revision(), 9);
        assert_eq!(again.entries(), &want);

        // Removing it.
        let mut m = again;
        let none = BTreeMap::new();
        let ops = diff(m.entries(), &none);
        assert!(m.apply(&ops, &none, 10).unwrap());
        assert!(!dir.join("a.ini").exists());
        assert_eq!(Mirror::open(&dir, "s").unwrap().revision(), 10);
    }
}
