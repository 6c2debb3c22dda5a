//! `forebay health`: asks a running forebay's ingest listener whether it is ready
//! (`/readyz`: the store answers and its schema is current), for a container's
//! `HEALTHCHECK` or a load balancer's script, where no curl may exist. Exit 0 when it
//! is, 1 when it is not or cannot be asked (the configuration says where, unless
//! `--url` does).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long the probe waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The readiness URL to ask instead of the configuration's ingest listener.
    #[arg(long)]
    pub url: Option<String>,
}

pub async fn run(config: &Path, args: HealthArgs) -> ExitCode {
    let url = match args.url {
        Some(url) => url,
        None => match crate::Config::load(config, std::env::vars()) {
            Ok(c) => format!("http://{}/readyz", super::reachable(c.server.ingest_listen)),
            // 1, like every other failure: container runtimes reserve 2.
            Err(errors) => {
                eprint!(
                    "not ready: cannot tell where to ask: {}: {errors}",
                    config.display()
                );
                return ExitCode::from(1);
            }
        },
    };
    // Straight to the listener: a proxy from HTTP_PROXY has no business with loopback.
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("not ready: cannot make an HTTP client: {e}");
            return ExitCode::from(1);
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("ready ({url})");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let status = r.status();
            let said = r.text().await.unwrap_or_default();
            eprintln!("not ready: {url} answered {status}: {}", said.trim());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!(
                "not ready: no answer from {url}: {}",
                crate::error_chain::Chain(&e)
            );
            ExitCode::from(1)
        }
    }
}
