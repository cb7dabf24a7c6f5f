//! The command line: verbs, their output (a table or `--json`) and their exit codes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use rsgi_proto::control::{
    ActionResult, CheckRequest, CheckResult, LogLines, VassalList, VassalStatus,
};

use crate::client::{vassal_path, Client, Error};
use crate::{exit, table};

/// The socket rsgid listens on by default.
pub const DEFAULT_SOCKET: &str = "/run/rsgi/control.sock";

/// Read and write timeout for requests that rsgid answers right away.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Log lines shown after a failed `reload --wait`.
const FAILURE_LOG_LINES: usize = 15;

const AFTER_HELP: &str = "\
Exit codes (as supervisorctl and LSB init scripts):
  0  success
  1  failure: a reload failed, check found problems, permission denied, bad answer
  2  usage error
  3  not running: rsgid is not running (no socket, or nothing answers on it);
     `status NAME`: the vassal is not running; `list`: some vassal is not running
     (stopped, failed, backoff or idle; starting, ready, reloading, stopping and
     sleeping (on demand) count as running); `reload NAME`: the vassal is not running (anything but starting,
     ready or reloading), so there is nothing to reload
  4  no such vassal

The socket is mode 0660: its owner and group may use it. rsgid's answers are
HTTP/1.1 + JSON, so `curl --unix-socket /run/rsgi/control.sock http://localhost/vassals`
works too.";

/// `rsgictl`: control a running rsgid (the rsgi emperor).
#[derive(Debug, clap::Parser)]
#[command(name = "rsgictl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// rsgid's control socket.
    #[arg(long, global = true, env = "RSGI_CONTROL", value_name = "PATH",
          default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print rsgid's answer as JSON (one document; one JSON string per line for
    /// `logs -f`).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// One line per vassal: name, state, pid, generation, uptime, restarts, socket,
    /// and why it is not ready. Exit 3 if any vassal is not running.
    #[command(visible_alias = "ls")]
    List,
    /// One vassal in detail (without NAME: the list). Exit 3 if it is not running,
    /// 4 if there is no such vassal.
    Status {
        /// The vassal (its file name without .ini).
        name: Option<String>,
    },
    /// Gracefully reload a vassal (a new generation, then the old one stops), or all.
    /// Exit 3 if the vassal is not running (with --all: one line per vassal, those
    /// not running included, and exit 0 unless a reload failed).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["name", "all"])))]
    Reload {
        /// The vassal.
        name: Option<String>,
        /// Every vassal.
        #[arg(long)]
        all: bool,
        /// Return when the new generation serves (exit 0) or the reload failed (exit 1).
        #[arg(long)]
        wait: bool,
    },
    /// Stop a vassal; it stays stopped (across rescans) until `start` or a change of
    /// its file.
    Stop {
        /// The vassal.
        name: String,
    },
    /// Start a stopped or failed vassal.
    Start {
        /// The vassal.
        name: String,
    },
    /// Stop a vassal, then start it (not graceful: use reload for that).
    Restart {
        /// The vassal.
        name: String,
    },
    /// A vassal's captured stdout and stderr.
    Logs {
        /// The vassal.
        name: String,
        /// Show the last N lines (default: all rsgid keeps).
        #[arg(short = 'n', long = "lines", value_name = "N")]
        lines: Option<usize>,
        /// Keep printing new lines as they come (until interrupted).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Validate a vassal file without applying it: options (with file:line), socket
    /// clashes with running vassals, and whether the app imports. Exit 1 if anything
    /// is wrong.
    Check {
        /// The ini (or xml) file.
        file: PathBuf,
    },
    /// Whether rsgid answers (exit 0), or is not running (exit 3).
    Ping,
    /// Upgrade rsgid in place: re-execute the binary it was started from (a newly
    /// installed one), keeping every vassal process, socket and counter. rsgid first
    /// checks that the new binary understands the handed-over state; exit 1 (and the
    /// running rsgid stays) if not. Returns once the new rsgid answers. SIGUSR2 does the
    /// same.
    Upgrade,
    /// Readiness, for exec probes: exit 0 when every vassal that should run serves (or,
    /// with NAME, when that vassal serves), 1 with what is not ready otherwise. The same
    /// answer as `GET /readyz[/NAME]`.
    Health {
        /// One vassal instead of the whole.
        name: Option<String>,
    },
    /// A live view of every vassal, redrawn every second: requests/s, mean latency,
    /// busy and idle workers, memory, restarts, state. `q` quits.
    Top {
        /// Seconds between refreshes.
        #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
        interval: f64,
        /// Print one frame and exit (for scripts); with --json, the totals as JSON.
        #[arg(long)]
        once: bool,
    },
}

