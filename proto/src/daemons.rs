//! The values of `attach-daemon` and its friends (uWSGI's `core/daemons.c`,
//! `uwsgi_opt_add_daemon` and `uwsgi_opt_add_daemon2`), read into
//! [`AttachDaemon`]s. Pure: the master's shell runs them.

use std::path::PathBuf;

use crate::config::{AttachDaemon, VassalConfig};

/// SIGTERM: uWSGI's default stop signal for attached daemons.
pub const SIGTERM: i32 = 15;

/// uWSGI's default `freq` for smart daemons: checks of a missing pid before a respawn.
pub const DEFAULT_FREQ: u32 = 10;

fn daemon(command: &str) -> AttachDaemon {
    AttachDaemon {
        command: command.to_owned(),
        pidfile: None,
        freq: DEFAULT_FREQ,
        control: false,
        stop_signal: SIGTERM,
        daemonize: false,
    }
}

/// `attach-daemon = CMD` (`control`: `attach-control-daemon`).
pub fn attach(config: &mut VassalConfig, value: &str, control: bool) -> Result<(), String> {
    let command = value.trim();
    if command.is_empty() {
        return Err("needs a command".to_owned());
    }
    config.daemons.push(AttachDaemon {
        control,
        ..daemon(command)
    });
    Ok(())
}

/// `smart-attach-daemon = PIDFILE[,FREQ] CMD` (`daemonize`: `smart-attach-daemon2`).
pub fn smart(config: &mut VassalConfig, value: &str, daemonize: bool) -> Result<(), String> {
    let Some((pidfile, command)) = value.trim().split_once(' ') else {
        return Err(format!("expected 'PIDFILE COMMAND', found '{value}'"));
    };
    let (pidfile, freq) = match pidfile.split_once(',') {
        Some((p, f)) => (p, parse_num(f, "freq")?),
        None => (pidfile, DEFAULT_FREQ),
    };
    let command = command.trim();
    if pidfile.is_empty() || command.is_empty() {
        return Err(format!("expected 'PIDFILE COMMAND', found '{value}'"));
    }
    config.daemons.push(AttachDaemon {
        pidfile: Some(PathBuf::from(pidfile)),
        freq,
        daemonize,
        ..daemon(command)
    });
    Ok(())
}

/// The keys of `attach-daemon2` rsgi reads.
const KEYS: &str = "cmd (command, exec), pidfile, freq, control, daemonize (daemon), \
                    stopsignal (stop_signal)";

/// `attach-daemon2 = cmd=CMD,pidfile=P,freq=N,control=1,daemonize=1,stopsignal=N`: uWSGI's
/// comma-separated keys. Other uWSGI keys (`uid`, `touch`, `ns_pid`, ...) are refused with
/// the list of the supported ones. A command containing a comma cannot be written here
/// (as in uWSGI): use `attach-daemon`.
pub fn keyval(config: &mut VassalConfig, value: &str) -> Result<(), String> {
    let mut d = daemon("");
    for item in value.split(',') {
        let Some((key, v)) = item.split_once('=') else {
            return Err(format!("'{item}' is not KEY=VALUE (keys: {KEYS})"));
        };
        let on = || !matches!(v, "" | "0" | "false" | "no" | "off");
        match key.trim() {
            "cmd" | "command" | "exec" => d.command = v.trim().to_owned(),
            "pidfile" => d.pidfile = Some(PathBuf::from(v.trim())),
            "freq" => d.freq = parse_num(v, "freq")?,
            "control" => d.control = on(),
            "daemonize" | "daemon" => d.daemonize = on(),
            "stopsignal" | "stop_signal" => d.stop_signal = parse_signal(v)?,
            other => {
                return Err(format!(
                    "attach-daemon2 key '{other}' is not supported by rsgi (supported: {KEYS})"
                ))
            }
        }
    }
    if d.command.is_empty() {
        return Err(format!("no cmd= in '{value}' (keys: {KEYS})"));
    }
    if d.daemonize && d.pidfile.is_none() {
        return Err("daemonize=1 needs pidfile=".to_owned());
    }
    config.daemons.push(d);
    Ok(())
}

fn parse_num(v: &str, what: &str) -> Result<u32, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{what} '{v}' is not a whole number"))
}

