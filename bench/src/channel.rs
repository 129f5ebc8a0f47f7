//! The seed's own client side, shared by the peers that port it (the naive log and SQLite): each
//! append is one message on an unbounded channel to one writer thread, and each carries its own
//! completion channel, which the writer signals once the batch holding the event is durable.
//! The peers differ only in what their writer does with a drained batch. The naive port and SQLite
//! have one writer thread; okaywal and RocksDB a pool of committers (`Committers`), since their
//! libraries group-commit across threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::workload::{Client, Events};

/// One append call on its way to a peer's writer: `count` events of `event_type`, each with `data`.
pub struct Message {
    pub stream: String,
    pub event_type: &'static str,
    pub data: Vec<u8>,
    /// Events in the call (1 in the seed workload); a writer stores them together, in order.
    pub count: u32,
    /// Signalled once the events are durable; a producer that gave up has dropped the receiver.
    pub done: SyncSender<()>,
}

impl Message {
    /// Stream id + type + data bytes of the message's events.
    pub fn payload_bytes(&self) -> u64 {
        (self.stream.len() + self.event_type.len() + self.data.len()) as u64 * u64::from(self.count)
    }
}

/// What a peer's writer did, read after the run.
#[derive(Default)]
pub struct Counters {
    /// Drained batches: one flush (naive) or one committed transaction (SQLite) each.
    pub batches: AtomicU64,
    /// Durability operations the writer asked for (SQLite's checkpoints add syncs that are not
    /// counted here, since SQLite does not report them).
    pub syncs: AtomicU64,
    /// Bytes of the records written (naive), or stream + type + data bytes committed (SQLite).
    pub record_bytes: AtomicU64,
    pub events: AtomicU64,
    /// Stream id + type + data bytes of the events made durable.
    pub payload_bytes: AtomicU64,
}

/// The counters at one moment; the difference of two is what a measured part did.
#[derive(Clone, Copy, Default)]
pub struct Counted {
    pub batches: u64,
    pub syncs: u64,
    pub record_bytes: u64,
    pub events: u64,
    pub payload_bytes: u64,
}

