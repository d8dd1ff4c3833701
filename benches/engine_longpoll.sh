#!/usr/bin/env bash
# Memory per waiting long-poll of examples/engine_proxy.rs, measured as benches/proxy.sh part 3
# measures kansas: (RSS under load - idle RSS) / established connections to the shard, with
# LONGPOLLS kansas-load clients (--realms 200 --publish-rate 20/s) against one fake-tornado,
# sampled in the middle of the run. The proxy prints every second (ENGINE_PROXY_STATS) its RSS
# beside the live heap bytes by size class: what a waiting long-poll holds.
#
#   bash benches/engine_longpoll.sh [LONGPOLLS] [SECONDS]     (defaults: 4000 40)
#
# BASE_PORT (default 19080): the proxy listens on BASE_PORT+2, fake-tornado on BASE_PORT+4.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4000}
SECS=${2:-40}
BASE=${BASE_PORT:-19080}
PP=$((BASE + 2))
FP=$((BASE + 4))
nice -n 10 cargo build --release --quiet -p kansas --example engine_proxy
nice -n 10 cargo build --release --quiet -p kansas-testkit --bins
B=target/release
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"$B/fake-tornado" --listen "127.0.0.1:$FP" --log-level warn > "$WORK/fake.log" 2>&1 &
PIDS+=($!)
ENGINE_PROXY_STATS=1 "$B/examples/engine_proxy" "127.0.0.1:$PP" "127.0.0.1:$FP" > "$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
sleep 1
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PROXY/status"; }
idle=$(rss)
"$B/kansas-load" --target "http://127.0.0.1:$PP" --shards "127.0.0.1:$FP" --clients "$N" \
  --realms 200 --duration "${SECS}s" --publish-rate 20/s --quiet > "$WORK/load.out" 2>&1 &
LOAD=$!
sleep $((SECS / 2 + 5))
loaded=$(rss)
inflight=$(ss -Htn state established "( dport = :$FP )" | wc -l)
heap=$(grep '^mem:' "$WORK/proxy.log" | tail -1)
set +e
wait "$LOAD"
status=$?
set -e
sleep 5
after=$(rss)
awk -v i="$idle" -v l="$loaded" -v a="$after" -v f="$inflight" -v s="$status" 'BEGIN {
  printf "engine_proxy: RSS idle %d KiB, under load %d KiB with %d long-polls waiting (%.2f KB each), %d KiB 5 s after they left; kansas-load exit %d\n",
    i, l, f, (l - i) * 1.024 / f, a, s }'
echo "  at the sample: $heap"
grep -E "lost|errors" "$WORK/load.out" | sed 's/^/  /' | head -3
rm -rf "$WORK"
