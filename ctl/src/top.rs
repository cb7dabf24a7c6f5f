//! `rsgictl top`: a live view of every vassal, redrawn every `--interval` seconds.
//!
//! rsgid answers `GET /top` with cumulative totals ([`TopList`]); the rates shown here
//! (requests per second, mean latency) are the differences between two answers, over
//! the time between them as rsgid measured it. The first frame has no previous
//! answer: it shows `-` for the rate and the mean latency since the vassal started.
//!
//! The terminal side needs nothing but ANSI escapes (clear screen, cursor home), so it
//! works in any terminal and over ssh. While it runs, the terminal is in a raw-ish mode
//! (no line buffering, no echo, no signal keys) so that `q` quits without Enter;
//! Ctrl-C and Ctrl-D quit too (as keys). SIGINT, SIGTERM and SIGHUP (the ssh session
//! went away) are read from a `signalfd`, so every way out goes through the same exit
//! that restores the terminal.

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use rsgi_proto::control::{TopList, TopVassal};

use crate::client::{Client, Error};
use crate::{exit, table};

/// Clear the screen and put the cursor top left.
const CLEAR: &str = "\x1b[H\x1b[2J";
/// Hide / show the cursor.
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";

/// `1.5K`, `36.9M`, `2.0G`: bytes as uwsgitop shows them.
pub fn human_size(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f >= K * K * K {
        format!("{:.1}G", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1}M", f / (K * K))
    } else if f >= K {
        format!("{:.1}K", f / K)
    } else {
        n.to_string()
    }
}

/// Requests per second and mean latency (ms) of `v` since `prev` (`None` for a vassal
/// not in `prev`); without a previous answer, the mean latency since its start.
fn rates(v: &TopVassal, prev: Option<&TopVassal>, secs: f64) -> (String, String) {
    let mean = |time_us: u64, n: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", time_us as f64 / n as f64 / 1000.0)
        }
    };
    match prev {
        Some(p) if secs > 0.0 => {
            let n = v.requests.saturating_sub(p.requests);
            let t = v.request_time_us.saturating_sub(p.request_time_us);
            (format!("{:.1}", n as f64 / secs), mean(t, n))
        }
        _ => ("-".to_owned(), mean(v.request_time_us, v.requests)),
    }
}

/// One frame: a title line and a table, one row per vassal; rates against `prev`, the
/// previous answer. `interval` is only shown.
pub fn frame(prev: Option<&TopList>, cur: &TopList, interval: Duration) -> String {
    let secs = prev.map_or(0.0, |p| {
        cur.time_ms.saturating_sub(p.time_ms) as f64 / 1000.0
    });
    let mut rows = vec![table::header(&[
        "VASSAL", "STATE", "PID", "GEN", "REQS", "REQ/S", "AVG-MS", "BUSY", "IDLE", "INFLT", "EXC",
        "5XX", "RSS", "RESTARTS", "RESPAWNS",
    ])];
    let mut total_rate = 0.0;
    for v in &cur.vassals {
        let before = prev.and_then(|p| p.vassals.iter().find(|o| o.name == v.name));
        let (rate, avg) = rates(v, before, secs);
        if let Ok(r) = rate.parse::<f64>() {
            total_rate += r;
        }
        rows.push(vec![
            v.name.clone(),
            v.state.clone(),
            table::or_dash(v.pid.map(|p| p.to_string())),
            table::generation(v.generation),
            v.requests.to_string(),
            rate,
            avg,
            v.busy.to_string(),
            v.idle.to_string(),
            v.in_flight.to_string(),
            v.exceptions.to_string(),
            v.status_classes[4].to_string(),
            human_size(v.rss_bytes),
            v.restarts.to_string(),
            v.respawns.to_string(),
        ]);
    }
    let rate = if prev.is_some() {
        format!("{total_rate:.1} req/s")
    } else {
        "- req/s".to_owned()
    };
    let title = format!(
        "rsgictl top - {} vassal(s) - {rate} - every {} s - q quits\n",
        cur.vassals.len(),
        interval.as_secs_f64()
    );
    format!("{title}{}", table::align(&rows))
}

/// The terminal settings to restore, and the cursor to show again.
struct Terminal {
    saved: Option<Termios>,
    /// Whether stdout is a terminal (escape codes are written only then).
    tty_out: bool,
}

impl Terminal {
    /// Put stdin (if it is a terminal) in non-canonical mode without echo and without
    /// signal keys; hide the cursor (if stdout is a terminal).
    fn enter() -> Terminal {
        let stdin = io::stdin();
        let saved = if stdin.is_terminal() {
            termios::tcgetattr(stdin.as_fd()).ok().and_then(|saved| {
                let mut raw = saved.clone();
                raw.local_flags
                    .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
                raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
                raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                    .ok()
                    .map(|()| saved)
            })
        } else {
            None
        };
        let tty_out = io::stdout().is_terminal();
        if tty_out {
            let _ = write_out(HIDE_CURSOR);
        }
        Terminal { saved, tty_out }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
        if self.tty_out {
            let _ = write_out(&format!("{SHOW_CURSOR}\n"));
        }
    }
}

