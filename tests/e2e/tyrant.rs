//! Tyrant mode (`rsgid --tyrant`) as root with a real second user, `rsgi-tyrant`
//! (member of `rsgi-tyrant-extra`), whom `scripts/test.sh` creates: a vassal runs as
//! its file's owner whatever the ini says, and its file and sockets are read and bound
//! with the owner's rights, never root's (issue 15, item 1).

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);
const USER: &str = "rsgi-tyrant";
const EXTRA_GROUP: &str = "rsgi-tyrant-extra";

/// The test user's uid and primary gid, and the extra group's gid. Root and the user
/// are prerequisites: without them the test fails, naming what is missing.
fn tyrant_user() -> (u32, u32, u32) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tyrant mode's tests need root (rsgid only changes users as root): run scripts/test.sh as root"
    );
    let user = nix::unistd::User::from_name(USER)
        .expect("look up the test user")
        .unwrap_or_else(|| panic!("no user {USER}: scripts/test.sh creates it"));
    let extra = nix::unistd::Group::from_name(EXTRA_GROUP)
        .expect("look up the test group")
        .unwrap_or_else(|| panic!("no group {EXTRA_GROUP}: scripts/test.sh creates it"));
    (user.uid.as_raw(), user.gid.as_raw(), extra.gid.as_raw())
}

/// An emperor in tyrant mode whose directories the test user can reach: the vassal
/// directory is world-writable (sticky), as in a shared hosting setup.
fn tyrant_emperor() -> Emperor {
    let e = Emperor::start_without_uid(&["--tyrant"]);
    fs::set_permissions(e.dir(), fs::Permissions::from_mode(0o755)).expect("chmod tmp");
    fs::set_permissions(e.vassals_dir(), fs::Permissions::from_mode(0o1777))
        .expect("chmod vassals");
    e
}

