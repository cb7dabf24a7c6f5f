//! uWSGI's ini dialect end to end (issue 21, item 1): a config written the way uWSGI reads
//! it runs unchanged under the real `rsgi` with a real app. One file uses a bare flag
//! (`master`), a number followed by an inline comment, magic variables (`%k`, `%d`, `%n`),
//! placeholders set on a later line and in an included file, an environment default, and a
//! `%(name)` nothing sets (kept as written, as `log-format`'s request variables are).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rsgi_e2e::*;

const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// `GET /env?name=NAME` on `environ_app`: the worker's `os.environ[NAME]`.
fn env_of(addr: &Addr, name: &str) -> String {
    let r = get(addr, &format!("/env?name={name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn a_config_in_uwsgi_dialect_runs_unchanged() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    write_file(
        dir.path(),
        "extra.ini",
        "[uwsgi]\nplace = from-the-include\n",
    );
    let ini = format!(
        "[uwsgi]\n\
         http-socket = %(addr)\n\
         chdir = %(apps)\n\
         module = environ_app\n\
         master\n\
         max-requests = 1000  ; restart workers now and then\n\
         env = CORES=%k\n\
         env = NAME=%n\n\
         env = WHERE=%(place)\n\
         env = LITERAL=%(not_set_anywhere)\n\
         env = DEFAULTED=$(RSGI_E2E_UNSET_VARIABLE:-fallback)\n\
         ini = %dextra.ini\n\
         ; set after the lines that use them\n\
         addr = {}\n\
         apps = {}\n",
        addr.arg(),
        path_str(&apps_dir())
    );
    let rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);

    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(env_of(&addr, "CORES"), cores.to_string());
    assert_eq!(env_of(&addr, "NAME"), "app");
    assert_eq!(env_of(&addr, "WHERE"), "from-the-include");
    assert_eq!(env_of(&addr, "LITERAL"), "%(not_set_anywhere)");
    assert_eq!(env_of(&addr, "DEFAULTED"), "fallback");

    // The bare `master` line turned the master on: the worker is not the process started.
    let worker: i32 = get(&addr, "/pid").text().trim().parse().unwrap();
    assert_ne!(
        worker,
        rsgi.pid().as_raw(),
        "no master: the bare 'master' line was lost"
    );

    // What stayed as written and the comment after the number are told, with file:line.
    let log = rsgi.log();
    assert!(
        log.contains("app.ini:6") && log.contains("read as 1000"),
        "no notice for the inline comment:\n{log}"
    );
    assert!(
        log.contains("app.ini:10") && log.contains("%(not_set_anywhere)"),
        "no notice for the unresolved placeholder:\n{log}"
    );
}

#[test]
fn a_placeholder_that_refers_to_itself_is_an_error_not_a_hang() {
    let dir = tempdir();
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\nhttp-socket = {}\na = %(b)\nb = x%(a)\nchdir = %(a)\n",
            free_addr()
        ),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&ini)], EXIT_DEADLINE);
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(
        log.contains("app.ini:3: %(b) refers to itself: b -> a -> b"),
        "log:\n{log}"
    );
}

#[test]
fn a_uwsgi_feature_rsgi_lacks_is_refused_with_what_to_use_instead() {
    let dir = tempdir();
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\nhttp-socket = {}\nmodule = hello\nspooler = /var/spool/app\n",
            free_addr()
        ),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&ini)], EXIT_DEADLINE);
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(
        log.contains(
            "app.ini:4: spooler: not supported by rsgi: rsgi has no spooler: run a task queue"
        ),
        "log:\n{log}"
    );
    assert!(!log.contains("unknown option"), "log:\n{log}");
}

