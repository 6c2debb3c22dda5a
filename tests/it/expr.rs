//! Expression evaluation in sandbox processes (the real `forebay` binary as
//! `__expr-sandbox`), jq and JavaScript: outputs, errors, batches, and the limits that keep
//! a bad expression from hurting the server.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forebay::expr::{EvalError, Expr, Limits, Role, SANDBOX_ARG, Sandbox};
use serde_json::{Value, json};

fn sandbox(programs: &[&str], limits: Limits, size: usize) -> Sandbox {
    forebay::expr::set_sandbox_exe(env!("CARGO_BIN_EXE_forebay").into());
    let programs = programs
        .iter()
        .map(|text| Expr::compile(text).unwrap_or_else(|e| panic!("{text}: {e}")))
        .collect();
    Sandbox::new(programs, limits, size)
}

fn pool(programs: Vec<Expr>, limits: Limits, size: usize) -> Sandbox {
    forebay::expr::set_sandbox_exe(env!("CARGO_BIN_EXE_forebay").into());
    Sandbox::new(programs, limits, size)
}

fn js(text: &str, role: Role) -> Expr {
    Expr::js(text, "test.js", role).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn jq(text: &str) -> Expr {
    Expr::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn texts(inputs: &[Value]) -> Vec<Vec<u8>> {
    inputs
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect()
}

fn limits(deadline_ms: u64) -> Limits {
    Limits {
        deadline: Duration::from_millis(deadline_ms),
        ..Limits::default()
    }
}

#[tokio::test]
async fn outputs_come_back_in_order_and_errors_as_failed() {
    let jq = sandbox(
        &[".body.items[]", "select(.a > 1)", r#"error("x")"#, ".a + 1"],
        Limits::default(),
        1,
    );
    let input = json!({"body": {"items": [3, "two", {"one": 1}, null]}});
    assert_eq!(
        jq.run(0, input).await,
        Ok(vec![json!(3), json!("two"), json!({"one": 1}), Value::Null])
    );
    assert_eq!(jq.run(1, json!({"a": 1})).await, Ok(vec![]));
    assert_eq!(jq.run(1, json!({"a": 2})).await, Ok(vec![json!({"a": 2})]));
    assert_eq!(
        jq.run(2, json!(null)).await,
        Err(EvalError::Failed("x".into()))
    );
    let Err(EvalError::Failed(type_error)) = jq.run(3, json!({"a": "s"})).await else {
        panic!("a type error is a failure");
    };
    assert!(type_error.contains("cannot"), "{type_error}");
    assert!(matches!(
        jq.run(4, json!(null)).await,
        Err(EvalError::Failed(_))
    ));
}

#[tokio::test]
async fn large_integers_and_unicode_round_trip() {
    let jq = sandbox(&[".", ".big + 1"], Limits::default(), 1);
    let input = json!({
        "big": 12345678901234567890u64,
        "min": i64::MIN,
        "fraction": 0.1,
        "text": "héllo wörld ✓ 🦀 \u{0} \n \"quoted\"",
        "ключ": ["日本語"],
    });
    assert_eq!(jq.run(0, input.clone()).await, Ok(vec![input.clone()]));
    assert_eq!(
        jq.run(1, input).await,
        Ok(vec![json!(12345678901234567891u64)])
    );
}

#[tokio::test]
async fn an_endless_loop_times_out_and_the_sandbox_goes_on() {
    let jq = sandbox(&["def f: f; f", ".a"], limits(300), 1);
    let started = Instant::now();
    assert_eq!(
        jq.run(0, json!(null)).await,
        Err(EvalError::Timeout(Duration::from_millis(300)))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(jq.run(1, json!({"a": 7})).await, Ok(vec![json!(7)]));
    // And again: the killed process is replaced every time.
    assert!(matches!(
        jq.run(0, json!(null)).await,
        Err(EvalError::Timeout(_))
    ));
    assert_eq!(jq.run(1, json!({"a": 8})).await, Ok(vec![json!(8)]));
}

#[tokio::test]
async fn unbounded_recursion_crashes_the_sandbox_not_the_server() {
    let jq = sandbox(&["def f: [f]; f", ".a"], limits(10_000), 1);
    let started = Instant::now();
    let Err(EvalError::Crashed(why)) = jq.run(0, json!(null)).await else {
        panic!("unbounded recursion must crash the sandbox");
    };
    eprintln!("crash after {:?}: {why}", started.elapsed());
    assert!(why.contains("stack overflow"), "{why}");
    assert_eq!(jq.run(1, json!({"a": 1})).await, Ok(vec![json!(1)]));
}

#[tokio::test]
async fn too_many_outputs_stop_early() {
    let jq = sandbox(&["range(1e9)", "last(range(1e18))"], limits(5_000), 1);
    let started = Instant::now();
    assert_eq!(
        jq.run(0, json!(null)).await,
        Err(EvalError::TooManyOutputs(1000))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // A spin that outputs nothing is only stopped by the deadline.
    let jq = sandbox(&["last(range(1e18))"], limits(300), 1);
    assert!(matches!(
        jq.run(0, json!(null)).await,
        Err(EvalError::Timeout(_))
    ));
}

#[tokio::test]
async fn unbounded_memory_hits_the_limit() {
    let limits = Limits {
        deadline: Duration::from_secs(5),
        max_memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let jq = sandbox(&["[range(1e9)]", "[range(1000)] | length"], limits, 1);
    let started = Instant::now();
    let result = jq.run(0, json!(null)).await;
    eprintln!("after {:?}: {result:?}", started.elapsed());
    assert!(
        matches!(result, Err(EvalError::Crashed(_) | EvalError::Timeout(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(7));
    assert_eq!(jq.run(1, json!(null)).await, Ok(vec![json!(1000)]));
}

#[tokio::test]
async fn a_dropped_call_does_not_wedge_its_process() {
    let jq = sandbox(&["def f: f; f", ".a"], limits(60_000), 1);
    // The caller gives up long before the deadline: the spinning process must not keep
    // the pool's only slot.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), jq.run(0, json!(null))).await;
    assert!(gave_up.is_err());
    let next = tokio::time::timeout(Duration::from_secs(5), jq.run(1, json!({"a": 2}))).await;
    assert_eq!(next.ok(), Some(Ok(vec![json!(2)])));
}

#[tokio::test]
async fn the_server_environment_is_not_visible() {
    // The test process has an environment (PATH, CARGO_*, ...); the sandbox must not.
    assert!(std::env::vars().next().is_some());
    let jq = sandbox(&["env"], Limits::default(), 1);
    assert_eq!(jq.run(0, json!(null)).await, Ok(vec![json!({})]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_queue_for_the_pool() {
    let jq = Arc::new(sandbox(&[".n * 2", "[.n, .s]"], Limits::default(), 2));
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..200 {
        let jq = Arc::clone(&jq);
        calls.spawn(async move {
            let program = n % 2;
            let result = jq.run(program, json!({"n": n, "s": format!("s{n}")})).await;
            (n, program, result)
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (n, program, result) = joined.unwrap();
        let expected = if program == 0 {
            json!(n * 2)
        } else {
            json!([n, format!("s{n}")])
        };
        assert_eq!(result, Ok(vec![expected]), "call {n}");
    }
}

/// Also a measurement: `cargo nextest run --release expr::round_trips --no-capture` prints
/// the figures quoted in BENCHMARKS.md-style notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_take_well_under_a_millisecond_or_so() {
    const N: usize = 10_000;
    let jq = Arc::new(sandbox(&[".a"], Limits::default(), 2));
    assert_eq!(jq.run(0, json!({"a": 0})).await, Ok(vec![json!(0)]));

    let started = Instant::now();
    for n in 0..N {
        assert_eq!(jq.run(0, json!({"a": n})).await, Ok(vec![json!(n)]));
    }
    let sequential = started.elapsed();

    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..N {
        let jq = Arc::clone(&jq);
        calls.spawn(async move { (n, jq.run(0, json!({"a": n})).await) });
    }
    while let Some(joined) = calls.join_next().await {
        let (n, result) = joined.unwrap();
        assert_eq!(result, Ok(vec![json!(n)]));
    }
    let concurrent = started.elapsed();

    eprintln!(
        "{N} sequential `.a`: {:?} each; {N} concurrent on 2 processes: {:.0}/s",
        sequential / N as u32,
        N as f64 / concurrent.as_secs_f64()
    );
    // Generous: a loaded CI machine running a debug build.
    assert!(sequential / (N as u32) < Duration::from_millis(5));
}

/// A sandbox whose server goes away (its stdin closes) ends at once, even mid-evaluation:
/// no orphan keeps spinning. Speaks the wire format directly.
#[test]
fn a_sandbox_exits_when_its_server_goes_away() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_forebay"))
        .arg(SANDBOX_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let frame = |payload: &[u8]| {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        frame
    };
    let init = json!({
        "programs": [{"language": "jq", "role": "value", "name": "", "text": "def f: f; f"}],
        "max_memory_bytes": 64 << 20,
        "js_time_limit_ms": 1000,
    });
    stdin
        .write_all(&frame(&serde_json::to_vec(&init).unwrap()))
        .unwrap();
    let mut len = [0; 4];
    stdout.read_exact(&mut len).unwrap();
    let mut ready = vec![0; u32::from_be_bytes(len) as usize];
    stdout.read_exact(&mut ready).unwrap();
    assert_eq!(ready.first(), Some(&b'R'));
    // At most 10 outputs; program 0 on the 4 bytes `null`: spins.
    let mut request = vec![0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 4];
    request.extend_from_slice(b"null");
    stdin.write_all(&frame(&request)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "still evaluating");

    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the sandbox outlived its server");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A batch is answered in order, shared between the processes; an evaluation that spins
/// costs only itself (its process is replaced and the rest of the batch goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_in_order_and_a_timeout_costs_only_its_own_evaluation() {
    let sandbox = pool(vec![jq(".n * 2"), jq("def f: f; f")], limits(300), 2);
    let inputs = texts(&(0..40).map(|n| json!({"n": n})).collect::<Vec<_>>());
    let items: Vec<(usize, &[u8])> = inputs
        .iter()
        .enumerate()
        .map(|(n, input)| (usize::from(n == 7 || n == 31), input.as_slice()))
        .collect();
    let started = Instant::now();
    let outcomes = sandbox.run_many(&items).await;
    assert_eq!(outcomes.len(), 40);
    for (n, outcome) in outcomes.into_iter().enumerate() {
        if n == 7 || n == 31 {
            assert_eq!(outcome, Err(EvalError::Timeout(Duration::from_millis(300))));
        } else {
            assert_eq!(outcome, Ok(vec![json!(n * 2)]), "evaluation {n}");
        }
    }
    // The two spins ran on the two processes at once; each cost one deadline (and a
    // process start), not the batch's.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // An empty batch, and a program that does not exist, answer at once.
    assert!(sandbox.run_many(&[]).await.is_empty());
    assert!(matches!(
        sandbox.run_many(&[(5, b"null")]).await.as_slice(),
        [Err(EvalError::Failed(_))]
    ));
}

/// With `run_many_until_timeout`, a program that spins costs one deadline per process's
/// share: its later evaluations there are skipped, the other programs' are made.
#[tokio::test]
async fn a_spinning_program_is_not_run_again_in_the_same_batch() {
    let sandbox = pool(vec![jq(".n"), jq("def f: f; f")], limits(300), 1);
    let inputs = texts(&(0..6).map(|n| json!({"n": n})).collect::<Vec<_>>());
    let items: Vec<(usize, &[u8])> = inputs
        .iter()
        .enumerate()
        .map(|(n, input)| (usize::from(n % 2 == 1), input.as_slice()))
        .collect();
    let started = Instant::now();
    let outcomes = sandbox.run_many_until_timeout(&items).await;
    assert_eq!(
        outcomes,
        vec![
            Ok(vec![json!(0)]),
            Err(EvalError::Timeout(Duration::from_millis(300))),
            Ok(vec![json!(2)]),
            Err(EvalError::Skipped),
            Ok(vec![json!(4)]),
            Err(EvalError::Skipped),
        ]
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn javascript_runs_beside_jq_with_the_role_shaping_its_result() {
    let sandbox = pool(
        vec![
            js(
                "export default (e) => e.body.items.map((i) => ({ i, id: e.id }))",
                Role::Transform,
            ),
            js("export default (e) => e.body.paid", Role::Filter),
            jq(".body.items | length"),
            js(
                "export default async (e) => `${e.body.customer}:${e.body.items.length}`",
                Role::Value,
            ),
        ],
        Limits::default(),
        1,
    );
    let event = json!({"id": "evt_1", "body": {"items": [1, 2], "paid": 1, "customer": "c_9"}});
    assert_eq!(
        sandbox.run(0, event.clone()).await,
        Ok(vec![
            json!({"i": 1, "id": "evt_1"}),
            json!({"i": 2, "id": "evt_1"})
        ])
    );
    assert_eq!(sandbox.run(1, event.clone()).await, Ok(vec![json!(true)]));
    assert_eq!(sandbox.run(2, event.clone()).await, Ok(vec![json!(2)]));
    assert_eq!(sandbox.run(3, event).await, Ok(vec![json!("c_9:2")]));
}

/// A JavaScript loop is interrupted inside the sandbox (no kill, no restart); a heap
/// filled without bound retires the process; an exception says what and where. None of
/// it touches the next evaluation.
#[tokio::test]
async fn javascript_limits_stop_bad_programs_and_the_sandbox_goes_on() {
    let limits = Limits {
        deadline: Duration::from_millis(400),
        max_memory_bytes: 128 << 20,
        ..Limits::default()
    };
    let programs = vec![
        js("export default () => { for (;;) {} }", Role::Transform),
        js(
            "const kept = []; export default () => { for (let i = 0; ; i++) kept.push('x'.repeat(1 << 20) + i) }",
            Role::Transform,
        ),
        js(
            "export default (e) => {\n  return e.body.missing.id;\n}",
            Role::Transform,
        ),
        js("export default (e) => e.n + 1", Role::Value),
    ];
    let sandbox = pool(programs.clone(), limits, 1);
    let started = Instant::now();
    assert_eq!(
        sandbox.run(0, json!({})).await,
        Err(EvalError::Timeout(Duration::from_millis(400)))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sandbox.run(3, json!({"n": 1})).await, Ok(vec![json!(2)]));
    // Filling 64 MiB must end in the heap cap, not in the time limit, however busy the
    // machine is: these run with time to spare.
    let sandbox = pool(
        programs,
        Limits {
            deadline: Duration::from_secs(20),
            ..limits
        },
        1,
    );
    let full = sandbox.run(1, json!({})).await;
    let Err(EvalError::Failed(full)) = full else {
        panic!("a full heap is a failure, not {full:?}");
    };
    assert!(full.contains("out of memory"), "{full}");
    assert_eq!(sandbox.run(3, json!({"n": 2})).await, Ok(vec![json!(3)]));
    let thrown = sandbox.run(2, json!({"body": {}})).await;
    let Err(EvalError::Failed(thrown)) = thrown else {
        panic!("an exception is a failure, not {thrown:?}");
    };
    assert!(thrown.starts_with("TypeError: "), "{thrown}");
    assert!(thrown.contains("(at test.js:2:"), "{thrown}");
}

#[test]
fn javascript_that_does_not_load_says_why_at_config_time() {
    let err = |text: &str| Expr::js(text, "routes[0].transform", Role::Transform).unwrap_err();
    let syntax = err("export default (e) => {\n  return e.;\n}");
    assert!(syntax.starts_with("SyntaxError: "), "{syntax}");
    assert!(syntax.contains("(at routes[0].transform:2:"), "{syntax}");
    assert!(err("const f = 1").contains("has no default export"));
    assert!(err("export default {}").contains("not a function"));
    assert!(err("for (;;) {}").contains("ran past its time limit"));
    assert!(!err("import fs from 'fs'; export default () => fs").is_empty());
}
