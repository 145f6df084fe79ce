#!/usr/bin/env bash
# Starts graphfront for ../shared/bench/compare.sh: one worker thread, https://localhost on
# $BENCH_LISTEN with $BENCH_CERT/$BENCH_KEY, fronting $BENCH_UPSTREAM at /graphql.
# $BENCH_LISTENER_KEYS (TOML keys) go into [listeners]; $BENCH_SITE_KEYS (TOML keys) go into the [[site]] table itself (benches/realtime-idle.sh adds
# realtime-upstream); $BENCH_SITE_EXTRA (TOML, after [site.cache]: start it with a table header
# of its own) is appended to the site (benches/auth-overhead.sh adds auth).
#   cargo build --release && ../shared/bench/compare.sh
set -euo pipefail
dir=${BENCH_DIR:-$(mktemp -d)}
bin=${GRAPHFRONT_BIN:-target/release/graphfront}
cat >"$dir/graphfront.toml" <<CONF
[server]
threads = 1
state-dir = "$dir/state"
pid-file = "$dir/graphfront.pid"
upgrade-socket = "$dir/graphfront-upgrade.sock"
grace-period = "0s"
graceful-shutdown-timeout = "1s"
access-log = ${BENCH_ACCESS_LOG:-false}

[listeners]
https = ["$BENCH_LISTEN"]
http = []
admin = "127.0.0.1:${BENCH_ADMIN_PORT:-28490}"
${BENCH_LISTENER_KEYS:-}

[tls]
reload-interval = "0s"

[[site]]
name = "bench"
domains = ["localhost"]
upstream = "$BENCH_UPSTREAM"
tls = { cert = "$BENCH_CERT", key = "$BENCH_KEY" }
${BENCH_SITE_KEYS:-}

[site.cache]
default-ttl = "60s"
${BENCH_SITE_EXTRA:-}
CONF
exec "$bin" run -c "$dir/graphfront.toml"
