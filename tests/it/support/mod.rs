//! Shared helpers: a server on port 0, a spawned binary, raw HTTP.

pub mod binary;
pub mod postgres;
pub mod receiver;
pub mod server;

pub use server::TestServer;

/// An HTTP client for tests (plain HTTP on loopback, no proxy).
pub fn client() -> reqwest::Client {
    // reqwest's TLS is built without a default crypto provider; tests never use TLS, but
    // building a client requires one to be installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}
