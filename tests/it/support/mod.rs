//! Shared helpers: a server on port 0, a spawned binary, raw HTTP.

pub mod binary;
pub mod server;

pub use server::TestServer;
