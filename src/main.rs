use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // An expression sandbox process (see `forebay::expr`) needs no runtime and no CLI
    // parsing.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == forebay::expr::SANDBOX_ARG)
    {
        return forebay::expr::sandbox_main();
    }
    // Request bodies (up to a few MiB each) must go back to the system when freed. glibc
    // serves a block past its mmap threshold with its own mapping, unmapped on free, but
    // raises the threshold to the size of every such block freed, after which bodies
    // are cut from its arenas and their memory stays when the load ends. A fixed
    // threshold keeps blocks of 256 KiB and more in mappings of their own.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
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
