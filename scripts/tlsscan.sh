#!/usr/bin/env bash
# Scans Mailroom's STARTTLS (submission) and implicit-TLS (submissions)
# ports with testssl.sh and writes the findings to bench/results/tlsscan-DATE.txt.
# Installs testssl.sh (Debian package; binary "testssl") when missing.
# Loopback only; takes a few minutes. Not part of CI: run with `make tlsscan`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v testssl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh >/dev/null
fi
make -s build
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/mailroom.toml" <<TOML
hostname = "mx.example.test"
data_dir = "$work/data"
[listen]
smtp = ["127.0.0.1:12525"]
submission = ["127.0.0.1:12587"]
submissions = ["127.0.0.1:12465"]
TOML
./bin/mailroom serve --config "$work/mailroom.toml" --log-level warn >"$work/out" 2>&1 &
pid=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/12587) 2>/dev/null && break; sleep 0.1; done
mkdir -p bench/results
out="bench/results/tlsscan-$(date -u +%Y%m%d).txt"
{
  echo "# testssl.sh $(dpkg-query -W -f='${Version}' testssl.sh 2>/dev/null) against Mailroom $(git rev-parse --short HEAD), $(date -u)"
  echo "## submission 127.0.0.1:12587 (STARTTLS)"
  testssl --quiet --color 0 --warnings off -p -s -f -S --starttls smtp 127.0.0.1:12587 || true
  echo "## submissions 127.0.0.1:12465 (implicit TLS)"
  testssl --quiet --color 0 --warnings off -p -s -f -S 127.0.0.1:12465 || true
} | tee "$out"
echo "written to $out"
