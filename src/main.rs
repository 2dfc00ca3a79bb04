//! The `robust-eval` command: argument parsing and output live in `cli`, everything else in the
//! library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
