//! `Store::repair` promises to save every file it changes or removes, as it was, before changing
//! it. With two damages, one of them an extended segment, it runs two passes: the first gives the
//! extended segment back its header's size (saving a copy first), the second cuts at the next
//! damage. When that second cut also lands in the extended segment (here: the segment after it
//! is missing, so the cut drops the extended segment's "continued" marker), the second pass saves
//! the segment again under the same name in the same `damaged-*` directory, and overwrites the
//! first copy with the already resized file: the bytes the segment had past its header's size
//! are gone from the saved copy, and from everywhere.

use std::path::Path;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{check_log_shape, open, read_all, segment_path, small_options, temp_dir, used_segments, watchdog};

fn options() -> Options {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 128 << 10;
    options
}

fn fill(dir: &Path) {
    let store = open(dir, options()).expect("the portable backend opens");
    for i in 0..80u32 {
        let events = (0..2).map(|k| Event::new("Filled", vec![(i * 2 + k) as u8; 3000]));
        store.append(&format!("r-{}", i % 4), ExpectedVersion::Any, events).expect("append").wait().expect("durable");
    }
    store.close().expect("close");
    assert!(used_segments(dir).len() >= 5, "enough segments");
}

#[test]
fn repair_saves_an_extended_segment_as_it_was_when_a_later_cut_lands_in_it_too() {
    let _watchdog = watchdog("repair_saves_an_extended_segment_as_it_was_when_a_later_cut_lands_in_it_too", 60);
    let dir = temp_dir("review2-resized-copy");
    fill(dir.path());

    // Segment 1 grows by a block of zeros (as in review_repair_of_an_extended_segment.rs).
    let extended = segment_path(dir.path(), 1);
    let mut original = std::fs::read(&extended).expect("read segment 1");
    original.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&extended, &original).expect("extend segment 1");
    // And segment 2, after it, is lost, while segment 3 follows.
    std::fs::remove_file(segment_path(dir.path(), 2)).expect("remove segment 2");

    let report = Store::repair(dir.path(), options()).expect("repair").expect("damage found");
    let saved = std::fs::read(report.saved_to.join(extended.file_name().expect("name"))).expect("saved copy");
    let store = Store::open(dir.path(), options()).expect("open after one repair");
    check_log_shape(&store);
    assert!(!read_all(&store).is_empty());
    store.close().expect("close");

    assert_eq!(
        saved.len(),
        original.len(),
        "the copy of segment 1 in {} is not the file as it was before repair ({report:?})",
        report.saved_to.display()
    );
    assert!(saved == original, "the saved copy of segment 1 differs from the original");
}
