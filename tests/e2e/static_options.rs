//! uWSGI's other static-file options (issue 21): `check-static`, `static-map2` (the
//! prefix kept in the path), `static-index`, `static-gzip-all`, `static-expires-type`;
//! and `wsgi-disable-file-wrapper`. Real rsgi, real apps, real files.
#![allow(clippy::unwrap_used)]

use rsgi_e2e::*;

#[test]
fn check_static_map2_index_gzip_and_expires() {
    let dir = tempdir();
    let d = dir.path();
    write_file(d, "docroot/robots.txt", "User-agent: *\n");
    write_file(d, "docroot/site/index.html", "<h1>index</h1>\n");
    write_file(d, "assets/assets/app.css", "body { color: red }\n");
    write_file(
        d,
        "assets/assets/app.css.gz",
        b"\x1f\x8bnot-really-gzip".as_slice(),
    );
    let addr = Addr::Tcp(free_addr());
    let mut args = vec![
        "--http-socket".to_owned(),
        addr.arg(),
        "--check-static".to_owned(),
        path_str(&d.join("docroot")).to_owned(),
        "--static-map2".to_owned(),
        format!("/assets={}", path_str(&d.join("assets"))),
        "--static-index".to_owned(),
        "index.html".to_owned(),
        "--static-gzip-all".to_owned(),
        "--static-expires-type".to_owned(),
        "text/css=3600".to_owned(),
    ];
    args.extend(app_args("hello"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _rsgi = Rsgi::start_in(d, &args).ready(&addr);

    assert_eq!(get(&addr, "/robots.txt").text(), "User-agent: *\n");
    assert_eq!(get(&addr, "/site/").text(), "<h1>index</h1>\n");
    assert_eq!(get(&addr, "/site").text(), "<h1>index</h1>\n");
    // static-map2: DIR + the whole path, so DIR/assets/app.css
    let css = get(&addr, "/assets/app.css");
    assert_eq!(css.text(), "body { color: red }\n");
    assert_eq!(css.header("content-encoding"), None);
    let expires = css.header("expires").expect("Expires for text/css");
    let at = httpdate_secs(expires);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(at >= now + 3500 && at <= now + 3700, "Expires {expires}");
    // static-gzip-all: the .gz twin for a client that accepts gzip
    let gz = request(
        &addr,
        b"GET /assets/app.css HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(gz.body, b"\x1f\x8bnot-really-gzip");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.header("content-type").unwrap().starts_with("text/css"));
    // Everything else: the app.
    assert_eq!(get(&addr, "/elsewhere").text(), "Hello World");
    assert_eq!(get(&addr, "/a/../robots.txt").status, 200);
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_secs(value: &str) -> u64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", value, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn wsgi_disable_file_wrapper_leaves_it_out() {
    let on = serve_http("environ_app", &[]);
    let env = get(&on.addr, "/environ").json();
    assert!(env.get("wsgi.file_wrapper").is_some(), "{env}");
    let off = serve_http("environ_app", &["--wsgi-disable-file-wrapper"]);
    let env = get(&off.addr, "/environ").json();
    assert!(env.get("wsgi.file_wrapper").is_none(), "{env}");
    assert!(env.get("wsgi.input").is_some(), "{env}");
}
