//! `py-autoreload = N`: every N seconds each worker looks at the files of the Python
//! modules it has loaded and, when one changed, asks its master for a graceful reload
//! (SIGHUP), as uWSGI's python plugin does (`uwsgi_python_autoreloader_thread`): a file
//! is recorded the first time it is seen, any other modification time later triggers,
//! a file that cannot be stat'ed is skipped, and the thread ends once it has asked.
//!
//! The thread runs in the worker (which never forks) and holds the GIL only to list
//! `sys.modules` ([`crate::python::module_files`]); the comparison is [`Mtimes`], pure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The modification times seen so far.
#[derive(Debug, Default)]
pub struct Mtimes {
    seen: HashMap<PathBuf, SystemTime>,
}

impl Mtimes {
    /// Look at `files` (with `stat`); the first one whose time differs from the one
    /// recorded, if any. New files are recorded; unreadable ones skipped.
    pub fn changed(
        &mut self,
        files: &[PathBuf],
        mut stat: impl FnMut(&Path) -> Option<SystemTime>,
    ) -> Option<PathBuf> {
        for f in files {
            let Some(t) = stat(f) else { continue };
            match self.seen.get(f) {
                None => {
                    self.seen.insert(f.clone(), t);
                }
                Some(before) if *before != t => return Some(f.clone()),
                Some(_) => {}
            }
        }
        None
    }
}

/// Start the reloader thread of this worker: every `every`, check the loaded modules;
/// on a change, log it and send SIGHUP to `master`.
pub fn start(every: Duration, master: nix::unistd::Pid) {
    let spawned = std::thread::Builder::new()
        .name("py-autoreload".into())
        .spawn(move || {
            let mut mtimes = Mtimes::default();
            loop {
                let files = crate::python::module_files();
                let stat = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                if let Some(file) = mtimes.changed(&files, stat) {
                    crate::log::line(format_args!(
                        "rsgi: py-autoreload: {} has been modified; reloading",
                        file.display()
                    ));
                    let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGHUP);
                    return;
                }
                std::thread::sleep(every);
            }
        });
    if let Err(e) = spawned {
        crate::log::line(format_args!("rsgi: py-autoreload: no thread: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    #[test]
    fn changes_as_uwsgi_sees_them() {
        let files = vec![PathBuf::from("/a.py"), PathBuf::from("/b.py")];
        let mut m = Mtimes::default();
        // First sight records; nothing changed.
        assert_eq!(m.changed(&files, |_| t(5)), None);
        assert_eq!(m.changed(&files, |_| t(5)), None);
        // Unreadable: skipped, not a change.
        assert_eq!(m.changed(&files, |_| None), None);
        // Any other time is a change (older too, as uWSGI's `!=`).
        assert_eq!(
            m.changed(&files, |p| if p == Path::new("/b.py") {
                t(4)
            } else {
                t(5)
            }),
            Some(PathBuf::from("/b.py"))
        );
        // A module loaded later is recorded when first seen.
        let more = vec![PathBuf::from("/a.py"), PathBuf::from("/c.py")];
        assert_eq!(m.changed(&more, |_| t(5)), None);
        assert_eq!(
            m.changed(&more, |p| if p == Path::new("/c.py") { t(9) } else { t(5) }),
            Some(PathBuf::from("/c.py"))
        );
    }
}
