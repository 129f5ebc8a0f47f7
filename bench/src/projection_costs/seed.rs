//! The scenario of seed 003 ("Fast projections") on a real store: the stream, the storage with
//! its cost model, and the four strategies, each run through [`ProjectionRunner`].
//!
//! The stream: 3,500 `WatchedVideo` events of viewer 1 and 50 `BookmarkedVideo` events are
//! appended and durable before the runner subscribes (historic); once it has caught up, 100
//! `WatchedVideo` events of viewer 2 are appended one at a time, each waited for (live). Positions
//! count from 0, so the checkpoint after the last event is 3,650, as the seed's 1-based ids give.
//!
//! The storage executes a single statement (1 unit) or a batch (1 unit + 0.1 per statement);
//! costs are counted in tenths of a unit, so they are exact.
//!
//! This file is also compiled into tests/tests/projection_costs.rs (by path), so it uses only
//! evstore and std.

use std::collections::BTreeMap;
use std::path::Path;

use evstore::{Envelope, Event, ExpectedVersion, FlushPolicy, Options, Projection, ProjectionRunner, RunEnd, Store};

/// Views of viewer 1, appended before subscribing.
pub const HISTORIC_VIEWS: u64 = 3_500;
/// Bookmarks of viewer 1, appended before subscribing (after the views).
pub const HISTORIC_BOOKMARKS: u64 = 50;
/// Views of viewer 2, appended one at a time once the runner has caught up.
pub const LIVE_VIEWS: u64 = 100;

const WATCHED: &str = "WatchedVideo";
const BOOKMARKED: &str = "BookmarkedVideo";
/// Events are appended to one stream per viewer; the viewer id is the stream's suffix.
const VIEWER_STREAM_PREFIX: &str = "viewer-";
const HISTORIC_VIEWER: &str = "1";
const LIVE_VIEWER: &str = "2";
/// Historic events are appended in appends of this many events.
const HISTORIC_APPEND_EVENTS: u64 = 500;

/// The seed's four projections, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A statement per view, a checkpoint statement after every event (bookmarks included).
    FirstTry,
    /// A statement per view and a checkpoint statement after it; bookmarks are skipped.
    LessCheckpointing,
    /// Views buffered: flushed every 100 while historic, every one while live, as one batch of
    /// one increment per view plus the checkpoint.
    Batching,
    /// As `Batching`, but the batch is aggregated first: one increment per viewer.
    BatchingWithTransformation,
}

impl Strategy {
    pub const ALL: [Strategy; 4] =
        [Strategy::FirstTry, Strategy::LessCheckpointing, Strategy::Batching, Strategy::BatchingWithTransformation];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::FirstTry => "first try",
            Strategy::LessCheckpointing => "less checkpointing",
            Strategy::Batching => "batching",
            Strategy::BatchingWithTransformation => "batching with transformation",
        }
    }

    /// What the seed reports for this strategy, in tenths of a unit.
    pub fn seed_cost_tenths(self) -> u64 {
        match self {
            Strategy::FirstTry => 72_500,
            Strategy::LessCheckpointing => 72_000,
            Strategy::Batching => 5_085,
            Strategy::BatchingWithTransformation => 1_620,
        }
    }

    /// The first two handle one event at a time; the batching ones use the default policy,
    /// which is the seed's (100 while historic, 1 while live).
    fn policy(self) -> FlushPolicy {
        let mut policy = FlushPolicy::default();
        if matches!(self, Strategy::FirstTry | Strategy::LessCheckpointing) {
            policy.historic_batch_events = 1;
            policy.live_batch_events = 1;
        }
        policy
    }
}

/// The seed's statements.
#[derive(Debug)]
enum Statement {
    Checkpoint(u64),
    IncrementViewCount(String, u64),
}

/// The seed's storage: state, and what executing statements cost.
#[derive(Debug, Default)]
struct CostModelStorage {
    view_counts: BTreeMap<String, u64>,
    checkpoint: u64,
    cost_tenths: u64,
}

impl CostModelStorage {
    fn execute_statement(&mut self, statement: Statement) {
        self.cost_tenths += 10;
        self.apply(statement);
    }

    fn execute_batch(&mut self, batch: Vec<Statement>) {
        self.cost_tenths += 10 + batch.len() as u64;
        for statement in batch {
            self.apply(statement);
        }
    }

    fn apply(&mut self, statement: Statement) {
        match statement {
            Statement::Checkpoint(position) => self.checkpoint = position,
            Statement::IncrementViewCount(viewer, count) => *self.view_counts.entry(viewer).or_default() += count,
        }
    }
}

/// One strategy as a [`Projection`] over the cost model.
struct SeedProjection {
    strategy: Strategy,
    storage: CostModelStorage,
    /// Wanted events flushed, by how the runner saw them.
    historic_events: u64,
    live_events: u64,
    /// Events flushed with the wrong flag: viewer 1's are history, viewer 2's are live.
    misflagged: Vec<u64>,
}

fn viewer(envelope: &Envelope) -> &str {
    envelope.stream().strip_prefix(VIEWER_STREAM_PREFIX).expect("every stream is a viewer's")
}

impl Projection for SeedProjection {
    type Error = std::convert::Infallible;

    fn checkpoint(&mut self) -> Result<u64, Self::Error> {
        Ok(self.storage.checkpoint)
    }

    fn wants(&self, envelope: &Envelope) -> bool {
        // The first try looks at every event, to checkpoint after each.
        self.strategy == Strategy::FirstTry || envelope.event_type() == WATCHED
    }

