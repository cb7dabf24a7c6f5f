//! The vassal directory: which files are vassals, what they look like now, and what
//! changed since the last look.
//!
//! [`scan`] is the only I/O here: it lists the directory once and fingerprints every
//! vassal file. [`diff`] compares two scans and is pure, so the emperor can call it
//! after every inotify batch and on the periodic rescan alike (inotify can overflow,
//! files arrive by rename, symlink or editor swap; a full rescan is always right).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rsgi_proto::bounds::Included;

/// A vassal's name: the file stem of its config file (`mysite.ini` -> `mysite`).
///
/// Valid names are non-empty, do not start with `.`, and consist of printable ASCII
/// other than `/` (letters, digits and punctuation such as `-`, `_`, `.`): the name
/// goes into socket paths (`/run/rsgi/<name>.sock`), log fields and metric labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VassalName(String);

/// Why a string is not a valid [`VassalName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid vassal name {name:?}: {reason}")]
pub struct InvalidName {
    /// The rejected name.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

impl VassalName {
    /// Validate a name.
    pub fn new(name: &str) -> Result<VassalName, InvalidName> {
        match name_problem(name) {
            None => Ok(VassalName(name.to_owned())),
            Some(reason) => Err(InvalidName {
                name: name.to_owned(),
                reason,
            }),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VassalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VassalName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for VassalName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<VassalName, InvalidName> {
        VassalName::new(s)
    }
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name is empty")
    } else if name.starts_with('.') {
        Some("the name starts with '.'")
    } else if name.contains('/') {
        Some("the name contains '/'")
    } else if !name.bytes().all(|b| b.is_ascii_graphic()) {
        Some("the name has a space, a control or a non-ASCII character")
    } else {
        None
    }
}

/// The config format of a vassal file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `*.ini`: the uWSGI ini dialect.
    Ini,
    /// `*.xml`: uWSGI's XML form.
    Xml,
}

/// What a vassal file looks like now. Whether two differ is [`Fingerprint::changed`]'s
/// rule: new bytes reload; so does a bare `touch` (same file, new mtime: as in uWSGI);
/// the same bytes in another file (a Kubernetes ConfigMap's `..data` swap, git-sync, an
/// editor's save that changed nothing) do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Modification time in nanoseconds since the epoch (of the target of a symlink).
    pub mtime_ns: i128,
    /// Size in bytes.
    pub len: u64,
    /// FNV-1a (64 bit) of the content: stable across runs and Rust versions.
    pub hash: u64,
    /// Device and inode of the file read (the target of a symlink); 0 when unknown.
    pub file_id: (u64, u64),
}

impl Fingerprint {
    /// Fingerprint `content` with the given mtime (file identity unknown).
    pub fn of(content: &[u8], mtime_ns: i128) -> Fingerprint {
        Fingerprint {
            mtime_ns,
            len: content.len() as u64,
            hash: fnv1a(content),
            file_id: (0, 0),
        }
    }

    /// Whether the two bytes-for-bytes hold the same content.
    pub fn same_content(&self, other: &Fingerprint) -> bool {
        self.len == other.len && self.hash == other.hash
    }

