//! Configuration: option errors and their exit codes, app import failures, virtualenvs,
//! `env`, `pythonpath`, and command lines copied from real uWSGI deployments.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use rsgi_e2e::*;

const EXIT_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn unknown_option_exits_78_with_file_line_and_suggestion() {
    let dir = tempdir();
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\nhttp-socket = {}\nprocesess = 2\nchdir = {}\nmodule = hello\n",
            free_addr(),
            path_str(&apps_dir())
        ),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&ini)], EXIT_DEADLINE);
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(log.contains("app.ini:3"), "no file:line in:\n{log}");
    assert!(log.contains("did you mean"), "no suggestion in:\n{log}");
    assert!(
        log.contains("processes"),
        "the suggestion names the option:\n{log}"
    );
}

#[test]
fn bad_option_value_exits_78() {
    let dir = tempdir();
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\nhttp-socket = {}\nprocesses = many\nchdir = {}\nmodule = hello\n",
            free_addr(),
            path_str(&apps_dir())
        ),
    );
    let (status, log) = Rsgi::run(dir.path(), &["--ini", path_str(&ini)], EXIT_DEADLINE);
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(log.contains("app.ini:3"), "no file:line in:\n{log}");
}

#[test]
fn uwsgi_only_options_are_accepted_with_a_notice() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nplugins = python3\nenable-threads = true\nhttp-socket = {}\n\
         chdir = {}\nmodule = hello\n",
        addr.arg(),
        path_str(&apps_dir())
    );
    let _rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    assert_eq!(get(&addr, "/").text(), "Hello World");
}

#[test]
fn import_error_exits_22_with_traceback() {
    let dir = tempdir();
    let mut args = vec!["--http-socket".to_owned(), free_addr().to_string()];
    args.extend(app_args("import_error"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, EXIT_DEADLINE);
    assert_eq!(status.code(), Some(22), "log:\n{log}");
    assert!(log.contains("Traceback"), "no traceback in:\n{log}");
    assert!(
        log.contains("this_module_does_not_exist_rsgi_e2e"),
        "the traceback names the missing module:\n{log}"
    );
}

#[test]
fn missing_callable_exits_22() {
    let dir = tempdir();
    let mut args = vec!["--http-socket".to_owned(), free_addr().to_string()];
    args.extend(app_args("hello"));
    args.extend(["--callable".to_owned(), "no_such_callable".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, EXIT_DEADLINE);
    assert_eq!(status.code(), Some(22), "log:\n{log}");
    assert!(log.contains("no_such_callable"), "log:\n{log}");
}

#[test]
fn venv_for_another_python_is_refused() {
    let dir = tempdir();
    let fake = dir.path().join("venv39");
    fs::create_dir_all(fake.join("lib/python3.9/site-packages")).unwrap();
    fs::create_dir_all(fake.join("bin")).unwrap();
    write_file(
        &fake,
        "pyvenv.cfg",
        "home = /usr/local/bin\ninclude-system-site-packages = false\nversion = 3.9.2\n",
    );
    let mut args = vec!["--http-socket".to_owned(), free_addr().to_string()];
    args.extend(app_args("hello"));
    args.extend(["--home".to_owned(), path_str(&fake).to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, log) = Rsgi::run(dir.path(), &args, EXIT_DEADLINE);
    assert!(
        status.code().is_some(),
        "killed by a signal ({status}) instead of exiting cleanly; log:\n{log}"
    );
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(
        log.contains("3.9"),
        "the message names the venv's Python:\n{log}"
    );
    assert!(
        log.contains("3.11"),
        "the message names rsgi's Python:\n{log}"
    );
    assert!(!log.contains("Fatal Python error"), "log:\n{log}");
}

#[test]
fn home_venv_makes_its_packages_importable() {
    let venv = venv();
    let s = serve_http("environ_app", &["--home", path_str(&venv)]);
    let resp = get(&s.addr, "/import?name=django");
    assert_eq!(resp.status, 200, "{}", s.rsgi.log());
    let file = resp.text();
    assert!(
        file.starts_with(path_str(&venv)) && file.contains("site-packages/django"),
        "django came from {file}, not from {}",
        venv.display()
    );
}

/// rsgi carries CPython's core statically (vassal/build.rs): C extension modules, from
/// the standard library and from a PyPI wheel, must find the C API in the executable,
/// in a single process and in a worker forked from the master that imported the app,
/// and no libpython is mapped. Fails if the build drops `--export-dynamic` (the modules do not load) or
/// `+whole-archive` (symbols rsgi itself never calls are missing), or goes back to
/// linking the shared libpython.
#[test]
fn c_extension_modules_find_the_c_api_in_the_binary() {
    let venv = venv();
    for extra in [&[][..], &["--master", "--processes", "2"][..]] {
        let mut args = vec!["--home", path_str(&venv)];
        args.extend_from_slice(extra);
        let s = serve_http("c_ext_app", &args);
        let resp = get(&s.addr, "/");
        assert_eq!(resp.status, 200, "{}\nlog:\n{}", resp.text(), s.rsgi.log());
        let results = resp.json();
        let checks = results.as_object().unwrap();
        let names = [
            "_json",
            "_decimal",
            "_hashlib",
            "_ssl",
            "_sqlite3",
            "ctypes.pythonapi",
            "markupsafe._speedups",
        ];
        for name in names {
            assert_eq!(checks[name], "ok", "{name} with {extra:?}: {results}");
        }
        assert_eq!(
            results["libpython_mappings"],
            serde_json::json!([]),
            "with {extra:?}: a shared libpython is mapped: {results}"
        );
    }
}

#[test]
fn env_option_sets_os_environ() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = environ_app\n\
         env = FOO=bar\nenv = WITH_EQUALS=a=b\n",
        addr.arg(),
        path_str(&apps_dir())
    );
    let _rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    assert_eq!(get(&addr, "/env?name=FOO").text(), "bar");
    assert_eq!(get(&addr, "/env?name=WITH_EQUALS").text(), "a=b");
    assert_eq!(get(&addr, "/env?name=NOT_SET_RSGI").text(), "<unset>");
}

#[test]
fn pythonpath_is_searched() {
    let dir = tempdir();
    let extra = dir.path().join("extra");
    write_file(&extra, "rsgi_pp_mod.py", "VALUE = 'from pythonpath'\n");
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = environ_app\npythonpath = {}\n",
        addr.arg(),
        path_str(&apps_dir()),
        path_str(&extra)
    );
    let _rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    let resp = get(&addr, "/import?name=rsgi_pp_mod");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "from pythonpath");
}

