//! okaywal (a Rust write-ahead log with group commit) as an event store: each committer thread of
//! the pool (`channel::Committers`) writes the batch it took as one okaywal entry, one chunk per
//! event, and commits it. `EntryWriter::commit` returns only once the entry is on disk: it
//! writes the entry, then calls `fdatasync` on the log file (one thread at a time; commits that
//! arrive while one is syncing share the next `fdatasync`), and `fsync`s the directory after a
//! new log file was created. That is the durability every other system gives.
//!
//! A chunk is `[stream length: u8][stream][version: u64 le][type length: u8][type][data]`;
//! okaywal adds its own framing (a chunk tag, the length, a CRC32C) and an end-of-entry byte.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use okaywal::{Configuration, LogVoid, WriteAheadLog};

use crate::channel::{ChannelClient, Committed, Committers, Counters, Message};

/// Committer threads: enough that okaywal always has a commit to batch with the one syncing.
pub const COMMITTERS: usize = 4;

/// Log files are preallocated to this size ("critical for performance", okaywal's README), and a
/// new one is started (the old one handed to the checkpointer) once this much is written: well
/// below the preallocation, as its documentation asks, so that no entry extends a file.
const PREALLOCATE_BYTES: u32 = 64 << 20;
const CHECKPOINT_AFTER_BYTES: u64 = 48 << 20;

/// okaywal's framing per chunk: a tag byte, a u32 length and a u32 CRC32C.
const CHUNK_FRAMING_BYTES: u64 = 9;
/// Our own header per event: the stream length, the version, the type length.
const EVENT_HEADER_BYTES: u64 = 10;

pub struct Okaywal {
    pub client: ChannelClient,
    counters: Arc<Counters>,
    committers: Committers,
}

impl Okaywal {
    /// A fresh log in `dir`. okaywal has no mode without `fsync`: `durable` must be true.
    pub fn open(dir: &Path, durable: bool) -> Result<Okaywal, String> {
        if !durable {
            return Err("okaywal always syncs its commits: run it with a durable --sync".into());
        }
        let log = Configuration::default_for(dir)
            .preallocate_bytes(PREALLOCATE_BYTES)
            .checkpoint_after_bytes(CHECKPOINT_AFTER_BYTES)
            .open(LogVoid)
            .map_err(|e| format!("opening an okaywal log in {}: {e}", dir.display()))?;
        let (client, receiver) = ChannelClient::new("okaywal");
        let counters = Arc::new(Counters::default());
        let committers =
            Committers::spawn("okaywal", COMMITTERS, receiver, counters.clone(), move |batch, versions| {
                commit(&log, batch, versions)
                    .map_err(|e| format!("committing an okaywal entry of {} appends: {e}", batch.len()))
            })
            .map_err(|e| format!("starting the okaywal committers: {e}"))?;
        Ok(Okaywal { client, counters, committers })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops the committers once they have committed what is queued.
    pub fn close(self) -> Result<(), String> {
        self.client.stop();
        self.committers.join("okaywal")
    }
}

fn commit(log: &WriteAheadLog, batch: &[Message], versions: &[u64]) -> std::io::Result<Committed> {
    let mut entry = log.begin_entry()?;
    let mut record_bytes = 0;
    for (m, first_version) in batch.iter().zip(versions) {
        let stream = m.stream.as_bytes();
        for k in 0..u64::from(m.count) {
            let length = stream.len() + m.event_type.len() + m.data.len() + EVENT_HEADER_BYTES as usize;
            let mut chunk = entry.begin_chunk(length as u32)?;
            chunk.write_all(&[stream.len() as u8])?;
            chunk.write_all(stream)?;
            chunk.write_all(&(first_version + k).to_le_bytes())?;
            chunk.write_all(&[m.event_type.len() as u8])?;
            chunk.write_all(m.event_type.as_bytes())?;
            chunk.write_all(&m.data)?;
            chunk.finish()?;
            record_bytes += length as u64 + CHUNK_FRAMING_BYTES;
        }
    }
    entry.commit()?;
    // One commit; okaywal does not say whether it shared its fdatasync with another.
    Ok(Committed { syncs: 1, record_bytes })
}