    /// Whether going from `self` to `now` is a change of the vassal: other bytes, or the
    /// same file touched (new mtime). The same bytes in another file are no change.
    pub fn changed(&self, now: &Fingerprint) -> bool {
        if !self.same_content(now) {
            return true;
        }
        self.file_id == now.file_id && self.mtime_ns != now.mtime_ns
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// One vassal file found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VassalFile {
    /// The vassal's name (file stem).
    pub name: VassalName,
    /// The path as found in the directory (symlinks not resolved).
    pub path: PathBuf,
    /// Ini or XML.
    pub kind: FileKind,
    /// What it looks like now.
    pub fingerprint: Fingerprint,
    /// Why it cannot be read, when it cannot (a symlink loop, no permission, not a
    /// regular file, too large): the vassal shows as failed with this reason, and
    /// every other entry goes on. Its fingerprint then comes from the reason.
    pub problem: Option<String>,
}

/// The result of one [`scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The vassals, by name.
    pub files: BTreeMap<VassalName, VassalFile>,
    /// Files that lost to another file of the same name (`app.xml` when `app.ini`
    /// exists): worth a warning, never a vassal.
    pub conflicts: Vec<PathBuf>,
    /// Entries named like a vassal (`*.ini`/`*.xml`, not hidden) that are still not
    /// one, with the reason: a bad name, a dangling symlink, a directory. Dotfiles,
    /// editor leftovers and other files are not listed.
    pub ignored: Vec<(PathBuf, &'static str)>,
}

/// Why a directory entry is not a vassal, or `None` when it is one.
///
/// Vassals are `*.ini` and `*.xml` (case-sensitive, as in uWSGI: `app.INI` is not one,
/// so `app.ini` and `app.INI` never compete for the name `app`). Ignored: dotfiles
/// (which covers `.app.ini.swp` and Emacs' `.#app.ini` locks), backups `*~`, Vim swap
/// files `*.swp`/`*.swx`, Emacs autosaves `#app.ini#`, `*.tmp`, any other extension,
/// and stems that are not a valid [`VassalName`] (`a b.ini`).
pub fn why_ignored(file_name: &str) -> Option<&'static str> {
    classify(file_name).err()
}

/// The vassal name and kind of a directory entry, or `None` if it is not a vassal
/// (see [`why_ignored`]).
pub fn vassal_name(file_name: &str) -> Option<(VassalName, FileKind)> {
    classify(file_name).ok()
}

fn classify(file_name: &str) -> Result<(VassalName, FileKind), &'static str> {
    if file_name.starts_with('.') {
        return Err("hidden file");
    }
    if file_name.ends_with('~') {
        return Err("editor backup file");
    }
    if file_name.ends_with(".swp") || file_name.ends_with(".swx") {
        return Err("editor swap file");
    }
    if file_name.len() > 1 && file_name.starts_with('#') && file_name.ends_with('#') {
        return Err("editor autosave file");
    }
    if file_name.ends_with(".tmp") {
        return Err("temporary file");
    }
    let (stem, kind) = if let Some(stem) = file_name.strip_suffix(".ini") {
        (stem, FileKind::Ini)
    } else if let Some(stem) = file_name.strip_suffix(".xml") {
        (stem, FileKind::Xml)
    } else {
        return Err("not a .ini or .xml file");
    };
    match VassalName::new(stem) {
        Ok(name) => Ok((name, kind)),
        Err(e) => Err(e.reason),
    }
}

/// The largest vassal file rsgid reads (every config file's cap,
/// [`rsgi_proto::bounds::Limits::DEFAULT`]): a vassal file is a few hundred bytes; a huge
/// one is a mistake (or an attack), and fingerprinting it on every scan would burn CPU.
pub const MAX_FILE: u64 = rsgi_proto::bounds::Limits::DEFAULT.file_bytes;

