//! uWSGI's hooks (`core/hooks.c`): `hook-PHASE = ACTION:ARG` and the `exec-PHASE = CMD`
//! shorthands, read into [`Hook`]s. Pure: the vassal runs them (`rsgi::hooks`).
//!
//! The actions rsgi runs are [`SUPPORTED`]; uWSGI's others (`call`, `mount`, `rpc`,
//! `hostname`, ...) are refused when the config is read, naming the supported ones. A
//! `!` before the action (`!exec:...`) is uWSGI's private hook: its text is not logged.

use crate::config::VassalConfig;
pub use crate::config::{Hook, HookAction as Action, HookPhase as Phase};

impl Phase {
    /// The option's suffix (`hook-SUFFIX`, `exec-SUFFIX`), as uWSGI logs the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Asap => "asap",
            Phase::AsRoot => "as-root",
            Phase::AsUser => "as-user",
            Phase::PreApp => "pre-app",
            Phase::PostApp => "post-app",
            Phase::MasterStart => "master-start",
            Phase::PostFork => "post-fork",
            Phase::Accepting => "accepting",
            Phase::Accepting1 => "accepting1",
            Phase::AtExit => "as-user-atexit",
        }
    }

    /// Whether a failing hook ends the server (uWSGI's `fatal`): every phase before
    /// serving; not the per-worker ones nor the exit one (rsgi logs those and goes on,
    /// where uWSGI would tear the instance down from inside a worker).
    pub fn fatal(self) -> bool {
        !matches!(
            self,
            Phase::PostFork | Phase::Accepting | Phase::Accepting1 | Phase::AtExit
        )
    }
}

/// The actions rsgi runs, as written.
pub const SUPPORTED: &str = "exec, safeexec, print, log, write, writen, append, appendn, \
                             create, creat, unlink, mkdir, chmod, putenv, cd, chdir, exit";

impl Hook {
    /// How the log names it: uWSGI's `running "ACTION:ARG" (PHASE)...`.
    pub fn describe(&self) -> String {
        if self.private {
            format!("--- PRIVATE HOOK --- ({})", self.phase.name())
        } else {
            format!("\"{}\" ({})", self.written, self.phase.name())
        }
    }
}

fn action(name: &str) -> Option<Action> {
    Some(match name {
        "exec" => Action::Exec,
        "safeexec" => Action::SafeExec,
        "print" | "log" => Action::Print,
        "write" => Action::Write,
        "writen" => Action::WriteN,
        "append" => Action::Append,
        "appendn" => Action::AppendN,
        "create" | "creat" => Action::Create,
        "unlink" => Action::Unlink,
        "mkdir" => Action::Mkdir,
        "chmod" => Action::Chmod,
        "putenv" => Action::Putenv,
        "cd" | "chdir" => Action::Chdir,
        "exit" => Action::Exit,
        _ => return None,
    })
}

/// uWSGI's `unix_signal:N FUNCTION` (a master hook mapping a signal to a master
/// function), for the mappings rsgi has built in: accepted with a note saying so; any
/// other mapping is an error (rsgi's signals are fixed).
fn unix_signal(arg: &str) -> Result<Option<String>, String> {
    const FIXED: &str = "rsgi's signals are fixed: TERM stops gracefully, HUP reloads \
                         gracefully, INT and QUIT stop at once";
    let mut words = arg.split_whitespace();
    let (signal, function) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let built_in = matches!(
        (signal, function),
        ("15", "gracefully_kill_them_all") | ("1", "grace_them_all") | ("2" | "3", "kill_them_all")
    );
    if built_in && words.next().is_none() {
        Ok(Some(format!(
            "ignored: signal {signal} already runs {function} in rsgi ({FIXED})"
        )))
    } else {
        Err(format!(
            "unix_signal:{arg}: cannot remap a signal ({FIXED})"
        ))
    }
}

/// `hook-PHASE = ACTION:ARG`. `Ok(Some(note))`: accepted with a notice (a
/// `unix_signal` that maps a signal to what rsgi does with it anyway).
pub fn add(config: &mut VassalConfig, phase: Phase, value: &str) -> Result<Option<String>, String> {
    let Some((name, arg)) = value.split_once(':') else {
        return Err(format!(
            "expected ACTION:ARG, found '{value}' (actions: {SUPPORTED})"
        ));
    };
    let (name, private) = match name.strip_prefix('!') {
        Some(n) => (n, true),
        None => (name, false),
    };
    if name.trim() == "unix_signal" {
        return unix_signal(arg.trim());
    }
    let Some(action) = action(name.trim()) else {
        return Err(format!(
            "hook action '{name}' is not supported by rsgi (supported: {SUPPORTED})"
        ));
    };
    let needs_space = matches!(
        action,
        Action::Write | Action::WriteN | Action::Append | Action::Chmod
    );
    if needs_space && !arg.contains(' ') {
        let what = if action == Action::Chmod {
            "MODE"
        } else {
            "TEXT"
        };
        return Err(format!("{name}: expected 'FILE {what}'"));
    }
    if action == Action::Chmod {
        let mode = arg.split_once(' ').map_or("", |(_, m)| m.trim());
        if u32::from_str_radix(mode, 8).is_err() {
            return Err(format!("chmod: '{mode}' is not an octal mode"));
        }
    }
    config.hooks.push(Hook {
        phase,
        action,
        arg: arg.to_owned(),
        private,
        written: value.trim_start_matches('!').to_owned(),
    });
    Ok(None)
}

