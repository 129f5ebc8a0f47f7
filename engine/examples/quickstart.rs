//! The README's usage example: append, wait until durable, read back, follow the log.
//! Run with `cargo run --release -p evstore --example quickstart` (`RUST_LOG=debug` for more of
//! evstore's log lines). It works in a temporary directory and leaves nothing behind; pass a
//! directory to keep the store there instead.

use evstore::{Event, ExpectedVersion, Options, Store};

fn main() -> Result<(), evstore::Error> {
    // evstore logs through `tracing`: open, recovery, the io_uring fallback, close.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let temp = tempfile::tempdir().map_err(|e| evstore::Error::Io {
        context: "creating a temporary directory".into(),
        source: std::sync::Arc::new(e),
    })?;
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().join("store"));

    let store = Store::open(&dir, Options::default())?;
    let ticket =
        store.append("users/42", ExpectedVersion::Any, [Event::new("ItemCreated", br#"{"ItemId":"1324"}"#)])?;
    let appended = ticket.wait()?;
    println!(
        "durable at position {} as version {} ({:?} backend)",
        appended.position,
        appended.version,
        store.backend()
    );
    for event in store.read_stream("users/42", 0)? {
        let event = event?;
        println!(
            "{} {}@{} {} {}",
            event.position,
            event.stream,
            event.version,
            event.event_type,
            String::from_utf8_lossy(&event.data)
        );
    }
    println!("{} events in the whole log", store.read_all(0)?.count());
    if let Some(last) = store.last_event("users/42")? {
        println!("last event of users/42: version {}", last.version);
    }

    // Follow the log: history first (flagged historic), then live events.
    let mut subscription = store.subscribe_all(0)?;
    let first = subscription.next().expect("the store is open")?;
    println!("subscription: position {} historic={}", first.position(), first.historic());
    store.append("users/42", ExpectedVersion::Exact(appended.version), [Event::new("ItemRenamed", "{}")])?.wait()?;
    let live = subscription.next().expect("the store is open")?;
    println!("subscription: position {} {} historic={}", live.position(), live.event_type(), live.historic());
    drop(subscription);
    store.close()
}
