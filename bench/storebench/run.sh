#!/usr/bin/env bash
# Runs the storebench matrix and prints a markdown table.
#   ./run.sh                # full matrix: 3 runs x writers 1,10,50 x all engines
#   RUNS=1 N=5000 ./run.sh  # quick pass
# Raw RESULT lines go to results/results-<timestamp>.txt. Data dirs are
# created under ./tmp and removed after each run. Every run is bounded by
# -max-secs and by timeout(1).
set -euo pipefail
cd "$(dirname "$0")"

RUNS=${RUNS:-3}
N=${N:-20000}
N_SLOW=${N_SLOW:-5000}      # for sqlite-files with 1 writer (~300 commits/s here)
SIZE=${SIZE:-10240}
WRITERS=${WRITERS:-"1 10 50"}
ENGINES=${ENGINES:-"sqlite sqlite-files bbolt pebble files"}
MAXSECS=${MAXSECS:-300}

mkdir -p tmp results
out="results/results-$(date -u +%Y%m%dT%H%M%SZ).txt"
go build -o storebench .

{
	echo "## storebench $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo '```'
	echo "nproc: $(nproc)"
	echo "kernel: $(uname -r)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "$(go version)"
	df -T . | sed 's/^/df: /'
	echo '```'
	echo
} | tee "$out.md"

runone() { # engine writers n
	local cmd=(./storebench -engine "$1" -writers "$2" -n "$3" -size "$SIZE" -dir tmp -max-secs "$MAXSECS")
	echo "+ ${cmd[*]}" >&2
	timeout $((MAXSECS + 60)) "${cmd[@]}" 2>/dev/null | tee -a "$out" >&2
}

# Runs are interleaved (run 1 of every config, then run 2, ...) so that
# slow drifts of the virtual disk do not favour one engine.
for run in $(seq 1 "$RUNS"); do
	runone fsync 1 "$N"
	for e in $ENGINES; do
		for w in $WRITERS; do
			n=$N
			if [ "$e" = sqlite-files ] && [ "$w" = 1 ]; then n=$N_SLOW; fi
			runone "$e" "$w" "$n"
		done
	done
done

./storebench -report "$out" | tee -a "$out.md"

# Second-process access while the benchmark process holds the database.
echo | tee -a "$out.md"
echo "Second process while the benchmark writes (10 writers):" | tee -a "$out.md"
probe() { # engine path-suffix
	rm -rf tmp/probe
	./storebench -engine "$1" -writers 10 -n 40000 -hold-secs 4 -dir tmp/probe -max-secs 120 >/dev/null 2>&1 &
	local pid=$!
	sleep 1.5
	local p
	p=$(ls -d tmp/probe/"$1"-*)$2
	./storebench -probe "$p" -probe-secs 3 | sed "s/^/- $1: /" | tee -a "$out.md"
	if [ "$1" = sqlite ] && command -v sqlite3 >/dev/null; then
		sqlite3 "$p" "PRAGMA busy_timeout=10000;" \
			"SELECT 'sqlite3 CLI read: messages=' || count(*) FROM messages;" \
			"INSERT INTO cli_log(at, note) VALUES (strftime('%s','now'), 'sqlite3 cli');" \
			"SELECT 'sqlite3 CLI write: ok, cli_log rows=' || count(*) FROM cli_log;" 2>&1 |
			grep -v '^10000$' | sed 's/^/- sqlite: /' | tee -a "$out.md"
	fi
	wait "$pid"
	rm -rf tmp/probe
}
probe sqlite /mail.db
probe bbolt /mail.bolt
probe pebble ""
echo "(raw lines: $out, table: $out.md)"
