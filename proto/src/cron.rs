//! `cron`, `unique-cron`, `cron2`: uWSGI's command crons (`core/cron.c`), read and
//! matched. Pure: the master passes the local time in; the tests pass any time.
//!
//! uWSGI's rules, kept: five numbers then the command (`MIN HOUR DAY MONTH WEEKDAY
//! CMD`), month 1-12, weekday 0-6 with 7 also Sunday; a negative number `-N` matches
//! every value divisible by N (so `-1` is "any", `-5` is crontab's `*/5`); when day and
//! weekday are both given (not negative), either may match (as crontab ORs them). A cron
//! runs at most once a minute, and a `unique` one never while its previous run lives.

use crate::config::{Cron, VassalConfig};

/// A local time, as the matcher needs it (`struct tm`'s fields, month 1-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    /// 0-59.
    pub minute: i32,
    /// 0-23.
    pub hour: i32,
    /// Day of the month, 1-31.
    pub day: i32,
    /// 1-12.
    pub month: i32,
    /// 0-6, Sunday 0.
    pub weekday: i32,
}

/// `field` matches `value`: equal, or for negative `field` a multiple of its magnitude.
fn field(spec: i32, value: i32) -> bool {
    if spec < 0 {
        value % spec.abs() == 0
    } else {
        spec == value
    }
}

impl Cron {
    /// Whether the cron's time fields match `t` (uWSGI's
    /// `uwsgi_cron_task_needs_execution`).
    pub fn matches(&self, t: &Tm) -> bool {
        let week = if self.week == 7 { 0 } else { self.week };
        let common =
            field(self.minute, t.minute) && field(self.hour, t.hour) && field(self.month, t.month);
        if self.day >= 0 && week >= 0 {
            common && (self.day == t.day || week == t.weekday)
        } else {
            common && field(self.day, t.day) && field(week, t.weekday)
        }
    }
}

fn number(v: &str, what: &str) -> Result<i32, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{what} '{v}' is not a whole number (uWSGI: -1 is any, -N every N)"))
}

