//! `segment::list_segments` takes any 20-character stem that `u64::from_str` accepts as a segment
//! number, and that parser accepts a leading `+`: a stray `+0000000000000000001.evs` (a name
//! evstore never writes) is taken for a second segment 1. `open` then reports
//! "segment file missing, though segment 1 follows" for segment 2, which is there; and
//! `Store::repair` moves segment 2 and every later one aside (acknowledged events that were
//! intact) and still fails, because the stray file is still in the way: the store does not open
//! after the repair either.

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{open, read_all, segment_path, small_options, temp_dir, used_segments, watchdog};

fn options() -> Options {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 128 << 10;
    options
}

#[test]
fn a_file_named_with_a_plus_sign_is_not_a_segment() {
    let _watchdog = watchdog("a_file_named_with_a_plus_sign_is_not_a_segment", 60);
    let dir = temp_dir("plus-named");
    let store = open(dir.path(), options()).expect("the portable backend opens");
    for i in 0..45u32 {
        let events = (0..2).map(|k| Event::new("Filled", vec![(i * 2 + k) as u8; 3000]));
        store.append(&format!("r-{}", i % 4), ExpectedVersion::Any, events).expect("append").wait().expect("durable");
    }
    let before = read_all(&store);
    store.close().expect("close");
    assert!(used_segments(dir.path()).len() >= 3);
    std::fs::copy(segment_path(dir.path(), 1), dir.path().join("+0000000000000000001.evs")).expect("stray copy");

    let opened = Store::open(dir.path(), options());
    if let Ok(store) = opened {
        assert_eq!(read_all(&store), before, "every event");
        store.close().expect("close");
        return;
    }
    let refusal = opened.map(drop).expect_err("refused");
    let repair = Store::repair(dir.path(), options());
    let after = Store::open(dir.path(), options()).map(|store| read_all(&store).len());
    panic!(
        "a stray file named +0000000000000000001.evs: open said {refusal}; repair said {repair:?}; then open gave \
         {after:?} (of {} events)",
        before.len()
    );
}
