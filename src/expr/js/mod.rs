//! JavaScript expressions, on QuickJS (`rquickjs`).
//!
//! A program is an ES module whose default export is a function of the event:
//! `export default (event) => ({ id: event.body.id })`. It may be `async`. The module is
//! compiled and its top level run once per sandbox process, in a context (globals) of its
//! own; the function is then called once per event with the same object jq sees, and any
//! promise jobs it left queued are run to the end before the next call, under the same
//! time limit.
//!
//! The engine has no network, file system, timers or module loader: QuickJS alone offers
//! none, and nothing is added. Its own limits come on top of the sandbox process's:
//! - time: an interrupt handler ends a call (and a module's top level) at the time limit,
//!   with an exception the program cannot catch; the process lives on;
//! - heap: the runtime refuses allocations past its cap with an "out of memory" exception
//!   (shared by the programs of one process); the process then retires, since a full heap
//!   (global state, say) would fail every later call too;
//! - stack: deep recursion is a `RangeError`, not a crash.
//!
//! What the function returns becomes outputs by the expression's [`Role`]:
//! - filter: its truthiness, as jq's `true` or `false`;
//! - transform: `undefined`, `null` or `false` for no delivery, an array for one delivery
//!   per element, anything else for one delivery;
//! - value: as it is (`undefined` as `null`).
//!
//! Errors name the exception and where it was raised: `TypeError: cannot read property
//! 'id' of undefined (at transforms/stripe.js:3:22)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rquickjs::{
    Array, CatchResultExt, CaughtError, Coerced, Context, Ctx, Function, Module, Persistent,
    Promise, Runtime, Value,
};

use super::Role;
use super::protocol::Answer;

/// Longest JavaScript text accepted (a module file, not a bundle of libraries).
pub const MAX_TEXT_LEN: usize = 1024 * 1024;
/// QuickJS's own stack cap: deep recursion becomes a `RangeError` well inside the thread's
/// stack.
const MAX_STACK: usize = 1024 * 1024;
/// What a module's check in the server may use: its time is what the sandbox gives a
/// module (the default deadline's share), its heap a quarter of the sandbox's.
const CHECK_HEAP: usize = 64 << 20;
/// The thread a check runs on: QuickJS's stack cap plus room for Rust's frames.
const CHECK_THREAD_STACK: usize = 8 << 20;

/// Compiles `text` as a module named `name`, runs its top level under the limits and
/// checks that its default export is a function. Runs on a thread of its own, so the
/// runtime never touches the caller's.
pub fn check(text: &str, name: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_LEN {
        return Err(format!(
            "the module is {} bytes long; the limit is {MAX_TEXT_LEN}",
            text.len()
        ));
    }
    let (text, name) = (text.to_owned(), name.to_owned());
    std::thread::Builder::new()
        .name("js-check".into())
        .stack_size(CHECK_THREAD_STACK)
        .spawn(move || {
            let deadline = super::Limits::default().deadline;
            let time = Duration::from_millis(super::sandbox::js_time_limit(deadline));
            let mut engine = Engine::new(CHECK_HEAP, time)?;
            engine.load(&name, &text).map(drop)
        })
        .map_err(|e| format!("cannot check: no thread: {e}"))?
        .join()
        .map_err(|_| String::from("the JavaScript engine failed on this module"))?
}

/// When the running call must stop, and whether it was stopped.
#[derive(Debug)]
struct Budget {
    start: Instant,
    /// Nanoseconds after `start`; `u64::MAX` when nothing runs.
    deadline: AtomicU64,
    fired: AtomicBool,
}

impl Budget {
    fn arm(&self, limit: Duration) {
        let end = self.start.elapsed().saturating_add(limit);
        let end = u64::try_from(end.as_nanos()).unwrap_or(u64::MAX);
        self.fired.store(false, Ordering::Relaxed);
        self.deadline.store(end, Ordering::Relaxed);
    }

    fn disarm(&self) -> bool {
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        self.fired.swap(false, Ordering::Relaxed)
    }

    /// QuickJS calls this every few thousand instructions.
    fn expired(&self) -> bool {
        let deadline = self.deadline.load(Ordering::Relaxed);
        if deadline == u64::MAX {
            return false;
        }
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let expired = now >= deadline;
        if expired {
            self.fired.store(true, Ordering::Relaxed);
        }
        expired
    }
}

