#!/usr/bin/env bash
# Side-by-side proxy cost: wrk against a trivial upstream directly, through nginx (upstream
# keepalive, proxy_buffering off: Zulip's long-poll settings) and through kansas, interleaved
# (A B C A B C ...) in one run. Prints requests/s and the proxy process's CPU microseconds per
# request (utime+stime from /proc/PID/stat; all nginx processes summed, and the kansas master with
# its worker), with keep-alive on and
# off, and the ratio kansas / nginx.
#
#   bash benches/proxy.sh [ROUNDS] [SECONDS] [CONNECTIONS]     (defaults: 3 10 50)
#
# Installs nginx and wrk with apt-get when missing. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${3:-50}
UP_PORT=${UP_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
KANSAS_PORT=${KANSAS_PORT:-18082}
KANSAS_ADMIN=${KANSAS_ADMIN:-18083}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk) >&2 \
    || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk) >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet --bin kansas
KANSAS=target/release/kansas

WORK=$(mktemp -d /tmp/kansas-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" -s stop 2>/dev/null || true
  "$NGINX" -p "$WORK/px" -c "$WORK/px/nginx.conf" -s stop 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/up/logs" "$WORK/px/logs"
# The trivial upstream: an empty Zulip events answer.
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
# nginx as the proxy, with Zulip's long-poll settings.
cat > "$WORK/px/nginx.conf" <<CONF
worker_processes auto;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
  access_log logs/access.log;
  keepalive_requests 1000000;
  upstream shard { server 127.0.0.1:$UP_PORT; keepalive 10000; }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
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
cat > "$WORK/kansas.toml" <<CONF
[proxy]
listen = "127.0.0.1:$KANSAS_PORT"
[admin]
listen = "127.0.0.1:$KANSAS_ADMIN"
[log]
format = "text"
level = "info"
[[shards]]
name = "upstream"
address = "127.0.0.1:$UP_PORT"
CONF

"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf"
"$NGINX" -p "$WORK/px" -c "$WORK/px/nginx.conf"
"$KANSAS" run --config "$WORK/kansas.toml" > "$WORK/kansas.log" 2>&1 &
KPID=$!
PIDS+=("$KPID")
sleep 1
NGINX_MASTER=$(cat "$WORK/px/logs/nginx.pid")

# CPU ticks (utime+stime) of a process and its children processes (nginx workers).
ticks() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
nginx_pids() { echo "$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"; }
# kansas run is a master; the work is done by its worker (a child process).
kansas_pids() { echo "$KPID $(pgrep -P "$KPID" | tr '\n' ' ')"; }
HZ=$(getconf CLK_TCK)

# run NAME PORT KEEPALIVE(on|off) -> appends "name ka rps cpu_us_per_req"
run() {
  local name=$1 port=$2 ka=$3 pids before after out rps reqs hdr=()
  case $name in
    nginx) pids=$(nginx_pids) ;;
    kansas) pids=$(kansas_pids) ;;
    *) pids="" ;;
  esac
  [ "$ka" = off ] && hdr=(-H "Connection: close")
  before=$(ticks $pids)
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -H "Host: realm.example.com" "${hdr[@]}" \
        "http://127.0.0.1:$port/json/events?queue_id=q&last_event_id=1")
  after=$(ticks $pids)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local errs
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  local us="-"
  if [ -n "$pids" ] && [ "${reqs:-0}" -gt 0 ]; then
    us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  fi
  printf '%-7s keepalive=%-3s %10s req/s  %8s us CPU/req  %s\n' "$name" "$ka" "$rps" "$us" "$errs"
  echo "$name $ka $rps $us" >> "$WORK/results"
}

echo "machine: $(nproc) cores, $(uname -r); nginx $("$NGINX" -v 2>&1 | cut -d/ -f2); kansas $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "wrk -t2 -c$CONNS -d${SECS}s, $ROUNDS interleaved rounds"
for ka in on off; do
  for r in $(seq "$ROUNDS"); do
    run direct "$UP_PORT" "$ka"
    run nginx "$NGINX_PORT" "$ka"
    run kansas "$KANSAS_PORT" "$ka"
  done
done

echo
echo "summary (mean over rounds)"
awk '
  { key=$1" "$2; rps[key]+=$3; n[key]++; if ($4 != "-") { us[key]+=$4 } }
  END {
    for (ka in set) {}
    split("on off", kas, " ")
    for (i = 1; i <= 2; i++) {
      k = kas[i]
      d = rps["direct " k] / n["direct " k]
      ng = rps["nginx " k] / n["nginx " k]; ngu = us["nginx " k] / n["nginx " k]
      ks = rps["kansas " k] / n["kansas " k]; ksu = us["kansas " k] / n["kansas " k]
      printf "keepalive=%-3s direct %9.0f req/s | nginx %9.0f req/s %6.2f us/req | kansas %9.0f req/s %6.2f us/req | kansas/nginx CPU %.2f\n", k, d, ng, ngu, ks, ksu, ksu / ngu
    }
  }' "$WORK/results"
