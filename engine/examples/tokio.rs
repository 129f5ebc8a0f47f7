//! evstore in an async service: tasks append and `.await` their tickets, another task follows
//! the log through a subscription as a `futures_core::Stream`, all on tokio's multi-threaded
//! runtime. Run with `cargo run --release -p evstore --example tokio`. It works in a temporary
//! directory and leaves nothing behind.
//!
//! `append` itself returns at once (it blocks only while the append queue is full: bounded
//! memory), and the ticket is a `Future` that works in any executor, tokio included. evstore
//! spawns no tasks of its own: its submitter is a plain thread.

use std::future::poll_fn;
use std::pin::Pin;

use evstore::{Event, ExpectedVersion, Options, Store};
use futures_core::Stream;

const TASKS: usize = 8;
const EVENTS_PER_TASK: u64 = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let temp = tempfile::tempdir()?;
    let store = Store::open(temp.path().join("store"), Options::default())?;

    // A follower: counts live and historic events until it has seen all of them.
    let mut subscription = store.subscribe_all(0)?;
    let follower = tokio::spawn(async move {
        let (mut seen, mut live) = (0u64, 0u64);
        while seen < TASKS as u64 * EVENTS_PER_TASK {
            match poll_fn(|cx| Pin::new(&mut subscription).poll_next(cx)).await {
                Some(Ok(envelope)) => {
                    seen += 1;
                    live += u64::from(!envelope.historic());
                }
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok((seen, live))
    });

    // Producers: each task appends to its own stream, with an expected-version check, and
    // awaits every ticket.
    let producers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("orders/{task}");
                for version in 0..EVENTS_PER_TASK {
                    let expected = match version {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(v - 1),
                    };
                    let ticket = store.append(&stream, expected, [Event::new("OrderPlaced", format!("{version}"))])?;
                    ticket.await?;
                }
                Ok::<_, evstore::Error>(())
            })
        })
        .collect();
    for producer in producers {
        producer.await??;
    }
    let (seen, live) = follower.await??;
    println!("{TASKS} tasks appended {} events; the follower saw {seen} ({live} live)", store.durable_position());
    println!("orders/3 is at version {:?}", store.stream_version("orders/3"));
    store.close()?;
    Ok(())
}
