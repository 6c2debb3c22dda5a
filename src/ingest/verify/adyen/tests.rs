//! Adyen's signed fields against the published examples of its Python library
//! (Adyen/adyen-python-api-library `test/UtilTest.py` and `test/mocks/util/*.json`);
//! the preset's case in `presets/tests.rs` checks a whole notification.

use serde_json::Value;

use super::super::mac::hmac_sha256;
use super::*;

fn sign(key_hex: &str, item: &Value) -> String {
    let key = hex::decode(key_hex).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&key, &[signed_text(item).as_bytes()]).unwrap())
}

/// `test_notification_request_item_hmac`: `originalReference` is absent, so empty.
#[test]
fn the_published_item_signs_as_published() {
    let item: Value = serde_json::json!({
        "pspReference": "7914073381342284",
        "merchantReference": "TestPayment-1407325143704",
        "merchantAccountCode": "TestMerchant",
        "amount": {"currency": "EUR", "value": 1130},
        "eventCode": "AUTHORISATION",
        "success": "true",
    });
    assert_eq!(
        signed_text(&item),
        "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
    );
    assert_eq!(
        sign(
            "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
            &item
        ),
        "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="
    );
}

/// `test_webhooks_with_slashes`: colons and backslashes in a field are signed as they
/// are, not escaped.
#[test]
fn colons_and_backslashes_are_signed_as_they_are() {
    for (file, reference) in [
        (
            include_str!("../testdata/adyen-colon-item.json"),
            ":slashes are fun",
        ),
        (
            include_str!("../testdata/adyen-mixed-item.json"),
            "\\:/\\/slashes are fun",
        ),
    ] {
        let item: Value = serde_json::from_str(file).unwrap();
        assert_eq!(item["merchantReference"], reference);
        assert_eq!(
            sign(
                "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174",
                &item
            ),
            item["additionalData"]["hmacSignature"].as_str().unwrap(),
            "{reference}"
        );
    }
}

#[test]
fn sign_body_sets_every_items_signature() {
    let key =
        hex::decode("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056").unwrap();
    let body = br#"{"live":"false","notificationItems":[{"NotificationRequestItem":{"pspReference":"1","amount":{"currency":"EUR","value":5},"eventCode":"REFUND","success":"true"}},{"NotificationRequestItem":{"pspReference":"2","eventCode":"CAPTURE","success":"false","additionalData":{"other":"kept"}}}]}"#;
    let signed: Value = serde_json::from_slice(&sign_body(&key, body).unwrap()).unwrap();
    for item in signed["notificationItems"].as_array().unwrap() {
        let item = &item["NotificationRequestItem"];
        assert_eq!(
            item["additionalData"]["hmacSignature"].as_str().unwrap(),
            sign(
                "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
                item
            )
        );
    }
    assert_eq!(
        signed["notificationItems"][1]["NotificationRequestItem"]["additionalData"]["other"],
        "kept"
    );
    assert_eq!(sign_body(&key, b"{}"), None);
    assert_eq!(sign_body(&key, br#"{"notificationItems":[]}"#), None);
}