/// A signal number (`15`) or name (`TERM`, `SIGTERM`).
pub fn parse_signal(v: &str) -> Result<i32, String> {
    const NAMES: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("TERM", 15),
    ];
    let v = v.trim();
    if let Ok(n) = v.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("signal {n} is out of range (1-64)"))
        };
    }
    let name = v.strip_prefix("SIG").unwrap_or(v);
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            format!("'{v}' is not a signal (a number, or HUP INT QUIT KILL USR1 USR2 TERM)")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn one(
        f: impl FnOnce(&mut VassalConfig) -> Result<(), String>,
    ) -> Result<AttachDaemon, String> {
        let mut c = VassalConfig::default();
        f(&mut c)?;
        assert_eq!(c.daemons.len(), 1);
        Ok(c.daemons.remove(0))
    }

    #[test]
    fn values_read_as_uwsgi_reads_them() {
        // (option, value, expected command, pidfile, freq, control, daemonize, stop signal)
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            Option<&'static str>,
            u32,
            bool,
            bool,
            i32,
        );
        let rows: &[Row] = &[
            (
                "attach-daemon",
                "celery -A proj worker",
                "celery -A proj worker",
                None,
                10,
                false,
                false,
                15,
            ),
            (
                "attach-control-daemon",
                "sleep 100",
                "sleep 100",
                None,
                10,
                true,
                false,
                15,
            ),
            // uWSGI: the pidfile is up to the first space; ",N" after it is freq.
            (
                "smart-attach-daemon",
                "/tmp/m.pid memcached -d -P /tmp/m.pid",
                "memcached -d -P /tmp/m.pid",
                Some("/tmp/m.pid"),
                10,
                false,
                false,
                15,
            ),
            (
                "smart-attach-daemon",
                "/tmp/m.pid,3 memcached",
                "memcached",
                Some("/tmp/m.pid"),
                3,
                false,
                false,
                15,
            ),
            (
                "smart-attach-daemon2",
                "/tmp/r.pid redis-server",
                "redis-server",
                Some("/tmp/r.pid"),
                10,
                false,
                true,
                15,
            ),
            (
                "attach-daemon2",
                "cmd=sleep 5,stopsignal=2,control=1",
                "sleep 5",
                None,
                10,
                true,
                false,
                2,
            ),
            (
                "attach-daemon2",
                "exec=x,pidfile=/p,daemonize=1,freq=4,stop_signal=SIGQUIT",
                "x",
                Some("/p"),
                4,
                false,
                true,
                3,
            ),
        ];
        for &(opt, value, cmd, pidfile, freq, control, daemonize, sig) in rows {
            let d = one(|c| match opt {
                "attach-daemon" => attach(c, value, false),
                "attach-control-daemon" => attach(c, value, true),
                "smart-attach-daemon" => smart(c, value, false),
                "smart-attach-daemon2" => smart(c, value, true),
                _ => keyval(c, value),
            })
            .unwrap_or_else(|e| panic!("{opt} = {value}: {e}"));
            assert_eq!(d.command, cmd, "{opt} = {value}");
            assert_eq!(d.pidfile, pidfile.map(PathBuf::from), "{opt} = {value}");
            assert_eq!(
                (d.freq, d.control, d.daemonize, d.stop_signal),
                (freq, control, daemonize, sig),
                "{opt} = {value}"
            );
        }
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let rows: &[(&str, &str, &str)] = &[
            ("attach-daemon", "  ", "needs a command"),
            (
                "smart-attach-daemon",
                "/tmp/only-a-pidfile",
                "expected 'PIDFILE COMMAND'",
            ),
            (
                "smart-attach-daemon",
                "/p,x cmd",
                "freq 'x' is not a whole number",
            ),
            ("attach-daemon2", "pidfile=/p", "no cmd="),
            (
                "attach-daemon2",
                "cmd=x,uid=www",
                "key 'uid' is not supported by rsgi (supported: cmd",
            ),
            (
                "attach-daemon2",
                "cmd=x,daemonize=1",
                "daemonize=1 needs pidfile=",
            ),
            ("attach-daemon2", "cmd=x,stopsignal=99", "out of range"),
            ("attach-daemon2", "just text", "is not KEY=VALUE"),
        ];
        for (opt, value, want) in rows {
            let mut c = VassalConfig::default();
            let err = match *opt {
                "attach-daemon" => attach(&mut c, value, false),
                "smart-attach-daemon" => smart(&mut c, value, false),
                _ => keyval(&mut c, value),
            }
            .unwrap_err();
            assert!(err.contains(want), "{opt} = {value}: {err}");
            assert!(c.daemons.is_empty());
        }
    }
}
