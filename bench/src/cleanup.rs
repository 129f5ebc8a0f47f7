//! The bench's data directories, and what removes them: dropping a `DataDir` (the run ended,
//! or failed), or Ctrl-C / SIGTERM (the run was stopped).
//!
//! A seed run holds close to a gigabyte of segment files; before this module, Ctrl-C left them
//! behind in the current directory. Every directory the bench creates is entered in one
//! process-wide registry while it exists; the signal handler (installed once by `main`) removes
//! everything still registered and exits with 130, the shell's code for "stopped by SIGINT".
//!
//! Invariants:
//! - The bench removes only directories it created itself (`create_dir`, never `create_dir_all`
//!   on the data directory), so a typo in `--dir` cannot delete someone's files.
//! - `--keep` directories are never registered, so neither path removes them.
//! - The handler may run while a store is writing into a directory; removing it then is fine
//!   because the process exits right after (open files of removed directories are only inodes).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The directories to remove if the bench is stopped; the bench holds at most a handful.
static REGISTRY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The exit code after Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

fn registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the lock leaves a valid Vec: carry on with it.
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Enters `path` to be removed if the bench is stopped.
pub fn register(path: &Path) {
    registry().push(path.to_path_buf());
}

/// Takes `path` out of the registry (it is being removed, or kept, by its owner).
pub fn unregister(path: &Path) {
    registry().retain(|registered| registered != path);
}

/// Removes every registered directory and empties the registry; returns what it removed.
/// Errors are reported on stderr, not returned: the caller is about to exit.
pub fn remove_all() -> Vec<PathBuf> {
    let paths = std::mem::take(&mut *registry());
    let mut removed = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => removed.push(path),
            Err(e) => eprintln!("# could not remove {}: {e}", path.display()),
        }
    }
    removed
}

/// Installs the Ctrl-C / SIGTERM handler: remove the registered directories, then exit.
pub fn install_handler() {
    let installed = ctrlc::set_handler(|| {
        eprintln!("\n# interrupted: removing the bench's data directories");
        for path in remove_all() {
            eprintln!("# removed {}", path.display());
        }
        std::process::exit(INTERRUPTED_EXIT_CODE);
    });
    if let Err(e) = installed {
        eprintln!("# warning: no Ctrl-C handler ({e}); an interrupted run leaves its data directory behind");
    }
}

/// A fresh data directory for one system, removed when dropped (also on error, and on Ctrl-C)
/// unless `keep`.
pub struct DataDir {
    pub path: PathBuf,
    keep: bool,
}

impl DataDir {
    pub fn create(parent: &Path, system: &str, keep: bool) -> Result<DataDir, String> {
        let path = parent.join(format!("evstore-bench-data-{}-{system}", std::process::id()));
        DataDir::create_at(path, keep)
    }

    /// Creates exactly `path`, which must not exist yet.
    pub fn create_at(path: PathBuf, keep: bool) -> Result<DataDir, String> {
        // Never reuse (or delete) a directory this run did not create.
        std::fs::create_dir(&path).map_err(|e| format!("creating the data directory {}: {e}", path.display()))?;
        if !keep {
            register(&path);
        }
        Ok(DataDir { path, keep })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("# kept {}", self.path.display());
            return;
        }
        // Out of the registry first: a Ctrl-C now must not race this removal into an error.
        unregister(&self.path);
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("# could not remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is process-wide; tests touching it run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn parent(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("evstore-bench-cleanup-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn remove_all_removes_live_data_directories_and_their_files() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let parent = parent("live");
        let data = DataDir::create(&parent, "evstore", false).unwrap();
        std::fs::write(data.path.join("00000000.evs"), vec![0u8; 4096]).unwrap();
        // What the signal handler does while a run is in progress.
        let removed = remove_all();
        assert_eq!(removed, vec![data.path.clone()]);
        assert!(!data.path.exists());
        // The run's own drop afterwards finds nothing left to do and does not panic.
        drop(data);
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn kept_and_dropped_directories_are_not_registered() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let parent = parent("kept");
        let kept = DataDir::create(&parent, "kept", true).unwrap();
        let dropped = DataDir::create(&parent, "dropped", false).unwrap();
        let dropped_path = dropped.path.clone();
        drop(dropped);
        assert!(!dropped_path.exists());
        assert!(remove_all().is_empty(), "nothing left registered");
        assert!(kept.path.exists(), "--keep survives an interrupt");
        drop(kept);
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn an_existing_directory_is_never_adopted() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let parent = parent("existing");
        let taken = parent.join("taken");
        std::fs::create_dir(&taken).unwrap();
        assert!(DataDir::create_at(taken.clone(), false).is_err());
        assert!(remove_all().is_empty());
        assert!(taken.exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
