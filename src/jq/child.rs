//! The sandbox process: `forebay __jq-sandbox`, started by [`super::Sandbox`].
//!
//! Two threads. The main thread reads request frames from stdin and hands them over; at end
//! of input (the server closed the pipe or died) it ends the whole process at once, even
//! while an evaluation spins, so no orphan is left running. The `jq-eval` thread, with a
//! large stack, compiles the programs, caps the process's address space (`RLIMIT_AS`), then
//! answers one request at a time on stdout.
//!
//! A stack overflow or a failed allocation aborts the process; the server sees end of file
//! and reports a crash. Nothing here tries to survive either.

use std::io::{self, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::mpsc;

use super::compile::{Program, compile};
use super::eval::evaluate;
use super::protocol::{self, Answer, Init, Request};

/// The evaluation thread's stack: jaq recurses on the Rust stack per nesting level of the
/// program's own recursion. Reserved address space only; pages are touched as used.
pub const EVAL_STACK: usize = 256 * 1024 * 1024;

/// Exit codes, for the server's crash report.
const EXIT_PROTOCOL: i32 = 3;
const EXIT_PANIC: i32 = 70;

/// See the module doc.
pub fn sandbox_main() -> ExitCode {
    let (requests, inbox) = mpsc::channel::<Vec<u8>>();
    let spawned = std::thread::Builder::new()
        .name("jq-eval".into())
        .stack_size(EVAL_STACK)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || serve(&inbox)));
            exit_now(match outcome {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("jq sandbox: {e}");
                    EXIT_PROTOCOL
                }
                Err(_) => EXIT_PANIC,
            })
        });
    if let Err(e) = spawned {
        eprintln!("jq sandbox: cannot start the evaluation thread: {e}");
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
                eprintln!("jq sandbox: reading a request: {e}");
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
    let programs = match compile_all(&init.programs) {
        Ok(programs) => programs,
        Err(e) => return protocol::write_frame(&mut stdout, &Answer::Failed(e).to_frame()),
    };
    limit_memory(init.max_memory_bytes);
    protocol::write_frame(&mut stdout, &Answer::Ready.to_frame())?;
    for payload in inbox {
        let request = Request::decode(&payload).map_err(io::Error::other)?;
        let answer = match programs.get(request.program as usize) {
            Some(program) => evaluate(program, request.input, request.max_outputs as usize),
            None => Answer::Failed(format!("no program #{}", request.program)),
        };
        drop(payload);
        stdout.write_all(&answer.to_frame())?;
        stdout.flush()?;
    }
    Ok(())
}

fn compile_all(texts: &[String]) -> Result<Vec<Program>, String> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| compile(text).map_err(|e| format!("program #{i}: {e}")))
        .collect()
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
            "jq sandbox: cannot limit memory: {}",
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
