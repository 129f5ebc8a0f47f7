//! RocksDB (rust-rocksdb) as an event store, behind the bench's `rocksdb` feature: one key per
//! event, `stream id, 0, version (u64 big-endian)`, its value the event type and data; each
//! committer thread of the pool (`channel::Committers`) writes the batch it took as one
//! `WriteBatch` with `WriteOptions::set_sync(true)`. A synced write returns once its write-ahead
//! log record is on disk (RocksDB `fdatasync`s the WAL, `use_fsync` being off); concurrent
//! writers are joined into one write group by RocksDB's leader, so they share that sync.
//! Compression is not built (the bench's events are not compressible data, and the WAL is not
//! compressed anyway).

use std::path::Path;
use std::sync::Arc;

use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::channel::{ChannelClient, Committed, Committers, Counters, Message};

/// Committer threads: RocksDB's write group commit needs concurrent writers to batch.
pub const COMMITTERS: usize = 4;

pub struct Rocksdb {
    pub client: ChannelClient,
    counters: Arc<Counters>,
    committers: Committers,
}

impl Rocksdb {
    /// A fresh database in `dir`; `durable: false` writes without sync (NOT DURABLE).
    pub fn open(dir: &Path, durable: bool) -> Result<Rocksdb, String> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, dir).map_err(|e| format!("opening RocksDB in {}: {e}", dir.display()))?;
        let mut write = WriteOptions::default();
        write.set_sync(durable);
        let (client, receiver) = ChannelClient::new("rocksdb");
        let counters = Arc::new(Counters::default());
        let committers =
            Committers::spawn("rocksdb", COMMITTERS, receiver, counters.clone(), move |batch, versions| {
                commit(&db, &write, batch, versions, durable)
            })
            .map_err(|e| format!("starting the RocksDB committers: {e}"))?;
        Ok(Rocksdb { client, counters, committers })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn close(self) -> Result<(), String> {
        self.client.stop();
        self.committers.join("rocksdb")
    }
}

fn commit(
    db: &DB,
    write: &WriteOptions,
    batch: &[Message],
    versions: &[u64],
    durable: bool,
) -> Result<Committed, String> {
    let mut writes = WriteBatch::default();
    let mut record_bytes = 0;
    let mut key = Vec::new();
    let mut value = Vec::new();
    for (m, first_version) in batch.iter().zip(versions) {
        for k in 0..u64::from(m.count) {
            key.clear();
            key.extend_from_slice(m.stream.as_bytes());
            key.push(0);
            key.extend_from_slice(&(first_version + k).to_be_bytes());
            value.clear();
            value.push(m.event_type.len() as u8);
            value.extend_from_slice(m.event_type.as_bytes());
            value.extend_from_slice(&m.data);
            writes.put(&key, &value);
            record_bytes += (key.len() + value.len()) as u64;
        }
    }
    db.write_opt(writes, write).map_err(|e| format!("a RocksDB write of {} appends: {e}", batch.len()))?;
    Ok(Committed { syncs: u64::from(durable), record_bytes })
}
