//! TLS to PostgreSQL, asked for the way libpq is: `sslmode` and `sslrootcert` in the URL.
//!
//! | `sslmode` | encrypted | server checked |
//! |---|---|---|
//! | `disable` | no | no |
//! | `prefer` (default) | when the server offers TLS | no |
//! | `require` | always | no |
//! | `verify-ca` | always | its certificate chains to a trusted root |
//! | `verify-full` | always | and it is issued for the host in the URL |
//!
//! Trusted roots are the PEM file `sslrootcert` names, else the system's (as
//! `sslrootcert=system` also asks). tokio-postgres itself knows only the first three
//! modes, so the two `verify-*` modes are taken out of the URL here, passed on as
//! `require`, and enforced by the certificate verifier of the rustls configuration.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A PostgreSQL URL understood: the settings tokio-postgres reads, and how to make TLS
/// connections for them.
#[derive(Clone)]
pub struct Connect {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Parses `url`, with its `sslmode` and `sslrootcert`. The error names the problem and
/// the fix, for `forebay check` and for the start of `serve`.
pub fn parse(url: &str) -> Result<Connect, String> {
    let mut mode = Mode::Prefer;
    let mut root_cert = None;
    // Only `sslmode` and `sslrootcert` are taken out; every other parameter is passed on
    // exactly as written (re-encoding could change it: tokio-postgres reads `+` as a
    // plus, not a space), and a URL without them is passed on untouched.
    let url = match url.split_once('?') {
        Some((base, query)) if query.split('&').any(is_ours) => {
            let mut rest: Vec<&str> = Vec::new();
            for pair in query.split('&') {
                if !is_ours(pair) {
                    rest.push(pair);
                    continue;
                }
                let (key, value) = decoded(pair);
                match key.as_str() {
                    "sslmode" => mode = Mode::parse(&value)?,
                    _ => root_cert = Some(value),
                }
            }
            let sslmode = format!("sslmode={}", mode.for_tokio_postgres());
            rest.push(&sslmode);
            format!("{base}?{}", rest.join("&"))
        }
        _ => url.to_owned(),
    };
    let config = url.parse::<tokio_postgres::Config>().map_err(|e| {
        format!(
            "not a valid PostgreSQL URL ({e}); use \"postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE\""
        )
    })?;
    let tls = MakeRustlsConnect::new(client_config(mode, root_cert.as_deref())?);
    Ok(Connect { config, tls })
}

/// Whether a raw `key=value` pair of the query is one this module reads.
fn is_ours(pair: &str) -> bool {
    matches!(decoded(pair).0.as_str(), "sslmode" | "sslrootcert")
}

/// A raw `key=value` pair, percent-decoded.
fn decoded(pair: &str) -> (String, String) {
    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    (decode(key), decode(value))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not supported; use disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    fn for_tokio_postgres(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "require",
        }
    }
}

fn client_config(mode: Mode, root_cert: Option<&str>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => {
            if root_cert.is_some() {
                return Err(format!(
                    "sslrootcert is only used with sslmode=verify-ca or verify-full, not {}; add sslmode=verify-full to check the server's certificate",
                    mode.for_tokio_postgres()
                ));
            }
            Arc::new(Lenient {
                provider,
                chain: None,
            })
        }
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("cannot use the trusted roots: {e}"))?;
            if mode == Mode::VerifyCa {
                Arc::new(Lenient {
                    provider,
                    chain: Some(webpki),
                })
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The roots certificates must chain to: the PEM file named, or the system's.
fn roots(root_cert: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "sslrootcert={path}: cannot read PEM certificates ({e}); give the path of the CA certificate file your PostgreSQL provider publishes"
                    )
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert={path} holds no usable certificate; give a PEM file with BEGIN CERTIFICATE blocks"
                ));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(
                    "no trusted roots found on this system for sslmode=verify-ca/verify-full; install the ca-certificates package, or name a CA file with sslrootcert=/path/ca.pem".to_owned(),
                );
            }
        }
    }
    Ok(store)
}

/// The certificate checks libpq does not make: for `prefer` and `require` none (any
/// certificate is taken: encrypted, not authenticated), for `verify-ca` the chain alone
/// (the name on the certificate is not compared with the host; rustls checks the chain
/// first, so a name mismatch is the only error that can remain). Handshake signatures
/// are checked either way, so the session is bound to the certificate shown.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_read_from_the_url_and_verify_modes_become_require() {
        let c = parse("postgres://u@db/x").unwrap();
        assert_eq!(
            c.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        let c = parse("postgres://u@db/x?application_name=a&sslmode=verify-full").unwrap();
        assert_eq!(
            c.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(c.config.get_application_name(), Some("a"));
        // Other parameters pass through as written (`%20` stays a space for
        // tokio-postgres, not a `+`).
        let c = parse("postgres://u@db/x?options=-c%20statement_timeout%3D5000&sslmode=verify-ca")
            .unwrap();
        assert_eq!(c.config.get_options(), Some("-c statement_timeout=5000"));
        let c = parse("postgres://u@db/x?sslmode=disable").unwrap();
        assert_eq!(
            c.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn bad_tls_settings_say_what_to_write() {
        let err = |url: &str| parse(url).err().expect("refused");
        assert!(err("postgres://u@db/x?sslmode=allow").contains("use disable, prefer, require"));
        assert!(
            err("postgres://u@db/x?sslmode=require&sslrootcert=/ca.pem")
                .contains("add sslmode=verify-full")
        );
        let missing = err("postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(
            missing.contains("cannot read PEM certificates"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let none = err(&format!(
            "postgres://u@db/x?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ));
        assert!(none.contains("holds no usable certificate"), "{none}");
    }
}
