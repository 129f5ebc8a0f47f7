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

# The seed workload beside the naive port, SQLite, okaywal and the raw disk, measured in the same run.
bench-seed *ARGS:
    cargo run --release -p evstore-bench -- seed {{ARGS}}

# The seed workload with 8 producers.
bench-seed-8:
    cargo run --release -p evstore-bench -- seed --producers 8

# The seed workload with 1 producer (SQLite and okaywal left out to keep it short).
bench-seed-1:
    cargo run --release -p evstore-bench -- seed --producers 1 --systems evstore,naive,raw

# Both durable sync modes in one sitting (compare ratios to the raw disk, not absolute numbers).
bench-sync-modes:
    cargo run --release -p evstore-bench -- seed --sync dsync --systems evstore,naive,raw
    cargo run --release -p evstore-bench -- seed --sync fdatasync --systems evstore,naive,raw

# Pipeline depth sweep: groups in flight x early-submit threshold.
bench-pipeline:
    for depth in 2 4 8; do for busy in 16 64 256; do \
        cargo run --release -q -p evstore-bench -- seed --json --systems evstore --in-flight $depth --busy-group-kib $busy; \
    done; done

# A subset: `just bench-append --sizes 64,4k --producers 1,2 --batch 1` (docs/bench-matrix.md).
# The matrix: event size x producers x events per call, evstore beside every peer and the raw disk.
bench-append *ARGS:
    cargo run --release -p evstore-bench -- append {{ARGS}}

# Evstore and the naive port on the same schedule; `.hgrm` files in target/evstore-bench/.
# Open-loop latency at half the maximum measured first in the same run (or `--rate N` events/s).
bench-latency *ARGS:
    cargo run --release -p evstore-bench -- latency {{ARGS}}

# The disk alone: O_DIRECT + RWF_DSYNC one at a time and pipelined, pwrite + fdatasync.
bench-raw *ARGS:
    cargo run --release -p evstore-bench -- raw {{ARGS}}

# Flags set the baseline of the sweep; `--repeat 3` takes medians.
# evstore's options swept one at a time on a reduced seed workload: a table and the best setting.
tune *ARGS:
    cargo run --release -p evstore-bench -- tune {{ARGS}}

# The bench's `rocksdb` feature, never built by CI. Installs libclang (for bindgen) and a C++
# compiler with apt-get if missing (sudo only when not root); the first build compiles RocksDB's
# C++, about 20 minutes on 2 cores.
# Seed and matrix with RocksDB among the peers.
bench-rocksdb:
    #!/usr/bin/env bash
    set -euo pipefail
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    missing=()
    if ! ldconfig -p | grep -qE 'libclang(-[0-9.]+)?\.so' && ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
        missing+=(libclang-dev)
    fi
    command -v c++ >/dev/null || missing+=(g++)
    if [ ${#missing[@]} -gt 0 ]; then
        $sudo apt-get update
        $sudo apt-get install -y "${missing[@]}"
    fi
    cargo run --release -p evstore-bench --features rocksdb -- seed
    cargo run --release -p evstore-bench --features rocksdb -- append

# Space and latency at low load: one small event per group.
bench-lowload:
    cargo run --release -p evstore-bench -- lowload
    cargo run --release -p evstore-bench -- lowload --sync fdatasync

# Seed 003's projection strategies through ProjectionRunner, with the seed's cost model.
bench-projection-costs *ARGS:
    cargo run --release -p evstore-bench -- projection-costs {{ARGS}}

# The seed workload drawn: latency by percentile and events/s per system, as SVG in docs/img/
# (the charts docs/results.md shows). `.hgrm` files and the JSON go to target/evstore-bench/.
bench-plot:
    mkdir -p target/evstore-bench
    cargo run --release -p evstore-bench -- seed --json > target/evstore-bench/seed.jsonl
    cargo run --release -p evstore-bench -- plot --out docs/img --name seed \
        target/evstore-bench/evstore.hgrm target/evstore-bench/naive.hgrm \
        target/evstore-bench/sqlite.hgrm target/evstore-bench/okaywal.hgrm \
        target/evstore-bench/raw.hgrm target/evstore-bench/seed.jsonl

# Segment preparation: pre-zeroed vs fallocated.
bench-prepare:
    cargo run --release -p evstore-bench -- seed --segment-prepare zeroed --systems evstore,raw
    cargo run --release -p evstore-bench -- seed --segment-prepare fallocated --systems evstore,raw

# Fuzz one target until stopped (record_decode, group_header_decode, segment_header_decode,
# recovery), with debug assertions; extra libFuzzer flags after it, e.g. `just fuzz recovery
# -max_total_time=60`. Needs `cargo install cargo-fuzz`; RUSTC_BOOTSTRAP lets a stable
# toolchain take the nightly flags.
fuzz TARGET *ARGS:
    RUSTC_BOOTSTRAP=1 cargo fuzz run --debug-assertions {{TARGET}} -- {{ARGS}}