/// Read the vassal directory (not recursive).
///
/// Symlinks are followed (a dangling one is a vassal with a problem, so that a link
/// that dangles for a moment retires nothing); directories are skipped; every vassal file is read to
/// fingerprint it. When `app.ini` and `app.xml` both exist, `.ini` wins and the other
/// is listed in [`Scan::conflicts`]. A file that vanishes between the listing and the
/// read is skipped. An entry that cannot be read (a symlink loop, no permission, a FIFO
/// or device, a file over [`MAX_FILE`]) is a vassal with a [`VassalFile::problem`]:
/// reported, and never in the way of the others. Only a directory that cannot be
/// listed fails the whole scan: a half scan would look like removed files and retire
/// running vassals.
pub fn scan(dir: &Path) -> io::Result<Scan> {
    let with_path =
        |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| with_path(dir, e))? {
        let entry = entry.map_err(|e| with_path(dir, e))?;
        entries.push(entry.file_name());
    }
    entries.sort();

    let mut out = Scan::default();
    for file_name in entries {
        let path = dir.join(&file_name);
        let Some((name, kind)) = file_name.to_str().and_then(vassal_name) else {
            if let (Some(n), Some(reason)) =
                (file_name.to_str(), file_name.to_str().and_then(why_ignored))
            {
                // Only report names that look like vassals; editor leftovers are noise.
                if !n.starts_with('.') && (n.ends_with(".ini") || n.ends_with(".xml")) {
                    out.ignored.push((path, reason));
                }
            }
            continue;
        };
        let (fingerprint, problem) = match read_entry(&path) {
            Entry::Gone => continue,
            // A vassal with a problem, not a removed one: a link that dangles for a
            // moment (a projected directory between its swap and its clean-up, a
            // target being replaced) must not retire a running app.
            Entry::Dangling => {
                let target = fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                let reason = format!(
                    "{}: dangling symlink (its target {target} does not exist)",
                    path.display()
                );
                (Fingerprint::of(reason.as_bytes(), 0), Some(reason))
            }
            Entry::Directory => {
                out.ignored.push((path, "not a regular file"));
                continue;
            }
            Entry::File(fingerprint) => (fingerprint, None),
            Entry::Problem(reason) => (Fingerprint::of(reason.as_bytes(), 0), Some(reason)),
        };
        let file = VassalFile {
            name: name.clone(),
            path,
            kind,
            fingerprint,
            problem,
        };
        match out.files.get(&name) {
            Some(existing) if existing.kind == FileKind::Ini => out.conflicts.push(file.path),
            Some(_) => {
                if let Some(lost) = out.files.insert(name, file) {
                    out.conflicts.push(lost.path);
                }
            }
            None => {
                out.files.insert(name, file);
            }
        }
    }
    out.conflicts.sort();
    Ok(out)
}

/// One directory entry named like a vassal, read.
enum Entry {
    /// Vanished between the listing and the read.
    Gone,
    /// A symlink to nothing.
    Dangling,
    /// A directory named like a vassal.
    Directory,
    /// A regular file, read.
    File(Fingerprint),
    /// Cannot be a vassal: why (the path is in the message).
    Problem(String),
}

/// Read one entry as every config file is read ([`rsgi_proto::bounds`]): the open does
/// not wait (a FIFO cannot hang rsgid), the opened file must be regular, and at most
/// [`MAX_FILE`] bytes are read.
fn read_entry(path: &Path) -> Entry {
    use rsgi_proto::error::ConfigError;
    let limits = rsgi_proto::bounds::Limits::DEFAULT;
    let content = match rsgi_os::config::read_config_bytes(path, &limits) {
        Ok(content) => content,
        Err(ConfigError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return if fs::symlink_metadata(path).is_ok() {
                Entry::Dangling
            } else {
                Entry::Gone
            };
        }
        Err(ConfigError::Read { source, .. }) if source.raw_os_error() == Some(libc::EISDIR) => {
            return Entry::Directory;
        }
        Err(_) if fs::metadata(path).is_ok_and(|m| m.is_dir()) => return Entry::Directory,
        Err(e) => return Entry::Problem(e.to_string()),
    };
    // The mtime and identity of what the path resolves to now (the same bytes with a new
    // mtime in the same file is a `touch`: it reloads, as in uWSGI).
    let (mtime_ns, file_id) = fs::metadata(path)
        .map(|m| {
            (
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                (m.dev(), m.ino()),
            )
        })
        .unwrap_or((0, (0, 0)));
    Entry::File(Fingerprint {
        file_id,
        ..Fingerprint::of(&content, mtime_ns)
    })
}

/// One difference between two scans.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// A new vassal file.
    Added(VassalName),
    /// A vassal file whose fingerprint changed.
    Changed(VassalName),
    /// A vassal file that is gone.
    Removed(VassalName),
}

impl Change {
    /// The vassal this change is about.
    pub fn name(&self) -> &VassalName {
        match self {
            Change::Added(n) | Change::Changed(n) | Change::Removed(n) => n,
        }
    }
}

