//! What forebay tells about itself: `version` (with the build's facts), `completions`
//! for a shell, and `man` pages, all from the one command definition in [`super::Cli`].

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// `forebay version`: the version, then one line per build fact.
pub fn version() -> ExitCode {
    let features: Vec<&str> = [("kafka", cfg!(feature = "kafka"))]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(", ")
    };
    let text = format!(
        "forebay {}\ncommit: {}\ncompiler: {}\ntarget: {}\nprofile: {}\nfeatures: {features}\n\
         stores: sqlite (embedded, SQLite {}), postgres\n",
        env!("CARGO_PKG_VERSION"),
        env!("FOREBAY_COMMIT"),
        env!("FOREBAY_RUSTC"),
        env!("FOREBAY_TARGET"),
        env!("FOREBAY_PROFILE"),
        rusqlite::version()
    );
    print_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// `forebay completions SHELL`: the completion script on stdout.
pub fn completions(shell: Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "forebay", &mut script);
    print_all(&script);
    ExitCode::SUCCESS
}

/// `forebay man`: forebay(1) on stdout, or with a directory, a page for forebay and one
/// for each subcommand (`forebay-serve.1`, …) written there.
pub fn man(dir: Option<&Path>) -> ExitCode {
    let command = Cli::command();
    let written = match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map(|()| print_all(&page))
        }
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .map(|()| println!("man pages written to {}", dir.display())),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let place = dir.map_or("stdout".to_owned(), |d| d.display().to_string());
            eprintln!("cannot write the man pages to {place}: {e}");
            ExitCode::from(3)
        }
    }
}

/// Writes `bytes` to stdout. A reader that stopped early (`forebay version | head -1`)
/// is not an error worth a panic.
fn print_all(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}