/// `--interval`: a number of seconds, at least 0.1.
fn parse_interval(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.1..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "expected seconds between 0.1 and 3600, got {value:?}"
        )),
    }
}

/// What a verb printed and how it ends.
type Outcome = Result<u8, Error>;

/// Run the command line; returns the exit code.
pub fn run(cli: &Cli) -> u8 {
    let client = Client::new(&cli.socket, Some(TIMEOUT));
    let out = &mut io::stdout().lock();
    let result = match &cli.verb {
        Verb::List | Verb::Status { name: None } => list(&client, cli.json, out),
        Verb::Status { name: Some(name) } => status(&client, name, cli.json, out),
        Verb::Reload { name, wait, .. } => reload(&client, name.as_deref(), *wait, cli.json, out),
        Verb::Stop { name } => action(&client, name, "stop", cli.json, out),
        Verb::Start { name } => action(&client, name, "start", cli.json, out),
        Verb::Restart { name } => action(&client, name, "restart", cli.json, out),
        Verb::Logs {
            name,
            lines,
            follow,
        } => logs(&client, name, *lines, *follow, cli.json, out),
        Verb::Check { file } => check(&client, file, cli.json, out),
        Verb::Ping => ping(&client, cli.json, out),
        Verb::Upgrade => upgrade(&client, cli.json, out),
        Verb::Health { name } => health(&client, name.as_deref(), out),
        Verb::Top { interval, once } => {
            crate::top::run(&client, Duration::from_secs_f64(*interval), *once, cli.json)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rsgictl: {e}");
            exit_code(&e)
        }
    }
}

/// The exit code for an error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotRunning { .. } => exit::NOT_RUNNING,
        // rsgictl only asks for routes that exist: a 404 is an unknown vassal.
        Error::Api { status: 404, .. } => exit::NO_SUCH_VASSAL,
        _ => exit::FAILURE,
    }
}

/// Print `text`; a closed stdout (`rsgictl logs | head`) is not an error.
fn print(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn print_json(out: &mut impl Write, value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            let _ = print(out, &format!("{text}\n"));
        }
        Err(e) => eprintln!("rsgictl: {e}"),
    }
}

fn list(client: &Client, json: bool, out: &mut impl Write) -> Outcome {
    let list: VassalList = client.get("/vassals")?;
    if json {
        print_json(out, &list);
    } else {
        let _ = print(out, &table::list(&list));
    }
    Ok(
        if list.vassals.iter().all(|v| table::is_running(&v.state)) {
            exit::OK
        } else {
            exit::NOT_RUNNING
        },
    )
}

fn status(client: &Client, name: &str, json: bool, out: &mut impl Write) -> Outcome {
    let status: VassalStatus = client.get(&vassal_path(name, ""))?;
    if json {
        print_json(out, &status);
    } else {
        let _ = print(out, &table::status(&status));
    }
    Ok(if table::is_running(&status.summary.state) {
        exit::OK
    } else {
        exit::NOT_RUNNING
    })
}

