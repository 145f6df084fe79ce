#!/usr/bin/env bash
# The Debian package, built with cargo-deb and installed on this machine as an operator would:
# contents, the system user, permissions, the unit verified where the package puts it, the
# service user able to read its config and certificates, then a purge that leaves nothing.
# Needs root and dpkg (tests/run.sh runs it on CI's throwaway machine).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "package.sh: needs root (it installs the .deb)" >&2; exit 1; }
command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb --version 3.8.0
# The package depends on adduser; a fresh machine's package lists may be empty.
command -v adduser >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adduser >/dev/null; }
fail() { echo "package.sh: $*" >&2; exit 1; }

# The dev profile reuses the test build; `cargo deb` alone builds the release package.
rm -rf target/debian
cargo deb --profile dev --fast --quiet
deb=$(ls target/debian/graphfront_*.deb)
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/graphfront ./usr/lib/systemd/system/graphfront.service \
    ./etc/graphfront/graphfront.toml ./usr/share/graphfront/grafana/graphfront.json; do
    grep -q " $f\$" <<<"$contents" || fail "$f missing from $deb"
done
dpkg-deb -f "$deb" Depends | grep -q adduser || fail "no dependency on adduser"

dpkg -s graphfront >/dev/null 2>&1 && apt-get purge -y -qq graphfront >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null

version=$(/usr/bin/graphfront --version)
[[ $version == "graphfront $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2) ("* ]] \
    || fail "unexpected --version: $version"
getent passwd graphfront >/dev/null || fail "no graphfront user"
[ "$(stat -c '%U:%G %a' /etc/graphfront)" = "root:graphfront 750" ] || fail "/etc/graphfront: $(stat -c '%U:%G %a' /etc/graphfront)"
[ "$(stat -c '%U:%G %a' /etc/graphfront/graphfront.toml)" = "root:graphfront 640" ] || fail "graphfront.toml permissions"
[ -L /etc/systemd/system/multi-user.target.wants/graphfront.service ] || fail "unit not enabled"
out=$(systemd-analyze verify /usr/lib/systemd/system/graphfront.service 2>&1) || fail "unit does not verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

# The service user reads the installed config and its certificate (as ExecStartPre does).
certs=/etc/graphfront/certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=api.example.com \
    -addext "subjectAltName=DNS:api.example.com,DNS:*.api.example.com" \
    -keyout $certs/api.example.com.key -out $certs/api.example.com.pem 2>/dev/null
chown root:graphfront $certs/api.example.com.key $certs/api.example.com.pem
chmod 640 $certs/api.example.com.key $certs/api.example.com.pem
out=$(runuser -u graphfront -- /usr/bin/graphfront check -c /etc/graphfront/graphfront.toml 2>&1) \
    || fail "the service user cannot check the installed config: $out"
grep -q "ok (1 sites)" <<<"$out" || fail "check said: $out"
# Nobody else reads the keys.
runuser -u nobody -- cat $certs/api.example.com.key >/dev/null 2>&1 && fail "keys readable by others"

rm -f $certs/api.example.com.key $certs/api.example.com.pem
apt-get purge -y -qq graphfront >/dev/null
for f in /usr/bin/graphfront /usr/lib/systemd/system/graphfront.service /etc/graphfront \
    /etc/systemd/system/multi-user.target.wants/graphfront.service; do
    [ ! -e "$f" ] || fail "$f left after purge"
done
echo "package.sh: $deb builds, installs, verifies and purges cleanly"
