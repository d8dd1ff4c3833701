#!/usr/bin/env bash
# kansas against nginx on nginx's own ground, in one run on this machine. Three parts:
#
# 1. Short requests: wrk against a trivial upstream directly, through nginx (upstream keepalive,
#    proxy_buffering off: Zulip's settings) and through kansas, interleaved (A B C A B C ...),
#    keep-alive on and off. Requests/s and the proxy's CPU microseconds per request
#    (utime+stime from /proc/PID/stat: nginx master and workers, kansas master and worker).
# 2. Latency at a fixed rate, half of nginx's keep-alive maximum from part 1 (open loop: oha
#    with --latency-correction), interleaved: p50 and p99 added over direct.
# 3. Long-polls: LONGPOLLS kansas-load clients held through nginx, then through kansas, against
#    one fake-tornado shard: (RSS under load - idle RSS) / in-flight long-polls, and RSS after
#    the clients leave.
#
#   bash benches/proxy.sh [ROUNDS] [SECONDS] [CONNECTIONS] [LONGPOLLS] [LONGPOLL_DURATION]
#   (defaults: 3 10 50 4000 40s)
#
# PARTS=13 (say) runs only those parts; part 2 without part 1 needs RATE=<requests/s>.
# ENGINE=hyper measures kansas on the hyper engine (default: kansas's own, proxy.engine).
#
# BASE_PORT (default 18080) sets the five loopback ports used.
# Installs nginx and wrk (apt-get) and oha (cargo install, into target/bench-tools) when
# missing. Everything listens on 127.0.0.1 only. Each waiting long-poll costs a proxy two
# descriptors, so the open-file limit (ulimit -n) caps LONGPOLLS (about 9,000 at 20,000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${3:-50}
LONGPOLLS=${4:-4000}
LP_DURATION=${5:-40s}
BASE=${BASE_PORT:-18080}
UP_PORT=$BASE
NGINX_PORT=$((BASE + 1))
KANSAS_PORT=$((BASE + 2))
KANSAS_ADMIN=$((BASE + 3))
FAKE_PORT=$((BASE + 4))
PARTS=${PARTS:-123}
# ENGINE=hyper|kansas: kansas's HTTP/1 engine of the event path (proxy.engine).
ENGINE=${ENGINE:-kansas}
part() { [[ $PARTS == *$1* ]]; }

for p in "$UP_PORT" "$NGINX_PORT" "$KANSAS_PORT" "$KANSAS_ADMIN" "$FAKE_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use: stop what listens there or set BASE_PORT (ports BASE_PORT..+4)" >&2
    exit 2
  fi
done

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk) >&2 \
    || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk) >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
OHA=$(command -v oha || echo target/bench-tools/bin/oha)
if [ ! -x "$OHA" ]; then
  echo "installing oha into target/bench-tools (a few minutes)..." >&2
  cargo install oha --locked --version 1.16.0 --root target/bench-tools --quiet >&2
fi

# The daemon as released (no test-faults switch), then the test tools.
cargo build --release --quiet -p kansas --bins
cargo build --release --quiet -p kansas-testkit --bins
BIN=target/release

WORK=$(mktemp -d /tmp/kansas-bench.XXXXXX)
PIDS=()
NGINX_PREFIXES=()
stop_nginx() { "$NGINX" -p "$1" -c "$1/nginx.conf" -s stop 2>/dev/null || true; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in "${NGINX_PREFIXES[@]}"; do stop_nginx "$n"; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

# nginx_conf DIR PORT UPSTREAM ACCESS_LOG(on|off) -> an nginx proxying PORT to UPSTREAM with
# Zulip's long-poll settings (puppet/zulip/files/nginx/zulip-include-common/proxy_longpolling).
nginx_proxy_conf() {
  local dir=$1 port=$2 upstream=$3
  mkdir -p "$dir/logs"
  cat > "$dir/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile 20000;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 20000; }
http {
  access_log logs/access.log;
  keepalive_requests 1000000;
  upstream shard { server $upstream; keepalive 10000; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      proxy_pass http://shard;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Request-Id \$request_id;
      proxy_buffering off;
      proxy_read_timeout 1200;
      proxy_next_upstream off;
    }
  }
}
CONF
}

