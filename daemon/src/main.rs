//! `rsgid`: the emperor. Parses its settings, starts logging, runs rsgid
//! ([`rsgid::start::run`]: the actor and its sources) on a current-thread runtime.
//!
//! A current-thread runtime on purpose: every vassal is forked from this one thread, so
//! `PR_SET_PDEATHSIG` (which fires when the *forking thread* dies) is tied to rsgid's
//! life, and rsgid stays small (no worker threads to feed 50 vassals).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    // Tyrant mode's helper (see `rsgid::tyrant`): one job as a vassal file's owner.
    let mut argv = std::env::args();
    let first = argv.nth(1);
    if first.as_deref() == Some(rsgid::tyrant::HELPER_ARG) {
        return rsgid::tyrant::helper_main(&argv.next().unwrap_or_default());
    }
    if first.as_deref() == Some(rsgid::upgrade::CHECK_ARG) {
        let file = argv.next().unwrap_or_default();
        return match rsgid::emperor::check_state(std::path::Path::new(&file)) {
            Ok(state) => {
                println!(
                    "{}: can take over {} vassal(s) from {}",
                    rsgid::upgrade::build(),
                    state.vassals.len(),
                    state.from_build
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rsgid: {e}");
                ExitCode::from(1)
            }
        };
    }
    rsgid::upgrade::remember_exe();
    let args = rsgid::settings::Args::parse();
    // Settings first: they say how to log (their own errors go to stderr as text).
    let settings = match rsgid::settings::Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rsgid: {e:#}");
            return ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RSGID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match settings.log_format {
        rsgid::settings::LogFormat::Json => log
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        // Colours only on a terminal: under systemd stderr is the journal, in tests a
        // file, and escape codes there break every grep.
        rsgid::settings::LogFormat::Text => log.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsgid: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(settings: rsgid::settings::Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(rsgid::start::run(settings))?;
    Ok(())
}
