//! `mount = /prefix=app` and `manage-script-name` (issue 21): several apps in one
//! vassal, chosen by `SCRIPT_NAME`; with `manage-script-name` the longest mountpoint
//! moves from `PATH_INFO` into `SCRIPT_NAME`, as uWSGI does. Real rsgi, real apps.
#![allow(clippy::unwrap_used)]

use rsgi_e2e::*;

/// `module = hello` (the default app) plus the environ app at `/env` (a file) and at
/// `/env/deep` (a module), over HTTP and uwsgi.
fn start(manage: bool) -> (Served, Addr) {
    let dir = tempdir();
    let http = Addr::Tcp(free_addr());
    let uwsgi = Addr::Unix(dir.path().join("u.sock"));
    let env_file = apps_dir().join("environ_app.py");
    let mut args = vec![
        "--http-socket".to_owned(),
        http.arg(),
        "--socket".to_owned(),
        uwsgi.arg(),
        "--master".to_owned(),
        "--processes".to_owned(),
        "2".to_owned(),
    ];
    args.extend(app_args("hello"));
    args.extend([
        "--mount".to_owned(),
        format!("/env={}", path_str(&env_file)),
        "--mount".to_owned(),
        "/env/deep=environ_app:application".to_owned(),
    ]);
    if manage {
        args.push("--manage-script-name".to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&http);
    (
        Served {
            rsgi,
            addr: http,
            dir,
        },
        uwsgi,
    )
}

fn script_and_path(resp: &HttpResponse) -> (String, String) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    let env = resp.json();
    (
        env["SCRIPT_NAME"].as_str().unwrap().to_owned(),
        env["PATH_INFO"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn manage_script_name_splits_at_the_longest_mountpoint() {
    let (s, uwsgi) = start(true);
    // (request path, SCRIPT_NAME, PATH_INFO the app sees)
    let cases = [
        ("/env/environ", "/env", "/environ"),
        ("/env/environ/x", "/env", "/environ/x"),
        ("/env/deep/environ", "/env/deep", "/environ"),
    ];
    for (path, script, info) in cases {
        let got = script_and_path(&get(&s.addr, path));
        assert_eq!(got, (script.to_owned(), info.to_owned()), "http {path}");
        let vars = nginx_vars("GET", path, "", &[]);
        let got = script_and_path(&uwsgi_request(&uwsgi, &vars, b""));
        assert_eq!(got, (script.to_owned(), info.to_owned()), "uwsgi {path}");
    }
    // Not under a mountpoint (or only by a prefix of a path segment): the default app.
    assert_eq!(get(&s.addr, "/environ").text(), "Hello World");
    assert_eq!(get(&s.addr, "/envy/environ").text(), "Hello World");
}

#[test]
fn without_manage_script_name_script_name_chooses_the_app() {
    let (s, uwsgi) = start(false);
    // HTTP requests have an empty SCRIPT_NAME: the default app, whatever the path.
    assert_eq!(get(&s.addr, "/env/environ").text(), "Hello World");
    // nginx sets SCRIPT_NAME itself (uwsgi_param SCRIPT_NAME /env): that app, with
    // PATH_INFO as sent.
    let vars = nginx_vars("GET", "/environ", "", &[("SCRIPT_NAME", "/env")]);
    let got = script_and_path(&uwsgi_request(&uwsgi, &vars, b""));
    assert_eq!(got, ("/env".to_owned(), "/environ".to_owned()));
    let vars = nginx_vars("GET", "/environ", "", &[("SCRIPT_NAME", "/env/deep/")]);
    let got = script_and_path(&uwsgi_request(&uwsgi, &vars, b""));
    assert_eq!(got, ("/env/deep/".to_owned(), "/environ".to_owned()));
    let vars = nginx_vars("GET", "/environ", "", &[("SCRIPT_NAME", "/nowhere")]);
    assert_eq!(uwsgi_request(&uwsgi, &vars, b"").text(), "Hello World");
}

#[test]
fn a_mount_alone_is_the_default_app_and_a_bad_one_fails_clearly() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let env_file = apps_dir().join("environ_app.py");
    let mount = format!("/only={}", path_str(&env_file));
    let args = [
        "--http-socket",
        &addr.arg(),
        "--mount",
        &mount,
        "--manage-script-name",
    ];
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    let got = script_and_path(&get(&addr, "/only/environ"));
    assert_eq!(got, ("/only".to_owned(), "/environ".to_owned()));
    // Outside the mountpoint: still this app (the only one is the default).
    let got = script_and_path(&get(&addr, "/environ"));
    assert_eq!(got, (String::new(), "/environ".to_owned()));
    drop(rsgi);

    let bad = tempdir();
    let args = [
        "--http-socket",
        &free_addr().to_string(),
        "--mount",
        "/x=no_such_module_here",
    ];
    let (status, log) = Rsgi::run(bad.path(), &args, std::time::Duration::from_secs(30));
    assert!(!status.success(), "{log}");
    assert!(log.contains("module no_such_module_here"), "{log}");
    assert!(log.contains("ModuleNotFoundError"), "{log}");
}
