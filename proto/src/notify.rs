//! Vassal -> supervisor messages and the exit codes that carry intent.
//!
//! A vassal reports its state with systemd's notify protocol: newline-separated
//! `KEY=VALUE` assignments in one datagram (`READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `STATUS=...`). It sends them to `$NOTIFY_SOCKET` (systemd) or to the inherited
//! socket `$RSGI_NOTIFY_FD` (rsgid). The emperor parses them with [`parse`].

/// Exit code: clean exit (graceful stop finished).
pub const EXIT_OK: i32 = 0;
/// Exit code: an unexpected runtime failure.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: the WSGI app could not be loaded (import error, missing callable). Same
/// number as uWSGI's `UWSGI_FAILED_APP_CODE`. The emperor backs off and retries: the
/// code may be fixed on disk without touching the ini.
pub const EXIT_APP_LOAD: i32 = 22;
/// Exit code: bad command line (`EX_USAGE`): an unknown option, a missing or bad value on
/// the command line (`ConfigError::exit_code` of a `ConfigError::CommandLine`).
pub const EXIT_USAGE: i32 = 64;
/// Exit code: an OS resource could not be had: a socket address in use, a file that
/// cannot be created (`EX_OSERR`).
pub const EXIT_OS: i32 = 71;
/// Exit code: bad configuration: unknown option, bad value, a virtualenv for another
/// Python (`EX_CONFIG`). Every `ConfigError` found in (or reading) a config file maps
/// here. The emperor marks the vassal Failed at once: retrying cannot help.
pub const EXIT_CONFIG: i32 = 78;

/// Environment variable naming the inherited notify socket fd (rsgid sets it).
pub const NOTIFY_FD_ENV: &str = "RSGI_NOTIFY_FD";

/// The key of [`Message::Shm`]: `RSGI_SHM=<slots>`, sent with the vassal's counters
/// memfd attached (`SCM_RIGHTS`) on the emperor's notify socket.
pub const SHM_KEY: &str = "RSGI_SHM";

/// One notify assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`: every worker accepts (at start, and again after a reload).
    Ready,
    /// `RELOADING=1`: a reload began.
    Reloading,
    /// `STOPPING=1`: a stop began.
    Stopping,
    /// `STATUS=...`: one line of free text.
    Status(String),
    /// `WATCHDOG=1`: keep-alive.
    Watchdog,
    /// `MAINPID=N`.
    MainPid(u32),
    /// `RSGI_SHM=N`: the attached fd is the vassal's shared counters with N worker slots.
    Shm(usize),
    /// Any other assignment, kept verbatim (`KEY=VALUE`).
    Other(String),
}

impl Message {
    /// Format as one `KEY=VALUE` assignment (without a newline).
    pub fn to_line(&self) -> String {
        match self {
            Message::Ready => "READY=1".to_owned(),
            Message::Reloading => "RELOADING=1".to_owned(),
            Message::Stopping => "STOPPING=1".to_owned(),
            Message::Status(s) => format!("STATUS={}", s.replace('\n', " ")),
            Message::Watchdog => "WATCHDOG=1".to_owned(),
            Message::MainPid(pid) => format!("MAINPID={pid}"),
            Message::Shm(slots) => format!("{SHM_KEY}={slots}"),
            Message::Other(s) => s.clone(),
        }
    }
}

/// What follows the count in a vassal's notice about output it dropped because the
/// emperor was not reading (`rsgi: [pid 12] 40 line(s) of output dropped: ...`).
pub const OUTPUT_DROPPED: &str = "line(s) of output dropped: the emperor was not reading";

/// The count of a dropped-output notice, for rsgid's metric; `None` for other lines.
pub fn output_dropped(line: &str) -> Option<u64> {
    let head = line.strip_suffix(OUTPUT_DROPPED)?.trim_end();
    let rest = head.strip_prefix("rsgi: [pid ")?;
    let (_pid, count) = rest.split_once("] ")?;
    count.parse().ok()
}

/// Format several messages as one datagram.
pub fn format(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&m.to_line());
        out.push('\n');
    }
    out
}

/// Parse one datagram into its assignments. Empty lines are skipped; lines without `=`
/// are kept as [`Message::Other`].
pub fn parse(datagram: &str) -> Vec<Message> {
    datagram
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(|line| match line.split_once('=') {
            Some(("READY", "1")) => Message::Ready,
            Some(("RELOADING", "1")) => Message::Reloading,
            Some(("STOPPING", "1")) => Message::Stopping,
            Some(("WATCHDOG", "1")) => Message::Watchdog,
            Some(("STATUS", s)) => Message::Status(s.to_owned()),
            Some(("MAINPID", pid)) => match pid.parse() {
                Ok(p) => Message::MainPid(p),
                Err(_) => Message::Other(line.to_owned()),
            },
            Some((SHM_KEY, slots)) => match slots.parse() {
                Ok(n) => Message::Shm(n),
                Err(_) => Message::Other(line.to_owned()),
            },
            _ => Message::Other(line.to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_dropped_table() {
        let rows: &[(&str, Option<u64>)] = &[
            (&format!("rsgi: [pid 12] 40 {OUTPUT_DROPPED}"), Some(40)),
            (&format!("rsgi: [pid 1] 1 {OUTPUT_DROPPED}"), Some(1)),
            // An app printing something alike does not count.
            (&format!("[pid 12] 40 {OUTPUT_DROPPED}"), None),
            (&format!("rsgi: [pid 12] many {OUTPUT_DROPPED}"), None),
            ("rsgi: [pid 12] 40 lines", None),
            ("", None),
        ];
        for (line, want) in rows {
            assert_eq!(output_dropped(line), *want, "{line:?}");
        }
    }

    #[test]
    fn round_trip() {
        let cases = [
            vec![Message::Ready],
            vec![
                Message::Reloading,
                Message::Status("reloading 4 workers".into()),
            ],
            vec![Message::Stopping, Message::MainPid(42)],
            vec![Message::Other("EXTEND_TIMEOUT_USEC=5".into())],
            vec![Message::Shm(4)],
        ];
        for msgs in cases {
            assert_eq!(parse(&format(&msgs)), msgs);
        }
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Vec<Message>)] = &[
            ("READY=1", vec![Message::Ready]),
            (
                "READY=1\nSTATUS=ok\n",
                vec![Message::Ready, Message::Status("ok".into())],
            ),
            ("READY=0", vec![Message::Other("READY=0".into())]),
            ("\n\n", vec![]),
            ("MAINPID=x", vec![Message::Other("MAINPID=x".into())]),
            ("garbage", vec![Message::Other("garbage".into())]),
        ];
        for (input, want) in cases {
            assert_eq!(&parse(input), want, "input {input:?}");
        }
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(Message::Status("a\nb".into()).to_line(), "STATUS=a b");
    }
}