/// Print an action's result: on stdout when it worked, on stderr when not.
fn report(result: &ActionResult, json: bool, out: &mut impl Write) -> u8 {
    if json {
        print_json(out, result);
    } else if result.ok {
        let _ = print(out, &format!("{}\n", result.message));
    } else {
        eprintln!("{}", result.message);
    }
    if result.ok {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn reload(
    client: &Client,
    name: Option<&str>,
    wait: bool,
    json: bool,
    out: &mut impl Write,
) -> Outcome {
    let query = if wait { "?wait=1" } else { "" };
    let target = match name {
        Some(name) => vassal_path(name, &format!("/reload{query}")),
        None => format!("/reload{query}"),
    };
    // rsgid bounds the wait (the start timeout plus a little).
    let waiting = client.with_timeout(if wait { None } else { Some(TIMEOUT) });
    let result: ActionResult = waiting.post(&target, None::<&()>)?;
    let code = report(&result, json, out);
    if name.is_some() && !result.not_running.is_empty() {
        // Nothing was reloaded: no new generation, no output of one to show.
        return Ok(exit::NOT_RUNNING);
    }
    if !result.ok && wait && !json {
        // The reason is usually in the new generation's output (a traceback).
        if let Some(name) = name {
            // The failed generation's own lines, not the running one's access log.
            let gen = result
                .generation
                .map(|g| format!("&gen={g}"))
                .unwrap_or_default();
            let target = vassal_path(name, &format!("/logs?n={FAILURE_LOG_LINES}{gen}"));
            if let Ok(logs) = client.get::<LogLines>(&target) {
                if !logs.lines.is_empty() {
                    match result.generation {
                        Some(g) => eprintln!("last lines of {name}'s generation {g}:"),
                        None => eprintln!("last lines of {name}'s output:"),
                    }
                    for line in &logs.lines {
                        eprintln!("  {line}");
                    }
                }
            }
        }
    }
    Ok(code)
}

fn upgrade(client: &Client, json: bool, out: &mut impl Write) -> Outcome {
    let image = |c: &Client| {
        c.get::<serde_json::Value>("/ping")
            .map(|v| v["image"].as_str().unwrap_or_default().to_owned())
    };
    let before = image(client)?;
    // The check runs the new binary: allow it its own time.
    let result: ActionResult = client
        .with_timeout(Some(UPGRADE_TIMEOUT))
        .post("/upgrade", None::<&()>)?;
    if !result.ok {
        return Ok(report(&result, json, out));
    }
    // The control socket stays open across the exec (a connection waits in its
    // backlog); a request the old image accepted just before may fail: ask again until
    // the new image answers.
    let end = std::time::Instant::now() + UPGRADE_TIMEOUT;
    loop {
        match image(client) {
            Ok(now) if now != before => break,
            Ok(_) | Err(_) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => {
                return Err(Error::Protocol(
                    "rsgid accepted the upgrade but the new image did not answer in time".into(),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report(&result, json, out))
}

/// How long `upgrade` waits for the check and for the new rsgid.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

fn action(client: &Client, name: &str, verb: &str, json: bool, out: &mut impl Write) -> Outcome {
    let result: ActionResult = client.post(&vassal_path(name, &format!("/{verb}")), None::<&()>)?;
    Ok(report(&result, json, out))
}

fn logs(
    client: &Client,
    name: &str,
    lines: Option<usize>,
    follow: bool,
    json: bool,
    out: &mut impl Write,
) -> Outcome {
    let n = lines.map(|n| format!("n={n}"));
    if follow {
        let query = match n {
            Some(n) => format!("?follow=1&{n}"),
            None => "?follow=1".into(),
        };
        let streaming = client.with_timeout(None);
        streaming.lines(&vassal_path(name, &format!("/logs{query}")), |line| {
            let text = if json {
                serde_json::to_string(line).unwrap_or_default()
            } else {
                line.to_owned()
            };
            print(out, &format!("{text}\n")).is_ok()
        })?;
        return Ok(exit::OK);
    }
    let query = n.map(|n| format!("?{n}")).unwrap_or_default();
    let logs: LogLines = client.get(&vassal_path(name, &format!("/logs{query}")))?;
    if json {
        print_json(out, &logs);
    } else {
        let mut text = logs.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = print(out, &text);
    }
    Ok(exit::OK)
}

fn check(client: &Client, file: &std::path::Path, json: bool, out: &mut impl Write) -> Outcome {
    // rsgid reads the file: give it a path that means the same from its directory.
    let path = match std::fs::canonicalize(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rsgictl: {}: {e}", file.display());
            return Ok(exit::FAILURE);
        }
    };
    let request = CheckRequest {
        path: path.to_string_lossy().into_owned(),
    };
    let result: CheckResult = client.post("/check", Some(&request))?;
    if json {
        print_json(out, &result);
    } else if result.ok {
        let _ = print(out, &format!("{}: ok\n", path.display()));
    } else {
        let mut text = result.problems.join("\n");
        text.push('\n');
        let _ = print(out, &text);
    }
    Ok(if result.ok { exit::OK } else { exit::FAILURE })
}

fn health(client: &Client, name: Option<&str>, out: &mut impl Write) -> Outcome {
    let target = match name {
        Some(n) => format!("/readyz/{}", crate::http::encode_segment(n)),
        None => "/readyz".to_owned(),
    };
    let (status, text) = client.get_text(&target)?;
    let _ = print(out, &text);
    Ok(match status {
        200 => exit::OK,
        404 => exit::NO_SUCH_VASSAL,
        _ => exit::FAILURE,
    })
}

fn ping(client: &Client, json: bool, out: &mut impl Write) -> Outcome {
    let answer: serde_json::Value = client.get("/ping")?;
    if json {
        print_json(out, &answer);
    } else {
        let _ = print(
            out,
            &format!("rsgid is running ({})\n", client.socket().display()),
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rsgictl").chain(args.iter().copied()))
    }

    #[test]
    fn command_lines() {
        let cli = parse(&["--socket", "/tmp/x.sock", "reload", "app", "--wait"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/x.sock"));
        assert!(
            matches!(cli.verb, Verb::Reload { ref name, all: false, wait: true } if name.as_deref() == Some("app"))
        );
        let cli = parse(&["reload", "--all", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.verb,
            Verb::Reload {
                name: None,
                all: true,
                wait: false
            }
        ));
        let cli = parse(&["logs", "app", "-n", "5", "-f"]).unwrap();
        assert!(matches!(
            cli.verb,
            Verb::Logs {
                lines: Some(5),
                follow: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["status"]).unwrap().verb,
            Verb::Status { name: None }
        ));
        assert!(matches!(
            parse(&["top"]).unwrap().verb,
            Verb::Top { interval, once: false } if interval == 1.0
        ));
        assert!(matches!(
            parse(&["top", "--once", "--interval", "0.5"]).unwrap().verb,
            Verb::Top { interval, once: true } if interval == 0.5
        ));
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["reload"][..],
            &["reload", "app", "--all"],
            &["stop"],
            &["logs", "app", "-n", "x"],
            &["frobnicate"],
            &["top", "--interval", "0"],
            &["top", "--interval", "x"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(exit::USAGE), "{args:?}");
        }
    }

    #[test]
    fn exit_codes() {
        let api = |status| Error::Api {
            status,
            message: String::new(),
        };
        assert_eq!(exit_code(&api(404)), exit::NO_SUCH_VASSAL);
        assert_eq!(exit_code(&api(400)), exit::FAILURE);
        let e = Error::NotRunning {
            socket: "/x".into(),
            why: "no socket at",
        };
        assert_eq!(exit_code(&e), exit::NOT_RUNNING);
        let e = Error::PermissionDenied {
            socket: "/x".into(),
            group: None,
        };
        assert_eq!(exit_code(&e), exit::FAILURE);
    }
}
