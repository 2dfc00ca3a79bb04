//! The command line: clap's argument types (`args`, with `choices` mirroring the library's enums
//! so the library stays free of clap) and one handler per subcommand (`commands`).

mod args;
mod choices;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Manifest(args) => commands::build_manifest(args),
        Command::Fit(args) => commands::run_fit(args),
        Command::Plot(args) => commands::run_plot(args),
        Command::Report(args) => commands::run_report(args),
        Command::Gate(args) => commands::run_gate(args),
        Command::Models(args) => commands::run_models(args),
        Command::Bench(args) => commands::run_bench(args),
        Command::Doctor(args) => commands::run_doctor(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