#[test]
fn config_logic_and_include_choose_what_applies() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    write_file(
        dir.path(),
        "extra.xml",
        "<uwsgi><env>FROM_XML=yes</env></uwsgi>",
    );
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\n\
             http-socket = {}\n\
             chdir = {}\n\
             module = environ_app\n\
             if-env = RSGI_E2E_MODE=prod\n\
             env = MODE=production\n\
             else\n\
             env = MODE=other\n\
             endif\n\
             if-exists = %dextra.xml\n\
             include = %(_)\n\
             endif\n\
             if-exists = %dmissing.ini\n\
             include = %(_)\n\
             endif\n\
             for = A B\n\
             env = LOOP_%(_)=%(_)\n\
             endfor\n",
            addr.arg(),
            path_str(&apps_dir())
        ),
    );
    let _rsgi = Rsgi::spawn(
        dir.path(),
        &["--ini", path_str(&ini)],
        &[("RSGI_E2E_MODE", "prod")],
    )
    .ready(&addr);
    assert_eq!(env_of(&addr, "MODE"), "production");
    assert_eq!(env_of(&addr, "FROM_XML"), "yes");
    assert_eq!(env_of(&addr, "LOOP_A"), "A");
    assert_eq!(env_of(&addr, "LOOP_B"), "B");
}

/// The rest of uWSGI's config logic (`core/config.c`'s `uwsgi_logic_opt_*`), with the real
/// binary: `for-readline` makes one socket per line of a file, `for-glob` includes every
/// `conf.d/*.ini` in order, `if-not-reload`/`if-reload` pick a value that changes when
/// the master re-reads its config for a SIGHUP reload, and `if-plugin = python3` holds.
#[test]
fn for_readline_for_glob_and_if_reload() {
    let dir = tempdir();
    let (a, b) = (free_addr(), free_addr());
    write_file(dir.path(), "addrs.txt", format!("{a}\n{b}\n"));
    let confd = dir.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    write_file(
        &confd,
        "20-b.ini",
        "[uwsgi]\nenv = ORDER=%(order)b\nset-ph = order=%(order)b\n",
    );
    write_file(&confd, "10-a.ini", "[uwsgi]\nset-ph = order=a\n");
    write_file(&confd, "skip.txt", "[uwsgi]\nenv = SKIPPED=yes\n");
    let d = path_str(dir.path());
    let ini = format!(
        "[uwsgi]\nmaster = true\nchdir = {apps}\nwsgi-file = environ_app.py\n\
         for-readline = {d}/addrs.txt\nhttp-socket = %(_)\nendfor\n\
         for-glob = {d}/conf.d/*.ini\ninclude = %(_)\nendfor\n\
         if-not-reload\nenv = PHASE=first\nendif\n\
         if-reload\nenv = PHASE=reload\nendif\n\
         if-plugin = python3\nenv = PY=%(_)\nendif\n",
        apps = path_str(&apps_dir()),
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini);
    let (a, b) = (Addr::Tcp(a), Addr::Tcp(b));
    rsgi.wait_ready(&a, Duration::from_secs(30));
    rsgi.wait_ready(&b, Duration::from_secs(30));
    assert_eq!(env_of(&a, "PHASE"), "first");
    assert_eq!(env_of(&b, "PY"), "python3");
    // 10-a.ini set the placeholder before 20-b.ini read it: sorted order.
    assert_eq!(env_of(&a, "ORDER"), "ab");
    assert_eq!(env_of(&a, "SKIPPED"), "<unset>");

    rsgi.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(
        Duration::from_secs(30),
        "the reloaded workers to see PHASE=reload",
        || http_get(&a, "/env?name=PHASE").is_ok_and(|r| r.status == 200 && r.text() == "reload"),
    );
}

