//! The peers evstore is measured beside, behind one face: each takes appends through the seed's
//! channel client (`channel::ChannelClient`) and says what it did through the same counters, so
//! every workload (seed, append, latency) runs each of them the same way.
//!
//! How each is made durable: naive.rs, sqlite.rs, okaywal_peer.rs, rocksdb_peer.rs (module docs),
//! and docs/bench-matrix.md.

use std::path::Path;

use hdrhistogram::Histogram;

use crate::channel::{ChannelClient, Counted};
use crate::naive::Naive;
use crate::okaywal_peer::Okaywal;
use crate::report::{process_cpu_seconds, Outcome};
#[cfg(feature = "rocksdb")]
use crate::rocksdb_peer::Rocksdb;
use crate::sqlite::{self, Sqlite};
use crate::Common;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerKind {
    Naive,
    Sqlite,
    Okaywal,
    #[cfg(feature = "rocksdb")]
    Rocksdb,
}

impl PeerKind {
    /// Every peer this build has, in the order they run.
    pub const ALL: &'static [PeerKind] = &[
        PeerKind::Naive,
        PeerKind::Sqlite,
        PeerKind::Okaywal,
        #[cfg(feature = "rocksdb")]
        PeerKind::Rocksdb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Naive => "naive",
            PeerKind::Sqlite => "sqlite",
            PeerKind::Okaywal => "okaywal",
            #[cfg(feature = "rocksdb")]
            PeerKind::Rocksdb => "rocksdb",
        }
    }

    pub fn parse(name: &str) -> Option<PeerKind> {
        PeerKind::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// How it is made durable, as the `sync` column says it.
    fn sync_label(self, durable: bool) -> &'static str {
        match (self, durable) {
            (PeerKind::Naive, true) => "fdatasync",
            (PeerKind::Sqlite, durable) => sqlite::sync_label(durable),
            (PeerKind::Okaywal, _) => "commit (fdatasync)",
            #[cfg(feature = "rocksdb")]
            (PeerKind::Rocksdb, true) => "sync=true (WAL)",
            _ => "none (NOT DURABLE)",
        }
    }

    fn backend(self) -> String {
        match self {
            PeerKind::Naive => "BufWriter + sync_data".into(),
            PeerKind::Sqlite => format!("SQLite {} (bundled)", rusqlite::version()),
            PeerKind::Okaywal => format!("okaywal 0.3, {} committers", crate::okaywal_peer::COMMITTERS),
            #[cfg(feature = "rocksdb")]
            PeerKind::Rocksdb => format!("RocksDB, {} committers", crate::rocksdb_peer::COMMITTERS),
        }
    }

    /// Commits that may be in progress at once.
    fn in_flight(self) -> usize {
        match self {
            PeerKind::Naive | PeerKind::Sqlite => 1,
            PeerKind::Okaywal => crate::okaywal_peer::COMMITTERS,
            #[cfg(feature = "rocksdb")]
            PeerKind::Rocksdb => crate::rocksdb_peer::COMMITTERS,
        }
    }
}

/// `--systems` names: the known ones in the order given, or an error naming the unknown one.
pub fn parse_systems(list: &str, allowed: &[&str]) -> Result<Vec<String>, String> {
    let systems: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if let Some(unknown) = systems.iter().find(|s| !allowed.contains(&s.as_str())) {
        let hint = if unknown == "rocksdb" { " (rocksdb needs a build with --features rocksdb)" } else { "" };
        return Err(format!("unknown system {unknown:?} in --systems (use {}){hint}", allowed.join(", ")));
    }
    if systems.is_empty() {
        return Err("--systems names no system".into());
    }
    Ok(systems)
}

/// `systems` without the peers that cannot run as `common` asks: okaywal always syncs, so it is
/// left out (with a note) under `--sync none`.
pub fn runnable(systems: Vec<String>, common: &Common) -> Vec<String> {
    if common.durable() {
        return systems;
    }
    let (kept, left): (Vec<String>, Vec<String>) = systems.into_iter().partition(|s| s != PeerKind::Okaywal.name());
    if !left.is_empty() {
        common.note("okaywal left out: it has no mode without fdatasync (--sync none)");
    }
    kept
}

/// One open peer.
pub struct Peer {
    kind: PeerKind,
    inner: Inner,
}

enum Inner {
    Naive(Naive),
    Sqlite(Sqlite),
    Okaywal(Okaywal),
    #[cfg(feature = "rocksdb")]
    Rocksdb(Rocksdb),
}

impl Peer {
    pub fn open(kind: PeerKind, dir: &Path, durable: bool) -> Result<Peer, String> {
        let inner = match kind {
            PeerKind::Naive => {
                Inner::Naive(Naive::open(dir, durable).map_err(|e| format!("opening the naive store: {e}"))?)
            }
            PeerKind::Sqlite => Inner::Sqlite(Sqlite::open(dir, durable)?),
            PeerKind::Okaywal => Inner::Okaywal(Okaywal::open(dir, durable)?),
            #[cfg(feature = "rocksdb")]
            PeerKind::Rocksdb => Inner::Rocksdb(Rocksdb::open(dir, durable)?),
        };
        Ok(Peer { kind, inner })
    }

