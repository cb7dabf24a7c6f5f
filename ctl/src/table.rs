//! What people read: the `list` table, the `status` page, uptimes. Pure functions of
//! the API types.

use rsgi_proto::control::{VassalList, VassalStatus, VassalSummary};

/// States in which a vassal has a process (`starting`, `ready`, `reloading`,
/// `stopping`) or serves on demand (`sleeping`: the next connection starts it). The
/// others (`stopped`, `failed`, `backoff`, `idle`) are "not running" for the LSB exit
/// code 3.
pub fn is_running(state: &str) -> bool {
    matches!(
        state,
        "starting" | "ready" | "reloading" | "stopping" | "sleeping"
    )
}

/// An uptime the way people say it: `12s`, `3m05s`, `1h02m`, `2d03h`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if secs < 60 {
        format!("{s}s")
    } else if secs < 3600 {
        format!("{m}m{s:02}s")
    } else if secs < 86_400 {
        format!("{}h{m:02}m", secs / 3600)
    } else {
        format!("{d}d{h:02}h")
    }
}

/// Align `rows` (the first is the header) in columns two spaces apart; the last column
/// is not padded, and no line has trailing spaces.
pub fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A header row for [`align`].
pub(crate) fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|&c| c.to_owned()).collect()
}

/// The value, or `-` for none (or empty).
pub(crate) fn or_dash(value: Option<String>) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// A generation number; `-` for 0 (none yet).
pub(crate) fn generation(generation: u64) -> String {
    or_dash((generation > 0).then(|| generation.to_string()))
}

/// The first line of a reason (tracebacks stay for `status`).
fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

fn row(v: &VassalSummary) -> Vec<String> {
    vec![
        v.name.clone(),
        v.state.clone(),
        or_dash(v.pid.map(|p| p.to_string())),
        generation(v.generation),
        or_dash(v.uptime_secs.map(uptime)),
        v.restarts.to_string(),
        or_dash(Some(v.sockets.join(","))),
        first_line(&v.reason),
    ]
}

/// `rsgictl list`: one row per vassal under a header. With more than one source, or
/// a remote one, each row names its source (and its state), and a table of the
/// sources follows.
pub fn list(list: &VassalList) -> String {
    let show_sources = list.sources.len() > 1 || list.sources.iter().any(|s| s.kind != "dir");
    let mut out = if list.vassals.is_empty() {
        "no vassals\n".to_owned()
    } else if show_sources {
        let mut rows = vec![header(&[
            "NAME", "STATE", "PID", "GEN", "UPTIME", "RESTARTS", "SOCKET", "SOURCE", "REASON",
        ])];
        rows.extend(list.vassals.iter().map(|v| {
            let mut r = row(v);
            let source = v
                .origin
                .as_ref()
                .map(|o| format!("{} ({})", o.source, o.source_state));
            r.insert(7, or_dash(source));
            r
        }));
        align(&rows)
    } else {
        let mut rows = vec![header(&[
            "NAME", "STATE", "PID", "GEN", "UPTIME", "RESTARTS", "SOCKET", "REASON",
        ])];
        rows.extend(list.vassals.iter().map(row));
        align(&rows)
    };
    if show_sources {
        let mut rows = vec![header(&["SOURCE", "STATE", "REVISION", "ERRORS", "NOTE"])];
        rows.extend(list.sources.iter().map(|s| {
            let mut note = s.message.clone().unwrap_or_default();
            if let (true, Some(ep)) = (note.is_empty(), &s.endpoint) {
                note = format!("via {ep}");
            }
            if !s.refused.is_empty() {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(&format!(
                    "refused (another source has them): {}",
                    s.refused.join(", ")
                ));
            }
            vec![
                s.source.clone(),
                s.state.clone(),
                or_dash(s.revision.map(|r| r.to_string())),
                s.errors.to_string(),
                note,
            ]
        }));
        out.push('\n');
        out.push_str(&align(&rows));
    }
    out
}

