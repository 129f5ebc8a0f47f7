//! A read model in SQLite, kept up to date by a `ProjectionRunner`: view counts per viewer (seed
//! 003's "fast projections"), written in one transaction per batch together with the checkpoint,
//! so a crash at any moment leaves counts and checkpoint that agree, and a restart resumes
//! exactly after the last batch written.
//!
//! Run with `cargo run --release -p evstore --example read_model` (it works in a temporary
//! directory, removed at the end; pass a directory to keep the store and the database there).

use std::collections::BTreeMap;
use std::path::Path;

use evstore::{Envelope, Event, ExpectedVersion, Options, Projection, ProjectionRunner, RunEnd, Store};
use rusqlite::{params, Connection};

/// View counts and the checkpoint, in one SQLite database.
struct ViewCounts {
    connection: Connection,
}

impl ViewCounts {
    fn open(path: &Path) -> rusqlite::Result<ViewCounts> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS view_counts (viewer TEXT PRIMARY KEY, views INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), position INTEGER NOT NULL);
             INSERT OR IGNORE INTO checkpoint (id, position) VALUES (0, 0);",
        )?;
        Ok(ViewCounts { connection })
    }

    fn view_counts(&self) -> rusqlite::Result<BTreeMap<String, i64>> {
        let mut statement = self.connection.prepare("SELECT viewer, views FROM view_counts ORDER BY viewer")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    }
}

impl Projection for ViewCounts {
    type Error = rusqlite::Error;

    /// Where the last batch left off: the runner subscribes from here.
    fn checkpoint(&mut self) -> rusqlite::Result<u64> {
        let position: i64 = self.connection.query_row("SELECT position FROM checkpoint", [], |row| row.get(0))?;
        Ok(position as u64)
    }

    /// Bookmarks do not count: the runner skips them without a write.
    fn wants(&self, envelope: &Envelope) -> bool {
        envelope.event_type() == "WatchedVideo"
    }

    /// Aggregates the batch (one increment per viewer, not per view), then writes the increments
    /// and the checkpoint in one transaction.
    fn flush(&mut self, batch: &[Envelope], checkpoint: u64) -> rusqlite::Result<()> {
        let mut per_viewer: BTreeMap<&str, i64> = BTreeMap::new();
        for envelope in batch {
            let viewer = envelope.stream().trim_start_matches("viewer-");
            *per_viewer.entry(viewer).or_default() += 1;
        }
        let transaction = self.connection.transaction()?;
        {
            let mut increment = transaction.prepare_cached(
                "INSERT INTO view_counts (viewer, views) VALUES (?1, ?2)
                 ON CONFLICT (viewer) DO UPDATE SET views = views + excluded.views",
            )?;
            for (viewer, views) in per_viewer {
                increment.execute(params![viewer, views])?;
            }
        }
        transaction.execute("UPDATE checkpoint SET position = ?1", params![checkpoint as i64])?;
        transaction.commit()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A temporary directory unless one is given; the temporary one goes away at the end.
    let temporary = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temporary.path().to_path_buf(), Into::into);
    let store = Store::open(dir.join("store"), Options::default())?;
    let database = dir.join("read-model.sqlite");

    // History: views and bookmarks of viewer 1.
    let views = (0..3_500).map(|_| Event::new("WatchedVideo", r#"{"VideoId":"1"}"#));
    store.append("viewer-1", ExpectedVersion::Any, views)?.wait()?;
    let bookmarks = (0..50).map(|_| Event::new("BookmarkedVideo", r#"{"VideoId":"1"}"#));
    store.append("viewer-1", ExpectedVersion::Any, bookmarks)?.wait()?;

    // Catch up: batches of 100 views, each with its checkpoint.
    let mut runner = ProjectionRunner::new(&store, ViewCounts::open(&database)?);
    runner.run_until_caught_up()?;
    println!("caught up at checkpoint {}: {:?}", runner.checkpoint(), runner.projection().view_counts()?);

    // Live: the runner follows on its own thread, one flush per view, until stopped.
    let stop = runner.stop_handle();
    let follower = std::thread::spawn(move || runner.run().map(|end| (end, runner)));
    for _ in 0..100 {
        store.append("viewer-2", ExpectedVersion::Any, [Event::new("WatchedVideo", r#"{"VideoId":"7"}"#)])?.wait()?;
    }
    // Every view is durable: stop once the runner has handled them all (`stop()` would stop
    // at once, leaving the rest to the next start).
    stop.stop_when_caught_up();
    let (end, runner) = follower.join().expect("the runner thread panicked")?;
    assert_eq!(end, RunEnd::Stopped);
    println!("stopped at checkpoint {}: {:?}", runner.checkpoint(), runner.projection().view_counts()?);
    drop(runner);

    // A restart (another process, later) resumes after the stored checkpoint: only what was
    // appended since is read.
    store.append("viewer-3", ExpectedVersion::Any, [Event::new("WatchedVideo", r#"{"VideoId":"9"}"#)])?.wait()?;
    let mut runner = ProjectionRunner::new(&store, ViewCounts::open(&database)?);
    runner.run_until_caught_up()?;
    println!("restarted, caught up at checkpoint {}: {:?}", runner.checkpoint(), runner.projection().view_counts()?);
    drop(runner);
    store.close()?;
    Ok(())
}