    pub fn client(&self) -> &ChannelClient {
        match &self.inner {
            Inner::Naive(p) => &p.client,
            Inner::Sqlite(p) => &p.client,
            Inner::Okaywal(p) => &p.client,
            #[cfg(feature = "rocksdb")]
            Inner::Rocksdb(p) => &p.client,
        }
    }

    pub fn counted(&self) -> Counted {
        match &self.inner {
            Inner::Naive(p) => p.counters().snapshot(),
            Inner::Sqlite(p) => p.counters().snapshot(),
            Inner::Okaywal(p) => p.counters().snapshot(),
            #[cfg(feature = "rocksdb")]
            Inner::Rocksdb(p) => p.counters().snapshot(),
        }
    }

    /// Stops the writers once they have stored what is queued; a note worth printing, if any.
    pub fn close(self) -> Result<Option<String>, String> {
        let name = self.kind.name();
        match self.inner {
            Inner::Naive(p) => p.close().map(|_| None).map_err(|e| format!("the naive writer: {e}")),
            Inner::Sqlite(p) => {
                let files = p.close().map_err(|e| format!("the sqlite writer: {e}"))?;
                Ok(Some(format!(
                    "sqlite: events.db {} B + events.db-wal {} B at the end of the run",
                    files.db_bytes, files.wal_bytes
                )))
            }
            Inner::Okaywal(p) => p.close().map(|()| None).map_err(|e| format!("{name}: {e}")),
            #[cfg(feature = "rocksdb")]
            Inner::Rocksdb(p) => p.close().map(|()| None).map_err(|e| format!("{name}: {e}")),
        }
    }
}

/// Bytes of the files under `dir` (their lengths), recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// What a measured part hands back: its wall time and its latency histogram (microseconds).
pub type Driven = Result<(f64, Histogram<u64>), String>;

/// Runs one peer in a fresh data directory: `warmup` first (not counted), then `run`, timed,
/// with the process's CPU time and the peer's counters around it. Disk bytes are the growth of
/// the data directory's files during `run`, read before the peer closes (SQLite's close folds
/// its WAL into the database); okaywal preallocates its files, so for it they are the bytes of
/// its records. Returns the outcome and the peer's note on its files, if it has one.
pub fn measure(
    common: &Common,
    kind: PeerKind,
    producers: usize,
    warmup: impl FnOnce(&ChannelClient) -> Result<(), String>,
    run: impl FnOnce(&ChannelClient) -> Driven,
) -> Result<(Outcome, Option<String>), String> {
    let name = kind.name();
    let data = common.data_dir(name)?;
    let peer = Peer::open(kind, &data.path, common.durable())?;
    let warmed = warmup(peer.client());
    let before = (peer.counted(), dir_bytes(&data.path));
    let cpu_start = process_cpu_seconds();
    let driven = if warmed.is_ok() { run(peer.client()) } else { Err(String::new()) };
    let cpu_seconds = process_cpu_seconds() - cpu_start;
    let counted = peer.counted() - before.0;
    let disk_bytes = match kind {
        PeerKind::Okaywal => counted.record_bytes,
        _ => dir_bytes(&data.path).saturating_sub(before.1),
    };
    // Close first: if a writer failed, its error explains the producers' failure.
    let note = peer.close()?;
    warmed?;
    let (seconds, latency_us) = driven?;
    let outcome = Outcome {
        system: name.into(),
        sync: kind.sync_label(common.durable()).into(),
        backend: kind.backend(),
        producers,
        in_flight: kind.in_flight(),
        events: counted.events,
        seconds,
        payload_bytes: counted.payload_bytes,
        disk_bytes,
        record_bytes: counted.record_bytes,
        syncs: counted.syncs,
        groups: counted.batches,
        latency_us,
        cpu_seconds: Some(cpu_seconds),
    };
    Ok((outcome, note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use crate::workload::{drive_windowed, Events, Load};

    /// Every peer stores each event of multi-event calls from several producers exactly once and
    /// tells its producer: the committer pool (okaywal) and the single writers alike.
    #[test]
    fn every_peer_counts_every_event_of_every_call() {
        for &kind in PeerKind::ALL {
            let dir = std::env::temp_dir().join(format!("evstore-bench-peer-{}-{}", kind.name(), std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let peer = Peer::open(kind, &dir, true).unwrap();
            let load = Load {
                producers: 3,
                events: Events { event_type: "Test", data: &[7u8; 100], count: 3 },
                events_per_producer: 60,
                deadline: std::time::Duration::from_secs(600),
                window_events: 10,
                window_bytes: u64::MAX,
            };
            let (_, latency_us) = drive_windowed(peer.client(), &load, "t/", &Progress::hidden()).unwrap();
            let counted = peer.counted();
            peer.close().unwrap();
            assert_eq!(latency_us.len(), 180, "{}", kind.name());
            assert_eq!(counted.events, 180, "{}", kind.name());
            assert_eq!(counted.payload_bytes, 180 * ("t/0/0".len() + 4 + 100) as u64, "{}", kind.name());
            assert!(counted.batches >= 1 && counted.batches <= 60, "{}", kind.name());
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
