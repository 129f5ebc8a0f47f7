//! `evstore-bench projection-costs`: seed 003's four projection strategies replayed on a real
//! store through `ProjectionRunner`, with the seed's storage cost model (see
//! projection_costs/seed.rs). Prints each strategy's view counts, final checkpoint and cost,
//! and fails if any differs from what the seed reports.

mod seed;

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use seed::{Outcome, Strategy, HISTORIC_BOOKMARKS, HISTORIC_VIEWS, LIVE_VIEWS};

#[derive(clap::Args)]
pub struct ProjectionCostsArgs {
    /// Parent directory of the data directories (one fresh store per strategy).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// One JSON object per strategy per line on stdout (`strategy`, `cost`, `checkpoint`,
    /// `view_counts`).
    #[arg(long)]
    json: bool,
    /// Keep the data directories.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &ProjectionCostsArgs) -> Result<(), String> {
    let mut outcomes = Vec::new();
    for strategy in Strategy::ALL {
        let system = format!("projection-{}", strategy.name().replace(' ', "-"));
        let data = super::DataDir::create(&args.dir, &system, args.keep)?;
        outcomes.push(seed::run(strategy, &data.path, seed::store_options())?);
    }
    if args.json {
        for outcome in &outcomes {
            println!("{}", to_json(outcome));
        }
    } else {
        print_table(&outcomes);
    }
    check_against_seed(&outcomes)
}

fn to_json(outcome: &Outcome) -> Value {
    let view_counts: Map<String, Value> =
        outcome.view_counts.iter().map(|(viewer, count)| (viewer.clone(), json!(count))).collect();
    json!({
        "strategy": outcome.strategy.name(),
        "cost": outcome.cost(),
        "checkpoint": outcome.checkpoint,
        "view_counts": view_counts,
    })
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "# evstore-bench projection-costs: seed 003's stream on a real store, each strategy through ProjectionRunner"
    );
    println!(
        "# {HISTORIC_VIEWS} views of viewer 1 and {HISTORIC_BOOKMARKS} bookmarks appended before subscribing (historic), \
         then {LIVE_VIEWS} views of viewer 2 appended one at a time once caught up (live)"
    );
    println!("# cost model: a single statement costs 1 unit, a batch 1 + 0.1 per statement");
    println!(
        "{:<30} {:>8} {:>10} {:>20} {:>17} {:>10}",
        "strategy", "cost", "checkpoint", "view counts", "historic/live", "seed cost"
    );
    for outcome in outcomes {
        let counts: Vec<String> =
            outcome.view_counts.iter().map(|(viewer, count)| format!("{viewer}: {count}")).collect();
        println!(
            "{:<30} {:>8.1} {:>10} {:>20} {:>17} {:>10.1}",
            outcome.strategy.name(),
            outcome.cost(),
            outcome.checkpoint,
            format!("{{{}}}", counts.join(", ")),
            format!("{}/{}", outcome.historic_events, outcome.live_events),
            outcome.strategy.seed_cost_tenths() as f64 / 10.0,
        );
    }
    println!("# historic/live: wanted events the projection was handed, by the flag the subscription gave them");
}

/// The bench replays an exact scenario: any difference from the seed's figures is a bug.
fn check_against_seed(outcomes: &[Outcome]) -> Result<(), String> {
    let total_events = HISTORIC_VIEWS + HISTORIC_BOOKMARKS + LIVE_VIEWS;
    for outcome in outcomes {
        let name = outcome.strategy.name();
        let counts: Vec<(&str, u64)> =
            outcome.view_counts.iter().map(|(viewer, count)| (viewer.as_str(), *count)).collect();
        if counts != [("1", HISTORIC_VIEWS), ("2", LIVE_VIEWS)] {
            return Err(format!("{name}: view counts {counts:?} differ from the seed's"));
        }
        if outcome.checkpoint != total_events {
            return Err(format!("{name}: checkpoint {} differs from the seed's {total_events}", outcome.checkpoint));
        }
        if outcome.cost_tenths != outcome.strategy.seed_cost_tenths() {
            return Err(format!(
                "{name}: cost {} differs from the seed's {}",
                outcome.cost(),
                outcome.strategy.seed_cost_tenths() as f64 / 10.0
            ));
        }
    }
    Ok(())
}