/// What changed between two scans, sorted by name. A changed fingerprint (content or
/// mtime: a `touch` reloads, as in uWSGI) is `Changed`; a file renamed to another
/// name is `Removed` + `Added`.
pub fn diff(
    before: &BTreeMap<VassalName, Fingerprint>,
    now: &BTreeMap<VassalName, VassalFile>,
) -> Vec<Change> {
    let mut changes: Vec<Change> = before
        .iter()
        .filter_map(|(name, old)| match now.get(name) {
            None => Some(Change::Removed(name.clone())),
            Some(file) if old.changed(&file.fingerprint) => Some(Change::Changed(name.clone())),
            Some(_) => None,
        })
        .chain(
            now.keys()
                .filter(|name| !before.contains_key(*name))
                .map(|name| Change::Added(name.clone())),
        )
        .collect();
    changes.sort_by(|a, b| a.name().cmp(b.name()));
    changes
}

/// What rsgid knows of the files one vassal's configuration read besides its own file
/// (`ini = ...`, `xml = ...`, `@(FILE)`): the input of [`include_changes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads<'a> {
    /// The files the configuration that runs (the last one that loaded) read, with what
    /// they held then.
    pub applied: Option<&'a [Included]>,
    /// The files the last load that failed read or tried to read (the include that is
    /// missing or does not parse among them), with what they held then; `None` once a
    /// load succeeds again.
    pub failed: Option<&'a [Included]>,
    /// The vassal is retired: nothing it read matters any more.
    pub retired: bool,
}

impl<'a> Reads<'a> {
    /// The files whose change is news for this vassal: after a failed load, what that
    /// load read (the newest look at the disk; a vassal whose first load failed has
    /// nothing else); otherwise what the running configuration read; nothing when
    /// retired.
    pub fn watched(&self) -> &'a [Included] {
        if self.retired {
            return &[];
        }
        self.failed.or(self.applied).unwrap_or(&[])
    }
}

