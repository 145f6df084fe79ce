#!/usr/bin/env bash
# Slow clients and HTTP/2 floods, graphfront and nginx side by side in one run: each proxy alone
# on CPU 1 in turn, in front of the same fixed-body nginx upstream, under the same attack.
#
#   SLOW clients (1,000) each open TLS, send a request line and trickle one header byte every
#   TRICKLE s (2); BODIES (300) send a whole head with Content-Length and trickle the body the
#   same way. Meanwhile probes measure normal requests (mutations: never cached), one at a
#   time, timed by curl: 20 to a kept-alive connection (the first of each 20 not counted), and
#   one to a new connection each time (TLS handshake included). Reported: the proxy's RSS
#   (VmRSS) before, at its peak and after; how many slow connections were still open at the
#   deadline + 5 s (request-header 10 s, request-body 30 s; nginx is given the same
#   client_header_timeout and client_body_timeout, the latter a time between reads); probe
#   p50/p99 at rest and under attack; what the upstream received.
#   Then graphfront's default max-connections-per-client (256): the same SLOW clients from one
#   address, a probe from that address and one from another.
#   Then HTTP/2 floods on graphfront: rapid reset (RR_STREAMS, 10,000 HEADERS + RST_STREAM pairs:
#   in one connection, then 100 to a connection) and a PING flood (PINGS, 100,000, written
#   without reading the answers), with RSS before, peak and after.
#
#   cargo build --release && bash benches/slow-clients.sh
#   GRAPHFRONT_BIN=/path/to/graphfront PORT_BASE=21000 bash benches/slow-clients.sh
#
# graphfront runs on the configuration compare.sh measures (benches/compare-graphfront.sh, which
# writes it), with `max-connections-per-client = 0` added under [listeners] for the comparison
# (1,000 connections from one loopback address would otherwise be refused past 256). About
# 2 minutes.
#
# Last figures (2026-12-03, this 2-core machine, release build of 3c6a9cd, other builds running
# beside it): every slow head cut at 10.0-10.1 s with 408 and every slow body at 30.0-30.2 s with
# 408 (nginx: heads cut at 10 s without an answer; all 300 bodies still open at 35 s, its body
# timeout being between reads). RSS: graphfront 32.8 MB -> peak 216.6 MB (+141 KB per slow
# connection) -> 123.6 MB 3 s after; nginx 11.9 -> 44.5 MB (+25 KB per connection): 5.65x.
# Probes under attack, graphfront vs nginx: kept-alive p50 0.56 / 0.34 ms, p99 8.47 / 13.96 ms;
# new connection p50 9.34 / 11.32 ms, p99 39.7 / 437.6 ms (p99s vary a lot run to run); no
# probe failed, the upstream saw exactly the probes. Default cap: 256 of 1,000 held, 744 closed
# before TLS; every probe from the attacker's address refused, none from another. Rapid reset:
# GOAWAY(ENHANCE_YOUR_CALM) after stream 41 on each of 100 connections (the 10,000-stream
# connection was reset before its GOAWAY could be read); PING flood: 100,000 answered, the
# connection kept. RSS moved by at most 4 MB in the HTTP/2 floods.
set -euo pipefail
SLOW=${SLOW:-1000} BODIES=${BODIES:-300} TRICKLE=${TRICKLE:-2} PROBE_S=${PROBE_S:-30}
RR_STREAMS=${RR_STREAMS:-10000} PINGS=${PINGS:-100000}
HEADER_DEADLINE=10 BODY_DEADLINE=30   # graphfront's defaults, given to nginx too
PB=${PORT_BASE:-19000}
UP=$((PB + 81)) GF=$((PB + 443)) GF_ADMIN=$((PB + 490)) CAP=$((PB + 444)) CAP_ADMIN=$((PB + 491)) NG=$((PB + 445))
bin=${GRAPHFRONT_BIN:-target/release/graphfront}
ROOT=$(pwd)
W=$(mktemp -d /tmp/gf-slow.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
for c in nginx curl taskset openssl python3; do command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }; done
[[ -x $bin ]] || { echo "no graphfront at $bin: cargo build --release, or set GRAPHFRONT_BIN" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > 2 * (SLOW + BODIES) + 500)) || { echo "the open-files limit ($(ulimit -n)) is too low" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$W/k.pem" -out "$W/c.pem" 2>/dev/null
mkdir -p "$W"/{logs,tmp}
BODY='{"data":{"touchPost":{"id":"1","title":"hello","__typename":"Post"}}}'
cat >"$W/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $W/logs/up.pid; error_log $W/logs/up.err warn;
events { worker_connections 8192; }
http { access_log $W/logs/upstream.access; client_body_temp_path $W/tmp/ub; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; default_type application/json;
    location / { return 200 '$BODY'; } } }
