#!/usr/bin/env bash
# The IMAP side of the benchmark (issue 16, and issue 21's login target):
# Mailroom and Debian's Dovecot 2.3 on loopback, one after the other
# (A/B/A/B), with the same load generator (bench/cmd/benchkit), whose own
# ceiling is measured in the same run against a sink that does nothing but
# TLS and lines.
#
#   bench/imap.sh                  # 3 runs of every scenario
#   RUNS=1 SECS=5 bench/imap.sh    # a smoke run
#   SCENARIOS=work bench/imap.sh   # some of: logins work pop3 big idle idlez
#
# Scenarios:
#   logins  repeated correct logins over implicit TLS (connect, TLS, LOGIN,
#           LOGOUT), 8 clients; Dovecot with SHA512-CRYPT passwords in its
#           high-performance login mode, Mailroom with argon2id and its
#           login cache.
#   work    on a mailbox of MSGS messages (1000, the same files for both):
#           FETCH of the headers of all, FETCH of whole messages, SEARCH
#           TEXT, STORE, APPEND of 10 KiB, from 4 sessions; and the IDLE
#           wake-up latency (APPEND in one session, EXISTS in another)
#   idle    memory per logged-in connection in IDLE on INBOX
#           (bench/imapidle.py): IDLE_N held to Mailroom (10000),
#           IDLE_N_DOVECOT to Dovecot (500: one imap process each).
#   pop3    POP3 over implicit TLS: LIST and pipelined RETR of the whole
#           MSGS-message maildrop, again and again, each message's octets
#           checked against LIST
#   big     a mailbox of BIG_MSGS (100000) short messages: SELECT, UID
#           FETCH 1:* (FLAGS), FETCH of the newest 50 headers, SEARCH
#           UNSEEN, SEARCH FROM, SORT by date, each timed (median of 5)
#           after a first session that builds what the server keeps (the
#           first SELECT after each start is a line of its own, and so is
#           the time Mailroom's preload of the state it saved took)
#   idlez   the same as idle, each connection with COMPRESS=DEFLATE on (Dovecot's
#           imap_zlib plugin).
#
# Settings: RUNS (3), SECS per measurement (10), CONC clients (8), IDLE_N,
# IDLE_N_DOVECOT, BENCH_TMP (/var/tmp), KEEP=1 keeps the scratch folder. Writes
# bench/results/imap-YYYYMMDD-HHMM.md. Every process it starts is stopped
# when it ends, however it ends.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RUNS=${RUNS:-3}
SECS=${SECS:-10}
CONC=${CONC:-8}
MSGS=${MSGS:-1000}
BIG_MSGS=${BIG_MSGS:-100000}
IDLE_N=${IDLE_N:-10000}
SCENARIOS=${SCENARIOS:-logins work pop3 big idle idlez}
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
IDLE_N_DOVECOT=${IDLE_N_DOVECOT:-500}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
BENCH_TMP=${BENCH_TMP:-/var/tmp}
KEEP=${KEEP:-}
die() { echo "bench/imap: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root: Dovecot's own instance needs it"
[ -x /usr/sbin/dovecot ] || die "Dovecot is missing: run scripts/test-deps.sh (make bench does)"
command -v openssl >/dev/null || die "openssl is missing"

WORK=$(mktemp -d "$BENCH_TMP/mailroom-imapbench.XXXXXX") || die "mktemp in $BENCH_TMP"
chmod 755 "$WORK"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[ -n "$KEEP" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT: wait until something listens there
	for _ in $(seq 200); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

make -s build >/dev/null || die "make build failed"
KIT=$WORK/benchkit
go build -o "$KIT" ./bench/cmd/benchkit || die "building bench/cmd/benchkit failed"
PASSWORD=Bench-Lantern-Quartz-91
USER=bench@local.test
BIG_USER=big@local.test

# Mailroom: its own data folder, implicit TLS only.
MR_PORT=$(free_port)
MR_POP3=$(free_port)
mkdir -p "$WORK/mailroom"
cat >"$WORK/mailroom.toml" <<EOF
hostname = "bench.local.test"
data_dir = "$WORK/mailroom/data"
[listen]
smtp = ["127.0.0.1:$(free_port)"]
imaps = ["127.0.0.1:$MR_PORT"]
pop3s = ["127.0.0.1:$MR_POP3"]
[tls]
self_signed = true
[imap]
max_connections = 20000
max_connections_per_client = 20000
[log]
level = "warn"
EOF
bin/mailroom --config "$WORK/mailroom.toml" domain add local.test >/dev/null || die "mailroom domain add failed"
printf 'address,password\n%s,%s\n%s,%s\n' "$USER" "$PASSWORD" "$BIG_USER" "$PASSWORD" | bin/mailroom --config "$WORK/mailroom.toml" user import - >/dev/null || die "mailroom user import failed"

# Dovecot: high-performance login mode, SHA512-CRYPT, Maildir, a P-256
# certificate like Mailroom's.
DC_PORT=$(free_port)
DC_POP3=$(free_port)
DC=$WORK/dovecot
mkdir -p "$DC"/{run,state,log,home}
chown nobody:nogroup "$DC/home"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.local.test \
	-keyout "$DC/key.pem" -out "$DC/cert.pem" 2>/dev/null || die "openssl failed"
HASH=$(doveadm pw -s SHA512-CRYPT -p "$PASSWORD")
printf '%s:%s\n%s:%s\n' "$USER" "$HASH" "$BIG_USER" "$HASH" >"$DC/passwd"
cat >"$DC/dovecot.conf" <<EOF
base_dir = $DC/run
state_dir = $DC/state
log_path = $DC/log/dovecot.log
protocols = imap pop3
pop3_uidl_format = %08Xu%08Xv
listen = 127.0.0.1
ssl = required
ssl_cert = <$DC/cert.pem
ssl_key = <$DC/key.pem
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
default_client_limit = 4000
mail_location = maildir:~/Maildir
protocol imap {
  mail_plugins = imap_zlib
  # one user holds every connection of the idle measurement
  mail_max_userip_connections = 100000
}
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT $DC/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$DC/home/%u
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $DC_PORT
  }
  service_count = 0
  process_min_avail = 2
  client_limit = 4000
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $DC_POP3
  }
}
EOF

