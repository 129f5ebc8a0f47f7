//! SQLite as an event store, driven the naive way: one channel message per event, one writer
//! thread owning the only connection, each drained batch inserted in one transaction and
//! committed durably (WAL, `synchronous=FULL`), then one completion message per event.
//!
//! It models what a team gets by putting events in an off-the-shelf embedded database instead of
//! writing a log: an `events` table with a global position, per-stream versions kept unique by an
//! index, and SQLite's own WAL doing the durability.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection};

use crate::channel::{complete, drain, ChannelClient, Counters, Message};

/// The database file; SQLite puts its write-ahead log beside it as `events.db-wal`.
const DB_FILE: &str = "events.db";
const WAL_FILE: &str = "events.db-wal";

pub const SCHEMA: &str = "CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (stream, version)
)";

/// `position` is left out: as the rowid alias SQLite assigns it, one past the largest so far.
pub const INSERT: &str = "INSERT INTO events (stream, version, event_type, data) VALUES (?1, ?2, ?3, ?4)";

/// The files' sizes when the writer stopped, before the connection closed: closing the last
/// connection checkpoints the WAL into the database and deletes it, which the run never waited for.
#[derive(Clone, Copy)]
pub struct Files {
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

pub struct Sqlite {
    /// What the producers append through.
    pub client: ChannelClient,
    writer: Option<JoinHandle<Result<Files, String>>>,
    counters: Arc<Counters>,
}

impl Sqlite {
    /// Creates `events.db` in `dir` (which must not hold one). `sync: false` sets
    /// `synchronous=OFF` (NOT DURABLE), to compare with the engine's `none` mode.
    pub fn open(dir: &Path, sync: bool) -> Result<Sqlite, String> {
        let path = dir.join(DB_FILE);
        // Set up here rather than in the writer so that a bad pragma or schema fails the open.
        let connection = setup(&path, sync).map_err(|e| format!("setting up {}: {e}", path.display()))?;
        let (client, receiver) = ChannelClient::new("sqlite");
        let counters = Arc::new(Counters::default());
        let writer_counters = counters.clone();
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(connection, &path, receiver, sync, &writer_counters))
            .map_err(|e| format!("starting the sqlite writer thread: {e}"))?;
        Ok(Sqlite { client, writer: Some(writer), counters })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops the writer and returns the files' sizes as it left them.
    pub fn close(mut self) -> Result<Files, String> {
        self.client.stop();
        match self.writer.take() {
            Some(writer) => writer.join().map_err(|_| "the sqlite writer thread panicked".to_string())?,
            None => Err("the sqlite writer was already stopped".to_string()),
        }
    }
}

/// The label of the sync row: journal mode + `synchronous` level.
pub fn sync_label(sync: bool) -> &'static str {
    if sync {
        "WAL+FULL"
    } else {
        "WAL+OFF (NOT DURABLE)"
    }
}

fn setup(path: &Path, sync: bool) -> Result<Connection, String> {
    let connection = Connection::open(path).map_err(|e| format!("opening: {e}"))?;
    // journal_mode answers with the mode actually in effect; a file system without shared memory
    // support would quietly leave it at `delete`, and the row would then measure something else.
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| format!("PRAGMA journal_mode=WAL: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("PRAGMA journal_mode=WAL was refused (the mode is {mode})"));
    }
    // FULL in WAL mode: every commit syncs the WAL before returning, so a commit is durable.
    // (NORMAL would only sync at checkpoints: commits could be lost on power failure.)
    // The bundled build has no HAVE_FDATASYNC, so SQLite syncs with fsync(2), not fdatasync(2).
    let synchronous = if sync { "FULL" } else { "OFF" };
    connection
        .pragma_update(None, "synchronous", synchronous)
        .map_err(|e| format!("PRAGMA synchronous={synchronous}: {e}"))?;
    connection.execute_batch(SCHEMA).map_err(|e| format!("creating the events table: {e}"))?;
    Ok(connection)
}

