//! A real Django project (from PyPI, created with `django-admin startproject` at test
//! time) served through nginx's `uwsgi_pass` and through `http-socket`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use rsgi_e2e::*;

/// The ini that serves the Django project in `project` on `socket_line`.
fn django_ini(project: &Path, socket_line: &str) -> String {
    format!(
        "[uwsgi]\n{socket_line}\nchdir = {p}\nmodule = mysite.wsgi\nhome = {venv}\n\
         static-map = /static={p}/staticfiles\nmaster = true\nprocesses = 2\n",
        p = path_str(project),
        venv = path_str(&venv()),
    )
}

/// GET the form, take the CSRF cookie and hidden field, POST them back.
fn csrf_round_trip(addr: &Addr) {
    let form = get(addr, "/form/");
    assert_eq!(form.status, 200, "{}", form.text());
    let cookie = cookie_value(&form, "csrftoken").expect("a csrftoken cookie");
    let token = input_value(&form.text(), "csrfmiddlewaretoken").expect("a hidden CSRF field");
    let body = format!("csrfmiddlewaretoken={token}&name=rsgi+user%21");
    let raw = format!(
        "POST /form/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Cookie: csrftoken={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let posted = request(addr, raw.as_bytes());
    assert_eq!(posted.status, 200, "{}", posted.text());
    assert_eq!(posted.text(), "posted name=rsgi user!");

    // Without the token, Django's CSRF middleware refuses the POST.
    let refused = post(
        addr,
        "/form/",
        "application/x-www-form-urlencoded",
        b"name=nobody",
    );
    assert_eq!(refused.status, 403);
}

fn static_file(addr: &Addr) {
    let css = get(addr, "/static/site.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.text(), DJANGO_CSS);
    assert!(
        css.header("content-type")
            .is_some_and(|t| t.starts_with("text/css")),
        "{:?}",
        css.headers
    );
    // A file collectstatic copied from django.contrib.admin.
    let admin = get(addr, "/static/admin/css/base.css");
    assert_eq!(admin.status, 200);
    assert!(admin.text().contains("body"));
}

#[test]
fn django_behind_nginx_uwsgi_pass() {
    let dir = tempdir();
    let project = django_project(dir.path());
    let sock = dir.path().join("dj.sock");
    let _rsgi = Rsgi::start_ini(
        dir.path(),
        &django_ini(&project, &format!("socket = {}", path_str(&sock))),
    )
    .ready(&Addr::Unix(sock.clone()));
    let nginx = Nginx::start(dir.path(), &sock);

    let index = get(&nginx.addr, "/");
    assert_eq!(index.status, 200, "{}\n{}", index.text(), nginx.error_log());
    assert!(index.text().contains(DJANGO_INDEX_TEXT));

    let meta = get(&nginx.addr, "/meta/").json();
    assert_eq!(meta["PATH_INFO"], "/meta/");
    assert_eq!(meta["wsgi.url_scheme"], "http");
    assert_eq!(meta["REMOTE_ADDR"], "127.0.0.1");

    csrf_round_trip(&nginx.addr);
    static_file(&nginx.addr);

    let missing = get(&nginx.addr, "/no/such/page/");
    assert_eq!(missing.status, 404);
}

#[test]
fn django_over_http_socket() {
    let dir = tempdir();
    let project = django_project(dir.path());
    let addr = Addr::Tcp(free_addr());
    let _rsgi = Rsgi::start_ini(
        dir.path(),
        &django_ini(&project, &format!("http-socket = {}", addr.arg())),
    )
    .ready(&addr);

    let index = get(&addr, "/");
    assert_eq!(index.status, 200, "{}", index.text());
    assert!(index.text().contains(DJANGO_INDEX_TEXT));
    csrf_round_trip(&addr);
    static_file(&addr);
}

#[test]
fn django_static_map_conditional_get_and_traversal() {
    let dir = tempdir();
    let project = django_project(dir.path());
    let addr = Addr::Tcp(free_addr());
    let _rsgi = Rsgi::start_ini(
        dir.path(),
        &django_ini(&project, &format!("http-socket = {}", addr.arg())),
    )
    .ready(&addr);

    let css = get(&addr, "/static/site.css");
    assert_eq!(css.status, 200);
    let last_modified = css
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let raw = format!(
        "GET /static/site.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         If-Modified-Since: {last_modified}\r\n\r\n"
    );
    let again = request(&addr, raw.as_bytes());
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    // settings.py lies outside STATIC_ROOT: never served, however the path is spelled.
    for path in [
        "/static/../mysite/settings.py",
        "/static/%2e%2e/mysite/settings.py",
        "/static/%2E%2E/%2E%2E/django/mysite/settings.py",
        "/static/..%2fmysite/settings.py",
        "/static//etc/passwd",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let bytes = http_request(&addr, raw.as_bytes()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("SECRET_KEY") && !text.contains("root:x:0:0"),
            "{path} leaked a file outside the static dir"
        );
    }
}
