//! `rsgictl check`'s Python part: does the vassal's app import in its virtualenv?
//!
//! The emperor never imports apps itself (it has no Python): it runs
//! `rsgi --ini FILE --check-app`, which loads the configuration, starts the embedded
//! interpreter with the vassal's `home`, `chdir`, `pythonpath` and `env`, imports the
//! app and exits (0 when it imports, with the traceback otherwise).

use std::path::Path;
use std::time::Duration;

/// How long an import may take before the check gives up.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Problems found while importing the app of the vassal file at `path` (none when it
/// imports).
pub async fn app_importable(rsgi: &Path, path: &Path) -> Vec<String> {
    let flag = if path.extension().is_some_and(|e| e == "xml") {
        "--xml"
    } else {
        "--ini"
    };
    let mut cmd = tokio::process::Command::new(rsgi);
    cmd.arg(flag)
        .arg(path)
        .arg("--check-app")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("RSGI_NOTIFY_FD")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = path.parent() {
        cmd.current_dir(dir);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot run {}: {e}", rsgi.display())],
    };
    // Waited for here: a PID 1 reaper must leave it alone (see crate::reaper).
    let pid = child.id().unwrap_or(0);
    crate::reaper::adopt(pid);
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, child.wait_with_output()).await;
    crate::reaper::release(pid);
    match outcome {
        Err(_) => vec![format!(
            "{}: importing the app took longer than {} s",
            path.display(),
            CHECK_TIMEOUT.as_secs()
        )],
        Ok(Err(e)) => vec![format!("cannot run {}: {e}", rsgi.display())],
        Ok(Ok(out)) if out.status.success() => Vec::new(),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if text.is_empty() {
                text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
            vec![format!(
                "{}: the app does not import ({}):\n{text}",
                path.display(),
                out.status
            )]
        }
    }
}
