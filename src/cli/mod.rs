//! The `forebay` command line: `serve`, `check`, `init`, `test-route`, `send`, and
//! `version`, `completions`, `man` (in `about.rs`).
//!
//! Exit codes: 0 success; 1 the configuration is invalid; 2 wrong usage (from clap);
//! 3 the server failed at run time (a port in use, a store that cannot open).
//! The admin API's client commands (`events`, `deliveries`, `dlq`, `export`, `replay`,
//! `listen`) live in `client/`, with their exit codes.

mod about;
mod client;
mod health;
mod send;
mod test_route;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Role, STARTER};
use crate::server::{self, Listeners};

#[derive(Debug, Parser)]
#[command(
    name = "forebay",
    version,
    about = "A self-hosted gateway for incoming webhooks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks: verify, store durably, acknowledge.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log lines as text for people, or JSON for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Human)]
        log_format: LogFormat,
        /// Accept webhooks, deliver them, or both.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Validate a configuration file and print every problem with its key path.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a route's filter, transform and ordering key on a stored event or a file,
    /// and print what would be delivered.
    TestRoute {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: test_route::TestRouteArgs,
    },
    /// Post a file to a source, signed the way its sender would sign it, to test
    /// verification end to end.
    Send {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: send::SendArgs,
    },
    /// Ask a running forebay whether it is ready (its ingest listener's `/readyz`): exit
    /// 0 when it is, 1 when not (for a container's HEALTHCHECK).
    Health {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: health::HealthArgs,
    },
    /// Print a new random encryption key (32 bytes, base64) for `[storage] encryption`.
    Keygen,
    /// Write a commented starter configuration.
    Init {
        /// Where to write it.
        #[arg(default_value = "forebay.toml")]
        path: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the version and how this binary was built (commit, compiler, target,
    /// features).
    Version,
    /// Print a shell completion script: `source <(forebay completions bash)`, or save it
    /// where the shell loads completions from.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page forebay(1), or write a page per command into a directory.
    Man {
        /// Write forebay.1 and one page per command (forebay-serve.1, …) here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(short, long, env = "FOREBAY_CONFIG", default_value = "forebay.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where to reach a listener from this machine: one bound to every address (`0.0.0.0`,
/// `::`) is asked on loopback.
pub(crate) fn reachable(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut addr = listen;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    addr
}

/// Runs the parsed command line.
pub async fn main(cli: Cli) -> ExitCode {
    // One TLS provider for every HTTP client of the process (destinations, the CLI's
    // calls to a server); a second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve {
            config,
            log_format,
            role,
        } => serve(&config.config, log_format, role).await,
        Command::Check { config } => check(&config.config),
        Command::Health { config, args } => health::run(&config.config, args).await,
        Command::Init { path, force } => init(&path, force),
        Command::Version => about::version(),
        Command::Keygen => {
            println!("{}", crate::store::seal::new_key());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => about::completions(shell),
        Command::Man { dir } => about::man(dir.as_deref()),
        Command::Client(command) => client::run(command).await,
        Command::Send { config, args } => match load(&config.config) {
            Ok(loaded) => send::run(&config.config, &loaded, args).await,
            Err(code) => code,
        },
        Command::TestRoute { config, args } => match load(&config.config) {
            Ok(loaded) => test_route::run(&config.config, &loaded, args).await,
            Err(code) => code,
        },
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path, std::env::vars()).map_err(|errors| {
        eprint!("{}: {errors}", path.display());
        ExitCode::from(1)
    })
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    println!(
        "{}: ok ({} sources, {} destinations, {} routes)",
        path.display(),
        config.sources.len(),
        config.destinations.len(),
        config.routes.len()
    );
    ExitCode::SUCCESS
}

fn init(path: &Path, force: bool) -> ExitCode {
    if path.exists() && !force {
        eprintln!(
            "{} exists already; pass --force to replace it, or give another path",
            path.display()
        );
        return ExitCode::from(1);
    }
    if let Err(e) = std::fs::write(path, STARTER) {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::from(3);
    }
    println!(
        "wrote {}; check it with `forebay check -c {0}` and start with `forebay serve -c {0}`",
        path.display()
    );
    ExitCode::SUCCESS
}

async fn serve(path: &Path, log_format: LogFormat, role: Role) -> ExitCode {
    init_logging(log_format);
    let mut config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.role = role;
    let listeners = match Listeners::bind(&config.server).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let (ingest, admin) = (
        listeners.ingest.local_addr().ok(),
        listeners.admin.local_addr().ok(),
    );
    let shutdown = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("forebay: cannot install signal handlers: {e}");
            return ExitCode::from(3);
        }
    };
    let store = match server::open_store(&config.storage).await {
        Ok(s) => s,
        Err(e) => return fail(&server::ServeError::Store(e)),
    };
    // One line on stdout once the listeners are bound and the store is open, for people
    // and for scripts that wait for readiness.
    if let (Some(ingest), Some(admin)) = (ingest, admin) {
        println!("forebay listening: ingest=http://{ingest} admin=http://{admin}");
    }
    let shutdown = async {
        shutdown.await;
        crate::service_manager::stopping();
    };
    match server::run_with_store(config, store, listeners, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    let message = crate::error_chain::Chain(error).to_string();
    tracing::error!("{message}");
    eprintln!("forebay: {message}");
    ExitCode::from(3)
}

/// Installs the signal handlers now (so a signal that arrives right after start is not
/// lost to the default action) and resolves on SIGINT or SIGTERM. SIGHUP must not kill
/// the process either: its handler is installed here too, and the server reloads the
/// configuration on it (see `live`).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // Once installed, tokio's handler stays for the life of the process: a SIGHUP before
    // the server listens for it is ignored, never fatal.
    drop(signal(SignalKind::hangup())?);
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOREBAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never escape codes in a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_every_address_is_asked_on_loopback() {
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8080");
        let any6: std::net::SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(reachable(any6).to_string(), "[::1]:8080");
        let one: std::net::SocketAddr = "10.0.0.5:8080".parse().unwrap();
        assert_eq!(reachable(one), one);
    }
}
