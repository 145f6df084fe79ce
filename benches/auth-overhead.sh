#!/usr/bin/env bash
# The cost of API-key auth on the pass-through path, side by side in one run: graphfront without
# auth and graphfront requiring an API key, each alone on CPU 1 in turn, in front of the same
# fixed-body nginx upstream, loaded by the same wrk (mutations: never cached), ROUNDS times
# interleaved. The issue's goal: auth within 5% of no auth (req/s and CPU per request).
#
#   cargo build --release && bash benches/auth-overhead.sh
set -euo pipefail
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-8s} CONNS=${CONNS:-50}
bin=${GRAPHFRONT_BIN:-target/release/graphfront}
W=$(mktemp -d /tmp/gf-auth.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
for c in nginx wrk taskset openssl; do command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }; done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$W/k.pem" -out "$W/c.pem" 2>/dev/null
mkdir -p "$W"/{logs,tmp}
cat >"$W/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $W/logs/up.pid; error_log $W/logs/up.err warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp/ub; keepalive_requests 1000000;
  server { listen 127.0.0.1:18091; default_type application/json;
    location / { return 200 '{"data":{"touchPost":{"id":"1","title":"hello","__typename":"Post"}}}'; } } }
CONF
KEY=da2-benchmarkbenchmarkbenchmark
# Both instances are the one compare.sh measures (benches/compare-graphfront.sh), one with a key.
start() { # name port site-extra
  mkdir -p "$W/$1"
  BENCH_DIR="$W/$1" BENCH_LISTEN=127.0.0.1:$2 BENCH_ADMIN_PORT=$(($2 + 1000)) BENCH_CERT="$W/c.pem" \
    BENCH_KEY="$W/k.pem" BENCH_UPSTREAM=http://127.0.0.1:18091/graphql GRAPHFRONT_BIN="$bin" \
    BENCH_SITE_EXTRA="$3" taskset -c 1 bash benches/compare-graphfront.sh >"$W/logs/$1.log" 2>&1 &
  pids+=($!)
}
cat >"$W/mutation.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"query":"mutation Touch(\$id: ID!) { touchPost(id: \$id) { id title __typename } }","variables":{"id":"1"},"operationName":"Touch"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "$KEY"
LUA
taskset -c 0 nginx -c "$W/upstream.conf" -p "$W" & pids+=($!)
start plain 28453 ""
start apikey 28454 "[site.auth]
[[site.auth.api-key]]
id = \"bench\"
key = \"$KEY\""
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
wait_port 18091; wait_port 28453; wait_port 28454

cpu1() { awk '$1=="cpu1"{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
HZ=$(getconf CLK_TCK)
run() { # port -> "rps cpu_us_per_req errors"
  local c0 c1 out; c0=$(cpu1)
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" -s "$W/mutation.lua" "https://localhost:$1/graphql" 2>&1)
  c1=$(cpu1)
  awk -v d=$((c1 - c0)) -v hz="$HZ" '/Requests\/sec/{rps=$2} /requests in/{n=$1} /Non-2xx/{bad+=$5} /Socket errors/{gsub(",","");bad+=$4+$6+$8+$10}
    END{printf "%s %.2f %d\n", rps, (n>0)? d/hz*1e6/n : 0, bad}' <<<"$out"
}
for p in 28453 28454; do taskset -c 0 wrk -t1 -c4 -d1s -s "$W/mutation.lua" "https://localhost:$p/graphql" >/dev/null; done
declare -A RPS CPU BAD
for r in $(seq 1 "$ROUNDS"); do
  for t in plain:28453 apikey:28454; do
    read -r a b c < <(run "${t#*:}"); RPS[${t%:*}]+="$a "; CPU[${t%:*}]+="$b "; BAD[${t%:*}]+="$c "
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
printf '%-10s %10s %14s %8s\n' target req/s cpu_us/req errors
for n in plain apikey; do
  printf '%-10s %10.0f %14.2f %8s\n' $n "$(median <<<"${RPS[$n]}")" "$(median <<<"${CPU[$n]}")" "$(tr ' ' '\n' <<<"${BAD[$n]}" | awk '{s+=$1} END{print s+0}')"
done
awk -v a="$(median <<<"${RPS[apikey]}")" -v b="$(median <<<"${RPS[plain]}")" 'BEGIN{printf "req/s   apikey/plain = %.3f\n", a/b}'
awk -v a="$(median <<<"${CPU[apikey]}")" -v b="$(median <<<"${CPU[plain]}")" 'BEGIN{printf "cpu/req plain/apikey = %.3f\n", b/a}'
