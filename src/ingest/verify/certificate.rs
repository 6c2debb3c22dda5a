//! A signature made with the private key of a certificate the operator configures, over
//! a template of the request: the `certificate` kind, and PayPal, which signs
//! `{transmission id}|{transmission time}|{webhook id}|{CRC-32 of the body}` with
//! SHA256withRSA.
//!
//! The certificate is pinned: read from a PEM file at load, never fetched from a URL the
//! request names (PayPal's `PAYPAL-CERT-URL` is ignored), so a sender cannot choose the
//! key it is checked with. Its chain and validity dates are not checked: trusting it is
//! the operator's decision, made when configuring it, and replacing it (a list while the
//! sender rotates) is theirs too.

#[cfg(test)]
mod tests;

use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use webpki::EndEntityCert;

use super::config::{
    BuildError, OneOrMany, SignatureEncoding, TimestampFormat, check_tolerance_setting,
    resolve_secrets,
};
use super::hmac::{self, Part, parse_template_with};
use super::keys::pkcs8;
use super::mac::{BASE64_LENIENT, check_tolerance, required_header};
use super::rejection::Rejection;
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

/// The signature algorithms of the `certificate` kind, named as the sender's docs
/// usually do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Java's `SHA256withRSA`).
    #[default]
    RsaSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaSha512,
    /// RSASSA-PSS with SHA-256.
    RsaPssSha256,
    /// ECDSA P-256 with SHA-256, the signature DER-encoded (Java's `SHA256withECDSA`).
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384, DER-encoded.
    EcdsaP384Sha384,
    /// Ed25519.
    Ed25519,
}

impl CertificateAlgorithm {
    fn webpki(self) -> &'static dyn rustls_pki_types::SignatureVerificationAlgorithm {
        use webpki::ring as alg;
        match self {
            CertificateAlgorithm::RsaSha256 => alg::RSA_PKCS1_2048_8192_SHA256,
            CertificateAlgorithm::RsaSha512 => alg::RSA_PKCS1_2048_8192_SHA512,
            CertificateAlgorithm::RsaPssSha256 => alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            CertificateAlgorithm::EcdsaP256Sha256 => alg::ECDSA_P256_SHA256,
            CertificateAlgorithm::EcdsaP384Sha384 => alg::ECDSA_P384_SHA384,
            CertificateAlgorithm::Ed25519 => alg::ED25519,
        }
    }
}

/// The settings, borrowed from [`super::VerifyConfig::Certificate`] or a preset.
#[derive(Clone, Copy)]
pub(super) struct Settings<'c> {
    pub certificate: &'c OneOrMany<SecretRef>,
    pub algorithm: CertificateAlgorithm,
    pub header: &'c str,
    pub encoding: SignatureEncoding,
    /// The signed text: `{body}` or `{body_crc32}`, `{timestamp}`, `{header:Name}`,
    /// `{method}`, `{url}`.
    pub signed: &'c str,
    pub timestamp_header: Option<&'c str>,
    pub timestamp_format: TimestampFormat,
    pub tolerance: Duration,
    pub public_url: Option<&'c str>,
    /// A header that must carry exactly this value (PayPal's `PAYPAL-AUTH-ALGO`).
    pub algorithm_header: Option<(&'static str, &'static str)>,
}

/// A source's `certificate` verifier.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// DER, each checked at build to parse as a certificate.
    certificates: Vec<Vec<u8>>,
    algorithm: CertificateAlgorithm,
    header: String,
    encoding: SignatureEncoding,
    template: Vec<Part>,
    timestamp_header: Option<String>,
    timestamp_format: TimestampFormat,
    tolerance: Duration,
    public_url: Option<String>,
    algorithm_header: Option<(&'static str, &'static str)>,
}

