#!/usr/bin/env bash
# The PostgreSQL store's benchmark (issue 18): Mailroom on the embedded
# store, on PostgreSQL with one node and with two nodes sharing it, in one
# run, driven by Postfix's smtp-source beside its ceiling (smtp-source into
# the sink), and what each message costs the database (benchkit pgbench;
# bench/README.md says what each figure means).
#
#   bench/postgres.sh                      # N=20000, 3 runs, C=10 and 50 (about 30 minutes)
#   N=2000 RUNS=1 CONCS=50 bench/postgres.sh   # a smoke run
#
# PostgreSQL is Debian's (scripts/test-deps.sh installs it), a cluster made
# for the run in BENCH_TMP with fsync on and pg_stat_statements loaded, and
# removed after it. Writes bench/results/postgres-YYYYMMDD-HHMM.md.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

N=${N:-20000}
SIZE=${SIZE:-10240}
RUNS=${RUNS:-3}
CONCS=${CONCS:-"10,50"}
SCENARIOS=${SCENARIOS:-"accept,spread,relay"}
SERVERS=${SERVERS:-"embedded,pg1,pg2"}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
COMMAND="N=$N SIZE=$SIZE RUNS=$RUNS CONCS=$CONCS SCENARIOS=$SCENARIOS SERVERS=$SERVERS bench/postgres.sh"

die() { echo "bench: $*" >&2; exit 1; }
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || die "smtp-source is missing: run scripts/test-deps.sh bench (make bench does)"
SMOKE=""
{ [ "$N" -lt 20000 ] || [ "$RUNS" -lt 3 ]; } && SMOKE=yes

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit (with uncommitted changes)"
make -s build >/dev/null || die "make build failed"
WORK=$(mktemp -d "$BENCH_TMP/mailroom-pgbench-run.XXXXXX") || die "mktemp in $BENCH_TMP"
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/benchkit" ./bench/cmd/benchkit || die "building bench/cmd/benchkit failed"
ulimit -n 65536 2>/dev/null || true
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
"$WORK/benchkit" pgbench -mailroom bin/mailroom -smtp-source "$SMTP_SOURCE" -n "$N" -size "$SIZE" -runs "$RUNS" \
	-concs "$CONCS" -scenarios "$SCENARIOS" -servers "$SERVERS" -tmp "$BENCH_TMP" \
	-raw "$WORK/raw.tsv" -costs "$WORK/costs.jsonl" -out "$WORK/tables.md" || die "benchkit pgbench failed"

mkdir -p bench/results
out=bench/results/postgres-$(date +%Y%m%d-%H%M)${SMOKE:+-smoke}.md
{
	echo "# Mailroom on the embedded store and on PostgreSQL, $(date '+%Y-%m-%d %H:%M %Z')"
	echo
	[ -n "$SMOKE" ] && echo "**Smoke run: these are not figures** (N=$N, $RUNS run(s); the benchmark asks for N ≥ 20,000 and 3 runs)." && echo
	echo "- command: \`$COMMAND\`"
	echo "- Mailroom: $commit; $(go version | cut -d' ' -f3); $("$(ls /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)" --version)"
	echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')),"
	echo "  $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, data on $(df -T "$BENCH_TMP" | awk 'NR == 2 { print $2 }'),"
	echo "  load average before the run: $LOADAVG; $(($(date +%s) - START)) s"
	echo "- $SIZE-byte bodies, N=$N messages per measurement, smtp-source from Postfix (two nodes: the sessions and"
	echo "  messages split between them); each server started afresh on empty data (PostgreSQL: a new database, fsync"
	echo "  on, synchronous_commit on); every stored message counted, every relayed one counted at the sink. Cells:"
	echo "  median (min–max) of the runs. PostgreSQL, the nodes and smtp-source share this machine's cores."
	echo
	cat "$WORK/tables.md"
	echo
	echo "<details><summary>raw results</summary>"
	echo
	echo '```'
	cat "$WORK/raw.tsv"
	cat "$WORK/costs.jsonl"
	echo '```'
	echo
	echo "</details>"
} >"$out"
echo "bench: wrote $out" >&2
cat "$out"
