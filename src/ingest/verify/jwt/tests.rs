//! The `jwt` kind: tokens made here with the test keys in `testdata/` (through the same
//! signer `forebay send` uses), tokens taken apart by hand, and published ones.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::super::Verifier;
use super::super::test_support::{build, outcome, parse, request};
use super::*;

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn testdata(name: &str) -> String {
    format!(
        "file:{}/src/ingest/verify/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn jwt(verifier: &Verifier) -> &Jwt {
    match verifier {
        Verifier::Jwt(jwt) => jwt,
        other => panic!("not a jwt verifier: {other:?}"),
    }
}

/// A token for `body` as the configured sender would make it at `at`.
fn make_token(verifier: &Verifier, signing_key: Option<&str>, body: &[u8], at: i64) -> String {
    let key = signing_key.map(SecretRef::new);
    TokenSigner::build(jwt(verifier), key.as_ref())
        .expect("signer builds")
        .token(body, u64::try_from(at).unwrap(), "msg_1")
        .expect("token")
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// `header.claims.signature` rebuilt with new JSON for the first two parts, keeping
/// the signature: what an attacker who edits a token sends.
fn tampered(token: &str, header: Option<&str>, claims: Option<&str>) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let header = header.map_or(parts[0].to_owned(), |h| URL_SAFE_NO_PAD.encode(h));
    let claims = claims.map_or(parts[1].to_owned(), |c| URL_SAFE_NO_PAD.encode(c));
    format!("{header}.{claims}.{}", parts[2])
}

fn decoded_claims(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn every_algorithm_round_trips_and_refuses_a_changed_body() {
    let cases = [
        ("HS256", "secret = \"s3cret\"".to_owned(), None),
        ("HS384", "secret = \"s3cret\"".to_owned(), None),
        ("HS512", "secret = \"s3cret\"".to_owned(), None),
        (
            "RS256",
            format!("public_key = {:?}", testdata("rsa-public.pem")),
            Some(testdata("rsa-private.pem")),
        ),
        (
            "RS512",
            format!("public_key = {:?}", testdata("rsa-public.pem")),
            Some(testdata("rsa-private.pem")),
        ),
        (
            "PS256",
            format!("public_key = {:?}", testdata("rsa-public.pem")),
            Some(testdata("rsa-private.pem")),
        ),
        (
            "ES256",
            format!("public_key = {:?}", testdata("p256-public.pem")),
            Some(testdata("p256-private.pem")),
        ),
        (
            "ES384",
            format!("public_key = {:?}", testdata("p384-public.pem")),
            Some(testdata("p384-private.pem")),
        ),
        (
            "EdDSA",
            format!("public_key = {:?}", testdata("ed25519-public.pem")),
            Some(testdata("ed25519-private.pem")),
        ),
    ];
    for (alg, key, signing_key) in cases {
        let config = format!(
            r#"kind = "jwt", algorithm = "{alg}", {key}, body_hash = {{ claim = "sha256" }}"#
        );
        let verifier = build(&config);
        let body = br#"{"id":"evt_1"}"#;
        let token = make_token(&verifier, signing_key.as_deref(), body, NOW);
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        let good = request(&[("authorization", &bearer(&token))], body, NOW);
        assert_eq!(outcome(&verifier, good), Ok(()), "{alg}");
        let changed = request(
            &[("authorization", &bearer(&token))],
            br#"{"id":"evt_2"}"#,
            NOW,
        );
        assert_eq!(
            outcome(&verifier, changed).unwrap_err().kind(),
            "claim_refused",
            "{alg}"
        );
        // One character of the signature changed (the first: the last one's spare bits
        // would make it invalid base64url rather than a wrong signature).
        let at = token.rfind('.').unwrap() + 1;
        let mut sig_flipped = token.clone();
        let first = if &token[at..=at] == "A" { "B" } else { "A" };
        sig_flipped.replace_range(at..=at, first);
        let forged = request(&[("authorization", &bearer(&sig_flipped))], body, NOW);
        assert_eq!(
            outcome(&verifier, forged),
            Err(Rejection::NoSignatureMatched),
            "{alg}"
        );
    }
}

#[test]
fn a_token_signed_by_another_key_does_not_pass() {
    let verifier = build(r#"kind = "jwt", algorithm = "HS256", secret = ["new", "old"]"#);
    let other = build(r#"kind = "jwt", algorithm = "HS256", secret = "stranger""#);
    let token = make_token(&other, None, b"{}", NOW);
    let req = request(&[("authorization", &bearer(&token))], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Err(Rejection::NoSignatureMatched));
    // Rotation: a token made with the old secret still passes.
    let old = build(r#"kind = "jwt", algorithm = "HS256", secret = "old""#);
    let token = make_token(&old, None, b"{}", NOW);
    let req = request(&[("authorization", &bearer(&token))], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Ok(()));
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let rsa = build(&format!(
        r#"kind = "jwt", algorithm = "RS256", public_key = {:?}"#,
        testdata("rsa-public.pem")
    ));
    let good = make_token(&rsa, Some(&testdata("rsa-private.pem")), b"{}", NOW);
    // `alg: none` with an empty signature.
    let none = tampered(&good, Some(r#"{"alg":"none"}"#), None);
    let none = format!("{}.", none.rsplit_once('.').unwrap().0);
    let req = request(&[("authorization", &bearer(&none))], b"{}", NOW);
    assert_eq!(outcome(&rsa, req).unwrap_err().kind(), "malformed_header");
    // The classic confusion: an HS256 token whose secret is the RSA public key's PEM.
    let pem = std::fs::read(testdata("rsa-public.pem").trim_start_matches("file:")).unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{NOW}}}"#));
    let signed = format!("{header}.{claims}");
    let mac = JwtAlgorithm::Hs256
        .hmac(&pem, &[signed.as_bytes()])
        .unwrap();
    let confused = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac));
    let req = request(&[("authorization", &bearer(&confused))], b"{}", NOW);
    assert_eq!(outcome(&rsa, req).unwrap_err().kind(), "malformed_header");
}

#[test]
fn time_claims_are_checked_against_the_receive_time() {
    let verifier = build(r#"kind = "jwt", algorithm = "HS256", secret = "s", leeway = "30s""#);
    let made_at = make_token(&verifier, None, b"{}", NOW);
    // exp = iat + 300: fine until 330 s after, refused from then on (RFC 7519: not
    // "on or after" the expiry).
    let at = |secs| request(&[("authorization", &bearer(&made_at))], b"{}", secs);
    assert_eq!(outcome(&verifier, at(NOW + 329)), Ok(()));
    let late = outcome(&verifier, at(NOW + 330)).unwrap_err();
    assert_eq!(late.kind(), "claim_refused");
    assert_eq!(
        late.to_string(),
        "token claim exp: the token expired 30s before the request arrived (leeway 30s)"
    );
    // iat in the future beyond the leeway: the sender's clock is ahead.
    let early = outcome(&verifier, at(NOW - 31)).unwrap_err();
    assert!(
        early.to_string().contains("check the sender's clock"),
        "{early}"
    );
    assert_eq!(outcome(&verifier, at(NOW - 30)), Ok(()));

    // max_age: a token that lives long is still refused once its iat is too old.
    let strict = build(r#"kind = "jwt", algorithm = "HS256", secret = "s", max_age = "1m""#);
    let at = |secs| request(&[("authorization", &bearer(&made_at))], b"{}", secs);
    assert_eq!(outcome(&strict, at(NOW + 60)), Ok(()));
    let old = outcome(&strict, at(NOW + 61)).unwrap_err();
    assert!(
        old.to_string().contains("more than `max_age` (60s)"),
        "{old}"
    );
}

#[test]
fn issuer_audience_and_required_claims() {
    let verifier = build(
        r#"kind = "jwt", algorithm = "HS256", secret = "s", issuer = "netlify", audience = "https://hooks.example.com", required_claims = ["jti"]"#,
    );
    let good = make_token(&verifier, None, b"{}", NOW);
    let claims = decoded_claims(&good);
    assert_eq!(claims["iss"], "netlify");
    assert_eq!(claims["aud"], "https://hooks.example.com");
    let ok = request(&[("authorization", &bearer(&good))], b"{}", NOW);
    assert_eq!(outcome(&verifier, ok), Ok(()));

    // The same secret, other claims: signed properly, refused for what they say.
    let lax = build(r#"kind = "jwt", algorithm = "HS256", secret = "s""#);
    let anyone = make_token(&lax, None, b"{}", NOW);
    let req = request(&[("authorization", &bearer(&anyone))], b"{}", NOW);
    assert_eq!(
        outcome(&verifier, req).unwrap_err().to_string(),
        "token claim iss: is not the configured `issuer`"
    );
}

#[test]
fn audience_may_be_a_list_and_a_missing_required_claim_is_named() {
    let verifier = build(
        r#"kind = "jwt", algorithm = "HS256", secret = "s", audience = "b", required_claims = ["accountId"], require_exp = false"#,
    );
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let make = |claims: &str| {
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        let mac = JwtAlgorithm::Hs256
            .hmac(b"s", &[signed.as_bytes()])
            .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac))
    };
    // monday.com sends the bare token, without `Bearer`.
    let listed = make(r#"{"aud":["a","b"],"accountId":7}"#);
    let req = request(&[("authorization", listed.as_bytes())], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Ok(()));
    let missing = make(r#"{"aud":"b"}"#);
    let req = request(&[("authorization", missing.as_bytes())], b"{}", NOW);
    assert_eq!(
        outcome(&verifier, req).unwrap_err().to_string(),
        "token claim accountId: is missing, and `required_claims` lists it"
    );
    let elsewhere = make(r#"{"aud":"c","accountId":7}"#);
    let req = request(&[("authorization", elsewhere.as_bytes())], b"{}", NOW);
    assert_eq!(outcome(&verifier, req).unwrap_err().kind(), "claim_refused");
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let verifier = build(&format!(
        r#"kind = "jwt", algorithm = "RS256", jwks = {:?}"#,
        testdata("jwks.json")
    ));
    // The JWKS holds two RSA signing keys (the encryption key and the EC key are
    // skipped); the signing key matches the second, whose kid the token names.
    assert_eq!(jwt(&verifier).keys().len(), 2);
    let token = make_token(&verifier, Some(&testdata("rsa-private.pem")), b"{}", NOW);
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "forebay-test-2026");
    let req = request(&[("authorization", &bearer(&token))], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Ok(()));
    // Naming the other key's kid: only that key is tried, and it did not sign.
    let renamed = tampered(&token, Some(r#"{"alg":"RS256","kid":"other-2026"}"#), None);
    let req = request(&[("authorization", &bearer(&renamed))], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Err(Rejection::NoSignatureMatched));

    let es = build(&format!(
        r#"kind = "jwt", algorithm = "ES256", jwks = {:?}"#,
        testdata("jwks.json")
    ));
    let token = make_token(&es, Some(&testdata("p256-private.pem")), b"{}", NOW);
    let req = request(&[("authorization", &bearer(&token))], b"{}", NOW);
    assert_eq!(outcome(&es, req), Ok(()));
}

#[test]
fn configuration_mistakes_name_the_fix() {
    let err = |text: &str| parse(text).unwrap().build().unwrap_err().to_string();
    assert!(err(r#"kind = "jwt", algorithm = "RS256", secret = "s""#).contains("`public_key`"),);
    assert!(
        err(&format!(
            r#"kind = "jwt", algorithm = "HS256", secret = "s", public_key = {:?}"#,
            testdata("rsa-public.pem")
        ))
        .contains("shared `secret`")
    );
    assert!(err(r#"kind = "jwt", algorithm = "ES256""#).contains("`jwks`"));
    // A P-256 key under RS256.
    let wrong = err(&format!(
        r#"kind = "jwt", algorithm = "RS256", public_key = {:?}"#,
        testdata("p256-public.pem")
    ));
    assert_eq!(
        wrong,
        "`public_key`: not an RSA public key as a PEM PUBLIC KEY block (`openssl pkey -pubout`); copy the key exactly as the provider shows it"
    );
    assert!(
        err(r#"kind = "jwt", algorithm = ["HS256", "RS256"], secret = "s""#)
            .contains("take different keys")
    );
    let jwks = err(&format!(
        r#"kind = "jwt", algorithm = "EdDSA", jwks = {:?}"#,
        testdata("jwks.json")
    ));
    assert!(jwks.starts_with("`jwks` has no key for EdDSA"), "{jwks}");
    let unknown = parse(r#"kind = "jwt", algorithm = "HS257", secret = "s""#).unwrap_err();
    assert!(unknown.contains("HS256"), "{unknown}");
    // The signing key must belong to a configured public key.
    let verifier = build(&format!(
        r#"kind = "jwt", algorithm = "ES256", public_key = {:?}"#,
        testdata("p256-public.pem")
    ));
    let other_key = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(other_key.as_ref())
    );
    let mismatch = TokenSigner::build(jwt(&verifier), Some(&SecretRef::new(pem)));
    assert!(matches!(mismatch, Err(BuildError::SigningKeyMismatch)));
    assert!(matches!(
        TokenSigner::build(jwt(&verifier), None),
        Err(BuildError::NoSigningKey { kind: "jwt" })
    ));
}

#[test]
fn malformed_tokens_are_named_not_echoed() {
    let verifier = build(r#"kind = "jwt", algorithm = "HS256", secret = "s""#);
    for value in [
        "Bearer",
        "Bearer abc",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer !!!.e30.sig",
    ] {
        let req = request(&[("authorization", value.as_bytes())], b"{}", NOW);
        let rejection = outcome(&verifier, req).unwrap_err();
        assert_eq!(rejection.kind(), "malformed_header", "{value}");
        assert!(!rejection.to_string().contains("abc"), "{rejection}");
    }
    let req = request(&[], b"{}", NOW);
    assert_eq!(
        outcome(&verifier, req),
        Err(Rejection::MissingHeader {
            name: "Authorization".into()
        })
    );
}

/// RFC 7515 Appendix A.1 (HS256), A.2 (RS256) and A.3 (ES256): the published tokens,
/// with the published keys (`testdata/rfc-jwks.json` holds A.2's and A.3's JWKs; A.1's
/// key is binary, so it is set directly). Their `exp` is 1300819380.
#[test]
fn rfc_7515_examples_verify() {
    const A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const A2: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    const A3: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let before_exp = 1_300_819_000;
    let claims = Claims {
        issuer: Some("joe".into()),
        audience: None,
        required: vec!["http://example.com/is_root".into()],
        body_hash: None,
        empty_body_unhashed: false,
        url_hash: None,
        leeway: Duration::from_secs(60),
        max_age: None,
        expiry_required: true,
    };
    let hs = Jwt {
        header: "Authorization".into(),
        algorithms: vec![JwtAlgorithm::Hs256],
        keys: vec![Key {
            kid: None,
            alg: None,
            material: Material::Hmac(crate::config::secret::Secret::from_bytes(
                URL_SAFE_NO_PAD
                    .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
                    .unwrap(),
            )),
        }],
        claims: claims.clone(),
    };
    let req = |token: &str, at| request(&[("authorization", &bearer(token))], b"", at);
    assert_eq!(hs.check(&req(A1, before_exp)), Ok(()));
    assert_eq!(
        hs.check(&req(A1, 1_300_819_441)).unwrap_err().kind(),
        "claim_refused"
    );
    for (alg, token) in [("RS256", A2), ("ES256", A3)] {
        let config = format!(
            r#"kind = "jwt", algorithm = "{alg}", jwks = {:?}, issuer = "joe""#,
            testdata("rfc-jwks.json")
        );
        let verifier = build(&config);
        assert_eq!(outcome(&verifier, req(token, before_exp)), Ok(()), "{alg}");
        let other_issuer = build(&config.replace("joe", "jane"));
        assert_eq!(
            outcome(&other_issuer, req(token, before_exp))
                .unwrap_err()
                .kind(),
            "claim_refused"
        );
    }
}

/// RFC 8037 Appendix A.4: Ed25519 over a payload that is not JSON, so only the
/// signature is checked here.
#[test]
fn rfc_8037_ed25519_example_verifies() {
    const A4: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let verifier = build(&format!(
        r#"kind = "jwt", algorithm = "EdDSA", jwks = {:?}"#,
        testdata("rfc-jwks.json")
    ));
    let key = &jwt(&verifier).keys()[0];
    let (signed, signature) = A4.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert!(verify_with(
        JwtAlgorithm::EdDsa,
        &key.material,
        signed.as_bytes(),
        &signature
    ));
    assert!(!verify_with(
        JwtAlgorithm::EdDsa,
        &key.material,
        b"other",
        &signature
    ));
}

proptest::proptest! {
    /// Any three dot-separated parts, and any JSON in the header and claims (numbers
    /// out of range, nested `aud`, odd `alg`), are answered without a panic; only the
    /// real signature passes.
    #[test]
    fn arbitrary_tokens_never_panic(
        header in proptest::prop_oneof![
            proptest::strategy::Just(r#"{"alg":"HS256"}"#.to_owned()),
            "\\{\"alg\":(\"HS256\"|\"none\"|1|null)(,\"kid\":(\"[a-z]{0,3}\"|\\[\\]))?(,\"crit\":\\[\\])?\\}",
            proptest::arbitrary::any::<String>(),
        ],
        claims in proptest::prop_oneof![
            "\\{(\"exp\":(-?[0-9]{1,25}(\\.[0-9])?|\"x\"|1e400)|\"aud\":\\[1,\\[\\]\\]|\"iat\":[0-9]{1,12})?\\}",
            proptest::arbitrary::any::<String>(),
        ],
        signature in "[A-Za-z0-9_=-]{0,90}",
    ) {
        let verifier = build(
            r#"kind = "jwt", algorithm = "HS256", secret = "s", audience = "a", max_age = "5m""#,
        );
        let token = format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        let req = request(&[("authorization", token.as_bytes())], b"{}", NOW);
        proptest::prop_assert!(outcome(&verifier, req).is_err());
    }
}

/// Keys are checked when they are read, not found wanting on every request: an RSA key
/// under 2048 bits, private key material, a JWK marked for another algorithm; and a
/// modulus written with a leading zero byte is read as the same key.
#[test]
fn jwks_keys_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, json: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, json).unwrap();
        format!("file:{}", path.display())
    };
    let err = |jwks: &str| {
        parse(&format!(
            r#"kind = "jwt", algorithm = "RS256", jwks = {jwks:?}"#
        ))
        .unwrap()
        .build()
        .unwrap_err()
        .to_string()
    };
    let short = write(
        "short.json",
        r#"{"keys":[{"kty":"RSA","n":"rRdGtiTw6UaO0MxdzsWQ3eEP2Z7OUIiBOIa3-zdyQEaZd4rl9pBS2VClksFJSQm5zTmHppTish9MGP6_6kMMJFyHKTxt5PybIGnPzVBInVaL1gs_3cXnCSkQjjXboVA39TVDBVPhSCxGvBF7t7zlCfs7bMCfER9wVINe249HtRM","e":"AQAB"}]}"#,
    );
    assert!(
        err(&short).contains("not an RSA key of 2048 to 8192 bits"),
        "{}",
        err(&short)
    );
    let private = write(
        "private.json",
        r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}"#,
    );
    assert!(err(&private).contains("private or secret key material"));
    let broken = write("broken.json", r#"{"keys": [ {"kty": "RSA", "n": "#);
    assert_eq!(
        err(&broken),
        "`jwks` is not a JWKS document (line 1, column 30); expected {\"keys\": [...]}"
    );

    let padded = write(
        "padded.json",
        r#"{"keys":[{"kty":"RSA","alg":"RS256","n":"APPGTgEQbVqeUUgPqzDt4jqfgkQR8XfCks_HZY540TLuPsPtlFHEN1Al-J3DSW5z-xYYjFZMgxVzB6or4CcESl8DMUZBZ9adTw7w0M9n7x0G3OQvHdwfTO1_HuIJ4P85l-uzVaDSqSKm42z5oAAY2XgTMZatlugcokFySqJ8Nrj8zF0UNSJuCgpQy0X1OKr8nBS96vnvUd9W2ignMkqnkC2Ka2Iirbi9a34ugdScr_M6KYlAzpOTvz5Svh1Tbgj1b5UFmDjfDpuz7rHoQXBQY8Em8eVaz9LlCLCPv7wQcerFUz3kE36G_sD4FiXrSdFa9MnSK3NwJB58x47LsdjCSEk","e":"AQAB"}]}"#,
    );
    let verifier = build(&format!(
        r#"kind = "jwt", algorithm = ["RS256", "RS512"], jwks = {padded:?}"#
    ));
    let rs256 = make_token(&verifier, Some(&testdata("rsa-private.pem")), b"{}", NOW);
    let req = request(&[("authorization", &bearer(&rs256))], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Ok(()));
    // The key is marked RS256: an RS512 token made with the same key is refused.
    let rs512 = build(&format!(
        r#"kind = "jwt", algorithm = "RS512", public_key = {:?}"#,
        testdata("rsa-public.pem")
    ));
    let token = make_token(&rs512, Some(&testdata("rsa-private.pem")), b"{}", NOW);
    let req = request(&[("authorization", &bearer(&token))], b"{}", NOW);
    assert_eq!(outcome(&verifier, req), Err(Rejection::NoSignatureMatched));
}
