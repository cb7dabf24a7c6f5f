//! `static-map = /static=/dir`: files served by the server itself, with content types,
//! conditional GETs, HEAD, and no way out of the mapped directory.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use rsgi_e2e::*;

const CSS: &str = "h1 { color: red; }\n";
const JS: &str = "console.log('rsgi');\n";
const SECRET: &str = "TOPSECRET do not serve\n";

fn static_dir(dir: &Path) -> String {
    write_file(dir, "static/style.css", CSS);
    write_file(dir, "static/js/app.js", JS);
    write_file(dir, "static/data.json", "{\"a\": 1}\n");
    write_file(dir, "secret.txt", SECRET);
    format!("/static={}", path_str(&dir.join("static")))
}

fn serve_static(uwsgi: bool) -> Served {
    let dir = tempdir();
    let map = static_dir(dir.path());
    let addr = if uwsgi {
        Addr::Unix(dir.path().join("s.sock"))
    } else {
        Addr::Tcp(free_addr())
    };
    let socket_opt = if uwsgi { "--socket" } else { "--http-socket" };
    let mut args = vec![socket_opt.to_owned(), addr.arg()];
    args.extend(app_args("hello"));
    args.extend(["--static-map".to_owned(), map]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rsgi = Rsgi::start_in(dir.path(), &args).ready(&addr);
    Served { rsgi, addr, dir }
}

#[test]
fn serves_files_with_content_types() {
    let s = serve_static(false);
    let css = get(&s.addr, "/static/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.text(), CSS);
    assert!(css
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
    assert_eq!(
        css.header("content-length"),
        Some(CSS.len().to_string().as_str())
    );
    assert!(css.header("last-modified").is_some());

    let js = get(&s.addr, "/static/js/app.js");
    assert_eq!(js.status, 200);
    assert_eq!(js.text(), JS);
    assert!(
        js.header("content-type")
            .unwrap_or("")
            .contains("javascript"),
        "{:?}",
        js.headers
    );
    let json = get(&s.addr, "/static/data.json");
    assert!(json
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));

    // Everything else goes to the app.
    assert_eq!(get(&s.addr, "/elsewhere").text(), "Hello World");
}

#[test]
fn if_modified_since_gives_304() {
    let s = serve_static(false);
    let css = get(&s.addr, "/static/style.css");
    let lm = css
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let cond = request(
        &s.addr,
        format!(
            "GET /static/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             If-Modified-Since: {lm}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(cond.status, 304);
    assert!(cond.body.is_empty());
    let old = request(
        &s.addr,
        b"GET /static/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          If-Modified-Since: Mon, 01 Jan 1990 00:00:00 GMT\r\n\r\n",
    );
    assert_eq!(old.status, 200);
    assert_eq!(old.text(), CSS);
}

#[test]
fn head_on_a_static_file() {
    let s = serve_static(false);
    let mut conn = HttpConn::connect(&s.addr).unwrap();
    let head = conn
        .request(b"HEAD /static/style.css HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(CSS.len().to_string().as_str())
    );
    assert_eq!(conn.get("/static/style.css").unwrap().text(), CSS);
}

#[test]
fn no_traversal_out_of_the_static_dir() {
    let s = serve_static(false);
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/js/../../secret.txt",
        "/static/./../secret.txt",
        "/static/..\\secret.txt",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let bytes = http_request(&s.addr, raw.as_bytes()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("TOPSECRET"),
            "{path} served a file outside the static dir"
        );
    }
    assert_eq!(get(&s.addr, "/static/style.css").text(), CSS);
}

#[test]
fn static_map_over_uwsgi() {
    let s = serve_static(true);
    let css = uwsgi_request(
        &s.addr,
        &nginx_vars("GET", "/static/style.css", "", &[]),
        b"",
    );
    assert_eq!(css.status, 200);
    assert_eq!(css.text(), CSS);
    assert!(css
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
    let packet = uwsgi_packet(&nginx_vars("GET", "/static/../secret.txt", "", &[]), b"");
    let up = uwsgi_raw(&s.addr, &packet, false).unwrap();
    assert!(!String::from_utf8_lossy(&up).contains("TOPSECRET"));
}
