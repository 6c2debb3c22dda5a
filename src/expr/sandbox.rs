//! The server side of the sandbox: a pool of `forebay __expr-sandbox` processes.
//!
//! A semaphore with one permit per process bounds the pool. Evaluations go in batches:
//! [`Sandbox::run_many`] splits its evaluations into one contiguous share per process, and
//! each share takes a permit, then an idle process (or starts one), sends its evaluations
//! in one frame and reads the answers one by one, each under the deadline. A process goes
//! back to the idle list only after it answered everything it was sent; after a timeout,
//! a crash, a protocol error, a retiring answer or a dropped future it is dropped, which
//! kills it (`kill_on_drop`), and the evaluations after the one that failed go to a fresh
//! process. So a process is never shared mid-batch, an evaluation that spins costs only
//! itself, and a cancelled call cannot leave one behind with stale answers queued.
//!
//! A pool's processes belong to the tokio runtime that started them (their pipes are
//! registered with its reactor): share a `Sandbox` within one runtime.

use std::collections::HashSet;
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

use super::protocol::{self, Answer, Batch, Init, InitProgram, MAX_FRAME};
use super::{EvalError, Expr, Limits, SANDBOX_ARG};

/// How long a new process may take to start and compile its programs, besides the time
/// limit of each JavaScript module's top level.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a dead process's exit status and last stderr line.
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of a process's stderr is kept for its crash report.
const STDERR_TAIL: usize = 2048;
/// Most input bytes sent in one frame; a larger share goes in several.
const BATCH_BYTES: usize = 4 << 20;
/// The largest input one evaluation takes (its frame has a header besides).
const MAX_INPUT: usize = MAX_FRAME - 16;

/// One evaluation's result: the outputs in order, or why there are none.
pub type Outcome = Result<Vec<Value>, EvalError>;

