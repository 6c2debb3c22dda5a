use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    forebay::cli::main(forebay::cli::Cli::parse()).await
}
