//! Expressions (filters, transforms, ordering and dedup keys) in jq or JavaScript,
//! checked in the server and evaluated in sandbox processes.
//!
//! jaq has no time or memory limits: `def f: f; f` never ends, `last(range(1e18))` spins,
//! and `def f: [f]; f` overflows the stack, which aborts the whole process. None of that can
//! be stopped from inside a thread. So an expression is only *checked* in the server
//! ([`Expr::jq`], [`Expr::js`]); it is *evaluated* in a child process, `forebay
//! __expr-sandbox`, which the server can kill at a deadline, which runs under an
//! address-space limit, and whose crash is reported as [`EvalError::Crashed`] instead of
//! taking the server down. JavaScript (QuickJS) has its own limits besides (an interrupt at
//! a time limit, a heap cap, a stack cap), and runs in the same processes, so both
//! languages have the same boundary. [`Sandbox`] keeps a pool of such processes and sends
//! them evaluations in batches.
//!
//! - `jq`: jaq text to a filter, with readable error messages; running it and turning its
//!   outputs into JSON (inside the sandbox).
//! - `js`: a JavaScript module to its default export, with errors at their line and column;
//!   calling it and shaping what it returns into outputs (inside the sandbox).
//! - `protocol`: the frames between server and sandbox.
//! - `child`: the sandbox process ([`sandbox_main`]).
//! - `sandbox`: the pool, on the server side ([`Sandbox`]).

mod child;
pub mod jq;
pub mod js;
mod protocol;
mod sandbox;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use child::sandbox_main;
pub use sandbox::Sandbox;

/// The first CLI argument that turns the binary into a sandbox process.
pub const SANDBOX_ARG: &str = "__expr-sandbox";

/// The language an expression is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Jq,
    Js,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Jq => "jq",
            Language::Js => "js",
        }
    }
}

/// What an expression's result is used for. A jq program's outputs are the same whatever
/// its role; a JavaScript function returns one value, which the role shapes into outputs:
/// a filter's truthiness, a transform's array split into one delivery per element, a key
/// as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One output, `true` or `false`: whether to deliver.
    Filter,
    /// The bodies to deliver: none, one, or one per element of a returned array.
    Transform,
    /// One value (an ordering key, a dedup key, a search predicate's verdict).
    Value,
}

/// An expression whose text compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    language: Language,
    role: Role,
    /// What errors cite: the config key, or the file the text came from.
    name: String,
    text: String,
}

impl Expr {
    /// Compiles jq `text` (with jaq's std library and JSON definitions) in this process, to
    /// validate it. The error is one readable line naming what is wrong and where, e.g.
    /// "undefined filter `foo/0` at 1:5".
    ///
    /// Compiling recurses per nesting level of the text, so it runs on a thread with a
    /// large stack, and texts over 16 KiB are refused. It blocks for a few milliseconds
    /// (jaq parses its standard library each time): call it at config load, not per event.
    pub fn compile(text: &str) -> Result<Expr, String> {
        Self::jq(text, Role::Value)
    }

    /// [`Expr::compile`], for a given role.
    pub fn jq(text: &str, role: Role) -> Result<Expr, String> {
        let owned = text.to_owned();
        let checked = std::thread::Builder::new()
            .name("jq-compile".into())
            .stack_size(child::EVAL_STACK)
            .spawn(move || jq::compile::compile(&owned).map(drop))
            .map_err(|e| format!("cannot compile: no thread: {e}"))?
            .join()
            .map_err(|_| String::from("the jq compiler failed on this expression"))?;
        checked.map(|()| Expr {
            language: Language::Jq,
            role,
            name: String::new(),
            text: text.to_owned(),
        })
    }

    /// Checks a JavaScript module in this process: it must compile, run its top level
    /// within the limits, and `export default` a function. `name` is what errors cite
    /// (a file name, or the config key the text is written under). Blocks for a few
    /// milliseconds, up to a second for a module whose top level spins: call it at config
    /// load, not per event.
    pub fn js(text: &str, name: &str, role: Role) -> Result<Expr, String> {
        js::check(text, name)?;
        Ok(Expr {
            language: Language::Js,
            role,
            name: name.to_owned(),
            text: text.to_owned(),
        })
    }

    /// The source text, as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn language(&self) -> Language {
        self.language
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// What errors cite (empty for jq, whose messages carry positions only).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Limits applied to every evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time for one evaluation, from sending the input to the last output.
    pub deadline: Duration,
    /// More outputs than this fail the evaluation.
    pub max_outputs: usize,
    /// Memory one evaluation may allocate (the sandbox's address space beyond what it has
    /// mapped at start, which includes its 256 MiB stack reservation). JavaScript's heap is
    /// capped at half of it, so a program that allocates without bound gets an exception
    /// instead of ending the process.
    pub max_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(1),
            max_outputs: 1000,
            max_memory_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Why an evaluation produced no outputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The expression raised an error (jq `error`, type errors, …); the text is jaq's message.
    #[error("{0}")]
    Failed(String),
    #[error("the expression ran past its time limit of {0:?}")]
    Timeout(Duration),
    #[error("the expression produced more than {0} outputs")]
    TooManyOutputs(usize),
    /// The sandbox process died (stack overflow from unbounded recursion, memory limit, killed).
    #[error("the expression crashed the evaluator ({0}); unbounded recursion or memory use?")]
    Crashed(String),
    /// The sandbox could not be started at all.
    #[error("cannot start the expression sandbox: {0}")]
    Unavailable(String),
    /// Not evaluated: an earlier evaluation of the same program in the batch ran past its
    /// time limit ([`Sandbox::run_many_until_timeout`]).
    #[error("not evaluated: the same expression ran past its time limit just before")]
    Skipped,
}

