//! `waybill`: the Waybill orchestrator. The commands are in [`cli`], one module per
//! command group.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// mimalloc, not glibc's malloc: in one long-lived process glibc's heap fragments under
/// the coordinator's allocate-and-free churn, and a drain after the first cost about 1.7
/// times the CPU per event (docs/benchmarks.md, "Why the run without fsync looked
/// slower"); with mimalloc the second costs the same as the first.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