/// A pool of sandbox processes that evaluates a fixed list of checked programs.
pub struct Sandbox {
    /// The framed [`Init`] every new process is sent.
    init: Vec<u8>,
    /// How long a new process may take to say it is ready.
    start_timeout: Duration,
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
            programs: programs
                .iter()
                .map(|p| InitProgram {
                    language: p.language(),
                    role: p.role(),
                    name: p.name().to_owned(),
                    text: p.text().to_owned(),
                })
                .collect(),
            max_memory_bytes: limits.max_memory_bytes,
            js_time_limit_ms: js_time_limit(limits.deadline),
        };
        let modules = programs
            .iter()
            .filter(|p| p.language() == super::Language::Js)
            .count();
        let per_module = Duration::from_millis(init.js_time_limit_ms);
        let start_timeout = START_TIMEOUT + per_module * u32::try_from(modules).unwrap_or(u32::MAX);
        // Strings, enums and numbers always serialize.
        let init = serde_json::to_vec(&init).unwrap_or_default();
        Sandbox {
            init: protocol::frame(&init),
            start_timeout,
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
    pub async fn run(&self, program: usize, input: Value) -> Outcome {
        let input = serde_json::to_vec(&input)
            .map_err(|e| EvalError::Failed(format!("the input cannot be written: {e}")))?;
        let mut outcomes = self.run_many(&[(program, &input)]).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(EvalError::Unavailable("no answer".into())))
    }

    /// Evaluates each `(program, input as JSON text)`; one outcome per evaluation, in
    /// order. The evaluations are shared among the pool's processes and sent in batches;
    /// each has the deadline to itself, counted from the answer before it.
    pub async fn run_many(&self, items: &[(usize, &[u8])]) -> Vec<Outcome> {
        self.run_items(items, false).await
    }

    /// [`Sandbox::run_many`], except that once an evaluation runs past the deadline, the
    /// later evaluations of the same program in its process's share are not made
    /// ([`EvalError::Skipped`]): a program that spins costs one deadline per share, not
    /// one per evaluation.
    pub async fn run_many_until_timeout(&self, items: &[(usize, &[u8])]) -> Vec<Outcome> {
        self.run_items(items, true).await
    }

    async fn run_items(&self, items: &[(usize, &[u8])], stop_at_timeout: bool) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = items
            .iter()
            .map(|&(program, input)| self.refuse(program, input).map(Err))
            .collect();
        let runnable: Vec<(usize, (u32, &[u8]))> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_none())
            .map(|(i, &(program, input))| (i, (u32::try_from(program).unwrap_or(u32::MAX), input)))
            .collect();
        let share = runnable.len().div_ceil(self.size).max(1);
        let shares = runnable.chunks(share).map(|chunk| async move {
            let items: Vec<(u32, &[u8])> = chunk.iter().map(|(_, item)| *item).collect();
            (chunk, self.run_share(&items, stop_at_timeout).await)
        });
        for (chunk, results) in futures_util::future::join_all(shares).await {
            for ((i, _), outcome) in chunk.iter().zip(results) {
                outcomes[*i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(EvalError::Unavailable("no answer".into()))))
            .collect()
    }

    /// Why `program` cannot run on `input` at all, if it cannot.
    fn refuse(&self, program: usize, input: &[u8]) -> Option<EvalError> {
        if program >= self.programs {
            return Some(EvalError::Failed(format!(
                "no program #{program} (the sandbox has {})",
                self.programs
            )));
        }
        (input.len() > MAX_INPUT)
            .then(|| EvalError::Failed("the input is larger than 1 GiB".into()))
    }

    /// One process's share, in order, on as many processes in turn as it takes. With
    /// `stop_at_timeout`, a program that ran past the deadline is not run again here.
    async fn run_share(&self, items: &[(u32, &[u8])], stop_at_timeout: bool) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut stopped: HashSet<u32> = HashSet::new();
        let mut next = 0;
        while next < items.len() {
            // The evaluations to send: from `next`, up to the byte budget (at least one),
            // those of stopped programs answered here instead.
            let mut picked = Vec::new();
            let mut bytes = 0;
            let mut scanned = next;
            for (j, &(program, input)) in items.iter().enumerate().skip(next) {
                if stopped.contains(&program) {
                    outcomes[j] = Some(Err(EvalError::Skipped));
                    scanned = j + 1;
                    continue;
                }
                bytes += input.len();
                if !picked.is_empty() && bytes > BATCH_BYTES {
                    break;
                }
                picked.push(j);
                scanned = j + 1;
            }
            if picked.is_empty() {
                break;
            }
            let Ok(_permit) = self.permits.acquire().await else {
                for j in picked {
                    outcomes[j] = Some(Err(EvalError::Unavailable(
                        "the sandbox is shut down".into(),
                    )));
                }
                next = scanned;
                continue;
            };
            let worker = match self.take_idle() {
                Some(worker) => worker,
                None => match Worker::start(&self.init, self.start_timeout).await {
                    Ok(worker) => worker,
                    Err(why) => {
                        for j in picked {
                            outcomes[j] = Some(Err(EvalError::Unavailable(why.clone())));
                        }
                        next = scanned;
                        continue;
                    }
                },
            };
            let batch: Vec<(u32, &[u8])> = picked.iter().map(|&j| items[j]).collect();
            let (answered, worker) = self.ask(worker, &batch).await;
            let answered_count = answered.len();
            for (&j, outcome) in picked.iter().zip(answered) {
                if stop_at_timeout && matches!(outcome, Err(EvalError::Timeout(_))) {
                    stopped.insert(items[j].0);
                }
                outcomes[j] = Some(outcome);
            }
            if let Some(worker) = worker {
                self.put_idle(worker);
            }
            // What the process did not answer (it was replaced) goes to the next one.
            next = picked.get(answered_count).copied().unwrap_or(scanned);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(EvalError::Unavailable("no answer".into()))))
            .collect()
    }

    /// Sends `items` to `worker` and reads their answers; the outcomes so far (at least
    /// one), and the worker when it answered everything and may be used again.
    async fn ask(
        &self,
        mut worker: Worker,
        items: &[(u32, &[u8])],
    ) -> (Vec<Outcome>, Option<Worker>) {
        let frame = Batch {
            max_outputs: u32::try_from(self.limits.max_outputs).unwrap_or(u32::MAX),
            items: items.to_vec(),
        }
        .to_frame();
        let mut outcomes = Vec::with_capacity(items.len());
        match timeout(self.limits.deadline, worker.send(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                outcomes.push(Err(EvalError::Crashed(worker.crash_report(&e).await)));
                return (outcomes, None);
            }
            Err(_elapsed) => {
                worker.kill();
                outcomes.push(Err(EvalError::Crashed(
                    "the sandbox did not take its input in time; killed".into(),
                )));
                return (outcomes, None);
            }
        }
        for _ in items {
            match timeout(self.limits.deadline, worker.answer()).await {
                Err(_elapsed) => {
                    // Dropping the worker kills it; say so explicitly for the reader.
                    worker.kill();
                    outcomes.push(Err(EvalError::Timeout(self.limits.deadline)));
                    return (outcomes, None);
                }
                Ok(Err(e)) => {
                    outcomes.push(Err(EvalError::Crashed(worker.crash_report(&e).await)));
                    return (outcomes, None);
                }
                // A second ready message breaks the protocol: that process is dropped.
                Ok(Ok(Answer::Ready)) => {
                    outcomes.push(Err(EvalError::Crashed(
                        "sandbox protocol error: a second ready message".into(),
                    )));
                    return (outcomes, None);
                }
                Ok(Ok(Answer::Retire(message))) => {
                    outcomes.push(Err(EvalError::Failed(message)));
                    return (outcomes, None);
                }
                Ok(Ok(answer)) => outcomes.push(self.outputs(answer)),
            }
        }
        (outcomes, Some(worker))
    }

    fn outputs(&self, answer: Answer) -> Outcome {
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
            Answer::Failed(message) | Answer::Retire(message) => Err(EvalError::Failed(message)),
            Answer::TooManyOutputs => Err(EvalError::TooManyOutputs(self.limits.max_outputs)),
            Answer::TimeLimit => Err(EvalError::Timeout(self.limits.deadline)),
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

/// How long a JavaScript call may run inside the sandbox: a little less than the deadline,
/// so QuickJS interrupts it (and its process lives on) before the server would kill the
/// process.
pub(super) fn js_time_limit(deadline: Duration) -> u64 {
    let limit = deadline.mul_f64(0.9);
    u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1)
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
    async fn start(init: &[u8], start_timeout: Duration) -> Result<Worker, String> {
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
                "{} did not start as an expression sandbox ({why}); is it the forebay binary?",
                exe.display()
            )
        };
        match timeout(start_timeout, handshake).await {
            Ok(Ok(Answer::Ready)) => Ok(worker),
            Ok(Ok(Answer::Failed(message))) => Err(message),
            Ok(Ok(_)) => Err(not_a_sandbox(&"unexpected first answer")),
            Ok(Err(e)) => Err(not_a_sandbox(&worker.crash_report(&e).await)),
            Err(_) => Err(not_a_sandbox(&format_args!(
                "no answer within {start_timeout:?}"
            ))),
        }
    }

    async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.stdin.write_all(frame).await
    }

    async fn answer(&mut self) -> std::io::Result<Answer> {
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