/// The vassals to load again because a file they read holds other bytes now, appeared or
/// went (a vassal's content is all of what it reads): a [`Change::Changed`] for each
/// vassal still in the directory (`present`) that `changes` (the directory's own diff)
/// does not name already. `now` says what a path holds now (length and hash, `None`
/// when it cannot be opened, as [`Included::digest`]); it is asked once per path, however
/// many vassals read the file. Pure: the actor passes a reader, the tests a table.
pub fn include_changes<'a>(
    reads: impl IntoIterator<Item = (&'a VassalName, Reads<'a>)>,
    present: &BTreeMap<VassalName, VassalFile>,
    changes: &[Change],
    now: &mut dyn FnMut(&Path) -> Option<(u64, u64)>,
) -> Vec<Change> {
    let mut seen: BTreeMap<&Path, Option<(u64, u64)>> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, r) in reads {
        if !present.contains_key(name) || changes.iter().any(|c| c.name() == name) {
            continue;
        }
        let moved = r.watched().iter().any(|inc| {
            let held = *seen
                .entry(inc.path.as_path())
                .or_insert_with(|| now(&inc.path));
            held != inc.digest
        });
        if moved {
            out.push(Change::Changed(name.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The fingerprints of a scan, the form [`diff`] wants as `before` (the actor builds
    /// the same from its vassals).
    fn fingerprints(files: &BTreeMap<VassalName, VassalFile>) -> BTreeMap<VassalName, Fingerprint> {
        files
            .iter()
            .map(|(name, file)| (name.clone(), file.fingerprint))
            .collect()
    }
    use std::os::unix::fs::symlink;

    fn name(s: &str) -> VassalName {
        VassalName::new(s).unwrap()
    }

    #[test]
    fn vassal_name_table() {
        use FileKind::*;
        type Row = (&'static str, Result<(&'static str, FileKind), &'static str>);
        let cases: &[Row] = &[
            ("mysite.ini", Ok(("mysite", Ini))),
            ("a.xml", Ok(("a", Xml))),
            ("my-site_2.v1.ini", Ok(("my-site_2.v1", Ini))),
            ("app.xml.ini", Ok(("app.xml", Ini))),
            (".hidden.ini", Err("hidden file")),
            ("app.ini~", Err("editor backup file")),
            (".app.ini.swp", Err("hidden file")),
            ("app.ini.swp", Err("editor swap file")),
            ("app.ini.swx", Err("editor swap file")),
            (".#app.ini", Err("hidden file")),
            ("#app.ini#", Err("editor autosave file")),
            ("app.ini.tmp", Err("temporary file")),
            ("notes.txt", Err("not a .ini or .xml file")),
            ("app.INI", Err("not a .ini or .xml file")),
            ("ini", Err("not a .ini or .xml file")),
            (".ini", Err("hidden file")),
            (
                "a b.ini",
                Err("the name has a space, a control or a non-ASCII character"),
            ),
            (
                "caf\u{e9}.ini",
                Err("the name has a space, a control or a non-ASCII character"),
            ),
            (
                "tab\t.xml",
                Err("the name has a space, a control or a non-ASCII character"),
            ),
        ];
        for (file, want) in cases {
            let got = vassal_name(file);
            match want {
                Ok((n, kind)) => {
                    assert_eq!(got, Some((name(n), *kind)), "{file}");
                    assert_eq!(why_ignored(file), None, "{file}");
                }
                Err(reason) => {
                    assert_eq!(got, None, "{file}");
                    assert_eq!(why_ignored(file), Some(*reason), "{file}");
                }
            }
        }
    }

    #[test]
    fn vassal_name_validation() {
        assert_eq!(name("app").as_str(), "app");
        assert_eq!(name("app").to_string(), "app");
        assert!(VassalName::new("").is_err());
        assert!(VassalName::new(".x").is_err());
        assert!(VassalName::new("a/b").is_err());
        let err = VassalName::new("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid vassal name \"a b\": the name has a space, a control or a non-ASCII character"
        );
        assert_eq!("x-1".parse::<VassalName>().unwrap(), name("x-1"));
    }

    fn fp(mtime_ns: i128, content: &str) -> Fingerprint {
        Fingerprint::of(content.as_bytes(), mtime_ns)
    }

    fn files(entries: &[(&str, Fingerprint)]) -> BTreeMap<VassalName, VassalFile> {
        entries
            .iter()
            .map(|(n, fingerprint)| {
                (
                    name(n),
                    VassalFile {
                        name: name(n),
                        path: PathBuf::from(format!("/v/{n}.ini")),
                        kind: FileKind::Ini,
                        fingerprint: *fingerprint,
                        problem: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn diff_table() {
        let a1 = fp(1, "a");
        /// (label, before, now, changes)
        type Row = (&'static str, Files, Files, Vec<Change>);
        type Files = Vec<(&'static str, Fingerprint)>;
        let cases: Vec<Row> = vec![
            ("nothing", vec![], vec![], vec![]),
            (
                "added",
                vec![],
                vec![("a", a1)],
                vec![Change::Added(name("a"))],
            ),
            (
                "removed",
                vec![("a", a1)],
                vec![],
                vec![Change::Removed(name("a"))],
            ),
            ("unchanged", vec![("a", a1)], vec![("a", a1)], vec![]),
            (
                "content changed, same mtime and length",
                vec![("a", a1)],
                vec![("a", fp(1, "b"))],
                vec![Change::Changed(name("a"))],
            ),
            (
                "touched only",
                vec![("a", a1)],
                vec![("a", fp(2, "a"))],
                vec![Change::Changed(name("a"))],
            ),
            (
                "renamed",
                vec![("a", a1)],
                vec![("b", a1)],
                vec![Change::Removed(name("a")), Change::Added(name("b"))],
            ),
            (
                "mixed, sorted by name",
                vec![("b", a1), ("c", a1), ("d", a1)],
                vec![("a", a1), ("c", fp(3, "c")), ("d", a1), ("e", a1)],
                vec![
                    Change::Added(name("a")),
                    Change::Removed(name("b")),
                    Change::Changed(name("c")),
                    Change::Added(name("e")),
                ],
            ),
        ];
        for (label, before, now, want) in cases {
            let before = fingerprints(&files(&before));
            assert_eq!(diff(&before, &files(&now)), want, "{label}");
        }
    }

    #[test]
    fn change_rule_table() {
        let fp = |hash: u64, mtime_ns: i128, ino: u64| Fingerprint {
            mtime_ns,
            len: 10,
            hash,
            file_id: (1, ino),
        };
        let rows = [
            // (before, now, changed, why)
            (fp(1, 5, 7), fp(1, 5, 7), false, "nothing happened"),
            (fp(1, 5, 7), fp(2, 6, 7), true, "edited in place"),
            (
                fp(1, 5, 7),
                fp(1, 6, 7),
                true,
                "touched: same file, new mtime (uWSGI)",
            ),
            (
                fp(1, 5, 7),
                fp(2, 6, 8),
                true,
                "replaced by other bytes (editor save)",
            ),
            (
                fp(1, 5, 7),
                fp(1, 9, 8),
                false,
                "same bytes in another file (..data swap)",
            ),
            (
                fp(1, 5, 7),
                fp(1, 5, 8),
                false,
                "same bytes, same mtime, another file",
            ),
        ];
        for (before, now, want, why) in rows {
            assert_eq!(before.changed(&now), want, "{why}");
        }
    }

    #[test]
    fn fingerprint_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn scan_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vassals");
        fs::create_dir(&dir).unwrap();
        let elsewhere = tmp.path().join("elsewhere.ini");
        fs::write(&elsewhere, "[uwsgi]\nmodule = linked\n").unwrap();

        fs::write(dir.join("app.ini"), "[uwsgi]\nmodule = app\n").unwrap();
        fs::write(dir.join("app.xml"), "<uwsgi/>").unwrap();
        fs::write(dir.join("other.xml"), "<uwsgi><module>o</module></uwsgi>").unwrap();
        symlink(&elsewhere, dir.join("linked.ini")).unwrap();
        symlink(tmp.path().join("missing.ini"), dir.join("dangling.ini")).unwrap();
        fs::create_dir(dir.join("subdir.ini")).unwrap();
        fs::write(dir.join("nested-not-scanned.txt"), "x").unwrap();
        fs::create_dir(dir.join("deeper")).unwrap();
        fs::write(dir.join("deeper").join("deep.ini"), "x").unwrap();
        for leftover in [
            "app.ini~",
            ".app.ini.swp",
            ".#app.ini",
            "#app.ini#",
            "app.ini.tmp",
            ".hidden.ini",
        ] {
            fs::write(dir.join(leftover), "junk").unwrap();
        }
        fs::write(dir.join("a b.ini"), "x").unwrap();

        let scan = scan(&dir).unwrap();
        let names: Vec<&str> = scan.files.keys().map(VassalName::as_str).collect();
        assert_eq!(names, ["app", "dangling", "linked", "other"]);
        let dangling = scan.files[&name("dangling")].problem.clone().unwrap();
        assert!(dangling.contains("dangling symlink"), "{dangling}");

        let app = &scan.files[&name("app")];
        assert_eq!(app.kind, FileKind::Ini);
        assert_eq!(app.path, dir.join("app.ini"));
        let content = b"[uwsgi]\nmodule = app\n";
        assert_eq!(app.fingerprint.len, content.len() as u64);
        assert_eq!(app.fingerprint.hash, fnv1a(content));
        assert!(app.fingerprint.mtime_ns > 0);

        let linked = &scan.files[&name("linked")];
        assert_eq!(linked.path, dir.join("linked.ini"), "symlink not resolved");
        assert_eq!(
            linked.fingerprint.hash,
            fnv1a(b"[uwsgi]\nmodule = linked\n")
        );
        assert_eq!(scan.files[&name("other")].kind, FileKind::Xml);

        assert_eq!(scan.conflicts, [dir.join("app.xml")]);
        assert_eq!(
            scan.ignored,
            [
                (
                    dir.join("a b.ini"),
                    "the name has a space, a control or a non-ASCII character"
                ),
                (dir.join("subdir.ini"), "not a regular file"),
            ]
        );

        // A rescan of an untouched directory finds no change; an edit does.
        let before = fingerprints(&scan.files);
        assert_eq!(diff(&before, &super::scan(&dir).unwrap().files), []);
        fs::write(&elsewhere, "[uwsgi]\nmodule = linked2\n").unwrap();
        fs::remove_file(dir.join("other.xml")).unwrap();
        let after = super::scan(&dir).unwrap();
        assert_eq!(
            diff(&before, &after.files),
            [
                Change::Changed(name("linked")),
                Change::Removed(name("other"))
            ]
        );
    }

    #[test]
    fn entries_that_cannot_be_read_are_vassals_with_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("good.ini"), "[uwsgi]\nmodule = app\n").unwrap();
        symlink("loop.ini", dir.join("loop.ini")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo.ini"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        symlink("/dev/zero", dir.join("zero.ini")).unwrap();
        let big = fs::File::create(dir.join("big.ini")).unwrap();
        big.set_len(MAX_FILE + 1).unwrap();
        fs::write(dir.join("edge.ini"), vec![b'#'; MAX_FILE as usize]).unwrap();

        // Nothing blocks (the FIFO has no writer), nothing fails the scan.
        let scan = scan(dir).unwrap();
        let problem = |n: &str| scan.files[&name(n)].problem.clone();
        for (n, expected) in [
            ("loop", "symbolic links"),
            ("fifo", "not a regular file (a FIFO)"),
            ("zero", "not a regular file (a character device)"),
            (
                "big",
                "1048577 bytes; a config file may hold at most 1048576",
            ),
        ] {
            let p = problem(n).unwrap_or_else(|| panic!("{n}: no problem"));
            assert!(
                p.contains(expected) && p.contains(&format!("{n}.ini")),
                "{n}: {p}"
            );
        }
        assert_eq!(problem("good"), None);
        assert_eq!(problem("edge"), None, "exactly the cap is fine");
        assert_eq!(scan.files[&name("edge")].fingerprint.len, MAX_FILE);

        // A problem is stable (no change on the next scan) until it is fixed.
        let before = fingerprints(&scan.files);
        assert_eq!(diff(&before, &super::scan(dir).unwrap().files), []);
        fs::remove_file(dir.join("loop.ini")).unwrap();
        fs::write(dir.join("loop.ini"), "[uwsgi]\nmodule = fixed\n").unwrap();
        let after = super::scan(dir).unwrap();
        assert_eq!(diff(&before, &after.files), [Change::Changed(name("loop"))]);
        assert_eq!(after.files[&name("loop")].problem, None);
    }

    #[test]
    fn scan_a_missing_directory_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = scan(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope"), "{err}");
    }

    fn inc(path: &str, digest: Option<u64>) -> Included {
        Included {
            path: PathBuf::from(path),
            digest: digest.map(|d| (d, d)),
        }
    }

    /// Which files [`Reads::watched`] looks at: a failed load's, else the running
    /// configuration's, nothing when retired.
    #[test]
    fn reads_watched_table() {
        let applied = [inc("/etc/a.ini", Some(1))];
        let failed = [inc("/etc/a.ini", Some(2)), inc("/etc/other.ini", None)];
        type Row<'a> = (&'a str, Reads<'a>, &'a [Included]);
        let rows: &[Row<'_>] = &[
            ("never loaded, never tried", Reads::default(), &[]),
            (
                "running, no failed load",
                Reads {
                    applied: Some(&applied),
                    ..Reads::default()
                },
                &applied,
            ),
            (
                "first load failed",
                Reads {
                    failed: Some(&failed),
                    ..Reads::default()
                },
                &failed,
            ),
            (
                "running, a reload failed",
                Reads {
                    applied: Some(&applied),
                    failed: Some(&failed),
                    retired: false,
                },
                &failed,
            ),
            (
                "a failed load that read nothing (the vassal file itself is wrong)",
                Reads {
                    applied: Some(&applied),
                    failed: Some(&[]),
                    retired: false,
                },
                &[],
            ),
            (
                "retired",
                Reads {
                    applied: Some(&applied),
                    failed: Some(&failed),
                    retired: true,
                },
                &[],
            ),
        ];
        for (what, reads, want) in rows {
            assert_eq!(reads.watched(), *want, "{what}");
        }
    }

    /// [`include_changes`]: each row is what one vassal read (path, digest then), what
    /// the paths hold now, whether the vassal is in the directory and already changed
    /// there, and whether it must be loaded again.
    #[test]
    fn include_changes_table() {
        struct Row {
            what: &'static str,
            watched: Vec<Included>,
            present: bool,
            already: bool,
            changed: bool,
        }
        // What the files hold now (a missing path is not here).
        let disk: BTreeMap<&str, u64> = [("/etc/a.ini", 1), ("/etc/b.ini", 7)].into();
        let rows = [
            Row {
                what: "same bytes",
                watched: vec![inc("/etc/a.ini", Some(1))],
                present: true,
                already: false,
                changed: false,
            },
            Row {
                what: "other bytes",
                watched: vec![inc("/etc/b.ini", Some(6))],
                present: true,
                already: false,
                changed: true,
            },
            Row {
                what: "the missing include appeared",
                watched: vec![inc("/etc/a.ini", Some(1)), inc("/etc/b.ini", None)],
                present: true,
                already: false,
                changed: true,
            },
            Row {
                what: "an include went",
                watched: vec![inc("/etc/gone.ini", Some(3))],
                present: true,
                already: false,
                changed: true,
            },
            Row {
                what: "still missing",
                watched: vec![inc("/etc/gone.ini", None)],
                present: true,
                already: false,
                changed: false,
            },
            Row {
                what: "nothing read",
                watched: vec![],
                present: true,
                already: false,
                changed: false,
            },
            Row {
                what: "its own file changed already: one change, from the diff",
                watched: vec![inc("/etc/b.ini", Some(6))],
                present: true,
                already: true,
                changed: false,
            },
            Row {
                what: "its file is gone from the directory",
                watched: vec![inc("/etc/b.ini", Some(6))],
                present: false,
                already: false,
                changed: false,
            },
        ];
        for row in &rows {
            let n = name("v");
            let present = if row.present {
                files(&[("v", fp(1, "[uwsgi]"))])
            } else {
                BTreeMap::new()
            };
            let changes = if row.already {
                vec![Change::Changed(n.clone())]
            } else {
                vec![]
            };
            let reads = Reads {
                failed: Some(&row.watched),
                ..Reads::default()
            };
            let mut now = |p: &Path| disk.get(p.to_str().unwrap()).map(|&d| (d, d));
            let got = include_changes([(&n, reads)], &present, &changes, &mut now);
            let want = if row.changed {
                vec![Change::Changed(n.clone())]
            } else {
                vec![]
            };
            assert_eq!(got, want, "{}", row.what);
        }
    }

    /// Several vassals: each path is looked at once per scan, and only the vassals whose
    /// files moved change, in the order given.
    #[test]
    fn include_changes_reads_each_path_once() {
        let (a, b, c) = (name("a"), name("b"), name("c"));
        let shared = [inc("/etc/shared.ini", Some(1))];
        let fixed = [inc("/etc/shared.ini", Some(1)), inc("/etc/fixed.ini", None)];
        let present = files(&[
            ("a", fp(1, "[uwsgi]")),
            ("b", fp(1, "[uwsgi]")),
            ("c", fp(1, "[uwsgi]")),
        ]);
        let mut asked = Vec::new();
        let mut now = |p: &Path| {
            asked.push(p.to_path_buf());
            match p.to_str() {
                Some("/etc/shared.ini") => Some((1, 1)),
                Some("/etc/fixed.ini") => Some((5, 5)),
                _ => None,
            }
        };
        let reads = [
            (
                &a,
                Reads {
                    applied: Some(&shared),
                    ..Reads::default()
                },
            ),
            (
                &b,
                Reads {
                    failed: Some(&fixed),
                    ..Reads::default()
                },
            ),
            (
                &c,
                Reads {
                    applied: Some(&shared),
                    failed: Some(&fixed),
                    retired: false,
                },
            ),
        ];
        let got = include_changes(reads, &present, &[], &mut now);
        assert_eq!(
            got,
            [Change::Changed(b.clone()), Change::Changed(c.clone())]
        );
        assert_eq!(
            asked,
            [
                PathBuf::from("/etc/shared.ini"),
                PathBuf::from("/etc/fixed.ini")
            ]
        );
    }
}
