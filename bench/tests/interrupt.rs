//! Ctrl-C in the middle of a run removes the bench's data directory.
//!
//! Without the handler (bench/src/cleanup.rs), SIGINT ends the process before any destructor
//! runs and every interrupted `seed` leaves its segment files behind (769 MB at the defaults),
//! in the current directory by default. This runs the real binary on a workload far too long to
//! finish, waits until evstore has written segment files, sends SIGINT as a terminal would, and
//! checks that the process exits with 130 and that nothing it created is left but the (empty of
//! data) output directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a slow, shared machine to start the store; the test takes ~1 s when healthy.
const WAIT_MAX: Duration = Duration::from_secs(60);

fn data_dirs(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("evstore-bench-data-")))
        .collect()
}

fn has_segment(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "evs")))
        .unwrap_or(false)
}

#[test]
fn sigint_during_a_run_removes_its_data_directory() {
    // Under cargo's target directory: a real file system (evstore refuses tmpfs, which /tmp may be).
    let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("interrupt-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_evstore-bench"))
        .args(["seed", "--systems", "evstore", "--streams", "10000000", "--producers", "1", "--segment-mib", "16"])
        .arg("--dir")
        .arg(&parent)
        .arg("--out")
        .arg(parent.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bench binary starts");

    let started = Instant::now();
    let data = loop {
        if let Some(dir) = data_dirs(&parent).into_iter().find(|d| has_segment(d)) {
            break dir;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the bench ended before it was interrupted: {status}");
        }
        assert!(started.elapsed() < WAIT_MAX, "no segment file after {WAIT_MAX:?}");
        std::thread::sleep(Duration::from_millis(20));
    };

    // SAFETY: kill on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT)");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "exit status {:?}; stderr:\n{stderr}", output.status);
    assert!(!data.exists(), "{} is left behind; stderr:\n{stderr}", data.display());
    assert!(data_dirs(&parent).is_empty(), "data directories left: {:?}", data_dirs(&parent));
    assert!(stderr.contains("removed"), "the bench says what it removed; stderr:\n{stderr}");
    std::fs::remove_dir_all(&parent).unwrap();
}
