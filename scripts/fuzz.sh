#!/usr/bin/env bash
# The long fuzz run. `cargo test` runs every fuzz target in tests/fuzz/ with a few cases each
# (the short run, part of CI, seconds); this runs them in release mode with every case count
# multiplied by SCALE, ROUNDS times, each round with fresh random inputs:
#
#   bash scripts/fuzz.sh [SCALE] [ROUNDS]     (defaults: 100 1; about 100 s on a 2-core machine, plus the release build)
#
# What is fuzzed (tests/fuzz/main.rs): Host and query parsing, the state envelope a new worker
# decodes (with an allocation bound), the configuration file, and a shard's response head
# through a real kansas (one real request per case: the slow part). A failure prints the
# shrunk input and is saved in tests/proptest-regressions/, which later runs replay first;
# commit that file with the fix. PROPTEST_RNG_SEED=N makes a run repeatable.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-100}
ROUNDS=${2:-1}
cargo test --locked --release --test fuzz --no-run
for round in $(seq 1 "$ROUNDS"); do
  echo "== fuzz round $round/$ROUNDS, case counts x $SCALE"
  start=$(date +%s)
  KANSAS_FUZZ_SCALE=$SCALE cargo test --locked --release --test fuzz -- --nocapture
  echo "== round $round took $(($(date +%s) - start)) s"
done
