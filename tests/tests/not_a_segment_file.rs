//! Something that is not a regular file under a segment's name (a FIFO, a directory) must be
//! reported as damage by `open`, never hang it (opening a FIFO blocks until a writer comes) or
//! fail it with an error `repair` cannot get past; `repair` moves it aside and the log opens.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use evstore::{Backend, Error, Event, ExpectedVersion, Store};
use evstore_tests::{read_all, small_options, temp_dir, watchdog};

#[test]
fn a_fifo_or_a_directory_named_like_a_segment_is_damage_not_a_hang() {
    let _watchdog = watchdog("a_fifo_or_a_directory_named_like_a_segment_is_damage_not_a_hang", 30);
    for fifo in [true, false] {
        let dir = temp_dir("not-a-file");
        let options = small_options(Backend::Portable);
        let store = Store::open(dir.path(), options.clone()).expect("open");
        store.append("s", ExpectedVersion::Any, [Event::new("E", b"x".to_vec())]).expect("append").wait().expect("ok");
        let before = read_all(&store);
        store.close().expect("close");
        let intruder = dir.path().join(format!("{:020}.evs", 7));
        if fifo {
            let path = CString::new(intruder.as_os_str().as_bytes()).expect("path");
            // SAFETY: mkfifo with a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
        } else {
            std::fs::create_dir(&intruder).expect("mkdir");
        }
        match Store::open(dir.path(), options.clone()) {
            Err(Error::Corrupted { segment: 7, offset: 0, .. }) => {}
            other => panic!("fifo {fifo}: expected Corrupted naming segment 7, got {other:?}"),
        }
        let report = Store::repair(dir.path(), options.clone()).expect("repair").expect("damage");
        assert_eq!(report.segment, 7);
        assert!(!intruder.exists(), "moved aside");
        let store = Store::open(dir.path(), options).expect("open after repair");
        assert_eq!(read_all(&store), before);
        store.close().expect("close");
    }
}
