//! jaq's values to JSON, the way jq prints them.
//!
//! jaq's value type is a superset of JSON: byte strings, non-string object keys, NaN and
//! infinities, integers of any size, decimals kept as their source text. JSON gets:
//! integers that fit `i64`/`u64` exactly, anything larger or fractional as the nearest
//! `f64` (as jq 1.7 does), NaN as `null` and ±infinity as ±`f64::MAX` (as jq does), byte
//! strings as text with invalid UTF-8 replaced. A non-string object key is an error, as
//! in jq.
//!
//! Inputs need no conversion here: the sandbox parses the JSON text it is sent with
//! jaq's own reader, which keeps large integers exact.

use jaq_json::{Num, Val};
use serde_json::{Map, Number, Value};

/// The deepest nesting an output may have: what `serde_json` on the server side reads
/// back (its recursion limit is 128 levels, including the top one).
pub const MAX_DEPTH: usize = 127;

/// Converts one output value, or says why it cannot be JSON.
pub fn to_json(value: &Val) -> Result<Value, String> {
    convert(value, 0)
}

fn convert(value: &Val, depth: usize) -> Result<Value, String> {
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(bytes) | Val::BStr(bytes) => Value::String(text(bytes)),
        Val::Arr(items) => {
            check_depth(depth)?;
            let items = items.iter().map(|item| convert(item, depth + 1));
            Value::Array(items.collect::<Result<_, _>>()?)
        }
        Val::Obj(entries) => {
            check_depth(depth)?;
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries.iter() {
                let Val::TStr(key) = key else {
                    return Err(format!("object keys must be strings, not {key}"));
                };
                map.insert(text(key), convert(value, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

fn check_depth(depth: usize) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return Err(format!(
            "the output is nested more than {MAX_DEPTH} levels deep"
        ));
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn number(n: &Num) -> Value {
    match n {
        Num::Int(i) => match i64::try_from(*i) {
            Ok(i) => Value::Number(i.into()),
            Err(_) => decimal_text(&n.to_string()),
        },
        Num::Float(f) => float(*f),
        // Big integers and decimals print as their digits; serde_json reads those as an
        // exact i64/u64 where one fits and as the nearest f64 otherwise.
        Num::BigInt(_) | Num::Dec(_) => decimal_text(&n.to_string()),
    }
}

fn decimal_text(digits: &str) -> Value {
    match digits.parse::<Number>() {
        Ok(number) => Value::Number(number),
        // serde_json refuses exponents beyond f64's range; those are ±infinity.
        Err(_) => float(digits.parse::<f64>().unwrap_or(f64::NAN)),
    }
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        return Value::Null;
    }
    let finite = f.clamp(f64::MIN, f64::MAX);
    Number::from_f64(finite).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Val {
        jaq_json::read::parse_single(text.as_bytes()).unwrap()
    }

    #[test]
    fn json_survives_the_round_trip() {
        for text in [
            r#"{"a":[1,-2,3.5,"x",true,null],"b":{}}"#,
            "12345678901234567890",
            "-9223372036854775808",
            "18446744073709551615",
            "0.1",
            "1e-7",
            r#""héllo wörld ✓ 🦀 \u0000 \n""#,
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(to_json(&read(text)).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn non_json_values_become_what_jq_prints() {
        assert_eq!(to_json(&Val::from(f64::NAN)).unwrap(), Value::Null);
        assert_eq!(to_json(&Val::from(f64::INFINITY)).unwrap(), json!(f64::MAX));
        assert_eq!(
            to_json(&Val::from(f64::NEG_INFINITY)).unwrap(),
            json!(f64::MIN)
        );
        // Larger than u64: the nearest float, as jq 1.7 prints it.
        assert_eq!(
            to_json(&read("123456789012345678901234567890")).unwrap(),
            json!(1.2345678901234568e29)
        );
        assert_eq!(to_json(&read("1e400")).unwrap(), json!(f64::MAX));
    }

    #[test]
    fn nesting_is_capped_at_what_the_server_can_read() {
        let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
        let ok = to_json(&read(&nested(MAX_DEPTH))).unwrap();
        let text = serde_json::to_string(&ok).unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
        let err = to_json(&read(&nested(MAX_DEPTH + 1))).unwrap_err();
        assert!(err.contains("nested more than 127"), "{err}");
    }
}