fn write_loop(
    mut connection: Connection,
    path: &Path,
    receiver: Receiver<Message>,
    sync: bool,
    counters: &Counters,
) -> Result<Files, String> {
    // Next version per stream. Kept here rather than read back with MAX(version) per batch: the
    // writer is the only one, and an event store's writer would hold this in memory too.
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut batch = Vec::new();
    while drain(&receiver, &mut batch, usize::MAX) {
        // On error the batch (and its completion senders) is dropped with the writer, so its
        // producers learn that their events were not made durable; the error goes to `close`.
        let record_bytes = insert_batch(&mut connection, &batch, &mut versions)
            .map_err(|e| format!("committing a batch of {} events: {e}", batch.len()))?;
        if sync {
            counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        counters.record_bytes.fetch_add(record_bytes, Ordering::Relaxed);
        counters.durable(&batch);
        complete(&mut batch);
    }
    // Measured with the connection still open: see `Files`.
    let size = |path: PathBuf| match std::fs::metadata(&path) {
        Ok(meta) => Ok(meta.len()),
        // SQLite may not have created a WAL if nothing was ever written.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("reading the size of {}: {e}", path.display())),
    };
    let files = Files { db_bytes: size(path.to_path_buf())?, wal_bytes: size(path.with_file_name(WAL_FILE))? };
    connection.close().map_err(|(_, e)| format!("closing {}: {e}", path.display()))?;
    Ok(files)
}

/// Inserts and commits one batch in one transaction; returns its stream + type + data bytes.
fn insert_batch(
    connection: &mut Connection,
    batch: &[Message],
    versions: &mut HashMap<String, u64>,
) -> rusqlite::Result<u64> {
    let transaction = connection.transaction()?;
    let mut bytes = 0;
    {
        // Cached on the connection: parsed once for the whole run, not once per batch.
        let mut insert = transaction.prepare_cached(INSERT)?;
        for m in batch {
            // Advanced before the commit: a failed commit ends the writer, so no later batch
            // ever sees a version the rollback took back.
            let next = match versions.get_mut(m.stream.as_str()) {
                Some(next) => next,
                // Only a stream's first event pays for the key's allocation.
                None => versions.entry(m.stream.clone()).or_insert(0),
            };
            for _ in 0..m.count {
                insert.execute(params![m.stream, *next as i64, m.event_type, m.data])?;
                *next += 1;
            }
            bytes += m.payload_bytes();
        }
    }
    transaction.commit()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{drive, Shape};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("evstore-bench-sqlite-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_event_is_stored_once_with_its_stream_version() {
        let dir = temp_dir("versions");
        let sqlite = Sqlite::open(&dir, true).unwrap();
        let shape = Shape { streams: 7, events_per_stream: 50, producers: 2 };
        let (_, latency_us) = drive(&sqlite.client, shape, "s/", &crate::progress::Progress::hidden()).unwrap();
        let events = sqlite.counters().events.load(Ordering::Relaxed);
        let files = sqlite.close().unwrap();
        assert_eq!(events, 350);
        assert_eq!(latency_us.len(), 350);
        assert!(files.db_bytes > 0);

        let db = Connection::open(dir.join(DB_FILE)).unwrap();
        let (count, first, last): (i64, i64, i64) = db
            .query_row("SELECT COUNT(*), MIN(position), MAX(position) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((count, first, last), (350, 1, 350));
        let mut per_stream =
            db.prepare("SELECT stream, MIN(version), MAX(version), COUNT(*) FROM events GROUP BY stream").unwrap();
        let rows: Vec<(String, i64, i64, i64)> = per_stream
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 7);
        assert!(rows.iter().all(|(_, min, max, n)| (*min, *max, *n) == (0, 49, 50)), "{rows:?}");
        drop(per_stream);
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_database_is_an_error_not_a_panic() {
        let dir = temp_dir("existing");
        Sqlite::open(&dir, false).unwrap().close().unwrap();
        let error = Sqlite::open(&dir, false).err().expect("the events table already exists");
        assert!(error.contains("creating the events table"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