# The mailbox both servers work on: MSGS messages of 2-20 KiB with words to
# search, as Maildir files (Dovecot reads them as they are; Mailroom imports
# them).
MD=$WORK/maildir
python3 bench/maildir.py "$MD" "$MSGS" words || die "writing the Maildir failed"
bin/mailroom --config "$WORK/mailroom.toml" mailbox import "$USER" "$MD" >/dev/null || die "mailroom mailbox import failed"
mkdir -p "$DC/home/$USER"
cp -r "$MD" "$DC/home/$USER/Maildir"

# The very large mailbox: BIG_MSGS short messages from 50 senders over
# three years, a quarter unseen.
if has big; then
	BIG=$DC/home/$BIG_USER/Maildir
	python3 bench/maildir.py "$BIG" "$BIG_MSGS" notes || die "writing the large Maildir failed"
	bin/mailroom --config "$WORK/mailroom.toml" mailbox import "$BIG_USER" "$BIG" >/dev/null || die "mailroom mailbox import (big) failed"
fi
chown -R nobody:nogroup "$DC/home"

RESULTS=$WORK/results
: >"$RESULTS"
record() { echo "$*" >>"$RESULTS"; }  # SCENARIO SERVER RUN VALUE NOTE...
kv() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }

start_mailroom() { # [serve's flags]
	bin/mailroom serve --config "$WORK/mailroom.toml" "$@" >"$WORK/mailroom.log" 2>&1 &
	MR_PID=$!
	PIDS+=("$MR_PID")
	wait_port "$MR_PORT" || die "mailroom did not listen: $(tail -5 "$WORK/mailroom.log")"
}
stop_mailroom() { kill "$MR_PID"; wait "$MR_PID" 2>/dev/null; }
start_dovecot() {
	/usr/sbin/dovecot -F -c "$DC/dovecot.conf" &
	DC_PID=$!
	PIDS+=("$DC_PID")
	wait_port "$DC_PORT" || die "dovecot did not listen: $(tail -5 "$DC/log/dovecot.log")"
}
stop_dovecot() { kill "$DC_PID"; wait "$DC_PID" 2>/dev/null; }
start_sink() { # [imapsink flags...]
	: >"$WORK/sink.log"
	"$KIT" imapsink -addr "127.0.0.1:$(free_port)" "$@" >"$WORK/sink.log" 2>&1 &
	SINK_PID=$!
	PIDS+=("$SINK_PID")
	for _ in $(seq 100); do grep -q listening "$WORK/sink.log" && break; sleep 0.05; done
	SINK_ADDR=$(awk '/listening/ { print $2 }' "$WORK/sink.log")
}
stop_sink() { kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null; }