# kansas_conf FILE PORT ADMIN UPSTREAM
kansas_conf() {
  cat > "$1" <<CONF
[proxy]
listen = "127.0.0.1:$2"
engine = "$ENGINE"
[admin]
listen = "127.0.0.1:$3"
[log]
format = "text"
level = "info"
[[shards]]
name = "upstream"
address = "$4"
CONF
}

# The trivial upstream: an empty Zulip events answer.
mkdir -p "$WORK/up/logs"
cat > "$WORK/up/nginx.conf" <<CONF
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    location / {
      default_type application/json;
      return 200 '{"result":"success","msg":"","events":[],"queue_id":"q"}';
    }
  }
}
CONF
nginx_proxy_conf "$WORK/px" "$NGINX_PORT" "127.0.0.1:$UP_PORT"
kansas_conf "$WORK/kansas.toml" "$KANSAS_PORT" "$KANSAS_ADMIN" "127.0.0.1:$UP_PORT"

"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf"; NGINX_PREFIXES+=("$WORK/up")
"$NGINX" -p "$WORK/px" -c "$WORK/px/nginx.conf"; NGINX_PREFIXES+=("$WORK/px")
"$BIN/kansas" run --config "$WORK/kansas.toml" > "$WORK/kansas.log" 2>&1 &
KPID=$!
PIDS+=("$KPID")
sleep 1

# CPU ticks of processes: "user system" (utime, stime).
ticks() {
  local user=0 sys=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat")
    user=$((user + u)); sys=$((sys + s))
  done
  echo "$user $sys"
}
# RSS in KiB of processes.
rss() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/status" ] || continue
    total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
  done
  echo "$total"
}
nginx_all() { local m; m=$(cat "$1/logs/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
nginx_workers() { pgrep -P "$(cat "$1/logs/nginx.pid")" | tr '\n' ' '; }
# kansas run is a master; the work is done by its worker (a child process).
kansas_all() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
HZ=$(getconf CLK_TCK)
URL_PATH="/json/events?queue_id=q&last_event_id=1"
pids_of() {
  case $1 in
    nginx) nginx_all "$WORK/px" ;;
    kansas) kansas_all "$KPID" ;;
    *) echo "" ;;
  esac
}
port_of() {
  case $1 in
    direct) echo "$UP_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    kansas) echo "$KANSAS_PORT" ;;
  esac
}

# short NAME KEEPALIVE(on|off) -> "short name ka rps cpu_us_per_req user_us sys_us"
short() {
  local name=$1 ka=$2 pids before after out rps reqs errs us="- - -" hdr=()
  pids=$(pids_of "$name")
  [ "$ka" = off ] && hdr=(-H "Connection: close")
  before=$(ticks $pids)
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -H "Host: realm.example.com" "${hdr[@]}" \
        "http://127.0.0.1:$(port_of "$name")$URL_PATH")
  after=$(ticks $pids)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  if [ -n "$pids" ] && [ "${reqs:-0}" -gt 0 ]; then
    us=$(echo "$before $after" | awk -v hz="$HZ" -v n="$reqs" '{
      u = ($3 - $1) / hz * 1e6 / n; s = ($4 - $2) / hz * 1e6 / n
      printf "%.2f %.2f %.2f", u + s, u, s }')
  fi
  read -r total user sys <<< "$us"
  printf '  %-7s keepalive=%-3s %10s req/s  %8s us CPU/req (user %s, system %s)  %s\n' \
    "$name" "$ka" "$rps" "$total" "$user" "$sys" "$errs"
  echo "short $name $ka $rps $us" >> "$WORK/results"
}

