//! Seed 003's cost table, through the real runner on a real store: four strategies over 3,500
//! historic views, 50 historic bookmarks and 100 live views cost exactly 7250, 7200, 508.5 and
//! 162 units, each ending with view counts {1: 3500, 2: 100} and checkpoint 3650.
//!
//! Without it, a runner that flushed a batch too many (say, at catch-up with only skipped events
//! buffered), wrote for skipped events, flushed live events in groups, or handed a live event as
//! historic would still produce the right counts, and only the bill would show it.
//!
//! The scenario is the bench's own code (bench/src/projection_costs/seed.rs), compiled in here
//! by path so the test and `evstore-bench projection-costs` can never drift apart.

#[path = "../../bench/src/projection_costs/seed.rs"]
#[allow(dead_code)]
mod seed;

use evstore_tests::temp_dir;
use seed::{Strategy, HISTORIC_BOOKMARKS, HISTORIC_VIEWS, LIVE_VIEWS};

#[test]
fn the_four_strategies_cost_what_the_seed_says() {
    let _watchdog = evstore_tests::watchdog("the_four_strategies_cost_what_the_seed_says", 120);
    let expected_costs = [
        (Strategy::FirstTry, 7250.0),
        (Strategy::LessCheckpointing, 7200.0),
        (Strategy::Batching, 508.5),
        (Strategy::BatchingWithTransformation, 162.0),
    ];
    for (strategy, cost) in expected_costs {
        let dir = temp_dir("projection-costs");
        let outcome = seed::run(strategy, dir.path(), seed::store_options())
            .unwrap_or_else(|e| panic!("{}: {e}", strategy.name()));
        println!(
            "{}: cost {}, checkpoint {}, {:?}",
            strategy.name(),
            outcome.cost(),
            outcome.checkpoint,
            outcome.view_counts
        );
        assert_eq!(outcome.cost(), cost, "{}", strategy.name());
        assert_eq!(outcome.cost_tenths, strategy.seed_cost_tenths(), "{}", strategy.name());
        let counts: Vec<(&str, u64)> =
            outcome.view_counts.iter().map(|(viewer, count)| (viewer.as_str(), *count)).collect();
        assert_eq!(counts, [("1", 3500), ("2", 100)], "{}", strategy.name());
        assert_eq!(outcome.checkpoint, 3650, "{}", strategy.name());
        // The live views were handed live, the history as history (seed::run also checks each
        // event's flag against its viewer).
        assert_eq!(outcome.live_events, LIVE_VIEWS, "{}", strategy.name());
        let historic =
            if strategy == Strategy::FirstTry { HISTORIC_VIEWS + HISTORIC_BOOKMARKS } else { HISTORIC_VIEWS };
        assert_eq!(outcome.historic_events, historic, "{}", strategy.name());
    }
}