logins() { # SERVER RUN ADDR
	local out
	out=$("$KIT" imaplogins -addr "$3" -user "$USER" -pass "$PASSWORD" -c "$CONC" -d "${SECS}s" 2>&1)
	if [ $? -eq 0 ]; then
		record logins "$1" "$2" "$(kv logins_per_s "$out")" "$(kv logins "$out") logins in ${SECS} s"
	else
		record logins "$1" "$2" 0 "failed: $(tail -c 200 <<<"$out" | tr '\n' ' ')"
	fi
	echo "bench/imap: run $2 logins $1: $out" >&2
}

idle() { # SERVER RUN PORT PID N [--compress]
	local out name=idle${6:+-z} compress=${6:-}
	out=$(timeout 900 python3 bench/imapidle.py 127.0.0.1 "$3" "$5" "$4" "$USER" "$PASSWORD" --tls --hold 3 $compress 2>&1)
	local per
	per=$(sed -n 's/^PSS kB .*delta\/conn=\([0-9.]*\) kB.*/\1/p' <<<"$out")
	record "$name" "$1" "$2" "${per:-0}" "$5 held; $(tr '\n' ' ' <<<"$out" | tail -c 200)"
	echo "bench/imap: run $2 $name $1: $out" >&2
}

work() { # SERVER RUN ADDR
	local op out
	for op in fetch-headers fetch-bodies search search-rare store append; do
		out=$("$KIT" imapload -addr "$3" -user "$USER" -pass "$PASSWORD" -op "$op" -c 4 -d "${SECS}s" 2>&1)
		if [ $? -eq 0 ]; then
			record "$op" "$1" "$2" "$(kv ops_per_s "$out")" "$(kv msgs_per_s "$out") messages/s"
		else
			record "$op" "$1" "$2" 0 "failed: $(tail -c 200 <<<"$out" | tr '\n' ' ')"
		fi
		echo "bench/imap: run $2 $op $1: $out" >&2
	done
	out=$("$KIT" imapload -addr "$3" -user "$USER" -pass "$PASSWORD" -op idle -d "${SECS}s" 2>&1)
	record idle-p50 "$1" "$2" "$(kv p50_ms "$out")" ""
	record idle-p99 "$1" "$2" "$(kv p99_ms "$out")" "$(kv wakeups "$out") wake-ups"
	echo "bench/imap: run $2 idle wake-up $1: $out" >&2
}

pop3() { # SERVER RUN ADDR
	local out
	if out=$("$KIT" pop3load -addr "$3" -user "$USER" -pass "$PASSWORD" -d "${SECS}s" 2>&1); then
		record pop3 "$1" "$2" "$(kv msgs_per_s "$out")" "$(kv mb_per_s "$out") MB/s"
	else
		record pop3 "$1" "$2" 0 "failed: $(tail -c 200 <<<"$out" | tr '\n' ' ')"
	fi
	echo "bench/imap: run $2 pop3 $1: $out" >&2
}

