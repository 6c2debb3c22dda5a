//! The server side of the sandbox: a pool of `forebay __jq-sandbox` processes.
//!
//! A semaphore with one permit per process bounds the pool: a call takes a permit, then an
//! idle process (or starts one), sends one request and waits for the answer under the
//! deadline. A process goes back to the idle list only after a clean answer; after a
//! timeout, a crash, a protocol error or a dropped future it is dropped, which kills it
//! (`kill_on_drop`), and the next call starts a fresh one. So a process is never shared
//! mid-request, and a cancelled call cannot leave one behind with a stale answer queued.
//!
//! A pool's processes belong to the tokio runtime that started them (their pipes are
//! registered with its reactor): share a `Sandbox` within one runtime.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::protocol::{self, Answer, Init, MAX_FRAME, Request};
use super::{EvalError, Expr, Limits, SANDBOX_ARG};

/// How long a new process may take to start and compile its programs.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a dead process's exit status and last stderr line.
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of a process's stderr is kept for its crash report.
const STDERR_TAIL: usize = 2048;

/// A pool of sandbox processes that evaluates a fixed list of compiled programs.
pub struct Sandbox {
    /// The framed [`Init`] every new process is sent.
    init: Vec<u8>,
    programs: usize,
    limits: Limits,
    size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("programs", &self.programs)
            .field("limits", &self.limits)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// `programs[i]` is addressed by index `i` in [`Sandbox::run`]. Processes start lazily
    /// (first use) and are restarted after a crash or a timeout kill. `size` is the number
    /// of child processes (at least 1).
    pub fn new(programs: Vec<Expr>, limits: Limits, size: usize) -> Sandbox {
        let size = size.max(1);
        let init = Init {
            programs: programs.iter().map(|p| p.text().to_owned()).collect(),
            max_memory_bytes: limits.max_memory_bytes,
        };
        // A struct of strings and a number always serializes.
        let init = serde_json::to_vec(&init).unwrap_or_default();
        Sandbox {
            init: protocol::frame(&init),
            programs: programs.len(),
            limits,
            size,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
        }
    }

    /// Evaluates program `program` on `input`; all outputs in order (at most
    /// `limits.max_outputs`, else [`EvalError::TooManyOutputs`]).
    ///
    /// Waits for a free process without blocking the runtime. Dropping the future kills
    /// the process it was using, if any.
    pub async fn run(&self, program: usize, input: Value) -> Result<Vec<Value>, EvalError> {
        if program >= self.programs {
            return Err(EvalError::Failed(format!(
                "no program #{program} (the sandbox has {})",
                self.programs
            )));
        }
        let input = serde_json::to_vec(&input)
            .map_err(|e| EvalError::Failed(format!("the input cannot be written: {e}")))?;
        if input.len() > MAX_FRAME - 8 {
            return Err(EvalError::Failed("the input is larger than 1 GiB".into()));
        }
        let frame = Request {
            program: u32::try_from(program).unwrap_or(u32::MAX),
            max_outputs: u32::try_from(self.limits.max_outputs).unwrap_or(u32::MAX),
            input: &input,
        }
        .to_frame();
        drop(input);

        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| EvalError::Unavailable("the sandbox is shut down".into()))?;
        let mut worker = match self.take_idle() {
            Some(worker) => worker,
            None => Worker::start(&self.init)
                .await
                .map_err(EvalError::Unavailable)?,
        };
        match timeout(self.limits.deadline, worker.ask(&frame)).await {
            Err(_elapsed) => {
                // Dropping the worker kills it; say so explicitly for the reader.
                worker.kill();
                Err(EvalError::Timeout(self.limits.deadline))
            }
            Ok(Err(e)) => Err(EvalError::Crashed(worker.crash_report(&e).await)),
            Ok(Ok(answer)) => {
                // A second ready message breaks the protocol: that process is dropped.
                if answer != Answer::Ready {
                    self.put_idle(worker);
                }
                self.outputs(answer)
            }
        }
    }

    fn outputs(&self, answer: Answer) -> Result<Vec<Value>, EvalError> {
        match answer {
            Answer::Outputs(lines) if lines.is_empty() => Ok(Vec::new()),
            Answer::Outputs(lines) => lines
                .split(|b| *b == b'\n')
                .map(|line| {
                    serde_json::from_slice(line).map_err(|e| {
                        EvalError::Failed(format!("an output cannot be read back: {e}"))
                    })
                })
                .collect(),
            Answer::Failed(message) => Err(EvalError::Failed(message)),
            Answer::TooManyOutputs => Err(EvalError::TooManyOutputs(self.limits.max_outputs)),
            Answer::Ready => Err(EvalError::Crashed(
                "sandbox protocol error: a second ready message".into(),
            )),
        }
    }

    /// An idle process that is still alive, if any.
    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut worker) = idle.pop() {
            // One that died while idle (killed from outside) would fail an innocent call.
            if matches!(worker.child.try_wait(), Ok(None)) {
                return Some(worker);
            }
        }
        None
    }

    fn put_idle(&self, worker: Worker) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push(worker);
    }
}