/// One QuickJS runtime with its loaded programs (inside the sandbox process).
pub struct Engine {
    // Dropped in this order: each saved function before its context, the contexts before
    // the runtime that owns their values.
    programs: Vec<(Persistent<Function<'static>>, Context)>,
    runtime: Runtime,
    budget: Arc<Budget>,
    time_limit: Duration,
}

/// Why a call failed.
enum Failure {
    Message(String),
    OutOfMemory(String),
}

impl Engine {
    /// A runtime whose heap is capped at `heap_limit` bytes and whose calls stop after
    /// `time_limit`.
    pub fn new(heap_limit: usize, time_limit: Duration) -> Result<Engine, String> {
        let runtime =
            Runtime::new().map_err(|e| format!("cannot start the JavaScript engine: {e}"))?;
        runtime.set_memory_limit(heap_limit);
        runtime.set_max_stack_size(MAX_STACK);
        let budget = Arc::new(Budget {
            start: Instant::now(),
            deadline: AtomicU64::new(u64::MAX),
            fired: AtomicBool::new(false),
        });
        let watched = Arc::clone(&budget);
        runtime.set_interrupt_handler(Some(Box::new(move || watched.expired())));
        Ok(Engine {
            programs: Vec::new(),
            runtime,
            budget,
            time_limit,
        })
    }

    /// Compiles and runs module `text` as `name`, in a context of its own (one program's
    /// globals never meet another's); its default export is program number (the returned
    /// index).
    pub fn load(&mut self, name: &str, text: &str) -> Result<usize, String> {
        let context = Context::full(&self.runtime)
            .map_err(|e| format!("cannot start the JavaScript engine: {e}"))?;
        self.budget.arm(self.time_limit);
        let loaded = context.with(|ctx| {
            let run = || {
                let declared = Module::declare(ctx.clone(), name, text)?;
                let (module, done) = declared.eval()?;
                done.finish::<()>()?;
                module.get::<_, Value>("default")
            };
            match run().catch(&ctx) {
                Ok(export) => match Function::from_value(export.clone()) {
                    Ok(function) => Ok(Persistent::save(&ctx, function)),
                    Err(_) if export.is_undefined() => Err(format!(
                        "{name} has no default export; end it with `export default (event) => …`"
                    )),
                    Err(_) => Err(format!(
                        "the default export of {name} is {}, not a function; write `export default (event) => …`",
                        kind(&export)
                    )),
                },
                Err(caught) => Err(describe(&caught)),
            }
        });
        self.drain_jobs();
        let interrupted = self.budget.disarm();
        match loaded {
            Ok(function) => {
                self.programs.push((function, context));
                Ok(self.programs.len() - 1)
            }
            Err(_) if interrupted => Err(format!(
                "the top level of {name} ran past its time limit of {:?}",
                self.time_limit
            )),
            Err(message) => Err(message),
        }
    }

    /// Calls program `index` on the JSON text `input`; its result shaped by `role`.
    pub fn call(&self, index: usize, role: Role, input: &[u8], max_outputs: usize) -> Answer {
        let Some((function, context)) = self.programs.get(index) else {
            return Answer::Failed(format!("no JavaScript program #{index}"));
        };
        self.budget.arm(self.time_limit);
        let answer = context.with(|ctx| {
            let run = || -> rquickjs::Result<Result<Vec<u8>, Failure>> {
                let function = function.clone().restore(&ctx)?;
                let event = ctx.json_parse(input)?;
                let mut result: Value = function.call((event,))?;
                if let Ok(promise) = Promise::from_value(result.clone()) {
                    result = promise.finish::<Value>()?;
                }
                Ok(outputs(&ctx, role, result, max_outputs))
            };
            match run().catch(&ctx) {
                Ok(shaped) => shaped,
                Err(caught) => Err(failure(&caught)),
            }
        });
        // Jobs the call queued and did not await run now, under its budget, so they never
        // run inside (and on the time of) another program's call.
        self.drain_jobs();
        let interrupted = self.budget.disarm();
        match answer {
            Err(_) if interrupted => Answer::TimeLimit,
            // A job it queued ran past the limit: the call's time all the same.
            Ok(_) if interrupted => Answer::TimeLimit,
            Ok(lines) => Answer::Outputs(lines),
            Err(Failure::Message(message)) if message == TOO_MANY => Answer::TooManyOutputs,
            Err(Failure::Message(message)) => {
                self.runtime.run_gc();
                Answer::Failed(message)
            }
            Err(Failure::OutOfMemory(message)) => Answer::Retire(message),
        }
    }

