//! The command line: clap's argument types (`args`, with `choices` mirroring the library's enums
//! so the library stays free of clap) and one handler per subcommand (`commands`).

mod args;
mod choices;
mod commands;
mod estimate;
mod summary;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A panic is a bug, never the user's fault: one line naming it and exit status 2, as for any
    // other error, instead of a Rust backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let args: Vec<String> = std::env::args().collect();
        eprintln!(
            "error: internal error{at}: {message} (while running `{}`; please report it)",
            args.join(" ")
        );
    }));
    match std::panic::catch_unwind(move || dispatch(cli)) {
        Ok(code) => code,
        Err(_) => ExitCode::from(2),
    }
}

fn dispatch(cli: Cli) -> ExitCode {
    robust_eval::input::card::set_assume_imagenet_preprocessing(cli.assume_imagenet_preprocessing);
    let outcome = match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Manifest(args) => commands::build_manifest(args),
        Command::Fit(args) => commands::run_fit(args),
        Command::Plot(args) => commands::run_plot(args),
        Command::Report(args) => commands::run_report(args),
        Command::Gate(args) => commands::run_gate(args),
        Command::Prune(args) => commands::run_prune(args),
        Command::Estimate(args) => estimate::run_estimate(args),
        Command::Models(args) => commands::run_models(args),
        Command::Bench(args) => commands::run_bench(args),
        Command::Merge(args) => commands::run_merge(args),
        Command::Doctor(args) => commands::run_doctor(args),
        Command::Slurm(args) => commands::run_slurm(args),
        Command::Kubernetes(args) => commands::run_kubernetes(args),
        Command::Interpolate(args) => commands::run_interpolate(args),
        Command::Soup(args) => commands::run_soup(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