static SANDBOX_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Which executable runs the sandbox. Without a call, the running executable itself
/// (`/proc/self/exe`, which stays valid when the file is replaced during an upgrade).
/// Integration tests that run the server in-process pass `env!("CARGO_BIN_EXE_forebay")`,
/// since the test harness binary must not be spawned. The first call wins; later calls
/// are ignored (with a warning if they name another path).
pub fn set_sandbox_exe(path: PathBuf) {
    if let Err(path) = SANDBOX_EXE.set(path)
        && SANDBOX_EXE.get() != Some(&path)
    {
        tracing::warn!(ignored = %path.display(), "the sandbox executable is already set");
    }
}

fn sandbox_exe() -> Result<PathBuf, String> {
    if let Some(path) = SANDBOX_EXE.get() {
        return Ok(path.clone());
    }
    let own = PathBuf::from("/proc/self/exe");
    if own.exists() {
        return Ok(own);
    }
    std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Expr::compile(text).unwrap_err()
    }

    #[test]
    fn expressions_from_routes_compile() {
        for text in [
            r#".body.type | startswith("invoice.")"#,
            ".body.items[]",
            "{id: .body.id}",
            "select(.a > 1)",
            "map(select(.ok)) | length",
            r#".body | @base64d? // "x" | test("a+"; "x")"#,
            "now | todate",
        ] {
            let expr = Expr::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(expr.text(), text);
        }
    }

    #[test]
    fn undefined_names_say_what_and_where() {
        assert_eq!(error(".a | foo"), "undefined filter `foo/0` at 1:6");
        assert_eq!(
            error("map(.)\n| bar(1; 2)"),
            "undefined filter `bar/2` at 2:3"
        );
        assert_eq!(error(".a + $x"), "undefined variable `$x` at 1:6");
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        assert_eq!(
            error(".a | | .b"),
            "syntax error at 1:6: expected term, found `|`"
        );
        assert_eq!(
            error(".a |"),
            "syntax error at the end: expected term, found the end of the expression"
        );
        assert_eq!(
            error("if . then 1"),
            "syntax error at the end: expected else or end, found the end of the expression"
        );
        assert_eq!(
            error(".a § 1"),
            "syntax error at 1:4: unexpected character `§`"
        );
    }

    #[test]
    fn unbalanced_brackets_name_the_opening_one() {
        assert_eq!(
            error("[.a, (.b"),
            "syntax error: `(` at 1:6 is never closed (expected `)` at the end); \
             syntax error: `[` at 1:1 is never closed (expected `]` at the end)"
        );
        assert_eq!(
            error("{a: [1, 2}"),
            "syntax error: `[` at 1:5 is never closed (expected `]` at 1:10)"
        );
        assert_eq!(
            error(r#"{a: "x}"#),
            "syntax error: `\"` at 1:5 is never closed (expected closing `\"` at the end); \
             syntax error: `{` at 1:1 is never closed (expected `}` at the end)"
        );
        assert_eq!(
            error(".a]"),
            "syntax error at 1:3: unexpected character `]`"
        );
    }

    #[test]
    fn modules_cannot_be_loaded() {
        let err = error(r#"include "secrets"; ."#);
        assert!(err.contains("modules are not supported"), "{err}");
    }

    #[test]
    fn no_input_makes_the_compiler_panic_or_overflow() {
        for text in [
            "",
            " ",
            "\"\\u12",
            "\"\\(",
            "{(",
            ".[",
            "@",
            "$",
            "def",
            "def f: ; f",
            "reduce . as $x",
            "import \"a\" as $x; .",
            "label $out | break $nope",
            "\u{0}",
            "💣",
        ] {
            let _ = Expr::compile(text);
        }
    }

    /// The parser and compiler recurse about once per character for these; at the length
    /// limit they must fit the compile thread's stack (in a debug build, the worst case).
    #[test]
    fn deep_nesting_at_the_length_limit_fits_the_stack() {
        let fill = |unit: &str, end: &str| {
            let n = (jq::compile::MAX_TEXT_LEN - end.len()) / unit.len();
            unit.repeat(n) + end
        };
        let half = jq::compile::MAX_TEXT_LEN / 2;
        for text in [
            fill("-", "1"),
            "(".repeat(half) + &")".repeat(half),
            "[".repeat(half) + &"]".repeat(half),
            "[".repeat(jq::compile::MAX_TEXT_LEN),
            fill(".|", "."),
            fill("1+", "1"),
            fill("1,", "1"),
            fill("{a:", "1"),
            fill("try ", "1"),
            fill(". as $x|", "."),
            fill("def f:", "."),
            fill("if . then ", "."),
            fill("\"\\(", "."),
            fill(".a", ""),
            fill(".[", ""),
        ] {
            let _ = Expr::compile(&text);
        }
        assert!(Expr::compile(&".".repeat(jq::compile::MAX_TEXT_LEN + 1)).is_err());
    }
}