    fn flush(&mut self, batch: &[Envelope], checkpoint: u64) -> Result<(), Self::Error> {
        for envelope in batch {
            if envelope.historic() {
                self.historic_events += 1;
            } else {
                self.live_events += 1;
            }
            if envelope.historic() != (viewer(envelope) == HISTORIC_VIEWER) {
                self.misflagged.push(envelope.position());
            }
        }
        let storage = &mut self.storage;
        match self.strategy {
            Strategy::FirstTry | Strategy::LessCheckpointing => {
                for envelope in batch.iter().filter(|envelope| envelope.event_type() == WATCHED) {
                    storage.execute_statement(Statement::IncrementViewCount(viewer(envelope).to_string(), 1));
                }
                storage.execute_statement(Statement::Checkpoint(checkpoint));
            }
            Strategy::Batching => {
                let mut statements: Vec<Statement> = batch
                    .iter()
                    .map(|envelope| Statement::IncrementViewCount(viewer(envelope).to_string(), 1))
                    .collect();
                statements.push(Statement::Checkpoint(checkpoint));
                execute(storage, statements);
            }
            Strategy::BatchingWithTransformation => {
                let mut per_viewer: BTreeMap<&str, u64> = BTreeMap::new();
                for envelope in batch {
                    *per_viewer.entry(viewer(envelope)).or_default() += 1;
                }
                let mut statements: Vec<Statement> = per_viewer
                    .into_iter()
                    .map(|(viewer, count)| Statement::IncrementViewCount(viewer.to_string(), count))
                    .collect();
                statements.push(Statement::Checkpoint(checkpoint));
                execute(storage, statements);
            }
        }
        Ok(())
    }
}

/// A batch, or a single statement when only the checkpoint moves (a checkpoint-only flush:
/// never in this scenario, whose 50 skipped bookmarks stay below the policy's threshold).
fn execute(storage: &mut CostModelStorage, mut statements: Vec<Statement>) {
    if statements.len() == 1 {
        storage.execute_statement(statements.pop().expect("one statement"));
    } else {
        storage.execute_batch(statements);
    }
}

/// What one strategy ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub strategy: Strategy,
    /// Viewer id -> views.
    pub view_counts: BTreeMap<String, u64>,
    pub checkpoint: u64,
    pub cost_tenths: u64,
    /// Wanted events flushed while catching up, and live.
    pub historic_events: u64,
    pub live_events: u64,
}

impl Outcome {
    /// The cost in the seed's units.
    pub fn cost(&self) -> f64 {
        self.cost_tenths as f64 / 10.0
    }
}

/// Options for the scenario's store: small segments (the scenario writes a few hundred KiB).
pub fn store_options() -> Options {
    let mut options = Options::default();
    options.segment_bytes = 16 << 20;
    options
}

/// Runs `strategy` over the seed's stream in a fresh store in `dir` (which must be empty), through
/// a real subscription and the runner. Fails if the runner saw a live event as historic or the
/// reverse.
pub fn run(strategy: Strategy, dir: &Path, options: Options) -> Result<Outcome, String> {
    let store = Store::open(dir, options).map_err(|e| format!("open {}: {e}", dir.display()))?;
    if store.durable_position() != 0 {
        return Err(format!("{} holds a store already: the scenario needs an empty one", dir.display()));
    }
    let historic_stream = format!("{VIEWER_STREAM_PREFIX}{HISTORIC_VIEWER}");
    let video = br#"{"VideoId":"1"}"#;
    let mut appended = 0;
    while appended < HISTORIC_VIEWS {
        let count = HISTORIC_APPEND_EVENTS.min(HISTORIC_VIEWS - appended);
        let events = (0..count).map(|_| Event::new(WATCHED, video));
        store
            .append(&historic_stream, ExpectedVersion::Any, events)
            .and_then(|t| t.wait())
            .map_err(|e| e.to_string())?;
        appended += count;
    }
    let bookmarks = (0..HISTORIC_BOOKMARKS).map(|_| Event::new(BOOKMARKED, video));
    store
        .append(&historic_stream, ExpectedVersion::Any, bookmarks)
        .and_then(|t| t.wait())
        .map_err(|e| e.to_string())?;

    let projection = SeedProjection {
        strategy,
        storage: CostModelStorage::default(),
        historic_events: 0,
        live_events: 0,
        misflagged: Vec::new(),
    };
    let mut runner = ProjectionRunner::new(&store, projection).with_policy(strategy.policy());
    match runner.run_until_caught_up().map_err(|e| e.to_string())? {
        RunEnd::CaughtUp => {}
        other => return Err(format!("catching up ended with {other:?}")),
    }

    // Live: one view at a time, each waited for, while the runner follows; then close the store,
    // which ends the run once the runner has handled everything durable.
    let appender = std::thread::spawn(move || -> Result<(), String> {
        let live_stream = format!("{VIEWER_STREAM_PREFIX}{LIVE_VIEWER}");
        for _ in 0..LIVE_VIEWS {
            store
                .append(&live_stream, ExpectedVersion::Any, [Event::new(WATCHED, video)])
                .and_then(|t| t.wait())
                .map_err(|e| e.to_string())?;
        }
        store.close().map_err(|e| e.to_string())
    });
    let end = runner.run().map_err(|e| e.to_string());
    appender.join().map_err(|_| "the appender panicked".to_string())??;
    match end? {
        RunEnd::StoreClosed => {}
        other => return Err(format!("the live run ended with {other:?}")),
    }

    let projection = runner.into_projection();
    if !projection.misflagged.is_empty() {
        return Err(format!(
            "{}: events at positions {:?} were handed with the wrong historic flag",
            strategy.name(),
            projection.misflagged
        ));
    }
    Ok(Outcome {
        strategy,
        view_counts: projection.storage.view_counts,
        checkpoint: projection.storage.checkpoint,
        cost_tenths: projection.storage.cost_tenths,
        historic_events: projection.historic_events,
        live_events: projection.live_events,
    })
}
