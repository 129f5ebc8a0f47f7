//! The seed's own client side, shared by the peers that port it (the naive log and SQLite): each
//! append is one message on an unbounded channel to one writer thread, and each carries its own
//! completion channel, which the writer signals once the batch holding the event is durable.
//! The peers differ only in what their writer does with a drained batch.

use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Mutex;

use crate::workload::{Client, EVENT_DATA, EVENT_TYPE};

/// One event on its way to a peer's writer.
pub struct Message {
    pub stream: String,
    pub event_type: &'static str,
    pub data: Vec<u8>,
    /// Signalled once the event is durable; a producer that gave up has dropped the receiver.
    pub done: SyncSender<()>,
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

    fn append(&self, sender: &Sender<Message>, stream: &str) -> Result<Receiver<()>, String> {
        // A fresh completion channel per event, as the seed completes one task per event.
        let (done, wait) = mpsc::sync_channel(1);
        let message = Message { stream: stream.to_string(), event_type: EVENT_TYPE, data: EVENT_DATA.to_vec(), done };
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