# fixed NAME RATE -> "fixed name p50_ms p99_ms success"
fixed() {
  local name=$1 rate=$2
  "$OHA" -z "${SECS}s" -q "$rate" --latency-correction -c "$CONNS" --no-tui --output-format json \
    -H "Host: realm.example.com" "http://127.0.0.1:$(port_of "$name")$URL_PATH" > "$WORK/oha.json"
  python3 - "$name" "$WORK/oha.json" >> "$WORK/results" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
p = d["latencyPercentiles"]
print("fixed", sys.argv[1], p["p50"] * 1000, p["p99"] * 1000, d["summary"]["successRate"])
PY
  tail -1 "$WORK/results" | awk '{printf "  %-7s p50 %.3f ms  p99 %.3f ms  success %.4f\n", $2, $3, $4, $5}'
}

echo "machine: $(nproc) cores, $(uname -r); nginx $("$NGINX" -v 2>&1 | cut -d/ -f2); kansas $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%FT%TZ)"
touch "$WORK/results"
if part 1; then
  echo
  echo "1. short requests: wrk -t2 -c$CONNS -d${SECS}s, $ROUNDS interleaved rounds"
  for ka in on off; do
    for r in $(seq "$ROUNDS"); do
      for name in direct nginx kansas; do short "$name" "$ka"; done
    done
  done
  RATE=$(awk '$1 == "short" && $2 == "nginx" && $3 == "on" { s += $4; n++ } END { printf "%d", s / n / 2 }' "$WORK/results")
fi

if part 2; then
  echo
  echo "2. latency at a fixed ${RATE:?set RATE when part 1 is skipped} req/s (half of nginx's keep-alive maximum): oha -c$CONNS -z${SECS}s --latency-correction, $ROUNDS interleaved rounds"
  for r in $(seq "$ROUNDS"); do
    for name in direct nginx kansas; do fixed "$name" "$RATE"; done
  done
fi

# Part 3 runs on fresh proxies, so idle RSS is a clean start.
kill "$KPID"; wait "$KPID" 2>/dev/null || true
stop_nginx "$WORK/px"
sleep 0.5

if part 3; then
  echo
  echo "3. long-polls: $LONGPOLLS kansas-load clients for $LP_DURATION through each proxy, one fake-tornado shard"
  "$BIN/fake-tornado" --listen "127.0.0.1:$FAKE_PORT" --log-level warn > "$WORK/fake.log" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  # longpoll NAME PORT PIDS_FN -> "longpoll name idle loaded after inflight status"
  longpoll() {
    local name=$1 port=$2 pidsfn=$3 idle loaded after lpid status secs
    idle=$(rss $($pidsfn))
    "$BIN/kansas-load" --target "http://127.0.0.1:$port" --shards "127.0.0.1:$FAKE_PORT" \
      --clients "$LONGPOLLS" --realms 200 --duration "$LP_DURATION" --publish-rate 20/s \
      --json "$WORK/load-$name.json" --quiet > "$WORK/load-$name.out" 2>&1 &
    lpid=$!
    # Sample while every client is registered and waiting: the middle of the run.
    secs=$(awk -v d="$LP_DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
    sleep $((secs / 2 + 5))
    loaded=$(rss $($pidsfn))
    # Waiting long-polls: the proxy's established connections to the shard.
    local inflight
    inflight=$(ss -Htn state established "( dport = :$FAKE_PORT )" | wc -l)
    set +e
    wait "$lpid"
    status=$?
    set -e
    sleep 5
    after=$(rss $($pidsfn))
    echo "longpoll $name $idle $loaded $after $inflight $status" >> "$WORK/results"
    awk -v n="$name" -v i="$idle" -v l="$loaded" -v a="$after" -v f="$inflight" -v s="$status" 'BEGIN {
      printf "  %-7s RSS idle %d KiB, under load %d KiB with %d long-polls waiting (%.2f KB each), %d KiB 5 s after they left; kansas-load exit %d\n",
        n, i, l, f, (l - i) * 1.024 / f, a, s }'
    grep -E "lost|errors" "$WORK/load-$name.out" | sed 's/^/    /' | head -4
  }
  nginx_proxy_conf "$WORK/lpn" "$NGINX_PORT" "127.0.0.1:$FAKE_PORT"
  "$NGINX" -p "$WORK/lpn" -c "$WORK/lpn/nginx.conf"; NGINX_PREFIXES+=("$WORK/lpn")
  sleep 0.5
  lp_nginx() { nginx_workers "$WORK/lpn"; }
  [ -n "${SKIP_NGINX_LONGPOLL:-}" ] || longpoll nginx "$NGINX_PORT" lp_nginx
  stop_nginx "$WORK/lpn"
  kansas_conf "$WORK/kansas-lp.toml" "$KANSAS_PORT" "$KANSAS_ADMIN" "127.0.0.1:$FAKE_PORT"
  sed -i 's/level = "info"/level = "warn"/' "$WORK/kansas-lp.toml"
  "$BIN/kansas" run --config "$WORK/kansas-lp.toml" > "$WORK/kansas-lp.log" 2>&1 &
  KPID=$!
  PIDS+=("$KPID")
  sleep 1
  lp_kansas() { kansas_all "$KPID"; }
  longpoll kansas "$KANSAS_PORT" lp_kansas
