//! `touch-reload`, `touch-chain-reload`, `touch-workers-reload`, `touch-logreopen`,
//! `touch-logrotate`: which
//! watched file changed, as uWSGI's `uwsgi_check_touches` (core/utils.c) decides it,
//! checked by the master on every wake-up (at least once a second).
//!
//! Pure: the shell passes the file's modification time (`None`: it cannot be stat'ed), so
//! the rules are a table test. uWSGI's rules, per file:
//!
//! - the first check records the time (an existing file triggers nothing at start);
//! - a newer modification time triggers;
//! - a file that existed and is gone triggers once (uWSGI: "File was removed");
//! - a file that was missing and appears triggers (uWSGI logs "unable to stat() FILE,
//!   events will be triggered as soon as the file is created" once; so do we).
//!
//! Deliberate difference: uWSGI compares whole seconds (`st_mtime`), so a second touch
//! within the same second is missed; rsgi compares the full timestamp.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a change of a watched file asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// `touch-reload`: a graceful reload, as SIGHUP.
    Reload,
    /// `touch-chain-reload`: the workers replaced one at a time.
    ChainReload,
    /// `touch-workers-reload`: a new set of workers; the master stays.
    WorkersReload,
    /// `touch-logreopen`: reopen the log, as SIGUSR1.
    LogReopen,
    /// `touch-logrotate`: rotate the log file, as `log-maxsize` does.
    LogRotate,
}

impl Touch {
    /// The option's name, for the log.
    pub fn option(self) -> &'static str {
        match self {
            Touch::Reload => "touch-reload",
            Touch::ChainReload => "touch-chain-reload",
            Touch::WorkersReload => "touch-workers-reload",
            Touch::LogReopen => "touch-logreopen",
            Touch::LogRotate => "touch-logrotate",
        }
    }
}

/// One watched file and what the last check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    path: PathBuf,
    touch: Touch,
    /// The modification time last seen (`None`: never seen, or missing).
    mtime: Option<SystemTime>,
    /// It was missing at the last check (uWSGI's `custom2`).
    missing: bool,
}

/// What one check found for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// It changed (modified, created or removed): do what its option says.
    Changed(Touch, PathBuf),
    /// It is missing for the first time with no earlier sighting: say so once.
    Missing(Touch, PathBuf),
}

/// Every watched file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touches {
    watches: Vec<Watch>,
}

impl Touches {
    /// Watch `files`, each with what its change asks for.
    pub fn new(files: impl IntoIterator<Item = (PathBuf, Touch)>) -> Touches {
        Touches {
            watches: files
                .into_iter()
                .map(|(path, touch)| Watch {
                    path,
                    touch,
                    mtime: None,
                    missing: false,
                })
                .collect(),
        }
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Check every file; `stat` gives a file's modification time, `None` when it cannot
    /// be read. Returns what changed, in the order of the options.
    pub fn check(&mut self, mut stat: impl FnMut(&Path) -> Option<SystemTime>) -> Vec<Seen> {
        let mut seen = Vec::new();
        for w in &mut self.watches {
            match stat(&w.path) {
                None => {
                    if w.mtime.is_some() && !w.missing {
                        seen.push(Seen::Changed(w.touch, w.path.clone()));
                    } else if w.mtime.is_none() && !w.missing {
                        seen.push(Seen::Missing(w.touch, w.path.clone()));
                    }
                    w.missing = true;
                    w.mtime = None;
                }
                Some(t) => {
                    let changed = match w.mtime {
                        None => w.missing,
                        Some(before) => t > before,
                    };
                    if changed {
                        seen.push(Seen::Changed(w.touch, w.path.clone()));
                    }
                    w.mtime = Some(t);
                    w.missing = false;
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(secs))
    }

    /// One file through a sequence of checks: (its modification time at the check,
    /// what the check must report).
    #[test]
    fn changes_as_uwsgi_sees_them() {
        use Expect::*;
        #[derive(Debug, PartialEq)]
        enum Expect {
            Nothing,
            Changed,
            Missing,
        }
        type Case<'a> = (&'a str, &'a [(Option<SystemTime>, Expect)]);
        let cases: &[Case<'_>] = &[
            (
                "an existing file triggers nothing at start",
                &[(at(5), Nothing), (at(5), Nothing)],
            ),
            (
                "a newer time triggers once",
                &[(at(5), Nothing), (at(6), Changed), (at(6), Nothing)],
            ),
            // uWSGI records every time it sees, older or not.
            (
                "an older time (a restored checkout) does not; back to newer does",
                &[(at(5), Nothing), (at(4), Nothing), (at(5), Changed)],
            ),
            (
                "within the same second still counts (uWSGI: missed)",
                &[(at(5000), Nothing), (at(5001), Changed)],
            ),
            (
                "missing at start: said once, created later triggers",
                &[
                    (None, Missing),
                    (None, Nothing),
                    (at(1), Changed),
                    (at(1), Nothing),
                ],
            ),
            (
                "removed triggers once, re-created again",
                &[
                    (at(5), Nothing),
                    (None, Changed),
                    (None, Nothing),
                    (at(5), Changed),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut t = Touches::new([(PathBuf::from("/f"), Touch::Reload)]);
            for (i, (mtime, want)) in steps.iter().enumerate() {
                let got = t.check(|_| *mtime);
                let got = match got.as_slice() {
                    [] => Nothing,
                    [Seen::Changed(Touch::Reload, p)] if p == Path::new("/f") => Changed,
                    [Seen::Missing(Touch::Reload, _)] => Missing,
                    other => panic!("{name}: step {i}: {other:?}"),
                };
                assert_eq!(&got, want, "{name}: step {i}");
            }
        }
    }

    #[test]
    fn each_file_reports_its_own_option() {
        let mut t = Touches::new([
            (PathBuf::from("/a"), Touch::ChainReload),
            (PathBuf::from("/b"), Touch::LogReopen),
        ]);
        assert!(t.check(|_| at(1)).is_empty());
        let got = t.check(|p| if p == Path::new("/b") { at(2) } else { at(1) });
        assert_eq!(
            got,
            vec![Seen::Changed(Touch::LogReopen, PathBuf::from("/b"))]
        );
    }
}