#[test]
fn pythonpath_and_module_without_chdir() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let apps = apps_dir();
    let _rsgi = Rsgi::start_in(
        dir.path(),
        &[
            "--http-socket",
            &addr.arg(),
            "--pythonpath",
            path_str(&apps),
            "--module",
            "hello:application",
        ],
    )
    .ready(&addr);
    assert_eq!(get(&addr, "/").text(), "Hello World");
}

/// Seed 004's first command line, with its paths pointed at the test apps:
/// `--http-socket ... --chdir DIR --wsgi-file REL --master --processes=4 --threads=2`.
#[test]
fn seed_004_command_line() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let processes = "--processes=4";
    let _rsgi = Rsgi::start_in(
        dir.path(),
        &[
            "--http-socket",
            &addr.arg(),
            "--chdir",
            path_str(&apps_dir()),
            "--wsgi-file",
            "wsgi_file_hello.py",
            "--master",
            processes,
            "--threads=2",
        ],
    )
    .ready(&addr);
    for _ in 0..8 {
        assert_eq!(get(&addr, "/").text(), "Hello from wsgi-file");
    }
}

/// Seed 002's ini (`http = ...`, `chdir`, `wsgi-file` with a full path, `processes`,
/// `threads`) serving a real Django project's `wsgi.py` from the test venv.
#[test]
fn seed_002_ini_with_django_wsgi_file() {
    let dir = tempdir();
    let project = django_project(dir.path());
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "# conf.ini\n[uwsgi]\nhttp = {}\nchdir = {p}/\nwsgi-file = {p}/mysite/wsgi.py\n\
         processes = 2\nthreads = 2\nhome = {}\n",
        addr.arg(),
        path_str(&venv()),
        p = path_str(&project),
    );
    let _rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    let resp = get(&addr, "/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains(DJANGO_INDEX_TEXT));
}

/// `--check-config` reads the config like a start would (notices included), names what it
/// would serve, and binds nothing: the port it names stays free.
#[test]
fn check_config_reports_a_complete_config_and_binds_nothing() {
    let dir = tempdir();
    let addr = free_addr();
    let ini = write_file(
        dir.path(),
        "app.ini",
        format!(
            "[uwsgi]\nmaster\nplugins = python3\nhttp-socket = {addr}\nmodule = no_such_module\n"
        ),
    );
    let (status, log) = Rsgi::run(
        dir.path(),
        &["--ini", path_str(&ini), "--check-config"],
        EXIT_DEADLINE,
    );
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    assert!(
        log.contains("app.ini:3: plugins: ignored: rsgi has Python built in"),
        "{log}"
    );
    assert!(
        log.contains(&format!("would listen on {addr} (http)")),
        "{log}"
    );
    assert!(log.contains("would load module no_such_module"), "{log}");
    assert!(log.contains("the configuration is complete"), "{log}");
    // Nothing was bound: the address is still free.
    std::net::TcpListener::bind(addr).expect("check-config left the port bound");
}