fn write_out(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// What ended the wait between two frames.
enum Wake {
    /// Time for the next frame.
    Timeout,
    /// Quit (a key or a signal).
    Quit,
}

/// Wait up to `timeout` for a quit key on stdin or a signal.
fn wait(timeout: Duration, signals: &SignalFd, keys: bool) -> Wake {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Wake::Timeout;
        }
        let stdin = io::stdin();
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if keys {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => return Wake::Timeout,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Wake::Quit,
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[0]) {
            return Wake::Quit;
        }
        if keys && ready(&fds[1]) {
            let mut buf = [0u8; 64];
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                // EOF on the terminal (the session is gone) quits too.
                Ok(0) | Err(_) => return Wake::Quit,
                Ok(n) => {
                    // q, Q, Ctrl-C, Ctrl-D.
                    if buf[..n].iter().any(|b| matches!(b, b'q' | b'Q' | 3 | 4)) {
                        return Wake::Quit;
                    }
                }
            }
        }
    }
}

/// `rsgictl top`: draw frames until `q`, or one frame with `once`. With `json`, each
/// answer is printed as one line of JSON instead.
pub fn run(client: &Client, interval: Duration, once: bool, json: bool) -> Result<u8, Error> {
    if once {
        let cur: TopList = client.get("/top")?;
        let text = if json {
            serde_json::to_string_pretty(&cur).unwrap_or_default() + "\n"
        } else {
            frame(None, &cur, interval)
        };
        let _ = write_out(&text);
        return Ok(exit::OK);
    }
    // Every way out (q, Ctrl-C, TERM, HUP) must restore the terminal: the signals are
    // blocked and read from a signalfd in the same wait as the keys.
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        mask.add(sig);
    }
    let _ = mask.thread_block();
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(signals) => signals,
        Err(e) => {
            // Not rsgid's doing: no client error fits.
            eprintln!("rsgictl: top: signalfd: {e}");
            return Ok(exit::FAILURE);
        }
    };
    let terminal = Terminal::enter();
    let keys = terminal.saved.is_some();
    let mut prev: Option<TopList> = None;
    loop {
        let cur: TopList = client.get("/top")?;
        let text = if json {
            serde_json::to_string(&cur).unwrap_or_default() + "\n"
        } else if terminal.tty_out {
            format!("{CLEAR}{}", frame(prev.as_ref(), &cur, interval))
        } else {
            format!("{}\n", frame(prev.as_ref(), &cur, interval))
        };
        if write_out(&text).is_err() {
            // stdout is gone (`rsgictl top | head`).
            return Ok(exit::OK);
        }
        prev = Some(cur);
        if let Wake::Quit = wait(interval, &signals, keys) {
            return Ok(exit::OK);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vassal(name: &str, requests: u64, time_us: u64) -> TopVassal {
        TopVassal {
            name: name.into(),
            state: "ready".into(),
            pid: Some(42),
            generation: 2,
            requests,
            request_time_us: time_us,
            rss_bytes: 38_000_000,
            idle: 2,
            ..TopVassal::default()
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(38_000_000), "36.2M");
        assert_eq!(human_size(3 << 30), "3.0G");
    }

    #[test]
    fn first_frame_has_totals_and_lifetime_latency() {
        let cur = TopList {
            time_ms: 10_000,
            vassals: vec![vassal("app", 10, 25_000), vassal("idle", 0, 0)],
        };
        let text = frame(None, &cur, Duration::from_secs(1));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("rsgictl top - 2 vassal(s) - - req/s"),
            "{text}"
        );
        let app: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            &app[..7],
            ["app", "ready", "42", "2", "10", "-", "2.5"],
            "{text}"
        );
        assert_eq!(app[12], "36.2M");
        let idle: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(&idle[4..7], ["0", "-", "-"], "{text}");
    }

    #[test]
    fn later_frames_show_rates_over_the_interval() {
        let prev = TopList {
            time_ms: 10_000,
            vassals: vec![vassal("app", 10, 25_000)],
        };
        let cur = TopList {
            time_ms: 12_000,
            vassals: vec![vassal("app", 30, 65_000), vassal("new", 5, 5_000)],
        };
        let text = frame(Some(&prev), &cur, Duration::from_secs(2));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("- 10.0 req/s -"), "{text}");
        let app: Vec<&str> = lines[2].split_whitespace().collect();
        // 20 requests in 2 s, 40 ms of app time: 2 ms each.
        assert_eq!(&app[4..7], ["30", "10.0", "2.0"], "{text}");
        // Not in the previous answer: no rate yet.
        let new: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(&new[4..7], ["5", "-", "1.0"], "{text}");
        // A counter that went down (cannot happen) shows 0, not a wrap.
        let back = TopList {
            time_ms: 13_000,
            vassals: vec![vassal("app", 1, 0)],
        };
        let text = frame(Some(&cur), &back, Duration::from_secs(1));
        assert!(text.lines().nth(2).unwrap().contains(" 0.0 "), "{text}");
    }
}
