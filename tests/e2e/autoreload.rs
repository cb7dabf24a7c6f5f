//! `py-autoreload` (issue 21): a module the app imported is edited on disk; the worker
//! notices (its loaded modules' files, checked every N seconds, as uWSGI's python
//! plugin does) and the vassal reloads gracefully with the new code, under load.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::{Duration, SystemTime};

use rsgi_e2e::*;

/// Every wait of this module: generous, the machine runs other tests in parallel.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn editing_an_imported_module_reloads_the_vassal() {
    let dir = tempdir();
    write_file(dir.path(), "helper.py", "VALUE = 'one'\n");
    write_file(
        dir.path(),
        "auto_app.py",
        "import helper\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [helper.VALUE.encode()]\n",
    );
    let addr = Addr::Tcp(free_addr());
    let ini = format!(
        "[uwsgi]\nhttp-socket = {}\nchdir = {}\nmodule = auto_app\nprocesses = 2\n\
         py-autoreload = 1\n",
        addr.arg(),
        path_str(dir.path())
    );
    let mut rsgi = Rsgi::start_ini(dir.path(), &ini).ready(&addr);
    rsgi.wait_log("2 worker(s) ready", DEADLINE);
    assert_eq!(get(&addr, "/").text(), "one");
    // Let the reloader record the files' times first.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!rsgi.log_contains("has been modified"), "{}", rsgi.log());

    let load = Load::http(2, &addr, "/");
    load.wait_more_ok(20, DEADLINE);
    let helper = write_file(dir.path(), "helper.py", "VALUE = 'two'\n");
    fs::File::options()
        .append(true)
        .open(&helper)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(2))
        .unwrap();
    wait_until(DEADLINE, "the new code to serve", || {
        get(&addr, "/").text() == "two"
    });
    load.wait_more_ok(20, DEADLINE);
    let report = load.stop();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);
    assert!(
        rsgi.log_contains(&format!(
            "py-autoreload: {} has been modified",
            path_str(&helper)
        )),
        "{}",
        rsgi.log()
    );
}
