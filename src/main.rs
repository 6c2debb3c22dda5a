use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A jq sandbox process (see `forebay::jq`) needs no runtime and no CLI parsing.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == forebay::jq::SANDBOX_ARG)
    {
        return forebay::jq::sandbox_main();
    }
    let cli = forebay::cli::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(forebay::cli::main(cli)),
        Err(e) => {
            eprintln!("forebay: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