big() { # SERVER RUN ADDR
	local out k
	# The first session after each start builds what the server keeps
	# (Dovecot's index on disk, from the first run on; Mailroom's state of
	# the mailbox in memory, lost at each stop): timed apart, as the first
	# SELECT after a start.
	if out=$("$KIT" imapbig -addr "$3" -user "$BIG_USER" -pass "$PASSWORD" -n 1 2>&1); then
		record big-select-first "$1" "$2" "$(kv select_ms "$out")" ""
	fi
	# Mailroom preloads the state it saved of large mailboxes after a start,
	# in the background (none in run 1: nothing was saved before).
	if [ "$1" = mailroom ]; then
		out=$(grep -a "preloaded the state" "$WORK/mailroom.log" | sed -n 's/.* took=\([0-9.]*\)\(m*s\).*/\1 \2/p' | tail -1)
		[ -n "$out" ] && record big-preload "$1" "$2" "$(awk '{ print $2 == "s" ? $1 * 1000 : $1 }' <<<"$out")" ""
	fi
	if out=$("$KIT" imapbig -addr "$3" -user "$BIG_USER" -pass "$PASSWORD" -n 5 2>&1); then
		for k in select fetch-flags fetch-recent-headers search-unseen search-from sort-date; do
			record "big-$k" "$1" "$2" "$(kv "${k}_ms" "$out")" ""
		done
	else
		record big-select "$1" "$2" 0 "failed: $(tail -c 200 <<<"$out" | tr '\n' ' ')"
	fi
	echo "bench/imap: run $2 big $1: $out" >&2
}

# A first login before the idle measurement: Mailroom's argon2id check of
# it (64 MiB, kept by the Go runtime for a while) is then in the baseline,
# not counted per connection.
warm() { "$KIT" imaplogins -addr "$1" -user "$USER" -pass "$PASSWORD" -c 1 -d 1s >/dev/null 2>&1; sleep 6; }

# The search index is filled after the import, in the background: wait for
# it once, before any run, so that no search is measured while it catches
# up; its time and size go in the report.
DATA_KB=$(du -sk "$WORK/mailroom/data" | cut -f1)
bin/mailroom serve --config "$WORK/mailroom.toml" --log-level info >"$WORK/mailroom.log" 2>&1 &
MR_PID=$!
PIDS+=("$MR_PID")
for _ in $(seq 7200); do grep -q "caught up" "$WORK/mailroom.log" && break; sleep 0.5; done
INDEX_LINE=$(grep -o 'messages=[0-9]* duration=[^ ]*' "$WORK/mailroom.log" | tail -1)
stop_mailroom
INDEX_MB=$(awk -v a="$(du -sk "$WORK/mailroom/data" | cut -f1)" -v b="$DATA_KB" 'BEGIN { printf "%.0f", (a - b) / 1024 }')
echo "bench/imap: search index: ${INDEX_LINE:-not caught up}, +$INDEX_MB MB" >&2

