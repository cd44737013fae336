//! Persistent command tools: one process for every call, a JSON request and a JSON answer per
//! line; a call in flight when the process dies is indeterminate and never sent again.

use super::*;

/// A persistent tool in Python. On start it appends its pid to `starts.log`; every request it
/// reads is appended to `received.log` before anything else happens. Arguments steer it:
/// `die` exits without answering, `fail` answers with an error, `junk` writes a line that is
/// not an answer, `sleep` waits that many seconds before answering (in a thread, so later
/// requests can be answered first), anything else is answered with what it saw.
const TOOL: &str = r#"
import json, os, sys, threading, time
with open("starts.log", "a") as f:
    f.write(f"{os.getpid()}\n")
lock = threading.Lock()
def answer(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
def handle(req):
    args = req["args"]
    if args.get("sleep"):
        time.sleep(args["sleep"])
    if args.get("fail"):
        answer({"id": req["id"], "error": "no such customer"})
    else:
        answer({"id": req["id"], "result": f"{args.get('x')} {os.getpid()} {req['run_id']} {req['call_id']} {req['idempotency_key']}"})
for line in sys.stdin:
    req = json.loads(line)
    with open("received.log", "a") as f:
        f.write(line)
    args = req["args"]
    if args.get("die"):
        sys.stderr.write("giving up on purpose\n")
        sys.stderr.flush()
        os._exit(7)
    if args.get("junk"):
        print("hello, world")
        sys.stdout.flush()
        continue
    threading.Thread(target=handle, args=(req,)).start()
"#;

fn persistent(timeout: Duration) -> ToolSpec {
    let ToolSpec::Command(mut spec) = command_spec("lookup", &["python3", "-c", TOOL], timeout)
    else {
        unreachable!("command_spec makes a command tool")
    };
    spec.persistent = true;
    spec.risk = RiskClass::Irreversible;
    ToolSpec::Command(spec)
}

fn lines(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn one_process_answers_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[persistent(Duration::from_secs(20))], dir.path())
        .await
        .unwrap();
    // Nothing is started before the first call.
    assert!(lines(dir.path(), "starts.log").is_empty());
    let mut answers = Vec::new();
    for x in 0..5 {
        answers.push(call(&toolbox, "lookup", json!({"x": x})).await.unwrap());
    }
    let starts = lines(dir.path(), "starts.log");
    assert_eq!(starts.len(), 1, "{starts:?}");
    for (x, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer,
            &format!("{x} {} run-1 call-1 run-1/call-1", starts[0])
        );
    }
    assert_eq!(lines(dir.path(), "received.log").len(), 5);
}

#[tokio::test]
async fn calls_in_flight_at_once_each_get_their_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[persistent(Duration::from_secs(20))], dir.path())
        .await
        .unwrap();
    // The first waits longest, so the answers come back in the reverse order.
    let calls = (0..4).map(|x| {
        let toolbox = &toolbox;
        async move {
            call(
                toolbox,
                "lookup",
                json!({"x": x, "sleep": 0.4 - 0.1 * f64::from(x)}),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (x, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert!(answer.starts_with(&format!("{x} ")), "{x}: {answer}");
    }
    assert_eq!(lines(dir.path(), "starts.log").len(), 1);
}

#[tokio::test]
async fn a_call_whose_process_dies_is_indeterminate_and_never_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[persistent(Duration::from_secs(20))], dir.path())
        .await
        .unwrap();
    call(&toolbox, "lookup", json!({"x": 1})).await.unwrap();
    let e = call(&toolbox, "lookup", json!({"x": 2, "die": true}))
        .await
        .unwrap_err();
    assert!(e.is_indeterminate(), "{e:?}");
    assert!(
        e.message()
            .contains("`lookup` gave no answer: its process exited")
            && e.message().contains("giving up on purpose"),
        "{e}"
    );
    // The next call starts a new process; the request of the call that died is not in it.
    let answer = call(&toolbox, "lookup", json!({"x": 3})).await.unwrap();
    let starts = lines(dir.path(), "starts.log");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(answer.starts_with(&format!("3 {} ", starts[1])), "{answer}");
    let received = lines(dir.path(), "received.log");
    let died: Vec<_> = received.iter().filter(|l| l.contains("\"die\"")).collect();
    assert_eq!(died.len(), 1, "{received:?}");
    assert_eq!(received.len(), 3, "{received:?}");
}

#[tokio::test]
async fn an_error_answer_is_a_failed_call_and_the_process_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[persistent(Duration::from_secs(20))], dir.path())
        .await
        .unwrap();
    let e = call(&toolbox, "lookup", json!({"fail": true}))
        .await
        .unwrap_err();
    assert!(!e.is_indeterminate(), "{e:?}");
    assert_eq!(e.message(), "`lookup`: no such customer");
    call(&toolbox, "lookup", json!({"x": 1})).await.unwrap();
    assert_eq!(lines(dir.path(), "starts.log").len(), 1);
}

#[tokio::test]
async fn a_line_that_is_not_an_answer_ends_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[persistent(Duration::from_secs(20))], dir.path())
        .await
        .unwrap();
    let e = call(&toolbox, "lookup", json!({"junk": true}))
        .await
        .unwrap_err();
    assert!(e.is_indeterminate(), "{e:?}");
    assert!(
        e.message()
            .contains("it wrote a line that is not an answer (hello, world)"),
        "{e}"
    );
    call(&toolbox, "lookup", json!({"x": 1})).await.unwrap();
    assert_eq!(lines(dir.path(), "starts.log").len(), 2);
}

#[tokio::test]
async fn a_call_that_times_out_is_indeterminate_and_its_process_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[persistent(Duration::from_secs(8))], dir.path())
        .await
        .unwrap();
    // The first call also waits for Python to start; a warm process answers at once.
    call(&toolbox, "lookup", json!({"x": 1})).await.unwrap();
    let e = call(&toolbox, "lookup", json!({"x": 2, "sleep": 30}))
        .await
        .unwrap_err();
    assert!(e.is_indeterminate(), "{e:?}");
    assert_eq!(e.message(), "`lookup` timed out after 8s");
    call(&toolbox, "lookup", json!({"x": 3})).await.unwrap();
    assert_eq!(lines(dir.path(), "starts.log").len(), 2);
}

/// An agent may be dropped where no runtime runs (after `block_on` returned, in a plain
/// thread): its persistent process is still ended, and the drop does not panic.
#[test]
fn a_tool_dropped_outside_a_runtime_ends_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let toolbox = runtime.block_on(async {
        let toolbox = build(&[persistent(Duration::from_secs(20))], dir.path())
            .await
            .unwrap();
        call(&toolbox, "lookup", json!({"x": 1})).await.unwrap();
        toolbox
    });
    let starts = lines(dir.path(), "starts.log");
    assert_eq!(starts.len(), 1, "{starts:?}");
    let pid: i32 = starts[0].parse().unwrap();
    drop(runtime);
    drop(toolbox);
    // Killed by the drop: gone, or a zombie waiting for its parent to reap it.
    let ended = |pid: i32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ended(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} still runs after its tool was dropped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