/// Process options seen in public configs, on the real binary: `print` is printed,
/// `import` runs a module and a `.py` file before the app (in the master, which preloads),
/// `umask`, `max-fd` and `chdir2` show in the worker's `/proc` entry.
#[test]
fn print_import_umask_max_fd_and_chdir2() {
    let dir = tempdir();
    let addr = free_addr();
    write_file(
        dir.path(),
        "early_mod.py",
        "import os\nos.environ['EARLY_MOD'] = 'yes'\n",
    );
    write_file(
        dir.path(),
        "early_file.py",
        "import os\nos.environ['EARLY_FILE'] = os.environ.get('EARLY_MOD', 'no')\n",
    );
    let after = dir.path().join("after");
    std::fs::create_dir(&after).unwrap();
    let d = path_str(dir.path());
    let ini = format!(
        "[uwsgi]\nmaster = true\nprocesses = 1\nhttp-socket = {addr}\nchdir = {apps}\n\
         wsgi-file = environ_app.py\npythonpath = {d}\nprint = ---- serving %n ----\n\
         import = early_mod\nimport = {d}/early_file.py\numask = 027\nmax-fd = 2345\n\
         chdir2 = {d}/after\n",
        apps = path_str(&apps_dir()),
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini);
    let addr = Addr::Tcp(addr);
    rsgi.wait_ready(&addr, Duration::from_secs(30));
    assert!(rsgi.log_contains("---- serving app ----"), "{}", rsgi.log());
    assert_eq!(env_of(&addr, "EARLY_MOD"), "yes");
    assert_eq!(
        env_of(&addr, "EARLY_FILE"),
        "yes",
        "the file ran after the module"
    );
    let pid: i32 = get(&addr, "/pid").text().trim().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Umask:\t0027"), "{status}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(nofile.split_whitespace().nth(3), Some("2345"), "{nofile}");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, after.canonicalize().unwrap());
}

/// `protocol = http` (set after the socket line, as configs do) makes a `socket` line
/// speak HTTP: a plain HTTP client gets the app's answer.
#[test]
fn protocol_http_makes_socket_lines_http() {
    let dir = tempdir();
    let addr = free_addr();
    let ini = format!(
        "[uwsgi]\nsocket = {addr}\nchdir = {}\nmodule = hello\nprotocol = http\n",
        path_str(&apps_dir())
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini);
    let addr = Addr::Tcp(addr);
    rsgi.wait_ready(&addr, Duration::from_secs(30));
    assert_eq!(get(&addr, "/").text(), "Hello World");
}

/// `if-hostname-match` / `if-not-hostname-match` with the real binary against this
/// machine's host name (`/proc/sys/kernel/hostname`), and a bad regexp refused at its line.
#[test]
fn hostname_match_picks_what_applies() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name from /proc/sys/kernel/hostname")
        .trim()
        .to_owned();
    assert!(!host.is_empty(), "this machine has an empty host name");
    let exact = format!("^{}$", host.replace('.', "\\."));
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\n\
             http-socket = {}\n\
             chdir = {}\n\
             module = environ_app\n\
             if-hostname-match = {exact}\n\
             env = EXACT=yes\n\
             else\n\
             env = EXACT=no\n\
             endif\n\
             if-hostname-match = ^no-such-host-rsgi-e2e$\n\
             env = OTHER=yes\n\
             else\n\
             env = OTHER=no\n\
             endif\n\
             if-not-hostname-match = ^no-such-host-rsgi-e2e$\n\
             env = NOT=yes\n\
             endif\n",
            addr.arg(),
            path_str(&apps_dir())
        ),
    );
    let rsgi = Rsgi::spawn(dir.path(), &["--ini", path_str(&ini)], &[]).ready(&addr);
    assert_eq!(env_of(&addr, "EXACT"), "yes", "host name {host:?}");
    assert_eq!(env_of(&addr, "OTHER"), "no");
    assert_eq!(env_of(&addr, "NOT"), "yes");
    drop(rsgi);

    let bad = write_file(
        dir.path(),
        "bad.ini",
        format!(
            "[uwsgi]\nhttp-socket = {}\nmodule = hello\nif-hostname-match = web(\nendif\n",
            free_addr()
        ),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&bad)], EXIT_DEADLINE);
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(
        log.contains("bad.ini:4: if-hostname-match: bad regexp 'web(': unclosed group"),
        "log:\n{log}"
    );
}