/// `rsgictl status NAME`: every field, the workers, then the last log lines.
pub fn status(s: &VassalStatus) -> String {
    let v = &s.summary;
    let mut fields = vec![
        ("state", v.state.clone()),
        ("pid", or_dash(v.pid.map(|p| p.to_string()))),
        ("generation", generation(v.generation)),
        ("uptime", or_dash(v.uptime_secs.map(uptime))),
        ("restarts", v.restarts.to_string()),
        ("sockets", or_dash(Some(v.sockets.join(", ")))),
    ];
    if !v.reason.is_empty() {
        fields.push(("reason", v.reason.clone()));
    }
    if let Some(o) = &v.origin {
        fields.push(("source", format!("{} ({})", o.source, o.source_state)));
        if let Some(key) = &o.key {
            fields.push(("key", key.clone()));
        }
        if let Some(rev) = o.mod_revision {
            fields.push(("mod revision", rev.to_string()));
        }
    }
    fields.extend([
        ("config", s.config.clone()),
        ("last exit", or_dash(s.last_exit.clone())),
        ("last error", or_dash(s.last_error.clone())),
    ]);
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{}\n", v.name);
    for (key, value) in fields {
        // Multi-line values (tracebacks) continue under the value column.
        let indent = format!("\n  {:width$}  ", "");
        out.push_str(&format!(
            "  {key:width$}  {}\n",
            value.lines().collect::<Vec<_>>().join(&indent)
        ));
    }
    if s.workers.is_empty() {
        out.push_str(&format!("  {:width$}  -\n", "workers"));
    } else {
        out.push_str("  workers\n");
        let mut rows = vec![header(&["ID", "PID", "STATUS", "REQUESTS"])];
        rows.extend(s.workers.iter().map(|w| {
            vec![
                w.id.to_string(),
                w.pid.to_string(),
                w.status.clone(),
                w.requests.to_string(),
            ]
        }));
        for line in align(&rows).lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    if s.log.is_empty() {
        out.push_str("  log: nothing captured yet\n");
    } else {
        let n = s.log.len();
        let plural = if n == 1 { "line" } else { "lines" };
        out.push_str(&format!("  log (last {n} {plural}):\n"));
        for line in &s.log {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rsgi_proto::control::WorkerInfo;

    fn summary(name: &str, state: &str) -> VassalSummary {
        VassalSummary {
            name: name.into(),
            state: state.into(),
            pid: Some(4242),
            generation: 3,
            uptime_secs: Some(3725),
            restarts: 1,
            sockets: vec!["unix:/run/rsgi/app.sock".into()],
            reason: String::new(),
            origin: None,
        }
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(12), "12s");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(60), "1m00s");
        assert_eq!(uptime(185), "3m05s");
        assert_eq!(uptime(3599), "59m59s");
        assert_eq!(uptime(3600), "1h00m");
        assert_eq!(uptime(3725), "1h02m");
        assert_eq!(uptime(86_399), "23h59m");
        assert_eq!(uptime(86_400 * 2 + 3 * 3600 + 7), "2d03h");
    }

    #[test]
    fn columns_align_without_trailing_spaces() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["long".to_owned(), "x".to_owned(), String::new()],
            vec!["é".to_owned(), "yyy".to_owned(), "last".to_owned()],
        ];
        assert_eq!(align(&rows), "A     BB   C\nlong  x\né     yyy  last\n");
    }

    #[test]
    fn the_list_table() {
        let mut failed = summary("zeta-longer-name", "failed");
        failed.pid = None;
        failed.uptime_secs = None;
        failed.generation = 0;
        failed.sockets.clear();
        failed.reason = "exited with exit code 1\nTraceback ...".into();
        let text = list(&VassalList {
            vassals: vec![summary("app", "ready"), failed],
            sources: vec![],
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME              STATE   PID   GEN  UPTIME  RESTARTS  SOCKET                   REASON"
        );
        assert_eq!(
            lines[1],
            "app               ready   4242  3    1h02m   1         unix:/run/rsgi/app.sock"
        );
        assert_eq!(
            lines[2],
            "zeta-longer-name  failed  -     -    -       1         -                        exited with exit code 1 …"
        );
        // Every column starts at the same offset on every line.
        let at = |line: &str, col: &str| line.find(col).unwrap();
        assert_eq!(at(lines[0], "STATE"), at(lines[1], "ready"));
        assert_eq!(at(lines[0], "STATE"), at(lines[2], "failed"));
        assert_eq!(
            list(&VassalList {
                vassals: vec![],
                sources: vec![]
            }),
            "no vassals\n"
        );
    }

    #[test]
    fn the_list_with_sources() {
        use rsgi_proto::control::{Origin, SourceSummary};
        let mut app = summary("app", "ready");
        app.origin = Some(Origin {
            source: "etcd://h:2379/rsgi/all/".into(),
            source_state: "stale".into(),
            key: Some("/rsgi/all/app.ini".into()),
            mod_revision: Some(7),
        });
        let text = list(&VassalList {
            vassals: vec![app],
            sources: vec![
                SourceSummary {
                    source: "/etc/rsgi/vassals".into(),
                    kind: "dir".into(),
                    state: "ok".into(),
                    revision: None,
                    errors: 0,
                    message: None,
                    endpoint: None,
                    refused: vec!["app".into()],
                },
                SourceSummary {
                    source: "etcd://h:2379/rsgi/all/".into(),
                    kind: "etcd".into(),
                    state: "stale".into(),
                    revision: Some(7),
                    errors: 3,
                    message: Some("h:2379: connect: refused".into()),
                    endpoint: None,
                    refused: vec![],
                },
                SourceSummary {
                    source: "etcd://h:2379,i:2379/rsgi/web1/".into(),
                    kind: "etcd".into(),
                    state: "up".into(),
                    revision: Some(9),
                    errors: 1,
                    message: None,
                    endpoint: Some("i:2379".into()),
                    refused: vec![],
                },
            ],
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("  SOURCE  "), "{text}");
        assert!(
            lines[1].contains("etcd://h:2379/rsgi/all/ (stale)"),
            "{text}"
        );
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("SOURCE"), "{text}");
        assert!(
            lines[4].contains("refused (another source has them): app"),
            "{text}"
        );
        assert!(
            lines[5].contains("stale  7         3       h:2379: connect: refused"),
            "{text}"
        );
        // An etcd source in step names the member it follows.
        assert!(
            lines[6].contains("up     9         1       via i:2379"),
            "{text}"
        );
    }

    #[test]
    fn the_status_page() {
        let mut s = VassalStatus {
            summary: summary("app", "ready"),
            config: "/etc/rsgi/vassals/app.ini".into(),
            last_exit: Some("exit code 1".into()),
            last_error: Some("reload failed: boom\nsecond line".into()),
            workers: vec![],
            log: vec!["hello".into()],
        };
        let text = status(&s);
        assert!(text.starts_with("app\n  state       ready\n"), "{text}");
        assert!(text.contains("  pid         4242\n"), "{text}");
        assert!(text.contains("  uptime      1h02m\n"), "{text}");
        assert!(
            text.contains("  config      /etc/rsgi/vassals/app.ini\n"),
            "{text}"
        );
        assert!(
            text.contains("  last error  reload failed: boom\n              second line\n"),
            "{text}"
        );
        assert!(text.contains("  workers     -\n"), "{text}");
        assert!(
            text.ends_with("  log (last 1 line):\n    hello\n"),
            "{text}"
        );
        s.workers.push(WorkerInfo {
            id: 1,
            pid: 10,
            status: "idle".into(),
            requests: 5,
        });
        let text = status(&s);
        assert!(
            text.contains("    ID  PID  STATUS  REQUESTS\n    1   10   idle    5\n"),
            "{text}"
        );
    }

    #[test]
    fn running_states() {
        for s in ["starting", "ready", "reloading", "stopping", "sleeping"] {
            assert!(is_running(s), "{s}");
        }
        for s in ["stopped", "failed", "backoff", "idle", "retired"] {
            assert!(!is_running(s), "{s}");
        }
    }
}