CONF
# nginx as the TLS proxy: one process, the same deadlines as graphfront, no per-address cap.
cat >"$W/proxy.conf" <<CONF
worker_processes 1; master_process off; daemon off; pid $W/logs/px.pid; error_log $W/logs/px.err crit;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $W/tmp/pb; proxy_temp_path $W/tmp/pp; keepalive_requests 1000000;
  client_header_timeout ${HEADER_DEADLINE}s; client_body_timeout ${BODY_DEADLINE}s;
  client_body_buffer_size 64k; client_max_body_size 64k;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NG ssl http2; ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $W/c.pem; ssl_certificate_key $W/k.pem;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location = /graphql { proxy_pass http://up; } } }
CONF
MUTATION='{"query":"mutation Touch($id: ID!) { touchPost(id: $id) { id title __typename } }","variables":{"id":"1"},"operationName":"Touch"}'

# The slow clients: asyncio, one task per connection. Prints one summary line.
cat >"$W/slow.py" <<'PY'
import asyncio, ssl, sys, time
host, port, mode, n, interval, duration, deadline, ca = sys.argv[1:9]
port, n, interval, duration, deadline = int(port), int(n), float(interval), float(duration), float(deadline)
ctx = ssl.create_default_context(cafile=ca)
if mode == "headers":
    first, trickle = b"POST /graphql HTTP/1.1\r\nHost: localhost\r\n", b"x-slow: " + b"a" * 100000
else:
    first = (b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"Content-Length: 60000\r\n\r\n")
    trickle = b" " * 60000
res, gate, end = [], asyncio.Semaphore(64), time.monotonic() + duration
async def one():
    r = {"open": False, "first": None, "closed": None, "answer": b""}
    res.append(r)
    try:
        async with gate:
            rd, wr = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"), 20)
    except Exception as e:
        r["err"] = type(e).__name__
        return
    r["open"] = True
    async def watch():
        try:
            while True:
                b = await rd.read(4096)
                if not b:
                    break
                r["answer"] += b
        except Exception:
            pass
        r["closed"] = time.monotonic()
    w = asyncio.ensure_future(watch())
    try:
        wr.write(first); await wr.drain()
        r["first"] = time.monotonic()
        i = 0
        while not w.done() and time.monotonic() < end:
            await asyncio.wait([w], timeout=interval)
            if w.done():
                break
            wr.write(trickle[i:i + 1]); await wr.drain(); i += 1
    except Exception:
        pass
    if not w.done():
        await asyncio.wait([w], timeout=max(0.0, end - time.monotonic()))
    w.cancel()
    wr.transport.abort()
async def main():
    await asyncio.gather(*(one() for _ in range(n)))
    opened = [r for r in res if r["open"] and r["first"]]
    held = [(r["closed"] or end) - r["first"] for r in opened]
    over = sum(1 for r in opened if r["closed"] is None or r["closed"] - r["first"] > deadline + 5)
    answered = sum(1 for r in opened if r["answer"].startswith(b"HTTP/1.1 408"))
    held.sort()
    p = lambda q: held[min(len(held) - 1, int(q * len(held)))] if held else 0
    errs = {}
    for r in res:
        if "err" in r:
            errs[r["err"]] = errs.get(r["err"], 0) + 1
    print(f"{mode}: connections={n} opened={len(opened)} refused={n - len(opened)} {errs or ''} "
          f"open_after_deadline+5s={over} answered_408={answered} "
          f"held_p50_s={p(0.5):.1f} held_max_s={p(1.0):.1f}")
asyncio.run(main())
PY

# HTTP/2 floods, raw frames. Prints one summary line.
cat >"$W/h2flood.py" <<'PY'
import asyncio, ssl, sys, time
host, port, mode, n, per_conn, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ctx = ssl.create_default_context(cafile=ca); ctx.set_alpn_protocols(["h2"])
def frame(t, f, sid, p=b""):
    return len(p).to_bytes(3, "big") + bytes([t, f]) + sid.to_bytes(4, "big") + p
def lit(k, v):
    return b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
BLOCK = b"".join(lit(k, v) for k, v in [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/graphql?mark=flood"),
        (b":authority", b"localhost"), (b"content-type", b"application/json"), (b"content-length", b"20")])
async def conn():
    rd, wr = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
    assert wr.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    wr.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)); await wr.drain()
    return rd, wr
