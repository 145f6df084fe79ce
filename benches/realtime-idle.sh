#!/usr/bin/env bash
# Idle real-time subscriptions at scale, in one run: N graphql-transport-ws subscriptions to the demo
# API's `onCreatePost`, first through graphfront (wss, /graphql/realtime), then straight to the demo
# API (ws, /graphql/ws). Reports graphfront's RSS per proxied connection above its idle baseline
# (VmRSS; after each of STEPS and at N, subscribed and settled; then again after the events), and
# the latency of an event, from the POST of its mutation (always to the demo API itself) to a sample
# of the subscribers, on both paths. Issue goal: <= 10 KB per connection, the added p99 small.
#
#   bash benches/realtime-idle.sh            # builds release and the ws_idle bench client first
#   N=2000 STEPS= MESSAGES=10 bash benches/realtime-idle.sh
#
# Placement: graphfront (one worker thread) alone on CPU 1; the demo API (one thread, the
# `ws_idle upstream` process) and the client (one thread) share CPU 0. graphfront holds two
# descriptors per proxied WebSocket: N is capped by the open-files hard limit.
#
# Last figures (2026-11-25, this 2-core machine, open-files limit 20000 so N=9900; 30 events 1 s apart,
# 200 sampled subscribers): graphfront RSS +262 KB per connection (linear: 262.2 at 2000, 261.8 at
# 5000, 261.7 at 9900; goal <= 10). Of that, ~62 KB is the downstream L4 read buffer (64 KiB) and
# ~121 KB pingora's two 64 KiB HTTP/1 body buffers (client and upstream side); ~79 KB is the rest.
# Event latency, mutation -> event: direct p50 245 ms / p99 469 ms, through graphfront p50 312 ms /
# p99 603 ms (+67 / +134 ms): the demo API's fan-out to 9900 subscribers on one thread dominates
# both, and the client's TLS decryption shares its CPU.
set -euo pipefail
N=${N:-10000} STEPS=${STEPS-2000,5000} SAMPLE=${SAMPLE:-200} MESSAGES=${MESSAGES:-30}
INTERVAL_MS=${INTERVAL_MS:-1000} UP_PORT=${UP_PORT:-18095} GF_PORT=${GF_PORT:-28463}
bin=${GRAPHFRONT_BIN:-target/release/graphfront}
W=$(mktemp -d /tmp/gf-rt-idle.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
command -v taskset >/dev/null || { echo "needs taskset (util-linux)" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)"
max=$((($(ulimit -n) - 200) / 2))
if ((N > max)); then
  echo "note: the open-files limit ($(ulimit -n)) allows graphfront $max WebSockets: N=$max" >&2
  N=$max
fi

if [[ -z ${GRAPHFRONT_BIN:-} ]]; then cargo build --release --locked --quiet; fi
client=${WS_IDLE_BIN:-$(cargo bench --locked --bench ws_idle --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*ws_idle[^"]*\)".*/\1/p' | tail -1)}
[[ -x $client ]] || { echo "could not build the ws_idle bench client" >&2; exit 1; }

"$client" certs "$W"

taskset -c 0 "$client" upstream "127.0.0.1:$UP_PORT" >"$W/upstream.log" 2>&1 &
up=$!; pids+=("$up")
# The graphfront compare.sh measures (benches/compare-graphfront.sh), with real-time on.
BENCH_DIR=$W BENCH_LISTEN=127.0.0.1:$GF_PORT BENCH_ADMIN_PORT=$((GF_PORT + 1)) GRAPHFRONT_BIN=$bin \
  BENCH_CERT=$W/localhost.pem BENCH_KEY=$W/localhost.key BENCH_UPSTREAM=http://127.0.0.1:$UP_PORT/graphql \
  BENCH_LISTENER_KEYS="max-connections-per-client = 0" \
  BENCH_SITE_KEYS="realtime-upstream = \"ws://127.0.0.1:$UP_PORT/graphql/ws\"" \
  BENCH_SITE_EXTRA=$'[site.websocket]\nmax-connections = 100000\nmax-connections-per-client = 100000' \
  taskset -c 1 bash benches/compare-graphfront.sh >"$W/graphfront.log" 2>&1 &
gf=$!; pids+=("$gf")   # compare-graphfront.sh execs graphfront: this is its pid
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 not up" >&2; tail -20 "$W"/*.log >&2; exit 1
}
wait_port "$UP_PORT"; wait_port "$GF_PORT"; sleep 1

load() { # url out [options]
  local url=$1 out=$2; shift 2
  taskset -c 0 "$client" --url "$url" --mutate "http://127.0.0.1:$UP_PORT/graphql" --connections "$N" \
    --sample "$SAMPLE" --messages "$MESSAGES" --interval-ms "$INTERVAL_MS" "$@" | tee "$W/$out"
}
echo "== through graphfront: wss://localhost:$GF_PORT/graphql/realtime"
load "wss://localhost:$GF_PORT/graphql/realtime" via --ca "$W/ca.pem" --steps "$STEPS" \
  --watch "graphfront=$gf,demo-api=$up"
sleep 2   # the demo API lets go of the closed subscriptions
echo "== direct: ws://127.0.0.1:$UP_PORT/graphql/ws"
load "ws://127.0.0.1:$UP_PORT/graphql/ws" direct

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$W/$1" | tail -1; }
per() { sed -n "s/^rss graphfront connections=$N $1.*added_kb_per_connection=\([^ ]*\).*/\1/p" "$W/via"; }
per=$(per rss_kb=) per_after=$(per after-events)
echo "== summary (N=$N, $MESSAGES events, $SAMPLE sampled subscribers)"
printf 'graphfront RSS per connection: %s KB subscribed, %s KB after the events (goal <= 10)\n' "$per" "$per_after"
printf '%-16s %10s %10s %10s\n' path p50_ms p99_ms last_p50_ms
for p in via direct; do
  printf '%-16s %10s %10s %10s\n' "$p" "$(field $p p50_ms)" "$(field $p p99_ms)" "$(field $p last_subscriber_p50_ms)"
done
awk -v a="$(field via p99_ms)" -v b="$(field direct p99_ms)" -v c="$(field via p50_ms)" -v d="$(field direct p50_ms)" \
  'BEGIN{printf "added by graphfront: p50 %+.2f ms, p99 %+.2f ms\n", c-d, a-b}'
