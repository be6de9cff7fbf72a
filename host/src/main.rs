//! The `berth` binary: parse the command line and run it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    berth::allocator::tune();
    let cli = berth::cli::Cli::parse();
    match berth::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