for ((run = 1; run <= RUNS; run++)); do
	if has logins; then
		start_sink
		logins sink "$run" "$SINK_ADDR"
		stop_sink
		start_dovecot
		logins dovecot "$run" "127.0.0.1:$DC_PORT"
		stop_dovecot
		start_mailroom
		logins mailroom "$run" "127.0.0.1:$MR_PORT"
		MR_RSS=$(awk '/VmHWM/ { printf "%d MB", $2 / 1024 }' /proc/"$MR_PID"/status)
		stop_mailroom
	fi
	if has work; then
		start_dovecot
		work dovecot "$run" "127.0.0.1:$DC_PORT"
		stop_dovecot
		start_mailroom
		work mailroom "$run" "127.0.0.1:$MR_PORT"
		stop_mailroom
	fi
	if has pop3; then
		start_dovecot
		pop3 dovecot "$run" "127.0.0.1:$DC_POP3"
		stop_dovecot
		start_mailroom
		pop3 mailroom "$run" "127.0.0.1:$MR_POP3"
		stop_mailroom
	fi
	if has big; then
		# The sink answers the same commands with canned lines: the client's
		# floor (TLS, transfer, reading and checking the answers).
		start_sink -big "$BIG_MSGS"
		big sink "$run" "$SINK_ADDR"
		stop_sink
		start_dovecot
		big dovecot "$run" "127.0.0.1:$DC_PORT"
		stop_dovecot
		start_mailroom --log-level info # for the preload's line; a few sessions only
		big mailroom "$run" "127.0.0.1:$MR_PORT"
		stop_mailroom
	fi
	if has idle; then
		start_dovecot
		warm "127.0.0.1:$DC_PORT"
		idle dovecot "$run" "$DC_PORT" "$DC_PID" "$IDLE_N_DOVECOT"
		stop_dovecot
		start_mailroom
		warm "127.0.0.1:$MR_PORT"
		idle mailroom "$run" "$MR_PORT" "$MR_PID" "$IDLE_N"
		stop_mailroom
	fi
	if has idlez; then
		start_dovecot
		warm "127.0.0.1:$DC_PORT"
		idle dovecot "$run" "$DC_PORT" "$DC_PID" "$IDLE_N_DOVECOT" --compress
		stop_dovecot
		start_mailroom
		warm "127.0.0.1:$MR_PORT"
		idle mailroom "$run" "$MR_PORT" "$MR_PID" "$IDLE_N" --compress
		stop_mailroom
	fi
done