fi

echo
echo "summary"
awk '
  # The median of the per-round p99 of one target (rounds are few: insertion sort).
  function median(k,    i, j, t, n, a) {
    n = m[k]
    for (i = 1; i <= n; i++) a[i] = v99[k, i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $1 == "short" { k = $2 " " $3; rps[k] += $4; n[k]++; if ($5 != "-") { us[k] += $5; usr[k] += $6; sys[k] += $7 } }
  $1 == "fixed" { k = $2; p50[k] += $3; p99[k] += $4; m[k]++; v99[k, m[k]] = $4 }
  $1 == "longpoll" { per[$2] = ($4 - $3) * 1.024 / $6; after[$2] = $5; idle[$2] = $3 }
  END {
    split("on off", kas, " ")
    for (i = 1; i <= 2; i++) {
      k = kas[i]
      if (!n["nginx " k] || !n["kansas " k]) continue
      ng = us["nginx " k] / n["nginx " k]; ks = us["kansas " k] / n["kansas " k]
      printf "short, keep-alive %-3s: req/s direct %.0f, nginx %.0f, kansas %.0f; CPU us/request nginx %.2f (user %.2f, system %.2f), kansas %.2f (user %.2f, system %.2f): kansas/nginx %.2f (goal <= 0.90)\n",
        k, rps["direct " k] / n["direct " k], rps["nginx " k] / n["nginx " k], rps["kansas " k] / n["kansas " k],
        ng, usr["nginx " k] / n["nginx " k], sys["nginx " k] / n["nginx " k],
        ks, usr["kansas " k] / n["kansas " k], sys["kansas " k] / n["kansas " k], ks / ng
    }
    if (m["direct"] && m["nginx"] && m["kansas"]) {
      d50 = p50["direct"] / m["direct"]; d99 = p99["direct"] / m["direct"]
      n50 = p50["nginx"] / m["nginx"] - d50; n99 = p99["nginx"] / m["nginx"] - d99
      k50 = p50["kansas"] / m["kansas"] - d50; k99 = p99["kansas"] / m["kansas"] - d99
      printf "fixed rate: direct p50 %.3f ms p99 %.3f ms; added p50 nginx %.3f ms, kansas %.3f ms; added p99 nginx %.3f ms, kansas %.3f ms (goal: kansas <= nginx)\n",
        d50, d99, n50, k50, n99, k99
      printf "fixed rate, median round: added p99 nginx %.3f ms, kansas %.3f ms\n",
        median("nginx") - median("direct"), median("kansas") - median("direct")
    }
    if ("kansas" in per) printf "long-polls: KB per waiting long-poll nginx workers %.2f, kansas %.2f (goal <= 8); RSS after clients left: nginx %d KiB (idle %d), kansas %d KiB (idle %d)\n",
        per["nginx"], per["kansas"], after["nginx"], idle["nginx"], after["kansas"], idle["kansas"]
  }' "$WORK/results"