async def read_all(rd, quiet):
    """Frames until EOF, a GOAWAY, or `quiet` s without one: counts by type, GOAWAY (last stream, code)."""
    buf, counts, goaway, end = b"", {}, None, "quiet"
    while goaway is None:
        try:
            b = await asyncio.wait_for(rd.read(65536), quiet)
        except asyncio.TimeoutError:
            break
        except Exception:
            end = "reset"; break
        if not b:
            end = "eof"; break
        buf += b
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            ln, t, f = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
            key = f"{t}{'ack' if t in (4, 6) and f & 1 else ''}"
            counts[key] = counts.get(key, 0) + 1
            if t == 7:
                goaway, end = (int.from_bytes(buf[9:13], "big") & 0x7fffffff, int.from_bytes(buf[13:17], "big")), "goaway"
            buf = buf[9 + ln:]
    return counts, goaway, end
async def write(wr, data, limit):
    try:
        wr.write(data); await asyncio.wait_for(wr.drain(), limit); return "all"
    except asyncio.TimeoutError:
        return "stalled"
    except Exception:
        return "cut"
async def main():
    t0 = time.monotonic()
    if mode == "reset":
        conns, goaways, lasts, ends, sent = 0, {}, [], {}, 0
        while sent < n:
            k = min(per_conn, n - sent)
            rd, wr = await conn()
            data = b"".join(frame(1, 4, 2 * i + 1, BLOCK) + frame(3, 0, 2 * i + 1, (8).to_bytes(4, "big")) for i in range(k))
            w = asyncio.ensure_future(write(wr, data, 10))
            counts, goaway, end = await read_all(rd, 3)
            await w; wr.transport.abort()
            conns += 1; sent += k; ends[end] = ends.get(end, 0) + 1
            if goaway:
                goaways[goaway[1]] = goaways.get(goaway[1], 0) + 1; lasts.append(goaway[0])
        lasts.sort()
        print(f"rapid reset: streams={n} per_connection={per_conn} connections={conns} goaway_codes={goaways} "
              f"last_stream_id_median={lasts[len(lasts)//2] if lasts else None} ends={ends} seconds={time.monotonic()-t0:.1f}")
    else:
        rd, wr = await conn()
        data = b"".join(frame(6, 0, 0, i.to_bytes(8, "big")) for i in range(n))
        how = await write(wr, data, 15)
        written = time.monotonic() - t0
        counts, goaway, end = await read_all(rd, 3)
        wr.transport.abort()
        print(f"ping flood: pings={n} written={how} in {written:.1f}s acks={counts.get('6ack', 0)} goaway={goaway} end={end}")
asyncio.run(main())
PY