impl Certificate {
    pub(super) fn build(s: Settings<'_>) -> Result<Self, BuildError> {
        for (field, name) in [
            ("header", Some(s.header)),
            ("timestamp_header", s.timestamp_header),
        ] {
            if let Some(name) = name
                && http::HeaderName::try_from(name).is_err()
            {
                return Err(BuildError::HeaderName {
                    field,
                    name: name.to_owned(),
                });
            }
        }
        if s.timestamp_header.is_some() {
            check_tolerance_setting(s.tolerance)?;
        }
        let template = parse_template_with(
            s.signed,
            s.timestamp_header.is_some(),
            s.public_url.is_some(),
        )?;
        if template.contains(&Part::BodyCrc32) && s.timestamp_header.is_none() {
            return Err(BuildError::Needs(
                "`signed` has {body_crc32}, which another body can match: set `timestamp_header` so that a captured signature expires, and keep dedup on a signed id",
            ));
        }
        let certificates = resolve_secrets("certificate", s.certificate)?
            .into_iter()
            .map(|(at, text)| {
                CertificateDer::from_pem_slice(text.expose())
                    .ok()
                    .filter(|der| EndEntityCert::try_from(der).is_ok())
                    .map(|der| der.as_ref().to_vec())
                    .ok_or(BuildError::Key {
                        at,
                        expected: "a PEM CERTIFICATE block (the sender's signing certificate)",
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            certificates,
            algorithm: s.algorithm,
            header: s.header.to_owned(),
            encoding: s.encoding,
            template,
            timestamp_header: s.timestamp_header.map(str::to_owned),
            timestamp_format: s.timestamp_format,
            tolerance: s.tolerance,
            public_url: s.public_url.map(str::to_owned),
            algorithm_header: s.algorithm_header,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        if let Some((name, value)) = self.algorithm_header
            && required_header(req, name)?.trim() != value
        {
            return Err(Rejection::malformed(
                name,
                "names a signature algorithm this source does not accept",
            ));
        }
        let text = required_header(req, &self.header)?.trim();
        let signature = match self.encoding {
            SignatureEncoding::Base64 => BASE64_LENIENT.decode(text).ok(),
            SignatureEncoding::Hex => hex::decode(text).ok(),
        }
        .filter(|sig| !sig.is_empty())
        .ok_or_else(|| Rejection::malformed(&self.header, "signature does not decode"))?;
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let text = required_header(req, name)?;
                let secs = hmac::parse_timestamp(self.timestamp_format, text)
                    .ok_or_else(|| Rejection::malformed(name, self.timestamp_format.expected()))?;
                Some((text, secs))
            }
            None => None,
        };
        let signed = self.signed_text(req, timestamp.map(|(text, _)| text))?;
        if !self.any_verifies(&signed, &signature) {
            return Err(Rejection::NoSignatureMatched);
        }
        if let Some((_, secs)) = timestamp {
            check_tolerance(req.received_at_secs(), secs, self.tolerance)?;
        }
        Ok(())
    }

    /// Whether any configured certificate's key made `signature` over `signed`.
    pub(super) fn any_verifies(&self, signed: &[u8], signature: &[u8]) -> bool {
        self.certificates.iter().any(|der| {
            let der = CertificateDer::from(der.as_slice());
            EndEntityCert::try_from(&der).is_ok_and(|cert| {
                cert.verify_signature(self.algorithm.webpki(), signed, signature)
                    .is_ok()
            })
        })
    }

    /// The template filled in from the request.
    fn signed_text(&self, req: &Unverified, timestamp: Option<&str>) -> Result<Vec<u8>, Rejection> {
        let url = self.public_url.as_ref().map(|base| match &req.query {
            Some(query) => format!("{base}?{query}"),
            None => base.clone(),
        });
        fill_template(&self.template, &req.body, |part| match part {
            Part::Timestamp => Ok(timestamp.unwrap_or_default().as_bytes().to_vec()),
            Part::Header(name) => Ok(required_header(req, name)?.as_bytes().to_vec()),
            Part::Url => Ok(url.clone().unwrap_or_default().into_bytes()),
            Part::Method => Ok(req.method.as_str().as_bytes().to_vec()),
            _ => Ok(Vec::new()),
        })
    }

    pub(super) fn algorithm(&self) -> CertificateAlgorithm {
        self.algorithm
    }

    pub(super) fn header(&self) -> &str {
        &self.header
    }

    pub(super) fn encoding(&self) -> SignatureEncoding {
        self.encoding
    }

    pub(super) fn template(&self) -> &[Part] {
        &self.template
    }

    pub(super) fn timestamp_header(&self) -> Option<(&str, TimestampFormat)> {
        self.timestamp_header
            .as_deref()
            .map(|name| (name, self.timestamp_format))
    }

    pub(super) fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    pub(super) fn algorithm_header(&self) -> Option<(&'static str, &'static str)> {
        self.algorithm_header
    }
}

/// The bytes a template stands for: literals, the body and its CRC-32 here, the rest
/// from `other` (which the verifier reads from the request and a signer makes up).
pub(super) fn fill_template<E>(
    template: &[Part],
    body: &[u8],
    mut other: impl FnMut(&Part) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let mut out = Vec::with_capacity(body.len() + 128);
    for part in template {
        match part {
            Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
            Part::Body => out.extend_from_slice(body),
            // PayPal: the zlib CRC-32 as an unsigned decimal number.
            Part::BodyCrc32 => out.extend_from_slice(crc32fast::hash(body).to_string().as_bytes()),
            part => out.extend_from_slice(&other(part)?),
        }
    }
    Ok(out)
}

/// A signature over `message` with the PKCS#8 key `der`, made as `algorithm` says;
/// `None` when the key is not of its type. For `forebay send` and tests.
pub(super) fn sign_with(
    algorithm: CertificateAlgorithm,
    der: &[u8],
    message: &[u8],
) -> Option<Vec<u8>> {
    use ring::signature as ring;
    match algorithm {
        CertificateAlgorithm::RsaSha256 => pkcs8::rsa(der, &ring::RSA_PKCS1_SHA256, message),
        CertificateAlgorithm::RsaSha512 => pkcs8::rsa(der, &ring::RSA_PKCS1_SHA512, message),
        CertificateAlgorithm::RsaPssSha256 => pkcs8::rsa(der, &ring::RSA_PSS_SHA256, message),
        CertificateAlgorithm::EcdsaP256Sha256 => {
            pkcs8::ecdsa(der, &ring::ECDSA_P256_SHA256_ASN1_SIGNING, message)
        }
        CertificateAlgorithm::EcdsaP384Sha384 => {
            pkcs8::ecdsa(der, &ring::ECDSA_P384_SHA384_ASN1_SIGNING, message)
        }
        CertificateAlgorithm::Ed25519 => pkcs8::ed25519(der, message),
    }
}
