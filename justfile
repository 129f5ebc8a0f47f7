# Convenience recipes (`pip install rust-just` or `cargo install just`). CI never needs them:
# .ci/run is plain bash.

# Run every test (the README's test command).
test:
    cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Everything CI runs.
ci:
    bash .ci/run

# The seed workload (10,000 streams x 1,000 events) with the default producers, beside the
# naive port and the raw disk, measured in the same run.
bench-seed *ARGS:
    cargo run --release -p evstore-bench -- seed {{ARGS}}

# The seed workload with 8 producers.
bench-seed-8:
    cargo run --release -p evstore-bench -- seed --producers 8

# Both durable sync modes in one sitting (compare ratios to the raw disk, not absolute numbers).
bench-sync-modes:
    cargo run --release -p evstore-bench -- seed --sync dsync
    cargo run --release -p evstore-bench -- seed --sync fdatasync

# Pipeline depth sweep: groups in flight x early-submit threshold.
bench-pipeline:
    for depth in 2 4 8; do for busy in 16 64 256; do \
        cargo run --release -q -p evstore-bench -- seed --json --systems evstore --in-flight $depth --busy-group-kib $busy; \
    done; done

# Space and latency at low load: one small event per group.
bench-lowload:
    cargo run --release -p evstore-bench -- lowload

# Segment preparation: pre-zeroed vs fallocated.
bench-prepare:
    cargo run --release -p evstore-bench -- seed --segment-prepare zeroed
    cargo run --release -p evstore-bench -- seed --segment-prepare fallocated
