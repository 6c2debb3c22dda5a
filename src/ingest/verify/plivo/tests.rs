//! Plivo's V3 signatures against the four published examples of its SDKs
//! (plivo/plivo-go `utils_test.go` `TestValidateSignatureV3Pass1`..`4`; the same values
//! are in plivo/plivo-ruby `spec/signature_spec.rb`): a POST and a GET, each to a URL
//! with and without a query string.

use http::Method;

use super::super::test_support::{build, outcome, request};
use super::*;

const TOKEN: &str = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4";
const NONCE: &str = "31627761595286130198";
const URL: &str = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml";

fn params() -> Vec<(String, String)> {
    [
        ("Direction", "outbound"),
        ("From", "19792014278"),
        ("ALegUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("CallStatus", "in-progress"),
        ("BillRate", "0.002"),
        ("ParentAuthID", "MANWVLYTK4ZWU1YTY4QA"),
        (
            "To",
            "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
        ),
        ("ALegRequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("CallUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("RequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        (
            "SIP-H-To",
            "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
        ),
        ("SessionStart", "2020-04-08 11:34:33.238707"),
        ("Event", "StartApp"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .to_vec()
}

fn encoded(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[test]
fn the_published_examples_verify() {
    // (the URL as entered at Plivo, its query, the method, the signature)
    let cases = [
        (
            format!("{URL}/"),
            Some("a=b&c=d"),
            Method::POST,
            "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=",
        ),
        (
            format!("{URL}/"),
            Some("a=b&c=d"),
            Method::GET,
            "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ=",
        ),
        (
            URL.to_owned(),
            None,
            Method::POST,
            "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0=",
        ),
        (
            URL.to_owned(),
            None,
            Method::GET,
            "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc=",
        ),
    ];
    for (public_url, query, method, signature) in cases {
        let verifier = build(&format!(
            r#"kind = "plivo", secret = "{TOKEN}", public_url = {public_url:?}"#
        ));
        let headers: [(&str, &[u8]); 2] = [
            ("X-Plivo-Signature-V3", signature.as_bytes()),
            ("X-Plivo-Signature-V3-Nonce", NONCE.as_bytes()),
        ];
        let (body, query) = if method == Method::GET {
            let mut all = params();
            if let Some(query) = query {
                all.extend(
                    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into(), v.into())),
                );
            }
            (String::new(), Some(encoded(&all)))
        } else {
            (encoded(&params()), query.map(str::to_owned))
        };
        let mut req = request(&headers, body.as_bytes(), 1_700_000_000);
        req.method = method.clone();
        req.query = query.clone();
        assert_eq!(
            outcome(&verifier, req.clone()),
            Ok(()),
            "{method} {public_url}"
        );
        // Another value, or another nonce: refused.
        let mut changed = req.clone();
        changed.body = body.replace("outbound", "inbound").into_bytes().into();
        changed.query = query.map(|q| q.replace("outbound", "inbound"));
        assert_eq!(
            outcome(&verifier, changed),
            Err(Rejection::NoSignatureMatched),
            "{method} {public_url}"
        );
    }
}

#[test]
fn any_of_several_signatures_passes() {
    let verifier = build(&format!(
        r#"kind = "plivo", secret = "{TOKEN}", public_url = "{URL}""#
    ));
    let header = "AAAA,iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0=";
    let headers: [(&str, &[u8]); 2] = [
        ("X-Plivo-Signature-V3", header.as_bytes()),
        ("X-Plivo-Signature-V3-Nonce", NONCE.as_bytes()),
    ];
    let req = request(&headers, encoded(&params()).as_bytes(), 1_700_000_000);
    assert_eq!(outcome(&verifier, req), Ok(()));
    assert_eq!(
        sign(TOKEN.as_bytes(), URL, encoded(&params()).as_bytes(), NONCE).as_deref(),
        Some("iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0=")
    );
}