/// A fragment (no socket, no app) is incomplete: exit 78 naming the file and both gaps; a
/// config error is still the usual file:line error.
#[test]
fn check_config_names_what_is_missing() {
    let dir = tempdir();
    let ini = write_file(dir.path(), "frag.ini", "[uwsgi]\nprocesses = 2\n");
    let (status, log) = Rsgi::run(
        dir.path(),
        &["--ini", path_str(&ini), "--check-config"],
        EXIT_DEADLINE,
    );
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(log.contains("frag.ini: no socket"), "{log}");
    assert!(log.contains("no app"), "{log}");
    let bad = write_file(dir.path(), "bad.ini", "[uwsgi]\nprocesses = lots\n");
    let (status, log) = Rsgi::run(
        dir.path(),
        &["--ini", path_str(&bad), "--check-config"],
        EXIT_DEADLINE,
    );
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(log.contains("bad.ini:2"), "{log}");
}

/// Keys rsgi does not know, by what they are, through the real binary: a config's own
/// variable is ignored with a notice (uWSGI ignores it), `strict` makes it an error, a
/// typo of an option is an error with a suggestion, and a real uWSGI option rsgi lacks is
/// named as such, never "unknown option".
#[test]
fn unknown_keys_are_variables_typos_or_uwsgi_options() {
    let dir = tempdir();
    let base = format!("[uwsgi]\nhttp-socket = {}\nmodule = hello\n", free_addr());
    let check = |name: &str, extra: &str| {
        let ini = write_file(dir.path(), name, format!("{base}{extra}"));
        Rsgi::run(
            dir.path(),
            &["--ini", path_str(&ini), "--check-config"],
            EXIT_DEADLINE,
        )
    };
    let (status, log) = check(
        "var.ini",
        "base_dir = %D/..\nproject = blog\nchdir = /srv/%(project)\n",
    );
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("var.ini:4: base_dir: ignored: not an option of rsgi or uWSGI"),
        "{log}"
    );
    assert!(
        !log.contains("project: ignored"),
        "a used variable is no notice: {log}"
    );

    let (status, log) = check("strict.ini", "strict = true\nbase_dir = /srv\n");
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("strict.ini:5: unknown option 'base_dir' (strict = true"),
        "{log}"
    );

    let (status, log) = check("typo.ini", "vaccum = true\n");
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("typo.ini:4: unknown option 'vaccum' (did you mean 'vacuum'?)"),
        "{log}"
    );

    let (status, log) = check("uwsgi.ini", "tuntap-router = tun0\n");
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("uwsgi.ini:4: 'tuntap-router' is a uWSGI option rsgi does not have"),
        "{log}"
    );
}

/// The Docker idiom `hook-master-start = unix_signal:15 gracefully_kill_them_all` asks for
/// what rsgi does on SIGTERM anyway: a notice, and the config is complete; remapping a
/// signal is refused.
#[test]
fn unix_signal_hooks_rsgi_does_anyway_are_notices() {
    let dir = tempdir();
    let base = format!("[uwsgi]\nhttp-socket = {}\nmodule = hello\n", free_addr());
    let ok = write_file(
        dir.path(),
        "docker.ini",
        format!("{base}hook-master-start = unix_signal:15 gracefully_kill_them_all\n"),
    );
    let (status, log) = Rsgi::run(
        dir.path(),
        &["--ini", path_str(&ok), "--check-config"],
        EXIT_DEADLINE,
    );
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("docker.ini:4: hook-master-start: ignored: signal 15 already runs gracefully_kill_them_all"),
        "{log}"
    );
    let bad = write_file(
        dir.path(),
        "remap.ini",
        format!("{base}hook-master-start = unix_signal:15 reload_them_all\n"),
    );
    let (status, log) = Rsgi::run(
        dir.path(),
        &["--ini", path_str(&bad), "--check-config"],
        EXIT_DEADLINE,
    );
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains(
            "remap.ini:4: hook-master-start: unix_signal:15 reload_them_all: cannot remap a signal"
        ),
        "{log}"
    );
}
