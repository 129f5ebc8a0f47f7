//! The seed's own design, ported: one channel message per event, one writer thread appending
//! length-prefixed records to one growing file through a buffered writer, one fdatasync per
//! drained batch, then one completion message per event.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::workload::{Client, EVENT_DATA, EVENT_TYPE};

pub struct Message {
    stream: String,
    event_type: &'static str,
    data: Vec<u8>,
    done: SyncSender<()>,
}

/// What the writer did, read after the run.
#[derive(Default)]
pub struct Counters {
    /// Drained batches (one flush each).
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
    pub record_bytes: AtomicU64,
    pub events: AtomicU64,
}

pub struct Naive {
    /// Producers clone this; taking it out on close ends the writer's receive loop.
    sender: Mutex<Option<Sender<Message>>>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
    counters: std::sync::Arc<Counters>,
    path: PathBuf,
}

impl Naive {
    /// `sync: false` skips the fdatasync (NOT DURABLE), to compare with the engine's `none` mode.
    pub fn open(dir: &Path, sync: bool) -> std::io::Result<Naive> {
        let path = dir.join("events.log");
        let file = File::create(&path)?;
        let (sender, receiver) = mpsc::channel();
        let counters = std::sync::Arc::new(Counters::default());
        let writer_counters = counters.clone();
        let writer = std::thread::Builder::new()
            .name("naive-writer".into())
            .spawn(move || write_loop(file, receiver, sync, &writer_counters))?;
        Ok(Naive { sender: Mutex::new(Some(sender)), writer: Some(writer), counters, path })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops the writer and returns the final file length.
    pub fn close(mut self) -> std::io::Result<u64> {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(writer) = self.writer.take() {
            writer.join().map_err(|_| std::io::Error::other("the naive writer thread panicked"))??;
        }
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

impl Client for Naive {
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
        sender.send(message).map_err(|_| "the naive writer stopped (see the error on close)".to_string())?;
        Ok(wait)
    }

    fn wait(&self, done: Receiver<()>) -> Result<bool, String> {
        match done.try_recv() {
            Ok(()) => Ok(false),
            Err(mpsc::TryRecvError::Empty) => done
                .recv()
                .map(|()| true)
                .map_err(|_| "the naive writer failed before the event was durable".to_string()),
            Err(mpsc::TryRecvError::Disconnected) => {
                Err("the naive writer failed before the event was durable".to_string())
            }
        }
    }
}

fn write_loop(file: File, receiver: Receiver<Message>, sync: bool, counters: &Counters) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut batch = Vec::new();
    // Block for the first message, then take whatever else is already queued: one batch.
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        for m in &batch {
            // u32 length (of the whole record, prefix included), stream, type, data.
            let len = 4 + m.stream.len() + m.event_type.len() + m.data.len();
            out.write_all(&(len as u32).to_le_bytes())?;
            out.write_all(m.stream.as_bytes())?;
            out.write_all(m.event_type.as_bytes())?;
            out.write_all(&m.data)?;
            counters.record_bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
        out.flush()?;
        if sync {
            out.get_ref().sync_data()?;
            counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for m in batch.drain(..) {
            // A producer that gave up waiting has dropped its receiver; nothing to tell it.
            let _ = m.done.send(());
        }
    }
    Ok(())
}
