//! The preparer retries a failed segment by itself, with the preparation it was last asked for.
//! Under `SegmentPrepare::Auto` with large groups that is "fallocated": a disk that is full
//! while the next segment is made must fail only the appends that needed it (`DiskFull`, no
//! poisoning), and once space is back the store must go on, with every acknowledged event
//! readable before and after a reopen. Without this, a failure on the fallocated path (the new
//! one) could poison the store, hang the append that waits for the segment, or leave a segment
//! behind that the next open takes for damage.

use evstore::testing::FaultPlan;
use evstore::{Error, Event, ExpectedVersion, Options, SegmentPrepare, Store, Ticket};
use evstore_tests::{append_until_error, backends, check_log_shape, open, read_stream, temp_dir, watchdog};

mod attack5_fiemap;
use attack5_fiemap::fallocated_segments;

fn options(backend: evstore::Backend, grow: bool) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.segment_prepare = SegmentPrepare::Auto;
    options.grow_segments = grow;
    options.segment_bytes = 4 << 20;
    options.group_bytes_max = 1 << 20;
    options
}

fn big(i: usize) -> Event<'static> {
    let mut bytes = vec![(i % 251) as u8; 512 << 10];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Event::new("Big", bytes)
}

#[test]
fn a_full_disk_while_auto_fallocates_fails_appends_without_poisoning() {
    let _watchdog = watchdog("a_full_disk_while_auto_fallocates_fails_appends_without_poisoning", 120);
    for backend in backends() {
        for grow in [false, true] {
            let what = format!("{backend:?}, grow {grow}");
            let dir = temp_dir("attack5-auto-enospc");
            let plan = FaultPlan::new();
            let mut faulty = options(backend, grow);
            faulty.faults = Some(plan.clone());
            let Some(store) = open(dir.path(), faulty) else { continue };
            let mut acked = Vec::new();
            // Groups of 512 KiB: past the first quarter of a segment, Auto asks for a fallocated
            // next one; a few segments' worth makes sure some were.
            for i in 0..20 {
                store.append("big", ExpectedVersion::Any, [big(i)]).expect("append").wait().expect("before the fault");
                acked.push(i);
            }
            plan.fail_segment_creation(libc::ENOSPC);
            match append_until_error(&store, 20..60, big, &mut acked) {
                Some(Error::DiskFull { .. }) => {}
                Some(other) => panic!("{what}: a full disk while fallocating surfaced as {other:?}"),
                None => panic!("{what}: 40 appends of 512 KiB into 4 MiB segments never needed a new segment"),
            }
            match store.append("big", ExpectedVersion::Any, [big(500)]).and_then(Ticket::wait) {
                Err(Error::DiskFull { .. }) => {}
                other => panic!("{what}: second append on a full disk: {other:?}"),
            }
            plan.clear();
            for i in 1000..1030 {
                store
                    .append("big", ExpectedVersion::Any, [big(i)])
                    .expect("append")
                    .wait()
                    .unwrap_or_else(|e| panic!("{what}: append {i} after space came back: {e}"));
                acked.push(i);
            }
            let expected: Vec<Vec<u8>> = acked.iter().map(|&i| big(i).data.into_owned()).collect();
            let data = |store: &Store| read_stream(store, "big").into_iter().map(|e| e.data).collect::<Vec<_>>();
            assert!(data(&store) == expected, "{what}: exactly the acknowledged appends, in order");
            store.close().expect("close: a full disk does not poison");
            assert!(fallocated_segments(dir.path()) >= 1, "{what}: Auto never fallocated a segment for 512 KiB groups");

            let store = Store::open(dir.path(), options(backend, grow)).expect("reopen");
            assert!(data(&store) == expected, "{what}: acknowledged appends survive the reopen");
            check_log_shape(&store);
            store.close().expect("close");
        }
    }
}