/// `exec-PHASE = CMD`: uWSGI's shorthand for `hook-PHASE = exec:CMD`.
pub fn add_exec(config: &mut VassalConfig, phase: Phase, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("needs a command".to_owned());
    }
    config.hooks.push(Hook {
        phase,
        action: Action::Exec,
        arg: value.to_owned(),
        private: false,
        written: format!("exec:{value}"),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hooks_read_as_uwsgi_writes_them() {
        let rows: &[(&str, Action, &str, bool)] = &[
            ("exec:touch /tmp/x", Action::Exec, "touch /tmp/x", false),
            ("!exec:secret", Action::Exec, "secret", true),
            (
                "write:/tmp/f hello world",
                Action::Write,
                "/tmp/f hello world",
                false,
            ),
            ("appendn:/tmp/f", Action::AppendN, "/tmp/f", false),
            ("log:ready", Action::Print, "ready", false),
            ("creat:/tmp/f", Action::Create, "/tmp/f", false),
            ("chmod:/tmp/f 644", Action::Chmod, "/tmp/f 644", false),
            ("putenv:A=b:c", Action::Putenv, "A=b:c", false),
            ("exit:3", Action::Exit, "3", false),
        ];
        for (value, act, arg, private) in rows {
            let mut c = VassalConfig::default();
            add(&mut c, Phase::PreApp, value).unwrap_or_else(|e| panic!("{value}: {e}"));
            let h = &c.hooks[0];
            assert_eq!(
                (h.action, h.arg.as_str(), h.private),
                (*act, *arg, *private),
                "{value}"
            );
        }
        let mut c = VassalConfig::default();
        add_exec(&mut c, Phase::AsRoot, "mkdir -p /run/app").unwrap();
        assert_eq!(c.hooks[0].action, Action::Exec);
        assert_eq!(c.hooks[0].phase, Phase::AsRoot);
    }

    #[test]
    fn bad_hooks_say_what_is_wrong() {
        let rows: &[(&str, &str)] = &[
            ("touch /tmp/x", "expected ACTION:ARG"),
            (
                "mount:proc none /proc",
                "hook action 'mount' is not supported by rsgi (supported: exec",
            ),
            ("call:my_func", "'call' is not supported"),
            ("write:/tmp/only", "write: expected 'FILE TEXT'"),
            ("chmod:/tmp/f rw", "not an octal mode"),
            (
                "unix_signal:15 reload_them",
                "unix_signal:15 reload_them: cannot remap a signal",
            ),
            ("unix_signal:10 gracefully_kill_them_all", "cannot remap"),
        ];
        for (value, want) in rows {
            let mut c = VassalConfig::default();
            let err = add(&mut c, Phase::PreApp, value).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }

    /// The Docker idiom `hook-master-start = unix_signal:15 gracefully_kill_them_all`
    /// asks for what rsgi does anyway: a notice, no hook.
    #[test]
    fn unix_signal_that_rsgi_does_anyway_is_a_notice() {
        for value in [
            "unix_signal:15 gracefully_kill_them_all",
            "unix_signal:1 grace_them_all",
            "unix_signal:2 kill_them_all",
        ] {
            let mut c = VassalConfig::default();
            let note = add(&mut c, Phase::MasterStart, value).unwrap();
            assert!(
                note.is_some_and(|n| n.starts_with("ignored: signal")),
                "{value}"
            );
            assert!(c.hooks.is_empty());
        }
    }

    #[test]
    fn private_hooks_are_not_described() {
        let mut c = VassalConfig::default();
        add(&mut c, Phase::AsUser, "!exec:echo SECRET").unwrap();
        add(&mut c, Phase::AsUser, "exec:echo Hi").unwrap();
        assert!(!c.hooks[0].describe().contains("SECRET"));
        assert_eq!(c.hooks[1].describe(), "\"exec:echo Hi\" (as-user)");
    }
}
