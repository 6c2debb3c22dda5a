//! Where the admin API is and how to authenticate: `--server`, `--token`, `--config`,
//! and the output switch every client command shares.
//!
//! Without `--server` the address and token come from the configuration file (its
//! `server.admin_listen`, with `0.0.0.0` read as `127.0.0.1`, and `server.admin_token`);
//! without a configuration file, `http://127.0.0.1:8081`. A token from the file is only
//! sent to the address from the same file, never to a `--server` given by hand.

use std::path::{Path, PathBuf};

use super::api::Api;
use super::error::CliError;
use crate::config::Config;

/// The default configuration file, as for `forebay serve`.
const DEFAULT_CONFIG: &str = "forebay.toml";
const DEFAULT_SERVER: &str = "http://127.0.0.1:8081";

#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The admin API, e.g. `http://127.0.0.1:8081` (default: `server.admin_listen` of the
    /// configuration file, else http://127.0.0.1:8081).
    #[arg(long, env = "FOREBAY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for the admin API (default: `server.admin_token` of the
    /// configuration file, when the address comes from it too).
    #[arg(long, env = "FOREBAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Configuration file to read the admin address and token from, when `--server` is
    /// not given [default: forebay.toml, if it exists].
    #[arg(short, long, env = "FOREBAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts instead of tables for people.
    #[arg(long)]
    pub json: bool,
}

impl Connection {
    /// The API client this command line points at.
    pub fn api(&self) -> Result<Api, CliError> {
        let (server, file_token) = match &self.server {
            Some(server) => (normalize(server)?, None),
            None => from_config(self.config.as_deref())?,
        };
        let token = self.token.clone().filter(|t| !t.is_empty()).or(file_token);
        Api::new(server, token)
    }
}

/// `host:port` gets `http://`; a trailing `/` goes.
fn normalize(server: &str) -> Result<String, CliError> {
    let server = server.trim().trim_end_matches('/');
    let server = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    match reqwest::Url::parse(&server) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(server),
        _ => Err(CliError::Usage(format!(
            "--server {server:?} is not an http(s) URL; write it like http://127.0.0.1:8081"
        ))),
    }
}

/// The admin address and token of the configuration file, or the default address when
/// no file was named and `forebay.toml` does not exist.
fn from_config(named: Option<&Path>) -> Result<(String, Option<String>), CliError> {
    let path = named.unwrap_or(Path::new(DEFAULT_CONFIG));
    if named.is_none() && !path.exists() {
        return Ok((DEFAULT_SERVER.to_owned(), None));
    }
    let config = Config::load(path, std::env::vars()).map_err(|errors| {
        CliError::Usage(format!(
            "{}: {}\n(the admin address and token are read from it; pass --server URL and --token to go without it)",
            path.display(),
            errors.to_string().trim_end()
        ))
    })?;
    let addr = crate::cli::reachable(config.server.admin_listen);
    let token = config
        .server
        .admin_token
        .map(|secret| String::from_utf8_lossy(secret.expose()).into_owned());
    Ok((format!("http://{addr}"), token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        assert_eq!(
            normalize("127.0.0.1:8081").unwrap(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            normalize("https://forebay.example/").unwrap(),
            "https://forebay.example"
        );
        assert!(normalize("ftp://x").is_err());
        assert!(normalize("not a url").is_err());
    }

    #[test]
    fn config_gives_address_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nadmin_listen = \"0.0.0.0:9999\"\nadmin_token = \"t0k\"\n[storage]\nurl = \"sqlite://{}\"\n",
                dir.path().join("db").display()
            ),
        )
        .unwrap();
        let (server, token) = from_config(Some(&path)).unwrap();
        assert_eq!(server, "http://127.0.0.1:9999");
        assert_eq!(token.as_deref(), Some("t0k"));
        let missing = from_config(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert_eq!(missing.exit_code(), super::super::error::exit::USAGE);
    }
}
