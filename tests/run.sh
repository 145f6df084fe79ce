#!/usr/bin/env bash
# The whole test suite, with its set-up, on a fresh Debian machine (what CI runs):
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build and the tests need (cmake: zlib-ng, built by pingora's deps).
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)   # tests/ops.rs verifies the unit
command -v wrk >/dev/null || need+=(wrk)                    # load during tests/ops.rs upgrades
command -v pebble >/dev/null || need+=(pebble)              # the ACME CA of tests/acme.rs
command -v node >/dev/null || need+=(nodejs)                # tests/appsync.rs: the AppSync simulator
command -v npm >/dev/null || need+=(npm)
if ((${#need[@]})); then
  [ "$(id -u)" = 0 ] || { echo "install as root: ${need[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Node packages for the tests (tests/js/package-lock.json).
npm ci --prefix tests/js --no-audit --no-fund

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The benches must keep compiling and running: one pass each in test mode, no figures asserted,
# built with the test profile the test run shares (a release build here cost CI ~15 minutes).
cargo test --locked --bench graphql --bench cache --bench auth --bench websocket --bench ws_idle
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
# The Debian package: built, installed, verified and purged on this machine.
bash tests/package.sh
