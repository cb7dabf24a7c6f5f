//! Runs uWSGI's hooks (`hook-*`, `exec-*`; read by `rsgi_proto::hooks`) at their
//! phases, as uWSGI's `uwsgi_hooks_run` does: in config order, each logged as
//! `running "ACTION:ARG" (PHASE)...`; a failure of a fatal phase ends the server.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use rsgi_proto::config::VassalConfig;
use rsgi_proto::hooks::{Action, Hook, Phase};
use rsgi_proto::notify;

use crate::fatal::Fatal;

/// Run the hooks of `phase`. A failing hook of a fatal phase stops there with the
/// error; other phases log it and go on.
pub fn run(config: &VassalConfig, phase: Phase) -> Result<(), Fatal> {
    for hook in config.hooks.iter().filter(|h| h.phase == phase) {
        crate::log::line(format_args!("rsgi: running {}...", hook.describe()));
        if let Err(e) = perform(hook) {
            let what = format!("hook {} failed: {e}", hook.describe());
            if phase.fatal() {
                return Err(Fatal::new(notify::EXIT_CONFIG, what));
            }
            crate::log::line(format_args!("rsgi: {what}"));
        }
    }
    Ok(())
}

/// uWSGI's `accepting` phases in a worker about to accept: `accepting` in every worker,
/// `accepting1` in the first only. Failures are logged, not fatal (as in uWSGI).
pub fn run_accepting(config: &VassalConfig, first_worker: bool) {
    let _ = run(config, Phase::Accepting);
    if first_worker {
        let _ = run(config, Phase::Accepting1);
    }
}

/// Why `putenv` must not set `key` now, with `threads` threads in this process: setenv is
/// not thread-safe (another thread's `getenv`, in C code such as `localtime` or a C
/// extension, may read the environment while it is rewritten), so it runs only while the
/// process has one thread. rsgi runs every phase before it starts threads of its own (a
/// worker's `accepting` hooks before its app threads and `py-autoreload`); what can still
/// be there is threads the app started when it was imported (`post-app` and later) and,
/// at `as-user-atexit` without a master, app threads still ending.
fn putenv_refusal(key: &str, threads: Option<usize>) -> Option<String> {
    let n = threads.filter(|&n| n > 1)?;
    Some(format!(
        "putenv {key}: {n} threads run in this process now, and setting the environment \
         is not safe while other threads may read it; set {key} with `env = {key}=...` \
         or in a phase before the app is imported (asap, as-root, as-user, pre-app)"
    ))
}

/// `FILE TEXT` split at the first space.
fn file_and_text(arg: &str) -> (&str, &str) {
    arg.split_once(' ').unwrap_or((arg, ""))
}

fn write_file(path: &str, text: &str, append: bool, newline: bool) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    // One write: with O_APPEND, workers appending at once (post-fork, accepting) each
    // land a whole line, never one worker's text and the other's newline.
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    if newline {
        bytes.push(b'\n');
    }
    f.write_all(&bytes)
}

fn perform(hook: &Hook) -> Result<(), String> {
    let arg = hook.arg.as_str();
    let io = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    match hook.action {
        Action::Exec | Action::SafeExec => {
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(arg)
                .status()
                .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
            if status.success() {
                Ok(())
            } else if hook.action == Action::SafeExec {
                crate::log::line(format_args!("rsgi: command \"{arg}\" exited with {status}"));
                Ok(())
            } else {
                Err(format!("the command exited with {status}"))
            }
        }
        Action::Print => {
            crate::log::line(format_args!("{arg}"));
            Ok(())
        }
        Action::Write | Action::WriteN | Action::Append | Action::AppendN => {
            let (file, text) = file_and_text(arg);
            let append = matches!(hook.action, Action::Append | Action::AppendN);
            let newline = matches!(hook.action, Action::WriteN | Action::AppendN);
            io(write_file(file, text, append, newline))
        }
        Action::Create => io(write_file(arg, "", false, false)),
        Action::Unlink => io(std::fs::remove_file(arg)),
        Action::Mkdir => io(std::fs::create_dir(arg)),
        Action::Chmod => {
            let (file, mode) = file_and_text(arg);
            let mode = u32::from_str_radix(mode.trim(), 8).map_err(|e| e.to_string())?;
            io(std::fs::set_permissions(
                file,
                std::fs::Permissions::from_mode(mode),
            ))
        }
        Action::Putenv => match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                if let Some(why) = putenv_refusal(k, crate::process::thread_count()) {
                    return Err(why);
                }
                std::env::set_var(k, v);
                Ok(())
            }
            _ => Err(format!("'{arg}' is not KEY=VALUE")),
        },
        Action::Chdir => io(std::env::set_current_dir(arg)),
        Action::Exit => {
            let code = arg.trim().parse().unwrap_or(0);
            std::process::exit(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// setenv only while the process has one thread (or when the count is unknown: no
    /// procfs, as before).
    #[test]
    fn putenv_refusal_table() {
        for (threads, refused) in [
            (None, false),
            (Some(1), false),
            (Some(2), true),
            (Some(9), true),
        ] {
            let why = putenv_refusal("APP_MODE", threads);
            assert_eq!(why.is_some(), refused, "{threads:?}: {why:?}");
            if let (Some(why), Some(n)) = (why, threads) {
                assert!(
                    why.starts_with(&format!("putenv APP_MODE: {n} threads run")),
                    "{why}"
                );
                assert!(why.contains("`env = APP_MODE=...`"), "{why}");
            }
        }
    }
}
