//! A real read model for the projection tests: view counts per viewer in SQLite, with the
//! checkpoint in the same database, both written in one transaction per flushed batch. Used by
//! the projecting child process (src/bin/projector.rs) and by the test that kills it
//! (tests/projection_sigkill.rs), which reads the database back.
//!
//! Events: stream `viewer-<id>`, type `WatchedVideo` (counted) or `BookmarkedVideo` (skipped).

use std::collections::BTreeMap;
use std::path::Path;

use evstore::{Envelope, Projection, RecordedEvent};
use rusqlite::{params, Connection};

pub const WATCHED: &str = "WatchedVideo";
pub const BOOKMARKED: &str = "BookmarkedVideo";
pub const VIEWER_STREAM_PREFIX: &str = "viewer-";

/// View counts and the checkpoint in one SQLite database.
pub struct SqliteViewCounts {
    connection: Connection,
}

impl SqliteViewCounts {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<SqliteViewCounts> {
        let connection = Connection::open(path)?;
        // WAL with synchronous=NORMAL: a commit survives the process being killed (the test's
        // crash), though not a power loss; the transaction's atomicity is what matters here,
        // and it holds in every mode.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS view_counts (viewer TEXT PRIMARY KEY, views INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), position INTEGER NOT NULL);
             INSERT OR IGNORE INTO checkpoint (id, position) VALUES (0, 0);",
        )?;
        Ok(SqliteViewCounts { connection })
    }

    /// The stored checkpoint.
    pub fn stored_checkpoint(&self) -> rusqlite::Result<u64> {
        let position: i64 =
            self.connection.query_row("SELECT position FROM checkpoint WHERE id = 0", [], |row| row.get(0))?;
        Ok(position as u64)
    }

    /// The stored view counts, viewer -> views.
    pub fn view_counts(&self) -> rusqlite::Result<BTreeMap<String, u64>> {
        let mut statement = self.connection.prepare("SELECT viewer, views FROM view_counts")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
        rows.collect()
    }
}

/// The viewer whose stream holds the event.
pub fn viewer(stream: &str) -> &str {
    stream.strip_prefix(VIEWER_STREAM_PREFIX).unwrap_or(stream)
}

/// The view counts the events before position `end` give: the truth a read model at checkpoint
/// `end` must hold.
pub fn view_counts_before(events: &[RecordedEvent], end: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for event in events.iter().take_while(|event| event.position < end) {
        if event.event_type == WATCHED {
            *counts.entry(viewer(&event.stream).to_string()).or_default() += 1;
        }
    }
    counts
}

impl Projection for SqliteViewCounts {
    type Error = rusqlite::Error;

    fn checkpoint(&mut self) -> rusqlite::Result<u64> {
        self.stored_checkpoint()
    }

    fn wants(&self, envelope: &Envelope) -> bool {
        envelope.event_type() == WATCHED
    }

    /// One transaction: an increment per viewer of the batch (the seed's "batching with
    /// transformation"), then the checkpoint. A kill anywhere in it leaves the database as it was
    /// before the batch, checkpoint included.
    fn flush(&mut self, batch: &[Envelope], checkpoint: u64) -> rusqlite::Result<()> {
        let mut per_viewer: BTreeMap<&str, i64> = BTreeMap::new();
        for envelope in batch {
            *per_viewer.entry(viewer(envelope.stream())).or_default() += 1;
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
        transaction.execute("UPDATE checkpoint SET position = ?1 WHERE id = 0", params![checkpoint as i64])?;
        transaction.commit()
    }
}