    /// Runs the queued promise jobs to the end; their errors are the program's business
    /// (an unawaited promise that rejects), not the call's. Once the budget has run out,
    /// every job is interrupted at once, so this ends.
    fn drain_jobs(&self) {
        while self.runtime.is_job_pending() {
            let _ = self.runtime.execute_pending_job();
        }
    }
}

/// What a value is, as a sentence says it.
fn kind(value: &Value<'_>) -> &'static str {
    use rquickjs::Type;
    match value.type_of() {
        Type::Int | Type::Float => "a number",
        Type::Bool => "a boolean",
        Type::String => "a string",
        Type::Array => "an array",
        Type::Null => "null",
        Type::Undefined | Type::Uninitialized => "undefined",
        Type::BigInt => "a BigInt",
        Type::Symbol => "a symbol",
        _ => "an object",
    }
}

/// The marker [`outputs`] fails with when an array has more elements than the cap.
const TOO_MANY: &str = "\u{0}too many outputs";

/// `result` as the answer's lines: compact JSON texts separated by `\n`.
fn outputs<'js>(
    ctx: &Ctx<'js>,
    role: Role,
    result: Value<'js>,
    max_outputs: usize,
) -> Result<Vec<u8>, Failure> {
    let mut lines = Vec::new();
    let mut push = |value: Value<'js>, n: usize| -> Result<(), Failure> {
        let text = ctx
            .json_stringify(value)
            .catch(ctx)
            .map_err(|caught| failure(&caught))?;
        let Some(text) = text else {
            return Err(Failure::Message(format!(
                "output {n} is not JSON (undefined, a function or a symbol)"
            )));
        };
        let text = text
            .to_string()
            .map_err(|e| Failure::Message(format!("output {n} cannot be read: {e}")))?;
        if n > 1 {
            lines.push(b'\n');
        }
        lines.extend_from_slice(text.as_bytes());
        Ok(())
    };
    match role {
        Role::Filter => {
            let keep = result.get::<Coerced<bool>>().map(|b| b.0).unwrap_or(false);
            lines.extend_from_slice(if keep { b"true" } else { b"false" });
        }
        Role::Value if result.is_undefined() => lines.extend_from_slice(b"null"),
        Role::Value => push(result, 1)?,
        Role::Transform => {
            if result.is_undefined() || result.is_null() || result.as_bool() == Some(false) {
                return Ok(lines);
            }
            match Array::from_value(result.clone()) {
                Ok(array) => {
                    if array.len() > max_outputs {
                        return Err(Failure::Message(TOO_MANY.into()));
                    }
                    for (i, element) in array.iter::<Value>().enumerate() {
                        let element = element.catch(ctx).map_err(|caught| failure(&caught))?;
                        push(element, i + 1)?;
                    }
                }
                Err(_) => push(result, 1)?,
            }
        }
    }
    Ok(lines)
}

/// A full heap is told apart by what QuickJS throws for it exactly, never by text a
/// program or its input could put in a message. (Interrupts are told by the budget.)
fn failure(caught: &CaughtError<'_>) -> Failure {
    let out_of_memory = match caught {
        CaughtError::Error(rquickjs::Error::Allocation) => true,
        CaughtError::Exception(exception) => {
            exception
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .as_deref()
                == Some("InternalError")
                && exception.message().as_deref() == Some("out of memory")
        }
        _ => false,
    };
    let message = describe(caught);
    if out_of_memory {
        Failure::OutOfMemory(message)
    } else {
        Failure::Message(message)
    }
}

/// One line: the exception's name and message, and where it was raised.
fn describe(caught: &CaughtError<'_>) -> String {
    match caught {
        CaughtError::Exception(exception) => {
            let name: Option<String> = exception.get::<_, Option<String>>("name").ok().flatten();
            let message = exception.message().unwrap_or_default();
            let head = match name {
                Some(name) if !message.is_empty() => format!("{name}: {message}"),
                Some(name) => name,
                None => message,
            };
            match exception.stack().as_deref().and_then(location) {
                Some(at) => format!("{head} (at {at})"),
                None => head,
            }
        }
        CaughtError::Value(value) => {
            let shown = value
                .ctx()
                .json_stringify(value.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| value.type_name().to_owned());
            format!("uncaught exception: {shown}")
        }
        CaughtError::Error(error) => error.to_string(),
    }
}