mkdir -p bench/results
out=bench/results/imap-$(date +%Y%m%d-%H%M)$([ "$RUNS" -lt 3 ] && echo -smoke).md
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%s (%s–%s)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }
med() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }
{
	echo "# IMAP: Mailroom vs Dovecot, $(date '+%Y-%m-%d %H:%M %Z')"
	echo
	echo "- command: \`RUNS=$RUNS SECS=$SECS CONC=$CONC bench/imap.sh\`"
	echo "- Mailroom $(git rev-parse --short HEAD); Dovecot $(dovecot --version | cut -d' ' -f1); $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- cells: median (min–max) of $RUNS runs; the sink is the load generator's ceiling (TLS and lines only)"
	echo
	echo "| figure | sink (ceiling) | Dovecot | Mailroom | Mailroom / Dovecot | Mailroom / ceiling |"
	echo "|---|---|---|---|---|---|"
	s=$(awk '$1 == "logins" && $2 == "sink" { print $4 }' "$RESULTS")
	d=$(awk '$1 == "logins" && $2 == "dovecot" { print $4 }' "$RESULTS")
	m=$(awk '$1 == "logins" && $2 == "mailroom" { print $4 }' "$RESULTS")
	ratio() { awk -v a="$(med <<<"$1")" -v b="$(med <<<"$2")" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
	echo "| IMAP logins/s, implicit TLS, $CONC clients (Dovecot SHA512-CRYPT, Mailroom argon2id + login cache) | $(median <<<"$s") | $(median <<<"$d") | $(median <<<"$m") | $(ratio "$m" "$d") | $(ratio "$m" "$s") |"
	for op in fetch-headers fetch-bodies search search-rare store append idle-p50 idle-p99; do
		d=$(awk -v op="$op" '$1 == op && $2 == "dovecot" { print $4 }' "$RESULTS")
		m=$(awk -v op="$op" '$1 == op && $2 == "mailroom" { print $4 }' "$RESULTS")
		case $op in
		fetch-headers) what="FETCH of the headers of all $MSGS messages (commands/s)" ;;
		fetch-bodies) what="FETCH BODY.PEEK[] of one message (commands/s)" ;;
		search) what="SEARCH TEXT over $MSGS messages, a word every message has (commands/s)" ;;
		search-rare) what="SEARCH TEXT over $MSGS messages, an order number one message has (commands/s)" ;;
		store) what="STORE +/-FLAGS.SILENT (commands/s)" ;;
		append) what="APPEND of 10 KiB (commands/s)" ;;
		idle-p50) what="IDLE wake-up after an APPEND, p50 (ms)" ;;
		idle-p99) what="IDLE wake-up after an APPEND, p99 (ms)" ;;
		esac
		echo "| $what, 4 sessions | - | $(median <<<"$d") | $(median <<<"$m") | $(ratio "$m" "$d") | - |"
	done
	d=$(awk '$1 == "pop3" && $2 == "dovecot" { print $4 }' "$RESULTS")
	m=$(awk '$1 == "pop3" && $2 == "mailroom" { print $4 }' "$RESULTS")
	echo "| POP3: LIST and pipelined RETR of a whole $MSGS-message maildrop, again and again (messages/s) | - | $(median <<<"$d") | $(median <<<"$m") | $(ratio "$m" "$d") | - |"
	for k in select-first select fetch-flags fetch-recent-headers search-unseen search-from sort-date; do
		s=$(awk -v k="big-$k" '$1 == k && $2 == "sink" { print $4 }' "$RESULTS")
		d=$(awk -v k="big-$k" '$1 == k && $2 == "dovecot" { print $4 }' "$RESULTS")
		m=$(awk -v k="big-$k" '$1 == k && $2 == "mailroom" { print $4 }' "$RESULTS")
		case $k in
		select-first) what="the first SELECT after the server started" ;;
		select) what="SELECT" ;;
		fetch-flags) what="UID FETCH 1:* (FLAGS)" ;;
		fetch-recent-headers) what="FETCH of the newest 50 messages' headers" ;;
		search-unseen) what="UID SEARCH UNSEEN" ;;
		search-from) what="UID SEARCH FROM" ;;
		sort-date) what="UID SORT (REVERSE DATE)" ;;
		esac
		echo "| $BIG_MSGS-message mailbox: $what, ms (lower is better; the sink: the client's floor) | $(median <<<"$s") | $(median <<<"$d") | $(median <<<"$m") | $(ratio "$m" "$d") | $(ratio "$m" "$s") |"
	done
	m=$(awk '$1 == "big-preload" && $2 == "mailroom" { print $4 }' "$RESULTS")
	[ -n "$m" ] && echo "| $BIG_MSGS-message mailbox: Mailroom's preload of its saved state after a start, in the background, ms (runs 2 on) | - | - | $(median <<<"$m") | - | - |"
	s=; d=$(awk '$1 == "idle" && $2 == "dovecot" { print $4 }' "$RESULTS")
	m=$(awk '$1 == "idle" && $2 == "mailroom" { print $4 }' "$RESULTS")
	echo "| memory per logged-in connection in IDLE, PSS kB (Mailroom $IDLE_N held, Dovecot $IDLE_N_DOVECOT) | - | $(median <<<"$d") | $(median <<<"$m") | $(ratio "$m" "$d") | - |"
	d=$(awk '$1 == "idle-z" && $2 == "dovecot" { print $4 }' "$RESULTS")
	m=$(awk '$1 == "idle-z" && $2 == "mailroom" { print $4 }' "$RESULTS")
	echo "| the same with COMPRESS=DEFLATE (RFC 4978; Dovecot's imap_zlib) | - | $(median <<<"$d") | $(median <<<"$m") | $(ratio "$m" "$d") | - |"
	echo
	echo "Mailroom peak RSS in the last logins run: ${MR_RSS:-not measured}."
	echo "Mailroom's search index after the import: ${INDEX_LINE:-not caught up} (the indexer's log line), the store +$INDEX_MB MB."
} >"$out"
cat "$out"
echo "bench/imap: wrote $out" >&2
