//! Running one compiled program on one input, inside the sandbox process: pull outputs up
//! to the cap, stop at the first error, and produce the [`Answer`] to send back.
//!
//! This has no limits of its own on time, memory or stack; the process it runs in has
//! (see `expr::child`).

use jaq_core::data::JustLut;
use jaq_core::{Ctx, Vars};
use jaq_json::Val;

use super::compile::Program;
use super::protocol::Answer;
use super::value;

/// Evaluates `program` on the JSON text `input`, keeping at most `max_outputs` outputs.
pub fn evaluate(program: &Program, input: &[u8], max_outputs: usize) -> Answer {
    let input = match jaq_json::read::parse_single(input) {
        Ok(input) => input,
        Err(e) => return Answer::Failed(format!("the input is not JSON: {e}")),
    };
    let ctx = Ctx::<JustLut<Val>>::new(&program.lut, Vars::new([]));
    let mut lines = Vec::new();
    let mut count = 0;
    for output in program.id.run((ctx, input)) {
        let output = match output {
            Ok(output) => output,
            Err(exception) => match exception.get_err() {
                Ok(error) => return Answer::Failed(message(error.into_val())),
                // `halt` ends the program with what it has output so far, as in jq;
                // `halt_error` (a non-zero exit code) is a failure.
                Err(exception) => match exception.get_halt() {
                    Ok(0) => break,
                    Ok(code) => {
                        return Answer::Failed(format!(
                            "the expression stopped with halt_error (exit code {code})"
                        ));
                    }
                    Err(_) => return Answer::Failed("internal jaq error".into()),
                },
            },
        };
        count += 1;
        if count > max_outputs {
            return Answer::TooManyOutputs;
        }
        let json = match value::to_json(&output) {
            Ok(json) => json,
            Err(why) => return Answer::Failed(format!("output {count} is not JSON: {why}")),
        };
        if count > 1 {
            lines.push(b'\n');
        }
        if let Err(e) = serde_json::to_writer(&mut lines, &json) {
            return Answer::Failed(format!("output {count} cannot be written: {e}"));
        }
    }
    Answer::Outputs(lines)
}

/// jq's text for an error value: a string as it is, anything else as JSON.
fn message(value: Val) -> String {
    match value {
        Val::TStr(text) => String::from_utf8_lossy(&text).into_owned(),
        other => format!("{other} (not a string)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::jq::compile::compile;
    use serde_json::{Value, json};

    /// Runs `text` on `input` in this process: only for expressions that terminate.
    fn run(text: &str, input: Value) -> Result<Vec<Value>, String> {
        let program = compile(text).unwrap();
        let input = serde_json::to_vec(&input).unwrap();
        evaluate(&program, &input, 10).into_test_result()
    }

    #[test]
    fn outputs_come_in_order() {
        let input = json!({"body": {"items": [1, "two", {"three": 3}], "id": "evt_1"}});
        assert_eq!(
            run(".body.items[]", input.clone()),
            Ok(vec![json!(1), json!("two"), json!({"three": 3})])
        );
        assert_eq!(
            run("{id: .body.id}", input),
            Ok(vec![json!({"id": "evt_1"})])
        );
        assert_eq!(run("select(.a > 1)", json!({"a": 1})), Ok(vec![]));
        assert_eq!(
            run(
                r#".type | startswith("invoice.")"#,
                json!({"type": "invoice.paid"})
            ),
            Ok(vec![json!(true)])
        );
    }

    #[test]
    fn errors_carry_jq_messages() {
        assert_eq!(run(r#"error("x")"#, json!(null)), Err("x".into()));
        assert_eq!(
            run(r#"error({a: 1})"#, json!(null)),
            Err(r#"{"a":1} (not a string)"#.into())
        );
        let type_error = run(".a + 1", json!({"a": "s"})).unwrap_err();
        assert!(type_error.contains("cannot"), "{type_error}");
        // Outputs before an error are not returned: the evaluation failed.
        assert_eq!(run(r#"1, error("late")"#, json!(null)), Err("late".into()));
    }

    #[test]
    fn the_output_cap_counts_outputs() {
        assert_eq!(run("range(10)", json!(null)).unwrap().len(), 10);
        assert_eq!(run("range(11)", json!(null)), Err("too many".into()));
        assert_eq!(run("limit(3; repeat(1))", json!(null)).unwrap().len(), 3);
    }

    #[test]
    fn halt_stops_and_halt_error_fails() {
        assert_eq!(run("1, halt, 2", json!(null)), Ok(vec![json!(1)]));
        let err = run(r#""bye" | halt_error"#, json!(null)).unwrap_err();
        assert!(err.contains("halt_error"), "{err}");
    }

    #[test]
    fn the_environment_is_not_an_input() {
        // The sandbox process starts with an empty environment; `env` must at least not
        // fail, and `$ENV` is not defined.
        assert!(run("env | type", json!(null)).is_ok());
        assert!(compile("$ENV").is_err());
    }
}
