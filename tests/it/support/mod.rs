//! Shared helpers: a server on port 0, a spawned binary, raw HTTP.

pub mod binary;
pub mod cut_proxy;
pub mod postgres;
pub mod receiver;
pub mod s3;
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

/// HMAC-SHA256 of `msg` under `key`, as the providers' examples compute it.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The wall clock in Unix seconds, for signing timestamps the server checks.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}
