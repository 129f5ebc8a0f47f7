//! The README's usage example: append, wait until durable, read back.
//! Run with `cargo run --release -p evstore --example quickstart`.

use evstore::{Event, ExpectedVersion, Options, Store};

fn main() -> Result<(), evstore::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "quickstart-data".to_string());
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
    store.close()
}