/// `name:line:column` from the first frame of a QuickJS stack that has one
/// (`    at f (transforms/stripe.js:3:22)` or `    at transforms/stripe.js:3:22`).
fn location(stack: &str) -> Option<String> {
    stack.lines().find_map(|line| {
        let frame = line.trim().strip_prefix("at ")?;
        let place = match frame.rsplit_once(" (") {
            Some((_, inside)) => inside.strip_suffix(')')?,
            None => frame,
        };
        let mut parts = place.rsplitn(3, ':');
        let column = parts.next()?;
        let line = parts.next()?;
        let file = parts.next()?;
        let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        (numeric(line) && numeric(column) && !file.starts_with('<'))
            .then(|| format!("{file}:{line}:{column}"))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;

    fn engine(text: &str) -> (Engine, usize) {
        let mut engine = Engine::new(32 << 20, Duration::from_millis(300)).unwrap();
        let index = engine.load("test.js", text).unwrap();
        (engine, index)
    }

    fn run(text: &str, role: Role, input: Json) -> Result<Vec<Json>, String> {
        let (engine, index) = engine(text);
        let input = serde_json::to_vec(&input).unwrap();
        engine.call(index, role, &input, 10).into_test_result()
    }

    #[test]
    fn a_transform_returns_one_or_many_or_no_deliveries() {
        let event = json!({"id": "evt_1", "body": {"items": [1, 2], "big": 1.5}});
        assert_eq!(
            run(
                "export default (e) => ({ id: e.id, n: e.body.items.length })",
                Role::Transform,
                event.clone()
            ),
            Ok(vec![json!({"id": "evt_1", "n": 2})])
        );
        assert_eq!(
            run(
                "export default (e) => e.body.items.map((i) => ({ i }))",
                Role::Transform,
                event.clone()
            ),
            Ok(vec![json!({"i": 1}), json!({"i": 2})])
        );
        for nothing in ["undefined", "null", "false"] {
            let text = format!("export default () => {nothing}");
            assert_eq!(run(&text, Role::Transform, event.clone()), Ok(vec![]));
        }
        assert_eq!(
            run(
                "export default async (e) => { await null; return e.body.big }",
                Role::Transform,
                event
            ),
            Ok(vec![json!(1.5)])
        );
    }

    #[test]
    fn a_filter_is_truthiness_and_a_value_is_as_returned() {
        for (text, kept) in [("1", true), ("'yes'", true), ("0", false), ("''", false)] {
            let text = format!("export default () => {text}");
            assert_eq!(run(&text, Role::Filter, json!(null)), Ok(vec![json!(kept)]));
        }
        assert_eq!(
            run("export default (e) => e.k", Role::Value, json!({})),
            Ok(vec![json!(null)])
        );
        assert_eq!(
            run("export default (e) => e.k", Role::Value, json!({"k": [1]})),
            Ok(vec![json!([1])])
        );
    }

    #[test]
    fn errors_name_the_exception_and_where() {
        let err = run(
            "export default (e) => {\n  return e.body.id;\n}",
            Role::Transform,
            json!({}),
        )
        .unwrap_err();
        assert!(err.starts_with("TypeError: "), "{err}");
        assert!(err.ends_with("(at test.js:2:10)"), "{err}");
        assert_eq!(
            run(
                "export default () => { throw 'plain' }",
                Role::Transform,
                json!({})
            ),
            Err("uncaught exception: \"plain\"".into())
        );
        let mut engine = Engine::new(32 << 20, Duration::from_millis(300)).unwrap();
        let err = engine
            .load("bad.js", "export default (e) => {\n  e +;\n}")
            .unwrap_err();
        assert!(err.starts_with("SyntaxError: "), "{err}");
        assert!(err.contains("(at bad.js:2:"), "{err}");
    }

    #[test]
    fn a_module_must_export_a_function() {
        let mut engine = Engine::new(32 << 20, Duration::from_millis(300)).unwrap();
        let err = engine.load("a.js", "const x = 1;").unwrap_err();
        assert!(err.contains("a.js has no default export"), "{err}");
        let err = engine.load("b.js", "export default 42").unwrap_err();
        assert!(err.contains("is a number, not a function"), "{err}");
        let err = engine
            .load("c.js", "import x from 'fs'; export default () => x")
            .unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn limits_stop_loops_allocations_and_recursion() {
        let started = Instant::now();
        assert_eq!(
            run(
                "export default () => { for (;;) {} }",
                Role::Transform,
                json!({})
            ),
            Err("time limit".into())
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The interrupt cannot be caught.
        assert_eq!(
            run(
                "export default () => { try { for (;;) {} } catch (e) { return 1 } }",
                Role::Transform,
                json!({})
            ),
            Err("time limit".into())
        );
        let grown = run(
            "export default () => { const a = []; for (let i = 0; ; i++) a.push('x'.repeat(100000) + i) }",
            Role::Transform,
            json!({}),
        );
        assert!(
            grown.as_ref().is_err_and(|e| e.starts_with("retire: ")),
            "{grown:?}"
        );
        let deep = run(
            "const f = (n) => f(n + 1) + 1; export default () => f(0)",
            Role::Transform,
            json!({}),
        )
        .unwrap_err();
        assert!(deep.contains("RangeError"), "{deep}");
        let mut engine = Engine::new(32 << 20, Duration::from_millis(200)).unwrap();
        let err = engine.load("spin.js", "for (;;) {}").unwrap_err();
        assert!(err.contains("ran past its time limit"), "{err}");
    }

    #[test]
    fn too_many_elements_and_outputs_that_are_not_json() {
        assert_eq!(
            run(
                "export default () => Array.from({ length: 11 }, (_, i) => i)",
                Role::Transform,
                json!({})
            ),
            Err("too many".into())
        );
        let err = run("export default () => [() => 1]", Role::Transform, json!({})).unwrap_err();
        assert!(err.contains("output 1 is not JSON"), "{err}");
        let err = run("export default () => 1n", Role::Value, json!({})).unwrap_err();
        assert!(err.contains("BigInt"), "{err}");
    }

    #[test]
    fn a_message_that_reads_like_a_limit_is_still_a_plain_failure() {
        for text in [
            "interrupted",
            "out of memory",
            "InternalError: out of memory",
        ] {
            let module = format!("export default () => {{ throw new Error({text:?}) }}");
            let err = run(&module, Role::Transform, json!({})).unwrap_err();
            assert!(
                err.starts_with(&format!("Error: {text} (at test.js:1:")),
                "{err}"
            );
        }
        let mut engine = Engine::new(32 << 20, Duration::from_millis(300)).unwrap();
        let index = engine
            .load("interrupted.js", "export default (e) => e.a.b")
            .unwrap();
        let answer = engine.call(index, Role::Value, b"{}", 10);
        assert!(
            matches!(&answer, Answer::Failed(m) if m.starts_with("TypeError")),
            "{answer:?}"
        );
    }

    #[test]
    fn jobs_a_call_leaves_queued_run_on_its_own_time_and_globals_are_per_program() {
        let mut engine = Engine::new(32 << 20, Duration::from_millis(300)).unwrap();
        let leaves_a_spin = engine
            .load(
                "a.js",
                "Array.prototype.total = 1;\n\
                 export default () => { Promise.resolve().then(() => { for (;;) {} }); return 1 }",
            )
            .unwrap();
        let quick = engine
            .load(
                "b.js",
                "Object.defineProperty(Array.prototype, 'total', { value: 2 });\n\
                 export default async () => [].total",
            )
            .unwrap();
        assert_eq!(
            engine.call(leaves_a_spin, Role::Value, b"{}", 10),
            Answer::TimeLimit
        );
        let started = Instant::now();
        assert_eq!(
            engine
                .call(quick, Role::Value, b"{}", 10)
                .into_test_result(),
            Ok(vec![json!(2)])
        );
        // Not the queued spin's 300 ms.
        assert!(started.elapsed() < Duration::from_millis(250));
    }

    #[test]
    fn a_stack_location_is_read_from_either_frame_form() {
        assert_eq!(
            location("    at f (x/y.js:3:22)\n    at <eval> (z:1:1)"),
            Some("x/y.js:3:22".into())
        );
        assert_eq!(location("    at y.js:1:5\n"), Some("y.js:1:5".into()));
        assert_eq!(location("    at <anonymous>\n"), None);
    }
}
