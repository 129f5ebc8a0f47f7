use evstore::{Event, ExpectedVersion, Options, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let streams: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(10000);
    let producers: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(2);
    let sync = args.get(3).cloned().unwrap_or("dsync".into());
    let dir = "/work/main/target/scratch-data";
    let _ = std::fs::remove_dir_all(dir);
    let mut o = Options::default();
    o.sync = match sync.as_str() {
        "fdatasync" => evstore::SyncMode::Fdatasync,
        "none" => evstore::SyncMode::None,
        _ => evstore::SyncMode::Dsync,
    };
    if let Some(d) = args.get(4) {
        o.groups_in_flight_max = d.parse().unwrap();
    }
    if let Some(d) = args.get(5) {
        o.busy_group_bytes_min = d.parse::<usize>().unwrap() << 10;
    }
    let store = Store::open(dir, o).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = std::time::Instant::now();
    let hs: Vec<_> = (0..producers)
        .map(|_| {
            let s = store.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut tickets = Vec::with_capacity(1000);
                let mut ta = std::time::Duration::ZERO;
                let mut tw = ta;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= streams {
                        break;
                    }
                    let name = format!("users/{i}");
                    let a0 = std::time::Instant::now();
                    for _ in 0..1000 {
                        tickets.push(
                            s.append(
                                &name,
                                ExpectedVersion::Any,
                                [Event::new("ItemCreated", br#"{"Type":"ItemCreated","ItemId":"1324"}"#.to_vec())],
                            )
                            .unwrap(),
                        );
                    }
                    let a1 = std::time::Instant::now();
                    ta += a1 - a0;
                    for t in tickets.drain(..) {
                        t.wait().unwrap();
                    }
                    tw += a1.elapsed();
                }
                println!("append {:?} wait {:?}", ta, tw);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let st = store.stats();
    println!(
        "{sync}: {} events in {:.3}s = {:.0} ev/s; groups {} syncs {} avg group {:.0} ev; disk/record {:.4}; segs {}",
        st.events,
        secs,
        st.events as f64 / secs,
        st.groups,
        st.syncs,
        st.events as f64 / st.groups as f64,
        st.disk_bytes as f64 / st.record_bytes as f64,
        st.segments
    );
    store.close().unwrap();
}
