//! `linger` is documented as the bound on how long an append nobody waits on stays unwritten
//! ("in its lane and in the group together"). Since a lane is drained only when someone waits on
//! it, when its ring is half full, or once its appends have waited `linger` since the submitter
//! *first saw* them, the bound holds only from that first sight. And producers ring the doorbell
//! for an ordinary append only while the submitter is idle: while it lingers (on another lane's
//! appends, or on an open group) it does not look at the lanes until its deadline. An append made
//! then is first seen at that deadline, and written a whole linger later: up to two lingers after
//! it was made.
//!
//! Here, with `linger` = 1 s: handle A appends (the idle submitter is rung, sees it, and lingers
//! until A's deadline); half a linger later handle B appends, and nobody waits on either. B's
//! append stayed unwritten for about 1.5 s (first seen at A's deadline, drained one linger
//! later). Before the lanes were drained lazily, B's append went out with A's, at A's deadline
//! (0.5 s after it was made). The assertion allows a quarter of a linger beyond `linger` for the
//! write.

use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Options, Ticket};
use evstore_tests::{backends, open, temp_dir, watchdog};

const LINGER: Duration = Duration::from_secs(1);

fn options(backend: Backend) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = LINGER;
    options.segment_bytes = 8 << 20;
    options.grow_segments = false;
    options
}

/// How long each ticket took to be durable from when its append was made, polling `is_done()`
/// on all of them (never waiting: nobody waits).
fn unwritten_for(tickets: &[(&Ticket, Instant)]) -> Vec<Duration> {
    let mut done: Vec<Option<Duration>> = vec![None; tickets.len()];
    let started = Instant::now();
    while done.iter().any(Option::is_none) {
        assert!(started.elapsed() < Duration::from_secs(10), "an append nobody waits on was never written");
        for (at, (ticket, made)) in tickets.iter().enumerate() {
            if done[at].is_none() && ticket.is_done() {
                done[at] = Some(made.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done.into_iter().map(|d| d.expect("done")).collect()
}

#[test]
fn an_append_made_while_the_submitter_lingers_is_written_within_linger() {
    let _watchdog = watchdog("an_append_made_while_the_submitter_lingers_is_written_within_linger", 60);
    for backend in backends() {
        let dir = temp_dir("attack6-two-lingers");
        let Some(store) = open(dir.path(), options(backend)) else { continue };
        let (a, b) = (store.clone(), store.clone());
        // Both lanes exist and the submitter is idle.
        for handle in [&a, &b] {
            handle
                .append("warm", ExpectedVersion::Any, [Event::new("E", "")])
                .expect("append")
                .wait()
                .expect("durable");
        }
        std::thread::sleep(Duration::from_millis(50));
        let a_at = Instant::now();
        let a_ticket = a.append("a", ExpectedVersion::Any, [Event::new("E", "a")]).expect("append");
        std::thread::sleep(LINGER / 2);
        let b_at = Instant::now();
        let b_ticket = b.append("b", ExpectedVersion::Any, [Event::new("E", "b")]).expect("append");
        let unwritten = unwritten_for(&[(&a_ticket, a_at), (&b_ticket, b_at)]);
        let (a_unwritten, b_unwritten) = (unwritten[0], unwritten[1]);
        println!("{backend:?}: A unwritten for {a_unwritten:?}, B (made while lingering on A) for {b_unwritten:?}");
        a_ticket.wait().expect("a");
        b_ticket.wait().expect("b");
        assert!(
            b_unwritten < LINGER + LINGER / 4,
            "{backend:?}: an append nobody waits on, made while the submitter lingered on another \
             lane's, stayed unwritten for {b_unwritten:?} with linger {LINGER:?}"
        );
        drop((a, b));
        store.close().expect("close");
    }
}