/// `cron = MIN HOUR DAY MONTH WEEKDAY CMD` (`unique`: `unique-cron`).
pub fn add(config: &mut VassalConfig, value: &str, unique: bool) -> Result<(), String> {
    let mut rest = value.trim_start();
    let mut nums = [0i32; 5];
    let names = ["minute", "hour", "day", "month", "weekday"];
    for (n, name) in nums.iter_mut().zip(names) {
        let (word, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if word.is_empty() {
            return Err(format!(
                "expected 'MINUTE HOUR DAY MONTH WEEKDAY COMMAND', found '{value}'"
            ));
        }
        *n = number(word, name)?;
        rest = tail.trim_start();
    }
    if rest.is_empty() {
        return Err(format!("no command after the five numbers in '{value}'"));
    }
    config.crons.push(Cron {
        minute: nums[0],
        hour: nums[1],
        day: nums[2],
        month: nums[3],
        week: nums[4],
        command: rest.to_owned(),
        unique,
        harakiri: None,
    });
    Ok(())
}

/// `cron2 = minute=M,hour=H,day=D,month=MO,week=W,unique=1,harakiri=S COMMAND`: unset
/// fields are -1 (any). The key list is the first word when it contains `=`.
pub fn add2(config: &mut VassalConfig, value: &str) -> Result<(), String> {
    let value = value.trim();
    let (keys, command) = match value.split_once(' ') {
        Some((first, rest)) if first.contains('=') => (first, rest.trim()),
        _ if value
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('=')) =>
        {
            return Err(format!("no command in '{value}'"))
        }
        _ => ("", value),
    };
    let mut c = Cron {
        minute: -1,
        hour: -1,
        day: -1,
        month: -1,
        week: -1,
        command: command.to_owned(),
        unique: false,
        harakiri: None,
    };
    for kv in keys.split(',').filter(|k| !k.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("'{kv}' is not KEY=VALUE"));
        };
        match k {
            "minute" => c.minute = number(v, k)?,
            "hour" => c.hour = number(v, k)?,
            "day" => c.day = number(v, k)?,
            "month" => c.month = number(v, k)?,
            "week" => c.week = number(v, k)?,
            "unique" => c.unique = number(v, k)? != 0,
            "harakiri" => c.harakiri = Some(number(v, k)?.max(0) as u64).filter(|h| *h > 0),
            other => {
                return Err(format!(
                    "cron2 key '{other}' is not supported by rsgi (supported: minute, hour, \
                     day, month, week, unique, harakiri)"
                ))
            }
        }
    }
    if c.command.is_empty() {
        return Err(format!("no command in '{value}'"));
    }
    config.crons.push(c);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cron(spec: &str) -> Cron {
        let mut c = VassalConfig::default();
        add(&mut c, spec, false).unwrap();
        c.crons.remove(0)
    }

    /// Wednesday 2026-12-02 15:30.
    const T: Tm = Tm {
        minute: 30,
        hour: 15,
        day: 2,
        month: 12,
        weekday: 3,
    };

    #[test]
    fn matching_is_uwsgis() {
        let rows: &[(&str, Tm, bool)] = &[
            ("-1 -1 -1 -1 -1 x", T, true),
            ("30 15 -1 -1 -1 x", T, true),
            ("31 15 -1 -1 -1 x", T, false),
            ("-5 -1 -1 -1 -1 x", T, true),  // */5 at :30
            ("-7 -1 -1 -1 -1 x", T, false), // 30 % 7 != 0
            ("0 -1 -1 -1 -1 x", Tm { minute: 0, ..T }, true),
            ("-1 -1 -1 12 -1 x", T, true), // month is 1-12
            ("-1 -1 -1 11 -1 x", T, false),
            ("-1 -1 -1 -1 3 x", T, true),
            ("-1 -1 -1 -1 0 x", Tm { weekday: 0, ..T }, true),
            ("-1 -1 -1 -1 7 x", Tm { weekday: 0, ..T }, true), // 7 is Sunday too
            ("-1 -1 2 -1 5 x", T, true),                       // day OR weekday
            ("-1 -1 9 -1 3 x", T, true),
            ("-1 -1 9 -1 5 x", T, false),
            ("-1 -1 2 -1 -1 x", T, true),
            ("-1 -1 -2 -1 -1 x", T, true), // even days
            ("-1 -1 -2 -1 -1 x", Tm { day: 3, ..T }, false),
        ];
        for (spec, t, want) in rows {
            assert_eq!(cron(spec).matches(t), *want, "{spec} at {t:?}");
        }
    }

    #[test]
    fn values_read_as_uwsgi_reads_them() {
        let c = cron("  -5 2 -1 -1 -1   backup.sh --all  ");
        assert_eq!(
            (c.minute, c.hour, c.day, c.month, c.week),
            (-5, 2, -1, -1, -1)
        );
        assert_eq!(c.command, "backup.sh --all  ");
        let mut cfg = VassalConfig::default();
        add(&mut cfg, "0 0 -1 -1 -1 x", true).unwrap();
        assert!(cfg.crons[0].unique);
        add2(&mut cfg, "minute=-10,unique=1,harakiri=30 ./job.sh a b").unwrap();
        let c = &cfg.crons[1];
        assert_eq!(
            (c.minute, c.hour, c.unique, c.harakiri),
            (-10, -1, true, Some(30))
        );
        assert_eq!(c.command, "./job.sh a b");
        add2(&mut cfg, "./every-minute.sh").unwrap();
        assert_eq!(
            (cfg.crons[2].minute, cfg.crons[2].command.as_str()),
            (-1, "./every-minute.sh")
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let rows: &[(bool, &str, &str)] = &[
            (false, "* * * * * cmd", "minute '*' is not a whole number"),
            (
                false,
                "1 2 3 4",
                "expected 'MINUTE HOUR DAY MONTH WEEKDAY COMMAND'",
            ),
            (false, "1 2 3 4 5", "no command"),
            (true, "minute=5", "no command"),
            (true, "legion=x cmd", "cron2 key 'legion' is not supported"),
        ];
        for (two, v, want) in rows {
            let mut c = VassalConfig::default();
            let err = if *two {
                add2(&mut c, v)
            } else {
                add(&mut c, v, false)
            }
            .unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }
}
