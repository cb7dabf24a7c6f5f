//! `rsgictl`: control a running rsgid. The work is in the library ([`rsgictl::cli`]).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = rsgictl::cli::Cli::parse();
    ExitCode::from(rsgictl::cli::run(&cli))
}
