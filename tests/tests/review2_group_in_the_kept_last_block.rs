//! The writer keeps the last block of every segment free for its end marker, and recovery trusts
//! that: it does not check it. A last segment whose groups run to the very end of the file (a
//! group in the kept block: written by hand, by another tool, or by a writer from before the
//! block was kept) opens without complaint, with the write offset at the end of the segment. The
//! next clean close then writes its "closed" marker at that offset, past the size the segment's
//! header names, which grows the file by a block; and the next `open` refuses the store as
//! damaged ("truncated or extended"). A store that opened and closed cleanly must open again:
//! either `open` reports the full segment, or the writer puts no marker past the segment's end.

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{check_log_shape, groups_on_disk, open, read_all, segment_path, small_options, temp_dir, watchdog};

fn options() -> Options {
    small_options(Backend::Portable)
}

/// Rewrites segment 0's header to name `segment_bytes` (with a valid CRC) and cuts the file to it.
fn shrink_segment(dir: &Path, segment_bytes: u64) {
    let path = segment_path(dir, 0);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open segment 0");
    let mut header = [0u8; 56];
    file.read_exact_at(&mut header, 0).expect("read header");
    header[32..40].copy_from_slice(&segment_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&header[16..56]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&header, 0).expect("write header");
    file.set_len(segment_bytes).expect("cut");
    file.sync_all().expect("sync");
}

#[test]
fn a_store_whose_last_group_fills_the_kept_block_opens_again_after_a_clean_close() {
    let _watchdog = watchdog("a_store_whose_last_group_fills_the_kept_block_opens_again_after_a_clean_close", 60);
    let dir = temp_dir("review2-kept-block");
    let store = open(dir.path(), options()).expect("the portable backend opens");
    for i in 0..6u32 {
        let events = (0..2).map(|k| Event::new("Filled", vec![(i * 2 + k) as u8; 3000]));
        store.append("s", ExpectedVersion::Any, events).expect("append").wait().expect("durable");
    }
    let before = read_all(&store);
    store.close().expect("close");
    // Only segment 0 is used; drop the prepared next one so segment 0 stays the last.
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        if path != segment_path(dir.path(), 0) {
            std::fs::remove_file(&path).expect("remove unused segment");
        }
    }
    let groups = groups_on_disk(&segment_path(dir.path(), 0));
    let end = groups.last().expect("groups").end.div_ceil(4096) as u64 * 4096;
    assert!(end >= 3 * 4096);
    // The segment is now exactly as long as its groups: the last group sits in its last block.
    shrink_segment(dir.path(), end);

    let Ok(store) = Store::open(dir.path(), options()) else {
        return; // Reporting the full segment as damage at open would do.
    };
    assert_eq!(read_all(&store), before);
    store.close().expect("clean close");
    let len = std::fs::metadata(segment_path(dir.path(), 0)).expect("metadata").len();

    let reopened = Store::open(dir.path(), options());
    let store = match reopened {
        Ok(store) => store,
        Err(e) => panic!(
            "a store that opened and closed cleanly is refused at the next open: {e} (segment 0 is now {len} bytes, its header says {end})"
        ),
    };
    assert_eq!(read_all(&store), before);
    check_log_shape(&store);
    store.close().expect("close");
}
