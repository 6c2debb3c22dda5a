//! The sandbox process: `forebay __expr-sandbox`, started by [`super::Sandbox`].
//!
//! Two threads. The main thread reads batch frames from stdin and hands them over; at end
//! of input (the server closed the pipe or died) it ends the whole process at once, even
//! while an evaluation spins, so no orphan is left running. The `expr-eval` thread, with a
//! large stack, compiles the programs (jq) and loads the modules (JavaScript), caps the
//! process's address space (`RLIMIT_AS`), then evaluates each batch in order, writing each
//! answer on stdout as soon as it has it.
//!
//! A stack overflow or a failed allocation aborts the process; the server sees end of file
//! and reports a crash. Nothing here tries to survive either.

use std::io::{self, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::mpsc;

use std::time::Duration;

use super::jq::compile::{Program, compile};
use super::jq::eval::evaluate;
use super::js::Engine;
use super::protocol::{self, Answer, Batch, Init};
use super::{Language, Role};

/// The evaluation thread's stack: jaq recurses on the Rust stack per nesting level of the
/// program's own recursion. Reserved address space only; pages are touched as used.
/// (QuickJS caps its own stack far below this.)
pub const EVAL_STACK: usize = 256 * 1024 * 1024;

/// Exit codes, for the server's crash report.
const EXIT_PROTOCOL: i32 = 3;
const EXIT_PANIC: i32 = 70;

/// See the module doc.
pub fn sandbox_main() -> ExitCode {
    let (requests, inbox) = mpsc::channel::<Vec<u8>>();
    let spawned = std::thread::Builder::new()
        .name("expr-eval".into())
        .stack_size(EVAL_STACK)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || serve(&inbox)));
            exit_now(match outcome {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("expr sandbox: {e}");
                    EXIT_PROTOCOL
                }
                Err(_) => EXIT_PANIC,
            })
        });
    if let Err(e) = spawned {
        eprintln!("expr sandbox: cannot start the evaluation thread: {e}");
        return ExitCode::from(EXIT_PANIC as u8);
    }
    let mut stdin = io::stdin().lock();
    loop {
        match protocol::read_frame(&mut stdin) {
            Ok(Some(frame)) => {
                if requests.send(frame).is_err() {
                    // The evaluation thread is gone and is ending the process.
                    return ExitCode::from(EXIT_PANIC as u8);
                }
            }
            Ok(None) => exit_now(0),
            Err(e) => {
                eprintln!("expr sandbox: reading a request: {e}");
                exit_now(EXIT_PROTOCOL)
            }
        }
    }
}

/// Ends the process now, without unwinding or waiting for the other thread.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running destructors or atexit handlers;
    // nothing needs them: every answer is flushed as it is written, and no file or
    // temporary state outlives the process.
    unsafe { libc::_exit(code) }
}

fn serve(inbox: &mpsc::Receiver<Vec<u8>>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    let Ok(init) = inbox.recv() else {
        return Ok(());
    };
    let init: Init = serde_json::from_slice(&init).map_err(io::Error::other)?;
    let programs = match Programs::load(&init) {
        Ok(programs) => programs,
        Err(e) => return protocol::write_frame(&mut stdout, &Answer::Failed(e).to_frame()),
    };
    limit_memory(init.max_memory_bytes);
    protocol::write_frame(&mut stdout, &Answer::Ready.to_frame())?;
    for payload in inbox {
        let batch = Batch::decode(&payload).map_err(io::Error::other)?;
        let max_outputs = batch.max_outputs as usize;
        for (program, input) in batch.items {
            let answer = programs.run(program as usize, input, max_outputs);
            // Each answer goes out at once: the server times evaluations one by one.
            stdout.write_all(&answer.to_frame())?;
            stdout.flush()?;
        }
    }
    Ok(())
}

/// The programs of [`Init`], ready to run.
struct Programs {
    loaded: Vec<Loaded>,
    /// Present when any program is JavaScript.
    engine: Option<Engine>,
}

enum Loaded {
    Jq(Program),
    Js {
        index: usize,
        role: Role,
    },
    /// A module that passed its check in the server but did not load here (its top level
    /// ran longer, or the heap the programs share was full): only its own evaluations fail.
    Broken(String),
}

impl Programs {
    fn load(init: &Init) -> Result<Programs, String> {
        let mut engine = None;
        let mut loaded = Vec::with_capacity(init.programs.len());
        for (i, program) in init.programs.iter().enumerate() {
            let failed = |e: String| format!("program #{i}: {e}");
            loaded.push(match program.language {
                Language::Jq => Loaded::Jq(compile(&program.text).map_err(failed)?),
                Language::Js => {
                    if engine.is_none() {
                        // Half the evaluation memory: JavaScript's own cap is then reached
                        // before the process's, and is an exception instead of a crash.
                        let heap = usize::try_from(init.max_memory_bytes / 2).unwrap_or(usize::MAX);
                        let time = Duration::from_millis(init.js_time_limit_ms);
                        engine = Some(Engine::new(heap, time).map_err(failed)?);
                    }
                    let Some(engine) = engine.as_mut() else {
                        return Err(failed("the JavaScript engine did not start".into()));
                    };
                    match engine.load(&program.name, &program.text) {
                        Ok(index) => Loaded::Js {
                            index,
                            role: program.role,
                        },
                        Err(e) => {
                            Loaded::Broken(format!("the module did not load in the sandbox: {e}"))
                        }
                    }
                }
            });
        }
        Ok(Programs { loaded, engine })
    }

    fn run(&self, program: usize, input: &[u8], max_outputs: usize) -> Answer {
        match (self.loaded.get(program), &self.engine) {
            (Some(Loaded::Jq(filter)), _) => evaluate(filter, input, max_outputs),
            (Some(Loaded::Js { index, role }), Some(engine)) => {
                engine.call(*index, *role, input, max_outputs)
            }
            (Some(Loaded::Broken(why)), _) => Answer::Failed(why.clone()),
            _ => Answer::Failed(format!("no program #{program}")),
        }
    }
}

/// Caps the address space at what the process maps now (binary, libraries, the evaluation
/// stack, the compiled programs) plus `extra` bytes for evaluation.
fn limit_memory(extra: u64) {
    // Without /proc, assume a generous baseline: the stack plus 256 MiB.
    let baseline = mapped_bytes().unwrap_or(EVAL_STACK as u64 + (256 << 20));
    let limit = baseline.saturating_add(extra);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) } != 0 {
        eprintln!(
            "expr sandbox: cannot limit memory: {}",
            io::Error::last_os_error()
        );
    }
}

/// The process's current virtual size (`VmSize` in /proc/self/status).
fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
