//! Health for probes (issue 18): `/livez`, `/readyz`, `/readyz/<vassal>` on the metrics
//! port and the control socket, `rsgictl health`, `rsgi_vassal_ready`, against the real
//! rsgid with a serving vassal and a failing one.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rsgi_e2e::*;

const DEADLINE: Duration = Duration::from_secs(30);

fn hello_ini() -> String {
    format!(
        "[uwsgi]\nwsgi-file = {}\n",
        path_str(&apps_dir().join("hello.py"))
    )
}

/// `GET path` on the control socket: (status, body).
fn control_get(e: &Emperor, path: &str) -> (u16, String) {
    let mut s = UnixStream::connect(e.control_socket()).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: rsgid\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out[9..12].parse().expect("status");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `GET path` on the metrics port: (status, body).
fn metrics_get(addr: &Addr, path: &str) -> (u16, String) {
    let r = http_get(addr, path).expect("GET on the metrics port");
    (r.status, r.text())
}

#[test]
fn probes_say_what_is_not_ready() {
    let addr = free_addr();
    let listen = addr.to_string();
    let mut e = Emperor::start(&["--metrics", &listen, "--backoff-base", "0.05"]);
    let metrics = Addr::Tcp(addr);
    e.write_vassal("good", &hello_ini());
    e.write_vassal("broken", "[uwsgi]\nwsgi-file = /nonexistent/app.py\n");
    e.wait_serving("good", "/", DEADLINE);

    // Live on both listeners.
    assert_eq!(metrics_get(&metrics, "/livez"), (200, "ok\n".to_owned()));
    assert_eq!(control_get(&e, "/livez"), (200, "ok\n".to_owned()));

    // Not ready: the broken vassal, named with its state.
    let mut last = (0, String::new());
    wait_until(DEADLINE, "/readyz names broken", || {
        last = metrics_get(&metrics, "/readyz");
        last.0 == 503 && last.1.contains("broken: ")
    });
    assert!(!last.1.contains("good"), "{last:?}");
    assert_eq!(control_get(&e, "/readyz").0, 503);
    assert_eq!(
        metrics_get(&metrics, "/readyz/good"),
        (200, "ready\n".to_owned())
    );
    assert_eq!(metrics_get(&metrics, "/readyz/broken").0, 503);
    assert_eq!(metrics_get(&metrics, "/readyz/nope").0, 404);
    // The exec probe.
    let (code, text) = e.rsgictl(&["health"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("broken: "), "{text}");
    assert_eq!(e.rsgictl(&["health", "good"]).0, 0);
    assert_eq!(e.rsgictl(&["health", "nope"]).0, 4);
    // The metric.
    let text = metrics_get(&metrics, "/metrics").1;
    assert!(
        text.contains("rsgi_vassal_ready{vassal=\"good\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rsgi_vassal_ready{vassal=\"broken\"} 0"),
        "{text}"
    );

    // Stopped on request, it no longer counts: ready.
    assert_eq!(e.rsgictl(&["stop", "broken"]).0, 0);
    wait_until(DEADLINE, "/readyz once broken is stopped", || {
        metrics_get(&metrics, "/readyz").0 == 200
    });
    assert_eq!(e.rsgictl(&["health"]).0, 0);
}

#[test]
fn ready_vassals_chooses_what_counts() {
    let mut e = Emperor::start(&["--ready-vassals", "good,later"]);
    e.write_vassal("good", &hello_ini());
    e.write_vassal("broken", "[uwsgi]\nwsgi-file = /nonexistent/app.py\n");
    e.wait_serving("good", "/", DEADLINE);
    // `later` does not exist yet: not ready, and said so; broken does not count.
    let (code, text) = control_get(&e, "/readyz");
    assert_eq!(code, 503, "{text}");
    assert!(
        text.contains("later: no such vassal") && !text.contains("broken"),
        "{text}"
    );
    e.write_vassal("later", &hello_ini());
    e.wait_serving("later", "/", DEADLINE);
    wait_until(DEADLINE, "ready with good and later", || {
        control_get(&e, "/readyz").0 == 200
    });
}
