//! Kubernetes ConfigMap/Secret volumes as the vassal directory (issue 18). The kubelet's
//! atomic writer publishes each key as a symlink `name -> ..data/name`, `..data` being a
//! symlink to a timestamped directory; an update writes a new timestamped directory,
//! points `..data_tmp` at it, renames `..data_tmp` over `..data`, removes the links of
//! keys that are gone and then the old directory. These tests replay those steps
//! exactly, against the real rsgid: a swap that changes nothing reloads nothing, a
//! swap that changes one key reloads exactly that vassal, a removed key retires its
//! vassal, and a plain file's `touch` still reloads.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

fn hello_ini(extra: &str) -> String {
    format!(
        "[uwsgi]\nwsgi-file = {}\n{extra}",
        path_str(&apps_dir().join("hello.py"))
    )
}

/// The kubelet's atomic writer over one directory.
struct Projection {
    dir: PathBuf,
    serial: u32,
    current: Option<String>,
}

impl Projection {
    fn new(dir: &Path) -> Projection {
        Projection {
            dir: dir.to_owned(),
            serial: 0,
            current: None,
        }
    }

    /// Publish exactly `files` (name, content), as one update.
    fn publish(&mut self, files: &[(&str, &str)]) {
        self.serial += 1;
        let ts = format!("..2026_12_02_14_00_00.{:09}", self.serial);
        let ts_dir = self.dir.join(&ts);
        std::fs::create_dir(&ts_dir).expect("timestamped dir");
        for (name, content) in files {
            std::fs::write(ts_dir.join(name), content).expect("write a key");
        }
        // New keys get their visible link (to ..data/name) before the swap.
        for (name, _) in files {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(Path::new("..data").join(name), &visible).expect("visible link");
            }
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("rename ..data_tmp over ..data");
        // Keys that are gone lose their link, then the old directory goes.
        for entry in std::fs::read_dir(&self.dir).expect("list") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !name.starts_with("..") && !files.iter().any(|(f, _)| *f == name) {
                std::fs::remove_file(self.dir.join(&name)).expect("remove a gone key's link");
            }
        }
        if let Some(old) = self.current.replace(ts) {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove the old dir");
        }
    }
}