impl Counters {
    /// One durable batch of messages: counts its events and payload (the writer counts its own
    /// syncs and record bytes, which depend on its format).
    pub fn durable(&self, batch: &[Message]) {
        let events: u64 = batch.iter().map(|m| u64::from(m.count)).sum();
        let payload_bytes: u64 = batch.iter().map(Message::payload_bytes).sum();
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.payload_bytes.fetch_add(payload_bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Counted {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counted {
            batches: load(&self.batches),
            syncs: load(&self.syncs),
            record_bytes: load(&self.record_bytes),
            events: load(&self.events),
            payload_bytes: load(&self.payload_bytes),
        }
    }
}

impl std::ops::Sub for Counted {
    type Output = Counted;

    fn sub(self, before: Counted) -> Counted {
        Counted {
            batches: self.batches - before.batches,
            syncs: self.syncs - before.syncs,
            record_bytes: self.record_bytes - before.record_bytes,
            events: self.events - before.events,
            payload_bytes: self.payload_bytes - before.payload_bytes,
        }
    }
}

/// Tells every message's producer that its events are durable, and empties the batch.
pub fn complete(batch: &mut Vec<Message>) {
    for m in batch.drain(..) {
        // A producer that gave up waiting has dropped its receiver; nothing to tell it.
        let _ = m.done.send(());
    }
}

/// Blocks for the first message, then takes whatever else is already queued, up to `max`
/// messages: one batch. False once every sender is gone and the queue is empty.
pub fn drain(receiver: &Receiver<Message>, batch: &mut Vec<Message>, max: usize) -> bool {
    let Ok(first) = receiver.recv() else { return false };
    batch.push(first);
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    true
}

/// The producers' end of a peer: cloned senders, one per producer.
pub struct ChannelClient {
    /// Producers clone this; taking it out on `stop` ends the writer's receive loop.
    sender: Mutex<Option<Sender<Message>>>,
    /// The peer's name, for error messages.
    name: &'static str,
}

impl ChannelClient {
    /// A client and the receiving end its writer thread drains.
    pub fn new(name: &'static str) -> (ChannelClient, Receiver<Message>) {
        let (sender, receiver) = mpsc::channel();
        (ChannelClient { sender: Mutex::new(Some(sender)), name }, receiver)
    }

    /// Drops the last sender: the writer drains what is queued, then its loop ends.
    pub fn stop(&self) {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

impl Client for ChannelClient {
    type Producer = Sender<Message>;
    type Pending = Receiver<()>;

    fn producer(&self) -> Sender<Message> {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        sender.as_ref().expect("producers only run between open and close").clone()
    }

    fn append(&self, sender: &Sender<Message>, stream: &str, events: Events<'_>) -> Result<Receiver<()>, String> {
        // A fresh completion channel per call, as the seed completes one task per event.
        let (done, wait) = mpsc::sync_channel(1);
        let count = u32::try_from(events.count).map_err(|_| format!("{} events in one append", events.count))?;
        let message = Message {
            stream: stream.to_string(),
            event_type: events.event_type,
            data: events.data.to_vec(),
            count,
            done,
        };
        sender.send(message).map_err(|_| format!("the {} writer stopped (see the error on close)", self.name))?;
        Ok(wait)
    }

    fn wait(&self, done: Receiver<()>) -> Result<bool, String> {
        let failed = || format!("the {} writer failed before the event was durable", self.name);
        match done.try_recv() {
            Ok(()) => Ok(false),
            Err(mpsc::TryRecvError::Empty) => done.recv().map(|()| true).map_err(|_| failed()),
            Err(mpsc::TryRecvError::Disconnected) => Err(failed()),
        }
    }
}

/// What one commit of a batch wrote, as its writer counts it.
pub struct Committed {
    /// Durability operations the commit asked for.
    pub syncs: u64,
    /// Bytes of the records written, framing included.
    pub record_bytes: u64,
}

/// Messages one committer takes at a time: a bound on one entry (okaywal) or write batch
/// (RocksDB), as a full queue would otherwise make one commit of everything queued.
const COMMIT_MESSAGES_MAX: usize = 4_096;

/// The receiving end shared by a pool's committer threads, with the next version of each
/// stream: versions are handed out in the order messages leave the queue.
struct Queue {
    receiver: Receiver<Message>,
    versions: HashMap<String, u64>,
}

/// Committer threads for the peers whose library does its own group commit across threads
/// (okaywal, RocksDB): each thread takes what is queued (up to `COMMIT_MESSAGES_MAX` messages),
/// commits it durably through the library's blocking call, then tells the producers, so the
/// library sees several commits at once, as its documentation recommends, while producers keep
/// the same window of outstanding appends as with every other system.
pub struct Committers {
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Committers {
    /// Starts `threads` committers; `commit` stores one batch durably, given each message's
    /// first stream version.
    pub fn spawn<F>(
        name: &'static str,
        threads: usize,
        receiver: Receiver<Message>,
        counters: Arc<Counters>,
        commit: F,
    ) -> std::io::Result<Committers>
    where
        F: Fn(&[Message], &[u64]) -> Result<Committed, String> + Send + Sync + 'static,
    {
        let queue = Arc::new(Mutex::new(Queue { receiver, versions: HashMap::new() }));
        let commit = Arc::new(commit);
        let threads = (0..threads.max(1))
            .map(|i| {
                let (queue, counters, commit) = (queue.clone(), counters.clone(), commit.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-commit-{i}"))
                    .spawn(move || commit_loop(&queue, &counters, &*commit))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Committers { threads })
    }

    /// Waits for every committer (the client must have been stopped); the first error wins.
    pub fn join(self, name: &str) -> Result<(), String> {
        let mut result = Ok(());
        for thread in self.threads {
            let ended = thread.join().unwrap_or_else(|_| Err(format!("a {name} committer thread panicked")));
            if result.is_ok() {
                result = ended;
            }
        }
        result
    }
}

/// Stores one batch durably, given each message's first stream version.
type Commit = dyn Fn(&[Message], &[u64]) -> Result<Committed, String>;

fn commit_loop(queue: &Mutex<Queue>, counters: &Counters, commit: &Commit) -> Result<(), String> {
    let mut batch = Vec::new();
    let mut versions = Vec::new();
    loop {
        {
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            let Queue { receiver, versions: next } = &mut *queue;
            if !drain(receiver, &mut batch, COMMIT_MESSAGES_MAX) {
                return Ok(());
            }
            for m in &batch {
                let next = match next.get_mut(m.stream.as_str()) {
                    Some(next) => next,
                    None => next.entry(m.stream.clone()).or_insert(0),
                };
                versions.push(*next);
                *next += u64::from(m.count);
            }
        }
        // On error the batch (and its completion senders) is dropped, so its producers learn
        // that their events were not made durable; the error goes to `join`.
        let committed = commit(&batch, &versions)?;
        counters.syncs.fetch_add(committed.syncs, Ordering::Relaxed);
        counters.record_bytes.fetch_add(committed.record_bytes, Ordering::Relaxed);
        counters.durable(&batch);
        complete(&mut batch);
        versions.clear();
    }
}
