//! The files in `examples/` work as shipped: the hello vassal ini (with its port moved to
//! a free one), the Flask example, and the nginx server block (`nginx -t`).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use rsgi_e2e::*;

#[test]
fn hello_vassal_ini_runs_with_percent_d() {
    let dir = tempdir();
    let examples = repo_dir().join("examples");
    // Same layout as examples/: vassals/hello.ini uses `chdir = %d../hello`.
    fs::create_dir_all(dir.path().join("hello")).unwrap();
    fs::copy(
        examples.join("hello/app.py"),
        dir.path().join("hello/app.py"),
    )
    .unwrap();
    let addr = free_addr();
    let ini = fs::read_to_string(examples.join("vassals/hello.ini"))
        .unwrap()
        .replace("127.0.0.1:8001", &addr.to_string());
    let ini_path = write_file(dir.path(), "vassals/hello.ini", ini);
    let addr = Addr::Tcp(addr);
    let _rsgi = Rsgi::start_in(dir.path(), &["--ini", path_str(&ini_path)]).ready(&addr);
    assert_eq!(get(&addr, "/").text(), "Hello World\n");
}

#[test]
fn flask_example_runs() {
    let dir = tempdir();
    let addr = Addr::Tcp(free_addr());
    let flask_dir = repo_dir().join("examples/flask");
    let _rsgi = Rsgi::start_in(
        dir.path(),
        &[
            "--http-socket",
            &addr.arg(),
            "--chdir",
            path_str(&flask_dir),
            "--module",
            "app",
            "--callable",
            "app",
            "--home",
            path_str(&venv()),
        ],
    )
    .ready(&addr);
    assert_eq!(get(&addr, "/").text(), "Hello from Flask on rsgi\n");
    let echo = post(
        &addr,
        "/api/echo?x=1",
        "application/x-www-form-urlencoded",
        b"a=b",
    );
    assert_eq!(echo.json()["form"], serde_json::json!({"a": "b"}));
}

#[test]
fn nginx_example_server_block_is_valid() {
    let dir = tempdir();
    let block = fs::read_to_string(repo_dir().join("examples/nginx/rsgi.conf")).unwrap();
    let d = path_str(dir.path());
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n{block}\n}}\n"
    );
    let conf_path = write_file(dir.path(), "conf/nginx.conf", conf);
    // `include uwsgi_params` is relative to the config's directory.
    fs::copy(UWSGI_PARAMS, dir.path().join("conf/uwsgi_params")).unwrap();
    let out = Command::new("nginx")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["-t", "-q", "-p", d, "-e"])
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .output()
        .expect("run nginx -t (scripts/test.sh installs nginx)");
    assert!(
        out.status.success(),
        "nginx -t rejects examples/nginx/rsgi.conf:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
