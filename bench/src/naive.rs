//! The seed's own design, ported: one channel message per event, one writer thread appending
//! length-prefixed records to one growing file through a buffered writer, one fdatasync per
//! drained batch, then one completion message per event.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use crate::channel::{complete, drain, ChannelClient, Counters, Message};

pub struct Naive {
    /// What the producers append through.
    pub client: ChannelClient,
    writer: Option<JoinHandle<std::io::Result<()>>>,
    counters: std::sync::Arc<Counters>,
    path: PathBuf,
}

impl Naive {
    /// `sync: false` skips the fdatasync (NOT DURABLE), to compare with the engine's `none` mode.
    pub fn open(dir: &Path, sync: bool) -> std::io::Result<Naive> {
        let path = dir.join("events.log");
        let file = File::create(&path)?;
        let (client, receiver) = ChannelClient::new("naive");
        let counters = std::sync::Arc::new(Counters::default());
        let writer_counters = counters.clone();
        let writer = std::thread::Builder::new()
            .name("naive-writer".into())
            .spawn(move || write_loop(file, receiver, sync, &writer_counters))?;
        Ok(Naive { client, writer: Some(writer), counters, path })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops the writer and returns the final file length.
    pub fn close(mut self) -> std::io::Result<u64> {
        self.client.stop();
        if let Some(writer) = self.writer.take() {
            writer.join().map_err(|_| std::io::Error::other("the naive writer thread panicked"))??;
        }
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

fn write_loop(file: File, receiver: Receiver<Message>, sync: bool, counters: &Counters) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut batch = Vec::new();
    while drain(&receiver, &mut batch, usize::MAX) {
        for m in &batch {
            for _ in 0..m.count {
                // u32 length (of the whole record, prefix included), stream, type, data.
                let len = 4 + m.stream.len() + m.event_type.len() + m.data.len();
                out.write_all(&(len as u32).to_le_bytes())?;
                out.write_all(m.stream.as_bytes())?;
                out.write_all(m.event_type.as_bytes())?;
                out.write_all(&m.data)?;
                counters.record_bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
        }
        out.flush()?;
        if sync {
            out.get_ref().sync_data()?;
            counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        counters.durable(&batch);
        complete(&mut batch);
    }
    Ok(())
}
