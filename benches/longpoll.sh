#!/usr/bin/env bash
# Long-poll capacity through kansas: N kansas-load clients held for D against 4 fake-tornado
# shards (release builds, everything on 127.0.0.1), with kansas's RSS sampled idle, under load
# (every client registered and waiting) and after the clients leave.
#
#   bash benches/longpoll.sh [CLIENTS] [DURATION] [PUBLISH_RATE]    (defaults: 9000 60s 20/s)
#
# Each waiting long-poll costs kansas two descriptors and the harness one, so this machine's
# 20,000 open files cap it near 9,000 clients. Prints the kansas-load summary and
# (RSS under load - idle RSS) / clients.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-9000}
DURATION=${2:-60s}
RATE=${3:-20/s}
BASE=${BASE_PORT:-19800}
# The daemon as released (no test-faults switch), then the test tools.
cargo build --release --quiet -p kansas --bins
cargo build --release --quiet -p kansas-testkit --bins
BIN=target/release
WORK=$(mktemp -d /tmp/kansas-longpoll.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT

SHARDS=""
CONF="[proxy]
listen = \"127.0.0.1:$((BASE - 1))\"
[admin]
listen = \"127.0.0.1:$((BASE - 2))\"
[log]
level = \"warn\"
"
for i in 0 1 2 3; do
  port=$((BASE + i))
  "$BIN/fake-tornado" --listen "127.0.0.1:$port" --log-level warn > "$WORK/fake$i.log" 2>&1 &
  PIDS+=($!)
  SHARDS="$SHARDS${SHARDS:+,}127.0.0.1:$port"
  CONF="$CONF
[[shards]]
name = \"tornado-$port\"
address = \"127.0.0.1:$port\"
"
done
echo "$CONF" > "$WORK/kansas.toml"
"$BIN/kansas" run --config "$WORK/kansas.toml" > "$WORK/kansas.log" 2>&1 &
KPID=$!
PIDS+=("$KPID")
sleep 1
# kansas run is a master; the work (and the memory) is in its worker: count both.
rss() { local total=0 p; for p in "$1" $(pgrep -P "$1"); do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$total"; }
IDLE=$(rss "$KPID")
echo "kansas idle RSS: ${IDLE} KiB"

"$BIN/kansas-load" --target "http://127.0.0.1:$((BASE - 1))" --shards "$SHARDS" \
  --clients "$CLIENTS" --realms 200 --duration "$DURATION" --publish-rate "$RATE" \
  --json "$WORK/report.json" --quiet > "$WORK/load.out" 2>&1 &
LPID=$!

# Sample RSS while every client is registered: the middle of the run.
secs=$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
sleep $(( secs / 2 + 5 ))
LOADED=$(rss "$KPID")
CONNS=$(curl -s "http://127.0.0.1:$((BASE - 2))/metrics" | awk '/^kansas_client_connections / {print $2}')
INFLIGHT=$(curl -s "http://127.0.0.1:$((BASE - 2))/metrics" | awk '/^kansas_in_flight_requests / {print $2}')
set +e
wait "$LPID"
STATUS=$?
set -e
sleep 2
AFTER=$(rss "$KPID")
cat "$WORK/load.out"
echo "kansas-load exit status: $STATUS"
echo "kansas RSS: idle ${IDLE} KiB, under load ${LOADED} KiB (${CONNS} client connections, ${INFLIGHT} requests in flight), after ${AFTER} KiB"
awk -v i="$IDLE" -v l="$LOADED" -v n="$INFLIGHT" 'BEGIN { if (n > 0) printf "kansas RSS per waiting long-poll: %.1f KB\n", (l - i) * 1.024 / n }'
exit "$STATUS"
