//! `--log-format json` (issue 18): every line rsgid writes is one JSON object, the
//! vassals' own output and access lines included (with `vassal`), for log collectors.

use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn every_line_is_one_json_object() {
    let mut e = Emperor::start(&["--log-format", "json"]);
    e.write_vassal(
        "a",
        &format!(
            "[uwsgi]\nwsgi-file = {}\n",
            path_str(&apps_dir().join("hello.py"))
        ),
    );
    e.wait_serving("a", "/", DEADLINE);
    e.wait_log("\"GET / HTTP/1.1\\\" 200", DEADLINE);
    let log = e.log();
    let mut access = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["message"].is_string(), "{line}");
        if v["vassal"] == "a"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("\"GET / "))
        {
            access += 1;
        }
    }
    assert!(access >= 1, "no access line of vassal a:\n{log}");
}
