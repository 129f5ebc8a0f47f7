//! The seed's own design, ported: one channel message per event, one writer thread appending
//! length-prefixed records to one growing file through a buffered writer, one fdatasync per
//! drained batch, then one completion message per event.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct Message {
    stream: String,
    event_type: &'static str,
    data: Vec<u8>,
    done: SyncSender<()>,
}

#[derive(Default)]
pub struct NaiveCounters {
    pub syncs: AtomicU64,
    pub record_bytes: AtomicU64,
    pub events: AtomicU64,
}

pub struct Naive {
    sender: Mutex<Option<Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
    pub counters: Arc<NaiveCounters>,
}

impl Naive {
    pub fn open(dir: &Path) -> std::io::Result<Naive> {
        std::fs::create_dir_all(dir)?;
        let file = File::create(dir.join("events.log"))?;
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(NaiveCounters::default());
        let writer_counters = counters.clone();
        let writer = std::thread::spawn(move || write_loop(file, receiver, &writer_counters));
        Ok(Naive { sender: Mutex::new(Some(sender)), writer: Mutex::new(Some(writer)), counters })
    }

    /// A sender for one producer thread (mpsc senders are cloned per thread).
    pub fn sender(&self) -> Sender<Message> {
        self.sender.lock().expect("sender lock").as_ref().expect("open").clone()
    }

    pub fn append(sender: &Sender<Message>, stream: &str, event_type: &'static str, data: &[u8]) -> Receiver<()> {
        let (done, wait) = mpsc::sync_channel(1);
        sender
            .send(Message { stream: stream.to_string(), event_type, data: data.to_vec(), done })
            .expect("naive writer alive");
        wait
    }

    pub fn close(&self) -> std::io::Result<()> {
        drop(self.sender.lock().expect("sender lock").take());
        match self.writer.lock().expect("writer lock").take() {
            Some(handle) => handle.join().expect("naive writer panicked"),
            None => Ok(()),
        }
    }
}

fn write_loop(file: File, receiver: Receiver<Message>, counters: &NaiveCounters) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut batch = Vec::new();
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        for m in &batch {
            let len = (4 + m.stream.len() + m.event_type.len() + m.data.len()) as u32;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(m.stream.as_bytes())?;
            out.write_all(m.event_type.as_bytes())?;
            out.write_all(&m.data)?;
            counters.record_bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
        out.flush()?;
        out.get_ref().sync_data()?;
        counters.syncs.fetch_add(1, Ordering::Relaxed);
        counters.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for m in batch.drain(..) {
            let _ = m.done.send(());
        }
    }
    Ok(())
}
