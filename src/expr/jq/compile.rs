//! Compiling jq text with jaq, and turning jaq's load and compile errors into one readable
//! line that names what is wrong and where (`undefined filter `foo/0` at 1:5`).
//!
//! Both sides use this: the server to validate an expression at config load, the sandbox
//! process to get the filter it runs.

use jaq_core::compile::Undefined;
use jaq_core::data::JustLut;
use jaq_core::load::{self, Arena, File, Loader};
use jaq_json::Val;

/// A compiled jaq filter over JSON values.
pub type Program = jaq_core::Filter<JustLut<Val>>;

/// Longer expressions are refused before parsing: jaq's parser recurses per nesting level,
/// and an expression is a line in a config file, not a program library.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// How many errors one message lists; the rest are counted.
const MAX_LISTED: usize = 3;

/// Parses and compiles `text` with jaq's core, std and JSON definitions. No module loading:
/// `import`/`include` fail, so an expression cannot read files.
pub fn compile(text: &str) -> Result<Program, String> {
    if text.len() > MAX_TEXT_LEN {
        return Err(format!(
            "expression is {} bytes long; the limit is {MAX_TEXT_LEN}",
            text.len()
        ));
    }
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: text,
                path: (),
            },
        )
        .map_err(|errors| {
            let messages = errors
                .iter()
                .flat_map(|(file, error)| load_error(file.code, error));
            join(messages.collect())
        })?;
    jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            let messages = errors.iter().flat_map(|(file, undefined)| {
                undefined
                    .iter()
                    .map(|(name, what)| undefined_message(file.code, name, what))
            });
            join(messages.collect())
        })
}

fn load_error(code: &str, error: &load::Error<&str>) -> Vec<String> {
    match error {
        load::Error::Io(imports) => imports
            .iter()
            .map(|(path, _why)| {
                format!(
                    "cannot load module \"{path}\"{}: modules are not supported",
                    at(code, path)
                )
            })
            .collect(),
        load::Error::Lex(errors) => errors
            .iter()
            .map(|(expected, rest)| lex_message(code, expected, rest))
            .collect(),
        load::Error::Parse(errors) => errors
            .iter()
            .map(|(expected, found)| {
                // `found` is a slice of the source; an empty one sits at its end.
                let what = if found.is_empty() {
                    String::from("the end of the expression")
                } else {
                    format!("`{}`", snippet(found))
                };
                format!(
                    "syntax error{}: expected {}, found {what}",
                    at(code, found),
                    expected.as_str()
                )
            })
            .collect(),
    }
}

fn lex_message(code: &str, expected: &load::lex::Expect<&str>, rest: &str) -> String {
    use load::lex::Expect;
    match expected {
        Expect::Delim(open) => {
            let close = match *open {
                "(" => "`)`",
                "[" => "`]`",
                "{" => "`}`",
                "\"" => "closing `\"`",
                _ => "closing delimiter",
            };
            format!(
                "syntax error: `{open}`{} is never closed (expected {close}{})",
                at(code, open),
                at(code, rest),
            )
        }
        Expect::Token => {
            let c = rest.chars().next().map_or(String::new(), String::from);
            format!("syntax error{}: unexpected character `{c}`", at(code, rest))
        }
        other => format!(
            "syntax error{}: expected {}",
            at(code, rest),
            other.as_str()
        ),
    }
}

fn undefined_message(code: &str, name: &str, what: &Undefined) -> String {
    let shown = match what {
        Undefined::Filter(arity) => format!("{name}/{arity}"),
        _ => name.to_string(),
    };
    format!("undefined {} `{shown}`{}", what.as_str(), at(code, name))
}

/// " at LINE:COLUMN" for a slice of `code`, " at the end" for an empty slice at its end, and
/// nothing for text that is not a slice of `code` (jaq's own definitions).
fn at(code: &str, part: &str) -> String {
    let (start, base) = (part.as_ptr() as usize, code.as_ptr() as usize);
    if start < base || start > base + code.len() {
        return String::new();
    }
    let offset = start - base;
    if offset == code.len() {
        return String::from(" at the end");
    }
    let Some(before) = code.get(..offset) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!(" at {line}:{column}")
}

/// At most 40 characters of `text`, on one line.
fn snippet(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut short: String = line.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn join(mut messages: Vec<String>) -> String {
    if messages.is_empty() {
        return String::from("the expression does not compile");
    }
    let more = messages.len().saturating_sub(MAX_LISTED);
    messages.truncate(MAX_LISTED);
    let mut text = messages.join("; ");
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    text
}
