//! Small stores cost kilobytes... well, megabytes: segments grow from one largest group up to
//! `segment_bytes`, and the next segment is prepared only once the active one is a quarter full.
//! A fresh store with a handful of events takes at most 8 MiB on disk, and opening it, appending
//! and closing writes at most 8 MiB (measured by the kernel: /proc/self/io). One test function
//! per file section below runs alone in this binary, so the process's I/O counters are its own.

use std::path::Path;

use evstore::{Event, ExpectedVersion, Options, Store};
use evstore_tests::{process_written_bytes, read_all, temp_dir, used_segments};

const EIGHT_MIB: u64 = 8 << 20;

/// Bytes the directory's files take on disk (allocated blocks, not lengths).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("list the store")
        .map(|entry| entry.expect("entry").metadata().expect("metadata"))
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.blocks() * 512)
        .sum()
}

fn append_handful(store: &Store) {
    for i in 0..6 {
        store
            .append("users/42", ExpectedVersion::Any, [Event::new("ItemCreated", format!("{{\"i\":{i}}}"))])
            .expect("append")
            .wait()
            .expect("durable");
    }
}

#[test]
fn small_stores_take_and_write_megabytes_and_big_logs_grow_to_full_segments() {
    // A fresh store with a handful of events, default options.
    let dir = temp_dir("growth-small");
    let path = dir.path().join("store");
    let before = process_written_bytes();
    let store = Store::open(&path, Options::default()).expect("open");
    append_handful(&store);
    store.close().expect("close");
    let wrote = process_written_bytes() - before;
    let on_disk = disk_bytes(&path);
    println!("fresh store: {on_disk} bytes on disk, {wrote} bytes written");
    assert!(on_disk <= EIGHT_MIB, "a store of 6 events takes {on_disk} bytes on disk");
    assert!(wrote <= EIGHT_MIB, "open, 6 appends and close wrote {wrote} bytes");

    // Reopen, one append, close: no new segment, nothing near a segment's size written.
    let before = process_written_bytes();
    let store = Store::open(&path, Options::default()).expect("reopen");
    store.append("users/42", ExpectedVersion::Exact(5), [Event::new("ItemRenamed", "{}")]).unwrap().wait().unwrap();
    assert_eq!(read_all(&store).len(), 7);
    store.close().expect("close");
    let wrote = process_written_bytes() - before;
    assert!(wrote <= EIGHT_MIB, "reopen, one append and close wrote {wrote} bytes");
    assert!(disk_bytes(&path) <= EIGHT_MIB, "still small on disk");

    // A bigger log: segments double from one largest group (64 KiB + 8 KiB) to 1 MiB.
    let dir = temp_dir("growth-big");
    let options = Options::default().segment_bytes(1 << 20).group_bytes_max(64 << 10);
    let store = Store::open(dir.path(), options.clone()).expect("open");
    for i in 0..400u32 {
        let data = vec![(i % 251) as u8; 12_000];
        store.append(&format!("s-{}", i % 5), ExpectedVersion::Any, [Event::new("Big", data)]).unwrap().wait().unwrap();
    }
    let log = read_all(&store);
    store.close().expect("close");
    let sizes: Vec<u64> =
        used_segments(dir.path()).iter().map(|(_, path)| std::fs::metadata(path).unwrap().len()).collect();
    let smallest = (64 << 10) + 8192;
    assert!(sizes.len() >= 7, "about 5 MiB in segments of 72 KiB doubling to 1 MiB: {sizes:?}");
    assert_eq!(&sizes[..4], &[smallest, 2 * smallest, 4 * smallest, 8 * smallest], "{sizes:?}");
    assert!(sizes[5..].iter().all(|&size| size == 1 << 20), "full-size segments from the sixth on: {sizes:?}");
    // And every event reads back after a reopen.
    let store = Store::open(dir.path(), options).expect("reopen");
    assert_eq!(read_all(&store), log);
    store.close().expect("close");
}