/// `rsgictl --json list`: (name, state, generation) of every vassal.
fn list(e: &Emperor) -> Vec<(String, String, u64)> {
    let v = e.list_json();
    v["vassals"]
        .as_array()
        .expect("vassals")
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap_or_default().to_owned(),
                x["state"].as_str().unwrap_or_default().to_owned(),
                x["generation"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn wait_list(e: &Emperor, want: &[(&str, &str, u64)]) {
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(n, s, g)| ((*n).to_owned(), (*s).to_owned(), *g))
        .collect();
    let mut last = Vec::new();
    wait_until(DEADLINE, &format!("vassals {want:?}"), || {
        last = list(e);
        last == want
    });
}

#[test]
fn a_configmap_update_reloads_only_what_changed() {
    // The periodic rescan every 0.2 s: anything a scan would pick up, it does.
    let mut e = Emperor::start(&["--rescan", "0.2"]);
    let mut p = Projection::new(&e.vassals_dir());
    let (a, b) = (hello_ini(""), hello_ini("processes = 1\n"));
    p.publish(&[("a.ini", &a), ("b.ini", &b)]);
    e.wait_serving("a", "/", DEADLINE);
    e.wait_serving("b", "/", DEADLINE);
    wait_list(&e, &[("a", "ready", 1), ("b", "ready", 1)]);

    // A resync that rewrites the same bytes: nothing reloads (scans happen meanwhile).
    for _ in 0..3 {
        p.publish(&[("a.ini", &a), ("b.ini", &b)]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        list(&e),
        [
            ("a".to_owned(), "ready".to_owned(), 1),
            ("b".to_owned(), "ready".to_owned(), 1)
        ]
    );

    // One key changes: exactly that vassal reloads.
    let a2 = hello_ini("buffer-size = 8192\n");
    p.publish(&[("a.ini", &a2), ("b.ini", &b)]);
    wait_list(&e, &[("a", "ready", 2), ("b", "ready", 1)]);

    // A key removed from the projection retires its vassal; the other stays as it is.
    p.publish(&[("a.ini", &a2)]);
    wait_list(&e, &[("a", "ready", 2)]);
    std::thread::sleep(Duration::from_millis(600));
    wait_list(&e, &[("a", "ready", 2)]);
    // rsgid wrote nothing into the projected directory.
    let mut names: Vec<String> = std::fs::read_dir(e.vassals_dir())
        .expect("list")
        .map(|x| x.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("..2026"))
        .collect();
    names.sort();
    assert_eq!(names, ["..data", "a.ini"]);
}

#[test]
fn a_touch_of_a_plain_file_still_reloads() {
    let mut e = Emperor::start(&["--rescan", "0.2"]);
    e.write_vassal("a", &hello_ini(""));
    e.wait_serving("a", "/", DEADLINE);
    wait_list(&e, &[("a", "ready", 1)]);
    // Same bytes, same file, new mtime: a reload, as in uWSGI.
    std::thread::sleep(Duration::from_millis(20));
    e.touch("a");
    wait_list(&e, &[("a", "ready", 2)]);
    // A link that dangles for a moment (its target replaced) retires nothing, and the
    // same bytes back in place reload nothing.
    let target = e.dir().join("real.ini");
    std::fs::write(&target, hello_ini("")).expect("target");
    let link = e.vassals_dir().join("b.ini");
    symlink(&target, &link).expect("link");
    e.wait_serving("b", "/", DEADLINE);
    wait_list(&e, &[("a", "ready", 2), ("b", "ready", 1)]);
    std::fs::rename(&target, e.dir().join("aside.ini")).expect("move the target away");
    std::thread::sleep(Duration::from_millis(600));
    e.wait_serving("b", "/", DEADLINE);
    std::fs::write(&target, hello_ini("")).expect("the same bytes again");
    std::thread::sleep(Duration::from_millis(600));
    wait_list(&e, &[("a", "ready", 2), ("b", "ready", 1)]);
}

/// A vassal's change is decided by everything it reads: its own file and the files it
/// includes (`ini = %dcommon.conf`, `@(FILE)`). Replayed as kubelet updates, where `%d`
/// names the timestamped directory, which every swap replaces.
#[test]
fn an_included_file_decides_too() {
    let mut e = Emperor::start(&["--rescan", "0.2"]);
    let mut p = Projection::new(&e.vassals_dir());
    // `common.conf` is no vassal (not *.ini): only what `a` includes.
    let a = hello_ini("ini = %dcommon.conf\nenv = GREETING=@(%dgreeting.txt)\n");
    let b = hello_ini("processes = 1\n");
    let common = "[uwsgi]\nbuffer-size = 8192\n";
    p.publish(&[
        ("a.ini", &a),
        ("b.ini", &b),
        ("common.conf", common),
        ("greeting.txt", "hello"),
    ]);
    e.wait_serving("a", "/", DEADLINE);
    e.wait_serving("b", "/", DEADLINE);
    wait_list(&e, &[("a", "ready", 1), ("b", "ready", 1)]);

    // Resyncs with the same bytes everywhere: nothing reloads.
    for _ in 0..3 {
        p.publish(&[
            ("a.ini", &a),
            ("b.ini", &b),
            ("common.conf", common),
            ("greeting.txt", "hello"),
        ]);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        list(&e),
        [
            ("a".to_owned(), "ready".to_owned(), 1),
            ("b".to_owned(), "ready".to_owned(), 1)
        ]
    );

    // The included ini changes: `a` reloads, `b` does not.
    let common2 = "[uwsgi]\nbuffer-size = 16384\n";
    p.publish(&[
        ("a.ini", &a),
        ("b.ini", &b),
        ("common.conf", common2),
        ("greeting.txt", "hello"),
    ]);
    wait_list(&e, &[("a", "ready", 2), ("b", "ready", 1)]);

    // A file read with @(...) changes: `a` reloads again.
    p.publish(&[
        ("a.ini", &a),
        ("b.ini", &b),
        ("common.conf", common2),
        ("greeting.txt", "bonjour"),
    ]);
    wait_list(&e, &[("a", "ready", 3), ("b", "ready", 1)]);

    // And an in-place edit of an included plain file (outside any projection) too.
    let shared = e.dir().join("shared.conf");
    std::fs::write(&shared, "[uwsgi]\nbuffer-size = 8192\n").expect("shared include");
    e.write_vassal("c", &hello_ini(&format!("ini = {}\n", path_str(&shared))));
    e.wait_serving("c", "/", DEADLINE);
    wait_list(
        &e,
        &[("a", "ready", 3), ("b", "ready", 1), ("c", "ready", 1)],
    );
    std::fs::write(&shared, "[uwsgi]\nbuffer-size = 4096\n").expect("edit the include");
    wait_list(
        &e,
        &[("a", "ready", 3), ("b", "ready", 1), ("c", "ready", 2)],
    );
    std::thread::sleep(Duration::from_millis(600));
    wait_list(
        &e,
        &[("a", "ready", 3), ("b", "ready", 1), ("c", "ready", 2)],
    );
}

/// The mount options of `dir` as process `pid` sees it (its mount namespace), from
/// `/proc/PID/mountinfo`; `None` when `dir` is no mount point there.
fn mount_options(pid: nix::unistd::Pid, dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    info.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(path_str(dir)))
        .and_then(|l| l.split(' ').nth(5).map(str::to_owned))
}

/// The vassal directory as a read-only bind mount (a ConfigMap volume is one): rsgid
/// starts, runs, reloads and retires from it, and never writes there (it could not:
/// any write would fail with EROFS and show in its log).
#[test]
fn a_read_only_vassal_directory() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (unshare --mount, mount --bind)"
    );
    let mut e = Emperor::start_with_read_only_vassals(&["--rescan", "0.2"]);
    let dir = e.vassals_dir();
    // rsgid really sees a read-only mount; the test's own view stays writable.
    let options = mount_options(e.rsgid_pid(), &dir)
        .unwrap_or_else(|| panic!("{} is no mount point for rsgid", dir.display()));
    assert!(
        options.split(',').any(|o| o == "ro"),
        "{}: mounted {options} for rsgid, not ro",
        dir.display()
    );
    assert_eq!(mount_options(nix::unistd::getpid(), &dir), None);

    let mut p = Projection::new(&dir);
    let (a, b) = (hello_ini(""), hello_ini("processes = 1\n"));
    p.publish(&[("a.ini", &a), ("b.ini", &b)]);
    e.wait_serving("a", "/", DEADLINE);
    e.wait_serving("b", "/", DEADLINE);
    wait_list(&e, &[("a", "ready", 1), ("b", "ready", 1)]);
    for _ in 0..2 {
        p.publish(&[("a.ini", &a), ("b.ini", &b)]);
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_list(&e, &[("a", "ready", 1), ("b", "ready", 1)]);
    p.publish(&[("a.ini", &hello_ini("buffer-size = 8192\n")), ("b.ini", &b)]);
    wait_list(&e, &[("a", "ready", 2), ("b", "ready", 1)]);
    e.wait_serving("a", "/", DEADLINE);
    p.publish(&[("a.ini", &hello_ini("buffer-size = 8192\n"))]);
    wait_list(&e, &[("a", "ready", 2)]);

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|x| x.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("..2026"))
        .collect();
    names.sort();
    assert_eq!(names, ["..data", "a.ini"]);
    let log = e.log();
    assert!(
        !log.contains("Read-only file system") && !log.contains("os error 30"),
        "rsgid tried to write into the read-only vassal directory:\n{log}"
    );
}
