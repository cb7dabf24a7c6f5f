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
    if argv.nth(1).as_deref() == Some(rsgid::tyrant::HELPER_ARG) {
        return rsgid::tyrant::helper_main(&argv.next().unwrap_or_default());
    }
    let args = rsgid::settings::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RSGID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: under systemd stderr is the journal, in tests a
        // file, and escape codes there break every grep.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsgid: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &rsgid::settings::Args) -> anyhow::Result<()> {
    let settings = rsgid::settings::Settings::load(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(rsgid::start::run(settings))?;
    Ok(())
}