taskset -c 0 nginx -c "$W/upstream.conf" -p "$W" & pids+=($!)
# graphfront: the configuration compare.sh measures (compare-graphfront.sh writes it; with
# GRAPHFRONT_BIN=true it starts nothing), plus [listeners] keys.
start_gf() { # name port admin-port listener-keys
  mkdir -p "$W/$1"
  BENCH_DIR="$W/$1" BENCH_LISTEN=127.0.0.1:$2 BENCH_ADMIN_PORT=$3 BENCH_CERT="$W/c.pem" BENCH_KEY="$W/k.pem" \
    BENCH_UPSTREAM=http://127.0.0.1:$UP/graphql GRAPHFRONT_BIN=true bash "$ROOT/benches/compare-graphfront.sh"
  [[ -z $4 ]] || sed -i "/^\[listeners\]/a $4" "$W/$1/graphfront.toml"
  taskset -c 1 "$bin" run -c "$W/$1/graphfront.toml" >"$W/logs/$1.log" 2>&1 &
  pids+=($!)
}
start_gf nocap "$GF" "$GF_ADMIN" "max-connections-per-client = 0"
gf=${pids[-1]}
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; tail -5 "$W"/logs/*.log >&2; exit 1; }
wait_port "$UP"; wait_port "$GF"

rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
watch_rss() { # pid file: the peak VmRSS (KB), until killed
  local max=0 v
  while v=$(rss "$1" 2>/dev/null); do ((v > max)) && max=$v && echo "$max" >"$2"; sleep 0.2; done
}
upstream_requests() { wc -l <"$W/logs/upstream.access"; }
# Probes: curl, one POST at a time, each timed by curl (%{time_total}); lines "code seconds connects".
probe_loop() { # port seconds out urls-per-curl [source-address]
  local end=$((SECONDS + $2)) args=() i
  for ((i = 0; i < $4; i++)); do args+=(-o /dev/null "https://localhost:$1/graphql"); done
  : >"$3"
  while ((SECONDS < end)); do
    taskset -c 0 curl -s --max-time 5 --cacert "$W/c.pem" ${5:+--interface "$5"} -w '%{http_code} %{time_total} %{num_connects}\n' \
      -H 'content-type: application/json' --data-binary "$MUTATION" "${args[@]}" >>"$3" 2>/dev/null || true
    sleep 0.05
  done
}
summary() { # file connects (0: requests on a kept-alive connection only; any: all) -> "p50_ms p99_ms requests failed"
  python3 - "$1" "$2" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if sys.argv[2] == "any" or r[2] == sys.argv[2] or r[0] != "200"]
ok = sorted(float(r[1]) * 1000 for r in rows if r[0] == "200")
q = lambda p: ok[min(len(ok) - 1, max(0, round(p * len(ok)) - 1))] if ok else 0
print(f"{q(0.5):.2f} {q(0.99):.2f} {len(rows)} {len(rows) - len(ok)}")
PY
}
keepalive_probe() { probe_loop "$1" "$2" "$W/ka.$1" 20; summary "$W/ka.$1" 0; }   # 20 requests on one connection
fresh_probe() { probe_loop "$1" "$2" "$W/nc.$1" 1 "${3:-}"; summary "$W/nc.$1" any; }  # a new connection each

# One proxy under the slow-client attack: prints its rows. proxy-name port pid
attack() {
  local name=$1 port=$2 pid=$3 before peak after up0 up1 base atk cbase catk
  probe_loop "$port" 1 "$W/warm" 20
  sleep 1; before=$(rss "$pid")
  read -r -a base < <(keepalive_probe "$port" 4)
  read -r -a cbase < <(fresh_probe "$port" 4)
  up0=$(upstream_requests)
  echo "$before" >"$W/peak"; watch_rss "$pid" "$W/peak" & local watcher=$!
  taskset -c 0 python3 "$W/slow.py" 127.0.0.1 "$port" headers "$SLOW" "$TRICKLE" $((HEADER_DEADLINE + 8)) "$HEADER_DEADLINE" "$W/c.pem" >"$W/slow.h.$name" &
  local s1=$!
  taskset -c 0 python3 "$W/slow.py" 127.0.0.1 "$port" bodies "$BODIES" "$TRICKLE" $((BODY_DEADLINE + 8)) "$BODY_DEADLINE" "$W/c.pem" >"$W/slow.b.$name" &
  local s2=$!
  sleep 3   # the slow connections are open
  fresh_probe "$port" "$PROBE_S" >"$W/fresh.$name" &
  local cp=$!
  read -r -a atk < <(keepalive_probe "$port" "$PROBE_S")
  wait "$cp"; read -r -a catk <"$W/fresh.$name"
  wait "$s1" "$s2"
  sleep 3; after=$(rss "$pid"); kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true; peak=$(cat "$W/peak")
  up1=$(upstream_requests)
  local probes; probes=$(cat "$W/ka.$port" "$W/nc.$port" | grep -c '^200 ' || true)
  echo "== $name: slow clients ($SLOW trickling heads, $BODIES trickling bodies, a byte every ${TRICKLE}s)"
  sed 's/^/   /' "$W/slow.h.$name" "$W/slow.b.$name"
  printf '   RSS KB: before %s, peak %s, after %s (peak: +%s KB per slow connection)\n' "$before" "$peak" "$after" \
    $(((peak - before) / (SLOW + BODIES)))
  printf '   probe, kept-alive connection: at rest p50 %s ms p99 %s ms; under attack p50 %s ms p99 %s ms (%s requests, %s failed)\n' \
    "${base[0]}" "${base[1]}" "${atk[0]}" "${atk[1]}" "${atk[2]}" "${atk[3]}"
  printf '   probe, new connection each:  at rest p50 %s ms p99 %s ms; under attack p50 %s ms p99 %s ms (%s requests, %s failed)\n' \
    "${cbase[0]}" "${cbase[1]}" "${catk[0]}" "${catk[1]}" "${catk[2]}" "${catk[3]}"
  printf '   upstream received %s requests; the probes answered 200 account for %s\n' $((up1 - up0)) "$probes"
  echo "$name ${atk[0]} ${atk[1]} ${catk[0]} ${catk[1]} $before $peak $after" >>"$W/rows"
}

attack graphfront "$GF" "$gf"
curl -s "http://127.0.0.1:$GF_ADMIN/metrics" | { grep '^graphfront_client_limits_total' || true; } | sed 's/^/   /'
taskset -c 1 nginx -c "$W/proxy.conf" -p "$W" & pids+=($!)
ng=${pids[-1]}
wait_port "$NG"
attack nginx "$NG" "$ng"
kill "$ng"; wait "$ng" 2>/dev/null || true

echo "== ratios graphfront/nginx under attack (> 1: graphfront slower or bigger)"
awk '{r[$1]=$0} END{split(r["graphfront"],g," "); split(r["nginx"],n," ");
  printf "   probe p50 %.2f, p99 %.2f (kept-alive); new connection p50 %.2f, p99 %.2f; RSS peak-before %.2f (%d KB vs %d KB)\n",
    g[2]/n[2], g[3]/n[3], g[4]/n[4], g[5]/n[5], (g[7]-g[6])/((n[7]-n[6])>0?(n[7]-n[6]):1), g[7]-g[6], n[7]-n[6]}' "$W/rows"

# graphfront's default per-address cap (256): one address opens SLOW connections.
start_gf capped "$CAP" "$CAP_ADMIN" ""
cap=${pids[-1]}
wait_port "$CAP"
echo "== graphfront, default max-connections-per-client (256): $SLOW trickling heads from 127.0.0.1"
taskset -c 0 python3 "$W/slow.py" 127.0.0.1 "$CAP" headers "$SLOW" "$TRICKLE" 12 "$HEADER_DEADLINE" "$W/c.pem" >"$W/slow.cap" &
s1=$!
sleep 3
read -r -a same < <(fresh_probe "$CAP" 5)
read -r -a other < <(fresh_probe "$CAP" 5 127.0.0.2)
wait "$s1"
sed 's/^/   /' "$W/slow.cap"
printf '   probe from 127.0.0.1 (the same address): %s of %s failed; p50 %s ms\n' "${same[3]}" "${same[2]}" "${same[0]}"
printf '   probe from 127.0.0.2 (another address):  %s of %s failed; p50 %s ms p99 %s ms\n' "${other[3]}" "${other[2]}" "${other[0]}" "${other[1]}"
curl -s "http://127.0.0.1:$CAP_ADMIN/metrics" | { grep '^graphfront_client_limits_total{limit="connections_per_client"' || true; } | sed 's/^/   /'
kill "$cap"; wait "$cap" 2>/dev/null || true

# HTTP/2 floods on graphfront (no per-address cap).
flood() { # label args...
  local before peak after up0
  before=$(rss "$gf"); up0=$(upstream_requests)
  echo "$before" >"$W/peak"; watch_rss "$gf" "$W/peak" & local watcher=$!
  taskset -c 0 python3 "$W/h2flood.py" 127.0.0.1 "$GF" "$@" "$W/c.pem" | sed 's/^/   /'
  sleep 1; after=$(rss "$gf"); kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true; peak=$(cat "$W/peak")
  read -r -a p < <(fresh_probe "$GF" 2)
  printf '   RSS KB: before %s, peak %s, after %s; upstream received %s (the probe after: %s of %s answered)\n' \
    "$before" "$peak" "$after" $(($(upstream_requests) - up0)) $((p[2] - p[3])) "${p[2]}"
}
echo "== graphfront, HTTP/2 rapid reset: $RR_STREAMS HEADERS + RST_STREAM(CANCEL) pairs, each connection's in one write"
flood reset "$RR_STREAMS" "$RR_STREAMS"
flood reset "$RR_STREAMS" 100
echo "== graphfront, HTTP/2 PING flood: $PINGS PINGs written without reading the answers"
flood ping "$PINGS" 0