/// One sandbox process and its pipes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Drains stderr so the child never blocks on it; yields the last bytes at EOF.
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Worker {
    /// Starts a process, sends it the programs, waits until it has compiled them.
    async fn start(init: &[u8]) -> Result<Worker, String> {
        let exe = super::sandbox_exe()?;
        let mut child = Command::new(&exe)
            .arg(SANDBOX_ARG)
            // Expressions can read the environment (`env`); the server's holds secrets.
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A terminal's Ctrl-C goes to the server, which then closes the pipes; the
            // sandbox must not die first under requests still being evaluated.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the sandbox process has no pipes".into());
        };
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: Some(tokio::spawn(drain(stderr))),
        };
        let handshake = async {
            worker.stdin.write_all(init).await?;
            // A ready frame is short; a wrong executable's output must not be read as a
            // gigabyte-long frame.
            let payload = protocol::read_frame_async(&mut worker.stdout, 4096).await?;
            Answer::decode(payload).map_err(std::io::Error::other)
        };
        let not_a_sandbox = |why: &dyn fmt::Display| {
            format!(
                "{} did not start as a jq sandbox ({why}); is it the forebay binary?",
                exe.display()
            )
        };
        match timeout(START_TIMEOUT, handshake).await {
            Ok(Ok(Answer::Ready)) => Ok(worker),
            Ok(Ok(Answer::Failed(message))) => Err(message),
            Ok(Ok(_)) => Err(not_a_sandbox(&"unexpected first answer")),
            Ok(Err(e)) => Err(not_a_sandbox(&worker.crash_report(&e).await)),
            Err(_) => Err(not_a_sandbox(&format_args!(
                "no answer within {START_TIMEOUT:?}"
            ))),
        }
    }

    /// One request, one answer.
    async fn ask(&mut self, frame: &[u8]) -> std::io::Result<Answer> {
        self.stdin.write_all(frame).await?;
        let payload = protocol::read_frame_async(&mut self.stdout, MAX_FRAME).await?;
        Answer::decode(payload).map_err(std::io::Error::other)
    }

    fn kill(mut self) {
        // Errors mean it is already gone; dropping reaps it in the background either way.
        let _ = self.child.start_kill();
    }

    /// Why the process stopped answering: its exit status and last line on stderr.
    async fn crash_report(mut self, error: &std::io::Error) -> String {
        let status = timeout(REPORT_TIMEOUT, self.child.wait()).await;
        let tail = match self.stderr.take() {
            Some(handle) => timeout(REPORT_TIMEOUT, handle)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let last_line = String::from_utf8_lossy(&tail)
            .lines()
            .map(str::trim)
            .rfind(|line| is_cause(line))
            .map(|line| line.chars().take(200).collect::<String>());
        let status = match status {
            Ok(Ok(status)) => describe(status),
            // Still running, yet it broke the protocol: it is killed on drop.
            _ => format!("{error}; killed"),
        };
        match last_line {
            Some(line) => format!("{line}; {status}"),
            None => status,
        }
    }
}

/// Whether a stderr line says what went wrong ("memory allocation of … failed", "fatal
/// runtime error: stack overflow", a panic message) rather than how to get a backtrace.
fn is_cause(line: &str) -> bool {
    let frame = line
        .split_once(':')
        .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
    !(line.is_empty()
        || frame
        || line.starts_with("note:")
        || line.starts_with("at ")
        || line == "stack backtrace:")
}

fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGABRT => "SIGABRT",
            libc::SIGKILL => "SIGKILL",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGTERM => "SIGTERM",
            _ => return format!("killed by signal {signal}"),
        };
        return format!("killed by {name}");
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "exited".into(),
    }
}

/// Reads stderr to its end, keeping the last [`STDERR_TAIL`] bytes or so.
async fn drain(mut stderr: ChildStderr) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0; 1024];
    while let Ok(n @ 1..) = stderr.read(&mut buf).await {
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    tail
}
