//! A Flask app (from PyPI) with `callable = app`.
#![allow(clippy::unwrap_used)]

use rsgi_e2e::*;

#[test]
fn flask_with_callable_app() {
    let venv = venv();
    let s = serve_http(
        "flask_app",
        &["--callable", "app", "--home", path_str(&venv)],
    );
    let index = get(&s.addr, "/");
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(index.text(), "Hello from Flask");

    let json = get(&s.addr, "/json?x=1&y=two");
    assert_eq!(json.status, 200);
    assert!(json
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let v = json.json();
    assert_eq!(v["framework"], "flask");
    assert_eq!(v["path"], "/json");
    assert_eq!(v["args"], serde_json::json!({"x": "1", "y": "two"}));

    let form = post(
        &s.addr,
        "/form",
        "application/x-www-form-urlencoded",
        b"name=Ada+L&age=36",
    );
    assert_eq!(form.status, 200);
    assert_eq!(form.text(), "name=Ada L age=36");

    assert_eq!(get(&s.addr, "/missing").status, 404);
}

#[test]
fn flask_ini_over_uwsgi_socket() {
    let dir = tempdir();
    let sock = dir.path().join("flask.sock");
    let ini = format!(
        "[uwsgi]\nsocket = {}\nchdir = {}\nmodule = flask_app\ncallable = app\n\
         virtualenv = {}\nmaster = true\nprocesses = 2\nthreads = 2\n",
        path_str(&sock),
        path_str(&apps_dir()),
        path_str(&venv())
    );
    let addr = Addr::Unix(sock);
    let _rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    let resp = uwsgi_request(&addr, &nginx_vars("GET", "/json", "a=b", &[]), b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["args"], serde_json::json!({"a": "b"}));
}
