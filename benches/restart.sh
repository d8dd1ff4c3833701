#!/usr/bin/env bash
# A Tornado restart under load, through kansas: CLIENTS kansas-load clients all on one
# fake-tornado shard, which is stopped with SIGTERM and started again DOWN seconds later.
# Reports how many GETs were parked, the time from the shard's return until every parked GET was
# replayed (against release_burst + count / release_rate_per_sec), kansas's RSS while they were
# parked, and the clients' errors (the goal is 0).
#
#   bash benches/restart.sh [CLIENTS] [DOWN_SECS] [RATE_PER_SEC] [BURST]   (defaults 2000 5 200 50)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-2000}
DOWN=${2:-5}
RATE=${3:-200}
BURST=${4:-50}
BASE=${BASE_PORT:-19700}
# The daemon as released (no test-faults switch), then the test tools.
cargo build --release --quiet -p kansas --bins
cargo build --release --quiet -p kansas-testkit --bins
BIN=target/release
WORK=$(mktemp -d /tmp/kansas-restart.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT
SHARD=127.0.0.1:$BASE
PROXY=127.0.0.1:$((BASE - 1))
ADMIN=127.0.0.1:$((BASE - 2))
cat > "$WORK/kansas.toml" <<CONF
[proxy]
listen = "$PROXY"
[admin]
listen = "$ADMIN"
[log]
level = "warn"
[parking]
release_rate_per_sec = $RATE
release_burst = $BURST
probe_interval_secs = 0.05
[[shards]]
name = "only"
address = "$SHARD"
CONF
"$BIN/fake-tornado" --listen "$SHARD" --state-file "$WORK/queues.json" --log-level warn &
FAKE=$!
"$BIN/kansas" run --config "$WORK/kansas.toml" > "$WORK/kansas.log" 2>&1 &
KPID=$!
PIDS+=("$FAKE" "$KPID")
sleep 1
# kansas run is a master; the work (and the memory) is in its worker: count both.
rss() { local total=0 p; for p in "$1" $(pgrep -P "$1"); do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$total"; }
metric() { curl -s "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
IDLE=$(rss "$KPID")

"$BIN/kansas-load" --target "http://$PROXY" --shards "$SHARD" --clients "$CLIENTS" --realms 200 \
  --duration 30s --publish-rate 20/s --settle 30s --json "$WORK/report.json" --quiet \
  > "$WORK/load.out" 2>&1 &
LPID=$!
PIDS+=("$LPID")
sleep 10
BEFORE=$(rss "$KPID")
kill -TERM "$FAKE"
wait "$FAKE" || true
sleep "$DOWN"
PARKED=$(metric 'kansas_parked_requests{shard="only"}')
DURING=$(rss "$KPID")
"$BIN/fake-tornado" --listen "$SHARD" --state-file "$WORK/queues.json" --log-level warn &
FAKE=$!
PIDS+=("$FAKE")
T0=$(date +%s.%N)
while [ "$(metric 'kansas_parked_requests{shard="only"}')" != "0" ]; do sleep 0.02; done
T1=$(date +%s.%N)
REPLAYED=$(metric 'kansas_replayed_total{shard="only"}')
set +e
wait "$LPID"
STATUS=$?
set -e
cat "$WORK/load.out"
echo "kansas-load exit status: $STATUS"
awk -v t0="$T0" -v t1="$T1" -v p="$PARKED" -v r="$REPLAYED" -v rate="$RATE" -v burst="$BURST" \
    -v idle="$IDLE" -v before="$BEFORE" -v during="$DURING" -v down="$DOWN" 'BEGIN {
  expect = (p > burst ? (p - burst) / rate : 0)
  printf "parked while the shard was down %d s: %d GETs (replayed in all: %d)\n", down, p, r
  printf "shard back -> every parked GET replayed: %.2f s (rate %d/s after a burst of %d: %.2f s expected)\n", t1 - t0, rate, burst, expect
  printf "kansas RSS: idle %d KiB, long-polling %d KiB, while parked %d KiB; (parked - idle) / parked GETs = %.1f KB\n", idle, before, during, (during - idle) * 1.024 / p
}'
exit "$STATUS"
