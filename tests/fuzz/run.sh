#!/usr/bin/env bash
# The long fuzz run: each target under libFuzzer for SECONDS (default 600), from the seeds in
# tests/fuzz/seeds, with what it finds kept in tests/fuzz/corpus (not committed).
#   bash tests/fuzz/run.sh            # 10 minutes per target
#   SECONDS_PER_TARGET=60 bash tests/fuzz/run.sh graphql_document jwt
# Needs cargo-fuzz (installed here if missing). RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take the sanitizer flags cargo-fuzz passes.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
secs=${SECONDS_PER_TARGET:-600}
targets=("$@")
((${#targets[@]})) || targets=(graphql_request graphql_document jwt websocket_frames config)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${secs}s"
  cargo fuzz run --fuzz-dir . "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|==|SUMMARY|ERROR|panicked)' || true
  [ -z "$(ls artifacts/"$t" 2>/dev/null)" ] || { echo "$t: crashes in tests/fuzz/artifacts/$t" >&2; exit 1; }
done
