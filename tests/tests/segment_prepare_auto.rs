//! `SegmentPrepare::Auto` (the default): the next segment is zeroed while the log writes small
//! groups, and only fallocated once its groups are large (zeroing it would then write every
//! byte twice). Measured by what the process wrote (`/proc/self/io`), which counts the
//! preparer's zeros.

use evstore::{Backend, Event, ExpectedVersion, Options, SegmentPrepare, Store};
use evstore_tests::{process_written_bytes, temp_dir, watchdog};

const SEGMENT_BYTES: u64 = 16 << 20;

fn options() -> Options {
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.segment_prepare = SegmentPrepare::Auto;
    options.grow_segments = false;
    options.segment_bytes = SEGMENT_BYTES;
    options.group_bytes_max = 2 << 20;
    options
}

/// Appends `runs` runs of `per_run` events of `size` bytes, waiting after each run (one group
/// each), and closes; returns the bytes the process wrote meanwhile and the log bytes appended.
fn write(events_size: usize, per_run: usize, runs: usize) -> (u64, u64) {
    let dir = temp_dir("segment-prepare-auto");
    let store = Store::open(dir.path(), options()).expect("open");
    let before = process_written_bytes();
    for run in 0..runs {
        let tickets: Vec<_> = (0..per_run)
            .map(|_| {
                store
                    .append(&format!("s{run}"), ExpectedVersion::Any, [Event::new("E", vec![7u8; events_size])])
                    .expect("append")
            })
            .collect();
        for ticket in tickets {
            ticket.wait().expect("durable");
        }
    }
    let appended = store.stats().disk_bytes;
    // Closing joins the preparer: the next segment (asked for once a quarter of this one was
    // written) is prepared by then.
    store.close().expect("close");
    (process_written_bytes() - before, appended)
}

#[test]
fn large_groups_get_a_fallocated_next_segment_small_ones_a_zeroed_one() {
    let _watchdog = watchdog("large_groups_get_a_fallocated_next_segment_small_ones_a_zeroed_one", 120);
    // Groups of about 1 MiB (runs of 2 events of 512 KiB), 6 MiB in all: past a quarter of the
    // segment, so the next one is asked for, and fallocated: nothing like its 16 MiB is written.
    let (wrote, appended) = write(512 << 10, 2, 6);
    assert!(appended >= 6 << 20, "{appended}");
    assert!(
        wrote < appended + (SEGMENT_BYTES / 2),
        "large groups: the process wrote {wrote} bytes for {appended} of log: the next segment was zeroed"
    );
    // Groups of about 100 KiB (runs of 100 events of 1 KiB), 6 MiB in all: the next segment is
    // zeroed, so its 16 MiB are written too.
    let (wrote, appended) = write(1 << 10, 100, 60);
    assert!(appended >= 6 << 20, "{appended}");
    assert!(
        wrote >= appended + SEGMENT_BYTES,
        "small groups: the process wrote {wrote} bytes for {appended} of log: the next segment was not zeroed"
    );
}
