//! Absurd option values (sizes near the top of their type) must be refused by `Store::open` with
//! `Error::InvalidOption` naming the option, before anything is allocated or written, and a
//! refused open leaves nothing in the directory but what any failed open may leave (the `LOCK`
//! file). Without this, a queue of 2^40 appends aborted the whole process on a failed allocation
//! (no error, no unwinding), `usize::MAX` panicked with "capacity overflow", and
//! `busy_group_bytes_min = usize::MAX` was taken silently (the store then never submits a group
//! early, whatever the load). Each case runs in a child process (this test binary, run again with
//! an environment variable naming the case), so that an abort fails the case instead of killing
//! the whole test run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evstore::{Backend, Error, Options, Store};
use evstore_tests::{small_options, temp_dir, watchdog};

const TEST_NAME: &str = "absurd_options_are_refused_by_name";
const CASE_VARIABLE: &str = "EVSTORE_ABSURD_OPTION_CASE";
const DIR_VARIABLE: &str = "EVSTORE_ABSURD_OPTION_DIR";
/// The child's address space limit: far above what a store with these options needs, far below
/// an allocation sized by an absurd option (so it fails the same way whatever the overcommit
/// policy of the machine).
const CHILD_ADDRESS_SPACE_BYTES: u64 = 16 << 30;

/// One absurd value: what it is, the option `InvalidOption` must name, and the change.
type Case = (&'static str, &'static str, fn(&mut Options));

fn cases() -> Vec<Case> {
    vec![
        ("queue_bytes = 1 << 40", "queue_bytes", |o| o.queue_bytes = 1 << 40),
        ("queue_bytes = usize::MAX", "queue_bytes", |o| o.queue_bytes = usize::MAX),
        ("linger = Duration::MAX", "linger", |o| o.linger = std::time::Duration::MAX),
        ("group_bytes_max = usize::MAX", "group_bytes_max", |o| o.group_bytes_max = usize::MAX),
        ("segment_bytes = u64::MAX", "segment_bytes", |o| o.segment_bytes = u64::MAX),
        ("busy_group_bytes_min = usize::MAX", "busy_group_bytes_min", |o| o.busy_group_bytes_min = usize::MAX),
        ("groups_in_flight_max = usize::MAX", "groups_in_flight_max", |o| o.groups_in_flight_max = usize::MAX),
    ]
}

/// In the child: opens the store with the case's options and prints one `OUTCOME` line.
fn child(case: &str, dir: &Path) {
    let limit = libc::rlimit { rlim_cur: CHILD_ADDRESS_SPACE_BYTES, rlim_max: CHILD_ADDRESS_SPACE_BYTES };
    // SAFETY: setrlimit with a valid, initialised struct; it only lowers this process's limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0, "setrlimit");
    let (_, _, change) = cases().into_iter().find(|(name, _, _)| *name == case).expect("a known case");
    let mut options = small_options(Backend::Portable);
    change(&mut options);
    match Store::open(dir, options) {
        Err(Error::InvalidOption { name, reason }) => println!("OUTCOME invalid-option {name} ({reason})"),
        Err(other) => println!("OUTCOME error {other:?}"),
        Ok(store) => {
            let _ = store.close();
            println!("OUTCOME opened");
        }
    }
}

/// Runs `case` in a child process; returns its `OUTCOME` line, or what became of it instead.
fn run_child(case: &str, dir: &Path) -> Result<String, String> {
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CASE_VARIABLE, case)
        .env(DIR_VARIABLE, dir)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    let output = match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("child output"),
        Err(_) => {
            // SAFETY: kill of our own child's pid (it has not been reaped: its waiter is stuck).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            return Err("the child hung for 60 s and was killed".into());
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some((_, line)) = stdout.lines().find_map(|l| l.split_once("OUTCOME ")) {
        return Ok(line.to_string());
    }
    let panic = stderr.lines().skip_while(|l| !l.contains("panicked at")).nth(1);
    let first = stderr.lines().find(|l| !l.trim().is_empty() && !l.starts_with("note:")).unwrap_or("");
    use std::os::unix::process::ExitStatusExt as _;
    Err(match (output.status.signal(), panic) {
        (_, Some(message)) => format!("Store::open panicked: {message}"),
        (Some(signal), None) => format!("the process died of signal {signal}: {first}"),
        (None, None) => format!("the child exited with {}: {first}", output.status),
    })
}

#[test]
fn absurd_options_are_refused_by_name() {
    if let (Ok(case), Ok(dir)) = (std::env::var(CASE_VARIABLE), std::env::var(DIR_VARIABLE)) {
        child(&case, Path::new(&dir));
        return;
    }
    let _watchdog = watchdog(TEST_NAME, 300);
    let mut problems = Vec::new();
    for (case, option, _) in cases() {
        let parent = temp_dir("absurd-options");
        let dir = parent.path().join("store");
        let outcome = run_child(case, &dir);
        let left: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let mut left_over: Vec<&String> = left.iter().filter(|name| *name != "LOCK").collect();
        left_over.sort();
        println!("{case}: {outcome:?}; left in the directory: {left:?}");
        match outcome {
            Ok(line) if line.starts_with(&format!("invalid-option {option} ")) => {}
            Ok(line) => problems.push(format!("{case}: expected InvalidOption naming {option}, got: {line}")),
            Err(what) => problems.push(format!("{case}: {what}")),
        }
        if !left_over.is_empty() {
            problems.push(format!("{case}: the open left {left_over:?} in the directory"));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
