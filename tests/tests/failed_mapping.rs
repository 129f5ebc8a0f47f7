//! A segment that cannot be mapped (RLIMIT_AS, ENOMEM, `vm.max_map_count` reached) fails reads
//! with a typed error, and never the write path. An earlier version mapped each new segment at
//! rollover: a failed mapping there left the new segment marked used and empty, and each later
//! append that needed room burned another one (5 failed appends, 5 extra segments). Segments are
//! now mapped by the readers that need them, so appends go on, no segment is wasted, and reads
//! work again once mapping does.

use evstore::testing::FaultPlan;
use evstore::{Error, Event, ExpectedVersion};
use evstore_tests::{backends, check_log_shape, open, small_options, temp_dir, used_segments, watchdog};

#[test]
fn a_failed_mapping_fails_reads_not_appends_and_wastes_no_segment() {
    let _watchdog = watchdog("a_failed_mapping_fails_reads_not_appends_and_wastes_no_segment", 60);
    for backend in backends() {
        let dir = temp_dir("failed-mapping");
        let plan = FaultPlan::new();
        let mut options = small_options(backend);
        options.segment_bytes = 128 << 10;
        options.faults = Some(plan.clone());
        let Some(store) = open(dir.path(), options) else { continue };
        plan.fail_mapping(libc::ENOMEM);
        // 24 appends of 20 KB: five fit in a 128 KiB segment, so about five rollovers.
        for i in 0..24u8 {
            let expected = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(u64::from(i) - 1) };
            store
                .append("m", expected, [Event::new("Big", vec![i; 20_000])])
                .map(|_| ())
                .unwrap_or_else(|e| panic!("{backend:?}: append {i} while mapping fails: {e}"));
        }
        let last = store
            .append("m", ExpectedVersion::Exact(23), [Event::new("Big", vec![24; 20_000])])
            .expect("append")
            .wait()
            .unwrap_or_else(|e| panic!("{backend:?}: appends do not depend on mappings: {e}"));
        assert_eq!(last.version, 24);
        // One segment per five appends, and not one more: no rollover was wasted.
        assert_eq!(used_segments(dir.path()).len(), 5, "{backend:?}: segments used");

        match store.read_all(0).expect("read_all").next() {
            Some(Err(Error::Io { .. })) => {}
            other => panic!("{backend:?}: a read that cannot map its segment fails with Io, got {other:?}"),
        }
        match store.read_stream("m", 0).expect("read_stream").next() {
            Some(Err(Error::Io { .. })) => {}
            other => panic!("{backend:?}: a stream read that cannot map fails with Io, got {other:?}"),
        }
        assert_eq!(store.stream_version("m"), Some(24), "{backend:?}: the version needs no mapping");

        plan.clear();
        assert_eq!(check_log_shape(&store), 25, "{backend:?}: reads work again once mapping does");
        store.close().expect("close");
    }
}
