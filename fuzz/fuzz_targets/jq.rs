//! jq programs, compiled and run in process by the code the sandbox child runs:
//! forebay's `src/expr/jq/{compile,eval,value}.rs` and `src/expr/protocol.rs`, compiled into this target (they
//! are private modules of the library, so they are included by path; nothing is copied).
//!
//! Input: the program text, then optionally a NUL byte and the JSON input (default
//! `null`). Every program is compiled; one that compiles is evaluated, on a thread with
//! the sandbox's stack, under the sandbox's default limits (`expr::Limits::default()`:
//! 1000 outputs, 512 MiB of allocations, 1 s), enforced here by a counting allocator
//! instead of `RLIMIT_AS` and a kill: an evaluation past them is what the sandbox reports
//! as a timeout or crash, and is not a finding. Programs that can recurse without bound
//! (`def`, `recurse(f)`, `repeat`, `while`, `until`, `range`, ...) are compiled but not
//! run: in the sandbox they end in a stack overflow or a kill, by design.
//!
//! Checked: nothing panics (compile, evaluation, JSON conversion), the answer survives
//! the wire format, and every output line reads back as JSON on the server side.

#![no_main]
#![feature(alloc_error_hook)]

#[allow(dead_code)]
#[path = "../../src/expr/jq/compile.rs"]
mod compile;
#[allow(dead_code)]
#[path = "../../src/expr/jq/eval.rs"]
mod eval;
#[allow(dead_code)]
#[path = "../../src/expr/protocol.rs"]
mod protocol;
#[allow(dead_code)]
#[path = "../../src/expr/jq/value.rs"]
mod value;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

// `protocol` names these as its parent's.
#[allow(unused_imports)]
use forebay::expr::{Language, Role};
use libfuzzer_sys::{Corpus, fuzz_target};

use protocol::Answer;

/// `expr::child::EVAL_STACK`: the sandbox's evaluation thread stack.
const EVAL_STACK: usize = 256 * 1024 * 1024;

/// Inputs are bounded so that one run stays short.
const MAX_INPUT: usize = 4096;

/// Identifiers of the builtins and keywords that loop or recurse without a bound of
/// their own. `..` (`recurse` without arguments) is bounded by the input and stays.
const UNBOUNDED: &[&str] = &[
    "def",
    "recurse",
    "recurse_down",
    "repeat",
    "while",
    "until",
    "range",
    "combinations",
    // Not unbounded, but they write to stderr on every run.
    "debug",
    "stderr",
];

fuzz_target!(
    init: {
        install_limits();
    },
    |data: &[u8]| -> Corpus {
        let (program, input) = match data.iter().position(|b| *b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b"null"[..]),
        };
        let Ok(program) = std::str::from_utf8(program) else {
            return Corpus::Reject;
        };
        if input.len() > MAX_INPUT {
            return Corpus::Reject;
        }
        let program = program.to_owned();
        let input = input.to_vec();
        std::thread::Builder::new()
            .stack_size(EVAL_STACK)
            .spawn(move || run(&program, &input))
            .expect("a thread")
            .join()
            .expect("the evaluation thread panicked");
        Corpus::Keep
    }
);

fn run(text: &str, input: &[u8]) {
    let program = match compile::compile(text) {
        Ok(program) => program,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    if !bounded(text) {
        return;
    }
    let limits = forebay::expr::Limits::default();
    let Some(answer) = within_limits(limits.max_memory_bytes, limits.deadline, || {
        eval::evaluate(&program, input, limits.max_outputs)
    }) else {
        return;
    };
    // The frame the child writes is what the server reads back.
    let frame = answer.to_frame();
    let payload = protocol::read_frame(&mut &frame[..])
        .expect("a frame reads")
        .expect("a frame is there");
    let back = Answer::decode(payload).expect("an answer decodes");
    assert_eq!(back, answer);
    if let Answer::Outputs(lines) = &answer
        && !lines.is_empty()
    {
        for line in lines.split(|b| *b == b'\n') {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(line) {
                panic!(
                    "output {:?} cannot be read back: {e}",
                    String::from_utf8_lossy(line)
                );
            }
        }
    }
}

/// Whether `text` has none of the [`UNBOUNDED`] identifiers.
fn bounded(text: &str) -> bool {
    !text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| UNBOUNDED.contains(&word))
}

// ---------------------------------------------------------------------------------
// The sandbox's limits, in process. While `within_limits` runs `f` on this thread, every
// allocation is counted; past `max_bytes` or `deadline` one allocation fails, the
// allocation error hook panics, and the unwinding ends `f`. That is what the sandbox's
// address-space limit and kill do to the child, without losing the process.

struct Counting;

thread_local! {
    /// Bytes `f` may still allocate; `None` outside `within_limits`.
    static LEFT: Cell<Option<i64>> = const { Cell::new(None) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// A limit was hit: allocations fail until the panic is under way.
    static TRIPPED: Cell<bool> = const { Cell::new(false) };
    static UNWINDING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !self.allowed(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LEFT.try_with(|left| {
            if let Some(n) = left.get() {
                left.set(Some(n.saturating_add(layout.size() as i64)));
            }
        });
        unsafe { System.dealloc(ptr, layout) }
    }
}

impl Counting {
    fn allowed(&self, size: usize) -> bool {
        let Ok(Some(left)) = LEFT.try_with(Cell::get) else {
            return true;
        };
        if UNWINDING.with(Cell::get) {
            return true;
        }
        let over_time = DEADLINE.with(|d| d.get().is_some_and(|d| Instant::now() > d));
        let left = left.saturating_sub(size as i64);
        if TRIPPED.with(Cell::get) || left < 0 || over_time {
            TRIPPED.with(|t| t.set(true));
            return false;
        }
        LEFT.with(|l| l.set(Some(left)));
        true
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `f()`, or `None` when it went past the memory or time limit.
fn within_limits<T>(max_bytes: u64, deadline: Duration, f: impl FnOnce() -> T) -> Option<T> {
    LEFT.with(|l| l.set(Some(max_bytes as i64)));
    DEADLINE.with(|d| d.set(Some(Instant::now() + deadline)));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
    LEFT.with(|l| l.set(None));
    DEADLINE.with(|d| d.set(None));
    let tripped = TRIPPED.with(|t| t.replace(false));
    UNWINDING.with(|u| u.set(false));
    match outcome {
        Ok(value) => Some(value),
        Err(_) if tripped => None,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A failed allocation under a limit unwinds (as `-Zoom=panic` would); libfuzzer-sys's
/// panic hook, which aborts, is skipped for that one panic. Anything else still aborts.
fn install_limits() {
    std::alloc::set_alloc_error_hook(|layout| {
        if TRIPPED.with(Cell::get) {
            UNWINDING.with(|u| u.set(true));
            std::panic::panic_any(LimitHit);
        }
        // Not ours: what the default hook would do.
        eprintln!("memory allocation of {} bytes failed", layout.size());
        std::process::abort();
    });
    let fuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<LimitHit>().is_none() {
            fuzzer_hook(info);
        }
    }));
}

struct LimitHit;