/// A directory owned by the test user, with an app that answers `uid gid`.
fn user_dir(e: &Emperor, uid: u32, gid: u32) -> PathBuf {
    let dir = e.dir().join("home");
    fs::create_dir_all(&dir).expect("create the user's dir");
    fs::write(
        dir.join("whoami.py"),
        "import os\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [f'{os.getuid()} {os.getgid()}'.encode()]\n",
    )
    .expect("write the app");
    chown(&dir, uid, gid);
    chown(&dir.join("whoami.py"), uid, gid);
    dir
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Write `<name>.ini` as the test user would: owned by them before it appears.
fn write_as_user(e: &Emperor, name: &str, ini: &str, uid: u32, gid: u32) {
    let tmp = e.vassals_dir().join(format!(".{name}.ini.tmp"));
    fs::write(&tmp, ini).expect("write the vassal's temp file");
    chown(&tmp, uid, gid);
    fs::rename(&tmp, e.ini_path(name)).expect("rename the vassal file into place");
}

/// Wait for a log line about vassal `name` that contains `needle`; return it.
fn wait_vassal_line(e: &Emperor, name: &str, needle: &str) -> String {
    let tag = format!("vassal={name}");
    let mut found = String::new();
    wait_until(
        DEADLINE,
        &format!("{tag} with {needle:?} in rsgid's log"),
        || {
            if let Some(l) = e
                .log()
                .lines()
                .find(|l| l.contains(&tag) && l.contains(needle))
            {
                found = l.to_owned();
            }
            !found.is_empty()
        },
    );
    found
}

fn refused(e: &Emperor, name: &str, needle: &str) -> String {
    let line = wait_vassal_line(e, name, needle);
    assert!(e.vassal_pids(name).is_empty(), "{name} runs: {}", e.log());
    assert!(
        !e.log().contains(&format!("spawned vassal={name} ")),
        "{name} was spawned: {}",
        e.log()
    );
    line
}

#[test]
fn tyrant_vassal_runs_as_its_files_owner_never_as_whom_the_ini_names() {
    let (uid, gid, extra) = tyrant_user();
    let mut e = tyrant_emperor();
    let home = user_dir(&e, uid, gid);
    let app = format!("wsgi-file = {}\n", path_str(&home.join("whoami.py")));

    // The reproduction from the issue: the user's file says uid = root.
    write_as_user(&e, "root", &format!("[uwsgi]\n{app}uid = root\n"), uid, gid);
    let line = refused(&e, "root", "names another user");
    assert!(line.contains("uid = root") && line.contains(USER), "{line}");
    // gid naming a group the owner does not belong to.
    write_as_user(&e, "grp", &format!("[uwsgi]\n{app}gid = root\n"), uid, gid);
    let line = refused(&e, "grp", "does not belong to");
    assert!(line.contains("gid = root"), "{line}");

    // No uid: the owner, with the owner's primary group (not root's, not the file's).
    write_as_user(&e, "plain", &format!("[uwsgi]\n{app}"), uid, 0);
    let r = e.wait_serving("plain", "/", DEADLINE);
    assert_eq!(r.text(), format!("{uid} {gid}"));
    // rsgid's default socket is given to the owner.
    let meta = fs::metadata(e.run_dir().join("plain.sock")).expect("default socket");
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    // uid naming the owner, and a group the owner belongs to.
    write_as_user(
        &e,
        "extra",
        &format!("[uwsgi]\n{app}uid = {USER}\ngid = {EXTRA_GROUP}\n"),
        uid,
        gid,
    );
    let r = e.wait_serving("extra", "/", DEADLINE);
    assert_eq!(r.text(), format!("{uid} {extra}"));

    // Fixing the file (the owner's own uid) makes it run.
    write_as_user(
        &e,
        "root",
        &format!("[uwsgi]\n{app}uid = {uid}\n"),
        uid,
        gid,
    );
    let r = e.wait_serving("root", "/", DEADLINE);
    assert_eq!(r.text(), format!("{uid} {gid}"));
}

#[test]
fn tyrant_vassal_files_and_sockets_are_read_and_bound_with_the_owners_rights() {
    let (uid, gid, _) = tyrant_user();
    let unprivileged_from: u16 =
        fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .expect("read ip_unprivileged_port_start")
            .trim()
            .parse()
            .expect("a port number");
    assert!(
        unprivileged_from > 900,
        "net.ipv4.ip_unprivileged_port_start is {unprivileged_from}: every user may bind \
         low ports on this machine, so the test cannot tell root's rights from the user's"
    );
    let e = tyrant_emperor();
    let home = user_dir(&e, uid, gid);
    let app = format!("wsgi-file = {}\n", path_str(&home.join("whoami.py")));
    let private = e.dir().join("root-only");
    fs::create_dir(&private).expect("mkdir root-only");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret = private.join("secret.ini");
    fs::write(&secret, "[uwsgi]\nsecret-token-9f3a = 1\n").expect("write secret");

    // A socket the user may create: served, and the file is the user's.
    let own = home.join("own.sock");
    write_as_user(
        &e,
        "own",
        &format!("[uwsgi]\n{app}socket = {}\n", path_str(&own)),
        uid,
        gid,
    );
    let addr = Addr::Unix(own.clone());
    wait_until(DEADLINE, "the user's socket to answer", || {
        uwsgi_get(&addr, "/").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(fs::metadata(&own).expect("own.sock").uid(), uid);

    // A socket in a directory only root can write: refused.
    let inside = private.join("x.sock");
    write_as_user(
        &e,
        "rootdir",
        &format!("[uwsgi]\n{app}socket = {}\n", path_str(&inside)),
        uid,
        gid,
    );
    let line = refused(&e, "rootdir", "ermission denied");
    assert!(line.contains(path_str(&inside)), "{line}");
    assert!(!inside.exists());

    // A port below ip_unprivileged_port_start: refused (root could bind it).
    let port = (600..900)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 900");
    write_as_user(
        &e,
        "lowport",
        &format!("[uwsgi]\n{app}http-socket = 127.0.0.1:{port}\n"),
        uid,
        gid,
    );
    refused(&e, "lowport", "ermission denied");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // Including a file only root can read: refused, and nothing of it is shown.
    write_as_user(
        &e,
        "incl",
        &format!("[uwsgi]\n{app}ini = {}\n", path_str(&secret)),
        uid,
        gid,
    );
    refused(&e, "incl", "ermission denied");
    assert!(!e.log().contains("secret-token-9f3a"), "{}", e.log());

    // A symlink the user owns to a file someone else owns is not run as either.
    let other = e.dir().join("other.ini");
    fs::write(&other, format!("[uwsgi]\n{app}")).expect("write other.ini");
    chown(&other, 65534, 65534);
    let link = e.ini_path("link");
    std::os::unix::fs::symlink(&other, &link).expect("symlink");
    chown(&link, uid, gid);
    refused(&e, "link", "refusing to run another user's file");
}
